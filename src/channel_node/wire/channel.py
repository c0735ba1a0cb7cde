"""The `channel` scheme's fields in the x402 envelope (docs/protocol.md sections 1, 2 and 4):
its `PAYMENT-SIGNATURE` payload (a voucher, with the channel's configuration on first use), its
`accepts` entry with the node's channel terms in `extra`, and its receipt. The node parses the
payload and writes the offer and receipt; the wallet writes the payload and reads the offer and
receipt: both take the field names and encodings from here. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

from eth_utils.address import to_checksum_address
from pydantic import Field

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
    validate_payment,
)

SCHEME: Final = "channel"

Amount = Annotated[int, decimal_uint(UINT128_MAX)]
Salt = Annotated[int, decimal_uint(UINT96_MAX)]


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
) -> str:
    """Builds a `PAYMENT-SIGNATURE` header value (the reader's side of the protocol)."""
    payload: dict[str, Any] = {
        "channelId": "0x" + channel.hex(),
        "maxClaimableAmount": str(amount),
        "signature": "0x" + signature.hex(),
    }
    if payment_id is not None:
        payload["paymentId"] = payment_id
    if config is not None:
        payload["channel"] = config_json(config)
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


class ChannelExtra(TypedDict):
    """An offer's `extra`: the node's channel terms, and whether the price buys the resource once."""

    contract: str
    minDeposit: str
    closeDelay: CloseDelayBounds
    receiverAuthorizer: str
    once: bool
    channel: NotRequired[ChannelSummary]


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


class ChannelReceipt(TypedDict):
    """The receipt of a paid answer. `lastVoucher`: the node's best voucher, when the request's was
    below it, so the wallet can check it is its own and catch up."""

    x402Version: Literal[2]
    success: bool
    scheme: Literal["channel"]
    network: str
    payer: str
    channelId: str
    chargedAmount: str
    chargedTotal: str
    maxClaimableAmount: str
    deposited: str
    remaining: str
    paymentId: str | None
    lastVoucher: NotRequired[LastVoucher]


__all__ = [
    "SCHEME",
    "Amount",
    "ChannelAccepts",
    "ChannelConfigJson",
    "ChannelConfigModel",
    "ChannelExtra",
    "ChannelReceipt",
    "ChannelSummary",
    "CloseDelayBounds",
    "LastVoucher",
    "PaymentSignature",
    "Salt",
    "Voucher",
    "VoucherPayload",
    "checksum",
    "config_json",
    "fast_voucher",
    "parse_payment_signature",
    "parse_voucher_document",
    "payment_signature",
]
