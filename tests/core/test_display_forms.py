"""Display forms (issue 16, item 4; docs/amounts.md, "Display forms"): `$0.02`, `$1.40`, `2¢` for
people, integers inside. Generated over every amount, asset decimals and form: what is shown is the
exact amount (never rounded down to look cheaper), reads back to itself, and crosses to cents exactly
at the threshold; the offer's `extra.display` carries the form to wallets and is ignored when it
does not fit the asset."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.amounts import CENT_SIGN, MAX_AMOUNT, Asset, Display, format_amount, format_display, parse_display
from channel_node.config import DisplayForm, SettingsError
from channel_node.errors import UsageError
from channel_node.wire.channel import display_extra, read_display

TOKEN = "0x" + "44" * 20
amounts = st.one_of(st.integers(0, MAX_AMOUNT), st.integers(0, 10**12), st.sampled_from([0, 1, 9, 10, 99, 100, 10**6]))


@st.composite
def shown_assets(draw: st.DrawFn) -> Asset:
    decimals = draw(st.integers(2, 36))
    cents = draw(st.one_of(st.none(), st.integers(0, 10 ** (decimals + 2))))
    form = Display(draw(st.sampled_from(["$", "€", "US$", "£", "₮"])), cents, draw(st.integers(0, min(decimals, 18))))
    return Asset("USDX", decimals, TOKEN, form)


def _exact(text: str, asset: Asset) -> Decimal:
    assert asset.display is not None
    with localcontext(prec=200):
        if text.endswith(CENT_SIGN):
            return Decimal(text[: -len(CENT_SIGN)].replace(",", "")) / 100
        assert text.startswith(asset.display.symbol), text
        return Decimal(text[len(asset.display.symbol) :].replace(",", ""))


@settings(max_examples=200, deadline=None)
@given(amounts, shown_assets())
def test_the_display_form_is_exact_and_reads_back(value: int, asset: Asset) -> None:
    shown = format_display(value, asset)
    assert parse_display(shown, asset) == value
    with localcontext(prec=200):
        assert _exact(shown, asset) == Decimal(value).scaleb(-asset.decimals), "never rounded, up or down"
    assert "e" not in shown.lower() and " " not in shown


@settings(max_examples=200, deadline=None)
@given(amounts, shown_assets())
def test_cents_exactly_below_the_threshold_and_the_fewest_digits_shown_above(value: int, asset: Asset) -> None:
    form = asset.display
    assert form is not None
    shown = format_display(value, asset)
    if form.cents_below is not None and 0 < value < form.cents_below:
        assert shown.endswith(CENT_SIGN) and not shown.startswith(form.symbol)
    else:
        assert shown.startswith(form.symbol) and not shown.endswith(CENT_SIGN)
        fraction = shown.partition(".")[2]
        assert len(fraction) >= form.shown, "at least `shown` digits after the point"
        # No more digits than needed beyond `shown`: the last one is not a padding zero.
        assert len(fraction) == form.shown or not fraction.endswith("0")


@settings(max_examples=100, deadline=None)
@given(amounts, st.integers(0, 36))
def test_without_a_form_the_exact_unit_stays(value: int, decimals: int) -> None:
    asset = Asset("DUSD", decimals, TOKEN)
    assert format_display(value, asset) == format_amount(value, asset)
    assert parse_display(format_amount(value, asset), asset) == value


def test_a_dollar_stablecoin_reads_at_a_glance() -> None:
    dusd = Asset("DUSD", 6, TOKEN, Display("$", 100_000, 2))
    assert [format_display(v, dusd) for v in (20_000, 25_000, 21_000, 100_000, 1_400_000, 2_000_000, 0, 1_234_500_000)] == [
        "2¢", "2.5¢", "2.1¢", "$0.10", "$1.40", "$2.00", "$0.00", "$1,234.50"]  # fmt: skip
    no_cents = Asset("DUSD", 6, TOKEN, Display("$"))
    assert format_display(21_000, no_cents) == "$0.021", "not $0.02: a price is never rounded down"
    assert format_display(20_000, no_cents) == "$0.02"
    assert parse_display("0.02 DUSD", dusd) == parse_display("$0.02", dusd) == parse_display("2¢", dusd) == 20_000
    for bad in ("$0.0000001", "0.00001¢", "$-1", "-$1", "$", "¢", "$1e3", "$1,2"):
        with pytest.raises(UsageError):
            parse_display(bad, dusd)


@pytest.mark.parametrize("symbol", ["", "12", "$1", "a b", "\u202e$", "$$$$$", "¢", "$."])
def test_a_display_symbol_cannot_forge_what_people_read(symbol: str) -> None:
    with pytest.raises(ValueError):
        Display(symbol)


def test_a_form_must_fit_the_asset() -> None:
    with pytest.raises(ValueError, match="at least 2 decimals"):
        Asset("WHOLE", 1, TOKEN, Display("$", 5))
    with pytest.raises(ValueError, match="shows 4 decimals"):
        Asset("WHOLE", 2, TOKEN, Display("$", None, 4))
    form = DisplayForm(symbol="$", cents_below="0.10")
    assert form.for_asset(Asset("DUSD", 6, TOKEN)).display == Display("$", 100_000, 2)
    assert DisplayForm(symbol="$", cents_below="100000base").for_asset(Asset("DUSD", 6, TOKEN)).display == Display("$", 100_000, 2)
    with pytest.raises(SettingsError, match=r"\[paywall.display\] does not fit DUSD"):
        DisplayForm(symbol="$", cents_below="0.0000001").for_asset(Asset("DUSD", 6, TOKEN))
    with pytest.raises(ValueError, match="as text"):
        DisplayForm(symbol="$", cents_below="1e-1")


@settings(max_examples=100, deadline=None)
@given(shown_assets())
def test_the_offer_carries_the_form_to_wallets(asset: Asset) -> None:
    document = display_extra(asset)
    assert document is not None
    plain = Asset(asset.symbol, asset.decimals, asset.address)
    assert read_display({"display": document}, plain).display == asset.display
    other = Asset(asset.symbol, asset.decimals + 1, asset.address)
    assert read_display({"display": document}, other).display is None, "made for other decimals: ignored"
    assert display_extra(plain) is None


junk = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                    max_leaves=8)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["symbol", "centsBelow", "decimals", "shown", "x"]), junk, max_size=5))
def test_a_malformed_display_object_leaves_the_assets_own_unit(document: dict[str, object]) -> None:
    asset = Asset("DUSD", 6, TOKEN)
    shown = read_display({"display": document}, asset)
    assert shown == asset and (shown.display is None or isinstance(shown.display, Display))
