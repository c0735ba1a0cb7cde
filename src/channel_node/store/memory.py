"""A store in a few dicts, for unit tests and throwaway demos. Same rules as SQLite, no durability."""

from __future__ import annotations

from channel_node.store.base import (
    Charge,
    ChannelWrite,
    PaymentLookup,
    Pin,
    StaleWrite,
    StoredChannel,
    StoreMismatch,
)


class MemoryStore:
    def __init__(self) -> None:
        self.pin: Pin | None = None
        self._channels: dict[bytes, StoredChannel] = {}
        self._charges: dict[bytes, list[Charge]] = {}
        self._unlocks: set[tuple[bytes, str]] = set()
        self._payments: dict[tuple[bytes, str], str] = {}

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
        self._channels[channel_id] = StoredChannel(write.state, version)
        if write.charge is not None:
            self._charges.setdefault(channel_id, []).append(write.charge)
            if write.charge.once:
                self._unlocks.add((channel_id, write.charge.resource))
            if write.charge.payment_id:
                self._payments[(channel_id, write.charge.payment_id)] = write.charge.resource
        return version

    async def list_channels(self) -> list[StoredChannel]:
        return list(self._channels.values())

    async def charges(self, channel_id: bytes) -> list[Charge]:
        return list(self._charges.get(channel_id, []))
