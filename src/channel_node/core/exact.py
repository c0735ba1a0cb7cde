"""The rules of a sale under x402's `exact` scheme, where the node is its own facilitator
(docs/protocol.md, "The `exact` scheme (node)"). Pure and synchronous: the caller reads the chain
and the store and passes what they said (`ExactFacts`), and its own clock (`WallTime`); nothing
here does I/O. The one cryptographic step is recovering the authorization's signer, always in the
node's own token domain (`ExactTerms.domain`), never in a domain built from what the payer echoed.

Two clocks (docs/design.md, "Two clocks"; core/clocks.py): the token checks `block.timestamp`
against the window (`validAfter < t < validBefore`), so the window is compared with both the
node's wall time and the head block's chain time, and must outlast the later of the two by
`settle_margin` (the time the transfer takes to be mined). `authorization_too_long` bounds how long
the node holds an authorization (and so a nonce) it has not yet settled.

Each refusal has a stable code (`ExactRefusal`); the checks run in a fixed order, and the first
that fails decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from channel_node.core.clocks import ChainTime, WallTime
from channel_node.signing.eip712 import InvalidSignature
from channel_node.signing.eip3009 import (
    TokenDomain,
    TransferAuthorization,
    recover_authorizer,
    transfer_authorization_digest,
)


class Requirement(Protocol):
    """The `accepted` entry the payer echoed (wire/exact.py's `ExactRequirement`)."""

    @property
    def chain_id(self) -> int: ...

    @property
    def asset(self) -> bytes: ...

    @property
    def pay_to(self) -> bytes: ...


class ExactPayment(Protocol):
    """A parsed `exact` payment (wire/exact.py's `ExactPayment`; the core sits below wire/)."""

    @property
    def authorization(self) -> TransferAuthorization: ...

    @property
    def signature(self) -> bytes: ...

    @property
    def accepted(self) -> Requirement: ...

#: Seconds a payer's clock may run ahead of the node's when it dates `validBefore` (wall clock +
#: maxTimeoutSeconds): tolerated by `authorization_too_long`.
CLOCK_SKEW = 30


class ExactRefusal(StrEnum):
    """Why an `exact` payment is refused (the 402's `error`)."""

    WRONG_NETWORK = "wrong_network"
    WRONG_ASSET = "wrong_asset"
    WRONG_RECEIVER = "wrong_receiver"
    PRICE_BELOW_EXACT_MINIMUM = "price_below_exact_minimum"
    INSUFFICIENT_VALUE = "insufficient_value"
    AUTHORIZATION_NOT_YET_VALID = "authorization_not_yet_valid"
    AUTHORIZATION_EXPIRES = "authorization_expires"
    AUTHORIZATION_TOO_LONG = "authorization_too_long"
    INVALID_SIGNATURE = "invalid_signature"
    AUTHORIZATION_USED = "authorization_used"
    INSUFFICIENT_BALANCE = "insufficient_balance"


@dataclass(frozen=True)
class ExactTerms:
    """The node's own `exact` terms, fixed at start: its token's EIP-712 domain (name and version
    read from the token), who is paid, and the timing and price bounds of the settings."""

    domain: TokenDomain
    pay_to: bytes
    max_timeout_seconds: int
    settle_margin: int
    min_price: int = 0

    @property
    def network(self) -> str:
        return f"eip155:{self.domain.chain_id}"


@dataclass(frozen=True)
class ExactFacts:
    """What the chain and the store said about one authorization, read just before the rules."""

    head_time: ChainTime  # the latest block's timestamp
    used_on_chain: bool  # the token's authorizationState(from, nonce)
    balance: int  # the token's balanceOf(from)
    held: bool = False  # the store already holds this (token, payer, nonce) for another payment


@dataclass(frozen=True)
class ExactAccepted:
    payer: bytes  # the recovered signer, equal to authorization.from


@dataclass(frozen=True)
class ExactRefused:
    code: ExactRefusal
    detail: str


ExactVerdict = ExactAccepted | ExactRefused


def _refuse(code: ExactRefusal, detail: str) -> ExactRefused:
    return ExactRefused(code, detail)


def check_offline(payment: ExactPayment, terms: ExactTerms, price: int, now: WallTime) -> ExactVerdict:
    """The rules that need no chain read: terms, value, the window against wall time, the
    signature. A payment refused here costs the node no RPC call."""
    auth, accepted, domain = payment.authorization, payment.accepted, terms.domain
    if accepted.chain_id != domain.chain_id:
        return _refuse(ExactRefusal.WRONG_NETWORK, f"this node is on {terms.network}")
    if accepted.asset != domain.verifying_contract:
        return _refuse(ExactRefusal.WRONG_ASSET, "this node is paid in its own token")
    if auth.to != terms.pay_to or accepted.pay_to != terms.pay_to:
        return _refuse(ExactRefusal.WRONG_RECEIVER, "the authorization pays another address than this node's payTo")
    if price < terms.min_price:
        return _refuse(ExactRefusal.PRICE_BELOW_EXACT_MINIMUM, f"exact is sold from {terms.min_price}; pay with a channel")
    if auth.value < price:
        return _refuse(ExactRefusal.INSUFFICIENT_VALUE, f"the authorization's value is below the price {price}")
    if auth.valid_after >= now:
        return _refuse(ExactRefusal.AUTHORIZATION_NOT_YET_VALID, "validAfter is not yet past")
    if auth.valid_before < now + terms.settle_margin:
        return _refuse(ExactRefusal.AUTHORIZATION_EXPIRES, f"validBefore must leave {terms.settle_margin} s to settle")
    if auth.valid_before > now + terms.max_timeout_seconds + CLOCK_SKEW:
        return _refuse(ExactRefusal.AUTHORIZATION_TOO_LONG, f"validBefore is more than {terms.max_timeout_seconds} s away")
    try:
        signer = recover_authorizer(transfer_authorization_digest(domain, auth), payment.signature)
    except InvalidSignature as exc:
        return _refuse(ExactRefusal.INVALID_SIGNATURE, str(exc))
    if signer != auth.from_:
        return _refuse(ExactRefusal.INVALID_SIGNATURE, "the signature is not from the authorization's payer in this token's domain")
    return ExactAccepted(signer)


def check_exact(payment: ExactPayment, terms: ExactTerms, price: int, facts: ExactFacts, now: WallTime) -> ExactVerdict:
    """Every rule, in order: `check_offline`, then the window against the head's chain time, the
    nonce (on chain, or held by the node for another payment) and the payer's balance."""
    verdict = check_offline(payment, terms, price, now)
    if isinstance(verdict, ExactRefused):
        return verdict
    auth = payment.authorization
    if auth.valid_after >= facts.head_time:
        return _refuse(ExactRefusal.AUTHORIZATION_NOT_YET_VALID, "validAfter is not yet past in chain time")
    if auth.valid_before < facts.head_time + terms.settle_margin:
        return _refuse(ExactRefusal.AUTHORIZATION_EXPIRES, f"validBefore must leave {terms.settle_margin} s of chain time")
    if facts.used_on_chain or facts.held:
        return _refuse(ExactRefusal.AUTHORIZATION_USED, "this authorization's nonce is already used")
    if facts.balance < auth.value:
        return _refuse(ExactRefusal.INSUFFICIENT_BALANCE, "the payer's token balance is below the authorization's value")
    return verdict


__all__ = [
    "CLOCK_SKEW",
    "ExactAccepted",
    "ExactFacts",
    "ExactPayment",
    "ExactRefusal",
    "ExactRefused",
    "ExactTerms",
    "ExactVerdict",
    "check_exact",
    "check_offline",
]
