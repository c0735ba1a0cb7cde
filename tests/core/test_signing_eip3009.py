"""signing/eip3009.py against eth_account's independent EIP-712 encoder: the domain separator and
the three digests for generated domains and authorizations, signing, and recovery's rules."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.signing import InvalidSignature, address_of_key
from channel_node.signing.eip712 import SECP256K1_N
from channel_node.signing.eip3009 import (
    TokenDomain,
    TransferAuthorization,
    cancel_authorization_digest,
    receive_authorization_digest,
    recover_authorizer,
    sign_authorization,
    transfer_authorization_digest,
)

U256 = st.integers(0, 2**256 - 1)
ADDRESS = st.binary(min_size=20, max_size=20)
KEY = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
DOMAIN_FIELDS = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                 {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}]  # fmt: skip
AUTH_FIELDS = [{"name": n, "type": t} for t, n in (f.split() for f in (
    "address from", "address to", "uint256 value", "uint256 validAfter", "uint256 validBefore", "bytes32 nonce"))]  # fmt: skip

domains = st.builds(TokenDomain, st.text(max_size=20), st.text(max_size=8), U256, ADDRESS)
auths = st.builds(TransferAuthorization, ADDRESS, ADDRESS, U256, U256, U256, st.binary(min_size=32, max_size=32))


def reference(domain: TokenDomain, primary: str, message: dict):
    fields = [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}] if primary == "CancelAuthorization" else AUTH_FIELDS
    return encode_typed_data(full_message={
        "types": {"EIP712Domain": DOMAIN_FIELDS, primary: fields},
        "primaryType": primary,
        "domain": {"name": domain.name, "version": domain.version, "chainId": domain.chain_id,
                   "verifyingContract": to_checksum_address(domain.verifying_contract)},
        "message": message,
    })  # fmt: skip


def message(auth: TransferAuthorization) -> dict:
    return {"from": to_checksum_address(auth.from_), "to": to_checksum_address(auth.to), "value": auth.value,
            "validAfter": auth.valid_after, "validBefore": auth.valid_before, "nonce": auth.nonce}  # fmt: skip


def digest_of(signable) -> bytes:
    from channel_node.signing import keccak256

    return keccak256(b"\x19" + signable.version + signable.header + signable.body)


@settings(max_examples=100, deadline=None)
@given(domains, auths)
def test_digests_equal_eth_accounts_encoding(domain, auth):
    transfer = reference(domain, "TransferWithAuthorization", message(auth))
    assert domain.separator == transfer.header
    assert transfer_authorization_digest(domain, auth) == digest_of(transfer)
    assert receive_authorization_digest(domain, auth) == digest_of(reference(domain, "ReceiveWithAuthorization", message(auth)))
    cancel = reference(domain, "CancelAuthorization", {"authorizer": to_checksum_address(auth.from_), "nonce": auth.nonce})
    assert cancel_authorization_digest(domain, auth.from_, auth.nonce) == digest_of(cancel)
    assert len({transfer_authorization_digest(domain, auth), receive_authorization_digest(domain, auth), digest_of(cancel)}) == 3


@settings(max_examples=50, deadline=None)
@given(KEY, domains, auths)
def test_signature_is_65_bytes_low_s_v27_28_and_recovers_like_eth_account(key, domain, auth):
    signature = sign_authorization(key, domain, auth)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
    digest = transfer_authorization_digest(domain, auth)
    assert recover_authorizer(digest, signature) == address_of_key(key)
    theirs = Account.sign_message(reference(domain, "TransferWithAuthorization", message(auth)), key)
    assert bytes(theirs.signature) == signature  # RFC 6979: both sign deterministically


@settings(max_examples=50, deadline=None)
@given(KEY, domains, auths, st.data())
def test_recovery_refuses_noncanonical_signatures(key, domain, auth, data):
    digest = transfer_authorization_digest(domain, auth)
    signature = sign_authorization(key, domain, auth)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    bad = data.draw(st.sampled_from([
        signature[:64],  # 64 bytes: EIP-2098 form, not what the token takes
        signature + b"\0",
        r + signature[32:64] + bytes([v - 27]),  # v 0/1
        r + signature[32:64] + bytes([29]),
        r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v]),  # high-s twin
        b"\0" * 32 + signature[32:],  # r = 0
    ]))  # fmt: skip
    with pytest.raises(InvalidSignature) as info:
        recover_authorizer(digest, bad)
    assert info.value.code == "invalid_signature"


def test_bounds_are_checked():
    a, b, nonce = b"\1" * 20, b"\2" * 20, b"\3" * 32
    for bad in (-1, 2**256):
        with pytest.raises(ValueError):
            TransferAuthorization(a, b, bad, 0, 1, nonce)
        with pytest.raises(ValueError):
            TransferAuthorization(a, b, 1, bad, 1, nonce)
        with pytest.raises(ValueError):
            TransferAuthorization(a, b, 1, 0, bad, nonce)
        with pytest.raises(ValueError):
            TokenDomain("n", "1", bad, a)
    with pytest.raises(TypeError):
        TransferAuthorization(a, b, 1.0, 0, 1, nonce)  # type: ignore[arg-type]
    for bad_nonce in (b"\3" * 31, b"\3" * 33, "0x" + "03" * 32):
        with pytest.raises(ValueError):
            TransferAuthorization(a, b, 1, 0, 1, bad_nonce)  # type: ignore[arg-type]
    assert TransferAuthorization(to_checksum_address(a), b, 2**256 - 1, 0, 2**256 - 1, nonce).from_ == a
