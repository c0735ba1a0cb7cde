"""`[paywall] timezone`, `[[paywall.caps]]` and `[[paywall.passes]]` (docs/protocol.md, "Caps and
passes"): read into base units through amounts.parse_amount, and every mistake refused with one
line naming the entry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.amounts import ETH, Asset
from channel_node.config import SettingsError, load_settings
from channel_node.core.spending import DAY, Period, PeriodKind

BASE = {"contract": "0x" + "11" * 20, "receiver": "0x" + "22" * 20}
TOKEN = "0x" + "33" * 20
DUSD = Asset("DUSD", 6, TOKEN)
CAP = {"name": "news", "pattern": "/news/*", "cap": "2.00", "period": "month"}
PASS = {"name": "news-day", "pattern": "/news/*", "price": "0.30", "duration": "1d", "description": "All of today's news"}


def load(token: str | None = None, **paywall):
    return load_settings(**BASE, token=token, paywall={"content_dir": "/tmp", **paywall})


def refused(**paywall) -> str:
    with pytest.raises(SettingsError) as caught:
        load(**paywall)
    text = str(caught.value)
    assert "\n" not in text and "[type=" not in text
    return text


def test_caps_and_passes_are_read_in_the_assets_unit():
    caps, passes = load(TOKEN, timezone="Europe/Paris", caps=[CAP, {**CAP, "name": "all", "pattern": None,
                        "cap": 5_000_000, "period": "30d"}], passes=[PASS]).spending(DUSD)  # fmt: skip
    assert [(c.name, c.amount, c.period) for c in caps] == [
        ("news", 2_000_000, Period(PeriodKind.MONTH)), ("all", 5_000_000, Period(PeriodKind.ROLLING, 30))]
    assert [(p.name, p.price, p.duration, p.pattern) for p in passes] == [("news-day", 300_000, DAY, "/news/*")]
    eth_caps, _ = load(caps=[{**CAP, "cap": "20000wei"}]).spending(ETH)
    assert eth_caps[0].amount == 20_000
    assert load().paywall.timezone == "UTC"


@pytest.mark.parametrize(
    ("paywall", "names"),
    [
        ({"timezone": "Mars/Olympus"}, "`paywall.timezone` = 'Mars/Olympus'"),
        ({"timezone": "../../etc/passwd"}, "`paywall.timezone`"),
        ({"caps": [{**CAP, "period": "fortnight"}]}, "`paywall.caps[0].period` = 'fortnight'"),
        ({"caps": [{**CAP, "period": "0d"}]}, "`paywall.caps[0].period`"),
        ({"passes": [{**PASS, "duration": "1y"}]}, "`paywall.passes[0].duration` = '1y'"),
        ({"passes": [{**PASS, "duration": "0h"}]}, "`paywall.passes[0].duration`"),
        ({"caps": [CAP, CAP]}, "two paywall.caps entries are named 'news'"),
        ({"passes": [PASS, PASS]}, "two paywall.passes entries are named 'news-day'"),
        ({"passes": [{**PASS, "pattern": None}]}, "pass 'news-day' covers nothing"),
        ({"caps": [{**CAP, "cap": "0"}]}, "`paywall.caps[0].cap` = '0': must be positive"),
        ({"caps": [{**CAP, "cap": 0}]}, "`paywall.caps[0].cap` = 0: must be positive"),
        ({"passes": [{**PASS, "price": "0.000"}]}, "`paywall.passes[0].price` = '0.000': must be positive"),
        ({"caps": [{**CAP, "cap": "-1"}]}, "`paywall.caps[0].cap` = '-1'"),
        ({"caps": [{**CAP, "cap": 1.5}]}, "`paywall.caps[0].cap` = 1.5"),
        ({"caps": [{**CAP, "cap": "1e-3"}]}, "exponent"),
        ({"caps": [{**CAP, "cap": "0.0000000000000000001"}]}, "more decimals than ETH"),
        ({"caps": [{**CAP, "name": "News Site"}]}, "`paywall.caps[0].name` = 'News Site'"),
        ({"caps": [{**CAP, "sesion": "x"}]}, "unknown setting `sesion`"),
    ],
)
def test_each_mistake_is_one_line_naming_the_entry(paywall, names):
    assert names in refused(**paywall)


def test_a_token_sites_amounts_are_checked_against_its_decimals_at_start():
    settings_ = load(TOKEN, caps=[{**CAP, "cap": "0.0000001"}])  # syntax is fine; DUSD has 6 decimals
    with pytest.raises(SettingsError, match=r"`paywall.caps\[0\].cap` = '0.0000001': .*more decimals than DUSD"):
        settings_.spending(DUSD)
    with pytest.raises(SettingsError, match="is in wei"):
        load(TOKEN, passes=[{**PASS, "price": "20000wei"}]).spending(DUSD)


@settings(max_examples=60, deadline=None)
@given(whole=st.integers(0, 10**6), fraction=st.integers(0, 999_999))
def test_any_positive_decimal_reads_back_exactly(whole, fraction):
    text = f"{whole}.{fraction:06d}"
    value = whole * 10**6 + fraction
    if value == 0:
        assert "must be positive" in refused(caps=[{**CAP, "cap": text}])
        return
    caps, _ = load(TOKEN, caps=[{**CAP, "cap": text}]).spending(DUSD)
    assert caps[0].amount == value
