"""Node configuration: a TOML file plus `CHANNEL_NODE_*` environment variables (env wins).

    CHANNEL_NODE_RPC_URL=ws://127.0.0.1:8545 channel-node serve --config node.toml

Nested values use a double underscore in the environment (`CHANNEL_NODE_PAYWALL__CONTENT_DIR`).
Amounts are integers in the token's smallest unit; TOML integers or decimal strings are accepted.
Price entries (`[[paywall.prices]]`) are checked here (`PriceRule`) and become `pricing.Price`
values; matching paths against them is the paywall's (server/prices.py), which this module does not
import: settings sit below the server (pricing.py says why the value has a module of its own).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from eth_utils.address import is_address, to_canonical_address
from pydantic import BaseModel, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

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


def _address(value: object) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError("must be a 0x-prefixed 20-byte address")
    return value


Address = Annotated[str, BeforeValidator(_address)]


class PriceRule(BaseModel):
    path: str = Field(pattern=r"^/")
    price: Amount
    once: bool = True
    description: str = ""
    tags: dict[str, str] = {}
    exact: bool | None = None  # offer `exact` for this entry (None: the site's `exact.enabled`)

    def to_price(self) -> Price:
        return Price(self.path, self.price, self.once, self.description, dict(self.tags), self.exact)


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


class Paywall(BaseModel):
    content_dir: Path | None = None
    upstream: str | None = None  # reverse-proxy mode: the origin server's base URL
    upstream_max_body: int = Field(16 * 1024 * 1024, ge=0)  # bytes; a larger answer is a 502, never charged
    upstream_timeout: float = Field(30.0, gt=0)  # seconds for the origin's whole answer; later is a 504
    free: list[str] = []
    prices: list[PriceRule] = []

    @model_validator(mode="after")
    def one_source(self) -> Paywall:
        if (self.content_dir is None) == (self.upstream is None):
            raise ValueError("set exactly one of paywall.content_dir or paywall.upstream")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHANNEL_NODE_", env_nested_delimiter="__", extra="forbid")

    rpc_url: str = "http://127.0.0.1:8545"  # HTTP(S) or WS(S) JSON-RPC
    contract: Address | None = None  # the deployed ChannelDeposit
    receiver: Address | None = None  # the address vouchers pay
    token: Address | None = None  # ERC-20 the channels hold; unset for native ETH
    database: Path = Path("channel-node.db")
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
    paywall: Paywall

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


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Reads `path` (TOML) and the environment; keyword overrides win over both."""
    global _toml_file
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    _toml_file = path
    try:
        return Settings(**overrides)
    finally:
        _toml_file = None
