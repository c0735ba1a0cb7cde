"""Amounts for people: the one place that turns what a person types into an integer amount in the
asset's smallest unit, and an integer amount into what a person reads (docs/amounts.md).

Money stays an integer inside (docs/security.md); only the edges that face a person (the command
line, the report, the dashboard, the charts, the paywall page) convert, and only through here.

The syntax a person types (`parse_amount`):

- a decimal in the asset's unit: `0.0005`, `12`, `0.02`, `.5`;
- optionally followed by the asset's symbol, with or without a space: `0.0005ETH`, `0.0005 ETH`
  (any case; another asset's symbol is refused);
- or base units with an explicit suffix: `wei` for ETH, `base` for any asset (`20000wei`,
  `20000base`, `20000 base`): a whole number of the smallest unit.

Refused, never rounded or guessed: more fraction digits than the asset has (`0.0000001` for a
6-decimals token), an exponent (`1e-5`: a float's artefact, not an amount), a sign, thousands
separators, a fraction of a base unit, and anything above a uint256. Every refusal is a
`UsageError` whose message names what was typed and shows an example that works.

Display (`format_amount`): exact digits (no float), trailing fraction zeros trimmed, the symbol
after a space: `0.0005 ETH`, `0.02 DUSD`, `12 ETH`. What it prints parses back to the same
integer, so a person can paste a displayed amount into a command.

A display form (`Display`, docs/amounts.md "Display forms"), for an asset people count in another
currency's signs (a dollar stablecoin): `format_display` shows `$0.02`, `$1.40`, and `2¢` under a
threshold. It never rounds: an amount with more digits than the form shows gets them all (`$0.021`,
never `$0.02`, which would look cheaper than it is); `parse_display` reads every such text back.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from channel_node.errors import UsageError

__all__ = [
    "CENT_SIGN",
    "ETH",
    "MAX_AMOUNT",
    "Asset",
    "Display",
    "format_amount",
    "format_display",
    "format_base",
    "format_number",
    "format_short",
    "parse_amount",
    "parse_display",
    "token_asset",
    "with_display",
]

MAX_AMOUNT = 2**256 - 1  # the largest amount the contract can hold (a uint256)
MAX_DECIMALS = 77  # a uint256 has 78 digits; ERC-20's uint8 allows more, but no real token does
_MAX_TEXT = 200  # longer input is refused before any parsing (a uint256 in wei is 78 digits)
_SYMBOL_MAX = 12

# A decimal: digits with an optional fraction (`12`, `12.`, `12.5`, `.5`).
_NUMBER = re.compile(r"(?P<whole>[0-9]*)(?:(?P<dot>\.)(?P<fraction>[0-9]*))?")
# Where no known unit ends the text: the number's characters, then whatever unit follows.
_UNIT = re.compile(r"(?P<number>[0-9.]*)\s*(?P<unit>\S.*)?", re.DOTALL)
_EXPONENT = re.compile(r"[0-9]*\.?[0-9]*[eE][+-]?[0-9]+(\s*\S*)")
_SEPARATED = re.compile(r"[0-9]+([,_' ][0-9]+)+(\.[0-9]*)?(\s*\S*)")
_SYMBOL_EXTRA = frozenset("._-")


CENT_SIGN = "¢"
_DISPLAY_SYMBOL_MAX = 4
_SHOWN_MAX = 18


@dataclass(frozen=True)
class Display:
    """How people read an asset at a glance (docs/amounts.md, "Display forms"): `symbol` before the
    number (`$`), at least `shown` digits after the point (`$1.40`), and below `cents_below` base
    units (None: never) the amount in hundredths with the cent sign (`2¢`). Only for an asset with
    at least 2 decimals when `cents_below` is set: a hundredth must be a whole number of base units
    or a decimal of them."""

    symbol: str
    cents_below: int | None = None
    shown: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.symbol, str) and 0 < len(self.symbol) <= _DISPLAY_SYMBOL_MAX
                and all(_symbol_char(c) and c not in _SYMBOL_EXTRA for c in self.symbol)
                and not any(c.isdigit() for c in self.symbol) and CENT_SIGN not in self.symbol):  # fmt: skip
            raise ValueError(f"a display symbol is 1 to {_DISPLAY_SYMBOL_MAX} letters or currency signs (no digits), "
                             f"not {self.symbol!r}")  # fmt: skip
        if self.cents_below is not None and (
            isinstance(self.cents_below, bool) or not isinstance(self.cents_below, int) or not 0 <= self.cents_below <= MAX_AMOUNT
        ):
            raise ValueError(f"cents_below must be an amount in base units, not {self.cents_below!r}")
        if isinstance(self.shown, bool) or not isinstance(self.shown, int) or not 0 <= self.shown <= _SHOWN_MAX:
            raise ValueError(f"shown must be an integer from 0 to {_SHOWN_MAX}, not {self.shown!r}")


@dataclass(frozen=True)
class Asset:
    """What a channel is paid in: its symbol, its decimals (10**decimals base units make one), and
    the token contract's address (None for ETH, the chain's native coin). `display`: the operator's
    display form for it (people only; it takes no part in comparing assets)."""

    symbol: str
    decimals: int
    address: str | None = None
    display: Display | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.decimals, int) or isinstance(self.decimals, bool) or not 0 <= self.decimals <= MAX_DECIMALS:
            raise ValueError(f"decimals must be an integer from 0 to {MAX_DECIMALS}, not {self.decimals!r}")
        if not _is_clean_symbol(self.symbol):
            raise ValueError(f"symbol must be 1 to {_SYMBOL_MAX} letters, digits or currency signs, not {self.symbol!r}")
        if self.display is not None:
            if not isinstance(self.display, Display):
                raise ValueError("display must be a Display")
            if self.display.cents_below is not None and self.decimals < 2:
                raise ValueError(f"a cent form needs an asset of at least 2 decimals; {self.symbol} has {self.decimals}")
            if self.display.shown > self.decimals:
                raise ValueError(f"the display form shows {self.display.shown} decimals; {self.symbol} has {self.decimals}")

    @property
    def is_native(self) -> bool:
        return self.address is None

    @property
    def base_suffix(self) -> str:
        """The suffix that marks base units in what this asset's user types and reads: `wei` for ETH."""
        return "wei" if self.is_native else "base"

    @property
    def example(self) -> str:
        """A typed amount that works for this asset, for messages."""
        return "0.0005" if self.decimals >= 4 else "5" if self.decimals == 0 else "0." + "0" * (self.decimals - 1) + "5"


def _is_clean_symbol(symbol: object) -> bool:
    return (
        isinstance(symbol, str)
        and 0 < len(symbol) <= _SYMBOL_MAX
        and all(_symbol_char(c) for c in symbol)
        and not symbol.isdigit()
        and symbol[0] not in _SYMBOL_EXTRA
    )


def _symbol_char(c: str) -> bool:
    """Letters, digits, currency signs (`USD₮`) and `._-` (`USDC.e`): nothing that spaces, hides
    or reorders what a terminal or page shows."""
    return unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Sc") or c in _SYMBOL_EXTRA


ETH = Asset("ETH", 18, None)


def token_asset(symbol: object, decimals: object, address: str) -> Asset:
    """An ERC-20 token's asset from what its contract answers to `symbol()` and `decimals()`
    (None for a call it does not answer: both are optional in ERC-20).

    A token's symbol is anyone's text: one that is empty, long, or holds spaces or control
    characters (which would forge what a terminal or page shows) is kept to its letters, digits,
    currency signs and `._-`, at most 12 of them, and a token with none is shown as `TOKEN`. A
    token whose decimals are unknown or outside 0..77 is shown in its base units: the asset
    `base` with 0 decimals (`20000 base`, typed `20000base` as for any asset)."""
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= MAX_DECIMALS:
        return Asset("base", 0, address)
    text = symbol.decode("utf-8", "replace") if isinstance(symbol, bytes) else symbol if isinstance(symbol, str) else ""
    kept = "".join(c for c in unicodedata.normalize("NFC", text) if _symbol_char(c)).lstrip("._-")[:_SYMBOL_MAX]
    return Asset(kept if _is_clean_symbol(kept) else "TOKEN", decimals, address)


def _refuse(text: str, asset: Asset, why: str) -> UsageError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    unit = asset.symbol
    return UsageError(
        f"amount {shown!r} {why}; write it in {unit} (e.g. {asset.example} or {asset.example}{unit}), "
        f"or in base units with an explicit suffix (e.g. 20000{asset.base_suffix})"
    )


def parse_amount(text: str, asset: Asset) -> int:
    """What a person typed as an integer amount in `asset`'s smallest unit (the syntax in the
    module's docstring). Refusals are `UsageError`s whose message shows an example that works.
    Zero parses (to 0); whether zero is allowed is the caller's rule."""
    if not isinstance(text, str):
        raise TypeError("parse_amount takes the text a person typed")
    raw = text.strip()
    if len(raw) > _MAX_TEXT:
        raise _refuse(raw, asset, "is too long")
    if not raw:
        raise _refuse(raw, asset, "is empty")
    if raw[0] in "+-":
        raise _refuse(raw, asset, "has a sign (amounts are never negative)")
    number, unit = _split_unit(raw, asset)
    match = _NUMBER.fullmatch(number)
    is_number = match is not None and bool(match["whole"] or match["fraction"])
    known_unit = unit is None or unit.lower() in (asset.symbol.lower(), "wei", "base")
    if not is_number or not known_unit:
        if _EXPONENT.fullmatch(raw):
            raise _refuse(raw, asset, "uses an exponent (write every digit)")
        if _SEPARATED.fullmatch(raw):
            raise _refuse(raw, asset, "has separators between digits (write the digits together)")
    if match is None or not is_number:
        raise _refuse(raw, asset, "is not a number")
    if not known_unit:
        raise _refuse(raw, asset, f"is in {unit!r}, but this asset is {asset.symbol}")
    whole, fraction = match["whole"], match["fraction"] or ""
    # The asset's own symbol comes first: a token called BASE is typed `5BASE` in whole units.
    if unit is not None and unit.lower() != asset.symbol.lower():
        if unit.lower() == "wei" and not asset.is_native:
            raise _refuse(raw, asset, f"is in wei, but this asset is {asset.symbol} (its base units are written with 'base')")
        if match["dot"]:
            raise _refuse(raw, asset, "has a fraction of a base unit")
        value = int(whole)
    else:
        if len(fraction) > asset.decimals:
            digits = "no fraction" if asset.decimals == 0 else f"at most {asset.decimals} digits after the point"
            raise _refuse(raw, asset, f"has more decimals than {asset.symbol} has ({digits}; amounts are never rounded)")
        value = int(whole or "0") * 10**asset.decimals + int(fraction.ljust(asset.decimals, "0") or "0")
    if value > MAX_AMOUNT:
        raise _refuse(raw, asset, "is more than any on-chain amount (a uint256)")
    return value


def _split_unit(raw: str, asset: Asset) -> tuple[str, str | None]:
    """The number and the unit after it (None when there is none). The asset's symbol, `wei` and
    `base` are cut from the end, so a symbol that starts with a digit (`1INCH`) still parses;
    any other unit is what follows the number's digits."""
    lowered = raw.lower()
    for unit in (asset.symbol, "wei", "base"):
        if lowered.endswith(unit.lower()) and len(raw) > len(unit):
            return raw[: -len(unit)].rstrip(), raw[-len(unit) :]
    match = _UNIT.fullmatch(raw)
    if match is None or not match["unit"]:
        return raw, None
    return match["number"], match["unit"]


def format_number(value: int, decimals: int, *, group: bool = False) -> str:
    """`value` base units as exact whole units without a symbol: `0.0005`, `12`, `-1.5`. With
    `group`, the whole part gets thousands separators (`1,234.5`: for reading only, the parser
    refuses separators)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"amounts are integers in the smallest unit, not {type(value).__name__}")
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10**decimals)
    text = f"{whole:,}" if group else str(whole)
    if fraction:
        text += "." + str(fraction).rjust(decimals, "0").rstrip("0")
    return sign + text


def format_amount(value: int, asset: Asset, *, group: bool = False) -> str:
    """`value` base units of `asset` as a person reads it: `0.0005 ETH`, `0.02 DUSD`, exact, the
    trailing zeros trimmed; `parse_amount` reads it back to `value` (without `group`)."""
    return f"{format_number(value, asset.decimals, group=group)} {asset.symbol}"


_SUFFIXES = ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"))


def format_short(value: int, decimals: int, significant: int = 3) -> str:
    """`value` base units in whole units, rounded to `significant` digits (half up), for axis
    labels and cards: always plain decimals (`0.00008`, `1.25`, `12,300`), never an exponent; a
    million whole units or more takes a suffix (`1.23M`, `4.5G`). Not for what must be exact:
    `format_number` is."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"amounts are integers in the smallest unit, not {type(value).__name__}")
    if value < 0:
        return "-" + format_short(-value, decimals, significant)
    if value == 0:
        return "0"
    digits = len(str(value))
    if digits > significant:
        step = 10 ** (digits - significant)
        value = (value + step // 2) // step * step
    whole = value // 10**decimals
    for power, suffix in _SUFFIXES:
        if whole >= 10**power:
            return format_number(value, decimals + power, group=True) + suffix
    return format_number(value, decimals, group=True)


def format_base(value: int, asset: Asset) -> str:
    """`value` in base units with their suffix, as typed explicitly: `20000 wei`, `20000 base`."""
    return f"{format_number(value, 0)} {asset.base_suffix}"


def with_display(asset: Asset, display: Display | None) -> Asset:
    """`asset` with `display` as its display form (checked against its decimals: ValueError)."""
    return Asset(asset.symbol, asset.decimals, asset.address, display)


def format_display(value: int, asset: Asset) -> str:
    """`value` base units as people read a price at a glance, in `asset`'s display form
    (docs/amounts.md, "Display forms"): `$0.02`, `$1.40`, `$1,234.50`, and under the form's
    `cents_below` the cents, `2¢`, `2.5¢`. Exact, never rounded: digits beyond the form's `shown`
    appear when the amount has them (`$0.021`, `0.0001¢`), so nothing looks cheaper than it is, and
    `parse_display` reads the text back to `value`. Zero is `$0.00`. Without a display form it is
    `format_amount`'s `0.02 DUSD`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"amounts are integers in the smallest unit, not {type(value).__name__}")
    form = asset.display
    if form is None:
        return format_amount(value, asset)
    sign, magnitude = ("-", -value) if value < 0 else ("", value)
    if form.cents_below is not None and 0 < magnitude < form.cents_below:
        return sign + format_number(magnitude, asset.decimals - 2, group=True) + CENT_SIGN
    text = format_number(magnitude, asset.decimals, group=True)
    whole, _, fraction = text.partition(".")
    fraction = fraction.ljust(form.shown, "0")
    return sign + form.symbol + whole + ("." + fraction if fraction else "")


def parse_display(text: str, asset: Asset) -> int:
    """What `format_display` shows, read back to base units: `$0.02`, `$1,234.50`, `2¢`; without
    the form's sign it is `parse_amount` (so `0.02 DUSD` and `20000base` still work). Refused, never
    rounded: a fraction of a base unit, a sign, anything else (UsageError, as `parse_amount`)."""
    if not isinstance(text, str):
        raise TypeError("parse_display takes the text a person typed")
    raw = text.strip()
    form = asset.display
    if form is None or len(raw) > _MAX_TEXT:
        return parse_amount(raw, asset)
    if raw.endswith(CENT_SIGN) and form.cents_below is not None:
        number, decimals = raw[: -len(CENT_SIGN)].rstrip(), asset.decimals - 2
    elif raw.startswith(form.symbol):
        number, decimals = raw[len(form.symbol) :].lstrip(), asset.decimals
    else:
        return parse_amount(raw, asset)
    if re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?", number):
        number = number.replace(",", "")  # the grouping format_display writes, for reading back
    match = _NUMBER.fullmatch(number)
    if match is None or not (match["whole"] or match["fraction"]):
        raise _refuse(raw, asset, "is not a number")
    whole, fraction = match["whole"], match["fraction"] or ""
    fraction = fraction.rstrip("0")
    if len(fraction) > decimals:
        raise _refuse(raw, asset, f"has more decimals than {asset.symbol} has (amounts are never rounded)")
    value: int = int(whole or "0") * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if value > MAX_AMOUNT:
        raise _refuse(raw, asset, "is more than any on-chain amount (a uint256)")
    return value
