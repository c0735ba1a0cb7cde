"""The reader's wallet pays x402 `exact` sites: an EIP-3009 `TransferWithAuthorization` signed with
the main key (the site, or its facilitator, submits it and pays the gas; the reader needs none).

docs/protocol.md, "The wallet and `exact`", states the rules; in order:
- the offer is checked before anything is signed (`check_offer`): `eip155:<id>` is the wallet's
  chain, the asset is the policy's (the allow-list: the limits count in it), `extra.name` and
  `extra.version` are present and equal the token's own `name()` / `version()` (read over RPC,
  cached), `payTo` is an address, `amount` is 1 or more and within the per-payment caps;
- the limits (per request, per site per day, per day) and the blocklist apply as to a voucher; an
  authorization is money spent the moment it is signed (anyone holding it can submit it until
  `validBefore`), so its value is counted when it is recorded, and given back only once the chain
  shows it can no longer be used (`reconcile`);
- it is signed with validAfter 0, validBefore = now + min(maxTimeoutSeconds, the policy's cap), a
  random 32-byte nonce and value = amount exactly, and recorded in the wallet store BEFORE the header
  leaves the process (a restart knows what it signed); `accepted` is echoed verbatim, `resource`
  copied from the 402;
- the `PAYMENT-RESPONSE` is read (`read_receipt`: success, transaction, network, payer; `amount`
  optional) and may be confirmed on chain (`ExactPayer.confirm`: the transfer in that transaction).

`choose_scheme` is the pure rule for a site that offers both schemes. Amounts are ints in the
token's smallest unit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode
from eth_utils.address import is_address, to_canonical_address, to_checksum_address
from hexbytes import HexBytes

from channel_node.chain.erc20 import Erc20Client
from channel_node.client.store import (
    EXACT_CONFIRMED,
    EXACT_PAID,
    EXACT_REFUSED,
    EXACT_SIGNED,
    EXACT_UNUSED,
    EXACT_USED,
    OPEN,
    ExactLimitExceeded,
    ExactRecord,
    WalletStore,
)
from channel_node.client.wallet import (
    InsufficientFunds,
    OfferRejected,
    ServerMisbehaved,
    SpendingLimitExceeded,
    UnsupportedAsset,
    Wallet,
    WalletError,
    site_of,
)
from channel_node.signing import keccak256
from channel_node.signing.eip712 import ZERO_ADDRESS
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, transfer_authorization_digest
from channel_node.types import UINT32_MAX, UINT256_MAX
from channel_node.wire.exact import SCHEME, exact_payment_signature

log = logging.getLogger("channel_node.client")

CHANNEL: Final = "channel"
EXACT: Final = SCHEME

# Gas figures of docs/gas.json (tests/client/test_exact_rule.py checks they are the same): one
# `transferWithAuthorization`, and a channel's life from the reader's side (open, cooperative close).
EXACT_GAS: Final = 65_141  # transfer_with_authorization
CHANNEL_GAS_TOKEN: Final = 100_263 + 54_579  # open_erc20_permit + close_cooperative
CHANNEL_GAS_ETH: Final = 50_054 + 54_579  # open_eth + close_cooperative

_DECIMAL = re.compile(r"[0-9]{1,78}")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_NAME_SELECTOR = bytes.fromhex("06fdde03")  # name()
_VERSION_SELECTOR = bytes.fromhex("54fd4d50")  # version()
_AUTHORIZATION_STATE = keccak256(b"authorizationState(address,bytes32)")[:4]
TRANSFER_TOPIC: Final = keccak256(b"Transfer(address,address,uint256)")
AUTHORIZATION_USED_TOPIC: Final = keccak256(b"AuthorizationUsed(address,bytes32)")


# ------------------------------------------------------------------ the choice rule (pure)


@dataclass(frozen=True)
class SchemeOptions:
    """What the choice between `channel` and `exact` is made from, for one 402 of one site.

    `channel` / `exact`: the 402 has an entry in that scheme this wallet could pay (its asset is the
    policy's); `open_channel`: the wallet has an open channel with the site; `visits`: `exact`
    payments this wallet already made to the site; `forced`: the reader's choice (Policy.scheme,
    `wallet get --scheme`)."""

    channel: bool
    exact: bool
    open_channel: bool = False
    visits: int = 0
    forced: str | None = None
    channel_gas: int = CHANNEL_GAS_TOKEN
    exact_gas: int = EXACT_GAS


def choose_scheme(options: SchemeOptions) -> str | None:
    """`"channel"`, `"exact"`, or None (nothing payable; for a forced scheme: not offered).

    1. A forced scheme is the one used, or none at all.
    2. A scheme offered alone is used.
    3. An open channel with the site always wins: its deposit is already locked and its vouchers
       cost no gas at all.
    4. Else `exact` (no deposit, no gas for the reader) until the gas the reader's payments at this
       site would have burnt as `exact` transfers, this one included, reaches a channel's life (open
       plus close): from then on a channel. The site pays each transfer's gas and prices it in;
       the reader pays the channel's; both at the same gas price, which cancels out. As in ski
       rental, the reader never spends more than twice the gas of the better choice made in
       hindsight. With docs/gas.json: the third payment opens a channel (token channel)."""
    offered = {CHANNEL: options.channel, EXACT: options.exact}
    if options.forced is not None:
        return options.forced if offered.get(options.forced) else None
    if not options.channel:
        return EXACT if options.exact else None
    if not options.exact or options.open_channel:
        return CHANNEL
    return CHANNEL if (options.visits + 1) * options.exact_gas >= options.channel_gas else EXACT


# ------------------------------------------------------------------ the offer (pure)


@dataclass(frozen=True)
class ExactOffer:
    """One `exact` entry of a 402, read. `accepted` is the entry as received (echoed verbatim)."""

    network: str
    chain_id: int
    amount: int
    asset: str  # checksum
    pay_to: str  # checksum
    max_timeout_seconds: int
    name: str
    version: str
    accepted: dict[str, Any]


def exact_entry(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The first `accepts` entry in the `exact` scheme of a PAYMENT-REQUIRED document."""
    accepts = document.get("accepts") if isinstance(document, Mapping) else None
    if not isinstance(accepts, list):
        return None
    return next((e for e in accepts if isinstance(e, dict) and e.get("scheme") == EXACT), None)


def parse_offer(offer: Mapping[str, Any], chain_id: int) -> ExactOffer:
    """The entry's shape and chain: OfferRejected naming the first field that is wrong."""
    if not isinstance(offer, Mapping) or offer.get("scheme") != EXACT:
        raise OfferRejected("offer is not an `exact` entry")
    network = f"eip155:{chain_id}"
    if offer.get("network") != network:
        raise OfferRejected(f"offer is for network {str(offer.get('network'))[:80]!r}; this wallet is on {network}")
    amount = offer.get("amount")
    if not isinstance(amount, str) or not _DECIMAL.fullmatch(amount) or not 0 < int(amount) <= UINT256_MAX:
        raise OfferRejected("offer: amount must be a decimal string between 1 and 2^256-1")
    for key in ("asset", "payTo"):
        value = offer.get(key)
        if not isinstance(value, str) or not is_address(value) or to_canonical_address(value) == ZERO_ADDRESS:
            raise OfferRejected(f"offer: {key} is not an address")
    timeout = offer.get("maxTimeoutSeconds")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= UINT32_MAX:
        raise OfferRejected("offer: maxTimeoutSeconds must be a positive integer")
    extra = offer.get("extra")
    name, version = (extra.get("name"), extra.get("version")) if isinstance(extra, Mapping) else (None, None)
    if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
        raise OfferRejected("offer: extra.name and extra.version (the token's EIP-712 domain) are required")
    return ExactOffer(
        network=network, chain_id=chain_id, amount=int(amount), asset=to_checksum_address(str(offer["asset"])),
        pay_to=to_checksum_address(str(offer["payTo"])), max_timeout_seconds=timeout, name=name, version=version,
        accepted=dict(offer),
    )  # fmt: skip


def check_offer(offer: ExactOffer, policy_asset: str | None, token: tuple[str, str], *, per_request_limit: int | None,
                exact_max_amount: int | None) -> None:  # fmt: skip
    """The policy's and the token's word on a parsed offer. `token` is the token's own (name(),
    version()): a site naming another domain would get a signature the token refuses, or one for
    another token. Raises UnsupportedAsset, OfferRejected or SpendingLimitExceeded."""
    if policy_asset is None or to_canonical_address(offer.asset) != to_canonical_address(policy_asset):
        paid_in = "native ETH" if policy_asset is None else f"token {policy_asset}"
        raise UnsupportedAsset(f"the `exact` offer asks for token {offer.asset}; this wallet's policy pays in {paid_in} "
                               "(Policy.asset / wallet --token)")  # fmt: skip
    if (offer.name, offer.version) != token:
        raise OfferRejected(
            f"the offer's EIP-712 domain ({offer.name[:40]!r}, {offer.version[:40]!r}) is not token {offer.asset}'s "
            f"own ({token[0][:40]!r}, {token[1][:40]!r})"
        )
    for limit, what in ((per_request_limit, "per-request limit"), (exact_max_amount, "per-payment cap for `exact`")):
        if limit is not None and offer.amount > limit:
            raise SpendingLimitExceeded(f"price {offer.amount} is above the {what} {limit}")


def valid_before(now: int, max_timeout_seconds: int, cap: int) -> int:
    """validBefore for an authorization made at `now` (wall clock, as the SDKs date it)."""
    return now + min(max_timeout_seconds, cap)


# ------------------------------------------------------------------ the receipt (pure)


@dataclass(frozen=True)
class Settlement:
    """A `PAYMENT-RESPONSE` of the `exact` scheme, read."""

    success: bool
    transaction: bytes | None
    network: str
    payer: str | None
    amount: int | None
    error_reason: str | None


def read_receipt(receipt: Any, *, network: str, payer: str, value: int) -> Settlement:
    """ValueError when the receipt is malformed or contradicts the authorization it answers: another
    network, payer or amount, or a success without a transaction."""
    if not isinstance(receipt, Mapping):
        raise ValueError("the receipt is not an object")
    success = receipt.get("success")
    if not isinstance(success, bool):
        raise ValueError("success is not a boolean")
    transaction = receipt.get("transaction")
    if not isinstance(transaction, str) or not (transaction == "" or _TX_HASH.fullmatch(transaction)):
        raise ValueError("transaction is not a transaction hash")
    if success and transaction == "":
        raise ValueError("a successful settlement names no transaction")
    if receipt.get("network") != network:
        raise ValueError(f"the receipt is for network {str(receipt.get('network'))[:80]!r}, not {network}")
    named = receipt.get("payer")
    if named is not None and (not isinstance(named, str) or not is_address(named)
                              or to_canonical_address(named) != to_canonical_address(payer)):  # fmt: skip
        raise ValueError("the receipt names another payer")
    amount = receipt.get("amount")
    if amount is not None and (not isinstance(amount, str) or not _DECIMAL.fullmatch(amount) or int(amount) != value):
        raise ValueError(f"the receipt's amount {str(amount)[:80]!r} is not the {value} authorized")
    reason = receipt.get("errorReason")
    return Settlement(
        success=success, transaction=bytes.fromhex(transaction[2:]) if transaction else None, network=network,
        payer=to_checksum_address(named) if isinstance(named, str) else None,
        amount=int(amount) if isinstance(amount, str) else None, error_reason=str(reason)[:200] if reason is not None else None,
    )  # fmt: skip


# ------------------------------------------------------------------ the payer (I/O)


@dataclass(frozen=True)
class ExactHeader:
    """A `PAYMENT-SIGNATURE` carrying one recorded authorization."""

    value: str
    nonce: bytes
    amount: int
    pay_to: str
    valid_before: int
    site: str | None

    def __str__(self) -> str:
        return self.value


class ExactPayer:
    """Signs, records and follows the `exact` payments of one Wallet (its key, store and policy).
    Get it with `exact_payer(wallet)`: one per wallet, so its caches and lock are shared."""

    def __init__(self, wallet: Wallet) -> None:
        self.wallet = wallet
        self._domains: dict[str, tuple[str, str]] = {}
        self._lock = asyncio.Lock()

    @property
    def store(self) -> WalletStore:
        return self.wallet.store

    async def token_domain(self, asset: str) -> tuple[str, str]:
        """The token's own EIP-712 (name(), version()), read once per token."""
        asset = to_checksum_address(asset)
        known = self._domains.get(asset)
        if known is not None:
            return known
        values = []
        for selector, what in ((_NAME_SELECTOR, "name()"), (_VERSION_SELECTOR, "version()")):
            try:
                raw = await self.wallet.w3.eth.call({"to": asset, "data": HexBytes(selector)})
                (text,) = decode(["string"], bytes(raw))
            except Exception as exc:
                raise OfferRejected(f"token {asset} does not answer {what} ({type(exc).__name__}); not signing for it") from None
            values.append(str(text))
        self._domains[asset] = domain = (values[0], values[1])
        return domain

    def visits(self, site: str | None) -> int:
        """`exact` payments this wallet made to `site` (any outcome but unused)."""
        if site is None:
            return 0
        return sum(1 for r in self.store.exact_payments(site=site) if r.status != EXACT_UNUSED)

    def has_open_channel(self, site: str | None) -> bool:
        if site is None:
            return False
        return any(self.store.channel_site(r.channel_id) == site for r in self.store.channels(OPEN))

    def _outstanding(self, token: str, now: int) -> int:
        """What authorizations not known to be settled may still pull from the balance."""
        return sum(r.value for r in self.store.exact_payments(EXACT_SIGNED, EXACT_REFUSED)
                   if r.token == token and r.valid_before > now)  # fmt: skip

    async def pay(self, offer: Mapping[str, Any], document: Mapping[str, Any] | None, url: str) -> ExactHeader:
        """A `PAYMENT-SIGNATURE` for the `exact` entry `offer` of the 402 `document` for `url`:
        checked, signed, recorded (and counted as spent) before it is returned."""
        wallet, policy = self.wallet, self.wallet.policy
        terms = parse_offer(offer, await wallet.chain_id())
        site = site_of(url) or None
        wallet._refuse_blocked(site, terms.pay_to)
        # The policy's own token is read, never one a site names: check_offer refuses any other asset first.
        token = await self.token_domain(policy.asset) if policy.asset is not None else ("", "")
        check_offer(terms, policy.asset, token, per_request_limit=policy.per_request_limit,
                    exact_max_amount=policy.exact_max_amount)  # fmt: skip
        balance = await Erc20Client(wallet.w3, terms.asset).balance_of(wallet.address)
        resource = document.get("resource") if isinstance(document, Mapping) else None
        async with self._lock:  # one payment at a time: the balance check sees every earlier authorization
            now = int(time.time())
            pending = self._outstanding(terms.asset, now)
            if balance - pending < terms.amount:
                raise InsufficientFunds(
                    f"paying {terms.amount} needs more of token {terms.asset} than this account holds "
                    f"({balance}, of which {pending} is authorized to other payments still valid)"
                )
            auth = TransferAuthorization(
                wallet.address, terms.pay_to, terms.amount, 0, valid_before(now, terms.max_timeout_seconds, policy.exact_max_validity),
                secrets.token_bytes(32),
            )  # fmt: skip
            domain = TokenDomain(terms.name, terms.version, terms.chain_id, terms.asset)
            signature = wallet._sender.sign_digest(transfer_authorization_digest(domain, auth))
            value = exact_payment_signature(terms.accepted, auth, signature, resource if isinstance(resource, Mapping) else None)
            record = ExactRecord(
                nonce=auth.nonce, chain_id=terms.chain_id, token=terms.asset, payer=wallet.address, pay_to=terms.pay_to,
                value=terms.amount, valid_before=auth.valid_before, site=site, url=url, day=wallet._day(), header=value,
            )  # fmt: skip
            try:
                self.store.record_exact(record, per_site_limit=policy.per_site_daily_limit, daily_limit=policy.daily_limit,
                                        month=wallet._month(), per_site_monthly_limit=policy.per_site_monthly_limit,
                                        monthly_limit=policy.monthly_limit)  # fmt: skip
            except ExactLimitExceeded as exc:
                raise SpendingLimitExceeded(str(exc)) from None
        log.info("signed an exact authorization of %d to %s for %s (valid %d s)", terms.amount, terms.pay_to, site or url,
                 auth.valid_before - now)  # fmt: skip
        return ExactHeader(value, auth.nonce, terms.amount, terms.pay_to, auth.valid_before, site)

    def _record(self, header: ExactHeader) -> ExactRecord:
        record = self.store.exact_payment(header.nonce)
        if record is None:
            raise WalletError(f"authorization 0x{header.nonce.hex()} is not in this wallet")
        return record

    def settle(self, header: ExactHeader, receipt: Any) -> int:
        """The site's `PAYMENT-RESPONSE` on a 2xx for `header`: returns what it cost (the value when
        the site says it settled, else 0; the authorization stays counted as spent either way until
        `reconcile`). A receipt that contradicts the authorization blocks the site (ServerMisbehaved).
        Settling the same authorization again changes nothing and counts nothing twice."""
        record = self._record(header)
        try:
            settled = read_receipt(receipt, network=f"eip155:{record.chain_id}", payer=record.payer, value=record.value)
        except ValueError as exc:  # whether it settled is unknown: the status stays, reconcile() decides
            self.store.update_exact(header.nonce, record.status, receipt=dict(receipt) if isinstance(receipt, Mapping) else None)
            raise self._misbehaved(record, f"malformed exact receipt: {exc}") from None
        if record.status in (EXACT_PAID, EXACT_CONFIRMED, EXACT_USED):
            return 0  # already counted (a replayed answer)
        status = EXACT_PAID if settled.success else EXACT_REFUSED
        self.store.update_exact(header.nonce, status, tx_hash=settled.transaction, receipt=dict(receipt))
        return record.value if settled.success else 0

    def refused(self, header: ExactHeader) -> None:
        """The site answered without settling (a 402 or another 4xx): the authorization may still be
        submitted until valid_before, so it stays spent; `reconcile` gives it back if it never is."""
        record = self._record(header)
        if record.status == EXACT_SIGNED:
            self.store.update_exact(header.nonce, EXACT_REFUSED)

    def _misbehaved(self, record: ExactRecord, problem: str) -> ServerMisbehaved:
        store = self.store
        store.block("receiver", record.pay_to, problem)
        if record.site:
            store.block("site", record.site, problem)
            store.block("link", f"{record.site} {record.pay_to}", problem)
        log.info("blocked receiver %s%s: %s", record.pay_to, f" and site {record.site}" if record.site else "", problem)
        return ServerMisbehaved(f"server for {record.site or record.pay_to}: {problem}")

    async def confirm(self, header: ExactHeader) -> bool:
        """Checks on chain that the receipt's transaction used this authorization and moved its
        value to `payTo` (AuthorizationUsed and Transfer logs of the token). True: `confirmed`.
        False: not mined (yet). A mined transaction without them blocks the site (it claimed a
        settlement that did not happen)."""
        record = self._record(header)
        if record.status == EXACT_CONFIRMED:
            return True
        if record.tx_hash is None:
            return False
        try:
            receipt = await self.wallet.w3.eth.get_transaction_receipt(HexBytes(record.tx_hash))
        except Exception:  # not found (yet), or an unreachable chain: nothing proven either way
            return False
        if _has_transfer(receipt, record):
            self.store.update_exact(record.nonce, EXACT_CONFIRMED)
            return True
        raise self._misbehaved(record, f"its receipt names transaction 0x{record.tx_hash.hex()}, which does not carry this payment")

    async def authorization_used(self, record: ExactRecord) -> bool:
        data = _AUTHORIZATION_STATE + b"\0" * 12 + to_canonical_address(record.payer) + record.nonce
        raw = await self.wallet.w3.eth.call({"to": record.token, "data": HexBytes(data)})
        return int.from_bytes(bytes(raw)[:32], "big") != 0

    async def reconcile(self) -> list[ExactRecord]:
        """Authorizations whose outcome is open (no receipt, refused, or paid but not confirmed) and
        whose valid_before has passed on chain: `authorizationState` says whether they were used
        (spent) or not (`unused`: their value is no longer counted as spent). Returns those decided."""
        open_rows = self.store.exact_payments(EXACT_SIGNED, EXACT_REFUSED, EXACT_PAID)
        if not open_rows:
            return []  # nothing to ask the chain
        head = await self.wallet.w3.eth.get_block("latest")
        now = int(head["timestamp"])
        decided = []
        for record in open_rows:
            if record.valid_before > now:
                continue  # the token accepts it until block.timestamp reaches valid_before
            used = await self.authorization_used(record)
            self.store.update_exact(record.nonce, EXACT_USED if used else EXACT_UNUSED, unspend=not used)
            if not used and record.status == EXACT_PAID:
                log.warning("site %s said it settled authorization %s, which expired unused", record.site, record.nonce_hex)
            done = self.store.exact_payment(record.nonce)
            assert done is not None  # the row just updated
            decided.append(done)
        return decided


def _has_transfer(receipt: Mapping[str, Any], record: ExactRecord) -> bool:
    if int(receipt.get("status", 0)) != 1:
        return False
    token = to_canonical_address(record.token)
    payer, pay_to = to_canonical_address(record.payer), to_canonical_address(record.pay_to)
    used = moved = False
    for entry in receipt.get("logs", []):
        if to_canonical_address(entry["address"]) != token:
            continue
        topics = [bytes(t) for t in entry["topics"]]
        data = bytes(entry["data"])
        if len(topics) == 3 and topics[0] == AUTHORIZATION_USED_TOPIC:
            used = used or (topics[1][12:] == payer and topics[2] == record.nonce)
        elif len(topics) == 3 and topics[0] == TRANSFER_TOPIC and len(data) == 32:
            moved = moved or (topics[1][12:] == payer and topics[2][12:] == pay_to and int.from_bytes(data, "big") == record.value)
    return used and moved


_PAYERS: weakref.WeakKeyDictionary[Wallet, ExactPayer] = weakref.WeakKeyDictionary()


def exact_payer(wallet: Wallet) -> ExactPayer:
    """The wallet's ExactPayer (one per wallet)."""
    payer = _PAYERS.get(wallet)
    if payer is None:
        payer = _PAYERS[wallet] = ExactPayer(wallet)
    return payer


def scheme_options(wallet: Wallet, document: Mapping[str, Any] | None, url: str, channel_entry: Mapping[str, Any] | None,
                   forced: str | None = None) -> SchemeOptions:  # fmt: skip
    """The choice rule's inputs for one 402, from the wallet's store and policy."""
    payer = exact_payer(wallet)
    site = site_of(url) or None
    asset = to_canonical_address(wallet.policy.asset or ZERO_ADDRESS)

    def payable(entry: Mapping[str, Any] | None) -> bool:
        named = entry.get("asset") if entry is not None else None
        return isinstance(named, str) and is_address(named) and to_canonical_address(named) == asset

    exact = exact_entry(document)
    return SchemeOptions(
        channel=payable(channel_entry), exact=payable(exact) and wallet.policy.asset is not None,
        open_channel=payer.has_open_channel(site), visits=payer.visits(site),
        forced=forced if forced is not None else wallet.policy.scheme,
        channel_gas=CHANNEL_GAS_ETH if wallet.policy.asset is None else CHANNEL_GAS_TOKEN,
    )  # fmt: skip


__all__ = [
    "AUTHORIZATION_USED_TOPIC",
    "CHANNEL",
    "CHANNEL_GAS_ETH",
    "CHANNEL_GAS_TOKEN",
    "EXACT",
    "EXACT_GAS",
    "TRANSFER_TOPIC",
    "ExactHeader",
    "ExactOffer",
    "ExactPayer",
    "SchemeOptions",
    "Settlement",
    "check_offer",
    "choose_scheme",
    "exact_entry",
    "exact_payer",
    "parse_offer",
    "read_receipt",
    "scheme_options",
    "valid_before",
]
