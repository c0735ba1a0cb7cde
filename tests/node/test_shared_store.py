"""Several node processes on one store (docs/scaling.md): two Runtimes over one MemoryStore stand
for two processes, each with its own cache and locks. Whatever the interleaving, nothing is charged
twice or lost, a decision never rests on a stale cache, and the leader learns the channels the
other processes discovered."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.chain.logs import ChannelSettled, CloseRequested
from channel_node.core import Accepted, Reject
from channel_node.node.runtime import ChainChannel, PaymentRequest, Runtime
from channel_node.store import MemoryStore, OutboxKind
from runtime_helpers import DOMAIN, RECEIVER, make_channel, opened

CHANNEL_UNDER_TEST = make_channel(b"shared store key", 7)
CONFIG, CHANNEL = CHANNEL_UNDER_TEST.config, CHANNEL_UNDER_TEST.id
PRICE = 10
DEPOSIT = 10_000


class Chain:
    async def confirmed_channel(self, channel_id: bytes) -> ChainChannel | None:
        return ChainChannel(deposited=DEPOSIT, claimed=0, close_deadline=None, settled=False)

    async def is_canonical(self, ref: object) -> bool:
        return True


async def processes(count: int = 2) -> tuple[MemoryStore, list[Runtime]]:
    store = await opened(MemoryStore())
    runtimes = []
    for _ in range(count):
        runtime = Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, Chain(), close_margin=60, clock=lambda: 1000.0)
        runtime.shared = True
        runtimes.append(runtime)
    return store, runtimes


def pay(amount: int, resource: str, payment_id: str | None = None, once: bool = True) -> PaymentRequest:
    return PaymentRequest(CHANNEL, amount, CHANNEL_UNDER_TEST.sign(amount), resource, PRICE, once, payment_id, CONFIG)


def log_fields(index: int) -> dict[str, object]:
    return {"block_number": 10 + index, "log_index": 0, "tx_hash": bytes([index]) * 32}


# Each step: which process answers, which article, whether the reader signs for the next price or
# resends its last voucher (a retry, or a stale one), and a payment id from a small pool.
steps = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["/a", "/b", "/c", "/d"]), st.booleans(),
              st.sampled_from([None, "p1", "p2", "p3"])),  # fmt: skip
    min_size=1, max_size=30,
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
async def test_interleaved_payments_across_processes_charge_each_article_once_and_lose_nothing(plan):
    store, runtimes = await processes(3)
    signed = 0
    charged_by_answers = 0
    for who, resource, fresh, payment_id in plan:
        if fresh or signed == 0:
            signed += PRICE
        outcome = await runtimes[who].pay(pay(signed, resource, payment_id))
        if isinstance(outcome.effect, Accepted):
            charged_by_answers += outcome.effect.charged
    charges = await store.charges(CHANNEL)
    stored = await store.load_channel(CHANNEL)
    # No lost charge, no double charge: every 200 that charged is one row, the state agrees, and
    # no article is charged twice on the channel whichever process served it.
    assert sum(c.amount for c in charges) == charged_by_answers
    assert stored is None or stored.state.charged == charged_by_answers
    once = [c.resource for c in charges if c.once]
    assert len(once) == len(set(once))
    ids = [c.payment_id for c in charges if c.payment_id is not None]
    assert len(ids) == len(set(ids)), "a payment identifier pays for one request across processes"


async def test_a_follower_does_not_serve_again_on_a_cached_state_another_process_settled():
    store, (follower, leader) = await processes()
    assert (await follower.pay(pay(PRICE, "/a"))).accepted  # cached by the follower
    await leader.apply_chain_events([ChannelSettled(**log_fields(1), channel_id=CHANNEL, total_claimed=PRICE, refunded=0)])
    again = await follower.pay(pay(PRICE, "/a"))  # an unlocked article: a re-read that would write nothing
    assert again.effect.code is Reject.CHANNEL_SETTLED, "decided again on the store's state, not the cache"


async def test_a_stale_voucher_cannot_read_again_through_a_process_whose_cache_is_behind():
    store, (a, b) = await processes()
    assert (await a.pay(pay(PRICE, "/a"))).accepted
    assert (await b.pay(pay(2 * PRICE, "/b"))).accepted  # a's cache still says charged = PRICE
    stale = await a.pay(pay(PRICE, "/a"))
    assert stale.effect.code is Reject.STALE_VOUCHER


async def test_the_leader_defends_a_channel_another_process_discovered_after_it_loaded_its_channel_ids():
    store, (follower, leader) = await processes()
    await leader.apply_chain_events([])  # the leader has loaded the ids it knows (none yet)
    assert (await follower.pay(pay(3 * PRICE, "/a"))).accepted  # the channel is learnt by the follower
    applied = await leader.apply_chain_events([CloseRequested(**log_fields(2), channel_id=CHANNEL, deadline=5000)])
    assert applied == 1, "the payer's close on a channel the leader never served is not ignored"
    stored = await store.load_channel(CHANNEL)
    assert stored is not None and stored.state.close_deadline == 5000
    defence = [row for row in await store.outbox() if row.kind == OutboxKind.CLAIM]
    assert [row.amount for row in defence] == [PRICE], "its defence claims what the follower charged"
