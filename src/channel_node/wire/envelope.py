"""The scheme-independent part of the x402 v2 HTTP transport (docs/design.md, "The HTTP
transport"; the fields in docs/protocol.md sections 1, 2 and 4): three headers carrying base64 of
JSON, `PAYMENT-REQUIRED` (the offer, with a 402), `PAYMENT-SIGNATURE` (the payment, with the
retried request) and `PAYMENT-RESPONSE` (the receipt, with the paid answer). Amounts are decimal
strings in the token's smallest unit. Everything here is pure: no I/O. The scheme's own fields live
in a module per scheme (`wire/channel.py`)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypedDict, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, GetPydanticSchema, ValidationError
from pydantic_core import core_schema

from channel_node.errors import Refusal

X402_VERSION: Literal[2] = 2
REQUIRED_HEADER = "PAYMENT-REQUIRED"
SIGNATURE_HEADER = "PAYMENT-SIGNATURE"
RESPONSE_HEADER = "PAYMENT-RESPONSE"
MAX_HEADER_BYTES = 4096  # a voucher with its channel configuration is well under 1 KiB

#: The stable code of a `PAYMENT-SIGNATURE` that is not a well-formed payment (HTTP 400).
MALFORMED_PAYMENT = "malformed_payment"
#: The stable code of a well-formed envelope in a scheme this side does not take (HTTP 402: the
#: 402's `accepts` lists the schemes that are offered).
UNSUPPORTED_SCHEME = "unsupported_scheme"

_HEX = re.compile(r"0x[0-9a-fA-F]*")
_DECIMAL = re.compile(r"[0-9]{1,39}")
_PAYMENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# To find where a JSON number of 19 or more digits may start (json reads it as an exact int, orjson
# maybe not): digits become "d", what may precede a number (`:`, `[`, `,`, whitespace) "p", the rest
# "x" but "-"; then two substring searches (a regex scan costs several times more).
_NUMBER_SHAPE = bytes(
    ord("d") if chr(b).isdigit() and b < 128 else ord("p") if chr(b) in ":[, \t\n\r" else b if b == ord("-") else ord("x")
    for b in range(256)
)
_LONG_DIGITS = b"d" * 19


def _long_number(raw: bytes) -> bool:
    shape = b"p" + raw.translate(_NUMBER_SHAPE)  # "p" first: a document may start with its number
    return b"p" + _LONG_DIGITS in shape or b"p-" + _LONG_DIGITS in shape


class ProtocolError(Refusal):
    """A request the paywall refuses before it reaches the channel rules. `code` is stable."""

    def __init__(self, code: str, detail: str, status: int = 402) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


# -- field types: what a header's JSON strings must spell, and what they parse to ---------------


def string_then(check: Callable[[str], object]) -> GetPydanticSchema:
    """A JSON string checked and converted by `check`: the field's type is what `check` returns,
    the input must be a string (pydantic's own "Input should be a valid string" otherwise)."""
    return GetPydanticSchema(lambda _type, _handler: core_schema.no_info_after_validator_function(check, core_schema.str_schema()))


def hex_or_none(value: object, lengths: tuple[int, ...]) -> bytes | None:
    """The bytes `hex_bytes(*lengths)` parses `value` to, or None wherever it would refuse it (the
    fast path of docs/performance.md, "The hand-read voucher": None sends the document to pydantic)."""
    # ASCII letters and digits only, so `fromhex` (which skips whitespace) sees no whitespace.
    if type(value) is not str or not (value.startswith("0x") and value.isascii() and value[2:].isalnum()):
        return None
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:  # a letter beyond f, or an odd length
        return None
    return raw if len(raw) in lengths else None


def decimal_or_none(value: object, maximum: int) -> int | None:
    """The integer `decimal_uint(maximum)` parses `value` to, or None wherever it would refuse it."""
    if type(value) is not str or not (len(value) <= 39 and value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= maximum else None


def payment_id_or_none(value: object) -> str | None:
    """`value` when it is a payment id `PaymentId` accepts, else None."""
    return value if type(value) is str and _PAYMENT_ID.fullmatch(value) else None


def hex_bytes(*lengths: int) -> GetPydanticSchema:
    """A `0x`-prefixed hex string of one of `lengths` bytes, parsed to those bytes."""

    def check(value: str) -> bytes:
        if not _HEX.fullmatch(value):
            raise ValueError("must be 0x-prefixed hex")
        raw = bytes.fromhex(value[2:]) if len(value) % 2 == 0 else None
        if raw is None or len(raw) not in lengths:
            raise ValueError(f"must be {' or '.join(map(str, lengths))} bytes of hex")
        return raw

    return string_then(check)


def decimal_uint(maximum: int) -> GetPydanticSchema:
    """A decimal string of digits (the wire's amounts: no float, no sign, no exponent) up to
    `maximum`, parsed to an int."""

    def check(value: str) -> int:
        if not _DECIMAL.fullmatch(value):
            raise ValueError("must be a decimal string of digits")
        number = int(value)
        if number > maximum:
            raise ValueError(f"must not exceed {maximum}")
        return number

    return string_then(check)


def _payment_id(value: str) -> str:
    if not _PAYMENT_ID.fullmatch(value):
        raise ValueError("must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    return value


Address = Annotated[bytes, hex_bytes(20)]
Bytes32 = Annotated[bytes, hex_bytes(32)]
Signature = Annotated[bytes, hex_bytes(64, 65)]
PaymentId = Annotated[str, string_then(_payment_id)]


class WireModel(BaseModel):
    """A header document as read: unknown fields ignored (x402 lets each side add its own), frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _SchemeOnly(WireModel):
    scheme: str


class PaymentEnvelope(WireModel):
    """What every scheme's `PAYMENT-SIGNATURE` shares, read before its scheme's own fields: the
    version, `accepted.scheme` (which module reads the rest) and a `payload` object."""

    x402Version: Literal[2]
    accepted: _SchemeOnly
    payload: dict[str, Any]


class AcceptedRequirement(WireModel):
    """The `accepted` object of a payment: the offer entry the payer took up (its terms only)."""

    scheme: str
    network: str
    asset: Address | None = None
    payTo: Address | None = None
    extra: dict[str, Any] | None = None


# -- the documents as written ----------------------------------------------------------------


class ResourceInfo(TypedDict):
    url: str
    description: str
    mimeType: str


class PaymentRequired(TypedDict):
    """The `PAYMENT-REQUIRED` document: why payment is asked, for what, and the offers (`accepts`,
    one entry per scheme; each scheme's module types its entry)."""

    x402Version: Literal[2]
    error: str
    message: str
    resource: ResourceInfo
    accepts: list[Any]


def payment_required(error: str, message: str, resource: ResourceInfo, accepts: list[Any]) -> PaymentRequired:
    return {"x402Version": X402_VERSION, "error": error, "message": message, "resource": resource, "accepts": accepts}


M = TypeVar("M", bound=WireModel)


# -- the encoding ----------------------------------------------------------------------------


def encode_header(document: object) -> str:
    """Base64 of compact JSON. The documents hold amounts as strings, so orjson's 64-bit integer
    limit never applies; it is several times faster than json here."""
    return base64.b64encode(orjson.dumps(document)).decode()


def decode_header(value: str) -> Any:
    """The inverse of `encode_header`, unbounded and raising what base64 and json raise
    (`ValueError`, `binascii.Error`, `UnicodeDecodeError`, `RecursionError`): for a reader of a
    header that then checks the document's shape itself, and for tests."""
    return json.loads(base64.b64decode(value))


def read_payment_header(header: str, name: str = SIGNATURE_HEADER) -> Any:
    """A payment header's JSON, bounded: longer than `MAX_HEADER_BYTES`, not base64 or not JSON is
    ProtocolError(MALFORMED_PAYMENT, status 400) saying which."""
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError(MALFORMED_PAYMENT, f"{name} is longer than {MAX_HEADER_BYTES} bytes", 400)
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(MALFORMED_PAYMENT, f"{name} is not base64", 400) from None
    if not _long_number(raw):
        # orjson reads what it reads as json does, several times faster; what it refuses (UTF-16,
        # NaN, lone surrogates...) gets json's own verdict, as does any number that might be an
        # integer beyond 64 bits (orjson would read it as a float).
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError(MALFORMED_PAYMENT, f"{name} is not JSON", 400) from None


def validate_payment(model: type[M], document: Any) -> M:
    """`document` as `model`, or ProtocolError(MALFORMED_PAYMENT, 400) naming the first bad field."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProtocolError(MALFORMED_PAYMENT, f"{where}: {first['msg']}", 400) from None


def payment_scheme(document: Any) -> str:
    """The scheme of a decoded `PAYMENT-SIGNATURE` document, read before anything scheme-specific
    (so a payment in another scheme is never judged by the wrong scheme's fields); a document that
    is not even an envelope is ProtocolError(MALFORMED_PAYMENT, 400)."""
    # The usual envelope, checked by hand: exactly what PaymentEnvelope accepts (anything else,
    # pydantic decides and words the refusal).
    if type(document) is dict and type(document.get("payload")) is dict and _is_version(document.get("x402Version")):
        accepted = document.get("accepted")
        if type(accepted) is dict and type(scheme := accepted.get("scheme")) is str:
            return scheme
    return validate_payment(PaymentEnvelope, document).accepted.scheme


def _is_version(value: object) -> bool:
    return type(value) is int and value == X402_VERSION


__all__ = [
    "MALFORMED_PAYMENT",
    "MAX_HEADER_BYTES",
    "REQUIRED_HEADER",
    "RESPONSE_HEADER",
    "SIGNATURE_HEADER",
    "UNSUPPORTED_SCHEME",
    "X402_VERSION",
    "AcceptedRequirement",
    "Address",
    "Bytes32",
    "PaymentEnvelope",
    "PaymentId",
    "PaymentRequired",
    "ProtocolError",
    "ResourceInfo",
    "Signature",
    "WireModel",
    "decimal_or_none",
    "decimal_uint",
    "decode_header",
    "encode_header",
    "hex_bytes",
    "hex_or_none",
    "payment_id_or_none",
    "payment_required",
    "payment_scheme",
    "read_payment_header",
    "string_then",
    "validate_payment",
]
