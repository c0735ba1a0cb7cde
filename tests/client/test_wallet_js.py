"""The browser wallet bundle: it matches its sources, and the committed asset computes exactly the
bytes the Python side does (channel id, voucher and close digests, signatures, call data, headers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    cooperative_close_digest,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.wire.channel import payment_signature
from channel_node.wire.envelope import decode_header
from wallet_js_helpers import LOADER, NODE, run_bundle

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import build_wallet_js  # noqa: E402

RUNNER = LOADER + r"""
const hex = (b) => W.toHex(b);
const out = [];
for (const c of input.cases) {
  const config = c.config;
  const id = W.channelId(c.chainId, c.contract, config);
  const voucher = W.voucherDigest(c.chainId, c.contract, id, c.amount);
  const close = W.cooperativeCloseDigest(c.chainId, c.contract, id, c.amount);
  const key = W.hexToBytes(c.key);
  const signature = W.signDigest(key, voucher);
  out.push({
    channelId: id,
    voucherDigest: hex(voucher),
    closeDigest: hex(close),
    signature: hex(signature),
    recovered: W.recoverAddress(voucher, signature),
    signer: W.addressOfKey(key),
    depositEth: W.encodeDepositEth(config),
    closeCooperative: W.encodeCloseCooperative(config, c.amount, c.payerSig, c.receiverSig),
    getChannel: W.encodeGetChannel(id),
    header: W.paymentSignature(c.network, c.contract, id, c.amount, signature, config),
    format: W.formatUnits(c.amount),
    parse: W.parseUnits(W.formatUnits(c.amount)).toString(),
  });
}
process.stdout.write(JSON.stringify(out));
"""


def test_committed_bundle_matches_its_sources():
    if not build_wallet_js.ESBUILD.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install the pinned esbuild (npm ci --prefix tools)")
        pytest.skip("tools/node_modules is missing: run `npm ci --prefix tools --no-audit --no-fund` to check the bundle")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_wallet_js.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _cases() -> list[dict]:
    cases = []
    for n, (chain_id, amount, salt, delay) in enumerate(
        [(31337, 20_000_000_000_000, 1, 3600), (1, (1 << 128) - 1, (1 << 96) - 1, 0), (131277322940537, 0, 12345, 900)]
    ):
        key = keccak256(b"browser wallet test key %d" % n)
        payer = to_checksum_address(keccak256(b"payer %d" % n)[-20:])
        receiver = to_checksum_address(keccak256(b"receiver %d" % n)[-20:])
        contract = to_checksum_address(keccak256(b"contract %d" % n)[-20:])
        token = "0x" + "00" * 20 if n != 1 else to_checksum_address(keccak256(b"token")[-20:])
        # a named receiver authorizer (a node's hot claim key), or none (the receiver settles itself)
        authorizer = to_checksum_address(keccak256(b"authorizer %d" % n)[-20:]) if n != 2 else "0x" + "00" * 20
        cases.append({
            "chainId": chain_id, "contract": contract, "amount": str(amount), "key": "0x" + key.hex(),
            "network": f"eip155:{chain_id}",
            "config": {"payer": payer, "signer": to_checksum_address(address_of_key(key)),
                       "receiver": receiver, "token": token, "closeDelay": delay, "salt": str(salt),
                       "receiverAuthorizer": authorizer},
            "payerSig": "0x" + (bytes(range(65 + n))).hex(), "receiverSig": "0x" + (b"\xaa" * (64 + 3 * n)).hex(),
        })  # fmt: skip
    return cases


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_bundle_computes_the_same_bytes_as_python():
    cases = _cases()
    answers = run_bundle(RUNNER, {"cases": cases})
    contract_abi = channel_deposit_artifact().abi
    from web3 import Web3

    w3 = Web3()
    for case, js in zip(cases, answers, strict=True):
        c = case["config"]
        config = ChannelConfig.create(
            c["payer"], c["signer"], c["receiver"], c["token"], c["closeDelay"], int(c["salt"]), c["receiverAuthorizer"]
        )
        domain = Domain(case["chainId"], case["contract"])
        cid = channel_id(domain, config)
        amount = int(case["amount"])
        key = bytes.fromhex(case["key"][2:])
        digest = voucher_digest(domain, cid, amount)
        signature = sign_digest(key, digest)
        assert js["channelId"] == "0x" + cid.hex()
        assert js["voucherDigest"] == "0x" + digest.hex()
        assert js["closeDigest"] == "0x" + cooperative_close_digest(domain, cid, amount).hex()
        assert js["signature"] == "0x" + signature.hex()  # RFC 6979, low-s: byte for byte
        assert js["signer"] == js["recovered"] == to_checksum_address(address_of_key(key))

        contract = w3.eth.contract(address=case["contract"], abi=contract_abi)
        assert js["depositEth"] == contract.encode_abi("depositEth", [config.as_abi_tuple()])
        payer_sig, receiver_sig = bytes.fromhex(case["payerSig"][2:]), bytes.fromhex(case["receiverSig"][2:])
        assert js["closeCooperative"] == contract.encode_abi(
            "closeCooperative", [config.as_abi_tuple(), amount, payer_sig, receiver_sig]
        )
        assert js["getChannel"] == contract.encode_abi("getChannel", [cid])

        expected = payment_signature(case["network"], case["contract"], cid, amount, signature, config=config)
        assert decode_header(js["header"]) == decode_header(expected)
        assert js["parse"] == case["amount"]


LEDGER_RUNNER = LOADER + r"""
const out = [];
for (const run of input.runs) {
  let book = W.bookOf({});
  const steps = [];
  for (const [kind, a, b] of run.events) {
    if (book.blocked && kind !== "trust") { steps.push({ refused: true, book }); continue; }
    const voucher = W.voucherNeeded(book, run.price).toString();
    if (kind === "deliver") book = W.onDelivered(book, a, b, run.price);
    else if (kind === "stated") book = W.onStatedCharged(book, a, run.price);
    else if (kind === "trust") book = W.trusted(book);
    steps.push({ refused: false, voucher, book });
  }
  out.push(steps);
}
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@settings(max_examples=40, deadline=None)
@given(
    price=st.integers(1, 10**18),
    events=st.lists(
        st.one_of(
            # a delivery: what the receipt says it cost (at most the price) and how far its total lies
            st.tuples(st.just("deliver"), st.integers(0, 1), st.integers(-2, 3)),
            # a corrective 402's charged total, relative to what the reader accepts as charged
            st.tuples(st.just("stated"), st.integers(-3, 3), st.just(0)),
            st.tuples(st.just("trust"), st.just(0), st.just(0)),
        ),
        max_size=30,
    ),
)
def test_the_browser_ledger_never_signs_beyond_received_plus_one_price_of_lies(price, events):
    """Sites that lie in receipts and corrective 402s: the browser wallet signs at most what it
    received, plus the price in flight, plus one price of charges it never received per trust."""
    concrete, base = [], 0  # events in absolute amounts around a rough running total
    for kind, a, b in events:
        step = price // 2 + 1
        if kind == "deliver":
            base += a * price
            concrete.append(["deliver", str(a * price), str(max(base + b * step, 0))])
        elif kind == "stated":
            concrete.append(["stated", str(max(base + a * step, 0)), None])
        else:
            concrete.append(["trust", None, None])
    steps = _ledger_run(price, concrete)
    delivered, trusts, blocked = 0, 0, False
    for (kind, amount, _), step in zip(concrete, steps, strict=True):
        if step["refused"]:
            assert blocked, "only a blocked site is refused"
            continue
        assert int(step["voucher"]) <= delivered + price + price * (1 + trusts), (
            "signed ≤ received + the price in flight + one price of lies per trust"
        )
        if kind == "deliver":
            delivered += int(amount)
        elif kind == "trust":
            trusts += 1
        assert int(step["book"]["lost"]) <= price
        blocked = step["book"]["blocked"]


def _ledger_run(price: int, events: list) -> list[dict]:
    runs: list[list[dict]] = run_bundle(LEDGER_RUNNER, {"runs": [{"price": str(price), "events": events}]})
    return runs[0]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_browser_wallet_pays_one_price_to_a_site_echoing_its_voucher_then_stops():
    """Finding 7(b) in the browser: each voucher answered by a corrective 402 presenting it as charged."""
    price = 1000
    steps = _ledger_run(price, [["deliver", "1000", "1000"], ["stated", "2000", None], ["stated", "3000", None],
                                ["stated", "4000", None], ["trust", None, None], ["stated", "3000", None]])  # fmt: skip
    vouchers = [int(s["voucher"]) for s in steps if not s["refused"]]
    assert vouchers[:3] == [1000, 2000, 3000], "the echo costs one price, then the site is blocked"
    assert steps[2]["book"]["blocked"] and steps[3]["refused"]
    assert not steps[4]["book"]["blocked"] and steps[5]["book"]["lost"] == "1000", "trust gives one more price"
