"""The one root of channel-node's exceptions, and the categories that say who must act.

This module is the lowest layer: it imports nothing of ours, so every layer may raise from it
(docs/design.md, "Errors"). Every exception class defined under `channel_node` subclasses
`ChannelNodeError` through exactly the category that says who must act on it
(`tests/test_errors.py` walks the package so a new class cannot be forgotten):

    ChannelNodeError
    ├── UsageError     the user must act: their input, choice or setting (bad argument, wrong
    │   │              password, a limit their policy sets, a query that cannot be answered)
    │   └── ConfigError    the configuration (or a database it names) is wrong
    ├── Refusal        a party refused the request and named why with a stable `code`; the
    │                  requester changes the request (its message is written to be shown)
    ├── RemoteError    a remote party failed or could not be reached (chain RPC, a server the
    │   │              wallet talks to); retrying later may succeed
    │   └── ChainUnavailable (chain/ports.py)
    └── StateError     local state failed: a database, a lock, a stale write

A class keeps its own name, module and attributes; where callers catch ValueError it keeps
ValueError as a second base. A class may sit in two categories when two parties must act (a
`StoreMismatch` is a store failure the configuration causes): edges test the categories in the
order below, so the first that applies decides.

Stable codes. Only a `Refusal` carries a stable machine-readable `code` (a `str`; the HTTP edge
answers it as `{"error": code}`, scripts may match on it):

- `wire.envelope.ProtocolError`: the paywall's codes (docs/protocol.md);
- `server.admin.AdminError`: the admin API's codes (docs/operations.md);
- `chain.reverts.ContractRevert`: the contract's own error name (`NothingToClaim`, `Error`,
  `Panic`), or `contract_revert` when the revert data matches nothing in the ABI;
- `signing.InvalidSignature`: `invalid_signature` (the core's `Reject.INVALID_SIGNATURE`).

Every other class carries only a message, which is safe to show the user (no key, password or
token) but is not a contract: match on the class, not the text.

How each edge maps the categories:

- the command line (`cli/main.py`): one line `error: <message>` on stderr, no traceback; exit 2
  for `UsageError` and `Refusal` (the user must change something), 1 for everything else;
- the HTTP edge (`server/app.py`): a `Refusal` is a 4xx JSON body with its code and message;
  anything else is a 5xx with a generic code and message by category (never the exception's
  text): `RemoteError` 503 `upstream_unavailable`, `StateError` 503 `store_unavailable`, the rest
  500 `internal_error`.
"""

from __future__ import annotations

__all__ = [
    "ChannelNodeError",
    "ConfigError",
    "Refusal",
    "RemoteError",
    "StateError",
    "UsageError",
]


class ChannelNodeError(Exception):
    """The root: everything channel-node raises on purpose. Its message is safe to show."""


class UsageError(ChannelNodeError):
    """The user must act: their input, choice or setting is what stands in the way."""


class ConfigError(UsageError):
    """The configuration (or a database or contract it names) is wrong; the message says what to change."""


class Refusal(ChannelNodeError):
    """A party refused the request and names why with a stable machine-readable `code`.

    Subclasses set `code` (and, for the HTTP edge, `status`, a 4xx unless a subclass says
    otherwise) in their own constructors or as class attributes."""

    code: str = "refused"
    status: int = 400


class RemoteError(ChannelNodeError):
    """A remote party (the chain's RPC endpoint, a site or node the wallet talks to) failed or did
    not answer; the same request may succeed later."""


class StateError(ChannelNodeError):
    """Local state failed or refused: a database, a lock file, a write that lost a race."""
