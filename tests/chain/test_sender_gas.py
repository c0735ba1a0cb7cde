"""The sender meters what collection costs (docs/economics.md, "Cost of collection"): each mined
transaction's gasUsed and effectiveGasPrice land on its outbox rows (a batch's shared exactly) and
reach `on_gas` once, also when the watcher marked the rows done first, and for whichever of a fee
bump's replacements was mined."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.chain.outbox import GasSpent, OutboxSender, gas_kind, gas_shares
from channel_node.core import ChannelState
from channel_node.signing import ChannelConfig, keccak256
from channel_node.store import ChannelWrite, MemoryStore, OutboxItem, OutboxStatus, Pin

PIN = Pin(chain_id=31337, contract=b"\x0c" * 20, receiver=b"\x02" * 20)
KEY = keccak256(b"outbox gas test key")


class ReceiptEth:
    """Answers receipts for the hashes it has "mined"; anything else is not mined yet."""

    def __init__(self) -> None:
        self.mined: dict[bytes, dict] = {}
        self.asked = 0

    async def get_transaction_receipt(self, tx_hash):
        self.asked += 1
        found = self.mined.get(bytes(tx_hash))
        if found is None:
            raise LookupError("transaction not found")
        return found


def mine(eth: ReceiptEth, tx_hash: bytes, gas_used: int, gas_price: int, status: int = 1) -> None:
    eth.mined[tx_hash] = {"status": status, "gasUsed": gas_used, "effectiveGasPrice": gas_price, "logs": []}


async def setup(rows: int, deadline: int | None = None, kind: str = "claim"):
    store = MemoryStore()
    await store.open(PIN)
    for n in range(1, rows + 1):
        config = ChannelConfig.create(b"\x01" * 20, b"\x05" * 20, PIN.receiver, None, 3600, n)
        state = replace(ChannelState(channel_id=n.to_bytes(32, "big"), config=config, deposited=1000),
                        ceiling=30, charged=30, signature=b"a" * 65)  # fmt: skip
        await store.commit(ChannelWrite(state, 0, outbox=(OutboxItem(kind, 30, b"a" * 65, deadline),)))
    eth = ReceiptEth()
    sender = OutboxSender(SimpleNamespace(eth=eth), SimpleNamespace(address="0x" + "cd" * 20), store, KEY)
    spent: list[GasSpent] = []
    sender.on_gas = spent.append
    return store, eth, sender, spent, await store.outbox()


async def test_a_batch_is_metered_once_its_rows_sharing_the_gas_exactly():
    store, eth, sender, spent, rows = await setup(3)
    sender._track(b"t" * 32, rows)
    await sender._meter()
    assert spent == [] and all(r.gas_used is None for r in await store.outbox()), "not mined: nothing yet"
    mine(eth, b"t" * 32, 100_001, 3 * 10**9)
    await sender._meter()
    await sender._meter()  # and never twice
    [gas] = spent
    assert (gas.kind, gas.gas_used, gas.gas_price, gas.rows, gas.wei) == ("claim", 100_001, 3 * 10**9, 3, 300_003 * 10**9)
    metered = await store.outbox()
    assert [r.gas_used for r in metered] == [33_335, 33_333, 33_333]
    assert {r.gas_price for r in metered} == {3 * 10**9}
    assert sender.stats.gas_spent_wei == gas.wei


async def test_rows_the_watcher_marked_done_before_the_sender_looked_are_still_metered():
    store, eth, sender, spent, [row] = await setup(1)
    sender._track(b"d" * 32, [row])
    assert await store.complete_outbox(row.channel_id, claimed=30, settled=False) == 1
    mine(eth, b"d" * 32, 43_477, 10**9)
    await sender._meter()
    [done] = await store.outbox((OutboxStatus.DONE,))
    assert (done.gas_used, done.gas_price) == (43_477, 10**9) and len(spent) == 1


async def test_of_a_fee_bumps_replacements_the_mined_one_is_metered_and_the_others_are_dropped():
    store, eth, sender, spent, [row] = await setup(1, deadline=5000)
    sender._track(b"1" * 32, [row])
    sender._track(b"2" * 32, [row])  # the bump: same nonce, higher fee
    mine(eth, b"1" * 32, 43_000, 2 * 10**9)  # the first one won
    await sender._meter()
    asked = eth.asked
    await sender._meter()
    assert eth.asked == asked, "the losing replacement is no longer looked for"
    [gas] = spent
    assert gas.kind == "defence" and gas.tx_hash == b"1" * 32 and gas.gas_price == 2 * 10**9


async def test_a_reverted_transaction_costs_its_gas_too():
    store, eth, sender, spent, [row] = await setup(1, kind="close")
    sender._track(b"r" * 32, [row])
    mine(eth, b"r" * 32, 30_000, 5, status=0)
    await sender._meter()
    assert [(g.kind, g.wei) for g in spent] == [("close", 150_000)]


async def test_a_restart_meters_the_rows_still_sent():
    store, eth, sender, spent, [row] = await setup(1)
    await store.update_outbox(row.id, status=OutboxStatus.SENT, tx_hash=b"s" * 32)
    mine(eth, b"s" * 32, 50_000, 7)
    await sender._rebroadcast(await store.outbox())  # no raw bytes kept here: only tracked
    await sender._meter()
    [metered] = await store.outbox()
    assert metered.gas_used == 50_000 and [g.tx_hash for g in spent] == [b"s" * 32]


@settings(max_examples=200, deadline=None)
@given(gas=st.integers(0, 2**64), rows=st.integers(1, 60))
def test_shares_add_up_to_the_transactions_gas_and_differ_only_by_the_remainder(gas, rows):
    shares = gas_shares(gas, rows)
    assert len(shares) == rows and sum(shares) == gas
    assert max(shares) - min(shares) == gas % rows and shares[0] == max(shares)


async def test_what_gas_was_spent_on():
    *_, claims = await setup(2)
    assert gas_kind(claims) == "claim"
    *_, defences = await setup(1, deadline=9)
    assert gas_kind(defences) == "defence"
    *_, closes = await setup(1, kind="close")
    assert gas_kind(closes) == "close"
    authorization = replace(closes[0], kind="transfer_authorization", deadline=123)
    assert gas_kind([authorization]) == "transfer_authorization", "an exact sale's deadline is not a defence"
