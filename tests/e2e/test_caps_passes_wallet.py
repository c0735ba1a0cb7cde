"""Issue 16's done-when, the Python wallet's part: against a real node over the in-process chain
with a monthly cap on the news and a day pass on the API, the wallet (through PayingSession) buys
articles up to the cap and reads on free, the node's charged total and the wallet's own ledger
agree and `sites` shows "paid of cap"; it buys the day pass (the voucher's `pass`), reads the
pass's pattern free, and once the clock (the node's and the wallet's) passes the pass's end it is
charged again. The reader's monthly budget counts only what was charged, and refuses the next
priced read before anything is signed."""

from __future__ import annotations

from datetime import UTC

import pytest

from channel_node.cli.wallet import cap_line
from channel_node.client import PayingSession, Policy, SpendingLimitExceeded, Wallet, WalletStore, site_of
from paywall_helpers import DAY, NEXT_MONTH, NOW, PRICE, async_web3, start_clocked_node

GAS = 300_000
CAP = 3 * PRICE
PASS_PRICE = 2 * PRICE


@pytest.fixture
async def running(chain, deployed, parties, tmp_path):
    node = await start_clocked_node(
        chain.tester, deployed.address, parties.receiver.address, tmp_path, 11,
        caps=[{"name": "news", "tags": {"section": "news"}, "cap": f"{CAP}wei", "period": "month"}],
        passes=[{"name": "api-day", "pattern": "/api/*", "price": f"{PASS_PRICE}wei", "duration": "1d",
                 "description": "The API for a day"}],
    )  # fmt: skip
    yield node
    await node.stop()


async def test_the_python_wallet_reads_free_past_a_cap_and_under_a_day_pass(running, chain, parties, tmp_path):
    url = lambda path: str(running.client.make_url(path))  # noqa: E731
    site = site_of(url("/"))
    store = WalletStore(tmp_path / "wallet.db")
    # A monthly budget of six prices: three for the cap, two for the pass, one after it ends.
    wallet = Wallet(async_web3(chain.tester), parties.payer.private_key, store,
                    Policy(monthly_limit=6 * PRICE, per_site_daily_limit=6 * PRICE, timezone="UTC"), gas=GAS)  # fmt: skip
    wallet.clock = running.clock
    try:
        async with PayingSession(wallet, retries=5, retry_delay=0.2) as session:
            # Articles up to the cap, then on free: the wallet signs for the list price each time.
            costs = []
            for n in range(1, 9):
                result = await session.get(url(f"/articles/{n}.html"))
                assert result.status == 200 and result.text() == f"<h1>Article {n}</h1>"
                costs.append(result.charged)
                assert result.receipt["cap"]["paid"] == str(min(CAP, n * PRICE))
            assert costs == [PRICE] * 3 + [0] * 5
            [record] = wallet.channels()
            state = await running.node.runtime.channel(record.channel_id)
            charges = await running.node.store.charges(record.channel_id)
            assert state.charged == sum(c.amount for c in charges) == CAP, "never more than the cap on the node"
            assert record.received == record.charged == CAP, "the wallet's ledger agrees with the node"
            assert wallet.store.spent(wallet._month(), site) == wallet.store.spent(wallet._day(), site) == CAP, (
                "the budgets count what was charged, not the ceilings signed")
            assert record.signed - record.received <= PRICE, "the exposure bound: one price"
            [spending] = wallet.sites()
            [cap] = spending.caps
            assert (spending.site, spending.this_month, cap.name, cap.paid, cap.cap, cap.period, cap.resets_at) == (
                site, CAP, "news", CAP, CAP, "month", NEXT_MONTH)  # fmt: skip
            assert cap_line(cap.name, cap.paid, cap.cap, cap.period, cap.resets_at, wallet.asset, NOW, UTC) == (
                "news: 0.000000000000003 ETH of 0.000000000000003 ETH this month, resets 2027-01-01 (reading on free)")

            # The day pass, bought with the voucher's `pass`, then its pattern read free.
            bought = await session.get(url("/api/quote"), pass_name="api-day")
            assert (bought.status, bought.charged, bought.receipt["pass"]) == (200, PASS_PRICE, {"name": "api-day", "until": NOW + DAY})
            assert wallet.held_passes(site) == {"api-day": NOW + DAY}
            for n in range(5):
                read = await session.get(url(f"/api/item-{n}"))
                assert (read.status, read.charged) == (200, 0), "covered by the pass"
            running.clock.now = NOW + DAY - 1
            assert (await session.get(url("/api/item-5"))).charged == 0, "still valid in its last second"

            # The clock passes the pass's end (node and wallet): charged again.
            running.clock.now = NOW + DAY
            assert wallet.held_passes(site) == {}
            again = await session.get(url("/api/item-6"))
            assert (again.status, again.charged) == (200, PRICE) and "pass" not in again.receipt

            [record] = wallet.channels()
            state = await running.node.runtime.channel(record.channel_id)
            assert state.charged == record.received == CAP + PASS_PRICE + PRICE
            assert wallet.store.spent(wallet._month()) == 6 * PRICE, "the month counts the charges alone"

            # The monthly budget is spent: the next priced read is refused before anything is signed,
            # while a read the cap makes free goes on.
            signed = record.signed
            with pytest.raises(SpendingLimitExceeded, match="above the monthly budget"):
                await session.get(url("/api/item-7"))
            free = await session.get(url("/articles/9.html"))
            assert (free.status, free.charged) == (200, 0)
            [record] = wallet.channels()
            assert record.signed <= signed + PRICE and wallet.store.spent(wallet._month()) == 6 * PRICE
    finally:
        store.close()
