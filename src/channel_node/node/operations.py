"""The operator's claims and closes: the one place that decides which channels, with what amount.

The admin API (`server/admin/api.py`), the operator commands on a stopped node (`cli/channels.Direct`)
and the settlement policy (`node/settlement.py`) all take their targets from here, so `channels close
--all` makes the same choice whichever way it arrives (docs/design.md, "Operations").

The rules, pure functions of a channel's state:

- a claim or close asks for the charged total (`ChannelState.claim_amount`), never the voucher's
  ceiling: the payer's credit goes back to it (docs/contract.md);
- "every channel" (`claim --all`, `close --all`, `settle`, the settlement policy) skips settled
  channels, channels the receiver is already closing (an operator close or a consented cooperative
  close: that close collects the charged total), and channels without a voucher, which owe the
  receiver nothing: a voucherless close (amount 0, no signature) would only spend the node's gas
  on a refund the payer can take itself;
- a channel named by id goes to the core, which refuses what it must (unknown, settled, nothing to
  claim); a named channel without a voucher is refused `nothing_to_close` before the core.

Each decision is made by `Runtime.operator`, committed as an outbox row and sent by the sender.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from channel_node.core import ChannelState, OperatorClaim, OperatorClose, Rejected, channel_status
from channel_node.node.runtime import Runtime
from channel_node.store import OUTBOX_OPEN, OutboxKind, OutboxRow, OutboxStatus, Store, StoredChannel

CLAIM, CLOSE = OutboxKind.CLAIM, OutboxKind.CLOSE
KINDS = tuple(OutboxKind)
NOTHING_TO_CLOSE = "nothing_to_close"


@dataclass(frozen=True)
class Queued:
    """A claim or close committed to the outbox; the row's id, status and deadline when known."""

    channel_id: bytes
    kind: OutboxKind
    amount: int
    outbox_id: int | None = None
    status: OutboxStatus | None = None
    deadline: int | None = None


@dataclass(frozen=True)
class Refused:
    """A channel the operation was not queued for, with a stable code."""

    channel_id: bytes
    code: str
    message: str


@dataclass(frozen=True)
class Batch:
    queued: tuple[Queued, ...]
    rejected: tuple[Refused, ...]


# ------------------------------------------------------------------ the rules (pure)


def claim_wanted(state: ChannelState, minimum: int = 1) -> bool:
    """Whether "every channel" includes this one for a claim of at least `minimum` (at least 1)."""
    return channel_status(state).operable and state.unclaimed >= max(1, minimum)


def close_wanted(state: ChannelState) -> bool:
    """Whether "every channel" includes this one for a close."""
    return channel_status(state).operable and state.ceiling > 0


def claim_targets(states: Iterable[ChannelState], minimum: int = 1) -> list[bytes]:
    return sorted(s.channel_id for s in states if claim_wanted(s, minimum))


def close_targets(states: Iterable[ChannelState]) -> list[bytes]:
    return sorted(s.channel_id for s in states if close_wanted(s))


def refusal(state: ChannelState | None, kind: OutboxKind | str) -> Refused | None:
    """What is refused before the core: a close of a channel without a voucher."""
    if kind == CLOSE and state is not None and not state.settled and state.ceiling == 0:
        message = "no voucher on this channel: nothing to close with; the payer's own close refunds it"
        return Refused(state.channel_id, NOTHING_TO_CLOSE, message)
    return None


def settlement_targets(
    channels: Iterable[StoredChannel],
    open_rows: Iterable[OutboxRow],
    now: float,
    idle_close_after: float | None,
    claim_min_unclaimed: int,
) -> tuple[list[bytes], list[bytes]]:
    """(closes, claims) the settlement policy queues at `now`: a channel idle for
    `idle_close_after` seconds is closed, else one with `claim_min_unclaimed` unclaimed is claimed;
    both only among "every channel" above, and not where a row of that kind is already open."""
    open_kinds = {(row.channel_id, row.kind) for row in open_rows if row.status.is_open}
    closes: list[bytes] = []
    claims: list[bytes] = []
    for stored in sorted(channels, key=lambda c: c.state.channel_id):
        state = stored.state
        if not close_wanted(state):
            continue
        idle = idle_close_after is not None and now - stored.updated_at >= idle_close_after
        if idle and (state.channel_id, CLOSE) not in open_kinds:
            closes.append(state.channel_id)
        elif claim_wanted(state, claim_min_unclaimed) and (state.channel_id, CLAIM) not in open_kinds:
            claims.append(state.channel_id)
    return closes, claims


# ------------------------------------------------------------------ carrying them out


class Operations:
    """Claims and closes over a node's runtime and store, for every way an operator reaches it."""

    def __init__(self, runtime: Runtime, store: Store) -> None:
        self.runtime = runtime
        self.store = store

    async def states(self) -> list[ChannelState]:
        """Every channel, ordered by id (a stable order for paging and for batches)."""
        return sorted((stored.state for stored in await self.store.list_channels()), key=lambda s: s.channel_id)

    async def one(self, kind: OutboxKind | str, channel: bytes) -> Queued | Refused:
        """A claim or close of one named channel."""
        [result] = await self._with_rows(kind, [await self.operate(kind, channel)])
        return result

    async def claim_all(self, minimum: int = 1, results: list[Queued | Refused] | None = None) -> Batch:
        """Claims every channel with at least `minimum` (at least 1) unclaimed."""
        if minimum < 1:
            raise ValueError("min must be at least 1")
        return await self.run(CLAIM, claim_targets(await self.states(), minimum), results)

    async def close_all(self, results: list[Queued | Refused] | None = None) -> Batch:
        """Closes every channel with a voucher that is neither settled nor closing by the receiver."""
        return await self.run(CLOSE, close_targets(await self.states()), results)

    async def close_listed(self, channels: Iterable[bytes], results: list[Queued | Refused] | None = None) -> Batch:
        """Closes the named channels (each once, in the order given); refusals are in `rejected`."""
        return await self.run(CLOSE, list(dict.fromkeys(channels)), results)

    async def run(
        self, kind: OutboxKind | str, targets: Iterable[bytes], results: list[Queued | Refused] | None = None
    ) -> Batch:
        """Queues `kind` on each target in turn. `results`, when given, receives each outcome as it
        is decided, so a caller still sees what was queued if the store fails half way."""
        results = [] if results is None else results
        for channel in targets:
            results.append(await self.operate(kind, channel))
        done = await self._with_rows(kind, results)
        return Batch(tuple(r for r in done if isinstance(r, Queued)), tuple(r for r in done if isinstance(r, Refused)))

    async def operate(self, kind: OutboxKind | str, channel: bytes) -> Queued | Refused:
        """One decision through the core (without the outbox row's details). `kind` is an
        `OutboxKind` or its text ("claim", "close"); anything else raises ValueError."""
        kind = _kind(kind)
        if kind == CLOSE:
            refused = refusal(await self.runtime.channel(channel), kind)
            if refused is not None:
                return refused
        effect = await self.runtime.operator(channel, OperatorClaim() if kind == CLAIM else OperatorClose())
        if isinstance(effect, Rejected):
            return Refused(channel, effect.code.value, effect.detail)
        return Queued(channel, kind, effect.amount)

    async def settle_due(
        self, now: float, idle_close_after: float | None, claim_min_unclaimed: int
    ) -> tuple[int, int]:
        """The settlement policy's round: queues its closes and claims; returns (claims, closes)."""
        closes, claims = settlement_targets(
            await self.store.list_channels(), await self.store.outbox(), now, idle_close_after, claim_min_unclaimed
        )
        closed = [isinstance(await self.operate(CLOSE, c), Queued) for c in closes]
        claimed = [isinstance(await self.operate(CLAIM, c), Queued) for c in claims]
        return sum(claimed), sum(closed)

    async def _with_rows(self, kind: OutboxKind | str, results: list[Queued | Refused]) -> list[Queued | Refused]:
        """Each queued item with its open outbox row (id, status, deadline)."""
        if not any(isinstance(r, Queued) for r in results):
            return list(results)
        rows = {r.channel_id: r for r in await self.store.outbox(OUTBOX_OPEN) if r.kind == kind}  # newest wins
        out: list[Queued | Refused] = []
        for result in results:
            row = rows.get(result.channel_id) if isinstance(result, Queued) else None
            if isinstance(result, Queued) and row is not None:
                result = dataclasses.replace(result, outbox_id=row.id, status=row.status, deadline=row.deadline)
            out.append(result)
        return out


def _kind(kind: OutboxKind | str) -> OutboxKind:
    try:
        return OutboxKind(kind)
    except ValueError:
        raise ValueError(f"unknown operation {kind!r}") from None


__all__ = [
    "CLAIM", "CLOSE", "NOTHING_TO_CLOSE", "Batch", "Operations", "Queued", "Refused", "claim_targets", "claim_wanted",
    "close_targets", "close_wanted", "refusal", "settlement_targets",
]  # fmt: skip
