"""Reads channels from the chain at the confirmation depth (the runtime's `ChainView`).

Every read is tied to the block it was made at: the block is looked up by number first, then the
contract is called at that block's hash (EIP-1898), so the figures and the hash cannot disagree even
if the chain reorganises between the two requests. The hash travels with the figures into the store,
and the watcher reads the channel again if that block stops being canonical (docs/security.md,
"Reorganisations").
"""

from __future__ import annotations

from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound
from web3.providers.async_base import AsyncBaseProvider

from channel_node.chain.contract import ChannelDepositClient
from channel_node.chain.ports import ChainChannel, ChainUnavailable
from channel_node.store import BlockRef


async def block_ref(w3: AsyncWeb3[AsyncBaseProvider], number: int) -> BlockRef:
    """The canonical block at `number` (raises BlockNotFound if the chain is shorter)."""
    block = await w3.eth.get_block(max(number, 0))
    return BlockRef(int(block["number"]), bytes(block["hash"]))


async def canonical_hash(w3: AsyncWeb3[AsyncBaseProvider], number: int) -> bytes | None:
    """The hash of the canonical block at `number`, or None if the chain has no such block."""
    try:
        return (await block_ref(w3, number)).block_hash
    except BlockNotFound:
        return None


async def channel_at(client: ChannelDepositClient, channel_id: bytes, ref: BlockRef) -> ChainChannel:
    """The channel's figures at exactly that block (by hash), zeros when it has no deposit there."""
    # web3 takes the hash's bytes as an EIP-1898 block hash; contract.BlockId does not list bytes yet.
    on_chain = await client.get_channel(channel_id, block=ref.block_hash)  # type: ignore[arg-type]  # see above
    return ChainChannel(
        on_chain.deposited, on_chain.claimed, on_chain.close_deadline, on_chain.settled, ref.block, ref.block_hash
    )


class Web3ChainView:
    """`confirmations` counts the block itself: 1 trusts the head, 2 waits for one block on top."""

    def __init__(
        self, w3: AsyncWeb3[AsyncBaseProvider], contract_address: str, confirmations: int, client: ChannelDepositClient | None = None
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.w3 = w3
        self.confirmations = confirmations
        self.client = client or ChannelDepositClient(w3, contract_address)

    async def confirmed_block(self) -> int:
        head = await self.w3.eth.block_number
        return max(0, head - self.confirmations + 1)

    async def confirmed_channel(self, channel_id: bytes) -> ChainChannel | None:
        try:
            ref = await block_ref(self.w3, await self.confirmed_block())
            on_chain = await channel_at(self.client, channel_id, ref)
        except Exception as exc:  # any transport or node error: the caller answers "try again"
            raise ChainUnavailable(f"could not read channel from the chain: {type(exc).__name__}") from exc
        if on_chain.deposited == 0:
            return None
        return on_chain

    async def is_canonical(self, ref: BlockRef) -> bool:
        try:
            return await canonical_hash(self.w3, ref.block) == ref.block_hash
        except Exception as exc:
            raise ChainUnavailable(f"could not read a block from the chain: {type(exc).__name__}") from exc
