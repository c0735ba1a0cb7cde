"""x402's `exact` scheme on EVM in the envelope (docs/protocol.md, "The `exact` scheme (wire)"):
its `accepts` entry (an EIP-3009 token, the price, the payee and the token's EIP-712 name and
version), its `PAYMENT-SIGNATURE` payload (a signed `TransferWithAuthorization`, with the chosen
entry echoed in `accepted` and the `resource` copied from the 402) and its `PAYMENT-RESPONSE`
(the field names of the official SDKs). The node writes the offer and receipt and reads the
payload; the wallet does the reverse. Pure: no I/O, no clock; the rules (price, window, nonce,
balance) belong to the node's core, not to parsing.

Numbers are read as decimal strings or, as the scheme's spec also allows, 0x-hex; they are always
written as decimal (the SDKs' facilitator reads them with `int(value)`). Addresses are read in any
case and written EIP-55; compare them as 20-byte values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, NotRequired, TypedDict

from eth_utils.address import to_checksum_address
from pydantic import Field

from channel_node.signing.eip712 import AddressLike
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, transfer_authorization_digest
from channel_node.types import UINT32_MAX, UINT256_MAX, check_uint
from channel_node.wire.envelope import (
    SIGNATURE_HEADER,
    X402_VERSION,
    Address,
    Bytes32,
    WireModel,
    encode_header,
    hex_bytes,
    read_payment_header,
    string_then,
    validate_payment,
)

SCHEME: Final = "exact"

_UINT = re.compile(r"[0-9]{1,78}|0x[0-9a-fA-F]{1,64}")
_DECIMAL = re.compile(r"[0-9]{1,78}")
_NETWORK = re.compile(r"eip155:([1-9][0-9]{0,77})")


def _uint256(value: str) -> int:
    if not _UINT.fullmatch(value):
        raise ValueError("must be a decimal string of digits or 0x-hex")
    number = int(value, 0) if value.startswith("0x") else int(value)
    if number > UINT256_MAX:
        raise ValueError(f"must not exceed {UINT256_MAX}")
    return number


def _decimal_uint256(value: str) -> int:
    if not _DECIMAL.fullmatch(value):
        raise ValueError("must be a decimal string of digits")
    number = int(value)
    if number > UINT256_MAX:
        raise ValueError(f"must not exceed {UINT256_MAX}")
    return number


def _network(value: str) -> str:
    match = _NETWORK.fullmatch(value)
    if match is None or int(match.group(1)) > UINT256_MAX:
        raise ValueError("must be eip155:<chain id>")
    return value


#: An authorization's number: decimal or 0x-hex, up to uint256.
Uint256 = Annotated[int, string_then(_uint256)]
#: An offer's `amount`: decimal only (both SDKs compare it as a string), up to uint256.
DecimalUint256 = Annotated[int, string_then(_decimal_uint256)]
#: `eip155:<chain id>`, the only network family of this scheme here.
Network = Annotated[str, string_then(_network)]
#: An EIP-3009 signature: 65 bytes r || s || v (the token takes v, r, s; no EIP-2098 form).
AuthorizationSignature = Annotated[bytes, hex_bytes(65)]


def chain_id_of(network: str) -> int:
    """The chain id of an `eip155:<id>` network (ValueError otherwise)."""
    return int(_network(network).split(":", 1)[1])


# -- PAYMENT-REQUIRED: the `exact` offer -----------------------------------------------------------


class ExactExtra(TypedDict):
    """The token's EIP-712 domain name and version: the clients sign with them (the TS SDK refuses
    an entry without them; the Python SDK guesses), so the node always sends both."""

    name: str
    version: str


class ExactAccepts(TypedDict):
    """One `accepts` entry in the `exact` scheme. All fields required: the Python SDK refuses a
    whole 402 if any entry lacks one of the first six."""

    scheme: Literal["exact"]
    network: str  # "eip155:<chainId>"
    amount: str  # decimal, the token's smallest unit
    asset: str  # EIP-55 address of the EIP-3009 token
    payTo: str  # EIP-55
    maxTimeoutSeconds: int  # how long an authorization may be valid (validBefore - now)
    extra: ExactExtra


def exact_accepts(
    network: str, asset: AddressLike, pay_to: AddressLike, amount: int, max_timeout_seconds: int, name: str, version: str
) -> ExactAccepts:
    """The offer entry as the node writes it (EIP-55 addresses, decimal amount)."""
    chain_id_of(network)
    check_uint(amount, "amount", UINT256_MAX)
    if check_uint(max_timeout_seconds, "max_timeout_seconds", UINT32_MAX) == 0:
        raise ValueError("max_timeout_seconds must be positive")
    return {
        "scheme": SCHEME,
        "network": network,
        "amount": str(amount),
        "asset": to_checksum_address(asset),
        "payTo": to_checksum_address(pay_to),
        "maxTimeoutSeconds": max_timeout_seconds,
        "extra": {"name": name, "version": version},
    }


# -- PAYMENT-SIGNATURE: the authorization ----------------------------------------------------------


class ExactExtraModel(WireModel):
    name: str
    version: str


class ExactRequirementModel(WireModel):
    """The echoed `accepted` entry, as read (the offer's six fields and `extra`, all required)."""

    scheme: Literal["exact"]
    network: Network
    amount: DecimalUint256
    asset: Address
    payTo: Address
    maxTimeoutSeconds: int = Field(gt=0, le=UINT32_MAX, strict=True)
    extra: ExactExtraModel


class AuthorizationModel(WireModel):
    from_: Address = Field(alias="from")
    to: Address
    value: Uint256
    validAfter: Uint256
    validBefore: Uint256
    nonce: Bytes32


class ExactPayload(WireModel):
    authorization: AuthorizationModel
    signature: AuthorizationSignature


class ResourceModel(WireModel):
    """The `resource` the client copied from the 402 (kept; the node decides by the request URL)."""

    url: str
    description: str = ""
    mimeType: str = ""


class ExactPaymentSignature(WireModel):
    x402Version: Literal[2]
    accepted: ExactRequirementModel
    payload: ExactPayload
    resource: ResourceModel | None = None


@dataclass(frozen=True)
class ExactRequirement:
    """The `accepted` entry the payer says it took up, parsed (what it claims, not yet checked
    against the node's own offer)."""

    network: str
    chain_id: int
    amount: int
    asset: bytes
    pay_to: bytes
    max_timeout_seconds: int
    name: str
    version: str


@dataclass(frozen=True)
class ExactPayment:
    """A well-formed `exact` `PAYMENT-SIGNATURE` (not yet verified: the signature, the price, the
    window, the nonce and the balance are the node's rules)."""

    authorization: TransferAuthorization
    signature: bytes  # 65 bytes r || s || v
    accepted: ExactRequirement
    resource: ResourceModel | None

    scheme: ClassVar[Literal["exact"]] = "exact"

    @property
    def payer(self) -> bytes:
        return self.authorization.from_

    def digest(self, domain: TokenDomain) -> bytes:
        """The digest the token will check, in `domain`: the node's own domain (its token, chain,
        name and version), never one built from the payer's `accepted`."""
        return transfer_authorization_digest(domain, self.authorization)


def parse_exact_document(document: Any) -> ExactPayment:
    """A decoded `PAYMENT-SIGNATURE` document in the `exact` scheme, or
    ProtocolError("malformed_payment", 400) naming the first bad field."""
    model = validate_payment(ExactPaymentSignature, document)
    a, accepted = model.payload.authorization, model.accepted
    return ExactPayment(
        authorization=TransferAuthorization(a.from_, a.to, a.value, a.validAfter, a.validBefore, a.nonce),
        signature=model.payload.signature,
        accepted=ExactRequirement(
            network=accepted.network,
            chain_id=chain_id_of(accepted.network),
            amount=accepted.amount,
            asset=accepted.asset,
            pay_to=accepted.payTo,
            max_timeout_seconds=accepted.maxTimeoutSeconds,
            name=accepted.extra.name,
            version=accepted.extra.version,
        ),
        resource=model.resource,
    )


def parse_exact(header: str) -> ExactPayment:
    """Decodes an `exact` header or raises ProtocolError("malformed_payment", 400). The scheme
    dispatch (and `unsupported_scheme`) is `wire/payment.py`'s `parse_payment`."""
    return parse_exact_document(read_payment_header(header, SIGNATURE_HEADER))


# `payload.authorization` as written: EIP-55 addresses, decimal numbers, 0x-hex nonce ("from" is a
# keyword, so the functional form).
AuthorizationJson = TypedDict(
    "AuthorizationJson",
    {"from": str, "to": str, "value": str, "validAfter": str, "validBefore": str, "nonce": str},
)


def authorization_json(auth: TransferAuthorization) -> AuthorizationJson:
    return {
        "from": to_checksum_address(auth.from_),
        "to": to_checksum_address(auth.to),
        "value": str(auth.value),
        "validAfter": str(auth.valid_after),
        "validBefore": str(auth.valid_before),
        "nonce": "0x" + auth.nonce.hex(),
    }


def exact_payment_signature(
    accepted: Mapping[str, Any], auth: TransferAuthorization, signature: bytes, resource: Mapping[str, Any] | None = None
) -> str:
    """A `PAYMENT-SIGNATURE` header value (the payer's side): `accepted` is the offer entry echoed
    verbatim, as the SDK servers compare its strings; `resource` is the 402's, copied."""
    if len(signature) != 65:
        raise ValueError("an authorization signature is 65 bytes")
    document: dict[str, Any] = {
        "x402Version": X402_VERSION,
        "payload": {"authorization": authorization_json(auth), "signature": "0x" + signature.hex()},
        "accepted": dict(accepted),
    }
    if resource is not None:
        document["resource"] = dict(resource)
    return encode_header(document)


# -- PAYMENT-RESPONSE: the settlement receipt ------------------------------------------------------


class ExactReceipt(TypedDict):
    """The receipt, with the SDKs' `SettleResponse` names (`success`, `transaction`, `network`
    required there; `payer`, `amount`, `errorReason` optional). `transaction` is "" when none was
    mined; `scheme` and `x402Version` are ours (clients ignore unknown fields)."""

    x402Version: Literal[2]
    scheme: Literal["exact"]
    success: bool
    transaction: str
    network: str
    payer: str
    amount: str
    errorReason: NotRequired[str]


def exact_receipt(
    success: bool, transaction: bytes | None, network: str, payer: AddressLike, amount: int, error_reason: str | None = None
) -> ExactReceipt:
    if transaction is not None and len(transaction) != 32:
        raise ValueError("a transaction hash is 32 bytes")
    receipt: ExactReceipt = {
        "x402Version": X402_VERSION,
        "scheme": SCHEME,
        "success": success,
        "transaction": "" if transaction is None else "0x" + transaction.hex(),
        "network": network,
        "payer": to_checksum_address(payer),
        "amount": str(check_uint(amount, "amount", UINT256_MAX)),
    }
    if error_reason is not None:
        receipt["errorReason"] = error_reason
    return receipt


__all__ = [
    "SCHEME",
    "AuthorizationJson",
    "AuthorizationModel",
    "AuthorizationSignature",
    "DecimalUint256",
    "ExactAccepts",
    "ExactExtra",
    "ExactPayload",
    "ExactPayment",
    "ExactPaymentSignature",
    "ExactReceipt",
    "ExactRequirement",
    "ExactRequirementModel",
    "Network",
    "ResourceModel",
    "Uint256",
    "authorization_json",
    "chain_id_of",
    "exact_accepts",
    "exact_payment_signature",
    "exact_receipt",
    "parse_exact",
    "parse_exact_document",
]
