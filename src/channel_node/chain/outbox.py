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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

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
from channel_node.chain.contract import ChannelDepositClient
from channel_node.chain.reverts import as_revert
from channel_node.signing import ChannelConfig, to_compact
from channel_node.store import OutboxKind, OutboxRow, OutboxStatus, Store, fulfilled

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
    """How the sender carries out a row of one kind: the calldata of the row sent alone, and
    whether rows of the kind without a deadline share one `claimBatch` transaction."""

    calldata: Calldata
    batches: bool


# Outbox kind -> how it is executed: the one dispatch of the sender (the kind itself derives from the
# core's ContractSend type in `store.base.TO_OUTBOX`). Checked complete at import;
# tests/store/test_outbox_table.py checks every ContractSend reaches an executor.
EXECUTORS: Mapping[OutboxKind, Executor] = MappingProxyType({
    OutboxKind.CLAIM: Executor(_single("claim"), batches=True),
    OutboxKind.CLOSE: Executor(_single("closeByReceiver"), batches=False),
})  # fmt: skip
if set(EXECUTORS) != set(OutboxKind):  # pragma: no cover (an outbox kind nobody sends)
    raise ImportError(f"chain.outbox.EXECUTORS lacks {set(OutboxKind) - set(EXECUTORS)}")


def batchable(row: OutboxRow) -> bool:
    """Whether a row may share a batch: its kind batches and nothing hurries it (a defence's
    deadline sends it alone, first)."""
    return EXECUTORS[row.kind].batches and row.deadline is None


@dataclass
class SenderStats:
    sent: int = 0
    bumped: int = 0
    abandoned: int = 0
    balance: int = 0
    needed: int = 0  # gas cost of the open rows at current fees
    open_rows: int = 0

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
        self.stats = SenderStats()
        self._rebroadcast_done = False

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
            await asyncio.sleep(self.poll_interval)

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
        groups += [batch[i : i + self.batch_size] for i in range(0, len(batch), self.batch_size)]
        for group in groups:
            try:  # one failing row must not hold back the others (a defence may be behind it)
                await self._send(group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_send_failed", rows=[row.id for row in group], error=f"{type(exc).__name__}: {exc}")
        by_tx: dict[bytes, list[OutboxRow]] = {}
        for row in rows:
            if row.status == OutboxStatus.SENT and row.tx_hash:
                by_tx.setdefault(row.tx_hash, []).append(row)
        for group in by_tx.values():
            await self._follow(group)
        await self._check_balance(len(rows))

    # ------------------------------------------------------------------ sending

    async def _send(self, rows: list[OutboxRow], nonce: int | None = None, fees: Fees | None = None) -> None:
        """Signs one transaction for `rows` (one claim or close, or a batch of claims), records it
        on every row, then broadcasts it."""
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
        nonce, (max_fee, priority_fee) = full["nonce"], (fees.max_fee, fees.priority_fee)
        tx_hash, raw = self._signer.sign(full)
        for row, _ in live:  # durable before it leaves: a restart re-sends these exact bytes
            await self.store.update_outbox(
                row.id, status=OutboxStatus.SENT, tx_hash=tx_hash, raw_tx=raw, nonce=nonce, max_fee=max_fee,
                priority_fee=priority_fee, sent_at=int(time.time()), attempts=row.attempts + 1,
            )  # fmt: skip
        if not await self._broadcast(raw) and not await self._known(tx_hash):
            # Refused outright (no funds for gas, nonce in use): decide again next round with a
            # fresh nonce rather than wait for a transaction that no node holds.
            self._signer.nonces.forget()
            for row, _ in live:
                await self.store.update_outbox(row.id, status=OutboxStatus.PENDING, note="broadcast refused; retrying")
            return
        self.stats.sent += 1
        log.info("outbox_sent", kind=live[0][0].kind if len(live) == 1 else "claim_batch", channels=len(live),
                 amount=str(sum(row.amount for row, _ in live)), tx="0x" + tx_hash.hex(), nonce=nonce,
                 deadline=min((r.deadline for r, _ in live if r.deadline), default=None))  # fmt: skip

    def _calldata(self, live: list[tuple[OutboxRow, ChannelConfig]]) -> str:
        if len(live) == 1:
            row, config = live[0]
            return EXECUTORS[row.kind].calldata(self.client, row, config)
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
        for row in rows:
            if row.raw_tx:
                await self._broadcast(row.raw_tx)

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
