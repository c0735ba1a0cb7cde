"""One channel for the runtime's tests over a store (tests/node, tests/core; docs/design.md,
"Layers"): the domain, receiver and payer they share, a channel of a given voucher key, its
vouchers, and a store opened for that domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.store import Pin, Store

DOMAIN = Domain(1337, b"\x0c" * 20)
RECEIVER = b"\x02" * 20
PAYER = b"\x01" * 20

S = TypeVar("S", bound=Store)


@dataclass(frozen=True)
class RuntimeChannel:
    key: bytes  # the voucher signer's
    config: ChannelConfig
    id: bytes

    def sign(self, amount: int, key: bytes | None = None) -> bytes:
        """A voucher signature for `amount` on this channel, by its key (or another)."""
        return sign_digest(self.key if key is None else key, voucher_digest(DOMAIN, self.id, amount))


def make_channel(seed: bytes, salt: int) -> RuntimeChannel:
    """PAYER's channel to RECEIVER under DOMAIN, its vouchers signed by keccak256(seed)."""
    key = keccak256(seed)
    config = ChannelConfig.create(PAYER, address_of_key(key), RECEIVER, None, 3600, salt)
    return RuntimeChannel(key, config, channel_id(DOMAIN, config))


async def opened(store: S) -> S:
    """`store`, opened for DOMAIN and RECEIVER."""
    await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
    return store
