"""The reader's four budgets in one rule (client/wallet.py `_check_budget`; docs/security.md, "The
reader's budgets"): over generated limits, ledgers and prices, a payment is refused exactly when
what a budget's period already holds plus the spend exceeds it, the per-site ones only when the
site is known, the first exceeded budget (per-site monthly, monthly, per-site daily, daily) named
with the total it would reach and its limit; and a refusal changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.client import Policy, SpendingLimitExceeded, Wallet, WalletStore
from channel_node.signing import keccak256

NOW = datetime(2026, 12, 10, 12, tzinfo=UTC).timestamp()
MONTH, DAY = "2026-12", "2026-12-10"
SITE = "news.example"


class Ledger:
    """WalletStore.spent over a fixed table {(period, site): spent}; site None sums the period."""

    def __init__(self, table: dict[tuple[str, str], int]) -> None:
        self.table = table

    def spent(self, period: str, site: str | None = None) -> int:
        return sum(v for (p, s), v in self.table.items() if p == period and (site is None or s == site))


@pytest.fixture(scope="module")
def wallet(tmp_path_factory):
    store = WalletStore(tmp_path_factory.mktemp("budgets") / "wallet.db")
    wallet = Wallet(None, keccak256(b"budget reader"), store)  # type: ignore[arg-type]  # no chain is asked
    wallet.clock = lambda: NOW
    yield wallet
    store.close()


limit = st.none() | st.integers(0, 60)
spent = st.integers(0, 30)


@settings(max_examples=200, deadline=None)
@given(limits=st.tuples(limit, limit, limit, limit), ledger=st.tuples(spent, spent, spent, spent),
       spend=st.integers(0, 30), known_site=st.booleans())  # fmt: skip
def test_a_payment_is_refused_exactly_by_the_first_budget_it_would_exceed(wallet, limits, ledger, spend, known_site):
    per_site_monthly, monthly, per_site_daily, daily = limits
    table = {(MONTH, SITE): ledger[0], (MONTH, "other.example"): ledger[1],
             (DAY, SITE): ledger[2], (DAY, "other.example"): ledger[3]}  # fmt: skip
    wallet.policy = Policy(per_site_monthly_limit=per_site_monthly, monthly_limit=monthly, timezone="UTC",
                           per_site_daily_limit=per_site_daily, daily_limit=daily)  # fmt: skip
    wallet.store = Ledger(dict(table))
    site = SITE if known_site else None
    budgets = [
        (per_site_monthly, ledger[0], known_site, f"this month's spending on {SITE}", "the per-site monthly budget"),
        (monthly, ledger[0] + ledger[1], True, f"this month's spending ({MONTH})", "the monthly budget"),
        (per_site_daily, ledger[2], known_site, f"today's spending on {SITE}", "the per-site daily limit"),
        (daily, ledger[2] + ledger[3], True, "today's spending", "the daily limit"),
    ]
    exceeded = [b for b in budgets if b[0] is not None and b[2] and b[1] + spend > b[0]]
    if not exceeded:
        wallet._check_limits(site, spend, spend)
    else:
        cap, held, _, spending, budget = exceeded[0]
        with pytest.raises(SpendingLimitExceeded) as refusal:
            wallet._check_limits(site, spend, spend)
        shown = wallet._shown
        assert str(refusal.value) == (
            f"paying {shown(spend)} would bring {spending} to {shown(held + spend)}, above {budget} {shown(cap)}"
        )
    assert wallet.store.table == table, "checking a budget writes nothing"
