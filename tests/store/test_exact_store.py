"""Every store (memory, SQLite, PostgreSQL: `stores` in tests/conftest.py) keeps x402 `exact` sales
alike (migration 0006_exact, MemoryStore): a nonce held from
its record and never released, the record and its outbox row in one write, a retry of the same
payment joining, anything else under that nonce `used`, one delivery per sale, final statuses that
never go back, uint256 values intact, and (the durable ones) all of it across a restart."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.store import (
    ExactStatus,
    ExactWrite,
    MemoryStore,
    OutboxKind,
    OutboxStatus,
    Pin,
    RecordOutcome,
    authorization_key,
)

PIN = Pin(chain_id=31337, contract=b"\x0c" * 20, receiver=b"\x02" * 20)
TOKEN = b"\x0a" * 20
pytestmark = pytest.mark.asyncio


def write(payer: bytes = b"\x01" * 20, nonce: bytes = b"\x03" * 32, resource: str = "/a", signature: bytes = b"s" * 65,
          value: int = 1000, valid_before: int = 2_000_000_000, token: bytes = TOKEN) -> ExactWrite:  # fmt: skip
    return ExactWrite(token, payer, nonce, PIN.receiver, value, 0, valid_before, signature, resource, 1000, 1)


@pytest.fixture
async def store(stores):
    store = await stores.opened(PIN)
    yield store
    await store.close()


async def test_a_record_holds_the_nonce_with_its_outbox_row_and_a_retry_joins(store):
    w = write(value=2**256 - 1)
    record, outcome = await store.record_exact(w)
    assert outcome is RecordOutcome.RECORDED and record.status is ExactStatus.HELD and record.value == 2**256 - 1
    assert record.key == authorization_key(TOKEN, w.payer, w.nonce) == w.key
    [row] = await store.outbox()
    assert (row.kind, row.channel_id, row.amount, row.signature, row.deadline, row.status) == (
        OutboxKind.TRANSFER_AUTHORIZATION, w.key, 2**256 - 1, w.signature, w.valid_before, OutboxStatus.PENDING)
    again, outcome = await store.record_exact(w)
    assert outcome is RecordOutcome.JOINED and again == record
    assert len(await store.outbox()) == 1, "a retry queues no second transfer"
    assert await store.exact_held() == 1


@pytest.mark.parametrize("change", [{"resource": "/b"}, {"signature": b"t" * 65}, {"value": 999}, {"valid_before": 5}])
async def test_the_same_nonce_for_anything_else_is_used(store, change):
    await store.record_exact(write())
    _, outcome = await store.record_exact(write(**change))
    assert outcome is RecordOutcome.USED
    assert len(await store.outbox()) == 1 and (await store.exact_payment(write().key)).resource == "/a"


async def test_final_statuses_close_the_row_and_never_go_back(store):
    confirmed, failed = write(nonce=b"\x01" * 32), write(nonce=b"\x02" * 32)
    for w in (confirmed, failed):
        await store.record_exact(w)
    assert await store.serve_exact(confirmed.key) is False, "nothing is delivered before confirmation"
    assert await store.finish_exact(confirmed.key, ExactStatus.CONFIRMED, b"h" * 32, 7, 65_141)
    assert await store.finish_exact(failed.key, ExactStatus.FAILED, error="authorization_canceled")
    for key in (confirmed.key, failed.key):
        for status in ExactStatus:
            assert await store.finish_exact(key, status) is False
    done = await store.exact_payment(confirmed.key)
    assert (done.status, done.tx_hash, done.block_number, done.gas_used) == (ExactStatus.CONFIRMED, b"h" * 32, 7, 65_141)
    assert (await store.exact_payment(failed.key)).error == "authorization_canceled"
    statuses = {row.channel_id: row.status for row in await store.outbox(tuple(OutboxStatus))}
    assert statuses == {confirmed.key: OutboxStatus.DONE, failed.key: OutboxStatus.ABANDONED}
    assert await store.outbox() == [] and await store.exact_held() == 0
    assert await store.serve_exact(failed.key) is False
    assert [await store.serve_exact(confirmed.key) for _ in range(3)] == [True, False, False], "one delivery"
    _, outcome = await store.record_exact(confirmed)
    assert outcome is RecordOutcome.USED, "an answered sale's header buys nothing more"


async def test_a_durable_store_keeps_the_held_nonce_across_a_restart(durable_stores):
    store = await durable_stores.opened(PIN)
    await store.record_exact(write())
    await store.close()
    store = durable_stores.again(store)
    await store.open(PIN)
    try:
        assert (await store.exact_payment(write().key)).status is ExactStatus.HELD
        assert (await store.record_exact(write(resource="/other")))[1] is RecordOutcome.USED
        assert len(await store.outbox()) == 1
    finally:
        await store.close()


payers = st.sampled_from([b"\x01" * 20, b"\x02" * 20])
nonces = st.sampled_from([b"\x03" * 32, b"\x04" * 32])
resources = st.sampled_from(["/a", "/b"])
steps = st.lists(st.tuples(st.sampled_from(["record", "confirm", "fail", "serve"]), payers, nonces, resources), max_size=12)


@pytest.fixture
async def memory_and_durable(durable_stores):
    memory = MemoryStore()
    await memory.open(PIN)
    both = [memory, await durable_stores.opened(PIN)]
    yield both
    for store in both:
        await store.close()


_tokens = iter(range(1, 10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
async def test_a_durable_store_answers_every_sequence_as_memory_does(memory_and_durable, steps):
    # Both stores live for the whole test; every example pays in a token of its own, so its
    # authorizations (and their rows) are new: only they are compared.
    token = next(_tokens).to_bytes(20, "big")
    keys = {write(payer=p, nonce=n, token=token).key for _, p, n, _ in steps}
    answers: list[list[object]] = [[], []]
    for i, store in enumerate(memory_and_durable):
        held_before = await store.exact_held()
        for action, payer, nonce, resource in steps:
            w = write(payer=payer, nonce=nonce, resource=resource, token=token)
            if action == "record":
                answers[i].append((await store.record_exact(w))[1])
            elif action == "serve":
                answers[i].append(await store.serve_exact(w.key))
            else:
                status = ExactStatus.CONFIRMED if action == "confirm" else ExactStatus.FAILED
                answers[i].append(await store.finish_exact(w.key, status))
        answers[i].append(await store.exact_held() - held_before)
        rows = await store.outbox(tuple(OutboxStatus))
        answers[i].append(sorted((r.channel_id, r.status.value) for r in rows if r.channel_id in keys))
    assert answers[0] == answers[1]
    recorded = {(p, n) for a, p, n, _ in steps if a == "record"}
    assert len(answers[0][-1]) == len(recorded), "one transfer row per authorization, ever"
