"""The browser wallet's x402 `exact` unlock (web/eip712.js, web/wallet.js, run from the committed
bundle in Node): the TransferWithAuthorization digest is byte-identical to signing/eip3009.py's,
the typed data it hands to eth_signTypedData_v4 hashes to that same digest in another EIP-712
implementation (eth_account's), and the PAYMENT-SIGNATURE it builds parses on the node's side with
`accepted` echoed verbatim. The offer checks refuse an entry a client could not sign correctly."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.signing.eip3009 import (
    TokenDomain,
    TransferAuthorization,
    recover_authorizer,
    transfer_authorization_digest,
)
from channel_node.wire.envelope import decode_header
from channel_node.wire.exact import exact_accepts, parse_exact
from wallet_js_helpers import LOADER, needs_node, run_bundle

pytestmark = needs_node


DIGESTS = LOADER + r"""
const out = input.cases.map((c) => {
  const digest = W.toHex(W.transferAuthorizationDigest(c.domain, c.auth));
  const typed = W.transferAuthorizationTypedData(c.domain, c.auth);
  const header = W.exactPaymentSignature(c.accepted, c.auth, c.signature, c.resource);
  return { digest, typed, header };
});
process.stdout.write(JSON.stringify(out));
"""

TERMS = LOADER + r"""
const out = input.offers.map((offer) => {
  try {
    const t = W.exactTermsOf(offer);
    return t && { price: t.price.toString(), chainId: t.chainId.toString(), asset: t.asset, payTo: t.payTo,
                  name: t.name, version: t.version, window: t.window, accepted: t.accepted };
  } catch (error) {
    return { error: error.message };
  }
});
process.stdout.write(JSON.stringify(out));
"""


address = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
case = st.fixed_dictionaries({
    # the wallet's typed data carries chainId as a JSON number (what wallets take): a safe integer
    "chain_id": st.integers(min_value=1, max_value=2**53 - 1),
    "name": st.text(min_size=0, max_size=20),
    "version": st.text(min_size=0, max_size=5),
    "token": address, "from": address, "to": address,
    "value": uint256, "valid_after": uint256, "valid_before": uint256,
    "nonce": st.binary(min_size=32, max_size=32),
    "key": st.integers(min_value=1, max_value=2**255).map(lambda n: n.to_bytes(32, "big")),
})  # fmt: skip


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(case, min_size=1, max_size=12))
def test_browser_authorization_matches_python_and_eth_account_and_parses_on_the_node(cases):
    inputs = []
    for c in cases:
        domain = {"name": c["name"], "version": c["version"], "chainId": str(c["chain_id"]), "verifyingContract": c["token"]}
        auth = {"from": c["from"], "to": c["to"], "value": str(c["value"]), "validAfter": str(c["valid_after"]),
                "validBefore": str(c["valid_before"]), "nonce": "0x" + c["nonce"].hex()}  # fmt: skip
        accepted = dict(exact_accepts(f"eip155:{c['chain_id']}", c["token"], c["to"], c["value"], 120, c["name"], c["version"]))
        accepted["payTo"] = accepted["payTo"].lower()  # a site's spelling is echoed as it is, not re-checksummed
        python_domain = TokenDomain(c["name"], c["version"], c["chain_id"], c["token"])
        python_auth = TransferAuthorization(c["from"], c["to"], c["value"], c["valid_after"], c["valid_before"], c["nonce"])
        digest = transfer_authorization_digest(python_domain, python_auth)
        signature = Account.unsafe_sign_hash(digest, c["key"]).signature
        resource = {"url": "http://127.0.0.1:1/a", "description": "a", "mimeType": "text/html"}
        inputs.append((python_auth, digest, signature, accepted, resource, c["key"]))
        c["js"] = {"domain": domain, "auth": auth, "accepted": accepted, "signature": "0x" + bytes(signature).hex(), "resource": resource}
    answers = run_bundle(DIGESTS, {"cases": [c["js"] for c in cases]})
    for (python_auth, digest, signature, accepted, resource, key), js in zip(inputs, answers, strict=True):
        assert js["digest"] == "0x" + digest.hex()
        # what the reader's wallet signs: another EIP-712 implementation hashes it to the same digest
        signed = Account.sign_message(encode_typed_data(full_message=js["typed"]), key)
        assert recover_authorizer(digest, bytes(signed.signature)) == bytes.fromhex(Account.from_key(key).address[2:])
        payment = parse_exact(js["header"])
        assert payment.authorization == python_auth and payment.signature == bytes(signature)
        document = decode_header(js["header"])
        assert document["accepted"] == accepted and document["resource"] == resource and document["x402Version"] == 2


CHANNEL_ENTRY = {"scheme": "channel", "network": "eip155:31337", "amount": "20000", "asset": "0x" + "11" * 20,
                 "payTo": "0x" + "22" * 20, "maxTimeoutSeconds": 60, "extra": {"contract": "0x" + "33" * 20}}  # fmt: skip


def exact_entry(**changes) -> dict:
    entry = dict(exact_accepts("eip155:31337", "0x" + "11" * 20, "0x" + "22" * 20, 20_000, 120, "DemoDollar", "1"))
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def test_exact_terms_pick_the_exact_entry_and_refuse_what_cannot_be_signed():
    offers = [
        {"accepts": [CHANNEL_ENTRY]},
        {"accepts": [CHANNEL_ENTRY, exact_entry()], "resource": {"url": "u"}},
        {"accepts": [exact_entry(maxTimeoutSeconds=86_400)]},
        {"accepts": [exact_entry(extra={"name": "DemoDollar"})]},
        {"accepts": [exact_entry(maxTimeoutSeconds=None)]},
        {"accepts": [exact_entry(amount="1.5")]},
        {"accepts": [exact_entry(network="solana:mainnet")]},
        {"accepts": [exact_entry(payTo="0x1234")]},
    ]
    none, both, long, no_version, no_timeout, fraction, other_network, bad_pay_to = run_bundle(TERMS, {"offers": offers})
    assert none is None
    assert both["price"] == "20000" and both["chainId"] == "31337" and both["name"] == "DemoDollar"
    assert both["accepted"] == offers[1]["accepts"][1] and both["window"] == 120
    assert long["window"] == 600  # the browser never signs a longer window than this, whatever the site allows
    assert "extra.name, extra.version" in no_version["error"]
    assert "maxTimeoutSeconds" in no_timeout["error"]
    assert "amount" in fraction["error"]
    assert "unsupported network" in other_network["error"]
    assert "error" in bad_pay_to
