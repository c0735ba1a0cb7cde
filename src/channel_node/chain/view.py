"""Reads channels from the chain at the confirmation depth (the runtime's `ChainView`)."""

from __future__ import annotations

from web3 import AsyncWeb3

from channel_node.chain.client import ChannelDepositClient
from channel_node.runtime import ChainChannel, ChainUnavailable


class Web3ChainView:
    """`confirmations` counts the block itself: 1 trusts the head, 2 waits for one block on top."""

    def __init__(self, w3: AsyncWeb3, contract_address: str, confirmations: int) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.w3 = w3
        self.confirmations = confirmations
        self.client = ChannelDepositClient(w3, contract_address)

    async def confirmed_block(self) -> int:
        head = await self.w3.eth.block_number
        return max(0, head - self.confirmations + 1)

    async def confirmed_channel(self, channel_id: bytes) -> ChainChannel | None:
        try:
            on_chain = await self.client.get_channel(channel_id, block=await self.confirmed_block())
        except Exception as exc:  # any transport or node error: the caller answers "try again"
            raise ChainUnavailable(f"could not read channel from the chain: {type(exc).__name__}") from exc
        if on_chain.deposited == 0:
            return None
        return ChainChannel(on_chain.deposited, on_chain.claimed, on_chain.close_deadline, on_chain.settled)
