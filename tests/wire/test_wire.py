"""The envelope both sides speak (docs/protocol.md section 12): what the wallet writes the
node reads back unchanged, the header bound holds at its edge, and what the node writes (offer,
corrective state, receipt) is what the wallet's readers take it to be, field for field."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, get_type_hints

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.client.session import _channel_state, _same_terms, channel_offer
from channel_node.client.wallet import _parse_offer
from channel_node.core import ChannelState
from channel_node.core.spending import Cap, Pass, Progress, parse_period
from channel_node.server.protocol import Offer, cap_standing, cap_terms, pass_terms, payment_required, payment_response
from channel_node.signing import ChannelConfig
from channel_node.types import UINT96_MAX, UINT128_MAX
from channel_node.wire.channel import (
    PASS_FIELD,
    SCHEME,
    CapView,
    ChannelAccepts,
    ChannelExtra,
    ChannelReceipt,
    ChannelSummary,
    PassView,
    config_json,
    parse_payment_signature,
    payment_signature,
    read_offer_spending,
    read_receipt_spending,
)
from channel_node.wire.envelope import MAX_HEADER_BYTES, X402_VERSION, ProtocolError, decode_header, encode_header

addresses = st.binary(min_size=20, max_size=20)
amounts = st.integers(0, UINT128_MAX)
configs = st.builds(
    ChannelConfig,
    payer=addresses, signer=addresses, receiver=addresses, token=addresses,
    close_delay=st.integers(0, 2**32 - 1), salt=st.integers(0, UINT96_MAX), receiver_authorizer=addresses,
)  # fmt: skip
payment_ids = st.none() | st.text("ABCXYZabcxyz0189_.:-", min_size=1, max_size=128)


@settings(max_examples=200, deadline=None)
@given(
    chain=st.integers(1, 2**64), contract=addresses, channel=st.binary(min_size=32, max_size=32), amount=amounts,
    signature=st.binary(min_size=64, max_size=65), payment_id=payment_ids, config=st.none() | configs,
)  # fmt: skip
def test_what_the_wallet_writes_the_node_reads_back(chain, contract, channel, amount, signature, payment_id, config):
    network = f"eip155:{chain}"
    header = payment_signature(network, to_checksum_address(contract), channel, amount, signature, payment_id, config)
    voucher = parse_payment_signature(header)
    assert (voucher.channel_id, voucher.amount, voucher.signature, voucher.payment_id) == (channel, amount, signature, payment_id)
    assert (voucher.scheme, voucher.network, voucher.contract) == (SCHEME, network, to_checksum_address(contract))
    assert voucher.config == config
    # `accepted` names the receiver and asset when the configuration rides along (first use).
    assert (voucher.pay_to, voucher.asset) == ((config.receiver, config.token) if config else (None, None))


def _padded(size: int) -> str:
    """A well-formed PAYMENT-SIGNATURE of exactly `size` characters (padding in an ignored field)."""
    base = decode_header(payment_signature("eip155:1", "0x" + "0c" * 20, b"\1" * 32, 5, b"\2" * 65))
    for pad in range(size):
        base["payload"]["pad"] = "x" * pad
        header = encode_header(base)
        if len(header) >= size - 3:
            break
    while len(header) < size:  # base64 grows by 4: fill the rest with spaces, which the reader strips
        header += " "
    return header[:size] if len(header) > size else header


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64))
def test_the_header_bound_holds_at_its_edge(over):
    at_limit = _padded(MAX_HEADER_BYTES)
    assert len(at_limit) == MAX_HEADER_BYTES
    assert parse_payment_signature(at_limit).amount == 5
    try:
        parse_payment_signature(at_limit + " " * over)
    except ProtocolError as exc:
        assert (exc.code, exc.status) == ("malformed_payment", 400) and str(MAX_HEADER_BYTES) in exc.detail
    else:
        raise AssertionError("a header past the bound was parsed")


def test_refusals_name_the_field_and_keep_their_wording():
    """The messages are pinned: wallets and operators read them (docs/protocol.md)."""
    valid = decode_header(payment_signature("eip155:1", "0x" + "0c" * 20, b"\1" * 32, 5, b"\2" * 65, "p"))

    def refusal(path: tuple[str, ...], value: Any) -> str:
        document = json.loads(json.dumps(valid))
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        try:
            parse_payment_signature(base64.b64encode(json.dumps(document).encode()).decode())
        except ProtocolError as exc:
            assert (exc.code, exc.status) == ("malformed_payment", 400)
            return exc.detail
        raise AssertionError(f"{path} = {value!r} was parsed")

    amount = ("payload", "maxClaimableAmount")
    assert refusal(amount, 5) == "payload.maxClaimableAmount: Input should be a valid string"
    assert refusal(amount, "5.0") == "payload.maxClaimableAmount: Value error, must be a decimal string of digits"
    assert refusal(amount, str(2**128)) == f"payload.maxClaimableAmount: Value error, must not exceed {UINT128_MAX}"
    assert refusal(("payload", "channelId"), "0x12") == "payload.channelId: Value error, must be 32 bytes of hex"
    assert refusal(("payload", "signature"), "12") == "payload.signature: Value error, must be 0x-prefixed hex"
    assert refusal(("payload", "paymentId"), "a b") == "payload.paymentId: Value error, must be 1-128 characters of A-Z a-z 0-9 _ . : -"
    assert refusal(("x402Version",), 1).startswith("x402Version: Input should be 2")
    for header, detail in (("%%%", "PAYMENT-SIGNATURE is not base64"), (base64.b64encode(b"{").decode(), "PAYMENT-SIGNATURE is not JSON")):
        try:
            parse_payment_signature(header)
        except ProtocolError as exc:
            assert (exc.code, exc.status, exc.detail) == ("malformed_payment", 400, detail)


offers = st.builds(
    Offer,
    network=st.integers(1, 2**32).map(lambda n: f"eip155:{n}"),
    asset=addresses.map(to_checksum_address), pay_to=addresses.map(to_checksum_address),
    contract=addresses.map(to_checksum_address), min_deposit=amounts,
    close_delay_min=st.integers(0, 2**31), close_delay_max=st.integers(0, 2**32 - 1),
    receiver_authorizer=addresses.map(to_checksum_address),
)  # fmt: skip
states = st.builds(
    ChannelState,
    channel_id=st.binary(min_size=32, max_size=32), config=configs, deposited=amounts, claimed=amounts,
    ceiling=amounts, signature=st.sampled_from([b"", b"\7" * 65]), charged=amounts,
    close_deadline=st.none() | st.integers(1, 2**40), settled=st.booleans(),
)  # fmt: skip


def _keys(typed: type) -> set[str]:
    return set(get_type_hints(typed))


spend_names = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)
caps = st.builds(Cap, name=spend_names, amount=st.integers(1, UINT128_MAX),
                 period=st.sampled_from(["day", "week", "month", "1d", "30d"]).map(parse_period))  # fmt: skip
passes = st.builds(Pass, name=spend_names, price=st.integers(1, UINT128_MAX), duration=st.integers(3600, 10**8),
                   description=st.text(max_size=40))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(offer=offers, price=st.integers(1, UINT128_MAX), once=st.booleans(), state=st.none() | states,
       cap=st.none() | caps, covering=st.lists(passes, max_size=3), paid=st.none() | amounts,
       ends=st.none() | st.integers(0, 2**40), charge=st.none() | amounts)  # fmt: skip
def test_what_the_node_offers_the_wallet_reads_as_offered(offer, price, once, state, cap, covering, paid, ends, charge):
    standing = Progress(cap, paid, 2**33, ends) if cap is not None and paid is not None else None
    terms_of_cap = cap_terms(cap, ends, standing) if cap is not None else None
    document = payment_required(offer, "/a.html", price, "an article", "text/html", once, "payment_required", "pay", state,
                                cap=terms_of_cap, passes=pass_terms(tuple(covering)), charge=charge)  # fmt: skip
    assert document["x402Version"] == X402_VERSION
    received = decode_header(encode_header(document))  # through the header, as the wallet gets it
    entry = channel_offer(received)
    assert entry is not None and _same_terms(entry, entry)
    assert set(entry) == _keys(ChannelAccepts)
    absent = ({"channel"} if state is None else set()) | ({"cap"} if cap is None else set()) | (
        set() if covering else {"passes"}) | ({"charge"} if charge is None else set())  # fmt: skip
    assert set(entry["extra"]) == _keys(ChannelExtra) - absent
    if cap is not None:
        shown = entry["extra"]["cap"]
        assert (shown["name"], int(shown["cap"]), shown["period"]) == (cap.name, cap.amount, cap.period.text)
        assert shown.get("periodEndsAt") == ends
        assert (int(shown["paid"]) if "paid" in shown else None) == paid
    assert (int(entry["extra"]["charge"]) if charge is not None else None) == charge
    assert [(p["name"], int(p["price"]), p["duration"], p["description"]) for p in entry["extra"].get("passes", [])] == [
        (p.name, p.price, p.duration, p.description) for p in covering]
    terms = _parse_offer(entry, int(offer.network.split(":")[1]))
    assert (terms.network, terms.price, terms.once, terms.min_deposit) == (offer.network, price, once, offer.min_deposit)
    assert (terms.delay_min, terms.delay_max) == (offer.close_delay_min, offer.close_delay_max)
    assert (terms.contract, terms.receiver, terms.asset, terms.receiver_authorizer) == (
        offer.contract, offer.pay_to, offer.asset, offer.receiver_authorizer)  # fmt: skip
    summary = _channel_state(entry)
    if state is None:
        assert summary is None
    else:
        assert summary is not None and set(summary) == _keys(ChannelSummary)
        assert (int(summary["charged"]), int(summary["maxClaimableAmount"])) == (state.charged, state.ceiling)
        assert summary["channelId"] == "0x" + state.channel_id.hex() and summary["settled"] is state.settled
        assert summary["closeDeadline"] == state.close_deadline


@settings(max_examples=150, deadline=None)
@given(offer=offers, state=states, charged=amounts, payment_id=payment_ids, voucher=st.none() | amounts,
       cap=st.none() | caps, paid=amounts, held=st.none() | st.tuples(spend_names, st.integers(0, 2**40)))  # fmt: skip
def test_the_receipt_carries_the_fields_the_wallet_checks(offer, state, charged, payment_id, voucher, cap, paid, held):
    standing = cap_standing(Progress(cap, paid, 2**33, None)) if cap is not None else None
    held_pass = {"name": held[0], "until": held[1]} if held is not None else None
    receipt = decode_header(encode_header(payment_response(offer, state, charged, payment_id, voucher, standing, held_pass)))
    last = voucher is not None and voucher < state.ceiling and bool(state.signature)
    absent = (set() if last else {"lastVoucher"}) | ({"cap"} if cap is None else set()) | (
        {"pass"} if held is None else set())  # fmt: skip
    assert set(receipt) == _keys(ChannelReceipt) - absent
    if cap is not None:
        assert receipt["cap"] == {"name": cap.name, "cap": str(cap.amount), "paid": str(paid), "resetsAt": 2**33}
    if held is not None:
        assert receipt["pass"] == {"name": held[0], "until": held[1]}
    assert (receipt["scheme"], receipt["network"], receipt["paymentId"]) == (SCHEME, offer.network, payment_id)
    assert (int(receipt["chargedAmount"]), int(receipt["chargedTotal"])) == (charged, state.charged)
    assert receipt["channelId"] == "0x" + state.channel_id.hex()
    if last:
        assert receipt["lastVoucher"] == {"maxClaimableAmount": str(state.ceiling), "signature": "0x" + state.signature.hex()}


@settings(max_examples=100, deadline=None)
@given(name=spend_names, bad=st.text(max_size=40).filter(lambda t: not re.fullmatch(r"[a-z0-9-]{1,32}", t)))
def test_a_pass_to_buy_travels_in_the_payload_and_a_bad_name_is_malformed(name, bad):
    header = payment_signature("eip155:1", "0x" + "0c" * 20, b"\1" * 32, 1, b"\2" * 65, pass_name=name)
    assert decode_header(header)["payload"][PASS_FIELD] == name
    assert parse_payment_signature(header).pass_name == name
    assert parse_payment_signature(payment_signature("eip155:1", "0x" + "0c" * 20, b"\1" * 32, 1, b"\2" * 65)).pass_name is None
    document = decode_header(header)
    for value in (bad, 5, ["a"]):
        document["payload"][PASS_FIELD] = value
        try:
            parse_payment_signature(encode_header(document))
        except ProtocolError as exc:
            assert (exc.code, exc.status) == ("malformed_payment", 400)
        else:
            raise AssertionError(f"pass {value!r} was parsed")


@settings(max_examples=100, deadline=None)
@given(configs)
def test_a_configuration_spelled_for_the_wire_parses_back(config):
    """The admin API and the payload spell a channel's configuration alike (config_json)."""
    spelled = config_json(config)
    header = payment_signature("eip155:1", "0x" + "0c" * 20, b"\1" * 32, 1, b"\2" * 65, None, config)
    assert decode_header(header)["payload"]["channel"] == spelled
    assert parse_payment_signature(header).config == config


@settings(max_examples=150, deadline=None)
@given(cap=caps, covering=st.lists(passes, max_size=3), paid=st.none() | amounts, ends=st.none() | st.integers(0, 2**39),
       charge=st.none() | amounts, held=st.none() | st.tuples(spend_names, st.integers(0, 2**39)))  # fmt: skip
def test_the_wallet_reads_caps_and_passes_as_the_node_wrote_them(cap, covering, paid, ends, charge, held):
    standing = Progress(cap, paid, 2**33, ends) if paid is not None else None
    document = payment_required(
        Offer("eip155:1", "0x" + "00" * 20, "0x" + "00" * 20, "0x" + "00" * 20, 0, 0, 0), "/a", 5, "", "text/html", True,
        "payment_required", "pay", cap=cap_terms(cap, ends, standing), passes=pass_terms(tuple(covering)), charge=charge,
    )  # fmt: skip
    extra = decode_header(encode_header(document))["accepts"][0]["extra"]
    view, on_sale, cost = read_offer_spending(extra)
    assert view == CapView(cap.name, cap.amount, cap.period.text, ends, paid, 2**33 if paid is not None else None)
    assert on_sale == tuple(PassView(p.name, p.price, p.duration, p.description) for p in covering) and cost == charge
    held_pass = {"name": held[0], "until": held[1]} if held is not None else None
    state = ChannelState(channel_id=b"\1" * 32, config=ChannelConfig.create(b"\1" * 20, b"\2" * 20, b"\3" * 20, None, 3600, 1))
    receipt = payment_response(Offer("eip155:1", "", "", "", 0, 0, 0), state, 1, None, None,
                               cap_standing(Progress(cap, paid or 0, 7, None)), held_pass)  # fmt: skip
    got_cap, got_pass = read_receipt_spending(decode_header(encode_header(receipt)))
    assert got_cap == CapView(cap.name, cap.amount, None, None, paid or 0, 7)
    assert got_pass == (PassView(held[0], until=held[1]) if held is not None else None)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("cap", {"name": "News", "cap": "1"}),
        ("cap", {"name": "news", "cap": 1}),
        ("cap", {"name": "news", "cap": "-1"}),
        ("cap", {"name": "news", "cap": "1", "period": "year"}),
        ("cap", {"name": "news", "cap": "1", "resetsAt": "soon"}),
        ("cap", "news"),
        ("passes", [{"name": "day", "price": "1", "duration": 0}]),
        ("passes", [{"name": "day", "price": "1", "duration": 1, "description": "x" * 201}]),
        ("passes", {"name": "day"}),
        ("passes", [{"name": "day", "price": "1", "duration": 1}] * 33),
        ("charge", "0x10"),
        ("charge", -1),
    ],
)
def test_a_hostile_offers_caps_and_passes_are_refused_by_name(where, value):
    with pytest.raises(ValueError, match=rf"extra\.{where}"):
        read_offer_spending({where: value})


def test_a_hostile_receipts_cap_and_pass_are_refused_by_name():
    for field, value in (("cap", {"name": "n", "cap": "1", "paid": "x", "resetsAt": 1}), ("pass", {"name": "d", "until": -1}),
                         ("pass", {"name": "d"})):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            read_receipt_spending({field: value})
    assert read_receipt_spending({}) == (None, None)
