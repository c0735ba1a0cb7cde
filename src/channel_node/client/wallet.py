"""The reader's wallet: turns a `PAYMENT-REQUIRED` offer into a `PAYMENT-SIGNATURE` voucher.

The main key only signs chain transactions (open, top up, close). Each channel gets a fresh random
voucher key, so the key that signs on every request can spend at most that channel's deposit.

Money rules, in the order they are applied (the pure ledger in `client/ledger.py`; the bound is
docs/security.md, "The wallet's exposure bound"):
- spending limits are checked before a channel is opened and again, atomically with the ledger
  write, before a voucher is signed;
- a request reserves its price under the channel's lock; it carries the highest voucher while that
  covers what was received plus the prices in flight, else a new one for exactly that, so concurrent
  requests never sign the same increment twice; the new `signed` and the pending request are
  committed to the database before the header is returned;
- every receipt and corrective 402 is checked against the price offered, what was signed, and what
  was delivered plus what is in flight; a server caught claiming more is blocked (site and
  receiver) and not paid again until the reader trusts it (`Wallet.trust`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eth_utils.address import is_address, to_canonical_address, to_checksum_address
from web3 import AsyncWeb3

from channel_node.amounts import ETH, Asset, format_amount
from channel_node.chain.accounts import Sender
from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.chain.contract import ChannelDepositClient, TxResult
from channel_node.chain.erc20 import Erc20Client
from channel_node.chain.logs import ChannelDeposited, ChannelOpened, ChannelSettled, CloseRequested
from channel_node.chain.reverts import ContractRevert, as_revert
from channel_node.client import ledger as rules
from channel_node.client.ledger import Ledger, LedgerBlocked, Pending
from channel_node.client.store import (
    BLOCKED,
    CLOSING,
    EXHAUSTED,
    FAILED,
    OPEN,
    OPENING,
    ORPHANED,
    SETTLED,
    ChannelRecord,
    SiteCap,
    SpendEntry,
    WalletStore,
)
from channel_node.core import ChainFigures
from channel_node.errors import UsageError
from channel_node.signing import (
    ChannelConfig,
    Domain,
    InvalidSignature,
    address_of_key,
    channel_id,
    cooperative_close_digest,
    keccak256,
    recover_signer,
    sign_digest,
    voucher_digest,
)
from channel_node.signing.eip712 import SECP256K1_N, ZERO_ADDRESS
from channel_node.types import UINT128_MAX
from channel_node.wire.channel import SCHEME, payment_signature, read_display

if TYPE_CHECKING:
    import aiohttp  # imported where it is used: a wallet that never closes via a node never loads it

log = logging.getLogger("channel_node.client")

_DECIMAL = re.compile(r"[0-9]{1,78}")
_PASS_NAME = re.compile(r"[a-z0-9-]{1,32}")
CAP_CLAIMS = "cap_claims"  # a site flag: it charged a read its own cap figures said was free


# ------------------------------------------------------------------ errors


class WalletError(UsageError):
    """Something the wallet will not or cannot do; the message says what and why."""


class SpendingLimitExceeded(WalletError):
    """A policy limit refused the payment. Raised before anything was signed."""


class InsufficientFunds(WalletError):
    """The account holds less of the asset than a deposit needs. Raised before anything is sent."""


class OfferRejected(WalletError):
    """The offer is malformed, for another chain, names a contract this wallet does not trust, or
    conflicts with the policy (close delay)."""


class UnsupportedAsset(OfferRejected):
    """The offer asks for another asset than the one the wallet's policy pays in."""


class ServerMisbehaved(WalletError):
    """A receipt or a corrective 402 contradicts what the wallet signed, was offered or received. The
    site and receiver are blocked: the wallet refuses to pay them again until the reader trusts the
    site again (`Wallet.trust`, `channel-node wallet trust SITE`)."""


class SiteBlocked(ServerMisbehaved):
    """A payment to a site or receiver blocked after earlier misbehaviour."""


# ------------------------------------------------------------------ policy and results


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):  # amounts are integers, never floats
        raise TypeError(f"Policy.{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"Policy.{name} must be at least {minimum}")


@dataclass(frozen=True)
class Policy:
    """How much the wallet locks up and spends, in `asset`'s smallest unit (wei for native ETH).

    One policy counts in one asset, so its limits mean one thing: a wallet that pays in ETH refuses
    offers in a token, and the other way round."""

    asset: str | None = None  # None: native ETH; else the ERC-20 token's address

    deposit_multiple: int = 50  # a new channel's deposit, and each top-up, is N x the price
    max_deposit: int | None = None  # most ever locked in one channel; then a new channel is opened
    topup_below: int = 10  # top up when the unsigned deposit falls below K x the price
    per_request_limit: int | None = None  # refuse any single price above this
    per_site_daily_limit: int | None = None  # per URL host[:port], per UTC day
    daily_limit: int | None = None  # all sites together, per UTC day
    # The reader's own monthly budget (docs/security.md, "The reader's budgets"): the same rule per
    # calendar month in `timezone` (an IANA name; None: this machine's local time).
    per_site_monthly_limit: int | None = None
    monthly_limit: int | None = None
    timezone: str | None = None
    # Passes to buy when an offer lists one of these names and the wallet holds none of them valid
    # for that site (docs/protocol.md, "Caps and passes"); the first listed by the offer wins.
    passes: tuple[str, ...] = ()
    close_delay: int = 3600  # seconds; must be inside the offer's extra.closeDelay range
    # x402 `exact` (client/exact.py; docs/protocol.md, "The wallet and `exact`"): paid in `asset`
    # only (the allow-list: the limits above count in it), each payment at most `exact_max_amount`
    # (None: only per_request_limit applies) and valid at most `exact_max_validity` seconds.
    scheme: str | None = None  # "exact" or "channel" forces that scheme; None: the choice rule
    exact_max_amount: int | None = None
    exact_max_validity: int = 300

    def __post_init__(self) -> None:
        if self.asset is not None:
            if not isinstance(self.asset, str) or not is_address(self.asset):
                raise ValueError(f"asset must be a token address or None for native ETH, not {self.asset!r}")
            token = to_checksum_address(self.asset)
            object.__setattr__(self, "asset", None if to_canonical_address(token) == ZERO_ADDRESS else token)
        _check_int("deposit_multiple", self.deposit_multiple, 1)
        _check_int("max_deposit", self.max_deposit, 1, optional=True)
        _check_int("topup_below", self.topup_below, 1)
        _check_int("per_request_limit", self.per_request_limit, 0, optional=True)
        _check_int("per_site_daily_limit", self.per_site_daily_limit, 0, optional=True)
        _check_int("daily_limit", self.daily_limit, 0, optional=True)
        _check_int("per_site_monthly_limit", self.per_site_monthly_limit, 0, optional=True)
        _check_int("monthly_limit", self.monthly_limit, 0, optional=True)
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                raise ValueError(f"timezone must be an IANA time zone name such as 'Europe/Paris' or 'UTC', not {self.timezone!r}") from None
        names: object = self.passes
        if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) and _PASS_NAME.fullmatch(n) for n in names):
            raise ValueError(f"passes must be a tuple of pass names ([a-z0-9-], at most 32), not {self.passes!r}")
        object.__setattr__(self, "passes", tuple(self.passes))
        _check_int("close_delay", self.close_delay, 0)
        if self.scheme not in (None, "exact", "channel"):
            raise ValueError(f"scheme must be 'exact', 'channel' or None, not {self.scheme!r}")
        _check_int("exact_max_amount", self.exact_max_amount, 0, optional=True)
        _check_int("exact_max_validity", self.exact_max_validity, 1)


@dataclass(frozen=True)
class PaymentHeader:
    """A `PAYMENT-SIGNATURE` value and what the wallet reserved for it (needed to settle it)."""

    value: str
    channel_id: bytes
    amount: int  # the voucher's maxClaimableAmount
    price: int  # the offered price (0 reserved for a re-read of a resource bought once)
    payment_id: str
    resource: str
    network: str
    contract: str
    signature: bytes = field(repr=False)
    reused: bool = False  # an existing voucher re-sent for a resource this channel already bought
    pass_name: str | None = None  # the pass this payment buys (its price is `price`)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CloseTicket:
    channel_id: bytes
    deadline: int  # unix time (chain clock) after which `finalize` refunds the rest
    locked: int  # deposit not claimed on chain yet, locked until the deadline
    warning: str
    tx: TxResult


@dataclass(frozen=True)
class Finalized:
    channel_id: bytes
    refunded: int  # paid back to the main account
    claimed: int  # what the receiver received in total
    tx: TxResult


@dataclass(frozen=True)
class ChainChannelInfo(ChainFigures):
    """A channel this account opened, as the chain reports it: its four figures (the one
    declaration, `core.ChainFigures`) and what the wallet knows of it."""

    channel_id: bytes
    contract: str
    config: ChannelConfig
    opened_in_block: int
    has_voucher_key: bool  # False: the local database lost it; the channel can only be closed
    local_status: str | None


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class _Terms:
    chain_id: int
    network: str
    contract: str
    receiver: str
    asset: str
    price: int
    once: bool
    receiver_authorizer: str  # the node's claim key (zero: the receiver settles itself), docs/protocol.md
    min_deposit: int
    delay_min: int | None
    delay_max: int | None
    passes: tuple[tuple[str, int], ...] = ()  # (name, price) of the passes the offer sells for this resource
    cap: SiteCap | None = None  # the offer's cap (site and seen_at filled in by the wallet)


@dataclass
class _Live:
    """In-memory state of one channel: its locks and its ledger (what is in flight included)."""

    ledger: Ledger
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    funding: asyncio.Lock = field(default_factory=asyncio.Lock)
    sites: dict[str, str | None] = field(default_factory=dict)  # payment id -> site, for blocking
    counts: dict[str, SpendEntry] = field(default_factory=dict)  # payment id -> what its reservation counted
    free: dict[str, tuple[str, ...] | SiteCap] = field(default_factory=dict)  # payment id -> why it was expected free

    @property
    def reserved(self) -> int:
        return self.ledger.in_flight


def _ledger_of(record: ChannelRecord) -> Ledger:
    """A channel's ledger as a fresh process loads it: what was pending has an unknown outcome now."""
    pending = tuple(Pending(pid, price, resource, once) for pid, price, resource, once in record.pending)
    return Ledger(
        signed=record.signed, received=min(record.received, record.signed), charged=record.charged, lost=record.lost,
        unsure=pending, misbehaved="blocked earlier" if record.status == BLOCKED else None,
    )  # fmt: skip


def _row(ledger: Ledger) -> tuple[int, int, tuple[tuple[str, int, str, bool], ...]]:
    pending = tuple((p.payment_id, p.price, p.resource, p.once) for p in ledger.active + ledger.unsure)
    return ledger.received, ledger.lost, pending


def _uint(value: Any, name: str) -> int:
    """A decimal string (or a plain int) as an int; the protocol never carries floats."""
    if isinstance(value, bool):
        raise ValueError(f"{name} is not an amount")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise ValueError(f"{name} must be a decimal string")
    if number < 0 or number >= 1 << 256:
        raise ValueError(f"{name} out of range")
    return number


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise OfferRejected(f"offer: {name} is not an address")
    return to_checksum_address(value)


def _channel_bytes(channel: bytes | str) -> bytes:
    raw = bytes.fromhex(channel[2:] if channel.startswith("0x") else channel) if isinstance(channel, str) else bytes(channel)
    if len(raw) != 32:
        raise ValueError("a channel id is 32 bytes")
    return raw


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def site_of(url: str) -> str:
    """The ledger's and blocklist's notion of a site: the URL's host[:port], one spelling per host:
    lower case, IDNA (punycode), no trailing dot, no port when it is the scheme's default. Blocks,
    per-site limits and a channel's site compare these, so a site cannot escape them by spelling its
    own host another way (docs/security.md)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if host and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a valid IDNA name: kept as written (it cannot be reached under another spelling)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        port = None
    return f"{host}:{port}" if port is not None else host


#: Seconds a deposit's permit stays valid: long enough for a slow block, short enough not to linger.
PERMIT_LIFETIME = 3600


def _asset_name(asset: str | None) -> str:
    if asset is None or to_canonical_address(asset) == ZERO_ADDRESS:
        return "native ETH"
    return f"token {to_checksum_address(asset)}"


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def derive_voucher_key(main_key: bytes, chain_id: int, contract: str, salt: int) -> bytes:
    """A channel's voucher key, derived one-way from the main key and the channel's identity.

    Why derived and not random: a wallet that loses its database can rebuild every channel from the
    chain (ChannelOpened carries the salt) and keep paying from it, instead of only closing it. A
    leaked voucher key reveals nothing about the main key or other channels."""
    seed = b"channel-node voucher key v1" + main_key + chain_id.to_bytes(32, "big")
    seed += to_canonical_address(contract) + salt.to_bytes(12, "big")
    counter = 0
    while True:
        key = keccak256(seed + counter.to_bytes(4, "big"))
        if 0 < int.from_bytes(key, "big") < SECP256K1_N:
            return key
        counter += 1


@cache
def _runtime_code() -> tuple[bytes, tuple[int, ...]]:
    """ChannelDeposit's runtime code and where its immutables go (PUSH32 0 placeholders): the same
    code with the chain id, domain separator and deposit cap filled in is the same contract."""
    code = bytes.fromhex(channel_deposit_artifact().deployed_bytecode.removeprefix("0x"))
    spans = tuple(m.start() + 1 for m in re.finditer(re.escape(b"\x7f" + b"\0" * 32), code))
    return code, spans


def is_channel_deposit_code(code: bytes) -> bool:
    expected, spans = _runtime_code()
    if len(code) != len(expected):
        return False
    masked = bytearray(code)
    for start in spans:
        masked[start : start + 32] = b"\0" * 32
    return bytes(masked) == expected


def _parse_offer(offer: Mapping[str, Any], chain_id: int) -> _Terms:
    if not isinstance(offer, Mapping):
        raise OfferRejected("offer must be one entry of `accepts` (a JSON object)")
    if offer.get("scheme") != SCHEME:
        raise OfferRejected(f"offer scheme {offer.get('scheme')!r} is not {SCHEME!r}")
    network = f"eip155:{chain_id}"
    if offer.get("network") != network:
        raise OfferRejected(f"offer is for network {offer.get('network')!r}; this wallet is on {network}: "
                            "connect the wallet to the site's chain (the command line: --rpc-url)")  # fmt: skip
    extra = offer.get("extra")
    if not isinstance(extra, Mapping):
        raise OfferRejected("offer has no `extra` object")
    try:
        price = _uint(offer.get("amount"), "amount")
        min_deposit = _uint(extra.get("minDeposit", "0"), "extra.minDeposit")
    except ValueError as exc:
        raise OfferRejected(f"offer: {exc}") from None
    if price == 0 or price > UINT128_MAX:
        raise OfferRejected("offer amount must be between 1 and 2^128-1")
    delay = extra.get("closeDelay")
    if delay is None:
        delay = {}
    if not isinstance(delay, Mapping):
        raise OfferRejected("offer: extra.closeDelay must be an object with integer bounds")
    delay_min, delay_max = delay.get("min"), delay.get("max")
    for value in (delay_min, delay_max):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise OfferRejected("offer: extra.closeDelay bounds must be integers")
    once = extra.get("once") is True  # absent: charged per request, never re-sent as a re-read
    # The node can settle only channels that name its claim key (or the zero address when that key
    # is the receiver's own): a channel opened with anything else would be refused (wrong_authorizer).
    if "receiverAuthorizer" not in extra:
        raise OfferRejected("offer has no extra.receiverAuthorizer: this node cannot settle a channel on this contract")
    authorizer = _address(extra.get("receiverAuthorizer"), "extra.receiverAuthorizer")
    passes, cap = _offered_passes(extra.get("passes")), _offered_cap(extra.get("cap"))
    return _Terms(
        chain_id=chain_id,
        network=network,
        contract=_address(extra.get("contract"), "extra.contract"),
        receiver=_address(offer.get("payTo"), "payTo"),
        asset=_address(offer.get("asset"), "asset"),
        price=price,
        once=once,
        receiver_authorizer=authorizer,
        min_deposit=min_deposit,
        delay_min=delay_min,
        delay_max=delay_max,
        passes=passes,
        cap=cap,
    )


def _offered_passes(listed: Any) -> tuple[tuple[str, int], ...]:
    """The passes an offer's `extra.passes` sells (docs/protocol.md, "Caps and passes"); a malformed
    entry is left out, never guessed (a pass is bought only when asked for by name)."""
    found: list[tuple[str, int]] = []
    for entry in listed if isinstance(listed, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not _PASS_NAME.fullmatch(entry["name"]):
            continue
        try:
            price = _uint(entry.get("price"), "price")
        except ValueError:
            continue
        if 0 < price <= UINT128_MAX:
            found.append((entry["name"], price))
    return tuple(found[:16])


def _offered_cap(cap: Any) -> SiteCap | None:
    """An offer's or receipt's `cap` object as the wallet keeps it (site and time filled in later),
    or None when it is absent or malformed (it is shown to the reader, never trusted for money)."""
    if not isinstance(cap, Mapping) or not isinstance(cap.get("name"), str) or not _PASS_NAME.fullmatch(cap["name"]):
        return None
    try:
        amount = _uint(cap.get("cap"), "cap")
        paid = _uint(cap.get("paid", "0"), "paid")
    except ValueError:
        return None
    period = cap.get("period")
    resets = cap.get("resetsAt", cap.get("periodEndsAt"))
    if isinstance(resets, bool) or not isinstance(resets, int) or not 0 < resets < 1 << 40:
        resets = None
    period_text = period if isinstance(period, str) and re.fullmatch(r"day|week|month|[1-9][0-9]{0,3}d", period) else ""
    return SiteCap("", cap["name"], amount, paid, period_text, resets, 0)


@dataclass(frozen=True)
class SiteSpending:
    """What the wallet paid one site, from its own ledger and the site's receipts (docs/security.md,
    "The reader's budgets"): today (UTC) and this month (`month`, the policy's time zone), the
    site's caps as its last receipt stated them, the passes bought there (name -> end, unix s) and
    the display form it offers (`extra.display`; None: none)."""

    site: str
    today: int
    month: str
    this_month: int
    caps: tuple[SiteCap, ...]
    passes: tuple[tuple[str, int], ...]
    display: dict[str, Any] | None


def site_spending(store: WalletStore, day: str, month: str) -> list[SiteSpending]:
    """Every site this wallet paid or holds figures of, for `day` and `month` (`Wallet.sites`, and
    `channel-node wallet sites` with only the database)."""
    today, monthly = store.sites_spent(day), store.sites_spent(month)
    caps: dict[str, list[SiteCap]] = {}
    for cap in store.caps():
        caps.setdefault(cap.site, []).append(cap)
    passes: dict[str, list[tuple[str, int]]] = {}
    for site, name, until in store.passes():
        passes.setdefault(site, []).append((name, until))
    names = sorted(set(today) | set(monthly) | set(caps) | set(passes))
    return [
        SiteSpending(site, today.get(site, 0), month, monthly.get(site, 0), tuple(caps.get(site, ())),
                     tuple(passes.get(site, ())), store.display(site))  # fmt: skip
        for site in names
    ]


def trust_site(store: WalletStore, site: str) -> list[bytes]:
    """Lifts the block of `site` (host[:port], or a URL) and of the receivers blocked with it,
    reopens their blocked channels and accepts what was lost there, so the exposure bound restarts
    from it (client/ledger.py `trust`). Needs only the wallet's database. Returns the reopened ids."""
    site = site_of(site.strip() if "//" in site else "http://" + site.strip())  # one spelling, as site_of
    receivers = set(store.receivers_blocked_with(site))
    store.unblock("site", site)
    for receiver in receivers:
        store.unblock("link", f"{site} {receiver}")
        store.unblock("receiver", to_checksum_address(receiver))
    reopened = []
    for record in store.channels(BLOCKED):
        if record.receiver.lower() not in receivers:
            continue
        trusted = rules.trust(_ledger_of(record))
        store.save_ledger(record.channel_id, _row(trusted), status=OPEN)
        reopened.append(record.channel_id)
    log.info("trusting %s again (%d channel(s) reopened)", site, len(reopened))
    return reopened


# ------------------------------------------------------------------ the wallet


class Wallet:
    """Pays `channel`-scheme offers from payment channels it opens with `main_key`.

    `contracts`: the ChannelDeposit deployments to trust. When omitted, a contract named by an offer
    is trusted only if its code on chain is ChannelDeposit's (so a site cannot make the wallet
    deposit into a contract of its own). `gas`: a fixed gas limit for chain writes (skips
    estimation); None estimates.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],  # any async provider: HTTP, WebSocket, a test's
        main_key: bytes,
        store: WalletStore,
        policy: Policy | None = None,
        *,
        contracts: Iterable[str] | None = None,
        gas: int | None = None,
    ) -> None:
        self.w3 = w3
        self.store = store
        self.policy = policy or Policy()
        self.gas = gas
        self._sender = Sender.from_key(main_key)  # holds the key; never printed
        self._voucher_key = partial(derive_voucher_key, bytes(main_key))  # closes over the key; never printed
        self.address = self._sender.address
        store.bind_account(self.address)
        self._trusted = None if contracts is None else {to_checksum_address(c) for c in contracts}
        self._verified: set[str] = set()
        self._chain_id: int | None = None
        self._clients: dict[str, ChannelDepositClient] = {}
        self._live: dict[bytes, _Live] = {}
        self._opening: dict[tuple[object, ...], asyncio.Lock] = {}
        self._no_permit: set[str] = set()  # tokens found without a working EIP-2612 permit
        # How the policy's asset reads in messages (`0.0005 ETH`, `0.02 DUSD`): ETH, or the token's
        # symbol and decimals once someone who read them from the token sets them (the CLI does);
        # until then a token's amounts are shown in base units (docs/amounts.md).
        self.asset: Asset | None = ETH if self.policy.asset is None else None
        # The wall clock the budgets' days and months and the passes' ends are read from (tests move it).
        self.clock: Callable[[], float] = time.time
        self._displays: dict[str, Any] = {}  # site -> the extra.display last recorded for it

    def _shown(self, amount: int) -> str:
        return format_amount(amount, self.asset) if self.asset is not None else f"{amount} base units"

    def _day(self) -> str:
        """The UTC day the daily limits count in."""
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")

    def _month(self) -> str:
        """The calendar month the monthly budget counts in, in the policy's time zone (local time by default)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        zone = self.policy.timezone
        return (now.astimezone(ZoneInfo(zone)) if zone is not None else now.astimezone()).strftime("%Y-%m")

    def __repr__(self) -> str:
        return f"Wallet({self.address}, {self.store!r})"

    # ------------------------------------------------------------------ plumbing

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(await self.w3.eth.chain_id)
        return self._chain_id

    def _client(self, contract: str) -> ChannelDepositClient:
        contract = to_checksum_address(contract)
        client = self._clients.get(contract)
        if client is None:
            client = self._clients[contract] = ChannelDepositClient(self.w3, contract, sender=self._sender)
        return client

    def _state(self, record: ChannelRecord) -> _Live:
        live = self._live.get(record.channel_id)
        if live is None:
            # A fresh process: requests pending when the last one stopped have unknown outcomes.
            live = self._live[record.channel_id] = _Live(_ledger_of(record))
        return live

    def _synced(self, live: _Live, record: ChannelRecord) -> Ledger:
        """The ledger merged with the database's figures: `signed` (the durable truth; it never
        decreases) and, should another process share the file, what it received and left pending
        (its pending requests are of unknown outcome here)."""
        ledger = live.ledger
        known = {p.payment_id for p in ledger.active + ledger.unsure}
        foreign = tuple(Pending(*p) for p in record.pending if p[0] not in known)
        if (record.signed, record.received, record.lost) != (ledger.signed, ledger.received, ledger.lost) or foreign:
            live.ledger = replace(
                ledger, signed=max(record.signed, ledger.signed), received=max(min(record.received, record.signed), ledger.received),
                lost=max(record.lost, ledger.lost), unsure=ledger.unsure + foreign,
            )  # fmt: skip
        return live.ledger

    def ledger(self, channel: bytes | str) -> Ledger:
        """The channel's money state (client/ledger.py), for display and tests."""
        record = self._record(channel)
        return self._synced(self._state(record), record)

    def _record(self, channel: bytes | str) -> ChannelRecord:
        record = self.store.channel(_channel_bytes(channel))
        if record is None:
            raise WalletError(f"channel {channel if isinstance(channel, str) else '0x' + channel.hex()} is not in this wallet")
        return record

    async def _check_contract(self, contract: str) -> None:
        if contract in self._verified:
            return
        if self._trusted is not None:
            if contract not in self._trusted:
                raise OfferRejected(f"contract {contract} is not one this wallet trusts")
        else:
            code = bytes(await self.w3.eth.get_code(to_checksum_address(contract)))
            if not is_channel_deposit_code(code):
                raise OfferRejected(f"{contract} is not a ChannelDeposit contract (its code differs)")
        self._verified.add(contract)

    def _refuse_blocked(self, site: str | None, receiver: str) -> None:
        for kind, value in (("site", site), ("receiver", receiver)):
            if value is None:
                continue
            reason = self.store.blocked_reason(kind, value)
            if reason is not None:
                raise SiteBlocked(f"{kind} {value} is blocked after it misbehaved ({reason}); not paying it again")

    def _block(self, record: ChannelRecord, site: str | None, reason: str) -> None:
        self.store.update_channel(record.channel_id, status=BLOCKED)
        live = self._live.get(record.channel_id)
        if live is not None and live.ledger.misbehaved is None:
            live.ledger = replace(live.ledger, misbehaved=reason)
        self.store.block("receiver", record.receiver, reason)
        if site:
            self.store.block("site", site, reason)
            self.store.block("link", f"{site} {record.receiver}", reason)
        log.info(  # the ServerMisbehaved raised with it says the same to the caller
            "blocked receiver %s%s: %s; channel %s is not paid from until `wallet trust %s` (or close it)",
            record.receiver, f" and site {site}" if site else "", reason, record.hex_id, site or record.receiver,
        )  # fmt: skip

    def unblock(self, *, site: str | None = None, receiver: str | None = None) -> None:
        """Lifts a block set after misbehaviour (the blocked channel itself stays out of use; `trust`
        also reopens it)."""
        if site is not None:
            self.store.unblock("site", site)
        if receiver is not None:
            self.store.unblock("receiver", to_checksum_address(receiver))

    def trust(self, site: str) -> list[bytes]:
        """The reader's word that `site` (host[:port], or a URL) may be paid again after it was caught
        misbehaving: see `trust_site`. Returns the reopened channel ids."""
        reopened = trust_site(self.store, site)
        for channel in reopened:
            self._live.pop(channel, None)  # reloaded from the store, trusted
        return reopened

    def blocked(self) -> list[tuple[str, str, str]]:
        """Blocked sites and receivers: (kind, value, reason)."""
        return self.store.blocked()

    def _check_limits(self, site: str | None, price: int, spend: int) -> None:
        p = self.policy
        if p.per_request_limit is not None and price > p.per_request_limit:
            raise SpendingLimitExceeded(
                f"price {self._shown(price)} is above the per-request limit {self._shown(p.per_request_limit)}"
            )
        month = self._month()
        if site is not None:
            self._check_budget(p.per_site_monthly_limit, month, site, spend,
                               f"this month's spending on {site}", "the per-site monthly budget")  # fmt: skip
        self._check_budget(p.monthly_limit, month, None, spend, f"this month's spending ({month})", "the monthly budget")
        day = self._day()
        if site is not None:
            self._check_budget(p.per_site_daily_limit, day, site, spend,
                               f"today's spending on {site}", "the per-site daily limit")  # fmt: skip
        self._check_budget(p.daily_limit, day, None, spend, "today's spending", "the daily limit")

    def _check_budget(self, limit: int | None, period: str, site: str | None, spend: int, spending: str, budget: str) -> None:
        """Refuses `spend` if what the ledger holds for `period` (a day or a month; one site's, or all
        with site None) plus it would exceed `limit` (None: no limit); docs/security.md, "The reader's
        budgets"."""
        if limit is None:
            return
        spent = self.store.spent(period, site)
        if spent + spend > limit:
            raise SpendingLimitExceeded(
                f"paying {self._shown(spend)} would bring {spending} to {self._shown(spent + spend)}, "
                f"above {budget} {self._shown(limit)}"
            )

    def _close_delay(self, terms: _Terms) -> int:
        delay = self.policy.close_delay
        if (terms.delay_min is not None and delay < terms.delay_min) or (
            terms.delay_max is not None and delay > terms.delay_max
        ):
            raise OfferRejected(
                f"the policy's close delay {delay} s is outside the server's range "
                f"{terms.delay_min}..{terms.delay_max} s; change Policy.close_delay to accept"
            )
        return delay

    def _deposit_size(self, price: int, deposited: int) -> int:
        amount = self.policy.deposit_multiple * price
        if self.policy.max_deposit is not None:
            amount = min(amount, self.policy.max_deposit - deposited)
        return max(amount, 0)

    # ------------------------------------------------------------------ paying

    async def pay_for(self, offer: Mapping[str, Any], url: str, *, reuse: bool = True, pass_name: str | None = None) -> PaymentHeader:
        """A `PAYMENT-SIGNATURE` for one `accepts` entry of a 402, opening or topping up a channel
        as needed. `reuse=False` always signs a new increment (after a corrective 402). `pass_name`
        buys that pass, which the offer must sell (else OfferRejected); without it a pass named in
        `Policy.passes` is bought when the offer sells one and none of them is held (docs/protocol.md,
        "Caps and passes"). A pass costs its price instead of the resource's, and unlocks the resource."""
        terms = _parse_offer(offer, await self.chain_id())
        site = site_of(url) or None
        self._note_offer(site, offer, terms)
        chosen = self._pass_to_buy(site, terms, pass_name)
        free = self._expect_free(site, terms) if chosen is None else None
        if chosen is not None:
            terms = replace(terms, price=dict(terms.passes)[chosen])
        parts = urlsplit(url)
        # What a purchase is: behind a reverse proxy the query is part of it (docs/protocol.md), so a
        # page with another query is bought, never sent the old voucher as a re-read. Against a static
        # node that ignores the query this costs nothing: it answers a free re-read (credit stays).
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._refuse_blocked(site, terms.receiver)
        self._check_limits(site, terms.price, 0 if free is not None else terms.price)  # before a channel is opened for it
        if to_canonical_address(terms.asset) != to_canonical_address(self.policy.asset or ZERO_ADDRESS):
            raise UnsupportedAsset(
                f"the offer asks for {_asset_name(terms.asset)}; this wallet's policy pays in "
                f"{_asset_name(self.policy.asset)} (Policy.asset / wallet --token)"
            )
        delay = self._close_delay(terms)
        await self._check_contract(terms.contract)
        for _ in range(4):  # a channel can fill up or start closing between two steps
            record = await self._channel_for(terms, delay, site)
            if reuse and chosen is None and terms.once and record.signed and self.store.purchased(record.channel_id, resource):
                return self._reuse(record, terms, resource, site)
            funded = await self._fund(record, terms.price)
            if funded is None:
                continue
            header = await self._sign(funded, terms, resource, site, chosen, free)
            if header is not None:
                return header
        raise WalletError("could not find or fund a channel for this payment; see the log")

    def _note_offer(self, site: str | None, offer: Mapping[str, Any], terms: _Terms) -> None:
        """Keeps what the offer tells the reader about the site: its display form and its cap's
        terms (for `sites`; never for money)."""
        if site is None:
            return
        extra = offer.get("extra")
        display = extra.get("display") if isinstance(extra, Mapping) else None
        if isinstance(display, dict) and self._displays.get(site) != display:
            self.store.record_display(site, display)
            self._displays[site] = display
        if terms.cap is not None:
            known = {c.name: c for c in self.store.caps(site)}.get(terms.cap.name)
            if known is None or (known.cap, known.period) != (terms.cap.cap, terms.cap.period or known.period):
                paid = terms.cap.paid if known is None else known.paid
                self.store.record_cap(replace(terms.cap, site=site, paid=paid, period=terms.cap.period or (known.period if known else ""),
                                              resets_at=terms.cap.resets_at or (known.resets_at if known else None),
                                              seen_at=int(self.clock())))  # fmt: skip

    def _expect_free(self, site: str | None, terms: _Terms) -> tuple[str, ...] | SiteCap | None:
        """Why the site's last receipts say this read costs nothing, or None: the offer sells passes
        the wallet holds valid by its clock (their names), or names a cap whose last stated `paid`
        reached it and whose period has not ended (that cap). A site caught charging a read its own
        cap figures said was free is not believed again (docs/security.md, "The reader's budgets")."""
        if site is None:
            return None
        held = self.held_passes(site)
        covering = tuple(name for name, _ in terms.passes if name in held)
        if covering:
            return covering
        if terms.cap is None or self.store.site_flagged(site, CAP_CLAIMS):
            return None
        known = {c.name: c for c in self.store.caps(site)}.get(terms.cap.name)
        if known is not None and known.paid >= known.cap and known.resets_at is not None and self.clock() < known.resets_at:
            return known
        return None

    def _charged_when_free(self, site: str | None, why: tuple[str, ...] | SiteCap, receipt: Mapping[str, Any], amount: int) -> None:
        """A read expected free was charged: the belief ends. Passes: no longer believed held (the
        site's clock may be ahead). A cap: when the receipt names the same period, whose `paid`
        had reached the cap, an honest node could not have charged: the site is not believed again."""
        if site is None:
            return
        if isinstance(why, tuple):
            self.store.end_passes(site, why, int(self.clock()))
            return
        stated = _offered_cap(receipt.get("cap"))
        if stated is None or stated.resets_at == why.resets_at:
            reason = f"charged {amount} for a read in cap {why.name}, which its receipts said was reached until {why.resets_at}"
            self.store.flag_site(site, CAP_CLAIMS, reason)
            log.warning("%s %s; its cap figures are not believed again (the budgets count every price)", site, reason)

    def held_passes(self, site: str) -> dict[str, int]:
        """The passes this wallet bought at `site` that are still valid by its clock: name -> end (unix s)."""
        now = int(self.clock())
        return {name: until for _, name, until in self.store.passes(site) if until > now}

    def _pass_to_buy(self, site: str | None, terms: _Terms, asked: str | None) -> str | None:
        sold = [name for name, _ in terms.passes]
        if asked is not None:
            if asked not in sold:
                raise OfferRejected(f"the offer does not sell the pass {asked!r} for this page"
                                    + (f" (it sells {', '.join(sold)})" if sold else " (it sells none)"))  # fmt: skip
            return asked
        wanted = [name for name in sold if name in self.policy.passes]
        if not wanted:
            return None
        held = self.held_passes(site) if site is not None else {}
        if any(name in held for name in wanted):
            return None  # a pass that covers this page is held: the read costs nothing
        return wanted[0]

    def sites(self) -> list[SiteSpending]:
        """Per site: what it cost today and this month, its caps ("1.40 of 2.00 this month") and
        the passes bought there (`channel-node wallet sites`)."""
        return site_spending(self.store, self._day(), self._month())

    def display_asset(self, site: str) -> Asset | None:
        """The wallet's asset with `site`'s display form (`$0.02`) when the site offered one made for
        the asset's decimals; None when the wallet's asset is not known yet."""
        if self.asset is None:
            return None
        return read_display({"display": self.store.display(site)}, self.asset)

    async def _channel_for(self, terms: _Terms, delay: int, site: str | None = None) -> ChannelRecord:
        key = (terms.chain_id, site) if site else (terms.chain_id, terms.contract, terms.receiver, terms.asset, site)
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent first requests open one channel, not one each
            found = self.store.open_channels(terms.chain_id, terms.contract, terms.receiver, terms.asset)
            # A channel pays the site that first paid from it: another site naming the same receiver
            # never gets (and cannot spend elsewhere) that channel's vouchers. docs/security.md
            found = [r for r in found if self.store.channel_site(r.channel_id) in (None, site)]
            # A channel naming another authorizer than the node's (it changed its claim key) cannot be settled
            # by the node, which refuses it: open one that names the current key.
            wanted = to_canonical_address(terms.receiver_authorizer)
            found = [r for r in found if r.config.receiver_authorizer == wanted]
            if found:
                return found[0]
            if site is not None:
                # One open channel per site: a site whose offer names another receiver, authorizer or
                # contract than its open channel does (new ones on every request, say) would otherwise
                # make the wallet lock a deposit in one new channel after another. docs/security.md
                asset = to_canonical_address(terms.asset)  # the policy's: a site cannot pick another one
                held = next((r for r in self.store.channels(OPEN)
                             if r.config.token == asset and self.store.channel_site(r.channel_id) == site), None)  # fmt: skip
                if held is not None:
                    raise OfferRejected(
                        f"{site} asks payment under other terms (receiver {terms.receiver}, receiver authorizer "
                        f"{terms.receiver_authorizer}, contract {terms.contract}) than its open channel {held.hex_id}; "
                        f"not opening a second channel for it (close {held.hex_id} to pay under the new terms)"
                    )
            return await self._open(terms, delay, site)

    async def _open(self, terms: _Terms, delay: int, site: str | None = None) -> ChannelRecord:
        amount = self._deposit_size(terms.price, 0)
        if amount < max(terms.price, terms.min_deposit):
            raise SpendingLimitExceeded(
                f"a deposit of {self._shown(amount)} (policy) does not cover the price {self._shown(terms.price)} "
                f"or the server's minimum deposit {self._shown(terms.min_deposit)}"
            )
        salt = secrets.randbits(96)  # random: a rebuilt wallet never reuses an old channel's identity
        voucher_key = self._voucher_key(terms.chain_id, terms.contract, salt)
        config = ChannelConfig.create(
            payer=self.address, signer=address_of_key(voucher_key), receiver=terms.receiver, token=self.policy.asset,
            close_delay=delay, salt=salt, receiver_authorizer=terms.receiver_authorizer,
        )  # fmt: skip
        cid = channel_id(Domain(terms.chain_id, terms.contract), config)
        # The key is on disk before any money moves: a crash after the deposit loses nothing.
        self.store.insert_channel(cid, terms.chain_id, terms.contract, config, voucher_key, OPENING)
        if site is not None:
            self.store.claim_channel(cid, site)  # the site's from the start: it counts as the site's channel
        client = self._client(terms.contract)
        try:
            tx = await self._deposit(terms.contract, config, amount)
        except Exception:
            on_chain = None
            try:
                on_chain = await client.get_channel(cid)
            except Exception:
                pass  # leave it `opening`: a later look at the chain decides
            if on_chain is not None and not on_chain.exists:
                self.store.update_channel(cid, status=FAILED)
            elif on_chain is not None:
                self.store.update_channel(cid, status=OPEN, deposited=on_chain.deposited)
            raise
        opened = tx.events_of(ChannelOpened)
        deposited = opened[0].deposited if opened else amount
        self.store.update_channel(cid, status=OPEN, deposited=deposited)
        log.info("opened channel 0x%s to %s with %d (close delay %d s)", cid.hex(), terms.receiver, deposited, delay)
        return self._record(cid)

    async def _deposit(self, contract: str, config: ChannelConfig, amount: int) -> TxResult:
        """Opens or tops up a channel. ETH goes with the call. A token with EIP-2612 is deposited in
        one transaction carrying a permit for exactly this amount; any other token is first approved
        for exactly this amount (never an unlimited allowance), then pulled by the contract."""
        client = self._client(contract)
        if config.is_eth:
            balance = int(await self.w3.eth.get_balance(to_checksum_address(self.address)))
            if balance < amount:  # gas comes on top; the node's answer covers that case
                raise InsufficientFunds(
                    f"a deposit of {format_amount(amount, ETH)} needs more than this account holds "
                    f"({format_amount(balance, ETH)})"
                )
            return await client.deposit_eth(config, amount, sender=self._sender, gas=self.gas)
        token = Erc20Client(self.w3, config.token)
        balance = await token.balance_of(self.address)
        if balance < amount:
            raise InsufficientFunds(
                f"a deposit of {self._shown(amount)} needs more of token {token.address} than this account holds "
                f"({self._shown(balance)})"
            )
        if token.address not in self._no_permit:
            deadline = int((await self.w3.eth.get_block("latest"))["timestamp"]) + PERMIT_LIFETIME
            permit = await token.permit_signature(self._sender, client.address, amount, deadline)
            if permit is not None:
                try:
                    return await client.deposit_token_with_permit(
                        config, amount, deadline, *permit, sender=self._sender, gas=self.gas
                    )
                except ContractRevert as exc:
                    if exc.error_name != "TokenTransferFailed":
                        raise
                    log.info("token %s did not honour the permit; approving instead", token.address)
            self._no_permit.add(token.address)
        await token.ensure_allowance(client.address, amount, sender=self._sender, gas=self.gas)
        return await client.deposit_token(config, amount, sender=self._sender, gas=self.gas)

    def _low(self, record: ChannelRecord, live: _Live, price: int) -> bool:
        committed = max(record.signed, record.charged + live.reserved)
        return record.deposited - committed < self.policy.topup_below * price

    async def _fund(self, record: ChannelRecord, price: int) -> ChannelRecord | None:
        """Tops the channel up when its unsigned deposit runs low. None: the channel cannot take this
        payment (at the deposit cap, or closing): the caller looks for another one."""
        live = self._state(record)
        if not self._low(record, live, price):
            return record
        async with live.funding:  # one top-up at a time; the others wait for it and re-check
            current = self.store.channel(record.channel_id)
            if current is None or current.status != OPEN:
                return None
            record = current
            if not self._low(record, live, price):
                return record
            committed = max(record.signed, record.charged + live.reserved)
            amount = self._deposit_size(price, record.deposited)
            if amount <= 0:
                if record.deposited - committed >= price:
                    return record  # the cap is reached but this payment still fits
                self.store.update_channel(record.channel_id, status=EXHAUSTED)
                log.warning("channel %s reached the deposit cap; opening a new one (close this one to get "
                            "%d back)", record.hex_id, record.deposited - record.signed)  # fmt: skip
                return None
            try:
                tx = await self._deposit(record.contract, record.config, amount)
            except InsufficientFunds as exc:
                if record.deposited - committed >= price:
                    log.warning("cannot top up %s (%s); paying from what is left", record.hex_id, exc)
                    return record
                raise
            except ContractRevert as exc:
                if exc.error_name in ("ChannelClosing", "ChannelIsSettled"):
                    self.store.update_channel(record.channel_id, status=CLOSING if exc.error_name == "ChannelClosing" else SETTLED)
                    return None
                if record.deposited - committed >= price:
                    log.warning("top-up of %s failed (%s); paying from what is left", record.hex_id, exc)
                    return record
                raise
            topped = tx.events_of(ChannelDeposited)
            total = topped[0].total_deposited if topped else record.deposited + amount
            self.store.update_channel(record.channel_id, deposited=total)
            log.info("topped up channel %s by %d to %d", record.hex_id, amount, total)
            return self.store.channel(record.channel_id)

    async def top_up(self, channel: bytes | str, amount: int) -> ChannelRecord:
        """Adds `amount` to a channel's deposit (the operator's own top-up, beside the policy's);
        records the deposit total the chain reports."""
        record = self._record(channel)
        _uint(amount, "amount")
        live = self._state(record)
        async with live.funding:
            tx = await self._deposit(record.contract, record.config, amount)
            topped = tx.events_of(ChannelDeposited)
            record = self._record(record.channel_id)
            self.store.update_channel(record.channel_id, deposited=topped[0].total_deposited if topped else record.deposited + amount)
        return self._record(record.channel_id)

    def _voucher(self, record: ChannelRecord, amount: int) -> bytes:
        """The voucher signature for `amount`. Deterministic (RFC 6979): one total always gets the
        same bytes, so resending the highest voucher never puts a second voucher for it about."""
        key = self.store.voucher_key(record.channel_id)
        if key is None:
            raise WalletError(f"channel {record.hex_id} has no voucher key")
        return sign_digest(key, voucher_digest(Domain(record.chain_id, record.contract), record.channel_id, amount))

    def _commit(self, record: ChannelRecord, live: _Live, new: Ledger, send: rules.Send, site: str | None,
                price: int, payment_id: str, *, free: bool = False) -> bytes:  # fmt: skip
        """Signs `send` (when fresh: checks the limits first) and makes the ledger durable; only then
        may the voucher leave. Called under the channel's lock, without awaiting.

        What it counts as spent (docs/security.md, "The reader's budgets"): what the voucher adds
        above the channel's counted figure, at most the price: a new increment, or credit that an
        earlier receipt gave back (it charged less than was signed for: a cap, a pass). Credit of
        refused requests stays counted and is resent for nothing. `free`: the site's own figures say
        this read costs nothing (a pass held, a cap reached): the budgets are checked for 0, the
        price is still counted until the receipt gives it back."""
        spend = min(price, max(0, send.amount - record.counted))
        if send.fresh or spend:
            self._check_limits(site, price, 0 if free else spend)
        signature = self._voucher(record, send.amount)
        entry = SpendEntry(site, self._day(), self._month(), spend, record.counted + spend)
        if send.fresh:
            self.store.record_signature(record.channel_id, send.amount, signature, site, entry.day, spend, _row(new),
                                        month=entry.month, counted=entry.counted)  # fmt: skip
        else:
            self.store.save_ledger(record.channel_id, _row(new), spend=entry if spend else None)
        if spend:
            earlier = live.counts.get(payment_id)
            live.counts[payment_id] = replace(entry, amount=spend + (earlier.amount if earlier else 0))
        live.ledger = new
        return signature

    async def _sign(self, record: ChannelRecord, terms: _Terms, resource: str, site: str | None,
                    pass_name: str | None = None, free: tuple[str, ...] | SiteCap | None = None) -> PaymentHeader | None:  # fmt: skip
        live = self._state(record)
        async with live.lock:
            # Nothing below awaits: reading, checking, signing and committing are one atomic step.
            current = self.store.channel(record.channel_id)
            if current is None or current.status != OPEN:
                return None
            record = current
            if site is not None and self.store.claim_channel(record.channel_id, site) != site:
                return None  # another site took it meanwhile: find or open one for this site
            payment_id = uuid.uuid4().hex
            try:
                new, send = rules.reserve(self._synced(live, record), Pending(payment_id, terms.price, resource, terms.once))
            except LedgerBlocked as exc:
                raise SiteBlocked(f"channel {record.hex_id} is blocked after the server misbehaved ({exc})") from None
            if send.amount > record.deposited:
                return None  # others reserved the rest meanwhile: fund again
            signature = self._commit(record, live, new, send, site, terms.price, payment_id, free=free is not None)
            live.sites[payment_id] = site
            if free is not None:
                live.free[payment_id] = free
        return self._header(record, send.amount, signature, payment_id, terms.price, resource, pass_name=pass_name)

    def _reuse(self, record: ChannelRecord, terms: _Terms, resource: str, site: str | None) -> PaymentHeader:
        """A resource this channel already bought: the node serves it for any valid voucher of the
        channel, so the top voucher is sent again and nothing new is signed."""
        live = self._state(record)
        if site is not None:
            self.store.claim_channel(record.channel_id, site)  # found for this site, or still unbound
        payment_id = uuid.uuid4().hex
        try:
            new, send = rules.reserve(self._synced(live, record), Pending(payment_id, 0, resource, True))
        except LedgerBlocked as exc:
            raise SiteBlocked(f"channel {record.hex_id} is blocked after the server misbehaved ({exc})") from None
        signature = self._commit(record, live, new, send, site, 0, payment_id)
        live.sites[payment_id] = site
        return self._header(record, send.amount, signature, payment_id, 0, resource, reused=True)

    def _header(self, record: ChannelRecord, amount: int, signature: bytes, payment_id: str, price: int,
                resource: str, reused: bool = False, with_config: bool | None = None,
                pass_name: str | None = None) -> PaymentHeader:  # fmt: skip
        network = f"eip155:{record.chain_id}"
        include = (not record.acknowledged) if with_config is None else with_config
        value = payment_signature(
            network, record.contract, record.channel_id, amount, signature, payment_id, record.config if include else None,
            pass_name=pass_name,
        )
        return PaymentHeader(
            value=value, channel_id=record.channel_id, amount=amount, price=price, payment_id=payment_id,
            resource=resource, network=network, contract=record.contract, signature=signature, reused=reused,
            pass_name=pass_name,
        )  # fmt: skip

    def with_config(self, payment: PaymentHeader) -> PaymentHeader:
        """The same voucher and payment id with the channel's configuration attached (for a server
        that answered `channel_unknown`: it may have lost the channel or not confirmed it yet)."""
        record = self._record(payment.channel_id)
        self.store.update_channel(record.channel_id, acknowledged=False)
        return self._header(record, payment.amount, payment.signature, payment.payment_id, payment.price,
                            payment.resource, payment.reused, with_config=True, pass_name=payment.pass_name)  # fmt: skip

    def release(self, payment: PaymentHeader, *, charged_unknown: bool = False) -> None:
        """Ends a request without a receipt: refused (the node says it charged nothing; the voucher
        stays as credit for the next request), or `charged_unknown` (a dropped connection, a 5xx, a
        success without a receipt): kept as unsure until a later receipt settles it."""
        live = self._live.get(payment.channel_id)
        if live is None or live.ledger.find(payment.payment_id) is None:
            return
        live.sites.pop(payment.payment_id, None)
        live.counts.pop(payment.payment_id, None)  # refused or unknown: what it counted stays counted
        live.free.pop(payment.payment_id, None)
        step = rules.unknown if charged_unknown else rules.refused
        live.ledger = step(live.ledger, payment.payment_id)
        self.store.save_ledger(payment.channel_id, _row(live.ledger))

    # ------------------------------------------------------------------ receipts and resync

    def _ours(self, record: ChannelRecord, amount: int, signature: bytes | None) -> bool:
        if signature is None:
            return False
        try:
            digest = voucher_digest(Domain(record.chain_id, record.contract), record.channel_id, amount)
            return recover_signer(digest, signature) == record.config.signer
        except (InvalidSignature, ValueError):
            return False

    def _misbehaved(self, record: ChannelRecord, live: _Live, site: str | None, problem: str) -> ServerMisbehaved:
        """Blocks site and receiver, persists the ledger, and returns the error to raise."""
        self.store.save_ledger(record.channel_id, _row(live.ledger), charged=live.ledger.charged)
        self._block(record, site, problem)
        return ServerMisbehaved(f"server for {site or record.receiver}: {problem}")

    async def settle_receipt(self, channel: bytes | str, receipt: Mapping[str, Any], price: int, payment_id: str | None,
                             *, complete: bool = True) -> int:  # fmt: skip
        """Checks a `PAYMENT-RESPONSE` for the request `payment_id` and records it; returns what the
        request cost. `complete`: the body arrived in full (a charge for a body cut short is not
        counted as received). Raises ServerMisbehaved (and blocks the server) when the receipt charges
        more than offered, more than signed, names another channel or payment, or reports a total that
        what was delivered and is in flight does not explain."""
        record = self._record(channel)
        live = self._state(record)
        async with live.lock:
            record = self._record(channel)
            ledger = self._synced(live, record)
            if payment_id is None or ledger.find(payment_id) is None:
                raise WalletError("settle_receipt needs the payment id of a request in flight")
            site = live.sites.pop(payment_id, None)
            problem = None
            try:
                if not isinstance(receipt, Mapping):
                    raise ValueError("receipt is not an object")
                amount = _uint(receipt.get("chargedAmount"), "chargedAmount")
                total = _uint(receipt.get("chargedTotal"), "chargedTotal")
                named = receipt.get("channelId")
                if named is not None and (not isinstance(named, str) or named.lower() != record.hex_id):
                    raise ValueError("the receipt names another channel")
                paid = receipt.get("paymentId")
                if paid is not None and paid != payment_id:
                    raise ValueError("the receipt names another payment")
                network = receipt.get("network")
                if network is not None and network != f"eip155:{record.chain_id}":
                    raise ValueError("the receipt is for another network")
            except ValueError as exc:
                problem = f"malformed receipt: {exc}"
            last = receipt.get("lastVoucher") if isinstance(receipt, Mapping) else None
            if problem is None and isinstance(last, Mapping):
                try:
                    voucher = _uint(last.get("maxClaimableAmount"), "maxClaimableAmount")
                    signature = bytes.fromhex(str(last.get("signature", "")).removeprefix("0x"))
                except ValueError:
                    voucher, signature = 0, None
                if not self._ours(record, voucher, signature):
                    problem = "presented a last voucher this wallet did not sign"
                elif voucher > ledger.signed:
                    assert signature is not None
                    ledger = self._adopt(record, live, voucher, signature, max(total - amount, 0), payment_id)
            if problem is not None:
                live.ledger = rules.refused(ledger, payment_id)
                raise self._misbehaved(record, live, site, problem)
            pending = ledger.find(payment_id)
            assert pending is not None
            new = rules.delivered(ledger, payment_id, amount, total, complete=complete)
            live.ledger = new
            if new.misbehaved is not None and ledger.misbehaved is None:
                raise self._misbehaved(record, live, site, new.misbehaved)
            purchase = pending.resource if pending.once and complete else None
            # Charged less than was counted for it (a cap, a pass): the budgets count what was charged.
            counted = live.counts.pop(payment_id, None)
            back = min(pending.price - amount, counted.amount) if counted is not None and amount < pending.price else 0
            spend = replace(counted, amount=-back, counted=max(0, record.counted - back)) if counted is not None and back else None
            self.store.save_ledger(record.channel_id, _row(new), charged=total, receipt=dict(receipt), purchase=purchase,
                                   spend=spend)  # fmt: skip
            why = live.free.pop(payment_id, None)
            if why is not None and amount > 0:
                self._charged_when_free(site, why, receipt, amount)
            self._note_receipt(site, receipt)
        return amount

    def _note_receipt(self, site: str | None, receipt: Mapping[str, Any]) -> None:
        """Keeps a receipt's cap figures and pass (docs/protocol.md, "Caps and passes") for `sites`
        and for not buying a pass twice. Shown to the reader, never counted as money."""
        if site is None:
            return
        cap = _offered_cap(receipt.get("cap"))
        if cap is not None:
            known = {c.name: c for c in self.store.caps(site)}.get(cap.name)
            self.store.record_cap(replace(cap, site=site, period=cap.period or (known.period if known else ""),
                                          seen_at=int(self.clock())))  # fmt: skip
        bought = receipt.get("pass")
        if isinstance(bought, Mapping) and isinstance(bought.get("name"), str) and _PASS_NAME.fullmatch(bought["name"]):
            until = bought.get("until")
            if isinstance(until, int) and not isinstance(until, bool) and 0 < until < 1 << 40:
                self.store.record_pass(site, bought["name"], until)

    def _adopt(self, record: ChannelRecord, live: _Live, voucher: int, signature: bytes, charged: int,
               payment_id: str | None) -> Ledger:  # fmt: skip
        """The node holds a voucher of ours above what this wallet recorded (it lost its database, or
        was restored from a copy): checked to be ours by the caller; `signed` rises to it."""
        if self.store.raise_signed(record.channel_id, voucher, signature):
            log.warning("the server holds our voucher for %d on %s, above what this wallet recorded; "
                        "adopting it (was the wallet restored from an older copy?)", voucher, record.hex_id)  # fmt: skip
        live.ledger = rules.adopt(live.ledger, voucher, charged, payment_id)
        return live.ledger

    def _checked_state(self, record: ChannelRecord, channel_state: Mapping[str, Any]) -> tuple[int, int, bytes | None, str | None]:
        """(charged, voucher, signature, problem) from a corrective 402's `extra.channel`; a problem
        when it presents a voucher our key did not sign, or charges above its own voucher."""
        try:
            charged = _uint(channel_state.get("charged"), "charged")
            ceiling = _uint(channel_state.get("maxClaimableAmount", "0"), "maxClaimableAmount")
            raw_signature = channel_state.get("signature")
            signature = bytes.fromhex(raw_signature.removeprefix("0x")) if raw_signature else None
        except (ValueError, TypeError, AttributeError) as exc:
            raise WalletError(f"corrective 402 without a usable extra.channel ({exc})") from None
        problem = None
        if signature is not None:
            if not self._ours(record, ceiling, signature):
                problem = f"presented a voucher for {ceiling} that this wallet did not sign"
        elif ceiling != 0:
            problem = f"claims a voucher for {ceiling} without its signature"
        if problem is None and charged > ceiling:
            problem = f"claims to have charged {charged} with vouchers for only {ceiling}"
        return charged, ceiling, signature, problem

    def _apply_status(self, record: ChannelRecord, channel_state: Mapping[str, Any]) -> None:
        status = None
        if channel_state.get("settled") is True:
            status = SETTLED
        elif channel_state.get("closeDeadline"):
            status = CLOSING
        deadline = channel_state.get("closeDeadline")
        self.store.update_channel(
            record.channel_id, acknowledged=True, status=status,
            close_deadline=deadline if isinstance(deadline, int) and not isinstance(deadline, bool) else None,
        )  # fmt: skip

    async def resync(self, channel_state: Mapping[str, Any]) -> ChannelRecord:
        """Adopts the node's view from a corrective 402's `extra.channel` outside a request, after
        checking that the voucher it presents is ours (our voucher key signed that amount): only
        then is the node's `maxClaimableAmount` trusted. `signed` is raised to it if higher, never
        lowered. A request's corrective 402 goes through `retry_after` instead."""
        try:
            record = self._record(channel_state["channelId"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise WalletError(f"corrective 402 without a usable extra.channel ({exc})") from None
        charged, ceiling, signature, problem = self._checked_state(record, channel_state)
        live = self._state(record)
        if problem is not None:
            raise self._misbehaved(record, live, None, problem)
        async with live.lock:
            self._synced(live, record)
            if signature is not None and ceiling > live.ledger.signed:
                self._adopt(record, live, ceiling, signature, charged, None)
            self.store.save_ledger(record.channel_id, _row(live.ledger), charged=charged)
            self._apply_status(record, channel_state)
        return self._record(record.channel_id)

    async def retry_after(self, payment: PaymentHeader, channel_state: Mapping[str, Any]) -> PaymentHeader:
        """The voucher to retry `payment` with after a corrective 402 (insufficient or stale voucher)
        whose `extra.channel` states the node's figures: `charged + price` (the highest voucher
        when it covers that), with the same payment id, so the node never charges the retry twice.
        Raises ServerMisbehaved (and blocks) when the figures name another channel, present a voucher
        we did not sign, or claim charges beyond what was delivered plus what else is in flight."""
        record = self._record(payment.channel_id)
        live = self._state(record)
        site = live.sites.get(payment.payment_id)
        named = channel_state.get("channelId") if isinstance(channel_state, Mapping) else None
        if not isinstance(named, str) or named.lower() != record.hex_id:
            live.ledger = rules.refused(live.ledger, payment.payment_id)
            raise self._misbehaved(record, live, site, "answered a voucher with the state of another channel")
        charged, ceiling, signature, problem = self._checked_state(record, channel_state)
        if problem is not None:
            live.ledger = rules.refused(live.ledger, payment.payment_id)
            raise self._misbehaved(record, live, site, problem)
        # A retry above the deposit would only be refused again: top up first, but only for figures the
        # ledger accepts, so a corrective 402 that is about to block the site deposits nothing more.
        ledger = self._synced(live, record)
        adopting = signature is not None and ceiling > ledger.signed
        if adopting or ledger.find(payment.payment_id) is None or rules.corrective(ledger, payment.payment_id, charged)[1]:
            await self._fund(record, payment.price)
        async with live.lock:
            record = self._record(payment.channel_id)
            ledger = self._synced(live, record)
            if ledger.find(payment.payment_id) is None:
                raise WalletError("retry_after needs a request in flight")
            if signature is not None and ceiling > ledger.signed:
                ledger = self._adopt(record, live, ceiling, signature, charged, payment.payment_id)
            new, send = rules.corrective(ledger, payment.payment_id, charged)
            if send is None:
                live.ledger = new
                live.sites.pop(payment.payment_id, None)
                assert new.misbehaved is not None
                raise self._misbehaved(record, live, site, new.misbehaved)
            try:
                signature = self._commit(record, live, new, send, site, payment.price, payment.payment_id)
            except SpendingLimitExceeded:
                live.ledger = rules.refused(ledger, payment.payment_id)
                self.store.save_ledger(record.channel_id, _row(live.ledger))
                raise
            self.store.update_channel(record.channel_id, charged=charged)
        return self._header(record, send.amount, signature, payment.payment_id, payment.price, payment.resource,
                            payment.reused, pass_name=payment.pass_name)  # fmt: skip

    async def confirm_unusable(self, channel: bytes | str, code: str) -> bool:
        """The node refused the channel as closing or settled: believed, and the channel marked
        unusable, only when the chain shows its close pending or done. Otherwise a site could make
        the wallet open (and sign a first voucher on) one new channel after another."""
        record = self._record(channel)
        try:
            state = await self._client(record.contract).get_channel(record.channel_id)
        except Exception as exc:  # an unreachable chain proves nothing: keep the channel
            log.warning("cannot check %s on chain (%s); not opening another channel", record.hex_id, type(exc).__name__)
            return False
        if state.settled or state.close_deadline is not None:
            self.channel_unusable(record.channel_id, "channel_settled" if state.settled else "channel_closing")
            if state.close_deadline is not None:
                self.store.update_channel(record.channel_id, close_deadline=state.close_deadline)
            return True
        log.warning("the server says %s is %s, but the chain shows it open; not opening another channel",
                    record.hex_id, code)  # fmt: skip
        return False

    def channel_unusable(self, channel: bytes | str, code: str) -> None:
        """The node refused the channel as closing or settled: stop paying from it."""
        record = self._record(channel)
        self.store.update_channel(record.channel_id, status=SETTLED if code == "channel_settled" else CLOSING)
        log.warning("channel %s is %s according to the server; close or finalize it", record.hex_id, code)

    # ------------------------------------------------------------------ listing and recovery

    def channels(self, status: str | None = None) -> list[ChannelRecord]:
        return self.store.channels(status)

    def _only_contract(self, contract: str | None) -> str:
        if contract is not None:
            return to_checksum_address(contract)
        known = set(self._trusted or ()) | {r.contract for r in self.store.channels()}
        if len(known) != 1:
            raise WalletError("say which contract to search (several or none are known)")
        return known.pop()

    async def channels_on_chain(
        self, receiver: str | None = None, *, contract: str | None = None, from_block: int = 0
    ) -> list[ChainChannelInfo]:
        """Every channel this account opened (ChannelOpened logs with us as payer), with its state on
        chain. Nodes cap eth_getLogs ranges: pass `from_block` near the wallet's first use."""
        contract = self._only_contract(contract)
        client = self._client(contract)
        wanted = to_checksum_address(receiver) if receiver is not None else None
        out = []
        for event in await client.get_events(from_block, "latest", kinds=[ChannelOpened]):
            assert isinstance(event, ChannelOpened)
            if event.payer != self.address or (wanted is not None and event.receiver != wanted):
                continue
            state = await client.get_channel(event.channel_id)
            local = self.store.channel(event.channel_id)
            out.append(
                ChainChannelInfo(
                    channel_id=event.channel_id, contract=contract, config=event.config, deposited=state.deposited,
                    claimed=state.claimed, close_deadline=state.close_deadline, settled=state.settled,
                    opened_in_block=event.block_number,
                    has_voucher_key=local is not None and local.has_key,
                    local_status=local.status if local else None,
                )  # fmt: skip
            )
        return out

    async def recover_from_chain(
        self, receiver: str | None = None, *, contract: str | None = None, from_block: int = 0
    ) -> list[ChainChannelInfo]:
        """After losing the local database: rebuilds this account's unsettled channels from the chain.
        A channel whose voucher key derives from the main key (every channel this wallet opened)
        becomes usable again: its signed and charged totals come back from the server's corrective
        402, whose voucher is checked to be ours before it is trusted. Others are `orphaned` and can
        only be closed."""
        chain_id = await self.chain_id()
        found = []
        for info in await self.channels_on_chain(receiver, contract=contract, from_block=from_block):
            if info.settled or info.local_status is not None:
                continue
            key = self._voucher_key(chain_id, info.contract, info.config.salt)
            ours = address_of_key(key) == info.config.signer
            status = CLOSING if info.close_deadline is not None else (OPEN if ours else ORPHANED)
            self.store.insert_channel(
                info.channel_id, chain_id, info.contract, info.config, key if ours else None, status, info.deposited
            )
            if info.close_deadline is not None:
                self.store.update_channel(info.channel_id, close_deadline=info.close_deadline)
            if not ours:
                log.warning("channel 0x%s (%d deposited, %d claimed) has no voucher key here; it can only be closed",
                            info.channel_id.hex(), info.deposited, info.claimed)  # fmt: skip
            found.append(info)
        return found

    # ------------------------------------------------------------------ exit

    async def request_close(self, channel: bytes | str) -> CloseTicket:
        """Starts the channel's close delay. The unclaimed deposit stays locked until the deadline
        (the receiver may still claim with the vouchers it holds); then call `finalize`."""
        record = self._record(channel)
        if record.status == SETTLED:
            raise WalletError(f"channel {record.hex_id} is already settled")
        client = self._client(record.contract)
        tx = await client.request_close(record.config, sender=self._sender, gas=self.gas)
        deadline = tx.events_of(CloseRequested)[0].deadline
        state = await client.get_channel(record.channel_id)
        self.store.update_channel(record.channel_id, status=CLOSING, close_deadline=deadline)
        block = await self.w3.eth.get_block(tx.block_number)
        wait = max(0, deadline - int(block["timestamp"]))
        when = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds")
        warning = (
            f"channel {record.hex_id} is closing: {state.unclaimed} stays locked for {wait} s, until {when} "
            f"(chain time); after that run `channel-node wallet finalize {record.hex_id}` (Wallet.finalize in Python) "
            "to get back what the receiver has not claimed"
        )
        log.warning(warning)
        return CloseTicket(record.channel_id, deadline, state.unclaimed, warning, tx)

    async def finalize(self, channel: bytes | str) -> Finalized:
        """After the close delay: refunds everything the receiver has not claimed to the main account.
        Simulated first, so an early call costs no gas."""
        record = self._record(channel)
        client = self._client(record.contract)
        try:
            await client.contract.functions.finalizeClose(record.config.as_abi_tuple()).call({"from": self.address})
        except Exception as exc:
            revert = as_revert(exc, "finalizeClose")
            if revert is None:
                raise
            if revert.error_name == "CloseDelayNotOver":
                latest = await self.w3.eth.get_block("latest")
                left = (record.close_deadline or 0) - int(latest["timestamp"])
                raise WalletError(f"the close delay of {record.hex_id} is not over yet (about {max(left, 1)} s left): "
                                  "finalize again after it, by chain time") from None  # fmt: skip
            if revert.error_name == "CloseNotRequested":
                raise WalletError(f"no close was requested for {record.hex_id}: request it first (the command line: "
                                  "`channel-node wallet close CHANNEL`), then finalize after the close delay") from None  # fmt: skip
            if revert.error_name == "ChannelIsSettled":
                self.store.update_channel(record.channel_id, status=SETTLED)
                raise WalletError(f"channel {record.hex_id} is already settled") from None
            raise revert from None
        tx = await client.finalize_close(record.config, sender=self._sender, gas=self.gas)
        settled = tx.events_of(ChannelSettled)[0]
        self.store.update_channel(record.channel_id, status=SETTLED)
        log.info("finalized %s: %d refunded, %d claimed by the receiver", record.hex_id, settled.refunded, settled.total_claimed)
        return Finalized(record.channel_id, settled.refunded, settled.total_claimed, tx)

    async def cooperative_close(
        self, channel: bytes | str, receiver_signature: bytes, claim_amount: int | None = None
    ) -> Finalized:
        """Ends the channel at once at `claim_amount` (default: the charged total) with the receiver's
        CooperativeClose signature; the main account sends it, so no payer signature is needed.

        `close_via_node` asks a channel-node for that signature (POST /_channel/cooperative-close)."""
        record = self._record(channel)
        amount = record.charged if claim_amount is None else claim_amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise TypeError("claim_amount must be a non-negative int")
        if amount > record.signed:
            raise WalletError(f"refusing to agree to {amount}: this wallet only ever signed {record.signed}")
        if len(receiver_signature) in (64, 65):  # ECDSA: check it before spending gas (EIP-1271 blobs pass as-is)
            digest = cooperative_close_digest(Domain(record.chain_id, record.contract), record.channel_id, amount)
            try:
                signer = recover_signer(digest, bytes(receiver_signature))
            except InvalidSignature:
                signer = None
            if signer is None or not record.config.may_act_for_receiver(signer):  # the receiver, or the channel's receiver authorizer
                raise WalletError("the receiver's CooperativeClose signature does not match this channel and amount")
        tx = await self._client(record.contract).close_cooperative(
            record.config, amount, b"", bytes(receiver_signature), sender=self._sender, gas=self.gas
        )
        settled = tx.events_of(ChannelSettled)[0]
        self.store.update_channel(record.channel_id, status=SETTLED)
        return Finalized(record.channel_id, settled.refunded, settled.total_claimed, tx)


    async def _ask_consent(self, record: ChannelRecord, amount: int, node_url: str,
                           http: aiohttp.ClientSession | None) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """POSTs the payer's signed request to close at `amount`; the node's status and JSON answer."""
        import aiohttp

        digest = cooperative_close_digest(Domain(record.chain_id, record.contract), record.channel_id, amount)
        payer_signature = self._sender.sign_digest(digest)
        body = {"channelId": record.hex_id, "amount": str(amount), "payerSignature": "0x" + bytes(payer_signature).hex()}
        own_session = http is None
        http = http or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with http.post(node_url.rstrip("/") + "/_channel/cooperative-close", json=body) as response:
                status = response.status
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise WalletError(f"could not reach the node at {node_url} ({type(exc).__name__}): is it running, "
                              "and is this its base URL (https://site, no path)?") from None  # fmt: skip
        finally:
            if own_session:
                await http.close()
        if not isinstance(answer, dict):
            raise WalletError(f"the node at {node_url} did not answer the close request with JSON (HTTP {status})")
        return status, answer

    async def close_via_node(self, channel: bytes | str, node_url: str, http: aiohttp.ClientSession | None = None) -> Finalized:
        """Asks the node at `node_url` to consent to closing at the charged total (proving with the
        main key that the payer asks), then sends the close: unspent credit comes back at once."""
        record = self._record(channel)
        amount = record.charged
        for attempt in range(2):
            status, answer = await self._ask_consent(record, amount, node_url, http)
            if status == 200:
                break
            code, message = str(answer.get("error"))[:64], str(answer.get("message"))[:200]
            stated = _stated_charged(answer)
            # The node's own figure is agreed to once: a lower one always (the rest comes back to
            # the reader), a higher one only up to what this wallet signed (the receiver could claim
            # that much with our voucher anyway), never beyond.
            if attempt == 0 and stated is not None and (
                (code == "close_amount_above_charged" and stated < amount)
                or (code == "close_amount_too_low" and amount < stated <= record.signed)
            ):
                amount = stated
                continue
            hint = "; close unilaterally instead (without --node)" if code == "cannot_consent" else ""
            raise WalletError(f"the node refused to co-sign the close: {code}: {message}{hint}")
        signature = answer.get("receiverSignature")
        if not isinstance(signature, str) or not signature.startswith("0x"):
            raise WalletError("the node's answer carries no receiverSignature")
        try:
            receiver_signature = bytes.fromhex(signature[2:])
        except ValueError:
            raise WalletError("the node's receiverSignature is not hex") from None
        return await self.cooperative_close(record.channel_id, receiver_signature, amount)


__all__ = [
    "ChainChannelInfo",
    "CloseTicket",
    "Finalized",
    "InsufficientFunds",
    "OfferRejected",
    "PaymentHeader",
    "Policy",
    "ServerMisbehaved",
    "SiteBlocked",
    "SpendingLimitExceeded",
    "UnsupportedAsset",
    "Wallet",
    "WalletError",
    "is_channel_deposit_code",
    "site_of",
    "trust_site",
]


def _stated_charged(answer: Mapping[str, Any]) -> int | None:
    """The charged total a refusal's channel state names, if it names one a wallet can read."""
    channel = answer.get("channel")
    charged = channel.get("charged") if isinstance(channel, dict) else None
    if isinstance(charged, str) and charged.isdigit() and len(charged) <= 78:
        return int(charged)
    return None
