"""The `[exact]` settings (config.py:Exact): off by default with the documented defaults, read from
TOML and from CHANNEL_NODE_EXACT__* variables, a price entry's own `exact`, and bad values refused."""

from __future__ import annotations

import pytest

from channel_node.config import SettingsError, load_settings

BASE = {"contract": "0x" + "11" * 20, "receiver": "0x" + "22" * 20, "paywall": {"content_dir": "."}}


def test_exact_is_off_by_default_with_the_documented_defaults():
    exact = load_settings(**BASE).exact
    assert exact.enabled is False
    assert (exact.max_timeout_seconds, exact.settle_timeout, exact.settle_margin, exact.min_price) == (120, 20.0, 30, 0)
    assert (exact.max_in_flight, exact.max_gas_per_hour, exact.min_gas_balance) == (64, None, 0)


def test_toml_environment_and_price_entries(tmp_path, monkeypatch):
    path = tmp_path / "node.toml"
    path.write_text(
        'contract = "0x' + "11" * 20 + '"\nreceiver = "0x' + "22" * 20 + '"\n'
        "[exact]\nenabled = true\nmin_price = \"5000\"\nmax_gas_per_hour = 1000000\n"
        '[paywall]\ncontent_dir = "."\n[[paywall.prices]]\npath = "/a/*"\nprice = 10\nexact = false\n'
        '[[paywall.prices]]\npath = "/b/*"\nprice = 10\n'
    )
    monkeypatch.setenv("CHANNEL_NODE_EXACT__SETTLE_TIMEOUT", "5")
    settings = load_settings(path)
    assert settings.exact.enabled and settings.exact.min_price == 5000 and settings.exact.settle_timeout == 5.0
    assert settings.exact.max_gas_per_hour == 1_000_000
    assert [rule.to_price().exact for rule in settings.paywall.prices] == [False, None]


@pytest.mark.parametrize("change", [
    {"max_timeout_seconds": 0}, {"settle_timeout": 0}, {"settle_margin": -1}, {"min_price": 1.5}, {"min_price": "-1"},
    {"max_in_flight": 0}, {"max_gas_per_hour": 0}, {"unknown": 1},
])  # fmt: skip
def test_bad_exact_settings_are_refused(change):
    """Refused as a configuration error naming the `exact` field (config.py's one-line errors)."""
    (field,) = change
    with pytest.raises(SettingsError, match=rf"exact\.{field}\b|`{field}` in \[exact\]"):
        load_settings(**BASE, exact=change)
