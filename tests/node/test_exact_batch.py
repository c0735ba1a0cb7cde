"""`exact.batch_contract`: the node sends the x402 `exact` sales open at once together through an
ExactBatcher (docs/protocol.md, "The `exact` scheme (node)"), on the exact tests' own chain
(tests/exact_helpers.py). Several concurrent sales share one transaction and are each served once
confirmed; an item that fails (caught by its simulation, or inside the batch) is never served and
blocks none of the others; a crash around the batch's broadcast sends it exactly once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.chain.artifacts import exact_batcher_artifact
from channel_node.config import load_settings
from channel_node.dev.stack import create_world, dev_settings
from channel_node.node.assembly import NodeConfigError, build_node
from channel_node.node.exact import TRANSFER_GAS
from channel_node.signing import keccak256, sign_digest
from channel_node.signing.eip3009 import TokenDomain, cancel_authorization_digest, sign_authorization
from channel_node.store import ExactStatus, OutboxStatus, authorization_key
from channel_node.wire.envelope import decode_header
from contract_helpers import deploy_test_contract
from exact_helpers import PRICE, ExactPayer, checksum, exact_entry, make_exact_chain, offer_of, start_exact_node
from paywall_helpers import async_web3

pytestmark = pytest.mark.asyncio

SINGLE_TRANSFER_GAS = 65_141  # docs/gas.json transfer_with_authorization


@pytest.fixture(scope="module")
def world():
    x = make_exact_chain()
    artifact = exact_batcher_artifact()
    x.batcher = x.chain.deploy(artifact.abi, artifact.bytecode).address  # type: ignore[attr-defined]
    return x


@pytest.fixture
def chain(world):
    snapshot = world.chain.tester.take_snapshot()
    yield world
    world.chain.tester.revert_to_snapshot(snapshot)


async def start(chain, database, **exact):
    if "batch_contract" not in exact:
        exact["batch_contract"] = chain.batcher
    return await start_exact_node(chain, database, **exact)


async def pay(running, path: str, header: str):
    response = await running.client.get(path, headers={"PAYMENT-SIGNATURE": header})
    body = decode_header(response.headers.get("PAYMENT-REQUIRED", "") or "e30=")
    return response.status, body, response, await response.text()


async def held(running, n: int) -> None:
    for _ in range(300):
        if len(await running.node.store.outbox(tuple(OutboxStatus))) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} sales were never recorded")


async def all_rows(running) -> list:
    return await running.node.store.outbox(tuple(OutboxStatus))


def cancel(chain, auth) -> None:
    signature = sign_digest(chain.payer.private_key, cancel_authorization_digest(chain.domain, auth.from_, auth.nonce))
    call = chain.token.functions.cancelAuthorization(chain.payer.address, auth.nonce, signature[64], signature[:32],
                                                     signature[32:64])  # fmt: skip
    assert chain.chain.transact(call, chain.payer.address, gas=300_000)["status"] == 1


async def sales(running, chain, n: int):
    """n authorizations for n requests (/api/item-i), recorded while the sender is stopped."""
    offer = await offer_of(running.client, "/api/item-0")
    payer = ExactPayer(chain)
    auths = [payer.authorization(exact_entry(offer)) for _ in range(n)]
    headers = [payer.header(offer, auth) for auth in auths]
    requests = [asyncio.create_task(pay(running, f"/api/item-{i}", h)) for i, h in enumerate(headers)]
    await held(running, n)
    return auths, headers, requests


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 7), batch_max=st.integers(2, 5))
async def test_concurrent_sales_share_batches_and_each_is_served_once_confirmed(world, tmp_path_factory, n, batch_max):
    chain = world
    snapshot = chain.chain.tester.take_snapshot()
    running = await start(chain, tmp_path_factory.mktemp("db") / "node.db", run_sender=False, settle_timeout=10,
                          batch_max=batch_max)  # fmt: skip
    try:
        before = chain.balance(chain.receiver.address)
        _, headers, requests = await sales(running, chain, n)
        await running.node.sender.tick()  # one round sends every open sale and follows them
        answers = await asyncio.gather(*requests)
        assert [a[0] for a in answers] == [200] * n, [a[1] for a in answers]
        assert [a[3] for a in answers] == [f'{{"item": "item-{i}"}}' for i in range(n)]
        assert chain.balance(chain.receiver.address) == before + n * PRICE
        txs = [decode_header(a[2].headers["PAYMENT-RESPONSE"])["transaction"] for a in answers]
        expected_batches = -(-n // batch_max)
        assert len(set(txs)) == expected_batches, "batch_max sales per transaction, all sent in one round"
        assert running.node.sender.stats.exact_sent == expected_batches
        rows = await all_rows(running)
        assert [row.status for row in rows] == [OutboxStatus.DONE] * n and all(row.attempts == 1 for row in rows)
        for i, header in enumerate(headers):  # each bought one request, once
            status, body, _, _ = await pay(running, f"/api/item-{i}", header)
            assert (status, body["error"]) == (402, "authorization_used")
    finally:
        await running.stop()
        chain.chain.tester.revert_to_snapshot(snapshot)


async def test_a_batch_costs_each_sale_less_gas_than_a_lone_transfer(chain, tmp_path):
    running = await start(chain, tmp_path / "node.db", run_sender=False, settle_timeout=10)
    try:
        auths, _, requests = await sales(running, chain, 5)
        await running.node.sender.tick()
        await asyncio.gather(*requests)
        records = [await running.node.store.exact_payment(
            authorization_key(chain.domain.verifying_contract, a.from_, a.nonce)) for a in auths]  # fmt: skip
        [tx] = {r.tx_hash for r in records}
        receipt = chain.chain.w3.eth.get_transaction_receipt(tx)
        assert receipt["to"] == chain.batcher
        shares = {r.gas_used for r in records}
        assert shares == {receipt["gasUsed"] // 5}, "each sale carries its part of the batch's gas"
        assert receipt["gasUsed"] // 5 < SINGLE_TRANSFER_GAS < TRANSFER_GAS
    finally:
        await running.stop()


async def test_a_lone_sale_goes_straight_to_the_token(chain, tmp_path):
    running = await start(chain, tmp_path / "node.db", settle_timeout=10)
    try:
        offer = await offer_of(running.client, "/articles/1.html")
        status, _, response, _ = await pay(running, "/articles/1.html", ExactPayer(chain).header(offer))
        assert status == 200
        tx = decode_header(response.headers["PAYMENT-RESPONSE"])["transaction"]
        assert chain.chain.w3.eth.get_transaction(tx)["to"] == chain.token.address, "a batch of one costs more"
    finally:
        await running.stop()


async def test_a_sale_front_run_between_its_simulation_and_the_batch_is_served_with_the_winner(chain, tmp_path):
    """Its item reverts inside the batch (the nonce is used); the lone transfer's rule finds the
    front-runner's transaction, which paid us: served with that transaction, the others with ours."""
    running = await start(chain, tmp_path / "node.db", run_sender=False, settle_timeout=10)
    sender = running.node.sender
    try:
        before = chain.balance(chain.receiver.address)
        auths, _, requests = await sales(running, chain, 3)
        victim, front = auths[2], []
        ready = sender._ready

        async def front_run_after_simulation(row):
            result = await ready(row)
            if result is not None and result[0].nonce == victim.nonce:
                front.append(submit(chain, victim))
            return result

        sender._ready = front_run_after_simulation
        await sender.tick()
        answers = await asyncio.gather(*requests)
        assert [a[0] for a in answers] == [200, 200, 200]
        txs = [decode_header(a[2].headers["PAYMENT-RESPONSE"])["transaction"] for a in answers]
        assert txs[2] == "0x" + front[0].hex() and txs[0] == txs[1] != txs[2]
        assert chain.balance(chain.receiver.address) == before + 3 * PRICE, "each paid once"
    finally:
        await running.stop()


@pytest.mark.parametrize("fake_log", [False, True])
async def test_a_hollow_token_in_a_batch_is_never_served(chain, tmp_path, fake_log):
    """The batcher's outcome says success; no Transfer in the item's logs, or (faked) a Transfer the
    payee's balance does not show: every sale fails, none is served."""
    hollow = deploy_test_contract(chain.chain, "HollowAuthorizationToken", fake_log)
    chain.chain.transact(hollow.functions.mint(chain.payer.address, 10**9), chain.deployer.address)
    world = replace(chain, token=hollow)
    domain = TokenDomain("Hollow Dollar", "1", chain.chain.chain_id, hollow.address)
    running = await start(world, tmp_path / "node.db", run_sender=False, settle_timeout=10, batch_contract=chain.batcher)
    try:
        offer = await offer_of(running.client, "/api/item-0")
        payer = ExactPayer(world)
        requests = [asyncio.create_task(pay(running, f"/api/item-{i}", payer.header(offer, domain=domain)))
                    for i in range(3)]  # fmt: skip
        await held(running, 3)
        await running.node.sender.tick()
        answers = await asyncio.gather(*requests)
        assert [(a[0], a[1]["error"]) for a in answers] == [(402, "transfer_failed")] * 3
        assert running.node.sender.stats.exact_sent == 1, "they went as one batch"
    finally:
        await running.stop()


def submit(chain, auth) -> bytes:
    """A third party submits the payer's authorization itself."""
    signature = sign_authorization(chain.payer.private_key, chain.domain, auth)
    call = chain.token.functions.transferWithAuthorization(
        chain.payer.address, checksum("0x" + auth.to.hex()), auth.value, auth.valid_after, auth.valid_before,
        auth.nonce, signature[64], signature[:32], signature[32:64],
    )  # fmt: skip
    receipt = chain.chain.transact(call, chain.other.address, gas=300_000)
    assert receipt["status"] == 1
    return bytes(receipt["transactionHash"])


@pytest.mark.parametrize("when", ["before_simulation", "inside_the_batch"])
async def test_one_failing_sale_is_never_served_and_blocks_none_of_the_others(chain, tmp_path, when):
    """The victim's authorization is cancelled by its payer: before the round (its simulation
    reverts and it is left out) or between its simulation and the batch (its item reverts inside
    the batch, caught); either way the others are paid and served, the victim never."""
    running = await start(chain, tmp_path / "node.db", run_sender=False, settle_timeout=10)
    sender = running.node.sender
    try:
        before = chain.balance(chain.receiver.address)
        auths, _, requests = await sales(running, chain, 4)
        victim = auths[1]
        if when == "before_simulation":
            cancel(chain, victim)
        else:
            ready = sender._ready

            async def cancelled_after_simulation(row):
                result = await ready(row)
                if result is not None and result[0].nonce == victim.nonce:
                    cancel(chain, victim)  # mined between our simulation and our batch
                return result

            sender._ready = cancelled_after_simulation
        await sender.tick()
        answers = await asyncio.gather(*requests)
        assert [a[0] for a in answers] == [200, 402, 200, 200]
        assert answers[1][1]["error"] == "authorization_canceled" and '"item": ' not in answers[1][3]
        assert chain.balance(chain.receiver.address) == before + 3 * PRICE
        txs = {decode_header(a[2].headers["PAYMENT-RESPONSE"])["transaction"] for a in answers if a[0] == 200}
        assert len(txs) == 1, "the others still shared one transaction"
        record = await running.node.store.exact_payment(
            authorization_key(chain.domain.verifying_contract, victim.from_, victim.nonce))
        assert record.status == ExactStatus.FAILED and not record.served
        if when == "inside_the_batch":
            receipt = chain.chain.w3.eth.get_transaction_receipt(txs.pop())
            assert receipt["status"] == 1 and receipt["to"] == chain.batcher
            assert record.gas_used == receipt["gasUsed"] // 4, "its reverted item's gas is counted"
    finally:
        await running.stop()


class Crash(BaseException):
    """The process dies here (nothing in the sender catches it)."""


@pytest.mark.parametrize("dies", ["before_broadcast", "after_broadcast"])
async def test_a_crash_around_a_batchs_broadcast_sends_it_exactly_once(chain, tmp_path, dies):
    database = tmp_path / "node.db"
    running = await start(chain, database, run_sender=False, settle_timeout=0.3)
    sender = running.node.sender
    recorded: list[bytes] = []
    broadcast = sender._broadcast

    async def dying(raw: bytes) -> bool:
        recorded.append(raw)
        if dies == "after_broadcast":
            await broadcast(raw)
        raise Crash

    sender._broadcast = dying
    before = chain.balance(chain.receiver.address)
    try:
        auths, headers, requests = await sales(running, chain, 3)
        assert {a[1]["error"] for a in await asyncio.gather(*requests)} == {"settlement_pending"}
        with pytest.raises(Crash):
            await sender.tick()
        rows = await all_rows(running)
        assert {(row.status, row.raw_tx) for row in rows} == {(OutboxStatus.SENT, recorded[0])}, "recorded before it left"
    finally:
        await running.stop()
    assert all(chain.used(chain.payer.address, a.nonce) for a in auths) is (dies == "after_broadcast")

    restarted = await start(chain, database, settle_timeout=10)
    try:
        for i, header in enumerate(headers):
            status, _, response, text = await pay(restarted, f"/api/item-{i}", header)
            assert status == 200 and text == f'{{"item": "item-{i}"}}'
            tx = decode_header(response.headers["PAYMENT-RESPONSE"])["transaction"]
            assert tx == "0x" + keccak256(recorded[0]).hex(), "the very batch signed before the crash"
        rows = await all_rows(restarted)
        assert [(row.status, row.attempts) for row in rows] == [(OutboxStatus.DONE, 1)] * 3, "signed once, never again"
        assert restarted.node.sender.stats.exact_sent == 0
    finally:
        await restarted.stop()
    assert chain.balance(chain.receiver.address) == before + 3 * PRICE, "one transfer each, whatever the crash"


async def test_a_batch_contract_that_is_not_our_batcher_is_refused_at_start(chain, tmp_path):
    from exact_helpers import write_site

    for n, address in enumerate((chain.token.address, chain.other.address)):  # another contract; no code at all
        settings = load_settings(
            contract=chain.contract, receiver=chain.receiver.address, database=tmp_path / f"{n}.db",
            token=chain.token.address, claim_key=chain.receiver.private_key.hex(),
            exact={"enabled": True, "batch_contract": address},
            paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/*", "price": PRICE}]},
        )  # fmt: skip
        with pytest.raises(NodeConfigError, match="batch_contract"):
            await build_node(settings, async_web3(chain.chain.tester))


async def test_dev_token_with_the_exact_batcher_deploys_it_and_the_node_batches(tmp_path):
    world = create_world(tmp_path, token=True, batcher=True)
    assert world.batcher is not None
    settings = dev_settings(world, "127.0.0.1", 0)
    assert settings.exact.batch_contract == world.batcher
    node = await build_node(settings, async_web3(world.chain.tester))
    try:
        assert node.sender is not None and node.sender.exact_batcher == bytes.fromhex(world.batcher[2:])
    finally:
        await node.close()
    assert create_world(tmp_path / "plain", token=True).batcher is None, "off unless asked"
