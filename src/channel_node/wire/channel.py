"""The `channel` scheme's fields in the x402 envelope (docs/protocol.md sections 1, 2 and 4):
its `PAYMENT-SIGNATURE` payload (a voucher, with the channel's configuration on first use), its
`accepts` entry with the node's channel terms in `extra`, and its receipt. The node parses the
payload and writes the offer and receipt; the wallet writes the payload and reads the offer and
receipt: both take the field names and encodings from here. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, NotRequired, Required, TypedDict

from eth_utils.address import to_checksum_address
from pydantic import Field, ValidationError

from channel_node.amounts import Asset, Display
from channel_node.core.spending import parse_period
from channel_node.signing import ChannelConfig
from channel_node.signing.eip712 import ZERO_ADDRESS
from channel_node.types import UINT96_MAX, UINT128_MAX
from channel_node.wire.envelope import (
    SIGNATURE_HEADER,
    X402_VERSION,
    AcceptedRequirement,
    Address,
    Bytes32,
    PaymentId,
    Signature,
    WireModel,
    decimal_or_none,
    decimal_uint,
    encode_header,
    hex_or_none,
    payment_id_or_none,
    read_payment_header,
    string_then,
    validate_payment,
)

SCHEME: Final = "channel"

Amount = Annotated[int, decimal_uint(UINT128_MAX)]
Salt = Annotated[int, decimal_uint(UINT96_MAX)]

# Caps and passes (docs/protocol.md, "Caps and passes"): the field names the node writes and the
# wallet and the browser script read, in one place.
PASS_FIELD: Final = "pass"  # the voucher payload's pass to buy; the receipt's pass bought or covering
CAP_FIELD: Final = "cap"  # the offer's extra.cap and the receipt's cap
PASSES_FIELD: Final = "passes"  # the offer's extra.passes
CHARGE_FIELD: Final = "charge"  # the offer's extra.charge: what the read costs the channel now (may be "0")
_SPEND_NAME = re.compile(r"[a-z0-9-]{1,32}")


def _spend_name(value: str) -> str:
    if not _SPEND_NAME.fullmatch(value):
        raise ValueError("must be 1-32 characters of a-z 0-9 -")
    return value


SpendName = Annotated[str, string_then(_spend_name)]


# -- PAYMENT-SIGNATURE: the voucher --------------------------------------------------------------


class ChannelConfigModel(WireModel):
    payer: Address
    signer: Address
    receiver: Address
    token: Address
    closeDelay: int = Field(ge=0, lt=1 << 32, strict=True)
    salt: Salt
    receiverAuthorizer: Address | None = None  # absent: the zero address (the receiver acts alone)


class VoucherPayload(WireModel):
    channelId: Bytes32
    maxClaimableAmount: Amount
    signature: Signature
    paymentId: PaymentId | None = None
    channel: ChannelConfigModel | None = None
    pass_: SpendName | None = Field(None, alias=PASS_FIELD)  # buy this pass with the voucher


class PaymentSignature(WireModel):
    x402Version: Literal[2]
    accepted: AcceptedRequirement
    payload: VoucherPayload


@dataclass(frozen=True)
class Voucher:
    """A parsed, well-formed `PAYMENT-SIGNATURE` (not yet verified)."""

    channel_id: bytes
    amount: int
    signature: bytes
    payment_id: str | None
    config: ChannelConfig | None
    scheme: str
    network: str
    asset: bytes | None
    pay_to: bytes | None
    contract: str | None
    pass_name: str | None = None  # the pass the voucher buys (docs/protocol.md, "Caps and passes")


def parse_payment_signature(header: str) -> Voucher:
    """Decodes the header or raises ProtocolError("malformed_payment") saying what is wrong. It reads
    any header as a voucher; `wire/payment.py`'s `parse_payment` dispatches on the scheme first."""
    return parse_voucher_document(read_payment_header(header, SIGNATURE_HEADER))


def parse_voucher_document(document: Any) -> Voucher:
    """A decoded `PAYMENT-SIGNATURE` document as a voucher, or ProtocolError("malformed_payment")."""
    fast = fast_voucher(document)
    if fast is not None:
        return fast
    model = validate_payment(PaymentSignature, document)
    p = model.payload
    config = None
    if p.channel is not None:
        c = p.channel
        config = ChannelConfig(
            payer=c.payer, signer=c.signer, receiver=c.receiver, token=c.token, close_delay=c.closeDelay, salt=c.salt,
            receiver_authorizer=c.receiverAuthorizer or ZERO_ADDRESS,
        )  # fmt: skip
    extra = model.accepted.extra or {}
    contract = extra.get("contract")
    return Voucher(
        channel_id=p.channelId,
        amount=p.maxClaimableAmount,
        signature=p.signature,
        payment_id=p.paymentId,
        config=config,
        scheme=model.accepted.scheme,
        network=model.accepted.network,
        asset=model.accepted.asset,
        pay_to=model.accepted.payTo,
        contract=contract if isinstance(contract, str) else None,
        pass_name=p.pass_,
    )


# The fields `fast_voucher` knows, per object; a document with any other field goes to pydantic, so
# a field added to the models above is never silently dropped (tests/wire/test_fast_parse.py checks
# these against the models).
FAST_TOP_FIELDS = frozenset({"x402Version", "accepted", "payload"})
FAST_ACCEPTED_FIELDS = frozenset({"scheme", "network", "asset", "payTo", "extra"})
FAST_PAYLOAD_FIELDS = frozenset({"channelId", "maxClaimableAmount", "signature", "paymentId"})


def fast_voucher(document: Any) -> Voucher | None:
    """The voucher `PaymentSignature` would parse `document` to, read by hand for the usual shape (a
    voucher on a known channel: no `channel` configuration, no field beyond the known ones), or
    None for anything else, which pydantic then decides and words. It accepts only what the models
    accept and reads it to the same values (docs/performance.md, "The hand-read voucher")."""
    if type(document) is not dict or not FAST_TOP_FIELDS.issuperset(document):
        return None
    version, accepted, payload = document.get("x402Version"), document.get("accepted"), document.get("payload")
    if type(version) is not int or version != X402_VERSION or type(accepted) is not dict or type(payload) is not dict:
        return None
    if not FAST_ACCEPTED_FIELDS.issuperset(accepted) or not FAST_PAYLOAD_FIELDS.issuperset(payload):
        return None
    scheme, network, extra = accepted.get("scheme"), accepted.get("network"), accepted.get("extra")
    if type(scheme) is not str or type(network) is not str or (extra is not None and type(extra) is not dict):
        return None
    asset = accepted.get("asset")
    if asset is not None and (asset := hex_or_none(asset, (20,))) is None:
        return None
    pay_to = accepted.get("payTo")
    if pay_to is not None and (pay_to := hex_or_none(pay_to, (20,))) is None:
        return None
    channel = hex_or_none(payload.get("channelId"), (32,))
    amount = decimal_or_none(payload.get("maxClaimableAmount"), UINT128_MAX)
    signature = hex_or_none(payload.get("signature"), (64, 65))
    if channel is None or amount is None or signature is None:
        return None
    payment_id = payload.get("paymentId")
    if payment_id is not None and payment_id_or_none(payment_id) is None:
        return None
    contract = extra.get("contract") if extra else None
    return Voucher(
        channel_id=channel, amount=amount, signature=signature, payment_id=payment_id, config=None, scheme=scheme,
        network=network, asset=asset, pay_to=pay_to, contract=contract if isinstance(contract, str) else None,
    )  # fmt: skip


class ChannelConfigJson(TypedDict):
    """A channel's configuration as the wire (and the admin API) spells it."""

    payer: str
    signer: str
    receiver: str
    token: str
    closeDelay: int
    salt: str
    receiverAuthorizer: str


@lru_cache(maxsize=65536)
def checksum(address: bytes) -> str:
    """The EIP-55 spelling of a 20-byte address (cached: the node spells the same payers often)."""
    return to_checksum_address(address)


def config_json(config: ChannelConfig) -> ChannelConfigJson:
    return {
        "payer": checksum(config.payer),
        "signer": checksum(config.signer),
        "receiver": checksum(config.receiver),
        "token": checksum(config.token),
        "closeDelay": config.close_delay,
        "salt": str(config.salt),
        "receiverAuthorizer": checksum(config.receiver_authorizer),
    }


def payment_signature(
    network: str,
    contract: str,
    channel: bytes,
    amount: int,
    signature: bytes,
    payment_id: str | None = None,
    config: ChannelConfig | None = None,
    pass_name: str | None = None,
) -> str:
    """Builds a `PAYMENT-SIGNATURE` header value (the reader's side of the protocol); `pass_name`
    buys that pass with the voucher."""
    payload: dict[str, Any] = {
        "channelId": "0x" + channel.hex(),
        "maxClaimableAmount": str(amount),
        "signature": "0x" + signature.hex(),
    }
    if payment_id is not None:
        payload["paymentId"] = payment_id
    if config is not None:
        payload["channel"] = config_json(config)
    if pass_name is not None:
        payload[PASS_FIELD] = pass_name
    accepted = {
        "scheme": SCHEME,
        "network": network,
        "asset": to_checksum_address(config.token) if config else None,
        "payTo": to_checksum_address(config.receiver) if config else None,
        "extra": {"contract": contract},
    }
    return encode_header({"x402Version": X402_VERSION, "accepted": {k: v for k, v in accepted.items() if v}, "payload": payload})


# -- PAYMENT-REQUIRED: the channel offer -----------------------------------------------------------
# The documents as the node writes them. A wallet reads them from an untrusted server, so it checks
# every field it uses (client/wallet.py, `_parse_offer` and `settle_receipt`) rather than trusting
# these types.


class ChannelSummary(TypedDict):
    """`extra.channel` of a corrective 402: what a wallet needs to resync (the channel's figures
    and the last voucher the node holds)."""

    channelId: str
    deposited: str
    claimed: str
    charged: str
    maxClaimableAmount: str
    signature: str | None
    closeDeadline: int | None
    settled: bool


class CloseDelayBounds(TypedDict):
    min: int
    max: int


class DisplayExtra(TypedDict):
    """`extra.display`: the node's display form for its asset (docs/protocol.md, "Display forms"),
    for pages and wallets to show `$0.02` or `2¢`: the sign before the number, the threshold in base
    units under which cents are shown (absent: never), the asset's decimals it assumes, and the
    fewest fraction digits shown. For people only: amounts stay base units."""

    symbol: str
    centsBelow: NotRequired[str]
    decimals: int
    shown: int


class CapTerms(TypedDict):
    """`extra.cap`: the cap of the resource's group. `periodEndsAt` for calendar periods only;
    `paid` and `resetsAt` when the request carried a voucher the node could check (the channel's
    standing). Amounts are decimal strings of base units."""

    name: str
    cap: str
    period: str  # "day" | "week" | "month" | "<N>d"
    periodEndsAt: NotRequired[int]
    paid: NotRequired[str]
    resetsAt: NotRequired[int]


class PassTerms(TypedDict):
    """One of `extra.passes`: a pass that covers the resource, for sale."""

    name: str
    price: str
    duration: int  # seconds
    description: str


class ChannelExtra(TypedDict, total=False):
    """An offer's `extra`: the node's channel terms, and whether the price buys the resource once;
    `cap` and `passes` when caps or passes bear on the resource; `charge` when the node checked the
    request's voucher and knows what the read costs that channel."""

    contract: Required[str]
    minDeposit: Required[str]
    closeDelay: Required[CloseDelayBounds]
    receiverAuthorizer: Required[str]
    once: Required[bool]
    channel: ChannelSummary
    cap: CapTerms
    passes: list[PassTerms]
    display: DisplayExtra
    charge: str  # what the read costs the channel whose voucher was checked (amount is then that, or the list price for 0)


def display_extra(asset: Asset) -> DisplayExtra | None:
    """The offer's `extra.display` for `asset`'s display form; None when it has none."""
    form = asset.display
    if form is None:
        return None
    document: DisplayExtra = {"symbol": form.symbol, "decimals": asset.decimals, "shown": form.shown}
    if form.cents_below is not None:
        document["centsBelow"] = str(form.cents_below)
    return document


def read_display(extra: Any, asset: Asset) -> Asset:
    """`asset` with the display form an offer's `extra` names, when it is well formed and made for
    `asset`'s decimals; else `asset` unchanged. A site's form is text for people, so a wallet that
    shows it shows the exact amount beside it (docs/protocol.md, "Display forms")."""
    document = extra.get("display") if isinstance(extra, dict) else None
    decimals = document.get("decimals") if isinstance(document, dict) else None
    if not isinstance(document, dict) or isinstance(decimals, bool) or decimals != asset.decimals:
        return asset
    cents = document.get("centsBelow")
    try:
        below = None if cents is None else int(cents) if isinstance(cents, str) and cents.isdigit() and len(cents) <= 78 else -1
        shown = document.get("shown", 2)
        if below == -1 or isinstance(shown, bool) or not isinstance(shown, int):
            return asset
        return Asset(asset.symbol, asset.decimals, asset.address, Display(document.get("symbol"), below, shown))  # type: ignore[arg-type]
    except ValueError:
        return asset


class ChannelAccepts(TypedDict):
    """One `accepts` entry of a `PAYMENT-REQUIRED` in the `channel` scheme."""

    scheme: Literal["channel"]
    network: str  # "eip155:<chainId>"
    amount: str
    asset: str  # checksum address, the zero address for native ETH
    payTo: str
    maxTimeoutSeconds: int
    extra: ChannelExtra


# -- PAYMENT-RESPONSE: the channel receipt ---------------------------------------------------------


class LastVoucher(TypedDict):
    maxClaimableAmount: str
    signature: str


class CapStanding(TypedDict):
    """The receipt's `cap`: the channel against its cap after this request."""

    name: str
    cap: str
    paid: str
    resetsAt: int


class PassStanding(TypedDict):
    """The receipt's `pass`: the pass this request bought or that covered it, valid until `until`."""

    name: str
    until: int


ChannelReceipt = TypedDict(
    "ChannelReceipt",
    {
        "x402Version": Literal[2],
        "success": bool,
        "scheme": Literal["channel"],
        "network": str,
        "payer": str,
        "channelId": str,
        "chargedAmount": str,
        "chargedTotal": str,
        "maxClaimableAmount": str,
        "deposited": str,
        "remaining": str,
        "paymentId": str | None,
        "lastVoucher": NotRequired[LastVoucher],
        "cap": NotRequired[CapStanding],
        "pass": NotRequired[PassStanding],
    },
)
"""The receipt of a paid answer. `chargedAmount`: what this request cost (under a cap or a pass,
less than the price the voucher was signed for). `lastVoucher`: the node's best voucher, when the
request's was below it, so the wallet can check it is its own and catch up. `cap`, `pass`: the
channel's standing (docs/protocol.md, "Caps and passes"); `pass` is a keyword in Python, hence the
functional form."""


# -- Reading caps and passes (the wallet's side) ---------------------------------------------------
# What a wallet reads from an untrusted node, checked field by field (docs/protocol.md, "Caps and
# passes"); a malformed field is a ValueError naming it, never a figure taken on trust.

_Time = Annotated[int, Field(ge=0, lt=1 << 40, strict=True)]


def _period_text(value: str) -> str:
    parse_period(value)  # the node's own grammar (ValueError names it): one definition of a period
    return value


class _CapModel(WireModel):
    name: SpendName
    cap: Amount
    period: Annotated[str, string_then(_period_text)] | None = None  # the receipt's cap has none
    periodEndsAt: _Time | None = None
    paid: Amount | None = None
    resetsAt: _Time | None = None


class _PassModel(WireModel):
    name: SpendName
    price: Amount
    duration: int = Field(gt=0, lt=1 << 40, strict=True)
    description: str = Field("", max_length=200)


class _ChargeModel(WireModel):
    charge: Amount


class _HeldModel(WireModel):
    name: SpendName
    until: _Time


@dataclass(frozen=True)
class CapView:
    """A cap as an offer or a receipt states it: `paid` and `resets_at` when the node gave the
    channel's standing (a receipt; a corrective 402), `period` and `period_ends_at` in an offer."""

    name: str
    cap: int
    period: str | None
    period_ends_at: int | None
    paid: int | None
    resets_at: int | None


@dataclass(frozen=True)
class PassView:
    """A pass on sale (an offer's `passes`), or held (a receipt's `pass`: `until`, no price)."""

    name: str
    price: int | None = None
    duration: int | None = None
    description: str = ""
    until: int | None = None


def _model(model: type[Any], value: object, where: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{where}.{field}: {first['msg']}" if field else f"{where}: {first['msg']}") from None


def _cap_view(value: object, where: str) -> CapView:
    c = _model(_CapModel, value, where)
    return CapView(c.name, c.cap, c.period, c.periodEndsAt, c.paid, c.resetsAt)


def read_offer_spending(extra: Mapping[str, Any]) -> tuple[CapView | None, tuple[PassView, ...], int | None]:
    """An offer's `extra.cap`, `extra.passes` and `extra.charge` (what the read costs the channel,
    when the node checked its voucher), checked; absent fields are None or empty."""
    cap = _cap_view(extra[CAP_FIELD], f"extra.{CAP_FIELD}") if extra.get(CAP_FIELD) is not None else None
    raw = extra.get(PASSES_FIELD) or []
    if not isinstance(raw, list) or len(raw) > 32:
        raise ValueError(f"extra.{PASSES_FIELD}: must be a list of at most 32 passes")
    passes = []
    for n, item in enumerate(raw):
        p = _model(_PassModel, item, f"extra.{PASSES_FIELD}[{n}]")
        passes.append(PassView(p.name, p.price, p.duration, p.description))
    charge = None
    if extra.get(CHARGE_FIELD) is not None:
        charge = _model(_ChargeModel, {"charge": extra[CHARGE_FIELD]}, "extra").charge
    return cap, tuple(passes), charge


def read_receipt_spending(receipt: Mapping[str, Any]) -> tuple[CapView | None, PassView | None]:
    """A receipt's `cap` (the channel's standing after the request) and `pass` (bought or covering), checked."""
    cap = _cap_view(receipt[CAP_FIELD], CAP_FIELD) if receipt.get(CAP_FIELD) is not None else None
    held = None
    if receipt.get(PASS_FIELD) is not None:
        h = _model(_HeldModel, receipt[PASS_FIELD], PASS_FIELD)
        held = PassView(h.name, until=h.until)
    return cap, held


__all__ = [
    "CAP_FIELD",
    "CHARGE_FIELD",
    "PASSES_FIELD",
    "PASS_FIELD",
    "SCHEME",
    "Amount",
    "CapStanding",
    "CapView",
    "CapTerms",
    "ChannelAccepts",
    "ChannelConfigJson",
    "ChannelConfigModel",
    "ChannelExtra",
    "ChannelReceipt",
    "ChannelSummary",
    "CloseDelayBounds",
    "DisplayExtra",
    "LastVoucher",
    "PassStanding",
    "PassTerms",
    "PassView",
    "SpendName",
    "PaymentSignature",
    "Salt",
    "Voucher",
    "VoucherPayload",
    "checksum",
    "config_json",
    "display_extra",
    "fast_voucher",
    "parse_payment_signature",
    "parse_voucher_document",
    "payment_signature",
    "read_offer_spending",
    "read_receipt_spending",
    "read_display",
]
