"""The x402-v2-shaped HTTP transport (docs/design.md, "The HTTP transport"): parse `PAYMENT-SIGNATURE`, build
`PAYMENT-REQUIRED` and `PAYMENT-RESPONSE`. Headers carry base64 of JSON; amounts are decimal
strings in the token's smallest unit. Everything here is pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from eth_utils import to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from channel_node.core import ChannelState
from channel_node.errors import Refusal
from channel_node.signing import ChannelConfig
from channel_node.signing.eip712 import ZERO_ADDRESS
from channel_node.types import UINT96_MAX, UINT128_MAX

X402_VERSION = 2
SCHEME = "channel"
REQUIRED_HEADER = "PAYMENT-REQUIRED"
SIGNATURE_HEADER = "PAYMENT-SIGNATURE"
RESPONSE_HEADER = "PAYMENT-RESPONSE"
MAX_HEADER_BYTES = 4096  # a voucher with its channel configuration is well under 1 KiB

_HEX = re.compile(r"0x[0-9a-fA-F]*")
_DECIMAL = re.compile(r"[0-9]{1,39}")
_PAYMENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class ProtocolError(Refusal):
    """A request the paywall refuses before it reaches the channel rules. `code` is stable."""

    def __init__(self, code: str, detail: str, status: int = 402) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


def _hex_bytes(length: tuple[int, ...]):
    def check(value: str) -> bytes:
        if not _HEX.fullmatch(value):
            raise ValueError("must be 0x-prefixed hex")
        raw = bytes.fromhex(value[2:]) if len(value) % 2 == 0 else None
        if raw is None or len(raw) not in length:
            raise ValueError(f"must be {' or '.join(map(str, length))} bytes of hex")
        return raw

    return AfterValidator(check)


def _uint(maximum: int):
    def check(value: str) -> int:
        if not _DECIMAL.fullmatch(value):
            raise ValueError("must be a decimal string of digits")
        number = int(value)
        if number > maximum:
            raise ValueError(f"must not exceed {maximum}")
        return number

    return AfterValidator(check)


def _payment_id(value: str) -> str:
    if not _PAYMENT_ID.fullmatch(value):
        raise ValueError("must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    return value


Address = Annotated[str, _hex_bytes((20,))]
Bytes32 = Annotated[str, _hex_bytes((32,))]
Signature = Annotated[str, _hex_bytes((64, 65))]
Amount = Annotated[str, _uint(UINT128_MAX)]
Salt = Annotated[str, _uint(UINT96_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChannelConfigModel(_Strict):
    payer: Address
    signer: Address
    receiver: Address
    token: Address
    closeDelay: int = Field(ge=0, lt=1 << 32, strict=True)
    salt: Salt
    receiverAuthorizer: Address | None = None  # absent: the zero address (the receiver acts alone)


class VoucherPayload(_Strict):
    channelId: Bytes32
    maxClaimableAmount: Amount
    signature: Signature
    paymentId: Annotated[str, AfterValidator(_payment_id)] | None = None
    channel: ChannelConfigModel | None = None


class AcceptedRequirement(_Strict):
    scheme: str
    network: str
    asset: Address | None = None
    payTo: Address | None = None
    extra: dict[str, Any] | None = None


class PaymentSignature(_Strict):
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
    """Decodes the header or raises ProtocolError("malformed_payment") saying what is wrong."""
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError("malformed_payment", f"{SIGNATURE_HEADER} is longer than {MAX_HEADER_BYTES} bytes", 400)
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("malformed_payment", f"{SIGNATURE_HEADER} is not base64", 400) from None
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("malformed_payment", f"{SIGNATURE_HEADER} is not JSON", 400) from None
    try:
        model = PaymentSignature.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProtocolError("malformed_payment", f"{where}: {first['msg']}", 400) from None
    p = model.payload
    config = None
    if p.channel is not None:
        c = p.channel
        config = ChannelConfig(
            payer=c.payer, signer=c.signer, receiver=c.receiver, token=c.token, close_delay=c.closeDelay, salt=c.salt,
            receiver_authorizer=c.receiverAuthorizer or ZERO_ADDRESS,
        )
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


def encode_header(document: dict) -> str:
    """Base64 of compact JSON. The documents hold amounts as strings, so orjson's 64-bit integer
    limit never applies; it is several times faster than json here."""
    return base64.b64encode(orjson.dumps(document)).decode()


def decode_header(value: str) -> dict:
    """The inverse of `encode_header`, for clients and tests."""
    return json.loads(base64.b64decode(value))


def channel_summary(state: ChannelState) -> dict:
    """What a client needs to resync: the channel's figures and the last voucher the node holds."""
    return {
        "channelId": "0x" + state.channel_id.hex(),
        "deposited": str(state.deposited),
        "claimed": str(state.claimed),
        "charged": str(state.charged),
        "maxClaimableAmount": str(state.ceiling),
        "signature": "0x" + state.signature.hex() if state.signature else None,
        "closeDeadline": state.close_deadline,
        "settled": state.settled,
    }


@dataclass(frozen=True)
class Offer:
    """The node's fixed terms, rendered into every 402."""

    network: str  # "eip155:<chainId>"
    asset: str  # checksum address, zero address for native ETH
    pay_to: str
    contract: str
    min_deposit: int
    close_delay_min: int
    close_delay_max: int
    max_timeout_seconds: int = 60
    # The address channels must name as receiverAuthorizer for this node to settle them: its claim
    # key, when that is not the receiver itself (docs/protocol.md); the zero address otherwise.
    receiver_authorizer: str = "0x" + "00" * 20


def payment_required(
    offer: Offer,
    url: str,
    price: int,
    description: str,
    mime_type: str,
    once: bool,
    error: str,
    message: str,
    state: ChannelState | None = None,
) -> dict:
    extra: dict[str, Any] = {
        "contract": offer.contract,
        "minDeposit": str(offer.min_deposit),
        "closeDelay": {"min": offer.close_delay_min, "max": offer.close_delay_max},
        "receiverAuthorizer": offer.receiver_authorizer,
        "once": once,
    }
    if state is not None:
        extra["channel"] = channel_summary(state)
    return {
        "x402Version": X402_VERSION,
        "error": error,
        "message": message,
        "resource": {"url": url, "description": description, "mimeType": mime_type},
        "accepts": [
            {
                "scheme": SCHEME,
                "network": offer.network,
                "amount": str(price),
                "asset": offer.asset,
                "payTo": offer.pay_to,
                "maxTimeoutSeconds": offer.max_timeout_seconds,
                "extra": extra,
            }
        ],
    }


@lru_cache(maxsize=65536)
def _checksum(address: bytes) -> str:
    return to_checksum_address(address)


def payment_response(
    offer: Offer, state: ChannelState, charged: int, payment_id: str | None, voucher_amount: int | None = None
) -> dict:
    """The receipt. When the request's voucher is below the node's best one (a wallet that lost
    track, say, after restoring a backup), it also carries that best voucher so the wallet can
    check it is its own and catch up, instead of taking the figures on trust."""
    receipt = {
        "x402Version": X402_VERSION,
        "success": True,
        "scheme": SCHEME,
        "network": offer.network,
        "payer": _checksum(state.config.payer),
        "channelId": "0x" + state.channel_id.hex(),
        "chargedAmount": str(charged),
        "chargedTotal": str(state.charged),
        "maxClaimableAmount": str(state.ceiling),
        "deposited": str(state.deposited),
        "remaining": str(state.deposited - state.charged),
        "paymentId": payment_id,
    }
    if voucher_amount is not None and voucher_amount < state.ceiling and state.signature:
        receipt["lastVoucher"] = {"maxClaimableAmount": str(state.ceiling), "signature": "0x" + state.signature.hex()}
    return receipt


def config_json(config: ChannelConfig) -> dict:
    """A channel's configuration as the wire (and the admin API) spells it."""
    return {
        "payer": _checksum(config.payer),
        "signer": _checksum(config.signer),
        "receiver": _checksum(config.receiver),
        "token": _checksum(config.token),
        "closeDelay": config.close_delay,
        "salt": str(config.salt),
        "receiverAuthorizer": _checksum(config.receiver_authorizer),
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
