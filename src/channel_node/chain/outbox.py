"""Sends the outbox: every claim or close the core decided on, until a confirmed event shows it.

A row's life: `pending` (decided, committed with the channel state) -> the sender signs the
transaction, records hash, raw bytes, nonce and fees (`sent`), and only then broadcasts it, so a
crash at any point re-sends the very same transaction after a restart instead of a second one.
A transaction not mined after `bump_after` seconds is replaced (same nonce, fees raised by at least
12.5%, as nodes require). Fees, nonces, the gas margin and the replacement rule are the one
policy of `chain/accounts.py`, the contract client's too; the outbox signs with its
`LocalKeySender` and keeps the signed bytes before they leave. The watcher marks a row `done`
when a confirmed ChannelClaimed or ChannelSettled covers it; the sender also closes rows the chain
already fulfilled (someone else's claim, a settled channel). A row whose transaction would revert
for another reason is `abandoned` with the decoded error, loudly: it needs an operator.

The sender warns (log and `/healthz`) when its account cannot pay the gas of the open rows.

What collection costs (docs/economics.md, "Cost of collection"): every transaction the sender signs
is followed until it is mined; its receipt's gasUsed and effectiveGasPrice are then recorded on its
rows (a batch's gas shared among them, the first row taking the remainder, so the rows add up to the
transaction) and reported once to `on_gas` (`GasSpent`: the node's insights). It meters a
transaction even when the watcher has marked its rows done first, and the one of a fee bump's
replacements that was mined; a restart meters again the rows still sent (the same figures: writing
them twice changes nothing).

An x402 `exact` sale's row (kind `transfer_authorization`, docs/protocol.md "The `exact` scheme
(node)") is sent to the token, not the contract, alone and first (its deadline is validBefore), and
the sender itself finishes it, since no channel event covers it: its own receipt with the token's
Transfer(from, to, value) at the confirmation depth confirms the sale; a revert, or a simulation that
would revert, reads `authorizationState`: used by another transaction (a front-run) confirms the sale
with that transaction if it moved the value to us; cancelled, a balance short or a token that moved
nothing fails it; validBefore passed unmined expires it; a simulation that would revert with none
of those is tried again next round (a front-run may be pending). `on_exact_finished` wakes the
waiting request (node/exact.py).

With `exact_batcher` (`exact.batch_contract`, an ExactBatcher: chain/batcher.py) the sales open in a
round go together, the closest validBefore first, `exact_batch_max` per transaction, sent at once
(never held back for more; a lone sale goes straight to the token, which is cheaper). Each item is
simulated alone first, as a lone transfer is, and the same rules finish it from its own segment of
the batch's receipt: its ItemOutcome says whether the token's call returned, its Transfer logs and
the payee's balance over the block whether it paid; a failed item is resolved as a reverted lone
transfer is (front-run, cancel, balance, expiry), never blocking the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import structlog
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.providers.async_base import AsyncBaseProvider
from web3.types import TxParams, Wei

from channel_node.chain.accounts import (
    MIN_BUMP_DENOMINATOR,  # noqa: F401 (the replacement rule, importable from here too)
    MIN_BUMP_NUMERATOR,  # noqa: F401
    Fees,
    LocalKeySender,
    suggest_fees,
    with_gas_margin,
)
from channel_node.chain.batcher import (
    BatchItem,
    decode_transfer_all,
    item_segments,
    raw_destination,
    transfer_all_calldata,
)
from channel_node.chain.contract import ChannelDepositClient
from channel_node.chain.eip3009 import (
    AUTHORIZATION_CANCELED_TOPIC,
    AUTHORIZATION_USED_TOPIC,
    Eip3009Token,
    transfer_with_authorization_calldata,
    transfers_to,
)
from channel_node.chain.reverts import as_revert
from channel_node.signing import ChannelConfig, to_compact
from channel_node.store import ExactRecord, ExactStatus, OutboxKind, OutboxRow, OutboxStatus, Store, fulfilled

log = structlog.get_logger("channel_node.sender")

FULFILLED_ERRORS = {"NothingToClaim", "ChannelIsSettled"}  # the effect is already on chain

Calldata = Callable[[ChannelDepositClient, OutboxRow, ChannelConfig], str]


def _single(function: str) -> Calldata:
    """The calldata of one row sent alone: `function(config, voucher, amount, r, vs)`, the shape
    `claim` and `closeByReceiver` share. The row claims `amount` (what was charged) under the voucher
    its signature covers. A close with no voucher (amount 0) needs no signature: the contract
    refunds everything."""

    def calldata(client: ChannelDepositClient, row: OutboxRow, config: ChannelConfig) -> str:
        if row.signature:
            r, vs = to_compact(row.signature)
            voucher = row.voucher
        else:
            (r, vs), voucher = (b"\0" * 32, b"\0" * 32), row.amount
        return str(client.contract.encode_abi(function, [config.as_abi_tuple(), voucher, row.amount, r, vs]))

    return calldata


@dataclass(frozen=True)
class Executor:
    """How the sender carries out a row of one kind: the calldata of the row sent alone (None: not
    a call of the deposit contract; `OutboxSender._send_authorization` builds it from the sale's
    record), and whether rows of the kind without a deadline share one `claimBatch` transaction."""

    calldata: Calldata | None
    batches: bool


# Outbox kind -> how it is executed: the one dispatch of the sender (the kind itself derives from the
# core's ContractSend type in `store.base.TO_OUTBOX`). Checked complete at import;
# tests/store/test_outbox_table.py checks every ContractSend reaches an executor.
EXECUTORS: Mapping[OutboxKind, Executor] = MappingProxyType({
    OutboxKind.CLAIM: Executor(_single("claim"), batches=True),
    OutboxKind.CLOSE: Executor(_single("closeByReceiver"), batches=False),
    # The token's transferWithAuthorization: urgent (deadline = validBefore), never in a claimBatch;
    # with an ExactBatcher, with other sales (`OutboxSender._send_authorizations`).
    OutboxKind.TRANSFER_AUTHORIZATION: Executor(None, batches=False),
})  # fmt: skip
if set(EXECUTORS) != set(OutboxKind):  # pragma: no cover (an outbox kind nobody sends)
    raise ImportError(f"chain.outbox.EXECUTORS lacks {set(OutboxKind) - set(EXECUTORS)}")


def batchable(row: OutboxRow) -> bool:
    """Whether a row may share a batch: its kind batches and nothing hurries it (a defence's
    deadline sends it alone, first)."""
    return EXECUTORS[row.kind].batches and row.deadline is None


GAS_KINDS = ("claim", "close", "defence", "transfer_authorization")  # what `GasSpent.kind` says
METER_MAX_AGE = 24 * 3600.0  # seconds a signed transaction is looked for before it is given up as never mined


def gas_kind(rows: list[OutboxRow]) -> str:
    """What a transaction's gas was spent on: a defence is a claim or close sent against a payer's
    close (its row carries the close's deadline); else the rows' kind."""
    kind = rows[0].kind
    if kind != OutboxKind.TRANSFER_AUTHORIZATION and any(row.deadline is not None for row in rows):
        return "defence"
    return str(kind)


def gas_shares(gas_used: int, rows: int) -> list[int]:
    """A transaction's gas split over its rows: equal shares, the first row taking the remainder,
    so the shares add up to `gas_used` exactly."""
    share, rest = divmod(gas_used, rows)
    return [share + rest] + [share] * (rows - 1)


@dataclass(frozen=True)
class GasSpent:
    """One mined transaction of the sender's (success or revert: the gas is spent either way)."""

    tx_hash: bytes
    kind: str  # one of GAS_KINDS
    gas_used: int
    gas_price: int  # effectiveGasPrice, wei per gas
    rows: int  # outbox rows (channels, sales) it carried
    at: float  # unix time the sender saw it mined

    @property
    def wei(self) -> int:
        return self.gas_used * self.gas_price


@dataclass
class _Unmetered:
    rows: list[OutboxRow]
    since: float


@dataclass
class SenderStats:
    sent: int = 0
    bumped: int = 0
    abandoned: int = 0
    balance: int = 0
    needed: int = 0  # gas cost of the open rows at current fees
    open_rows: int = 0
    exact_sent: int = 0  # transferWithAuthorization transactions this sender signed
    exact_gas_used: int = 0  # gas our own exact transfers used (confirmed or reverted)
    gas_spent_wei: int = 0  # what the transactions this sender saw mined cost (since it started)

    @property
    def gas_ok(self) -> bool:
        return self.balance >= self.needed


class OutboxSender:
    def __init__(
        self,
        w3: AsyncWeb3[AsyncBaseProvider],
        client: ChannelDepositClient,
        store: Store,
        private_key: bytes,
        bump_after: float = 30.0,
        poll_interval: float = 2.0,
        default_gas: int = 150_000,
        batch_size: int = 50,
        confirmations: int = 1,
        exact_batcher: bytes | None = None,
        exact_batch_max: int = 20,
    ) -> None:
        self.w3 = w3
        self.client = client
        self.store = store
        # The outbox is this key's only sender in the node: its nonces are the signer's policy.
        self._signer = LocalKeySender(private_key)
        self.address = self._signer.address
        self.bump_after = bump_after
        self.poll_interval = poll_interval
        self.default_gas = default_gas
        self.batch_size = batch_size
        self.confirmations = confirmations  # the depth an exact sale's Transfer must reach (the head counts as 1)
        self.exact_batcher = exact_batcher  # an ExactBatcher: open exact sales share a transaction
        self.exact_batch_max = exact_batch_max
        self.stats = SenderStats()
        self._rebroadcast_done = False
        self._wake = asyncio.Event()
        # Whether this process may send now (it leads the chain side: docs/scaling.md); asked before
        # every transaction is recorded. Always, for a node alone on its database.
        self.leading: Callable[[], bool] = lambda: True
        # Called with an exact sale's key and the gas our transfer used (0: none) once its status is
        # final (node/exact.py wakes its waiters).
        self.on_exact_finished: Callable[[bytes, int], None] | None = None
        # Called once per mined transaction with what it cost (the node's insights record it).
        self.on_gas: Callable[[GasSpent], None] | None = None
        self._unmetered: dict[bytes, _Unmetered] = {}  # signed transactions not yet seen mined

    def __repr__(self) -> str:  # never the key
        return f"OutboxSender({self.address})"

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sender_tick_failed", error=f"{type(exc).__name__}: {exc}")
            try:  # the next round: after poll_interval, or at once when a new exact sale is recorded
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()

    def restarted(self) -> None:
        """This process (again) leads the chain side: its first round re-broadcasts every row left
        sent, by this process or an earlier leader (docs/scaling.md, "One chain side")."""
        self._rebroadcast_done = False
        self._signer.nonces.forget()

    def wake(self) -> None:
        """Runs the next round now (a new `exact` sale waits for its transfer)."""
        self._wake.set()

    async def tick(self) -> None:
        rows = await self.store.outbox()
        if not self._rebroadcast_done:
            await self._rebroadcast([row for row in rows if row.status == OutboxStatus.SENT])
            self._rebroadcast_done = True
        pending = [row for row in rows if row.status == OutboxStatus.PENDING]
        # Defences (a deadline) and closes go alone and first; claims without a deadline share
        # one claimBatch transaction per `batch_size` channels (one payout, a fraction of the gas).
        urgent = sorted((r for r in pending if not batchable(r)), key=_urgency)
        batch = [r for r in pending if batchable(r)]
        groups = [[row] for row in urgent]
        exact = [r for r in urgent if r.kind == OutboxKind.TRANSFER_AUTHORIZATION]
        if self.exact_batcher is not None and len(exact) > 1:
            # Open exact sales together (already sorted, closest validBefore first), in deadline order
            # among the other urgent rows: a batch is sent now, never held back for more sales.
            step = self.exact_batch_max
            groups = [[row] for row in urgent if row.kind != OutboxKind.TRANSFER_AUTHORIZATION]
            groups += [exact[i : i + step] for i in range(0, len(exact), step)]
            groups.sort(key=lambda group: _urgency(group[0]))
        groups += [batch[i : i + self.batch_size] for i in range(0, len(batch), self.batch_size)]
        for group in groups:
            try:  # one failing row must not hold back the others (a defence may be behind it)
                await self._send(group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_send_failed", rows=[row.id for row in group], error=f"{type(exc).__name__}: {exc}")
        if any(r.kind == OutboxKind.TRANSFER_AUTHORIZATION for r in pending):
            rows = await self.store.outbox()  # follow a sale's transfer in the round that sent it
        by_tx: dict[bytes, list[OutboxRow]] = {}
        for row in rows:
            if row.status == OutboxStatus.SENT and row.tx_hash:
                by_tx.setdefault(row.tx_hash, []).append(row)
        for group in by_tx.values():
            await self._follow(group)
        await self._meter()
        await self._check_balance(len(rows))

    # ------------------------------------------------------------------ sending

    async def _take_back(self, rows: list[OutboxRow]) -> None:
        """A transaction `_record` recorded on `rows` was refused outright (no funds for gas, nonce
        in use): the rows go back to pending to be decided again next round with a fresh nonce,
        but only if they still hold that record (compare and set): another sender that took them
        over meanwhile, and may have broadcast their bytes, keeps them."""
        recorded = [replace(row, status=OutboxStatus.SENT, attempts=row.attempts + 1) for row in rows]
        await self.store.mark_outbox(recorded, status=OutboxStatus.PENDING, note="broadcast refused; retrying")

    async def _record(self, rows: list[OutboxRow], tx_hash: bytes, raw: bytes, nonce: int, fees: Fees) -> bool:
        """Records a signed transaction on its rows before it leaves (a restart re-sends these exact
        bytes), only while this process leads and only if no other sender recorded one on them since
        they were read (`Store.mark_outbox`, compare and set). False: it must not be broadcast; its
        nonce is given back (docs/scaling.md, "One chain side")."""
        recorded = self.leading() and await self.store.mark_outbox(
            rows, status=OutboxStatus.SENT, tx_hash=tx_hash, raw_tx=raw, nonce=nonce, max_fee=fees.max_fee,
            priority_fee=fees.priority_fee, sent_at=int(time.time()),
        )  # fmt: skip
        if not recorded:
            self._signer.nonces.forget()
            log.warning("outbox_not_recorded", rows=[row.id for row in rows], nonce=nonce,
                        reason="not leading" if not self.leading() else "another sender recorded first")  # fmt: skip
        return recorded

    async def _send(self, rows: list[OutboxRow], nonce: int | None = None, fees: Fees | None = None) -> None:
        """Signs one transaction for `rows` (one claim or close, or a batch of claims), records it
        on every row, then broadcasts it."""
        if rows[0].kind == OutboxKind.TRANSFER_AUTHORIZATION:
            if len(rows) > 1:
                await self._send_authorizations(rows, nonce, fees)
                return
            for row in rows:
                await self._send_authorization(row, nonce, fees)
            return
        live: list[tuple[OutboxRow, ChannelConfig]] = []
        for row in rows:
            stored = await self.store.load_channel(row.channel_id)
            if stored is None:
                await self.store.update_outbox(row.id, status=OutboxStatus.ABANDONED, note="channel not in the store")
                continue
            on_chain = await self.client.get_channel(row.channel_id)
            if fulfilled(row.kind, row.amount, on_chain.claimed, on_chain.settled):
                await self.store.update_outbox(row.id, status=OutboxStatus.DONE, note="already on chain")
                continue
            live.append((row, stored.state.config))
        if not live:
            return
        by_authorizer: dict[bytes, list[OutboxRow]] = {}
        for row, config in live:
            by_authorizer.setdefault(config.receiver_authorizer, []).append(row)
        if len(by_authorizer) > 1:  # a batch names one authorizer: channels naming another go apart
            for group in by_authorizer.values():
                await self._send(group)
            return
        data = self._calldata(live)
        tx: TxParams = {"from": self.address, "to": self.client.address, "data": HexStr(data), "value": Wei(0)}
        try:
            gas = with_gas_margin(await self.w3.eth.estimate_gas(tx))
        except Exception as exc:
            if len(live) > 1:  # one bad item must not hold the others back: send them one by one
                for row, _ in live:
                    await self._send([row])
                return
            await self._refused(live[0][0], exc)
            return
        fees = fees or await suggest_fees(self.w3)
        full = await self._signer.prepare(self.w3, {**tx, "gas": gas}, nonce=nonce, fees=fees)
        nonce = full["nonce"]
        tx_hash, raw = self._signer.sign(full)
        if not await self._record([row for row, _ in live], tx_hash, raw, nonce, fees):
            return
        self._track(tx_hash, [row for row, _ in live])
        if not await self._broadcast(raw) and not await self._known(tx_hash):
            # Refused outright (no funds for gas, nonce in use): decide again next round with a
            # fresh nonce rather than wait for a transaction that no node holds.
            self._signer.nonces.forget()
            self._unmetered.pop(tx_hash, None)
            await self._take_back([row for row, _ in live])
            return
        self.stats.sent += 1
        log.info("outbox_sent", kind=live[0][0].kind if len(live) == 1 else "claim_batch", channels=len(live),
                 amount=str(sum(row.amount for row, _ in live)), tx="0x" + tx_hash.hex(), nonce=nonce,
                 deadline=min((r.deadline for r, _ in live if r.deadline), default=None))  # fmt: skip

    def _calldata(self, live: list[tuple[OutboxRow, ChannelConfig]]) -> str:
        if len(live) == 1:
            row, config = live[0]
            calldata = EXECUTORS[row.kind].calldata
            assert calldata is not None, "a channel row's kind calls the deposit contract"
            return calldata(self.client, row, config)
        first = live[0][1]
        items = []
        for row, config in live:
            r, vs = to_compact(row.signature)
            items.append((to_checksum_address(config.payer), to_checksum_address(config.signer), config.close_delay,
                          config.salt, row.voucher, row.amount, r, vs))  # fmt: skip
        return str(self.client.contract.encode_abi(
            "claimBatch",
            [to_checksum_address(first.receiver), to_checksum_address(first.receiver_authorizer),
             to_checksum_address(first.token), items],
        ))  # fmt: skip

    async def _follow(self, rows: list[OutboxRow]) -> None:
        """Follows one sent transaction (shared by all rows of a batch)."""
        first = rows[0]
        if first.kind == OutboxKind.TRANSFER_AUTHORIZATION:
            batched = self._batched(first)
            if batched is not None:
                await self._follow_batch(rows, *batched)
                return
            for row in rows:
                await self._follow_authorization(row)
            return
        try:
            receipt = await self.w3.eth.get_transaction_receipt(HexBytes(first.tx_hash or b""))
        except Exception:  # web3 raises TransactionNotFound while it is not mined
            receipt = None
        if receipt is not None:
            if receipt["status"] == 0:
                # Reverted on chain: maybe someone else's claim got there first. Decide afresh.
                for row in rows:
                    await self.store.update_outbox(row.id, status=OutboxStatus.PENDING, note="reverted; deciding again")
            return  # mined: the watcher marks the rows done when the confirmed events arrive
        if time.time() - (first.sent_at or 0) < self.bump_after:
            return
        current = await suggest_fees(self.w3)
        fees = Fees(first.max_fee or 0, first.priority_fee or 0, current.legacy).bumped(current)
        self.stats.bumped += 1
        log.warning("outbox_fee_bump", channels=len(rows), nonce=first.nonce, max_fee=str(fees.max_fee),
                    priority_fee=str(fees.priority_fee), attempt=first.attempts + 1)  # fmt: skip
        await self._send(rows, nonce=first.nonce, fees=fees)

    async def _refused(self, row: OutboxRow, exc: Exception) -> None:
        name = _revert_name(exc)
        if name in FULFILLED_ERRORS:
            await self.store.update_outbox(row.id, status=OutboxStatus.DONE, note=f"chain says {name}")
            return
        if name is None:  # not a revert: the node or the network failed; try again next tick
            raise exc
        self.stats.abandoned += 1
        await self.store.update_outbox(row.id, status=OutboxStatus.ABANDONED, note=f"would revert: {name}")
        log.error("outbox_abandoned", channel="0x" + row.channel_id.hex(), kind=row.kind, error=name)

    async def _rebroadcast(self, rows: list[OutboxRow]) -> None:
        by_tx: dict[bytes, list[OutboxRow]] = {}
        for row in rows:
            if row.tx_hash:
                by_tx.setdefault(row.tx_hash, []).append(row)
        for tx_hash, group in by_tx.items():  # sent before a restart: metered once mined
            self._track(tx_hash, group)
        for row in rows:
            if row.raw_tx:
                await self._broadcast(row.raw_tx)

    # ------------------------------------------------------------------ what it costs

    def _track(self, tx_hash: bytes, rows: list[OutboxRow]) -> None:
        """A transaction just signed for `rows`: meter it once it is mined."""
        self._unmetered[tx_hash] = _Unmetered(list(rows), time.monotonic())

    async def _meter(self) -> None:
        """Records the cost of every tracked transaction now mined, on its rows and to `on_gas`.
        A mined one ends the wait for the others that carried the same rows (fee bumps that lost)."""
        for tx_hash in list(self._unmetered):
            pending = self._unmetered.get(tx_hash)
            if pending is None:  # dropped below: a replacement of one just metered
                continue
            try:
                receipt = await self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except Exception:  # not mined (yet), or the node failed: look again next round
                receipt = None
            if receipt is None:
                if time.monotonic() - pending.since > METER_MAX_AGE:
                    del self._unmetered[tx_hash]
                continue
            gas_used = int(receipt["gasUsed"])
            gas_price = int(receipt.get("effectiveGasPrice") or 0)
            rows = pending.rows
            for row, share in zip(rows, gas_shares(gas_used, len(rows)), strict=True):
                await self.store.update_outbox(row.id, gas_used=share, gas_price=gas_price)
            ids = {row.id for row in rows}
            for other in [h for h, p in self._unmetered.items() if ids & {r.id for r in p.rows}]:
                del self._unmetered[other]
            spent = GasSpent(tx_hash, gas_kind(rows), gas_used, gas_price, len(rows), time.time())
            self.stats.gas_spent_wei += spent.wei
            log.info("outbox_gas", kind=spent.kind, tx="0x" + tx_hash.hex(), gas_used=gas_used,
                     gas_price=str(gas_price), rows=len(rows))  # fmt: skip
            if self.on_gas is not None:
                self.on_gas(spent)

    async def _broadcast(self, raw: bytes) -> bool:
        try:
            await self.w3.eth.send_raw_transaction(raw)
            return True
        except Exception as exc:  # already known / mined / no funds: the caller checks what the node holds
            log.warning("outbox_broadcast_refused", error=f"{type(exc).__name__}: {exc}"[:200])
            return False

    async def _known(self, tx_hash: bytes) -> bool:
        try:
            await self.w3.eth.get_transaction(HexBytes(tx_hash))
            return True
        except Exception:
            return False

    # ------------------------------------------------------------------ x402 `exact` transfers

    async def _held(self, row: OutboxRow) -> ExactRecord | None:
        """The sale behind an authorization row while it is held; a row without one is closed."""
        record = await self.store.exact_payment(row.channel_id)
        if record is None:
            await self.store.update_outbox(row.id, status=OutboxStatus.ABANDONED, note="no exact sale in the store")
            return None
        if record.status != ExactStatus.HELD:  # finished already (finish_exact closed its row)
            return None
        return record

    async def _ready(self, row: OutboxRow) -> tuple[ExactRecord, TxParams, int] | None:
        """A held sale whose transfer, sent alone, would go through: its record, the transaction
        and its gas; else the rules resolve it (or leave it for next round) and None."""
        record = await self._held(row)
        if record is None:
            return None
        token = Eip3009Token(self.w3, record.token)
        head = await self.w3.eth.get_block("latest")
        if int(head["timestamp"]) >= record.valid_before:
            await self._resolve_authorization(record, token, "authorization_expired")
            return None
        data = transfer_with_authorization_calldata(
            record.payer, record.receiver, record.value, record.valid_after, record.valid_before, record.nonce,
            record.signature,
        )  # fmt: skip
        tx: TxParams = {"from": self.address, "to": token.checksum, "data": HexStr("0x" + data.hex()), "value": Wei(0)}
        try:
            gas = with_gas_margin(await self.w3.eth.estimate_gas(tx))
        except Exception as exc:
            name = _revert_name(exc)
            if name is None:  # the node or the network failed: try again next round
                raise
            await self._resolve_authorization(record, token, "transfer_failed", simulated=True)
            return None
        return record, tx, gas

    async def _send_authorization(self, row: OutboxRow, nonce: int | None = None, fees: Fees | None = None) -> None:
        ready = await self._ready(row)
        if ready is None:
            return
        record, tx, gas = ready
        fees = fees or await suggest_fees(self.w3)
        full = await self._signer.prepare(self.w3, {**tx, "gas": gas}, nonce=nonce, fees=fees)
        tx_hash, raw = self._signer.sign(full)
        if not await self._record([row], tx_hash, raw, full["nonce"], fees):
            return
        self._track(tx_hash, [row])
        if not await self._broadcast(raw) and not await self._known(tx_hash):
            self._signer.nonces.forget()
            self._unmetered.pop(tx_hash, None)
            await self._take_back([row])
            return
        self.stats.sent += 1
        self.stats.exact_sent += 1
        log.info("outbox_sent", kind=row.kind, amount=str(record.value), tx="0x" + tx_hash.hex(), nonce=full["nonce"],
                 deadline=record.valid_before)  # fmt: skip

    async def _send_authorizations(self, rows: list[OutboxRow], nonce: int | None = None, fees: Fees | None = None) -> None:
        """Several sales in one ExactBatcher transaction: each simulated alone first (one that would
        revert is resolved by the lone transfer's rules and left out); one left goes alone."""
        assert self.exact_batcher is not None, "only with exact.batch_contract"
        live: list[tuple[OutboxRow, ExactRecord]] = []
        for row in rows:
            ready = await self._ready(row)
            if ready is not None:
                live.append((row, ready[0]))
        by_token: dict[bytes, list[tuple[OutboxRow, ExactRecord]]] = {}
        for row, record in live:
            by_token.setdefault(record.token, []).append((row, record))
        for token, group in by_token.items():  # a batch names one token (a replacement's rows share it)
            if len(group) == 1:  # alone: cheaper than a batch of one (docs/gas.md)
                await self._send_authorization(group[0][0], nonce, fees)
            else:
                await self._send_batch(token, group, nonce, fees)

    async def _send_batch(
        self, token: bytes, group: list[tuple[OutboxRow, ExactRecord]], nonce: int | None, fees: Fees | None
    ) -> None:
        assert self.exact_batcher is not None
        items = [BatchItem(r.payer, r.receiver, r.value, r.valid_after, r.valid_before, r.nonce, r.signature)
                 for _, r in group]  # fmt: skip
        data = transfer_all_calldata(token, items)
        tx: TxParams = {"from": self.address, "to": to_checksum_address(self.exact_batcher),
                        "data": HexStr("0x" + data.hex()), "value": Wei(0)}  # fmt: skip
        gas = with_gas_margin(await self.w3.eth.estimate_gas(tx))
        fees = fees or await suggest_fees(self.w3)
        full = await self._signer.prepare(self.w3, {**tx, "gas": gas}, nonce=nonce, fees=fees)
        tx_hash, raw = self._signer.sign(full)
        if not await self._record([row for row, _ in group], tx_hash, raw, full["nonce"], fees):
            return
        self._track(tx_hash, [row for row, _ in group])
        if not await self._broadcast(raw) and not await self._known(tx_hash):
            self._signer.nonces.forget()
            self._unmetered.pop(tx_hash, None)
            await self._take_back([row for row, _ in group])
            return
        self.stats.sent += 1
        self.stats.exact_sent += 1
        log.info("outbox_sent", kind="exact_batch", sales=len(group), amount=str(sum(r.value for _, r in group)),
                 tx="0x" + tx_hash.hex(), nonce=full["nonce"], deadline=min(r.valid_before for _, r in group))  # fmt: skip

    def _batched(self, row: OutboxRow) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """(batcher, [(payer, nonce) per item]) when the row's transaction went to an ExactBatcher
        (read from the signed bytes, so a restart, or a changed setting, still knows); else None."""
        if not row.raw_tx:
            return None
        to, data = raw_destination(row.raw_tx)
        decoded = decode_transfer_all(data)
        return None if decoded is None else (to, decoded[1])

    async def _follow_batch(self, rows: list[OutboxRow], batcher: bytes, items: list[tuple[bytes, bytes]]) -> None:
        """Follows one batch transaction: each sale from its own item's outcome and logs."""
        held = [(row, record) for row in rows if (record := await self._held(row)) is not None]
        if not held:
            return
        first = rows[0]
        try:
            receipt = await self.w3.eth.get_transaction_receipt(HexBytes(first.tx_hash or b""))
        except Exception:  # not mined (yet)
            receipt = None
        if receipt is not None:
            share = int(receipt["gasUsed"]) // max(len(items), 1)  # each sale's part of the gas
            if receipt["status"] != 1:  # the whole batch reverted (not an item's doing: items are caught)
                for row, record in held:
                    token = Eip3009Token(self.w3, record.token)
                    await self._resolve_authorization(record, token, "transfer_failed", share, simulated=True)
                    if await self._held(row) is not None:
                        await self.store.update_outbox(row.id, status=OutboxStatus.PENDING, note="batch reverted; retrying")
                return
            segments = item_segments(list(receipt["logs"]), batcher)
            paid: list[ExactRecord] = []
            for _, record in held:
                token = Eip3009Token(self.w3, record.token)
                index = items.index((record.payer, record.nonce)) if (record.payer, record.nonce) in items else -1
                success, logs = segments.get(index, (False, []))
                if not success:  # this item reverted inside the batch: what happened to its authorization?
                    await self._resolve_authorization(record, token, "transfer_failed", share)
                elif transfers_to(logs, record.token, record.payer, record.receiver) < record.value:
                    await self._finish(record, ExactStatus.FAILED, gas_used=share, error="transfer_failed")
                else:
                    paid.append(record)
            if paid and not await self._paid_together(paid, int(receipt["blockNumber"])):
                for record in paid:  # logged transfers the balances do not show: a token that moves nothing
                    await self._finish(record, ExactStatus.FAILED, gas_used=share, error="transfer_failed")
                return
            if paid and await self._deep_enough(int(receipt["blockNumber"])):
                for record in paid:
                    await self._finish(record, ExactStatus.CONFIRMED, bytes(receipt["transactionHash"]),
                                       int(receipt["blockNumber"]), share)  # fmt: skip
            return
        head = await self.w3.eth.get_block("latest")
        waiting: list[OutboxRow] = []
        for row, record in held:
            if int(head["timestamp"]) >= record.valid_before:
                await self._resolve_authorization(record, Eip3009Token(self.w3, record.token), "authorization_expired")
            else:
                waiting.append(row)
        if not waiting or time.time() - (first.sent_at or 0) < self.bump_after:
            return
        current = await suggest_fees(self.w3)
        fees = Fees(first.max_fee or 0, first.priority_fee or 0, current.legacy).bumped(current)
        self.stats.bumped += 1
        log.warning("outbox_fee_bump", kind="exact_batch", sales=len(waiting), nonce=first.nonce,
                    max_fee=str(fees.max_fee), attempt=first.attempts + 1)  # fmt: skip
        if len(waiting) > 1:
            await self._send_authorizations(waiting, nonce=first.nonce, fees=fees)
        else:
            await self._send_authorization(waiting[0], nonce=first.nonce, fees=fees)

    async def _paid_together(self, paid: list[ExactRecord], block: int) -> bool:
        """Each payee's balance grew over the block by at least what the batch's items logged
        paying it (the lone transfer's `_paid` rule, summed: several items pay one payee)."""
        owed: dict[tuple[bytes, bytes], int] = {}
        for record in paid:
            owed[(record.token, record.receiver)] = owed.get((record.token, record.receiver), 0) + record.value
        for (token_address, receiver), value in owed.items():
            token = Eip3009Token(self.w3, token_address)
            after = await token.balance_of(receiver, block)
            before = await token.balance_of(receiver, block - 1) if block > 0 else 0
            if after - before < value:
                return False
        return True

    async def _follow_authorization(self, row: OutboxRow) -> None:
        record = await self._held(row)
        if record is None:
            return
        token = Eip3009Token(self.w3, record.token)
        try:
            receipt = await self.w3.eth.get_transaction_receipt(HexBytes(row.tx_hash or b""))
        except Exception:  # not mined (yet)
            receipt = None
        if receipt is not None:
            if receipt["status"] == 1:
                if not await self._paid(token, record, receipt):  # succeeded and moved nothing to us: never paid
                    await self._finish(record, ExactStatus.FAILED, gas_used=int(receipt["gasUsed"]), error="transfer_failed")
                    return
                if not await self._deep_enough(int(receipt["blockNumber"])):
                    return
                await self._finish(record, ExactStatus.CONFIRMED, bytes(receipt["transactionHash"]),
                                   int(receipt["blockNumber"]), int(receipt["gasUsed"]))  # fmt: skip
                return
            # Reverted: our gas is spent whatever happened to the authorization.
            await self._resolve_authorization(record, token, "transfer_failed", int(receipt["gasUsed"]))
            return
        head = await self.w3.eth.get_block("latest")
        if int(head["timestamp"]) >= record.valid_before:
            await self._resolve_authorization(record, token, "authorization_expired")
            return
        if time.time() - (row.sent_at or 0) < self.bump_after:
            return
        current = await suggest_fees(self.w3)
        fees = Fees(row.max_fee or 0, row.priority_fee or 0, current.legacy).bumped(current)
        self.stats.bumped += 1
        log.warning("outbox_fee_bump", kind=row.kind, nonce=row.nonce, max_fee=str(fees.max_fee), attempt=row.attempts + 1)
        await self._send_authorization(row, nonce=row.nonce, fees=fees)

    async def _resolve_authorization(
        self, record: ExactRecord, token: Eip3009Token, reason: str, spent: int = 0, simulated: bool = False
    ) -> None:
        """Our transfer did not (or would not) go through: what happened to the authorization?
        `spent`: the gas our reverted transaction used (recorded on the sale whatever the outcome).
        `simulated`: only the estimate reverted; with the authorization unused, the balance there and
        the window open, something not yet mined (a front-run, a cancel) may explain it, so the row
        stays pending and is tried again next round, until one of those shows or validBefore passes."""
        if await token.authorization_state(record.payer, record.nonce):
            for event in await token.authorization_logs(record.payer, record.nonce):
                if event.topics[0] == AUTHORIZATION_CANCELED_TOPIC:
                    await self._finish(record, ExactStatus.FAILED, gas_used=spent, error="authorization_canceled")
                    return
                if event.topics[0] == AUTHORIZATION_USED_TOPIC:  # someone else submitted it first
                    receipt = await self.w3.eth.get_transaction_receipt(HexBytes(event.tx_hash))
                    if not await self._paid(token, record, receipt):
                        await self._finish(record, ExactStatus.FAILED, gas_used=spent, error="transfer_failed")
                    elif await self._deep_enough(event.block_number):
                        await self._finish(record, ExactStatus.CONFIRMED, event.tx_hash, event.block_number, spent)
                    return
            return  # used, but its log is not visible yet: look again next round
        head = await self.w3.eth.get_block("latest")
        # Unused, and ours reverted or would: once either clock is past validBefore it never will
        # (a pending block's time is about the wall clock, and chain time only grows).
        if max(int(head["timestamp"]), int(time.time())) >= record.valid_before:
            await self._finish(record, ExactStatus.EXPIRED, gas_used=spent, error="authorization_expired")
        elif await token.balance_of(record.payer) < record.value:
            await self._finish(record, ExactStatus.FAILED, gas_used=spent, error="insufficient_balance")
        elif simulated:
            log.warning("exact_transfer_would_revert", payer=to_checksum_address(record.payer), retry="next round")
        else:
            await self._finish(record, ExactStatus.FAILED, gas_used=spent, error=reason)

    async def _paid(self, token: Eip3009Token, record: ExactRecord, receipt: Any) -> bool:
        """Whether a mined transaction paid the sale: the token's Transfer(payer -> payee) logs in it
        carry the value, and the payee's balance grew by at least the value in its block (a token
        that logs a Transfer and moves nothing is caught here; docs/security.md, "x402 `exact`: the
        node as its own facilitator")."""
        if transfers_to(list(receipt["logs"]), record.token, record.payer, record.receiver) < record.value:
            return False
        block = int(receipt["blockNumber"])
        after = await token.balance_of(record.receiver, block)
        before = await token.balance_of(record.receiver, block - 1) if block > 0 else 0
        return after - before >= record.value

    async def _deep_enough(self, block: int) -> bool:
        return block + self.confirmations - 1 <= int(await self.w3.eth.block_number)

    async def _finish(
        self, record: ExactRecord, status: ExactStatus, tx_hash: bytes | None = None, block: int | None = None,
        gas_used: int | None = None, error: str | None = None,
    ) -> None:
        finished = await self.store.finish_exact(record.key, status, tx_hash, block, gas_used, error)
        if finished:
            if gas_used:
                self.stats.exact_gas_used += gas_used
            (log.info if status == ExactStatus.CONFIRMED else log.warning)(
                "exact_finished", payer=to_checksum_address(record.payer), status=status.value, error=error,
                tx="0x" + tx_hash.hex() if tx_hash else None, gas_used=gas_used,
            )  # fmt: skip
        if self.on_exact_finished is not None:
            self.on_exact_finished(record.key, (gas_used or 0) if finished else 0)

    # ------------------------------------------------------------------ balance

    async def _check_balance(self, open_rows: int) -> None:
        """`open_rows`: the rows this tick started with (sending keeps them open until confirmed)."""
        self.stats.balance = int(await self.w3.eth.get_balance(to_checksum_address(self.address)))
        self.stats.open_rows = open_rows
        # Fees matter only when something is waiting to be paid for: no extra RPC call otherwise.
        self.stats.needed = open_rows * self.default_gas * (await suggest_fees(self.w3)).max_fee if open_rows else 0
        if open_rows and not self.stats.gas_ok:
            log.error("gas_balance_low", address=self.address, balance=str(self.stats.balance),
                      needed=str(self.stats.needed), open_rows=open_rows)  # fmt: skip


def _urgency(row: OutboxRow) -> tuple[int, int]:
    return (row.deadline if row.deadline is not None else 1 << 62, row.id)


def _revert_name(exc: BaseException) -> str | None:
    revert = as_revert(exc, "outbox")
    if revert is None:
        return None
    return revert.error_name or revert.reason or "revert"
