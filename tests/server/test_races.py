"""Races on one channel: the same payment id from two connections, many clients sharing a channel,
and a top-up and a close landing while requests are in flight. No double charge, no lost credit,
no deadlock (everything finishes within a bound)."""

from __future__ import annotations

import asyncio

import pytest

from paywall_helpers import PRICE, Payer, node_settings, receipt, refusal, start_node, write_site

BOUND = 30  # seconds: a deadlock fails the test instead of hanging CI


@pytest.fixture(params=["sqlite", "postgres"])
async def running(request, chain, deployed, parties, tmp_path):
    """The node on each durable store: SQLite, and PostgreSQL (database = a postgresql:// URL)."""
    database = tmp_path / "node.db" if request.param == "sqlite" else await request.getfixturevalue("postgres").new_schema()
    settings = node_settings(deployed.address, parties.receiver.address, database, content_dir=write_site(tmp_path / "site"))
    node = await start_node(chain.tester, settings)
    yield node
    await node.stop()


async def test_the_same_payment_id_from_two_connections_is_charged_once(running, channels):
    payer = Payer(channels, channels.open_eth(100 * PRICE, channels.config()))
    for n in range(10):
        header = {"PAYMENT-SIGNATURE": payer.header((n + 1) * PRICE, payment_id=f"dup-{n}")}
        first, second = await asyncio.wait_for(
            asyncio.gather(running.client.get(f"/api/item-{n}", headers=header), running.client.get(f"/api/item-{n}", headers=header)),
            BOUND,
        )
        assert first.status == second.status == 200
        assert sorted([receipt(first)["chargedAmount"], receipt(second)["chargedAmount"]]) == ["0", str(PRICE)]
    state = (await running.node.store.load_channel(payer.id)).state
    assert state.charged == 10 * PRICE and len(await running.node.store.charges(payer.id)) == 10


async def test_many_clients_sharing_one_channel(running, channels):
    payer = Payer(channels, channels.open_eth(1000 * PRICE, channels.config()))
    # 8 clients each prepaid a share and send overlapping cumulative vouchers concurrently.
    async def client(k: int) -> list[int]:
        statuses = []
        for n in range(25):
            amount = (k * 25 + n + 1) * PRICE
            response = await running.client.get(f"/api/item-{(k * 25 + n) % 50}", headers={"PAYMENT-SIGNATURE": payer.header(amount, payment_id=f"c{k}-{n}")})
            statuses.append(response.status)
        return statuses

    results = await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(8))), BOUND)
    served = sum(status == 200 for statuses in results for status in statuses)
    state = (await running.node.store.load_channel(payer.id)).state
    charges = await running.node.store.charges(payer.id)
    assert state.charged == served * PRICE == sum(c.amount for c in charges), "every charge was for a served request"
    assert state.charged <= state.ceiling <= state.deposited
    assert len({c.payment_id for c in charges}) == len(charges), "no payment id charged twice"


async def test_clients_sharing_a_channel_resync_from_the_corrective_402_and_sign_no_more_than_they_spend(running, channels):
    """Spending needs the request's own voucher to cover charged + price (an older one buys nothing),
    so concurrent clients of one channel lose races; each loser signs again at the charged total the
    corrective 402 states. Every request is served, and nothing is signed above what was charged
    (beyond the prices of requests in flight)."""
    payer = Payer(channels, channels.open_eth(1000 * PRICE, channels.config()))
    known = {"charged": 0, "in_flight": 0}  # what one wallet shared by the clients would track
    retries = 0

    async def client(k: int) -> int:
        nonlocal retries
        served = 0
        for n in range(25):
            for _attempt in range(50):
                known["in_flight"] += 1  # each request in flight reserves one price above the charged total
                amount = known["charged"] + known["in_flight"] * PRICE
                try:
                    response = await running.client.get(
                        f"/api/item-{(k * 25 + n) % 50}",
                        headers={"PAYMENT-SIGNATURE": payer.header(amount, payment_id=f"c{k}-{n}-{_attempt}")},
                    )
                finally:
                    known["in_flight"] -= 1
                if response.status == 200:
                    known["charged"] = max(known["charged"], int(receipt(response)["chargedTotal"]))
                    served += 1
                    break
                status, code, body = await refusal(response)
                assert (status, code) in {(402, "stale_voucher"), (402, "insufficient_voucher")}
                known["charged"] = max(known["charged"], int(body["accepts"][0]["extra"]["channel"]["charged"]))
                retries += 1
        return served

    served = await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(8))), BOUND)
    assert sum(served) == 200, "every request is served in the end"
    state = (await running.node.store.load_channel(payer.id)).state
    assert state.charged == 200 * PRICE == sum(c.amount for c in await running.node.store.charges(payer.id))
    assert state.charged <= state.ceiling <= state.charged + 8 * PRICE, "signed at most the in-flight prices above"
    assert retries < 200 * 8, "each race costs a bounded number of extra round trips"


async def test_a_topup_and_a_close_landing_while_requests_are_in_flight(running, channels, parties):
    config = channels.open_eth(10 * PRICE, channels.config(close_delay=3600))
    payer = Payer(channels, config)
    await running.node.watcher.poll()
    stop = asyncio.Event()
    paid: list[int] = []

    async def reader(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            amount = (2 * n + k) * PRICE  # the two readers interleave their running totals
            response = await running.client.get(f"/api/item-{n % 50}", headers={"PAYMENT-SIGNATURE": payer.header(amount, payment_id=f"r{k}-{n}")})
            if response.status == 200:
                paid.append(int(receipt(response)["chargedAmount"]))
            await asyncio.sleep(0)

    async def chain_events() -> None:
        await asyncio.sleep(0.05)
        channels.chain.transact(channels.contract.functions.depositEth(config.as_abi_tuple()), parties.payer.address, value=20 * PRICE)
        await running.node.watcher.poll()
        await asyncio.sleep(0.05)
        channels.chain.transact(channels.contract.functions.requestClose(config.as_abi_tuple()), parties.payer.address)
        await running.node.watcher.poll()
        await asyncio.sleep(0.05)
        stop.set()

    await asyncio.wait_for(asyncio.gather(reader(0), reader(1), chain_events()), BOUND)
    state = (await running.node.store.load_channel(payer.id)).state
    charges = await running.node.store.charges(payer.id)
    assert state.deposited == 30 * PRICE and state.close_deadline is not None
    assert state.charged == sum(c.amount for c in charges) == sum(paid) and len(paid) == len(charges)
    assert state.charged <= state.ceiling <= state.deposited
    [row] = await running.node.store.outbox()
    assert (row.kind, row.amount, row.voucher) == ("claim", state.charged, state.ceiling), (
        "the close is defended claiming what was charged, under the best voucher"
    )
