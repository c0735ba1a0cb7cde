"""A store in a few dicts, for unit tests and throwaway demos. Same rules as SQLite, no durability."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Unpack

from channel_node.store.base import (
    OUTBOX_OPEN,
    BlockRef,
    ChannelWrite,
    Charge,
    Cursor,
    ExactRecord,
    ExactStatus,
    ExactWrite,
    OutboxItem,
    OutboxKind,
    OutboxRow,
    OutboxStatus,
    OutboxUpdate,
    PaymentLookup,
    Pin,
    RecordOutcome,
    SpendingQuery,
    StaleWrite,
    StoredChannel,
    StoreMismatch,
    check_outbox_update,
    exact_outbox_item,
    fulfilled,
    record_outcome,
    spending_lookup,
)


class MemoryStore:
    def __init__(self) -> None:
        self.pin: Pin | None = None
        self._channels: dict[bytes, StoredChannel] = {}
        self._charges: dict[bytes, list[Charge]] = {}
        self._unlocks: set[tuple[bytes, str]] = set()
        self._payments: dict[tuple[bytes, str], str] = {}
        self._cursor: Cursor | None = None
        self._outbox: dict[int, OutboxRow] = {}
        self._exact: dict[bytes, ExactRecord] = {}
        self._exact_ids: set[tuple[bytes, bytes, bytes]] = set()  # (token, payer, nonce): UNIQUE, as in SQLite

    async def open(self, pin: Pin) -> None:
        if self.pin is not None and self.pin != pin:
            raise StoreMismatch(f"store is pinned to {self.pin}, configuration says {pin}")
        self.pin = pin

    async def close(self) -> None:
        pass

    async def load_channel(self, channel_id: bytes) -> StoredChannel | None:
        return self._channels.get(channel_id)

    async def lookup_payment(
        self, channel_id: bytes, resource: str, payment_id: str | None, once: bool = True,
        spending: SpendingQuery | None = None,
    ) -> PaymentLookup:
        prior = self._payments.get((channel_id, payment_id)) if payment_id else None
        unlocked = once and (channel_id, resource) in self._unlocks
        if spending is None:
            return PaymentLookup(unlocked=unlocked, prior_resource=prior)
        paid, oldest, held = spending_lookup(self._charges.get(channel_id, []), spending)
        return PaymentLookup(unlocked, prior, paid, oldest, held)

    async def commit(self, write: ChannelWrite) -> int:
        channel_id = write.state.channel_id
        current = self._channels.get(channel_id)
        if (current.version if current else 0) != write.expected_version:
            raise StaleWrite(f"channel 0x{channel_id.hex()} changed since it was read")
        if write.charge is not None and write.charge.payment_id and (channel_id, write.charge.payment_id) in self._payments:
            raise StaleWrite(f"payment {write.charge.payment_id!r} is already recorded")
        version = write.expected_version + 1
        anchor = write.anchor if write.anchor is not None else (current.anchor if current else None)
        self._channels[channel_id] = StoredChannel(write.state, version, int(time.time()), anchor)
        if write.charge is not None:
            self._charges.setdefault(channel_id, []).append(write.charge)
            if write.charge.once:
                self._unlocks.add((channel_id, write.charge.resource))
            if write.charge.payment_id:
                self._payments[(channel_id, write.charge.payment_id)] = write.charge.resource
        for item in write.outbox:
            self._enqueue(channel_id, item)
        return version

    def _enqueue(self, channel_id: bytes, item: OutboxItem) -> None:
        open_row = next(
            (r for r in self._outbox.values() if r.channel_id == channel_id and r.kind == item.kind and r.status.is_open),
            None,
        )
        if open_row is None:
            row_id = len(self._outbox) + 1
            self._outbox[row_id] = OutboxRow(
                row_id, channel_id, OutboxKind(item.kind), item.amount, item.signature, item.deadline, OutboxStatus.PENDING,
                voucher_amount=item.voucher,
            )  # fmt: skip
        elif open_row.status == OutboxStatus.PENDING and open_row.amount < item.amount:
            self._outbox[open_row.id] = dataclasses.replace(
                open_row, amount=item.amount, signature=item.signature, deadline=item.deadline,
                voucher_amount=item.voucher,
            )  # fmt: skip

    async def channel_ids(self) -> set[bytes]:
        return set(self._channels)

    async def closing_channels(self) -> list[StoredChannel]:
        return [c for c in self._channels.values() if c.state.close_deadline is not None and not c.state.settled]

    async def anchored_channels(self) -> list[tuple[bytes, BlockRef]]:
        return [(cid, c.anchor) for cid, c in self._channels.items() if c.anchor is not None]

    async def clear_anchor(self, channel_id: bytes, anchor: BlockRef) -> bool:
        current = self._channels.get(channel_id)
        if current is None or current.anchor != anchor:
            return False
        self._channels[channel_id] = dataclasses.replace(current, anchor=None)
        return True

    async def cursor(self) -> Cursor | None:
        return self._cursor

    async def set_cursor(self, cursor: Cursor) -> None:
        self._cursor = cursor

    async def outbox(self, statuses: tuple[OutboxStatus, ...] = OUTBOX_OPEN) -> list[OutboxRow]:
        return [r for r in sorted(self._outbox.values(), key=lambda r: r.id) if r.status in statuses]

    async def update_outbox(self, row_id: int, **fields: Unpack[OutboxUpdate]) -> None:
        check_outbox_update(fields)
        if "status" in fields:  # held as the enum, as SQLite's rows read back
            fields["status"] = OutboxStatus(fields["status"])
        self._outbox[row_id] = dataclasses.replace(self._outbox[row_id], **fields)

    async def mark_outbox(self, rows: Sequence[OutboxRow], **fields: Unpack[OutboxUpdate]) -> bool:
        fields.pop("attempts", None)
        check_outbox_update(fields)
        if "status" in fields:
            fields["status"] = OutboxStatus(fields["status"])
        current = [self._outbox.get(row.id) for row in rows]
        if any(now is None or (now.status, now.attempts) != (OutboxStatus(row.status), row.attempts)
               for now, row in zip(current, rows, strict=True)):  # fmt: skip
            return False
        for now in current:
            assert now is not None
            self._outbox[now.id] = dataclasses.replace(dataclasses.replace(now, **fields), attempts=now.attempts + 1)
        return True

    async def complete_outbox(self, channel_id: bytes, claimed: int, settled: bool) -> int:
        done = 0
        for row in list(self._outbox.values()):
            if row.channel_id == channel_id and row.status.is_open and fulfilled(row.kind, row.amount, claimed, settled):
                self._outbox[row.id] = dataclasses.replace(row, status=OutboxStatus.DONE)
                done += 1
        return done

    async def list_channels(self) -> list[StoredChannel]:
        return list(self._channels.values())

    async def charges(self, channel_id: bytes) -> list[Charge]:
        return list(self._charges.get(channel_id, []))

    # ------------------------------------------------------------------ x402 `exact` sales

    async def record_exact(self, write: ExactWrite) -> tuple[ExactRecord, RecordOutcome]:
        key = write.key
        existing = self._exact.get(key)
        if existing is not None:
            return existing, record_outcome(existing, write)
        assert (write.token, write.payer, write.nonce) not in self._exact_ids  # the key is their hash
        record = ExactRecord(
            key, write.token, write.payer, write.nonce, write.receiver, write.value, write.valid_after, write.valid_before,
            write.signature, write.resource, write.price, ExactStatus.HELD, created_at=write.at,
        )  # fmt: skip
        self._exact[key] = record
        self._exact_ids.add((write.token, write.payer, write.nonce))
        self._enqueue(key, exact_outbox_item(write))
        return record, RecordOutcome.RECORDED

    async def exact_payment(self, key: bytes) -> ExactRecord | None:
        return self._exact.get(key)

    async def finish_exact(
        self, key: bytes, status: ExactStatus, tx_hash: bytes | None = None, block_number: int | None = None,
        gas_used: int | None = None, error: str | None = None,
    ) -> bool:
        record = self._exact.get(key)
        if record is None or record.status != ExactStatus.HELD or status == ExactStatus.HELD:
            return False
        self._exact[key] = dataclasses.replace(
            record, status=status, tx_hash=tx_hash, block_number=block_number, gas_used=gas_used, error=error
        )
        closed = OutboxStatus.DONE if status == ExactStatus.CONFIRMED else OutboxStatus.ABANDONED
        for row in list(self._outbox.values()):
            if row.channel_id == key and row.kind == OutboxKind.TRANSFER_AUTHORIZATION and row.status.is_open:
                self._outbox[row.id] = dataclasses.replace(row, status=closed, note=error or status.value)
        return True

    async def serve_exact(self, key: bytes) -> bool:
        record = self._exact.get(key)
        if record is None or record.status != ExactStatus.CONFIRMED or record.served:
            return False
        self._exact[key] = dataclasses.replace(record, served=True)
        return True

    async def exact_held(self) -> int:
        return sum(1 for r in self._exact.values() if r.status == ExactStatus.HELD)
