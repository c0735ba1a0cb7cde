"""The Python EIP-712 module must agree with the contract byte for byte, and apply the same signature rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.signing import (
    ChannelConfig,
    Domain,
    InvalidSignature,
    address_of_key,
    channel_id,
    cooperative_close_digest,
    recover_signer,
    sign_digest,
    to_compact,
    voucher_digest,
)
from channel_node.signing.eip712 import SECP256K1_N

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER_KEY = bytes.fromhex("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f")

addresses = st.binary(min_size=20, max_size=20)


def test_domain_separator_matches_contract(chain, deployed, channels):
    assert deployed.functions.domainSeparator().call() == channels.domain.separator


@settings(max_examples=25, deadline=None)
@given(payer=addresses, signer=addresses, receiver=addresses, token=addresses,
       delay=st.integers(0, 2**32 - 1), salt=st.integers(0, 2**96 - 1), authorizer=st.none() | addresses)
def test_channel_id_matches_contract(dev_chain, deployed, payer, signer, receiver, token, delay, salt, authorizer):
    domain = Domain(dev_chain.chain_id, deployed.address)
    config = ChannelConfig.create(payer, signer, receiver, token, delay, salt, authorizer)
    assert deployed.functions.channelId(config.as_abi_tuple()).call() == channel_id(domain, config)
    # the authorizer is part of the identity; leaving it out means the zero address
    assert ChannelConfig.create(payer, signer, receiver, token, delay, salt) == ChannelConfig(
        config.payer, config.signer, config.receiver, config.token, delay, salt
    )
    if authorizer is not None and any(authorizer):
        plain = ChannelConfig.create(payer, signer, receiver, token, delay, salt)
        assert channel_id(domain, plain) != channel_id(domain, config)
        assert config.may_act_for_receiver(config.receiver_authorizer)
        assert plain.may_act_for_receiver(config.receiver_authorizer) == (config.receiver_authorizer == config.receiver)
    assert config.may_act_for_receiver(config.receiver)
    assert not config.may_act_for_receiver(b"\0" * 20) or config.receiver == b"\0" * 20, "address(0) never acts"


@settings(max_examples=25, deadline=None)
@given(channel=st.binary(min_size=32, max_size=32), amount=st.integers(0, 2**128 - 1))
def test_voucher_and_close_digests_match_contract(dev_chain, deployed, channel, amount):
    domain = Domain(dev_chain.chain_id, deployed.address)
    assert deployed.functions.voucherDigest(channel, amount).call() == voucher_digest(domain, channel, amount)
    assert deployed.functions.cooperativeCloseDigest(channel, amount).call() == cooperative_close_digest(
        domain, channel, amount
    )


def test_domain_binds_chain_and_contract():
    contract = "0x" + "11" * 20
    config = ChannelConfig.create("0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20, None, 3600, 1)
    base = channel_id(Domain(1, contract), config)
    assert channel_id(Domain(2, contract), config) != base
    assert channel_id(Domain(1, "0x" + "12" * 20), config) != base
    assert voucher_digest(Domain(1, contract), base, 5) != voucher_digest(Domain(2, contract), base, 5)


def test_sign_and_recover_roundtrip():
    digest = bytes(range(32))
    signature = sign_digest(KEY, digest)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert recover_signer(digest, signature) == address_of_key(KEY)
    r, vs = to_compact(signature)
    assert recover_signer(digest, r + vs) == address_of_key(KEY)
    assert recover_signer(digest, sign_digest(OTHER_KEY, digest)) != address_of_key(KEY)


def test_known_key_address():
    # the address eth-account derives for the same key
    assert address_of_key(KEY).hex() == "2c7536e3605d9c16a7a3d7b1898e529396a65c23"


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28


def test_high_s_rejected():
    digest = bytes(32)
    signature = sign_digest(KEY, digest)
    with pytest.raises(InvalidSignature):
        recover_signer(digest, _high_s(signature))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:10],
        lambda s: s + b"\0",
        lambda s: b"\0" * 32 + s[32:],  # r = 0
        lambda s: s[:32] + b"\0" * 32 + s[64:],  # s = 0
        lambda s: s[:64] + bytes([29]),  # bad v
    ],
)
def test_malformed_signatures_never_recover_the_signer(mangle):
    digest = bytes(range(32))
    signature = sign_digest(KEY, digest)
    try:
        recovered = recover_signer(digest, mangle(signature))
    except InvalidSignature:
        return
    assert recovered != address_of_key(KEY)


def test_amount_bounds():
    domain = Domain(1, "0x" + "11" * 20)
    with pytest.raises(ValueError):
        voucher_digest(domain, bytes(32), 2**128)
    with pytest.raises(ValueError):
        voucher_digest(domain, bytes(32), -1)
    with pytest.raises(ValueError):
        ChannelConfig.create("0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20, None, 2**32, 1)
