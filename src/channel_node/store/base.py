"""What the node keeps durably, and the contract every store implementation honours.

A `ChannelWrite` is one request's outcome: the channel's new state plus the charge it made. It is
applied atomically and only if the channel's version is still the one it was read at (compare and
set), so two writers can never both spend the same credit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, TypedDict, Unpack, get_args

from channel_node.core import ChainTime, ChannelState, ContractSend, ContractSendClaim, ContractSendClose, Effect
from channel_node.errors import ConfigError, StateError, UsageError
from channel_node.signing.eip712 import keccak256


class StoreError(StateError):
    """Base class of store failures the caller can act on."""


class StoreMismatch(StoreError, ConfigError):
    """The database belongs to another chain, contract or receiver than the configuration says."""


class StoreLocked(StoreError, UsageError):
    """Another node process holds this database."""


class StaleWrite(StoreError):
    """The channel changed since it was read (another writer): reload and retry."""


@dataclass(frozen=True)
class Pin:
    """What a database is bound to. Checked at every start: a node must never mix chains."""

    chain_id: int
    contract: bytes
    receiver: bytes


@dataclass(frozen=True)
class BlockRef:
    """A block by number and hash: what a chain figure was read at (docs/security.md, "Reorganisations")."""

    block: int
    block_hash: bytes


@dataclass(frozen=True)
class StoredChannel:
    state: ChannelState
    version: int  # 0 means "not in the store yet"
    updated_at: int = 0  # unix seconds of the last write (activity), where the store keeps it
    # The block a direct chain read of this channel's figures was made at, until the watcher's
    # cursor covers it with that block still canonical; None when the figures come from logs at or
    # below the cursor.
    anchor: BlockRef | None = None


@dataclass(frozen=True)
class Charge:
    resource: str
    amount: int
    payment_id: str | None
    once: bool  # bought once per channel (an article): recorded as an unlock
    at: int
    # Caps and passes (docs/protocol.md, "Caps and passes"): the cap the charge counts toward; the
    # pass it bought (`pass_until` set: the pass is valid in [at, pass_until)) or that covered the
    # read (`pass_until` None).
    cap_group: str | None = None
    pass_name: str | None = None
    pass_until: int | None = None


class OutboxKind(StrEnum):
    """What an outbox row sends. Stored as this text (the `kind` column)."""

    CLAIM = "claim"
    CLOSE = "close"
    # An x402 `exact` sale's transferWithAuthorization: channel_id is the authorization's key
    # (`authorization_key`), amount its value, signature its 65 bytes, deadline its validBefore.
    TRANSFER_AUTHORIZATION = "transfer_authorization"


class OutboxStatus(StrEnum):
    """A row's life (chain/outbox.py): pending -> sent -> done, or abandoned. Stored as this text."""

    PENDING = "pending"  # decided, committed with the channel state, not yet signed
    SENT = "sent"  # signed and recorded, broadcast (maybe again after a restart or a fee bump)
    DONE = "done"  # a confirmed chain state fulfils it
    ABANDONED = "abandoned"  # would revert for a reason the chain does not fulfil: needs an operator

    @property
    def is_open(self) -> bool:
        """Still to be carried out: the one definition (`OUTBOX_OPEN`, the migration's partial index
        `outbox_open` says the same in SQL, and a test checks they agree)."""
        return self in OUTBOX_OPEN


OUTBOX_OPEN: tuple[OutboxStatus, ...] = (OutboxStatus.PENDING, OutboxStatus.SENT)


def fulfilled(kind: OutboxKind, amount: int, claimed: int, settled: bool) -> bool:
    """Whether a chain state (the channel's claimed total, whether it is settled) has done what an
    outbox row of `kind` for `amount` asks: the one rule the stores (`complete_outbox`, after a
    confirmed claim or settlement) and the sender (before it signs) apply. A settled channel needs
    nothing more; a claim is done once the claimed total reaches its amount; a close only once settled."""
    if kind == OutboxKind.TRANSFER_AUTHORIZATION:  # no channel state fulfils it: the sender finishes it
        return False
    return settled or (kind == OutboxKind.CLAIM and claimed >= amount)


@dataclass(frozen=True)
class OutboxItem:
    """A transaction the core decided on, committed with the channel state that caused it."""

    kind: OutboxKind
    amount: int  # the claimed total to reach: what was charged
    signature: bytes
    deadline: ChainTime | None = None
    voucher_amount: int | None = None  # the voucher `signature` covers; None: `amount` itself

    @property
    def voucher(self) -> int:
        return self.amount if self.voucher_amount is None else self.voucher_amount


def _claim_item(send: ContractSendClaim) -> OutboxItem:
    return OutboxItem(OutboxKind.CLAIM, send.amount, send.signature, send.deadline, send.voucher_amount)


def _close_item(send: ContractSendClose) -> OutboxItem:
    return OutboxItem(OutboxKind.CLOSE, send.amount, send.signature, voucher_amount=send.voucher_amount)


# The one mapping from a core ContractSend to the outbox row that carries it: the row's kind derives
# from the effect's type here and nowhere else. Checked complete at import.
TO_OUTBOX: Mapping[type[ContractSend], Callable[..., OutboxItem]] = MappingProxyType(
    {ContractSendClaim: _claim_item, ContractSendClose: _close_item}
)
if set(TO_OUTBOX) != set(get_args(ContractSend)):  # pragma: no cover (a new ContractSend without a row)
    raise ImportError(f"store.base.TO_OUTBOX lacks {set(get_args(ContractSend)) - set(TO_OUTBOX)}")


def outbox_item(send: ContractSend) -> OutboxItem:
    """The outbox row for one ContractSend."""
    return TO_OUTBOX[type(send)](send)


def outbox_items(effects: Iterable[Effect]) -> tuple[OutboxItem, ...]:
    """The transactions among effects, one per kind; of several claims only the highest matters."""
    items: dict[OutboxKind, OutboxItem] = {}
    for effect in effects:
        if not isinstance(effect, (ContractSendClaim, ContractSendClose)):
            continue
        item = outbox_item(effect)
        if item.kind not in items or items[item.kind].amount <= item.amount:
            items[item.kind] = item
    return tuple(items.values())


@dataclass(frozen=True)
class OutboxRow:
    id: int
    channel_id: bytes
    kind: OutboxKind
    amount: int
    signature: bytes
    deadline: ChainTime | None
    status: OutboxStatus
    tx_hash: bytes | None = None
    raw_tx: bytes | None = None
    nonce: int | None = None
    max_fee: int | None = None
    priority_fee: int | None = None
    sent_at: int | None = None
    attempts: int = 0
    note: str | None = None
    voucher_amount: int | None = None  # the voucher `signature` covers; None (older rows): `amount`
    # What the row's mined transaction cost (its share of a batch): the receipt's gasUsed and
    # effectiveGasPrice in wei; None until the sender sees it mined (docs/economics.md).
    gas_used: int | None = None
    gas_price: int | None = None

    @property
    def voucher(self) -> int:
        return self.amount if self.voucher_amount is None else self.voucher_amount


class OutboxUpdate(TypedDict, total=False):
    """The columns of an outbox row the sender may set (`Store.update_outbox`)."""

    status: OutboxStatus
    tx_hash: bytes | None
    raw_tx: bytes | None
    nonce: int | None
    max_fee: int | None
    priority_fee: int | None
    sent_at: int | None
    attempts: int
    note: str | None
    gas_used: int | None
    gas_price: int | None


OUTBOX_MUTABLE = frozenset(OutboxUpdate.__annotations__)  # the columns the sender may set


def check_outbox_update(fields: OutboxUpdate) -> None:
    """Refuses a column the sender may not set: every store's `update_outbox` and `mark_outbox`."""
    unknown = set(fields) - OUTBOX_MUTABLE
    if unknown:
        raise ValueError(f"outbox columns {sorted(unknown)} cannot be updated")


@dataclass(frozen=True)
class ChannelWrite:
    state: ChannelState
    expected_version: int  # the version the state was derived from; 0 inserts a new channel
    charge: Charge | None = None
    outbox: tuple[OutboxItem, ...] = ()
    anchor: BlockRef | None = None  # set the channel's anchor (None keeps the stored one)


@dataclass(frozen=True)
class Cursor:
    """How far the watcher has applied confirmed logs, and that block's hash (to notice a reorg)."""

    block: int
    block_hash: bytes


@dataclass(frozen=True)
class SpendingQuery:
    """What a capped or pass-covered read asks the store, in the same lookup as its unlock: the
    channel's charges in `cap_group` at or after `since` and before `until` (None: no cap; `until`
    None: no end), and which of `passes` it holds at `now` (valid after it, however late by this
    clock it was bought: docs/security.md, "Caps and passes: the cap boundary and pass replay").
    A calendar period's `until` is its end, so a charge another process made in the next period (a
    clock a little ahead) is never counted in this one; a rolling window has none, so such a charge
    is counted (the sum over any N days stays under the cap: docs/protocol.md)."""

    cap_group: str | None
    since: int
    passes: tuple[str, ...]
    now: int
    until: int | None = None


@dataclass(frozen=True)
class PaymentLookup:
    """What the core needs to know about a request's resource and payment identifier, and, for a
    `SpendingQuery`, the channel's standing: `cap_paid` (the sum of the group's charges since the
    query's `since`), `cap_oldest` (the earliest of those above 0, for a rolling period's reset),
    `held_passes` (name -> the latest `pass_until` beyond `now`)."""

    unlocked: bool
    prior_resource: str | None
    cap_paid: int = 0
    cap_oldest: int | None = None
    held_passes: Mapping[str, int] = field(default_factory=dict)

    @property
    def pass_until(self) -> int | None:
        """The latest end among the held passes (derived: the stores keep only `held_passes`)."""
        return max(self.held_passes.values(), default=None)


def spending_lookup(charges: Iterable[Charge], query: SpendingQuery) -> tuple[int, int | None, dict[str, int]]:
    """(cap_paid, cap_oldest, held_passes) of `query` over a channel's charges: the one definition,
    which the memory store applies as it is and the SQL stores spell as queries."""
    paid, oldest, held = 0, None, dict[str, int]()
    wanted = set(query.passes)
    for charge in charges:
        in_window = charge.at >= query.since and (query.until is None or charge.at < query.until)
        if query.cap_group is not None and charge.cap_group == query.cap_group and in_window:
            paid += charge.amount
            if charge.amount > 0 and (oldest is None or charge.at < oldest):
                oldest = charge.at
        until = charge.pass_until
        # Held whenever it ends after `now`, even if bought "after" it: another process whose clock
        # is a little ahead sold it, and this one must neither sell it again nor charge what it covers.
        if charge.pass_name in wanted and until is not None and until > query.now:
            assert charge.pass_name is not None
            held[charge.pass_name] = max(held.get(charge.pass_name, 0), until)
    return paid, oldest, held


# ------------------------------------------------------------------ x402 `exact` sales


def authorization_key(token: bytes, payer: bytes, nonce: bytes) -> bytes:
    """An EIP-3009 authorization's identity on chain as 32 bytes: its rows' key (exact_payments'
    auth_key, its outbox row's channel_id)."""
    if len(token) != 20 or len(payer) != 20 or len(nonce) != 32:
        raise ValueError("token and payer are 20 bytes, nonce 32")
    return keccak256(token + payer + nonce)


class ExactStatus(StrEnum):
    """An `exact` sale's life: held (recorded; its transfer is queued or on its way) -> confirmed
    (the token's Transfer to us is at the confirmation depth), failed (never paid: cancelled, balance
    short, a token that moved nothing) or expired (validBefore passed unmined). Never back to held."""

    HELD = "held"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"


class RecordOutcome(StrEnum):
    RECORDED = "recorded"  # a new row (and its outbox row)
    JOINED = "joined"  # the same authorization for the same resource: the retry waits for the same transfer
    USED = "used"  # the nonce is held for another payment: `authorization_used`


@dataclass(frozen=True)
class ExactWrite:
    """What the node records for an accepted `exact` payment, before it sends the transfer."""

    token: bytes
    payer: bytes
    nonce: bytes
    receiver: bytes
    value: int
    valid_after: int
    valid_before: int
    signature: bytes
    resource: str
    price: int
    at: int

    @property
    def key(self) -> bytes:
        return authorization_key(self.token, self.payer, self.nonce)


@dataclass(frozen=True)
class ExactRecord:
    key: bytes
    token: bytes
    payer: bytes
    nonce: bytes
    receiver: bytes
    value: int
    valid_after: int
    valid_before: int
    signature: bytes
    resource: str
    price: int
    status: ExactStatus
    tx_hash: bytes | None = None
    block_number: int | None = None
    gas_used: int | None = None
    error: str | None = None
    served: bool = False
    created_at: int = 0


def record_outcome(existing: ExactRecord, write: ExactWrite) -> RecordOutcome:
    """A second record of a held authorization: the very same payment (resource, signature and
    authorization) for a request not yet answered joins the wait; anything else is a replay
    (`authorization_used`)."""
    same = (existing.resource, existing.signature, existing.receiver, existing.value, existing.valid_after,
            existing.valid_before) == (write.resource, write.signature, write.receiver, write.value, write.valid_after,
                                       write.valid_before)  # fmt: skip
    if same and not existing.served:
        return RecordOutcome.JOINED
    return RecordOutcome.USED


def exact_outbox_item(write: ExactWrite) -> OutboxItem:
    """The outbox row that carries an `exact` sale's transfer: urgent (a deadline), never batched
    with claims (with `exact.batch_contract`, with other sales: chain/outbox.py)."""
    return OutboxItem(OutboxKind.TRANSFER_AUTHORIZATION, write.value, write.signature, ChainTime(write.valid_before))


class Store(Protocol):
    async def open(self, pin: Pin) -> None: ...

    async def close(self) -> None: ...

    async def load_channel(self, channel_id: bytes) -> StoredChannel | None: ...

    async def lookup_payment(
        self, channel_id: bytes, resource: str, payment_id: str | None, once: bool = True,
        spending: SpendingQuery | None = None,
    ) -> PaymentLookup:
        """`once=False` (a per-request resource) skips the unlock lookup: such resources never unlock.
        `spending`: also the channel's cap and pass standing (`spending_lookup` defines it)."""
        ...

    async def commit(self, write: ChannelWrite) -> int:
        """Applies the write durably and returns the channel's new version; raises StaleWrite."""
        ...

    async def list_channels(self) -> list[StoredChannel]: ...

    async def channel_ids(self) -> set[bytes]: ...

    async def closing_channels(self) -> list[StoredChannel]:
        """Channels with a payer's close pending and not settled: the ones to defend. Not a
        `channel_status`: a channel the receiver is closing is defended too while the payer's
        close is pending (its status is RECEIVER_CLOSING)."""
        ...

    async def charges(self, channel_id: bytes) -> list[Charge]: ...

    async def cursor(self) -> Cursor | None: ...

    async def set_cursor(self, cursor: Cursor) -> None: ...

    async def anchored_channels(self) -> list[tuple[bytes, BlockRef]]:
        """Channels whose figures were read at a block the watcher has not yet covered."""
        ...

    async def clear_anchor(self, channel_id: bytes, anchor: BlockRef) -> bool:
        """Clears the channel's anchor if it is still `anchor` (the cursor covered it); returns
        whether it did. Figures and version are untouched."""
        ...

    async def outbox(self, statuses: tuple[OutboxStatus, ...] = OUTBOX_OPEN) -> list[OutboxRow]: ...

    async def update_outbox(self, row_id: int, **fields: Unpack[OutboxUpdate]) -> None:
        """Sets columns of one row (status, tx_hash, raw_tx, nonce, fees, sent_at, attempts, note, gas_used,
        gas_price)."""
        ...

    async def mark_outbox(self, rows: Sequence[OutboxRow], **fields: Unpack[OutboxUpdate]) -> bool:
        """Sets `fields` on every row of `rows`, all or none, compare and set: only if each row's
        status and attempts are still those of `rows` (as the caller read them), adding one to each
        row's attempts; returns whether it did. The sender records a signed transaction this way
        (status, hash, raw bytes, nonce, fees, sent_at), and takes one back to pending the same way,
        so a second sender (an old leader waking up) that read the same rows never records, and so
        never broadcasts, a transaction of its own (docs/scaling.md, "One chain side")."""
        ...

    async def complete_outbox(self, channel_id: bytes, claimed: int, settled: bool) -> int:
        """Marks done the open rows a confirmed chain state has fulfilled; returns how many."""
        ...

    # -- x402 `exact` sales (docs/protocol.md, "The `exact` scheme (node)")

    async def record_exact(self, write: ExactWrite) -> tuple[ExactRecord, RecordOutcome]:
        """Records an accepted authorization and its outbox row in one transaction (RECORDED), or
        answers the row already holding its (token, payer, nonce): JOINED or USED (`record_outcome`)."""
        ...

    async def exact_payment(self, key: bytes) -> ExactRecord | None: ...

    async def finish_exact(
        self, key: bytes, status: ExactStatus, tx_hash: bytes | None = None, block_number: int | None = None,
        gas_used: int | None = None, error: str | None = None,
    ) -> bool:
        """Moves a held sale to its final status and closes its outbox row (done when confirmed,
        abandoned otherwise), in one transaction; False when it was not held any more."""
        ...

    async def serve_exact(self, key: bytes) -> bool:
        """Marks a confirmed sale's one request answered (compare and set): True for the one caller
        that may deliver it, False for any other."""
        ...

    async def exact_held(self) -> int:
        """How many sales are held (transfers in flight)."""
        ...
