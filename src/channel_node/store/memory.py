"""A store in a few dicts, for unit tests and throwaway demos. Same rules as SQLite, no durability."""

from __future__ import annotations

import dataclasses
import time
from typing import Unpack

from channel_node.store.base import (
    OUTBOX_OPEN,
    BlockRef,
    ChannelWrite,
    Charge,
    Cursor,
    OutboxItem,
    OutboxKind,
    OutboxRow,
    OutboxStatus,
    OutboxUpdate,
    PaymentLookup,
    Pin,
    StaleWrite,
    StoredChannel,
    StoreMismatch,
    fulfilled,
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

    async def open(self, pin: Pin) -> None:
        if self.pin is not None and self.pin != pin:
            raise StoreMismatch(f"store is pinned to {self.pin}, configuration says {pin}")
        self.pin = pin

    async def close(self) -> None:
        pass

    async def load_channel(self, channel_id: bytes) -> StoredChannel | None:
        return self._channels.get(channel_id)

    async def lookup_payment(
        self, channel_id: bytes, resource: str, payment_id: str | None, once: bool = True
    ) -> PaymentLookup:
        prior = self._payments.get((channel_id, payment_id)) if payment_id else None
        return PaymentLookup(unlocked=once and (channel_id, resource) in self._unlocks, prior_resource=prior)

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
        if "status" in fields:  # held as the enum, as SQLite's rows read back
            fields["status"] = OutboxStatus(fields["status"])
        self._outbox[row_id] = dataclasses.replace(self._outbox[row_id], **fields)

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
