"""EIP-712 domain, channel id, voucher digests; signing and recovery with coincurve.

The fast path for a paid request is `voucher_digest` (two keccaks over a precomputed domain
separator) followed by `recover_signer` (one libsecp256k1 recovery). Everything here must produce
exactly the bytes `ChannelDeposit.sol` computes; tests compare the two on a live chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import coincurve

try:  # safe-pysha3 is several times faster than the pycryptodome backend eth-hash prefers
    from sha3 import keccak_256 as _keccak_256

    def keccak256(data: bytes) -> bytes:
        digest: bytes = _keccak_256(data).digest()  # pysha3 ships no types
        return digest

except ImportError:  # pragma: no cover - exercised only where safe-pysha3 is missing
    from eth_hash.auto import keccak as keccak256  # type: ignore[assignment]  # a callable object with keccak256's signature, not a def

from eth_utils.address import to_canonical_address, to_checksum_address

from channel_node.errors import Refusal
from channel_node.types import UINT32_MAX, UINT96_MAX, UINT128_MAX

AddressLike = str | bytes

ZERO_ADDRESS = b"\0" * 20

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2

DOMAIN_NAME = "ChannelDeposit"
DOMAIN_VERSION = "1"

DOMAIN_TYPEHASH = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
CHANNEL_TYPEHASH = keccak256(
    b"Channel(address payer,address signer,address receiver,address token,uint32 closeDelay,uint96 salt,"
    b"address receiverAuthorizer)"
)
VOUCHER_TYPEHASH = keccak256(b"Voucher(bytes32 channelId,uint128 maxClaimableAmount)")
COOPERATIVE_CLOSE_TYPEHASH = keccak256(b"CooperativeClose(bytes32 channelId,uint128 claimAmount)")



class InvalidSignature(Refusal, ValueError):
    """The signature is malformed, high-s, or does not recover to a key. Its `code` is the core's
    `Reject.INVALID_SIGNATURE` (docs/design.md, "Errors")."""

    code = "invalid_signature"


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: bytes) -> bytes:
    return b"\0" * 12 + address


def _canonical(address: AddressLike) -> bytes:
    return to_canonical_address(address)


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain of one deployed ChannelDeposit: binds signatures to a chain and contract."""

    chain_id: int
    verifying_contract: bytes
    separator: bytes = field(init=False, repr=False, compare=False)
    _digest_prefix: bytes = field(init=False, repr=False, compare=False)

    def __init__(self, chain_id: int, verifying_contract: AddressLike):
        object.__setattr__(self, "chain_id", chain_id)
        object.__setattr__(self, "verifying_contract", _canonical(verifying_contract))
        separator = keccak256(
            DOMAIN_TYPEHASH
            + keccak256(DOMAIN_NAME.encode())
            + keccak256(DOMAIN_VERSION.encode())
            + _word(chain_id)
            + _address_word(self.verifying_contract)
        )
        object.__setattr__(self, "separator", separator)
        object.__setattr__(self, "_digest_prefix", b"\x19\x01" + separator)

    def hash_typed_data(self, struct_hash: bytes) -> bytes:
        return keccak256(self._digest_prefix + struct_hash)


@dataclass(frozen=True)
class ChannelConfig:
    """Everything that identifies a channel. Addresses are stored as 20 canonical bytes."""

    payer: bytes
    signer: bytes
    receiver: bytes
    token: bytes  # 20 zero bytes for native ETH
    close_delay: int
    salt: int
    # A hot key that may claim, close and consent to cooperative closes for the receiver, so the
    # receiver's own key can stay cold (docs/contract.md); 20 zero bytes: the receiver acts alone.
    receiver_authorizer: bytes = ZERO_ADDRESS

    @classmethod
    def create(
        cls,
        payer: AddressLike,
        signer: AddressLike,
        receiver: AddressLike,
        token: AddressLike | None,
        close_delay: int,
        salt: int,
        receiver_authorizer: AddressLike | None = None,
    ) -> ChannelConfig:
        if not 0 <= close_delay <= UINT32_MAX:
            raise ValueError(f"close_delay must fit uint32, got {close_delay}")
        if not 0 <= salt <= UINT96_MAX:
            raise ValueError(f"salt must fit uint96, got {salt}")
        return cls(
            payer=_canonical(payer),
            signer=_canonical(signer),
            receiver=_canonical(receiver),
            token=ZERO_ADDRESS if token is None else _canonical(token),
            close_delay=close_delay,
            salt=salt,
            receiver_authorizer=ZERO_ADDRESS if receiver_authorizer is None else _canonical(receiver_authorizer),
        )

    @property
    def has_authorizer(self) -> bool:
        return self.receiver_authorizer != ZERO_ADDRESS

    def may_act_for_receiver(self, address: bytes) -> bool:
        """Whether the contract accepts `address` (20 bytes) as the receiver side of this channel:
        for claims and receiver closes as the caller, for a cooperative close as caller or signer."""
        return address == self.receiver or (self.has_authorizer and address == self.receiver_authorizer)

    @property
    def is_eth(self) -> bool:
        return self.token == ZERO_ADDRESS

    def struct_hash(self) -> bytes:
        return keccak256(
            CHANNEL_TYPEHASH
            + _address_word(self.payer)
            + _address_word(self.signer)
            + _address_word(self.receiver)
            + _address_word(self.token)
            + _word(self.close_delay)
            + _word(self.salt)
            + _address_word(self.receiver_authorizer)
        )

    def as_abi_tuple(self) -> tuple[str, str, str, str, int, int, str]:
        """The `ChannelConfig` tuple as web3 expects it for contract calls."""
        return (
            to_checksum_address(self.payer),
            to_checksum_address(self.signer),
            to_checksum_address(self.receiver),
            to_checksum_address(self.token),
            self.close_delay,
            self.salt,
            to_checksum_address(self.receiver_authorizer),
        )


def channel_id(domain: Domain, config: ChannelConfig) -> bytes:
    return domain.hash_typed_data(config.struct_hash())


def _check_amount(amount: int) -> None:
    if not 0 <= amount <= UINT128_MAX:
        raise ValueError(f"amount must fit uint128, got {amount}")


def voucher_digest(domain: Domain, channel: bytes, max_claimable_amount: int) -> bytes:
    _check_amount(max_claimable_amount)
    return domain.hash_typed_data(keccak256(VOUCHER_TYPEHASH + channel + _word(max_claimable_amount)))


def cooperative_close_digest(domain: Domain, channel: bytes, claim_amount: int) -> bytes:
    _check_amount(claim_amount)
    return domain.hash_typed_data(keccak256(COOPERATIVE_CLOSE_TYPEHASH + channel + _word(claim_amount)))


def address_of_key(private_key: bytes) -> bytes:
    public = coincurve.PrivateKey(private_key).public_key.format(compressed=False)
    return keccak256(public[1:])[-20:]


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """65-byte r || s || v (v = 27 or 28). libsecp256k1 always produces low-s."""
    raw = coincurve.PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return raw[:64] + bytes([raw[64] + 27])


def _split(signature: bytes) -> tuple[bytes, int, int]:
    """Returns (r||s, s, recovery id) from a 65-byte or EIP-2098 64-byte signature."""
    if len(signature) == 65:
        v = signature[64]
        recovery_id = v - 27 if v >= 27 else v
        rs = signature[:64]
    elif len(signature) == 64:
        vs = int.from_bytes(signature[32:], "big")
        recovery_id = vs >> 255
        rs = signature[:32] + _word(vs & ((1 << 255) - 1))
    else:
        raise InvalidSignature(f"signature must be 64 or 65 bytes, got {len(signature)}")
    if recovery_id not in (0, 1):
        raise InvalidSignature("invalid recovery id")
    r = int.from_bytes(rs[:32], "big")
    s = int.from_bytes(rs[32:], "big")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_HALF_N):
        raise InvalidSignature("r or s out of range (high-s signatures are rejected)")
    return rs, s, recovery_id


def recover_signer(digest: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed `digest`, with the contract's rules: low-s only, no address(0)."""
    rs, _, recovery_id = _split(signature)
    try:
        public = coincurve.PublicKey.from_signature_and_message(rs + bytes([recovery_id]), digest, hasher=None)
    except Exception as exc:  # coincurve raises ValueError or its own error types
        raise InvalidSignature("signature does not recover to a public key") from exc
    return keccak256(public.format(compressed=False)[1:])[-20:]


def to_compact(signature: bytes) -> tuple[bytes, bytes]:
    """EIP-2098 (r, vs) for the contract's voucher arguments."""
    rs, s, recovery_id = _split(signature)
    return rs[:32], _word(s | (recovery_id << 255))
