"""Red-team variants against the browser wallet (web/wallet.js, through the committed bundle): a
node (or the origin behind it) that answers a voucher with a redirect, cuts a charged page short,
or claims the channel is closing while the chain shows it open. The bundle runs in node's vm with
a scripted `fetch`, `localStorage` and EIP-1193 provider (docs/security.md, "The wallet's exposure
bound")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.signing import keccak256
from wallet_js_helpers import needs_node, run_bundle

PRICE = 1000
PAGE = "http://news.example/articles/a.html"

RUNNER = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const store = new Map();
const localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
const enc = (doc) => Buffer.from(JSON.stringify(doc)).toString("base64");
const headers = (map) => ({
  get: (name) => {
    for (const [k, v] of Object.entries(map)) if (k.toLowerCase() === name.toLowerCase()) return v;
    return null;
  },
});
const answers = input.answers.slice();
const txs = [];
let W = null;
const payerKey = Uint8Array.from(Buffer.from(input.payerKey, "hex"));
const receiverKey = Uint8Array.from(Buffer.from(input.receiverKey, "hex"));
const sent = [];
const offer = (error, extra = {}) => ({
  x402Version: 2, error, resource: { url: input.page },
  accepts: [{ scheme: "channel", network: "eip155:31337", amount: String(input.price), asset: "0x" + "00".repeat(20),
              payTo: W.addressOfKey(receiverKey),
              extra: { contract: "0x" + "22".repeat(20), receiverAuthorizer: "0x" + "00".repeat(20), once: true, ...extra } }],
});
async function fetch(url, opts = {}) {
  if (String(url).endsWith("/_channel/cooperative-close")) {
    const body = JSON.parse(opts.body);
    sent.push({ url: String(url), amount: null, close: body.amount });
    const a = answers.shift();
    const contract = W.checksumAddress("0x" + "22".repeat(20));
    const sign = (amount) =>
      W.toHex(W.signDigest(receiverKey, W.cooperativeCloseDigest(31337n, contract, body.channelId, BigInt(amount))));
    if (a.kind === "too_low" || a.kind === "above") {
      const error = a.kind === "too_low" ? "close_amount_too_low" : "close_amount_above_charged";
      return { ok: false, status: 409, json: async () => ({ error, channel: { charged: String(a.charged) } }) };
    }
    const amount = a.amount ?? body.amount;
    return { ok: true, status: 200, json: async () => ({ amount: String(amount), receiverSignature: sign(amount) }) };
  }
  const h = (opts.headers || {})["PAYMENT-SIGNATURE"];
  const amount = h ? JSON.parse(Buffer.from(h, "base64").toString()).payload.maxClaimableAmount : null;
  sent.push({ url: String(url), amount, redirect: opts.redirect || "follow" });
  const a = answers.shift() || { kind: "402", error: "insufficient_voucher" };
  if (a.kind === "redirect") {
    if (opts.redirect === "manual") return { ok: false, status: 0, type: "opaqueredirect", headers: headers({}), text: async () => "" };
    if (opts.redirect === "error") throw new TypeError("redirected");
    return fetch(new URL(a.location, url).href, opts); // as a browser follows: the same headers
  }
  if (a.kind === "receipt" || a.kind === "cut") {
    const receipt = { success: true, network: "eip155:31337", chargedAmount: String(a.charged), chargedTotal: String(a.total),
                      deposited: "1000000" };
    return {
      ok: true, status: 200, type: "basic", headers: headers({ "PAYMENT-RESPONSE": enc(receipt) }),
      text: a.kind === "cut" ? async () => { throw new TypeError("network error: body cut short"); } : async () => "<h1>ok</h1>",
    };
  }
  const doc = offer(a.error);
  if (a.error === "insufficient_voucher") doc.accepts[0].extra.channel = { charged: String(a.charged ?? 0), deposited: "1000000" };
  return { ok: false, status: 402, type: "basic", headers: headers({ "PAYMENT-REQUIRED": enc(doc) }), text: async () => "{}" };
}
const word = (n) => BigInt(n).toString(16).padStart(64, "0");
const ethereum = {
  request: async ({ method, params }) => {
    if (method === "eth_call")
      return "0x" + word(input.chainDeposit ?? 1000000) + word(0) + word(input.chainCloseDeadline || 0) + word(input.chainSettled ? 1 : 0);
    if (method === "eth_requestAccounts") return [W.addressOfKey(payerKey)];
    if (method === "eth_signTypedData_v4") {
      const typed = JSON.parse(params[1]);
      const digest = W.cooperativeCloseDigest(31337n, typed.domain.verifyingContract, typed.message.channelId, BigInt(typed.message.claimAmount));
      return W.toHex(W.signDigest(payerKey, digest));
    }
    if (method === "eth_chainId") return "0x7a69";
    if (method === "eth_sendTransaction") { txs.push(params[0].data); return "0x" + "44".repeat(32); }
    if (method === "eth_getTransactionReceipt") return { status: "0x1" };
    throw new Error("unexpected " + method);
  },
};
const context = { atob, btoa, TextDecoder, TextEncoder, crypto: globalThis.crypto, localStorage, fetch, URL, console,
                  setTimeout: (f) => setTimeout(f, 0), location: { href: input.page, origin: new URL(input.page).origin },
                  window: { ethereum } };
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.bundle, "utf8"), context);
W = vm.runInContext("ChannelWallet", context);
const terms = W.termsOf(offer(undefined, input.closeDelay ? { closeDelay: input.closeDelay } : {}));
const key = W.randomSecretKey();
const config = { payer: W.addressOfKey(payerKey), signer: W.addressOfKey(key), receiver: terms.receiver, token: W.ZERO_ADDRESS,
                 closeDelay: 3600, salt: "1", receiverAuthorizer: W.ZERO_ADDRESS };
const id = W.channelId(terms.chainId, terms.contract, config);
localStorage.setItem(W.storageKey(terms), JSON.stringify({
  channelId: id, config, voucherKey: W.toHex(key), status: "open", deposited: "1000000", charged: "0", voucher: null,
  unlocks: [], network: terms.network, contract: terms.contract, ...(input.seed || {}),
}));
if (input.seedVoucher) {
  const record = JSON.parse(localStorage.getItem(W.storageKey(terms)));
  const amount = BigInt(input.seedVoucher);
  record.voucher = { amount: amount.toString(), signature: W.toHex(W.signDigest(key, W.voucherDigest(terms.chainId, terms.contract, id, amount))) };
  localStorage.setItem(W.storageKey(terms), JSON.stringify(record));
}
(async () => {
  const results = [];
  for (const step of input.steps) {
    try {
      if (step === "open") await W.openChannel(terms, 50n * terms.price);
      else if (step === "close") await W.closeChannel(terms, JSON.parse(localStorage.getItem(W.storageKey(terms))), "http://news.example");
      else {
        const record = JSON.parse(localStorage.getItem(W.storageKey(terms)));
        const out = typeof step === "string" ? await W.payFor(terms, record, step)
          : await W.payFor(terms, record, step.reread, { reread: true });
        results.push({ ok: true, charged: out.receipt.chargedAmount, text: out.text });
        continue;
      }
      results.push({ ok: true });
    } catch (error) {
      results.push({ ok: false, code: error.code || null, message: error.message });
    }
  }
  const record = JSON.parse(localStorage.getItem(W.storageKey(terms)));
  process.stdout.write(JSON.stringify({ results, sent, record, txs, first: id, keys: [...store.keys()],
                                        stored: [...store.values()].map((v) => JSON.parse(v).channelId) }));
})();
"""

pytestmark = needs_node


def run(steps, answers, **chain) -> dict:
    payload = {"page": PAGE, "price": PRICE, "steps": steps, "answers": answers,
               "payerKey": keccak256(b"js payer").hex(), "receiverKey": keccak256(b"js receiver").hex(), **chain}  # fmt: skip
    out: dict = run_bundle(RUNNER, payload)
    return out


@pytest.mark.parametrize(
    "location", ["/articles/b.html", "http://news.example/articles/b.html", "https://news.example/articles/a.html",
                 "http://evil.example/steal", "//evil.example/x", "a.html?again=1"],
)  # fmt: skip
def test_a_redirect_answering_a_voucher_is_not_followed_with_it(location):
    out = run([PAGE], [{"kind": "redirect", "location": location}, {"kind": "receipt", "charged": PRICE, "total": PRICE}])
    with_voucher = [s for s in out["sent"] if s["amount"] is not None]
    assert [s["url"] for s in with_voucher] == [PAGE], "the voucher went only to the page that asked for it"
    assert out["results"][0]["ok"] is False and out["results"][0]["code"] == "redirected"


@settings(max_examples=30, deadline=None)
@given(script=st.lists(st.sampled_from(["honest", "honest", "cut", "cut_free"]), min_size=1, max_size=6))
def test_a_page_cut_short_after_the_charge_is_not_received_and_blocks(script):
    """Each step buys one article; `cut` charges it and cuts the body short. What the reader signed
    stays at most what it received plus one price, and a cut charged page blocks the site."""
    answers, total = [], 0
    for kind in script:
        if kind == "cut_free":
            answers.append({"kind": "cut", "charged": 0, "total": total})
        else:
            total += PRICE
            answers.append({"kind": "receipt" if kind == "honest" else "cut", "charged": PRICE, "total": total})
    out = run([PAGE] * len(script), answers)
    delivered, blocked = 0, False
    for kind, result in zip(script, out["results"], strict=True):
        if blocked:
            assert result["code"] == "server_misbehaved", "a blocked site is not paid"
            continue
        if kind == "honest":
            assert result["ok"] and result["text"] == "<h1>ok</h1>"
            delivered += PRICE
        else:
            blocked = kind == "cut"  # a charged page cut short is a claim for content never received
            assert result["ok"] is False and result["code"] == ("server_misbehaved" if blocked else "cut_short")
    signed = max((int(s["amount"]) for s in out["sent"] if s["amount"] is not None), default=0)
    assert signed <= delivered + PRICE, f"signed {signed} for {delivered} delivered"
    assert out["record"]["blocked"] is blocked
    assert int(out["record"]["received"]) == delivered


def test_a_site_claiming_the_channel_is_closing_while_the_chain_shows_it_open_keeps_it():
    out = run([PAGE, PAGE], [{"kind": "402", "error": "channel_closing"}, {"kind": "402", "error": "channel_settled"}])
    assert [r["code"] for r in out["results"]] == ["channel_open_on_chain"] * 2
    assert out["record"]["status"] == "open" and out["record"]["channelId"] == out["first"]


def test_a_channel_really_closing_on_chain_is_left_and_a_new_one_never_forgets_it():
    out = run([PAGE, "open"], [{"kind": "402", "error": "channel_closing"}], chainCloseDeadline=2_000_000_000)
    assert out["results"][0]["code"] == "channel_closing" and out["results"][1]["ok"]
    assert out["record"]["channelId"] != out["first"], "the new channel is the one in use"
    assert out["first"] in out["stored"], "the old channel (its configuration and voucher key) is still stored"


DEPOSIT = 1_000_000


def _close_amount(data: str) -> int:
    from web3 import Web3

    from channel_node.chain.artifacts import channel_deposit_artifact

    contract = Web3().eth.contract(abi=channel_deposit_artifact().abi)
    function, arguments = contract.decode_function_input(data)
    assert function.fn_name == "closeCooperative"
    return arguments["claimAmount"]


@pytest.mark.parametrize(
    ("answer", "closes_at"),
    [
        ({"kind": "consent"}, 2 * PRICE),  # honest: the charged total the browser recorded
        ({"kind": "consent", "amount": DEPOSIT}, None),  # consent to another amount than the one asked
        ({"kind": "consent", "amount": 3 * PRICE}, None),
        ({"kind": "too_low", "charged": DEPOSIT}, None),  # "you owe the whole deposit"
        ({"kind": "too_low", "charged": 3 * PRICE}, 3 * PRICE),  # up to the highest voucher: it could claim that anyway
        ({"kind": "above", "charged": PRICE}, PRICE),  # the node sold less than the browser counted: the rest back
        ({"kind": "above", "charged": 3 * PRICE}, None),  # "above" yet naming more: no close
    ],
)
def test_a_cooperative_close_pays_the_receiver_only_what_the_browser_agreed_to(answer, closes_at):
    seed = {"received": str(2 * PRICE), "charged": str(2 * PRICE), "deposited": str(DEPOSIT)}
    answers = [answer] + ([{"kind": "consent"}] if answer["kind"] in ("too_low", "above") else [])
    out = run(["close"], answers, seed=seed, seedVoucher=str(3 * PRICE))
    if closes_at is None:
        assert out["results"][0]["ok"] is False and out["txs"] == [], "no close sent"
    else:
        assert out["results"][0]["ok"], out["results"]
        [data] = out["txs"]
        assert _close_amount(data) == closes_at


@pytest.mark.parametrize(("chain_deposit", "code"), [(DEPOSIT, "deposit_not_seen"), (PRICE // 2, "top_up")])
def test_the_reader_is_asked_to_top_up_only_when_the_chain_shows_the_deposit_used_up(chain_deposit, code):
    out = run([PAGE], [{"kind": "402", "error": "exceeds_deposit"}], chainDeposit=chain_deposit)
    assert out["results"][0]["code"] == code


@settings(max_examples=25, deadline=None)
@given(
    answers=st.lists(
        st.one_of(
            st.builds(lambda c: {"kind": "402", "error": "insufficient_voucher", "charged": c}, st.sampled_from([0, 2 * PRICE, 3 * PRICE])),
            st.builds(lambda c: {"kind": "receipt", "charged": c, "total": 3 * PRICE}, st.sampled_from([0, PRICE])),
            st.just({"kind": "402", "error": "stale_voucher"}),
        ),
        min_size=1, max_size=4,
    ),
    query=st.sampled_from(["", "?page=2"]),
)  # fmt: skip
def test_a_re_read_started_by_the_page_never_signs_a_new_price(answers, query):
    """The page loads and re-reads what the channel bought, without the reader's click: whatever the
    node answers (corrective 402s, a page with another query that is not bought), that re-read signs
    at most the charged total the browser accepts, never one price more."""
    seed = {"received": str(2 * PRICE), "charged": str(2 * PRICE)}
    out = run([{"reread": PAGE + query}], answers, seed=seed, seedVoucher=str(2 * PRICE))
    amounts = [int(s["amount"]) for s in out["sent"] if s["amount"] is not None]
    lies = any(a["kind"] == "402" and a.get("charged", 0) > 2 * PRICE for a in answers)
    # the held voucher; above it only the one price a node claiming charges never received may cost
    assert max(amounts) <= 2 * PRICE + (PRICE if lies else 0), amounts
    assert len(amounts) <= 2, "one resend after a corrective 402, then the re-read stops"


@pytest.mark.parametrize(
    ("close_delay", "opens"),
    [({"min": 900, "max": 2592000}, True), ({"min": 2592000, "max": 2592000}, False), ({"min": 86401}, False),
     ({"min": 900, "max": 1800}, True), ({"min": "x"}, False)],
)  # fmt: skip
def test_a_site_asking_a_long_close_delay_gets_no_deposit(close_delay, opens):
    """The close delay is how long the deposit stays locked if the site stops cooperating: an offer
    that forces a long one (up to the contract's 30 days) is refused before any transaction."""
    out = run(["open"], [], closeDelay=close_delay)
    assert out["results"][0]["ok"] is opens
    assert (len(out["txs"]) == 1) is opens
