"""The reader's side of caps and passes (issue 16, item 5; docs/security.md "The reader's budgets"),
against receipts built here as the node writes them (docs/protocol.md, "Caps and passes"): the
wallet signs for the list price, but its budgets count what the receipts charged; a monthly budget
refuses before anything is signed, in the policy's time zone; a pass is bought by name (the
voucher's `pass`) or by the policy, once; `sites` shows "paid of cap" from the receipts."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.cli.wallet import cap_line
from channel_node.client import OfferRejected, Policy, SpendingLimitExceeded, Wallet, WalletStore
from channel_node.wire.envelope import decode_header
from paywall_helpers import async_web3

GAS = 300_000
PRICE = 1_000
SITE = "news.example"
URL = f"https://{SITE}/news/a.html"
T0 = 1_796_083_200  # 2026-12-01 00:00 UTC


def offer(chain, deployed, parties, *, price: int = PRICE, cap: dict | None = None, passes: list | None = None) -> dict:
    """A `channel` offer as the node writes it, naming the deployed contract and the receiver."""
    extra: dict = {
        "contract": deployed.address, "minDeposit": "0", "closeDelay": {"min": 0, "max": 30 * 86400},
        "receiverAuthorizer": "0x" + "00" * 20, "once": True,
    }  # fmt: skip
    if cap is not None:
        extra["cap"] = cap
    if passes is not None:
        extra["passes"] = passes
    return {"scheme": "channel", "network": f"eip155:{chain.w3.eth.chain_id}", "amount": str(price),
            "asset": "0x" + "00" * 20, "payTo": parties.receiver.address, "maxTimeoutSeconds": 60, "extra": extra}  # fmt: skip


NEWS_CAP = {"name": "news", "cap": str(3 * PRICE), "period": "month", "periodEndsAt": T0 + 31 * 86400}
DAY_PASS = {"name": "news-day", "price": str(5 * PRICE), "duration": 86400, "description": "All of today's news"}


class Site:
    """What a capped node would answer, kept here: its charged total and the cap's figure."""

    def __init__(self, cap: int = 3 * PRICE) -> None:
        self.total = 0
        self.paid = 0
        self.cap = cap
        self.pass_until: int | None = None

    def receipt(self, wallet: Wallet, header, charged: int, *, with_cap: bool = True, bought: str | None = None) -> dict:
        self.total += charged
        receipt = {"x402Version": 2, "success": True, "scheme": "channel", "network": header.network,
                   "channelId": "0x" + header.channel_id.hex(), "chargedAmount": str(charged), "chargedTotal": str(self.total),
                   "paymentId": header.payment_id}  # fmt: skip
        if with_cap:
            self.paid += charged
            receipt["cap"] = {"name": "news", "cap": str(self.cap), "paid": str(self.paid), "resetsAt": T0 + 31 * 86400}
        if bought is not None:
            self.pass_until = int(wallet.clock()) + 86400
            receipt["pass"] = {"name": bought, "until": self.pass_until}
        return receipt


def make(chain, parties, path, policy: Policy | None = None) -> Wallet:
    wallet = Wallet(async_web3(chain.tester), parties.payer.private_key, WalletStore(path), policy or Policy(timezone="UTC"), gas=GAS)
    wallet.clock = lambda: T0 + 3600
    return wallet


def figures(wallet: Wallet) -> tuple[int, int, int, int]:
    """(spent today on the site, spent this month on it, the channel's counted, what it received)."""
    [record] = wallet.channels()
    return wallet.store.spent(wallet._day(), SITE), wallet.store.spent(wallet._month(), SITE), record.counted, record.received


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.one_of(st.integers(0, PRICE), st.just("refused")), min_size=1, max_size=8))
def test_the_budgets_count_what_was_charged_never_the_ceiling_signed(chain, deployed, parties, tmp_path_factory, steps):
    """Any sequence of receipts charging the price or less (a cap's partial charge, 0 once it is
    reached) and refusals: the day's and the month's spending equal what the receipts charged,
    plus at most the one price of a refused request's voucher (credit, resent for nothing)."""

    async def run() -> None:
        wallet = make(chain, parties, tmp_path_factory.mktemp("caps") / "w.db")
        site = Site(cap=10**9)
        refused = False
        try:
            for n, step in enumerate(steps):
                header = await wallet.pay_for(offer(chain, deployed, parties), f"https://{SITE}/news/{n}.html")
                if step == "refused":
                    wallet.release(header)
                    refused = True
                else:
                    assert await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, step), header.price,
                                                       header.payment_id) == step  # fmt: skip
                today, month, counted, received = figures(wallet)
                assert today == month == counted, "both budgets count the same, and what the channel counts"
                assert received == site.total
                assert received <= counted <= received + (PRICE if refused else 0)
                [record] = wallet.channels()
                assert record.signed - received <= PRICE, "the exposure bound holds: one price"
        finally:
            wallet.store.close()

    asyncio.run(run())


async def test_reads_past_a_reached_cap_cost_the_budget_nothing(chain, deployed, parties, tmp_path):
    """A per-site daily limit of three prices and a cap of three: after three paid reads the cap is
    reached, and a hundred more reads go on free; the wallet's spending stays three prices."""
    wallet = make(chain, parties, tmp_path / "w.db", Policy(per_site_daily_limit=3 * PRICE, timezone="UTC"))
    site = Site(cap=3 * PRICE)
    for n in range(12):
        header = await wallet.pay_for(offer(chain, deployed, parties, cap=NEWS_CAP), f"https://{SITE}/news/{n}.html")
        charged = min(PRICE, max(0, site.cap - site.paid))
        await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, charged), header.price, header.payment_id)
    today, month, counted, received = figures(wallet)
    assert today == month == counted == received == site.total == 3 * PRICE
    [cap] = wallet.store.caps(SITE)
    assert (cap.paid, cap.cap, cap.period) == (3 * PRICE, 3 * PRICE, "month")
    line = cap_line(cap.name, cap.paid, cap.cap, cap.period, cap.resets_at, wallet.asset, int(wallet.clock()), UTC)
    assert line == "news: 0.000000000000003 ETH of 0.000000000000003 ETH this month, resets 2027-01-01 (reading on free)"
    [spending] = wallet.sites()
    assert (spending.site, spending.today, spending.this_month, spending.month) == (SITE, 3 * PRICE, 3 * PRICE, "2026-12")

    # The period ends: the next read is charged again, and counted again.
    wallet.clock = lambda: T0 + 31 * 86400 + 60
    site.paid = 0
    header = await wallet.pay_for(offer(chain, deployed, parties, cap=NEWS_CAP), f"https://{SITE}/news/next.html")
    await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, PRICE), header.price, header.payment_id)
    assert wallet.store.spent(wallet._month(), SITE) == PRICE and wallet._month() == "2027-01"
    wallet.store.close()


async def test_the_monthly_budget_refuses_before_signing_in_the_policys_time_zone(chain, deployed, parties, tmp_path):
    # 23:30 UTC on 31 December is already 1 January in Paris: the budget counts Paris months.
    new_year_eve = int(datetime(2026, 12, 31, 23, 30, tzinfo=UTC).timestamp())
    wallet = make(chain, parties, tmp_path / "w.db", Policy(monthly_limit=2 * PRICE, timezone="Europe/Paris"))
    wallet.clock = lambda: new_year_eve - 3600  # 23:30 in Paris, still December
    site = Site(cap=10**9)
    for n in range(2):
        header = await wallet.pay_for(offer(chain, deployed, parties), f"https://{SITE}/news/{n}.html")
        await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, PRICE), header.price, header.payment_id)
    [before] = wallet.channels()
    with pytest.raises(SpendingLimitExceeded, match=r"this month's spending \(2026-12\) .* above the monthly budget"):
        await wallet.pay_for(offer(chain, deployed, parties), f"https://{SITE}/news/2.html")
    [after] = wallet.channels()
    assert after.signed == before.signed, "refused before anything was signed"
    wallet.clock = lambda: new_year_eve  # 00:30 on 1 January in Paris (still 31 December in UTC)
    assert wallet._month() == "2027-01" and wallet._day() == "2026-12-31"
    header = await wallet.pay_for(offer(chain, deployed, parties), f"https://{SITE}/news/2.html")
    await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, PRICE), header.price, header.payment_id)
    assert wallet.store.spent("2027-01") == PRICE and wallet.store.spent("2026-12") == 2 * PRICE
    with pytest.raises(ValueError, match="IANA"):
        Policy(timezone="Mars/Olympus")
    wallet.store.close()


async def test_a_pass_is_bought_by_name_once_and_its_reads_cost_the_budget_nothing(chain, deployed, parties, tmp_path):
    wallet = make(chain, parties, tmp_path / "w.db", Policy(passes=("news-day",), per_site_daily_limit=6 * PRICE, timezone="UTC"))
    site = Site()
    sold = offer(chain, deployed, parties, passes=[DAY_PASS])
    with pytest.raises(OfferRejected, match="does not sell the pass 'news-week'.*sells news-day"):
        await wallet.pay_for(sold, URL, pass_name="news-week")
    header = await wallet.pay_for(sold, URL)  # the policy asks for it, none is held: bought
    assert header.pass_name == "news-day" and header.price == 5 * PRICE
    assert decode_header(header.value)["payload"]["pass"] == "news-day"
    await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, 5 * PRICE, with_cap=False, bought="news-day"),
                                header.price, header.payment_id)  # fmt: skip
    assert wallet.held_passes(SITE) == {"news-day": T0 + 3600 + 86400}
    for n in range(5):  # held: not bought again, and read within the daily limit though each signs a price
        header = await wallet.pay_for(sold, f"https://{SITE}/news/{n}.html")
        assert header.pass_name is None and "pass" not in decode_header(header.value)["payload"]
        await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, 0, with_cap=False), header.price, header.payment_id)
    assert figures(wallet)[:3] == (5 * PRICE, 5 * PRICE, 5 * PRICE), "the pass's price, nothing for its reads"
    # The pass ends: the policy buys the next one.
    wallet.clock = lambda: T0 + 3600 + 86400
    assert wallet.held_passes(SITE) == {}
    assert (await wallet.pay_for(sold, URL)).pass_name == "news-day"
    wallet.store.close()


def test_wallet_sites_shows_paid_of_cap_per_site(tmp_path, capsys, monkeypatch):
    """`channel-node wallet sites` reads only the database: spent this month and today, each cap as
    "news: $1.40 (1.4 ETH) of $2.00 (2 ETH) this month, resets 2027-01-01" in the site's display
    form beside the wallet's unit, the passes."""
    import time

    import channel_node.cli.wallet as wallet_cli
    from channel_node.cli.main import main
    from channel_node.client.store import SiteCap

    now = int(time.time())
    day, month = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d"), datetime.fromtimestamp(now, UTC).strftime("%Y-%m")
    resets = int(datetime(int(month[:4]) + (month[5:] == "12"), int(month[5:]) % 12 + 1, 1, tzinfo=UTC).timestamp())
    with WalletStore(tmp_path / "wallet.db") as store:
        with store._tx():
            store._add_spend(SITE, day, 14 * 10**16)
            store._add_spend(SITE, month, 14 * 10**17)
        store.record_cap(SiteCap(SITE, "news", 2 * 10**18, 14 * 10**17, "month", resets, now))
        store.record_pass(SITE, "news-day", now + 3600)
        store.record_display(SITE, {"symbol": "$", "decimals": 18, "shown": 2, "centsBelow": str(10**17)})
    monkeypatch.setattr(wallet_cli, "_wants_json", lambda as_json: as_json)
    assert main(["wallet", "sites", "--wallet", str(tmp_path), "--timezone", "UTC"]) == 0
    out = capsys.readouterr().out
    assert f"{SITE}: $1.40 (1.4 ETH) this month ({month}), 0.14 ETH today" in out
    # The site's `$` beside the wallet's own unit (here ETH: a site names any sign).
    assert f"news: $1.40 (1.4 ETH) of $2.00 (2 ETH) this month, resets {datetime.fromtimestamp(resets, UTC):%Y-%m-%d}" in out
    assert "pass news-day: valid until" in out
    assert main(["wallet", "sites", "--wallet", str(tmp_path), "--json", "--timezone", "UTC"]) == 0
    [row] = __import__("json").loads(capsys.readouterr().out)
    assert row["caps"] == [{"name": "news", "cap": str(2 * 10**18), "paid": str(14 * 10**17), "period": "month", "resets_at": resets}]
    assert row["this_month"] == str(14 * 10**17) and row["passes"][0]["valid"] is True
    assert main(["wallet", "sites", "--wallet", str(tmp_path), "--timezone", "Nowhere/Else"]) == 2
    assert capsys.readouterr().err.startswith("error: --timezone must be an IANA time zone name")


def test_wallet_get_prints_the_sites_form_beside_the_wallets_unit_and_the_cap_it_reached():
    from types import SimpleNamespace

    import channel_node.cli.wallet as wallet_cli
    from channel_node.amounts import ETH, Asset, Display

    dusd = Asset("DUSD", 6, "0x" + "d5" * 20)
    shown = Asset("DUSD", 6, "0x" + "d5" * 20, Display("$", 100_000))
    assert wallet_cli._charged_text(20_000, dusd, shown) == "2¢ (0.02 DUSD)"
    assert wallet_cli._charged_text(1_400_000, dusd, shown) == "$1.40 (1.4 DUSD)"
    assert wallet_cli._charged_text(20_000, dusd, None) == "0.02 DUSD"
    args = SimpleNamespace(timezone="UTC", passes=["news-day"])
    receipt = {"cap": {"name": "news", "cap": "2000000", "paid": "2000000", "resetsAt": 1798761600},
               "pass": {"name": "news-day", "until": 1798761600 + 3600}}  # fmt: skip
    # A receipt names no period: the one the site's offers named, kept by the wallet, does.
    assert wallet_cli._receipt_lines(receipt, shown, args, {"news": "month"}) == [
        "news: $2.00 (2 DUSD) of $2.00 (2 DUSD) this month, resets 2027-01-01 (reading on free)",
        "pass news-day: valid until 2027-01-01 01:00",
    ]
    assert wallet_cli._receipt_lines(receipt, shown, args)[0].startswith("news: $2.00 (2 DUSD) of $2.00 (2 DUSD) this period")
    policy = wallet_cli._policy(SimpleNamespace(token=None, deposit_multiple=50, max_price=None, site_daily_limit=None,
                                                daily_limit=None, site_monthly_limit="0.5", monthly_limit="2",
                                                timezone="Europe/Paris", passes=["news-day"], base_units=False), ETH)  # fmt: skip
    assert (policy.per_site_monthly_limit, policy.monthly_limit, policy.timezone, policy.passes) == (
        5 * 10**17, 2 * 10**18, "Europe/Paris", ("news-day",))


@pytest.mark.parametrize("lie", ["cap", "pass"])
async def test_a_site_that_charges_what_its_figures_said_was_free_overshoots_a_budget_by_one_price(
    chain, deployed, parties, tmp_path, lie
):
    """A hostile site's receipts keep saying the cap is reached (or the pass valid) and charge the
    price anyway: the first such read passes the budget as free and costs one price beyond it;
    then the site's figures are not believed, and the budget refuses before signing."""
    limit = 3 * PRICE if lie == "cap" else 5 * PRICE  # the cap's three prices, or the pass's price
    wallet = make(chain, parties, tmp_path / "w.db", Policy(per_site_daily_limit=limit, timezone="UTC"))
    site = Site(cap=3 * PRICE if lie == "cap" else 10**9)
    sold = offer(chain, deployed, parties, cap=NEWS_CAP if lie == "cap" else None, passes=[DAY_PASS] if lie == "pass" else None)
    if lie == "pass":
        header = await wallet.pay_for(sold, URL, pass_name="news-day")
        await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, 5 * PRICE, with_cap=False, bought="news-day"),
                                    header.price, header.payment_id)  # fmt: skip
    else:
        for n in range(3):
            header = await wallet.pay_for(sold, f"https://{SITE}/news/{n}.html")
            await wallet.settle_receipt(header.channel_id, site.receipt(wallet, header, PRICE), header.price, header.payment_id)
    header = await wallet.pay_for(sold, f"https://{SITE}/news/lie.html")  # believed free: passes the budget
    lying = site.receipt(wallet, header, PRICE, with_cap=lie == "cap")
    if lie == "cap":
        lying["cap"]["paid"] = str(3 * PRICE)  # "still at the cap", and charged
    await wallet.settle_receipt(header.channel_id, lying, header.price, header.payment_id)
    [before] = wallet.channels()
    with pytest.raises(SpendingLimitExceeded, match="per-site daily limit"):
        await wallet.pay_for(sold, f"https://{SITE}/news/next.html")
    [after] = wallet.channels()
    assert after.signed == before.signed, "refused before signing"
    assert wallet.store.spent(wallet._day(), SITE) == limit + PRICE, "one price beyond the budget, once"
    if lie == "cap":
        assert wallet.store.site_flagged(SITE, "cap_claims")
    else:
        assert wallet.held_passes(SITE) == {}
    wallet.store.close()


def test_a_wallet_from_before_caps_counts_what_it_signed(tmp_path):
    """A database without the `counted` and exact `month` columns gains them on open; its channels
    count what they signed, as the budgets did before (nothing is given back that was not counted)."""
    import sqlite3

    from channel_node.signing import ChannelConfig

    path = tmp_path / "old.db"
    with WalletStore(path) as store:
        config = ChannelConfig.create(payer="0x" + "11" * 20, signer="0x" + "22" * 20, receiver="0x" + "33" * 20,
                                      token=None, close_delay=3600, salt=7)  # fmt: skip
        store.insert_channel(b"\x01" * 32, 1, "0x" + "44" * 20, config, b"\x05" * 32, "open")
        store.record_signature(b"\x01" * 32, 5 * PRICE, b"\x00" * 65, SITE, "2026-12-01", 5 * PRICE)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE channels DROP COLUMN counted")
        db.execute("ALTER TABLE exact_payments DROP COLUMN month")
    with WalletStore(path) as store:
        record = store.channel(b"\x01" * 32)
        assert record is not None and (record.signed, record.counted) == (5 * PRICE, 5 * PRICE)
        assert store.spent("2026-12-01", SITE) == 5 * PRICE


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(lies=st.lists(st.tuples(st.booleans(), st.sampled_from(["same", "new", "none"])), min_size=4, max_size=10))
def test_a_hostile_sites_receipts_never_buy_more_than_one_price_past_a_budget(chain, deployed, parties, tmp_path_factory,
                                                                               lies):  # fmt: skip
    """A site whose receipts name a pass the wallet never bought (valid far ahead) and/or say its
    cap is reached (in the same period, or each time a "new" one), and charge the full price each
    time: whatever it says, the reader's daily budget is overshot by at most one price (nothing
    bought here). Before, a receipt's `pass` was believed as bought, and again after the belief
    ended, and a cap claimed reached in a new period each time was believed each time: every read
    skipped the budget."""
    limit = 3 * PRICE

    async def run() -> None:
        wallet = make(chain, parties, tmp_path_factory.mktemp("lies") / "w.db",
                      Policy(per_site_daily_limit=limit, timezone="UTC"))  # fmt: skip
        site = Site(cap=PRICE)
        sold = offer(chain, deployed, parties, cap=NEWS_CAP, passes=[DAY_PASS])
        try:
            for n, (claim_pass, claim_cap) in enumerate(lies * 2):
                try:
                    header = await wallet.pay_for(sold, f"https://{SITE}/news/{n}.html")
                except SpendingLimitExceeded:
                    continue
                receipt = site.receipt(wallet, header, PRICE, with_cap=claim_cap != "none")
                if claim_cap != "none":
                    resets = T0 + 31 * 86400 + (n if claim_cap == "new" else 0)
                    receipt["cap"].update(paid=str(PRICE), resetsAt=resets)
                if claim_pass:
                    receipt["pass"] = {"name": "news-day", "until": T0 + 30 * 86400}
                await wallet.settle_receipt(header.channel_id, receipt, header.price, header.payment_id)
                assert wallet.store.spent(wallet._day(), SITE) <= limit + PRICE, "at most one price past the budget"
        finally:
            wallet.store.close()

    asyncio.run(run())


@settings(max_examples=100, deadline=None)
@given(
    symbol=st.sampled_from(["$", "€", "ETH", "DUSD", "USD"]),
    cents=st.none() | st.integers(1, 10**6),
    paid=st.integers(0, 10**24),
    cap=st.integers(1, 10**24),
    decimals=st.sampled_from([6, 18]),
    ended=st.booleans(),
)
def test_a_cap_line_shows_the_wallets_own_unit_beside_any_sites_form(symbol, cents, paid, cap, decimals, ended):
    """Whatever form a site names (`$` on an ETH wallet, the wallet's own symbol on another token),
    a cap line (`wallet sites`, the receipt lines of `wallet get`) states both amounts in the
    wallet's own unit beside the site's text, as every other amount the wallet prints does. Before,
    `news: $1.40 of $2.00` was printed for 1.4 ETH of 2 ETH."""
    from channel_node.amounts import Asset, Display, format_amount

    own = Asset("ETH" if decimals == 18 else "DUSD", decimals, None if decimals == 18 else "0x" + "d5" * 20)
    shown = replace(own, display=Display(symbol, cents * 10 ** (decimals - 6) if cents else None))
    resets = T0 + 86400
    line = cap_line("news", paid, cap, "month", resets, shown, T0 + (2 * 86400 if ended else 0), UTC)
    for amount in ((0, cap) if ended else (paid, cap)):
        assert f"({format_amount(amount, own)})" in line, line
    plain = cap_line("news", paid, cap, "month", resets, own, T0 + (2 * 86400 if ended else 0), UTC)
    assert format_amount(cap, own) in plain and "(" not in plain.split(" this ")[0]
