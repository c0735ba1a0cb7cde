"""Node configuration: a TOML file plus `CHANNEL_NODE_*` environment variables (env wins).

    CHANNEL_NODE_RPC_URL=ws://127.0.0.1:8545 channel-node serve --config node.toml

Nested values use a double underscore in the environment (`CHANNEL_NODE_PAYWALL__CONTENT_DIR`).
Amounts are integers in the token's smallest unit; TOML integers or decimal strings are accepted.
Price entries (`[[paywall.prices]]`) are checked here (`PriceRule`) and become `pricing.Price`
values; matching paths against them is the paywall's (server/prices.py), which this module does not
import: settings sit below the server (pricing.py says why the value has a module of its own).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eth_utils.address import is_address, to_canonical_address
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource
from pydantic_settings import SettingsError as _SourceError

from channel_node.amounts import ETH, Asset, Display, parse_amount, with_display
from channel_node.core.spending import Cap, Pass, parse_duration, parse_period
from channel_node.errors import ConfigError, UsageError
from channel_node.pricing import Price
from channel_node.types import UINT128_MAX

# http(s), a DNS name, IPv4 or [IPv6] host, an optional port and path prefix of unreserved characters.
_PUBLIC_URL = re.compile(r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,=:@/-]*)?")


def _amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be an integer amount in the token's smallest unit (no floats)")
    if isinstance(value, str) and not value.isdigit():
        raise ValueError("must be a whole number of the token's smallest unit")
    number = int(value)
    if not 0 <= number <= UINT128_MAX:
        raise ValueError("must be between 0 and 2**128 - 1")
    return number


Amount = Annotated[int, BeforeValidator(_amount)]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _database(value: object) -> object:
    """An SQLite file path (a Path), or a PostgreSQL URL kept as its text (store/__init__.py:store_for)."""
    if isinstance(value, str):
        if value.startswith(POSTGRES_SCHEMES):
            return value
        if "://" in value:
            raise ValueError("must be an SQLite file path or a postgresql:// URL")
        return Path(value)
    return value


class DatabaseUrl(str):
    """A PostgreSQL `database` URL: the text itself for the driver, but its repr (a Settings repr in
    a log line or a traceback) shows it without the user and password."""

    def __repr__(self) -> str:
        return f"DatabaseUrl({public_endpoint(self)!r})"


def _database_url(value: Path | str) -> Path | str:
    return DatabaseUrl(value) if isinstance(value, str) else value


# `database`: a path is an SQLite file; `postgresql://user@host/dbname` is a PostgreSQL database
# several node processes may share (docs/operations.md, "Running on PostgreSQL").
Database = Annotated[Path | str, BeforeValidator(_database), AfterValidator(_database_url)]


def _address(value: object) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError("must be a 0x-prefixed 20-byte address")
    return value


Address = Annotated[str, BeforeValidator(_address)]


class PriceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo'd key is refused with the closest name, never ignored

    path: str = Field(pattern=r"^/")
    price: Amount
    once: bool = True
    description: str = ""
    tags: dict[str, str] = {}
    exact: bool | None = None  # offer `exact` for this entry (None: the site's `exact.enabled`)

    def to_price(self) -> Price:
        return Price(self.path, self.price, self.once, self.description, dict(self.tags), self.exact)


def _spend_amount(value: object) -> int | str:
    """A cap's or a pass's amount: a TOML integer is base units (like a price); text is what a
    person types (`amounts.parse_amount`: "2.00" in the asset's unit, "20000wei", "20000base"),
    read once the asset is known (`Settings.spending`)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError('must be an amount: "2.00" in the asset\'s unit, "20000base", or an integer of base units')
    if isinstance(value, int):
        if not 0 < value <= UINT128_MAX:
            raise ValueError("must be positive (and below 2**128 base units)")
        return value
    # Syntax only here (the asset's decimals come from its contract): a 36-decimals stand-in
    # asset named as the text's unit reads every well-formed amount.
    unit = value.strip().lstrip("0123456789.").strip()
    try:
        symbol = Asset(unit, 36).symbol if unit and unit.lower() not in ("wei", "base") else "UNIT"
    except ValueError:
        symbol = "UNIT"
    stand_in = Asset(symbol, 36, None if unit.lower() == "wei" else "0x" + "00" * 20)
    try:
        number = parse_amount(value, stand_in)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    if number <= 0:
        raise ValueError("must be positive")
    return value


SpendAmount = Annotated[int | str, BeforeValidator(_spend_amount)]
_SPEND_NAME = re.compile(r"[a-z0-9-]{1,32}")


def _spend_name(value: object) -> str:
    if not isinstance(value, str) or not _SPEND_NAME.fullmatch(value):
        raise ValueError("must be 1 to 32 lower-case letters, digits or '-' (readers see it)")
    return value


SpendName = Annotated[str, BeforeValidator(_spend_name)]


def _period(value: object) -> str:
    parse_period(value)
    assert isinstance(value, str)
    return value


def _duration(value: object) -> str:
    parse_duration(value)
    assert isinstance(value, str)
    return value


class CapRule(BaseModel):
    """`[[paywall.caps]]`: "never more than a subscription" (docs/protocol.md, "Caps and passes")."""

    model_config = ConfigDict(extra="forbid")

    name: SpendName  # shown to readers
    pattern: str | None = Field(None, pattern=r"^/")  # fnmatch over the canonical path; with tags: both
    tags: dict[str, str] = {}  # price-entry tags that must all match; neither pattern nor tags: the site
    cap: SpendAmount
    period: Annotated[str, BeforeValidator(_period)]  # "day" | "week" | "month" | "<N>d"


class PassRule(BaseModel):
    """`[[paywall.passes]]`: one payment unlocks what it covers for `duration`."""

    model_config = ConfigDict(extra="forbid")

    name: SpendName
    pattern: str | None = Field(None, pattern=r"^/")
    tags: dict[str, str] = {}
    price: SpendAmount
    duration: Annotated[str, BeforeValidator(_duration)]  # "<N>h" | "<N>d" | "<N>w"
    description: str = Field("", max_length=200)

    @model_validator(mode="after")
    def covers_something(self) -> PassRule:
        if self.pattern is None and not self.tags:
            raise ValueError(f"pass {self.name!r} covers nothing: give it a pattern or tags")
        return self


def _zone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError('must be an IANA time zone name such as "UTC" or "Europe/Paris"')
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError('is not a time zone this system knows: use an IANA name such as "UTC" or "Europe/Paris"') from None
    return value


class Exact(BaseModel):
    """x402's `exact` scheme, the node as its own facilitator (docs/protocol.md, "The `exact`
    scheme (node)"): off by default; needs `token` (an EIP-3009 token) and a claim key (it pays the
    gas of every sale's transferWithAuthorization)."""

    model_config = {"extra": "forbid"}

    enabled: bool = False  # site-wide; a price entry's `exact` overrides it for that entry
    max_timeout_seconds: int = Field(120, gt=0, le=24 * 3600)  # the offer's maxTimeoutSeconds
    settle_timeout: float = Field(20.0, gt=0, le=600)  # how long a paid request waits for its transfer
    settle_margin: int = Field(30, ge=0)  # seconds validBefore must outlast both clocks by
    min_price: Amount = 0  # prices below it are not offered under exact (a sale costs ~65k gas)
    max_in_flight: int = Field(64, ge=1)  # transfers held and not final; beyond it `exact_busy`
    max_gas_per_hour: int | None = Field(None, ge=1)  # gas units of exact transfers per hour; `exact_gas_budget`
    min_gas_balance: Amount = 0  # the claim key's balance (wei) below which sales stop: `node_gas_low`
    # An ExactBatcher (contracts/ExactBatcher.sol): when set, sales open at once share one transaction
    # through it, up to `batch_max` each (docs/protocol.md, "The `exact` scheme (node)"); off: one each.
    batch_contract: Address | None = None
    batch_max: int = Field(20, ge=2, le=100)


_DECIMAL_TEXT = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?")


def _decimal_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError('must be a decimal number written as text, like "3000.00" (no floats)')
    text = str(value).strip()
    if not _DECIMAL_TEXT.fullmatch(text) or not any(c not in "0." for c in text):
        raise ValueError(f'must be a positive decimal number like "3000.00", not {value!r}')
    return text


DecimalText = Annotated[str, BeforeValidator(_decimal_text)]


class Economics(BaseModel):
    """The publisher's prices for the cost of collection (docs/economics.md): `eth_price`, the price
    of 1 ETH in the channels' asset (e.g. "3000.00" for a dollar token) so gas, paid in ETH, can be
    set against revenue; `gas_price_gwei`, a gas price to project the measured gas at. Exact
    decimals written as text; unset, a token site's report shows gas in ETH and no percentage."""

    model_config = ConfigDict(extra="forbid")

    eth_price: DecimalText | None = None
    gas_price_gwei: DecimalText | None = None
_DISPLAY_AMOUNT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)|[0-9]+ ?base")


class DisplayForm(BaseModel):
    """`[paywall.display]`: how people read the node's asset at a glance (docs/amounts.md, "Display
    forms"): `symbol = "$"`, `cents_below = "0.10"` (in the asset's unit, or `"100000base"`; under
    it prices read `2¢`), `decimals_shown = 2` (`$1.40`). For the paywall page, `report`, the
    dashboard and the offer's `extra.display`; integers stay inside."""

    model_config = ConfigDict(extra="forbid")

    symbol: str
    cents_below: str | None = None
    decimals_shown: int = Field(2, ge=0, le=18)

    @field_validator("symbol")
    @classmethod
    def clean_symbol(cls, value: str) -> str:
        Display(value)  # ValueError names what a symbol may be
        return value

    @field_validator("cents_below")
    @classmethod
    def decimal_text(cls, value: str | None) -> str | None:
        if value is not None and not _DISPLAY_AMOUNT.fullmatch(value.strip()):
            raise ValueError('must be an amount in the asset\'s unit as text, e.g. "0.10" (or "100000base")')
        return value

    def for_asset(self, asset: Asset) -> Asset:
        """`asset` with this display form, once its decimals are known (the token's, read from the
        chain); ConfigError when the form does not fit them (`cents_below` finer than a base unit,
        more decimals shown than the asset has, cents for an asset of fewer than 2 decimals)."""
        try:
            cents = None if self.cents_below is None else parse_amount(self.cents_below, asset)
            return with_display(asset, Display(self.symbol, cents, self.decimals_shown))
        except (UsageError, ValueError) as exc:
            raise SettingsError(f"[paywall.display] does not fit {asset.symbol} ({asset.decimals} decimals): {exc}") from None


class Paywall(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo'd key is refused with the closest name, never ignored

    content_dir: Path | None = None
    upstream: str | None = None  # reverse-proxy mode: the origin server's base URL
    upstream_max_body: int = Field(16 * 1024 * 1024, ge=0)  # bytes; a larger answer is a 502, never charged
    upstream_timeout: float = Field(30.0, gt=0)  # seconds for the origin's whole answer; later is a 504
    free: list[str] = []
    prices: list[PriceRule] = []
    display: DisplayForm | None = None  # the asset's display form for people (docs/amounts.md)
    # Caps and passes (docs/protocol.md, "Caps and passes"); calendar periods are taken in `timezone`.
    timezone: Annotated[str, BeforeValidator(_zone)] = "UTC"
    caps: list[CapRule] = []
    passes: list[PassRule] = []

    @model_validator(mode="after")
    def one_source(self) -> Paywall:
        if (self.content_dir is None) == (self.upstream is None):
            raise ValueError("set exactly one of paywall.content_dir or paywall.upstream")
        for kind, names in (("cap", [c.name for c in self.caps]), ("pass", [p.name for p in self.passes])):
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                table = "caps" if kind == "cap" else "passes"
                raise ValueError(f"two paywall.{table} entries are named {twice[0]!r}: names must be unique")
        return self


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHANNEL_NODE_", env_nested_delimiter="__", extra="forbid")

    rpc_url: str = "http://127.0.0.1:8545"  # HTTP(S) or WS(S) JSON-RPC
    contract: Address | None = None  # the deployed ChannelDeposit
    receiver: Address | None = None  # the address vouchers pay
    token: Address | None = None  # ERC-20 the channels hold; unset for native ETH
    database: Database = Path("channel-node.db")
    sqlite_synchronous: Literal["full", "normal"] = "full"
    host: str = "127.0.0.1"
    port: int = Field(8402, ge=0, le=65535)
    confirmations: int = Field(2, ge=1)
    close_margin: int = Field(300, ge=0)  # seconds before a pending close's deadline when vouchers stop
    min_deposit: Amount = 0
    close_delay_min: int = 900
    close_delay_max: int = 30 * 24 * 3600
    log_format: Literal["auto", "json", "console"] = "auto"
    recovery_thread: bool = True  # recover voucher signers on a worker thread (uses a second core)
    # The node's public base URL ("https://news.example"): a 402's resource.url is this plus the
    # canonical path. Unset, resource.url is the path alone; the Host header is never used.
    public_url: str | None = None
    insights_database: Path | None = None  # record offers and unlocks here for the revenue dashboard
    admin_token: SecretStr | None = None  # bearer token of the admin API; unset disables it
    admin_host: str = "127.0.0.1"  # the admin API listens apart from the paywall, on loopback by default
    admin_port: int = Field(8403, ge=0, le=65535)
    # The key that sends claims and closes (the receiver's, or any funded key: payouts go to `receiver`).
    claim_key: SecretStr | None = None  # hex; prefer claim_keystore
    claim_keystore: Path | None = None  # encrypted keystore; password in CHANNEL_NODE_KEYSTORE_PASSWORD
    watch_from_block: int | None = None  # first block to watch on a new database (default: the confirmed head)
    poll_interval: float = Field(2.0, gt=0)
    log_range: int = Field(2_000, ge=1)  # blocks per eth_getLogs during catch-up
    fee_bump_after: float = Field(60.0, gt=0)  # seconds before a stuck transaction is replaced
    # Settlement policy: periodic batched claims and closing of idle channels.
    auto_claim: bool = True
    claim_interval: float = Field(3600.0, gt=0)  # seconds between claim rounds
    claim_min_unclaimed: Amount = 1  # claim a channel once this much is signed but unclaimed
    claim_batch_size: int = Field(50, ge=1, le=500)  # channels per claimBatch transaction
    idle_close_after: float | None = Field(None, gt=0)  # close channels idle this long (seconds)
    exact: Exact = Field(default_factory=lambda: Exact.model_validate({}))
    economics: Economics = Field(default_factory=Economics)
    paywall: Paywall

    @field_validator("port", "confirmations", "close_margin", "admin_port", "watch_from_block", "log_range",
                     "claim_batch_size", mode="before")
    @classmethod
    def whole_number_text(cls, value: object) -> object:
        """An environment variable is text, and pydantic would read "8080.0" as 8080: a whole number
        setting written as text must be digits, so a mistyped value is refused rather than rounded."""
        if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value.strip()):
            raise ValueError(f"must be a valid integer (digits only), not {value!r}")
        return value

    @field_validator("rpc_url")
    @classmethod
    def known_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("rpc_url must start with http://, https://, ws:// or wss://")
        return value

    @field_validator("public_url")
    @classmethod
    def plain_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _PUBLIC_URL.fullmatch(value):
            raise ValueError("public_url must be http(s)://host[:port][/prefix], without query, fragment or user")
        return value.rstrip("/")

    @model_validator(mode="after")
    def spending_in_eth(self) -> Settings:
        """On native ETH the asset is known now: caps and passes are read at once (a token's
        decimals come from its contract, `Settings.spending` at start)."""
        if self.token is None:
            self.spending(ETH, error=ValueError)
        return self

    def spending(self, asset: Asset, error: type[Exception] | None = None) -> tuple[list[Cap], list[Pass]]:
        """The caps and passes with their amounts in `asset`'s base units. A text amount the asset
        cannot hold (more decimals than it has, `wei` for a token) raises `SettingsError` (or
        `error`) with one line naming the entry."""
        paywall = self.paywall

        def amount(value: int | str, where: str) -> int:
            if isinstance(value, int):
                return value
            try:
                number = parse_amount(value, asset)
            except UsageError as exc:
                line = f"`{where}` = {value!r}: {exc}"
                raise (error or SettingsError)(line) from None
            if not 0 < number <= UINT128_MAX:
                raise (error or SettingsError)(f"`{where}` = {value!r}: must be positive (and below 2**128 base units)")
            return number

        caps = [
            Cap(c.name, amount(c.cap, f"paywall.caps[{i}].cap"), parse_period(c.period), c.pattern, dict(c.tags))
            for i, c in enumerate(paywall.caps)
        ]
        passes = [
            Pass(p.name, amount(p.price, f"paywall.passes[{i}].price"), parse_duration(p.duration), p.description,
                 p.pattern, dict(p.tags))  # fmt: skip
            for i, p in enumerate(paywall.passes)
        ]
        return caps, passes

    @property
    def receiver_bytes(self) -> bytes:
        if self.receiver is None:
            raise ValueError("receiver is not set")
        return to_canonical_address(self.receiver)

    @property
    def token_bytes(self) -> bytes:
        return b"\0" * 20 if self.token is None else to_canonical_address(self.token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if _toml_file is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=_toml_file),)
        return sources


_toml_file: Path | None = None


class SettingsError(ConfigError, ValueError):
    """The configuration is refused: one line naming each wrong field, its value and the fix
    (docs/operations.md, "When something goes wrong"). `problems` holds the same, one per field."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


class ConfigFileMissing(SettingsError, FileNotFoundError):
    """The `--config` file does not exist (a FileNotFoundError too, for callers that catch that)."""


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Reads `path` (TOML) and the environment; keyword overrides win over both.

    Raises `SettingsError` (a ConfigError: exit code 2 on the command line) with one line that
    names the file or environment variable, the field, the value and what to do."""
    global _toml_file
    if path is not None and not path.is_file():
        hint = "it is a folder, not a file" if path.is_dir() else "check the path, or copy docs/operations.md's example"
        raise ConfigFileMissing(f"config file {path} not found ({hint})")
    _toml_file = path
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(toml_error_line(path, exc)) from None
    except ValidationError as exc:
        problems = [_problem(error, path) for error in exc.errors(include_url=False)]
        where = f" in {path}" if path is not None else ""
        raise SettingsError(f"invalid configuration{where}: " + "; ".join(problems), problems) from None
    except _SourceError as exc:  # an environment variable holding malformed JSON for a nested table
        raise SettingsError(f"invalid configuration: {_source_error(str(exc))}") from None
    finally:
        _toml_file = None


def public_endpoint(url: str) -> str:
    """`scheme://host[:port]` plus `/...` when there was more: hosted JSON-RPC URLs often carry an
    API key in their path or query, which an error line must not show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the given URL"
    if not parts.scheme or not host:
        return "the given URL"
    hidden = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"



# ---------------------------------------------------------------------- error rendering
#
# One line per problem, never pydantic's multi-line dump with links: where the value came from
# (an environment variable or the file), the field as written there, the value (never a secret's)
# and what to write instead. A key the model does not know gets the closest known key.

_SECRET_FIELDS = frozenset({"claim_key", "admin_token"})

_TOML_HINTS = (
    ("illegal character '\\n'", "a string is not closed on this line: end it with a quote"),
    ("expected '=' after a key", 'write key = value (strings in quotes: key = "text")'),
    ("invalid value", 'quote text values (key = "text"); numbers and true/false go bare'),
    ("cannot overwrite a value", "this key or table is set twice: keep one"),
    ("cannot declare", "this table is declared twice: keep one [table] header"),
    ("expected ']'", "close the table header with ]"),
    ("unterminated string", "a string is not closed: end it with the quote it started with"),
    ("expected \"'\"", "a string is not closed: end it with the quote it started with"),
    ("unclosed", "close the string, array or table on this line"),
)


def toml_error_line(path: Path | None, exc: tomllib.TOMLDecodeError) -> str:
    """`node.toml: TOML syntax error at line 3, column 12: <what>; <how to fix it>`."""
    text = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", text)
    at_end = re.search(r"\(at end of document\)", text)
    cut = match or at_end
    what = text[: cut.start()].strip() if cut else text
    where = f" at line {match.group(1)}, column {match.group(2)}" if match else " at the end of the file" if at_end else ""
    lowered = what.lower()
    hint = next((h for needle, h in _TOML_HINTS if needle in lowered), "check the line against the TOML syntax (key = value)")
    return f"{path or 'configuration'}: TOML syntax error{where}: {what}; {hint}"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields live at `loc` (Settings at (), Paywall at ("paywall",), ...)."""
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _env_name(loc: tuple[int | str, ...]) -> str | None:
    """The environment variable that set the value at `loc`, when one did (env wins over the file)."""
    if any(isinstance(part, int) for part in loc):
        return None
    wanted = ("CHANNEL_NODE_" + "__".join(str(part) for part in loc)).upper()
    return next((name for name in os.environ if name.upper() == wanted), None)


def _shown(value: object, loc: tuple[int | str, ...]) -> str:
    if any(part in _SECRET_FIELDS for part in loc):
        return "(hidden)"
    if isinstance(value, str) and "://" in value:  # a URL (database, rpc_url) may carry a password or key
        return repr(public_endpoint(value))
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fix(error: Any) -> str:
    """pydantic's message as the rule the value must follow ("must be a valid integer")."""
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = re.sub(r"^Input should be\b", "must be", message)
    message = message.replace(", unable to parse string as an integer", "").replace(
        ", unable to parse string as a number", "")
    return message


def _problem(error: Any, path: Path | None) -> str:
    loc: tuple[int | str, ...] = tuple(error.get("loc", ()))
    kind = error.get("type")
    name = _dotted(loc) or "the configuration"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        table = f" in [{_dotted(loc[:-1])}]" if len(loc) > 1 else ""
        fix = f"did you mean `{close[0]}`?" if close else "remove it (docs/operations.md lists the settings)"
        return f"unknown setting `{loc[-1]}`{table}: {fix}"
    if kind == "missing":
        env = "CHANNEL_NODE_" + "__".join(str(p) for p in loc).upper()
        if loc == ("paywall",):
            return "[paywall] is missing: add a [paywall] table with content_dir (a folder) or upstream (a URL)"
        source = f" in {path}" if path is not None else ""
        return f"`{name}` is missing: set it{source} or in {env}"
    env_var = _env_name(loc)
    value = _shown(error.get("input"), loc)
    if kind == "value_error" and not loc:  # a model check across fields (nothing to point at)
        return _fix(error)
    if env_var is not None:
        return f"{env_var}={value}: {_fix(error)}"
    if loc and kind == "value_error" and isinstance(error.get("input"), dict):
        return f"[{name}]: {_fix(error)}"  # a table's own check (paywall: content_dir or upstream)
    return f"`{name}` = {value}: {_fix(error)}"


def _source_error(text: str) -> str:
    match = re.search(r'field "([^"]+)"', text)
    if match is None:
        return text
    variable = "CHANNEL_NODE_" + match.group(1).upper()
    return f"{variable} must be JSON for a table (or set its fields one by one: {variable}__FIELD=value)"
