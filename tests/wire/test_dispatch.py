"""`wire/payment.py`'s `parse_payment`: the envelope is read first and `accepted.scheme` picks the
payload's module, so an `exact` header is an `ExactPayment` (not `malformed_payment`), a voucher is
the same `Voucher` as before, an unknown or not-taken scheme is `unsupported_scheme` (402) whatever
the payload, and every `accepts` entry the node emits carries what the Python SDK requires."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.server.protocol import Offer, payment_required
from channel_node.signing import address_of_key, recover_authorizer, sign_digest, voucher_digest
from channel_node.signing.eip712 import Domain
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, sign_authorization
from channel_node.types import UINT128_MAX
from channel_node.wire import channel, exact
from channel_node.wire.channel import Voucher, parse_payment_signature, payment_signature
from channel_node.wire.envelope import ProtocolError, decode_header, encode_header
from channel_node.wire.exact import ExactPayment, exact_accepts, exact_payment_signature, parse_exact
from channel_node.wire.payment import SCHEMES, parse_payment

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "x402_sdk_headers.json").read_text())["headers"]
THROWAWAY_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")  # a test key, no funds anywhere
CHANNEL_KEY = b"\x07" * 32
DOMAIN = Domain(1337, "0x" + "0c" * 20)


def refusal(header: str, schemes=SCHEMES) -> tuple[int, str]:
    with pytest.raises(ProtocolError) as info:
        parse_payment(header, schemes)
    return info.value.status, info.value.code


def voucher_header(amount: int = 10, scheme: str | None = None) -> str:
    ident = b"\x05" * 32
    header = payment_signature("eip155:1337", "0x" + "0c" * 20, ident, amount, sign_digest(CHANNEL_KEY, voucher_digest(DOMAIN, ident, amount)), "p-1")
    if scheme is None:
        return header
    document = decode_header(header)
    document["accepted"]["scheme"] = scheme
    return encode_header(document)


def fresh_exact_header(valid_before: int = 1_900_000_000, chain_id: int = 31337) -> tuple[str, bytes]:
    """An `exact` header shaped like the SDKs' (decimal numbers, validAfter 0, echoed accepted and
    resource), signed with our own signer for a throwaway key."""
    accepts = exact_accepts(f"eip155:{chain_id}", "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 1000, 120, "Demo Dollar", "1")  # fmt: skip
    auth = TransferAuthorization(address_of_key(THROWAWAY_KEY), accepts["payTo"], 1000, 0, valid_before, b"\x42" * 32)
    signature = sign_authorization(THROWAWAY_KEY, TokenDomain("Demo Dollar", "1", chain_id, accepts["asset"]), auth)
    resource = {"url": "http://127.0.0.1:8402/post", "description": "a post", "mimeType": "text/plain"}
    return exact_payment_signature(accepts, auth, signature, resource), address_of_key(THROWAWAY_KEY)


@pytest.mark.parametrize("captured", FIXTURES, ids=[f["sdk"] for f in FIXTURES])
def test_sdk_headers_dispatch_to_exact(captured):
    payment = parse_payment(captured["header"])
    assert isinstance(payment, ExactPayment)
    assert payment == parse_exact(captured["header"])
    assert to_checksum_address(payment.payer) == captured["signer"]
    # a node that takes only `channel` answers unsupported_scheme (402), not malformed_payment (400)
    assert refusal(captured["header"], (channel.SCHEME,)) == (402, "unsupported_scheme")


def test_fresh_sdk_shaped_headers_parse_and_recover_the_throwaway_key():
    header, payer = fresh_exact_header()
    payment = parse_payment(header)
    assert isinstance(payment, ExactPayment) and payment.payer == payer
    domain = TokenDomain("Demo Dollar", "1", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    assert recover_authorizer(payment.digest(domain), payment.signature) == payer
    assert len(header) < 1100  # the SDKs' are 1032 characters: well within MAX_HEADER_BYTES


@settings(max_examples=100, deadline=None)
@given(amount=st.integers(0, UINT128_MAX))
def test_channel_vouchers_parse_exactly_as_before(amount):
    header = voucher_header(amount)
    payment = parse_payment(header)
    assert isinstance(payment, Voucher) and payment == parse_payment_signature(header)
    assert payment == parse_payment(header, (channel.SCHEME,))


@settings(max_examples=100, deadline=None)
@given(scheme=st.text(max_size=20).filter(lambda s: s not in SCHEMES), payload=st.sampled_from(["voucher", "exact", "junk"]))
def test_unknown_scheme_is_unsupported_whatever_the_payload(scheme, payload):
    if payload == "voucher":
        header = voucher_header(scheme=scheme)
    else:
        document = decode_header(fresh_exact_header()[0])
        if payload == "junk":
            document["payload"] = {"anything": [1, 2, 3]}
        document["accepted"]["scheme"] = scheme
        header = encode_header(document)
    assert refusal(header) == (402, "unsupported_scheme")
    assert refusal(header, (channel.SCHEME,)) == (402, "unsupported_scheme")


def test_exact_scheme_with_a_bad_payload_is_malformed_not_read_as_a_voucher():
    assert refusal(voucher_header(scheme=exact.SCHEME)) == (400, "malformed_payment")
    with pytest.raises(ProtocolError) as info:
        parse_payment(voucher_header(scheme=exact.SCHEME))
    assert info.value.detail.startswith("accepted.")  # judged by exact's fields
    # and a channel header with an exact payload is a malformed voucher
    document = decode_header(fresh_exact_header()[0])
    document["accepted"] = {"scheme": "channel", "network": "eip155:31337"}
    assert refusal(encode_header(document)) == (400, "malformed_payment")


@pytest.mark.parametrize(
    "document",
    [
        {"x402Version": 2, "payload": {}},  # no accepted
        {"x402Version": 2, "accepted": {}, "payload": {}},  # no scheme
        {"x402Version": 2, "accepted": {"scheme": 1}, "payload": {}},  # scheme not a string
        {"x402Version": 2, "accepted": {"scheme": "zzz"}},  # no payload
        {"x402Version": 2, "accepted": {"scheme": "zzz"}, "payload": []},  # payload not an object
        {"x402Version": 1, "accepted": {"scheme": "zzz"}, "payload": {}},  # v1
        [1, 2],
    ],
)
def test_what_is_not_an_envelope_is_malformed_before_any_scheme(document):
    assert refusal(encode_header(document)) == (400, "malformed_payment")


def test_garbage_is_malformed():
    for header in ("%%%", "A" * 5000, encode_header("x")[:-2]):
        assert refusal(header) == (400, "malformed_payment")


offers = st.builds(
    Offer,
    network=st.integers(1, 2**32).map(lambda n: f"eip155:{n}"),
    asset=st.binary(min_size=20, max_size=20).map(to_checksum_address),
    pay_to=st.binary(min_size=20, max_size=20).map(to_checksum_address),
    contract=st.binary(min_size=20, max_size=20).map(to_checksum_address),
    min_deposit=st.integers(0, UINT128_MAX), close_delay_min=st.integers(0, 2**31), close_delay_max=st.integers(0, 2**32 - 1),
    receiver_authorizer=st.binary(min_size=20, max_size=20).map(to_checksum_address),
)  # fmt: skip

PYTHON_SDK_REQUIRED = {"scheme", "network", "asset", "amount", "payTo", "maxTimeoutSeconds"}


@settings(max_examples=100, deadline=None)
@given(offer=offers, price=st.integers(1, UINT128_MAX), once=st.booleans(), timeout=st.integers(1, 3600))
def test_every_accepts_entry_has_what_the_python_sdk_requires(offer, price, once, timeout):
    """The Python SDK refuses the whole 402 if any entry lacks one of six fields; the TS SDK needs
    `extra.name`/`extra.version` on `exact`. Checked on the node's channel entry and the exact entry."""
    document = payment_required(offer, "/a.html", price, "an article", "text/html", once, "payment_required", "pay")
    document["accepts"].append(exact_accepts(offer.network, offer.asset, offer.pay_to, price, timeout, "Demo Dollar", "1"))
    received = decode_header(encode_header(document))
    assert received["x402Version"] == 2
    for entry in received["accepts"]:
        assert set(entry) >= PYTHON_SDK_REQUIRED and isinstance(entry["extra"], dict)
        assert all(isinstance(entry[k], str) for k in PYTHON_SDK_REQUIRED - {"maxTimeoutSeconds"})
        assert isinstance(entry["maxTimeoutSeconds"], int) and entry["maxTimeoutSeconds"] > 0
        assert entry["amount"] == str(price)
        assert entry["payTo"] == to_checksum_address(entry["payTo"]) and entry["asset"] == to_checksum_address(entry["asset"])
    exact_entry = received["accepts"][-1]
    assert set(exact_entry["extra"]) == {"name", "version"}
