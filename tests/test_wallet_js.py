"""The browser wallet bundle: it matches its sources, and the committed asset computes exactly the
bytes the Python side does (channel id, voucher and close digests, signatures, call data, headers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.server.protocol import decode_header, payment_signature
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import build_wallet_js  # noqa: E402

NODE = shutil.which("node")

RUNNER = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const context = { atob, btoa, TextDecoder, TextEncoder, crypto: globalThis.crypto };
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.bundle, "utf8"), context);
const W = vm.runInContext("ChannelWallet", context);
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
    bundle = build_wallet_js.OUTPUT
    result = subprocess.run(
        [NODE, "-e", RUNNER], input=json.dumps({"bundle": str(bundle), "cases": cases}), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
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
