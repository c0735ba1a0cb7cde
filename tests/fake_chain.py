"""A small in-memory chain with reorgs, answering the calls the chain view and the watcher make.

Blocks hold deposits (a channel's first one opens it); every block keeps the contract's state after
it, so a read by block hash returns that block's figures even once a reorg has made it non-canonical
(as a real node does for blocks it still knows). `reorg(depth, new_blocks)` drops the last `depth`
blocks and appends one block per entry of `new_blocks` (each a list of deposits), with hashes that
differ from the dropped ones even for the same content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from web3.exceptions import BlockNotFound

from channel_node.chain.logs import ChannelDeposited, ChannelOpened, CloseRequested
from channel_node.chain.ports import OnChainChannel
from channel_node.signing import ChannelConfig, Domain, channel_id, keccak256

ZERO_ADDRESS = "0x" + "00" * 20
CONTRACT = "0x" + "c0" * 20


@dataclass(frozen=True)
class Deposit:
    config: ChannelConfig
    amount: int


@dataclass(frozen=True)
class RequestClose:
    """The payer's unilateral close: a deadline `close_delay` seconds after the block's time."""

    config: ChannelConfig


@dataclass
class Block:
    number: int
    hash: bytes
    parent: bytes
    timestamp: int
    txs: tuple[Deposit | RequestClose, ...]
    state: dict[bytes, int] = field(default_factory=dict)  # channel id -> total deposited after this block
    closing: dict[bytes, int] = field(default_factory=dict)  # channel id -> close deadline after this block
    logs: list = field(default_factory=list)


class FakeChain:
    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.forks = 0
        genesis = Block(0, keccak256(b"genesis"), b"\0" * 32, 1_700_000_000, ())
        self.canonical: list[Block] = [genesis]
        self.known: dict[bytes, Block] = {genesis.hash: genesis}
        self.calls = 0
        self.on_call = None  # a hook run before each answered call (to move the chain mid-poll)

    # ------------------------------------------------------------------ chain operations

    @property
    def head(self) -> int:
        return self.canonical[-1].number

    def mine(self, txs: list[Deposit] | tuple = ()) -> Block:
        parent = self.canonical[-1]
        number = parent.number + 1
        digest = keccak256(parent.hash + number.to_bytes(8, "big") + self.forks.to_bytes(8, "big") + repr(txs).encode())
        block = Block(
            number, digest, parent.hash, parent.timestamp + 12, tuple(txs), dict(parent.state), dict(parent.closing)
        )
        for index, tx in enumerate(txs):
            cid = channel_id(self.domain, tx.config)
            common = dict(block_number=number, log_index=index, tx_hash=keccak256(digest + bytes([index])), channel_id=cid)
            if isinstance(tx, RequestClose):
                if block.state.get(cid, 0) and cid not in block.closing:
                    block.closing[cid] = block.timestamp + tx.config.close_delay
                    block.logs.append(CloseRequested(**common, deadline=block.closing[cid]))
                continue
            before = block.state.get(cid, 0)
            block.state[cid] = before + tx.amount
            if before == 0:
                c = tx.config
                block.logs.append(ChannelOpened(
                    **common, payer=_addr(c.payer), receiver=_addr(c.receiver), signer=_addr(c.signer),
                    token=_addr(c.token), close_delay=c.close_delay, salt=c.salt, deposited=tx.amount,
                    receiver_authorizer=_addr(c.receiver_authorizer),
                ))  # fmt: skip
            else:
                block.logs.append(ChannelDeposited(**common, amount=tx.amount, total_deposited=before + tx.amount))
        self.canonical.append(block)
        self.known[block.hash] = block
        return block

    def mine_empty(self, blocks: int) -> None:
        for _ in range(blocks):
            self.mine()

    def reorg(self, depth: int, new_blocks: list[list[Deposit]]) -> list[Block]:
        """Replaces the last `depth` blocks (not genesis) by `new_blocks`; returns the dropped ones."""
        depth = min(depth, len(self.canonical) - 1)
        if depth == 0 and not new_blocks:
            return []
        self.forks += 1
        dropped = self.canonical[len(self.canonical) - depth :]
        del self.canonical[len(self.canonical) - depth :]
        for txs in new_blocks:
            self.mine(txs)
        return dropped

    def deposited(self, cid: bytes, block: int | None = None) -> int:
        """The canonical chain's total deposited for a channel at a block (the head by default)."""
        number = self.head if block is None else max(0, min(block, self.head))
        return self.canonical[number].state.get(cid, 0)

    def close_deadline(self, cid: bytes, confirmations: int) -> int | None:
        """The canonical chain's pending close deadline at the confirmation depth."""
        return self.canonical[max(0, self.head - confirmations + 1)].closing.get(cid)

    def confirmed_deposited(self, cid: bytes, confirmations: int) -> int:
        return self.deposited(cid, self.head - confirmations + 1)

    # ------------------------------------------------------------------ what the node calls

    def _tick(self) -> None:
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self)

    def _block(self, ident) -> Block:
        if isinstance(ident, (bytes, bytearray)):
            block = self.known.get(bytes(ident))
        elif ident == "latest":
            block = self.canonical[-1]
        else:
            number = int(ident)
            block = self.canonical[number] if 0 <= number <= self.head else None
        if block is None:
            raise BlockNotFound(f"Block with id: {ident!r} not found.")
        return block


def _addr(raw: bytes | None) -> str:
    return ZERO_ADDRESS if raw is None else "0x" + bytes(raw).hex()


class _Eth:
    def __init__(self, chain: FakeChain) -> None:
        self._chain = chain

    @property
    def block_number(self):
        async def read() -> int:
            self._chain._tick()
            return self._chain.head

        return read()

    async def get_block(self, ident) -> dict:
        self._chain._tick()
        block = self._chain._block(ident)
        return {"number": block.number, "hash": block.hash, "parentHash": block.parent, "timestamp": block.timestamp}


class FakeWeb3:
    """Just the `w3.eth` calls the view and the watcher make."""

    def __init__(self, chain: FakeChain) -> None:
        self.eth = _Eth(chain)


class FakeClient:
    """The `ChannelDepositClient` calls the view and the watcher make."""

    address = CONTRACT

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain

    async def get_channel(self, cid: bytes, block="latest") -> OnChainChannel:
        self.chain._tick()
        found = self.chain._block(block)
        return OnChainChannel(found.state.get(bytes(cid), 0), 0, found.closing.get(bytes(cid)), False)

    async def get_events(self, from_block: int, to_block: int) -> list:
        self.chain._tick()
        chain = self.chain
        return [log for b in chain.canonical[from_block : min(to_block, chain.head) + 1] for log in b.logs]
