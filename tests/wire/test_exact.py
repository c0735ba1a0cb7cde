"""The `exact` scheme's wire (docs/protocol.md, "The `exact` scheme (wire)"): the official SDKs'
headers parse to the authorization they signed, what our builder writes parses back field for
field (decimal and hex numbers, any address case), malformed payloads are `malformed_payment`
naming the field, and the offer and receipt builders write the SDKs' field names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_type_hints

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.signing import address_of_key, recover_authorizer
from channel_node.signing.eip712 import SECP256K1_N
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, sign_authorization
from channel_node.wire.envelope import ProtocolError, decode_header, encode_header
from channel_node.wire.exact import (
    SCHEME,
    ExactAccepts,
    ExactPayment,
    ExactReceipt,
    exact_accepts,
    exact_payment_signature,
    exact_receipt,
    parse_exact,
)

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "x402_sdk_headers.json").read_text())["headers"]

U256 = st.integers(0, 2**256 - 1)
addresses = st.binary(min_size=20, max_size=20)
keys = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
authorizations = st.builds(TransferAuthorization, addresses, addresses, U256, U256, U256, st.binary(min_size=32, max_size=32))
names = st.text(max_size=30)


def offer(chain_id=31337, asset=b"\x5f" * 20, pay_to=b"\x70" * 20, amount=1000, timeout=120, name="Demo Dollar", version="1"):
    return exact_accepts(f"eip155:{chain_id}", asset, pay_to, amount, timeout, name, version)


def malformed(header: str) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_exact(header)
    assert (info.value.code, info.value.status) == ("malformed_payment", 400)
    return info.value.detail


@pytest.mark.parametrize("captured", FIXTURES, ids=[f["sdk"] for f in FIXTURES])
def test_sdk_captured_headers_parse_to_what_the_sdk_signed(captured):
    payment = parse_exact(captured["header"])
    document = decode_header(captured["header"])
    auth, accepted = document["payload"]["authorization"], document["accepted"]
    assert isinstance(payment, ExactPayment) and payment.scheme == SCHEME
    assert payment.payer == bytes.fromhex(captured["signer"][2:])
    assert payment.authorization.to == bytes.fromhex(auth["to"][2:])  # mis-checksummed by one SDK: read anyway
    assert (payment.authorization.value, payment.authorization.valid_after, payment.authorization.valid_before) == (
        int(auth["value"]), int(auth["validAfter"]), int(auth["validBefore"]))  # fmt: skip
    assert payment.authorization.nonce == bytes.fromhex(auth["nonce"][2:])
    assert payment.accepted.chain_id == captured["chainId"] and payment.accepted.network == accepted["network"]
    assert (payment.accepted.amount, payment.accepted.max_timeout_seconds) == (1000, 120)
    assert (payment.accepted.name, payment.accepted.version) == (accepted["extra"]["name"], accepted["extra"]["version"])
    assert payment.accepted.asset == bytes.fromhex(accepted["asset"][2:])
    assert payment.resource is not None and payment.resource.url == document["resource"]["url"]
    # the digest in the domain the SDK signed recovers the SDK's key
    domain = TokenDomain(accepted["extra"]["name"], accepted["extra"]["version"], captured["chainId"], accepted["asset"])
    assert recover_authorizer(payment.digest(domain), payment.signature) == payment.payer
    other = TokenDomain("Other", "1", captured["chainId"], accepted["asset"])
    assert recover_authorizer(payment.digest(other), payment.signature) != payment.payer


@settings(max_examples=100, deadline=None)
@given(key=keys, auth=authorizations, chain_id=st.integers(1, 2**64), name=names, version=names, with_resource=st.booleans())
def test_what_the_wallet_writes_the_node_reads_back(key, auth, chain_id, name, version, with_resource):
    accepts = offer(chain_id, pay_to=auth.to, amount=auth.value, name=name, version=version)
    domain = TokenDomain(name, version, chain_id, accepts["asset"])
    signature = sign_authorization(key, domain, auth)
    resource = {"url": "https://example.org/a?b=1", "description": "", "mimeType": "text/html"} if with_resource else None
    header = exact_payment_signature(accepts, auth, signature, resource)
    payment = parse_exact(header)
    assert payment.authorization == auth and payment.signature == signature
    assert decode_header(header)["accepted"] == accepts  # echoed verbatim
    assert (payment.accepted.amount, payment.accepted.pay_to, payment.accepted.chain_id) == (auth.value, auth.to, chain_id)
    assert (payment.resource is not None) == with_resource
    assert recover_authorizer(payment.digest(domain), payment.signature) == address_of_key(key)


def _document(key=b"\x01" * 32, **auth_override):
    auth = TransferAuthorization(address_of_key(key), b"\x70" * 20, 1000, 0, 2**40, b"\x09" * 32)
    domain = TokenDomain("Demo Dollar", "1", 31337, b"\x5f" * 20)
    document = decode_header(exact_payment_signature(offer(), auth, sign_authorization(key, domain, auth)))
    document["payload"]["authorization"].update(auth_override)
    return document


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["value", "validAfter", "validBefore"]), number=U256)
def test_numbers_read_as_decimal_or_hex(field, number):
    for spelling in (str(number), hex(number), "0x" + format(number, "064x")):
        payment = parse_exact(encode_header(_document(**{field: spelling})))
        assert {"value": payment.authorization.value, "validAfter": payment.authorization.valid_after,
                "validBefore": payment.authorization.valid_before}[field] == number  # fmt: skip


@pytest.mark.parametrize(
    "path, value",
    [
        (("payload", "authorization", "value"), str(2**256)),
        (("payload", "authorization", "value"), hex(2**256)),
        (("payload", "authorization", "value"), "-1"),
        (("payload", "authorization", "value"), "1e3"),
        (("payload", "authorization", "value"), " 5"),
        (("payload", "authorization", "value"), "0x"),
        (("payload", "authorization", "value"), 1000),  # a JSON number, not a string
        (("payload", "authorization", "validBefore"), "1.5"),
        (("payload", "authorization", "nonce"), "0x" + "09" * 31),
        (("payload", "authorization", "nonce"), "09" * 32),
        (("payload", "authorization", "from"), "0x" + "ab" * 19),
        (("payload", "authorization", "from"), None),
        (("payload", "signature"), "0x" + "11" * 64),  # 64 bytes: EIP-2098 is not what the token takes
        (("payload", "signature"), "0x" + "11" * 66),
        (("payload", "authorization"), None),
        (("accepted", "amount"), "0x3e8"),  # the offer's amount is decimal only
        (("accepted", "amount"), str(2**256)),
        (("accepted", "network"), "base"),
        (("accepted", "network"), "eip155:0"),
        (("accepted", "network"), "eip155:01"),
        (("accepted", "maxTimeoutSeconds"), 0),
        (("accepted", "maxTimeoutSeconds"), "120"),
        (("accepted", "maxTimeoutSeconds"), 2**32),
        (("accepted", "extra"), {"name": "Demo Dollar"}),
        (("accepted", "extra"), None),
        (("accepted", "payTo"), "0x70"),
        (("accepted", "asset"), None),
        (("resource",), "http://x"),
        (("x402Version",), 1),
    ],
)
def test_malformed_fields_are_malformed_payment_naming_the_field(path, value):
    document = _document()
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    detail = malformed(encode_header(document))
    assert detail.startswith(".".join(path[:2]) if path[0] != "x402Version" else "x402Version"), detail


@pytest.mark.parametrize("missing", ["scheme", "network", "amount", "asset", "payTo", "maxTimeoutSeconds", "extra"])
def test_every_accepted_field_is_required(missing):
    document = _document()
    del document["accepted"][missing]
    assert malformed(encode_header(document)).startswith(f"accepted.{missing}")


@settings(max_examples=100, deadline=None)
@given(chain_id=st.integers(1, 2**256 - 1), asset=addresses, pay_to=addresses, amount=U256,
       timeout=st.integers(1, 2**32 - 1), name=names, version=names)  # fmt: skip
def test_offer_entry_has_every_field_eip55_and_reads_back(chain_id, asset, pay_to, amount, timeout, name, version):
    entry = exact_accepts(f"eip155:{chain_id}", asset, pay_to, amount, timeout, name, version)
    assert list(entry) == list(get_type_hints(ExactAccepts))
    assert entry["asset"] == to_checksum_address(asset) and entry["payTo"] == to_checksum_address(pay_to)
    assert entry["amount"] == str(amount) and entry["extra"] == {"name": name, "version": version}
    # the payer echoes it: it parses as the `accepted` of a payment
    auth = TransferAuthorization(b"\x01" * 20, pay_to, amount, 0, 1, b"\x00" * 32)
    payment = parse_exact(exact_payment_signature(entry, auth, b"\x01" * 65))
    assert (payment.accepted.asset, payment.accepted.pay_to, payment.accepted.amount) == (asset, pay_to, amount)
    assert (payment.accepted.max_timeout_seconds, payment.accepted.chain_id) == (timeout, chain_id)


def test_offer_builder_refuses_what_no_client_could_pay():
    with pytest.raises(ValueError):
        exact_accepts("base", b"\x01" * 20, b"\x02" * 20, 1, 60, "n", "1")
    with pytest.raises(ValueError):
        exact_accepts("eip155:1", b"\x01" * 20, b"\x02" * 20, 1, 0, "n", "1")
    with pytest.raises(ValueError):
        exact_accepts("eip155:1", b"\x01" * 20, b"\x02" * 20, 2**256, 60, "n", "1")
    with pytest.raises(TypeError):
        exact_accepts("eip155:1", b"\x01" * 20, b"\x02" * 20, 1.5, 60, "n", "1")  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(success=st.booleans(), tx=st.none() | st.binary(min_size=32, max_size=32), payer=addresses, amount=U256,
       reason=st.none() | st.sampled_from(["settlement_pending", "authorization_used"]))  # fmt: skip
def test_receipt_has_the_sdk_field_names(success, tx, payer, amount, reason):
    receipt = exact_receipt(success, tx, "eip155:31337", payer, amount, reason)
    required = {"success", "transaction", "network"}  # what the Python SDK's SettleResponse requires
    assert required <= set(receipt) <= set(get_type_hints(ExactReceipt))
    assert receipt["transaction"] == ("" if tx is None else "0x" + tx.hex())
    assert (receipt["payer"], receipt["amount"]) == (to_checksum_address(payer), str(amount))
    assert ("errorReason" in receipt) == (reason is not None)
    assert decode_header(encode_header(receipt)) == receipt
