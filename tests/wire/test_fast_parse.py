"""The hand-written fast path of `PAYMENT-SIGNATURE` parsing (docs/performance.md, "The hand-read
voucher") decides exactly as the pydantic models do: for every document in a class built around the
real voucher (each field valid, missing, null, of another type, or a near-miss string; fields
added), the fast path either steps aside (None) or returns the very voucher the models parse; the
whole parse answers the same voucher or the same refusal (code, status and message); and the
header's JSON reads as json reads it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.signing import ChannelConfig
from channel_node.types import UINT128_MAX
from channel_node.wire import channel, envelope
from channel_node.wire.channel import (
    FAST_ACCEPTED_FIELDS,
    FAST_PAYLOAD_FIELDS,
    FAST_TOP_FIELDS,
    PaymentSignature,
    VoucherPayload,
    fast_voucher,
    payment_signature,
)
from channel_node.wire.envelope import AcceptedRequirement, ProtocolError, decode_header, read_payment_header
from channel_node.wire.payment import parse_payment

CONTRACT = "0x" + "C0" * 20
NETWORK = "eip155:31337"

# Near misses of every string field's syntax, and values of the other JSON types.
near_misses = st.sampled_from([
    "", "0x", "0X" + "ab" * 32, "0x" + "ab" * 31 + "a", "0x" + "AB" * 32, "0x" + "ab" * 33, " 0x" + "ab" * 32,
    "0x" + "ab" * 32 + "\n", "0x" + "gg" * 32, "0x" + "ab" * 20, "0x" + "ab" * 64, "0x" + "ab" * 65,
    "1000", "0", "0001000", "-1", "+1", "1e3", "1.0", " 1", "١٢٣", str(UINT128_MAX), str(UINT128_MAX + 1),
    "9" * 39, "9" * 40, "pay-1", "pay 1", "x" * 128, "x" * 129, "eip155:1", "channel", "exact", "ab\u00e9",
])  # fmt: skip
other_types = st.sampled_from([None, 0, 1, 2, -2, True, False, 2.0, 1e300, [], ["channel"], {}, {"a": 1}])
strange = near_misses | other_types
extra_keys = st.sampled_from(["channel", "pass", "scheme", "x402Version", "amount", "", "extra", "contract"])


def base_document(channel_id: bytes, amount: int, signature: bytes, payment_id: str | None) -> dict[str, Any]:
    config = ChannelConfig.create("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, None, 3600, 1)
    header = payment_signature(NETWORK, CONTRACT, channel_id, amount, signature, payment_id)
    document: dict[str, Any] = decode_header(header)
    document["accepted"]["asset"] = "0x" + config.token.hex()
    document["accepted"]["payTo"] = "0x" + config.receiver.hex()
    return document


@st.composite
def documents(draw: st.DrawFn) -> Any:
    document = base_document(
        draw(st.binary(min_size=32, max_size=32)),
        draw(st.integers(0, UINT128_MAX)),
        draw(st.binary(min_size=64, max_size=65)),
        draw(st.none() | st.sampled_from(["pay-1", "a" * 128, "x.y:z_-0"])),
    )
    for _ in range(draw(st.integers(0, 3))):  # spoil some fields
        where = draw(st.sampled_from(["top", "accepted", "payload", "extra"]))
        holder: Any = document
        for step in {"top": [], "accepted": ["accepted"], "payload": ["payload"], "extra": ["accepted", "extra"]}[where]:
            holder = holder.get(step) if isinstance(holder, dict) else None
        if not isinstance(holder, dict):
            continue
        names = sorted(holder) + [draw(extra_keys)]
        name = draw(st.sampled_from(names))
        action = draw(st.sampled_from(["drop", "replace", "null"]))
        if action == "drop":
            holder.pop(name, None)
        elif action == "null":
            holder[name] = None
        else:
            holder[name] = draw(strange)
    return draw(st.sampled_from([document, document, [document], "x", 2, None]))


def slow(document: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(the whole parse, the voucher document's parse) with both hand checks off: pydantic alone."""
    with monkeypatch.context() as patched:
        patched.setattr(channel, "fast_voucher", lambda _document: None)
        patched.setattr(envelope, "_is_version", lambda _value: False)  # payment_scheme's hand check
        try:
            voucher: Any = channel.parse_voucher_document(document)
        except ProtocolError as exc:
            voucher = ("refused", exc.code, exc.status, exc.detail)
        return outcome(document), voucher


def outcome(document: Any) -> Any:
    header = base64.b64encode(json.dumps(document).encode()).decode()
    try:
        return parse_payment(header)
    except ProtocolError as exc:
        return ("refused", exc.code, exc.status, exc.detail)


def test_the_fast_path_knows_exactly_the_models_fields() -> None:
    """A field added to a model sends documents carrying it to pydantic, never past it unread."""
    assert set(PaymentSignature.model_fields) == FAST_TOP_FIELDS
    assert set(AcceptedRequirement.model_fields) == FAST_ACCEPTED_FIELDS
    # A first use (`channel`) and a pass purchase (`pass_`, spelt "pass" on the wire) are rare: pydantic reads them.
    assert set(VoucherPayload.model_fields) - {"channel", "pass_"} == FAST_PAYLOAD_FIELDS
    assert fast_voucher({"x402Version": 2, "accepted": {}, "payload": {"pass": "news-day"}}) is None


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(0, UINT128_MAX), st.binary(min_size=65, max_size=65))
def test_a_wallets_voucher_takes_the_fast_path(channel_id: bytes, amount: int, signature: bytes) -> None:
    document = decode_header(payment_signature(NETWORK, CONTRACT, channel_id, amount, signature))
    fast = fast_voucher(document)
    assert fast is not None
    assert fast == channel.parse_voucher_document(document)
    assert (fast.channel_id, fast.amount, fast.signature, fast.contract) == (channel_id, amount, signature, CONTRACT)


@settings(max_examples=400, deadline=None)
@given(documents())
def test_fast_and_pydantic_decide_alike(document: Any) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        whole, voucher = slow(document, monkeypatch)
    fast = fast_voucher(document)
    if fast is not None:
        assert fast == voucher
    assert outcome(document) == whole
    assert envelope.payment_scheme(document) == slow_scheme(document) if _is_envelope(document) else True


def _is_envelope(document: Any) -> bool:
    try:
        slow_scheme(document)
    except ProtocolError:
        return False
    return True


def slow_scheme(document: Any) -> str:
    return envelope.validate_payment(envelope.PaymentEnvelope, document).accepted.scheme


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
raw_texts = st.sampled_from([
    b"NaN", b"[Infinity]", b'"\\ud800"', b'{"a": "\\udfff"}', b"\xef\xbb\xbf{}", b'{"a":1,"a":2}', b"1e400",
    b"-0", b"0.1e-400", b" {} ", b"{}x", "{}".encode("utf-16"), b'"\x01"', b"[" * 1400 + b"]" * 1400,
    b'{"a":"\xff"}', b"18446744073709551616", b"-9223372036854775809", b"123456789012345678901234567890",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(json_values.map(lambda value: json.dumps(value, ensure_ascii=False).encode()) | raw_texts | st.binary(max_size=40))
def test_the_header_json_reads_as_json_reads_it(raw: bytes) -> None:
    header = base64.b64encode(raw).decode()
    if len(header) > envelope.MAX_HEADER_BYTES:
        return
    try:
        expected: Any = ("value", json.loads(raw))
    except (UnicodeDecodeError, ValueError, RecursionError):
        expected = ("refused",)
    try:
        got: Any = ("value", read_payment_header(header))
    except ProtocolError as exc:
        assert exc.code == "malformed_payment" and exc.status == 400
        got = ("refused",)
    assert _comparable(got) == _comparable(expected)


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True)  # NaN != NaN: compare spellings (1.0 and 1 stay apart)
