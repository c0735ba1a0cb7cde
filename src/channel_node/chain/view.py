"""Reads channels from the chain at the confirmation depth (the runtime's `ChainView`)."""

from __future__ import annotations

from web3 import AsyncWeb3

from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.runtime import ChainChannel, ChainUnavailable


class Web3ChainView:
    """`confirmations` counts the block itself: 1 trusts the head, 2 waits for one block on top."""

    def __init__(self, w3: AsyncWeb3, contract_address: str, confirmations: int) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.w3 = w3
        self.confirmations = confirmations
        self.contract = w3.eth.contract(address=contract_address, abi=channel_deposit_artifact().abi)

    async def confirmed_block(self) -> int:
        head = await self.w3.eth.block_number
        return max(0, head - self.confirmations + 1)

    async def confirmed_channel(self, channel_id: bytes) -> ChainChannel | None:
        try:
            block = await self.confirmed_block()
            deposited, claimed, deadline, settled = await self.contract.functions.getChannel(channel_id).call(
                block_identifier=block
            )
        except Exception as exc:  # any transport or node error: the caller answers "try again"
            raise ChainUnavailable(f"could not read channel from the chain: {type(exc).__name__}") from exc
        if deposited == 0:
            return None
        return ChainChannel(deposited, claimed, deadline or None, bool(settled))
