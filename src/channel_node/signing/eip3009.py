"""EIP-3009 transfer authorizations (what x402's `exact` scheme signs, docs/protocol.md "The
`exact` scheme (wire)"): the token's EIP-712 domain, the three typed messages, signing and
recovery. Pure: the digests are byte for byte what `contracts/dev/DemoDollar.sol` (and USDC)
compute; tests compare them with eth_account's `encode_typed_data` and with the contract.

Recovery applies the contract's rules through `eip712.recover_signer`: 65 bytes only here (the
token takes r, s, v), v 27 or 28, low s, a signature that recovers to no key is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from channel_node.signing.eip712 import (
    DOMAIN_TYPEHASH,
    AddressLike,
    InvalidSignature,
    _address_word,
    _canonical,
    _word,
    keccak256,
    recover_signer,
    sign_digest,
)
from channel_node.types import UINT256_MAX, check_uint

TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
    b"ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
CANCEL_AUTHORIZATION_TYPEHASH = keccak256(b"CancelAuthorization(address authorizer,bytes32 nonce)")


@dataclass(frozen=True)
class TokenDomain:
    """The EIP-712 domain of an EIP-3009 token: x402's `extra.name` / `extra.version`, the chain id
    of `network`, and the token (`asset`) as verifying contract."""

    name: str
    version: str
    chain_id: int
    verifying_contract: bytes
    separator: bytes = field(init=False, repr=False, compare=False)

    def __init__(self, name: str, version: str, chain_id: int, verifying_contract: AddressLike):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "chain_id", check_uint(chain_id, "chain_id"))
        object.__setattr__(self, "verifying_contract", _canonical(verifying_contract))
        separator = keccak256(
            DOMAIN_TYPEHASH
            + keccak256(name.encode())
            + keccak256(version.encode())
            + _word(chain_id)
            + _address_word(self.verifying_contract)
        )
        object.__setattr__(self, "separator", separator)

    def hash_typed_data(self, struct_hash: bytes) -> bytes:
        return keccak256(b"\x19\x01" + self.separator + struct_hash)


@dataclass(frozen=True)
class TransferAuthorization:
    """One authorization's fields. Addresses are 20 canonical bytes, numbers ints within uint256,
    `nonce` 32 bytes (random per authorizer, not a counter)."""

    from_: bytes
    to: bytes
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def __init__(self, from_: AddressLike, to: AddressLike, value: int, valid_after: int, valid_before: int, nonce: bytes):
        if not isinstance(nonce, bytes) or len(nonce) != 32:
            raise ValueError("nonce must be 32 bytes")
        object.__setattr__(self, "from_", _canonical(from_))
        object.__setattr__(self, "to", _canonical(to))
        object.__setattr__(self, "value", check_uint(value, "value", UINT256_MAX))
        object.__setattr__(self, "valid_after", check_uint(valid_after, "valid_after", UINT256_MAX))
        object.__setattr__(self, "valid_before", check_uint(valid_before, "valid_before", UINT256_MAX))
        object.__setattr__(self, "nonce", nonce)

    def _struct_hash(self, typehash: bytes) -> bytes:
        return keccak256(
            typehash
            + _address_word(self.from_)
            + _address_word(self.to)
            + _word(self.value)
            + _word(self.valid_after)
            + _word(self.valid_before)
            + self.nonce
        )


def transfer_authorization_digest(domain: TokenDomain, auth: TransferAuthorization) -> bytes:
    """The digest `transferWithAuthorization` checks (the one x402 `exact` clients sign)."""
    return domain.hash_typed_data(auth._struct_hash(TRANSFER_WITH_AUTHORIZATION_TYPEHASH))


def receive_authorization_digest(domain: TokenDomain, auth: TransferAuthorization) -> bytes:
    """The digest `receiveWithAuthorization` checks (only `to` may submit it)."""
    return domain.hash_typed_data(auth._struct_hash(RECEIVE_WITH_AUTHORIZATION_TYPEHASH))


def cancel_authorization_digest(domain: TokenDomain, authorizer: AddressLike, nonce: bytes) -> bytes:
    """The digest `cancelAuthorization` checks: the authorizer burns `nonce` unused."""
    if not isinstance(nonce, bytes) or len(nonce) != 32:
        raise ValueError("nonce must be 32 bytes")
    return domain.hash_typed_data(keccak256(CANCEL_AUTHORIZATION_TYPEHASH + _address_word(_canonical(authorizer)) + nonce))


def sign_authorization(private_key: bytes, domain: TokenDomain, auth: TransferAuthorization) -> bytes:
    """A `TransferWithAuthorization` signature: 65 bytes r || s || v, v 27 or 28, low s."""
    return sign_digest(private_key, transfer_authorization_digest(domain, auth))


def recover_authorizer(digest: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed `digest`, with the token's rules; InvalidSignature
    (`invalid_signature`) for anything but 65 bytes with v 27/28 and low s that recovers to a key."""
    if len(signature) != 65:
        raise InvalidSignature(f"an authorization signature is 65 bytes, got {len(signature)}")
    if signature[64] not in (27, 28):
        raise InvalidSignature("v must be 27 or 28")
    return recover_signer(digest, signature)


__all__ = [
    "CANCEL_AUTHORIZATION_TYPEHASH",
    "RECEIVE_WITH_AUTHORIZATION_TYPEHASH",
    "TRANSFER_WITH_AUTHORIZATION_TYPEHASH",
    "TokenDomain",
    "TransferAuthorization",
    "cancel_authorization_digest",
    "receive_authorization_digest",
    "recover_authorizer",
    "sign_authorization",
    "transfer_authorization_digest",
]
