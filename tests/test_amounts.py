"""amounts.py, the one place amounts are typed and read (docs/amounts.md): every uint256 in every
asset of 0..36 decimals is shown exactly and reads back to itself; what a person types parses
exactly or is refused with a message that shows an example (never rounded, never a float)."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.amounts import (
    ETH,
    MAX_AMOUNT,
    Asset,
    format_amount,
    format_base,
    format_number,
    format_short,
    parse_amount,
    token_asset,
)
from channel_node.errors import UsageError

DUSD = Asset("DUSD", 6, "0x" + "11" * 20)
uint256 = st.one_of(st.integers(0, MAX_AMOUNT), st.integers(0, 10**24), st.sampled_from([0, 1, MAX_AMOUNT, 10**18, 5 * 10**14]))
decimals = st.integers(0, 36)
symbols = st.sampled_from(["ETH", "DUSD", "USDC", "X", "USD₮", "USDC.e", "1INCH"])


@st.composite
def assets(draw: st.DrawFn) -> Asset:
    symbol = draw(symbols)
    return ETH if symbol == "ETH" else Asset(symbol, draw(decimals), "0x" + "22" * 20)


@settings(max_examples=200, deadline=None)
@given(uint256, assets())
def test_format_then_parse_is_the_identity(value: int, asset: Asset) -> None:
    shown = format_amount(value, asset)
    assert parse_amount(shown, asset) == value
    number = format_number(value, asset.decimals)
    assert parse_amount(number, asset) == value
    assert parse_amount(number + asset.symbol, asset) == value
    assert parse_amount(number + asset.symbol.lower(), asset) == value
    assert parse_amount(f"{value}base", asset) == value
    assert parse_amount(format_base(value, asset), asset) == value
    # Exact, checked against Python's Decimal with enough precision (no float anywhere).
    with localcontext(prec=200):
        assert Decimal(number) == Decimal(value).scaleb(-asset.decimals)
    assert "e" not in number.lower() and (not number.endswith("0") or "." not in number)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**40), decimals, st.integers(0, 40))
def test_a_typed_decimal_is_exact_or_refused_when_it_has_more_decimals_than_the_asset(whole: int, places: int, extra: int) -> None:
    asset = Asset("TOK", places, "0x" + "33" * 20)
    fraction = str(whole % 10**extra).rjust(extra, "0") if extra else ""
    text = f"{whole}.{fraction}" if extra else str(whole)
    with localcontext(prec=200):
        expected = Decimal(text).scaleb(places)
    if len(fraction) > places:
        with pytest.raises(UsageError, match="more decimals than TOK has"):
            parse_amount(text, asset)
    elif expected > MAX_AMOUNT:
        with pytest.raises(UsageError, match="uint256"):
            parse_amount(text, asset)
    else:
        assert parse_amount(text, asset) == int(expected)


def test_the_syntax_of_the_shared_examples() -> None:
    assert parse_amount("0.0005", ETH) == 500_000_000_000_000
    assert parse_amount("0.0005ETH", ETH) == parse_amount("0.0005 ETH", ETH) == parse_amount(" 0.0005 eth ", ETH) == 5 * 10**14
    assert parse_amount("500000000000000wei", ETH) == parse_amount("500000000000000 wei", ETH) == 5 * 10**14
    assert parse_amount("20000wei", ETH) == parse_amount("20000base", ETH) == 20_000
    assert parse_amount("12", ETH) == 12 * 10**18
    assert parse_amount(".5", ETH) == parse_amount("0.50", ETH) == 5 * 10**17
    assert parse_amount("0.02", DUSD) == parse_amount("0.02DUSD", DUSD) == parse_amount("20000base", DUSD) == 20_000
    assert parse_amount("0", ETH) == 0
    assert format_amount(5 * 10**14, ETH) == "0.0005 ETH"
    assert format_amount(20_000, DUSD) == "0.02 DUSD"
    assert format_amount(12 * 10**18, ETH) == "12 ETH"
    assert format_amount(1, ETH) == "0.000000000000000001 ETH"
    assert format_amount(1234567 * 10**18, ETH, group=True) == "1,234,567 ETH"
    assert format_number(-15 * 10**17, 18) == "-1.5"
    assert format_base(20_000, ETH) == "20000 wei" and format_base(20_000, DUSD) == "20000 base"


@pytest.mark.parametrize(
    ("text", "asset", "why"),
    [
        ("0.0000000000000000001", ETH, "more decimals than ETH has"),
        ("0.0000001", DUSD, "more decimals than DUSD has"),
        ("1e-5", ETH, "exponent"),
        ("1E5", ETH, "exponent"),
        ("5e-4 ETH", ETH, "exponent"),
        ("1,000", ETH, "separators"),
        ("1_000", ETH, "separators"),
        ("1 000 ETH", ETH, "separators"),
        ("-1", ETH, "sign"),
        ("+1", ETH, "sign"),
        ("", ETH, "empty"),
        ("   ", ETH, "empty"),
        ("ETH", ETH, "not a number"),
        (".", ETH, "not a number"),
        ("1.2.3", ETH, "not a number"),
        ("0x10", ETH, "is in 'x10'"),
        ("inf", ETH, "not a number"),
        ("nan", ETH, "not a number"),
        ("0.02 ETH", DUSD, "this asset is DUSD"),
        ("0.0005DUSD", ETH, "this asset is ETH"),
        ("20000wei", DUSD, "base units are written with 'base'"),
        ("1.5wei", ETH, "fraction of a base unit"),
        (str(MAX_AMOUNT + 1) + "wei", ETH, "uint256"),
        ("1" * 300, ETH, "too long"),
    ],
)
def test_refusals_say_what_is_wrong_and_show_an_example(text: str, asset: Asset, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_amount(text, asset)
    message = str(caught.value)
    assert why in message
    assert "\n" not in message
    # The example in the message is itself accepted.
    assert f"e.g. {asset.example} or {asset.example}{asset.symbol}" in message
    parse_amount(asset.example, asset)
    parse_amount(asset.example + asset.symbol, asset)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30), assets())
def test_any_text_parses_to_a_uint256_or_is_a_usage_error(text: str, asset: Asset) -> None:
    try:
        value = parse_amount(text, asset)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 <= value <= MAX_AMOUNT


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e-30, max_value=1e-5, allow_nan=False))
def test_a_floats_repr_is_never_accepted_as_something_else(number: float) -> None:
    """`str(8e-05)` is what a float prints; it is either refused (an exponent) or read exactly."""
    text = str(number)
    try:
        value = parse_amount(text, ETH)
    except UsageError:
        assert "e" in text.lower() or len(text.partition(".")[2]) > 18
    else:
        with localcontext(prec=200):
            assert Decimal(value) == Decimal(text).scaleb(18)


def test_an_asset_refuses_decimals_and_symbols_it_cannot_show() -> None:
    for bad in (-1, 78, True, 1.5):
        with pytest.raises(ValueError):
            Asset("X", bad, None)  # type: ignore[arg-type]
    for symbol in ("", "E T H", "ETH\x1b[31m", "A" * 13, "123", ".e", "ETH\u202e"):
        with pytest.raises(ValueError):
            Asset(symbol, 18, None)


def test_a_tokens_symbol_is_kept_to_what_can_be_shown() -> None:
    address = "0x" + "44" * 20
    assert token_asset("DUSD", 6, address) == Asset("DUSD", 6, address)
    assert token_asset(b"DUSD", 6, address).symbol == "DUSD"
    assert token_asset("US\x1b[31mD\u202eC", 6, address).symbol == "US31mDC"
    assert token_asset("", 6, address).symbol == "TOKEN"
    assert token_asset("   ", 6, address).symbol == "TOKEN"
    assert token_asset(None, 6, address).symbol == "TOKEN"
    assert token_asset("X" * 40, 6, address).symbol == "X" * 12
    # Decimals it does not answer, or cannot be shown honestly: amounts in its base units.
    for decimals in (None, 78, 255, -1, True, "6"):
        unknown = token_asset("BIG", decimals, address)
        assert unknown == Asset("base", 0, address)
        assert format_amount(20_000, unknown) == "20000 base" and parse_amount("20000base", unknown) == 20_000


@settings(max_examples=200, deadline=None)
@given(uint256, decimals)
def test_short_forms_are_plain_decimals_within_half_a_step(value: int, places: int) -> None:
    """Axis labels and cards: never an exponent, and the value shown is the amount rounded to three
    significant digits (the suffix M..E a power of ten)."""
    text = format_short(value, places)
    assert "e" not in text.replace("E", "").lower() and "+" not in text
    number, scale = text.replace(",", ""), 0
    if number[-1] in "MGTPE":
        scale = {"M": 6, "G": 9, "T": 12, "P": 15, "E": 18}[number[-1]]
        number = number[:-1]
    with localcontext(prec=200):
        shown = Decimal(number).scaleb(scale + places)
        assert abs(shown - value) <= Decimal(10) ** max(len(str(value)) - 3, 0) / 2
    assert len(number.replace(".", "").strip("0")) <= 3 or scale == 18


def test_short_forms_of_the_findings_amounts() -> None:
    assert format_short(8 * 10**13, 18) == "0.00008"  # was 8e-05
    assert format_short(25 * 10**12, 18) == "0.000025"
    assert format_short(74_999_999_999_999, 18) == "0.000075"
    assert format_short(10**18, 18) == "1" and format_short(0, 18) == "0"
    assert format_short(1_234_567 * 10**18, 18) == "1.23M"
    assert format_short(12_345, 0) == "12,300"
