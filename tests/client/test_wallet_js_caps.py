"""Caps, passes and display forms in the browser wallet (web/display.js, web/wallet.js, run from the
committed bundle in Node): the page's `$0.02`/`2¢` is amounts.py's format_display to the character;
a pass is bought with a voucher for exactly the charged total plus the pass's price, naming the pass
in the payload; receipts' cap and pass figures drive what the page shows and what it re-reads
without a click, and a re-read never signs a new price whatever a site claims
(docs/browser.md, "Caps and passes")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.amounts import Asset, Display, format_display
from wallet_js_helpers import LOADER, needs_node, run_bundle

pytestmark = needs_node
PRICE = 20_000
PASS_PRICE = 300_000
CAP = 50_000
NOW = 1_800_000_000


DISPLAY = LOADER + r"""
const out = input.cases.map((c) => {
  const form = W.displayOf(c.document, c.decimals);
  return form ? W.formatDisplay(c.value, c.decimals, form) : null;
});
process.stdout.write(JSON.stringify(out));
"""


@settings(max_examples=20, deadline=None)
@given(
    data=st.data(),
    decimals=st.integers(2, 18),
    symbol=st.sampled_from(["$", "€", "US$", "£"]),
    shown=st.integers(0, 4),
    cents=st.booleans(),
)
def test_the_page_shows_exactly_what_format_display_shows(data, decimals, symbol, shown, cents):
    shown = min(shown, decimals)  # a form never shows more decimals than the asset has (Asset refuses it)
    values = data.draw(st.lists(st.one_of(st.integers(0, 10 ** (decimals + 4)), st.integers(0, 2**128)), min_size=1, max_size=8))
    below = data.draw(st.integers(1, 10 ** (decimals + 1))) if cents else None
    asset = Asset("DUSD", decimals, "0x" + "33" * 20, Display(symbol, below, shown))
    document = {"symbol": symbol, "decimals": decimals, "shown": shown, **({"centsBelow": str(below)} if cents else {})}
    out = run_bundle(DISPLAY, {"cases": [{"document": document, "decimals": decimals, "value": str(v)} for v in values]})
    assert out == [format_display(v, asset) for v in values]


def test_a_display_form_for_other_decimals_or_malformed_is_not_used():
    good = {"symbol": "$", "decimals": 6, "shown": 2}
    cases = [
        {"document": good, "decimals": 6, "value": "20000"},
        {"document": good, "decimals": 18, "value": "20000"},  # made for another asset
        {"document": {**good, "symbol": "1$"}, "decimals": 6, "value": "1"},  # digits: could pass for an amount
        {"document": {**good, "symbol": "<b>"}, "decimals": 6, "value": "1"},
        {"document": {**good, "centsBelow": "-5"}, "decimals": 6, "value": "1"},
        {"document": {**good, "shown": 99}, "decimals": 6, "value": "1"},
        {"document": {**good, "shown": 7}, "decimals": 6, "value": "1"},  # more than the asset has
        {"document": "$", "decimals": 6, "value": "1"},
    ]
    assert run_bundle(DISPLAY, {"cases": cases}) == ["$0.02", None, None, None, None, None, None, None]


# ---------------------------------------------------------------- buying and reading against a scripted node

FLOW = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const store = new Map();
const localStorage = { getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, String(v)) };
const enc = (doc) => Buffer.from(JSON.stringify(doc)).toString("base64");
const answers = input.answers.slice();
const sent = [];
const headers = (map) => ({ get: (name) => map[name] ?? null });
async function fetch(url, opts) {
  const document = JSON.parse(Buffer.from(opts.headers["PAYMENT-SIGNATURE"], "base64").toString());
  sent.push({ url: String(url), amount: document.payload.maxClaimableAmount, pass: document.payload.pass ?? null });
  const a = answers.shift();
  if (a.status === 400) return { ok: false, status: 400, headers: headers({}), json: async () => ({ error: a.error }) };
  const receipt = { success: true, chargedAmount: String(a.charged), chargedTotal: String(a.total), deposited: "10000000",
                    ...(a.cap ? { cap: a.cap } : {}), ...(a.pass ? { pass: a.pass } : {}) };
  return { ok: true, status: 200, type: "basic", headers: headers({ "PAYMENT-RESPONSE": enc(receipt) }), text: async () => "<h1>ok</h1>" };
}
const context = { atob, btoa, TextDecoder, TextEncoder, crypto: globalThis.crypto, localStorage, fetch, URL, console,
                  setTimeout, location: { href: "http://news.example/news/a" }, window: {}, Date: { now: () => input.now * 1000 } };
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.bundle, "utf8"), context);
const W = vm.runInContext("ChannelWallet", context);
const offer = { x402Version: 2, resource: { url: "http://news.example/news/a" },
  accepts: [{ scheme: "channel", network: "eip155:31337", amount: String(input.price), asset: "0x" + "00".repeat(20),
              payTo: "0x" + "44".repeat(20),
              extra: { contract: "0x" + "22".repeat(20), receiverAuthorizer: "0x" + "00".repeat(20), once: true, ...input.extra } }] };
const terms = W.termsOf(offer);
const key = W.randomSecretKey();
const config = { payer: "0x" + "66".repeat(20), signer: W.addressOfKey(key), receiver: terms.receiver, token: terms.asset,
                 closeDelay: 3600, salt: "1", receiverAuthorizer: W.ZERO_ADDRESS };
localStorage.setItem(W.storageKey(terms), JSON.stringify({ channelId: W.channelId(terms.chainId, terms.contract, config), config,
  voucherKey: W.toHex(key), status: "open", deposited: "10000000", charged: "0", voucher: null, unlocks: [] }));
(async () => {
  const results = [];
  for (const step of input.steps) {
    const record = JSON.parse(localStorage.getItem(W.storageKey(terms)));
    try {
      const options = step.pass ? { pass: terms.passes.find((p) => p.name === step.pass) } : { reread: Boolean(step.reread) };
      const out = await W.payFor(terms, record, step.url, options);
      results.push({ ok: true, charged: out.receipt.chargedAmount });
    } catch (error) {
      results.push({ ok: false, code: error.code || null });
    }
    const after = JSON.parse(localStorage.getItem(W.storageKey(terms)));
    const progress = W.capProgress(terms, after, input.now);
    const held = W.heldPass(terms, after, input.now);
    results[results.length - 1].view = {
      price: W.effectivePrice(terms, after, input.now).toString(),
      cap: progress ? W.capText(terms, { ...progress, resetsAt: null }) : null,
      held: held ? held.name : null, kind: after.unlocks.length ? after.unlocks[after.unlocks.length - 1].kind : null,
      blocked: Boolean(after.blocked),
    };
  }
  process.stdout.write(JSON.stringify({ results, sent, terms: { cap: terms.cap ? terms.cap.name : null, passes: terms.passes.map((p) => p.name) } }));
})();
"""

CAP_EXTRA = {"cap": {"name": "news", "cap": str(CAP), "period": "month", "periodEndsAt": NOW + 86400}}
PASS_EXTRA = {"passes": [{"name": "news-day", "price": str(PASS_PRICE), "duration": 86400, "description": "All of today's news"}]}


def flow(steps, answers, extra, now=NOW) -> dict:
    out = run_bundle(FLOW, {"steps": steps, "answers": answers, "extra": extra, "price": PRICE, "now": now})
    assert isinstance(out, dict)
    return out


def _cap(paid: int) -> dict:
    return {"name": "news", "cap": str(CAP), "paid": str(paid), "resetsAt": NOW + 86400}


def test_reading_up_to_the_cap_shows_progress_then_reads_on_free():
    pages = [f"http://news.example/news/{n}" for n in range(5)]
    answers = [
        {"charged": PRICE, "total": PRICE, "cap": _cap(PRICE)},
        {"charged": PRICE, "total": 2 * PRICE, "cap": _cap(2 * PRICE)},
        {"charged": CAP - 2 * PRICE, "total": CAP, "cap": _cap(CAP)},  # the boundary: a partial charge
        {"charged": 0, "total": CAP, "cap": _cap(CAP)},
        {"charged": 0, "total": CAP, "cap": _cap(CAP)},
    ]
    steps = [{"url": pages[0]}, {"url": pages[1]}, {"url": pages[2]}, {"url": pages[3]}, {"url": pages[4], "reread": True}]
    out = flow(steps, answers, CAP_EXTRA)
    views = [r["view"] for r in out["results"]]
    assert [r["ok"] for r in out["results"]] == [True] * 5
    assert [v["price"] for v in views] == [str(PRICE), str(CAP - 2 * PRICE), "0", "0", "0"], "what the page offers next"
    assert [v["cap"] for v in views] == [
        "0.00000000000002 ETH of 0.00000000000005 ETH this month",
        "0.00000000000004 ETH of 0.00000000000005 ETH this month",
        "0.00000000000005 ETH of 0.00000000000005 ETH this month: reading on is free until then",
        "0.00000000000005 ETH of 0.00000000000005 ETH this month: reading on is free until then",
        "0.00000000000005 ETH of 0.00000000000005 ETH this month: reading on is free until then",
    ]
    assert [v["kind"] for v in views] == ["article", "article", "capped", "capped", "capped"]
    amounts = [int(s["amount"]) for s in out["sent"]]
    assert amounts[:4] == [PRICE, 2 * PRICE, 3 * PRICE, CAP + PRICE], "a click signs charged + the list price"
    assert amounts[4] == CAP + PRICE, "the re-read at the cap resends the held voucher: no new price"


def test_a_reached_cap_is_forgotten_when_its_calendar_period_ends():
    out = flow([{"url": "http://news.example/news/0"}], [{"charged": CAP, "total": CAP, "cap": _cap(CAP)}], CAP_EXTRA,
               now=NOW + 86400 + 1)  # fmt: skip
    assert out["results"][0]["view"]["price"] == str(PRICE), "a new month: the price again"


def test_a_pass_is_bought_with_one_voucher_naming_it_then_covers_the_pattern():
    answers = [
        {"charged": PASS_PRICE, "total": PASS_PRICE, "pass": {"name": "news-day", "until": NOW + 86400}},
        {"charged": 0, "total": PASS_PRICE, "pass": {"name": "news-day", "until": NOW + 86400}},
    ]
    steps = [{"url": "http://news.example/news/a", "pass": "news-day"}, {"url": "http://news.example/news/b", "reread": True}]
    out = flow(steps, answers, PASS_EXTRA)
    assert out["terms"]["passes"] == ["news-day"]
    assert out["sent"][0] == {"url": "http://news.example/news/a", "amount": str(PASS_PRICE), "pass": "news-day"}
    assert out["sent"][1] == {"url": "http://news.example/news/b", "amount": str(PASS_PRICE), "pass": None}, \
        "reading under the pass resends the held voucher: no price, no pass bought again"
    views = [r["view"] for r in out["results"]]
    assert [v["kind"] for v in views] == ["pass", "pass_read"]
    assert [v["held"] for v in views] == ["news-day", "news-day"] and views[1]["price"] == "0"


def test_a_pass_that_ended_is_not_held_and_the_page_asks_the_price_again():
    answers = [{"charged": PASS_PRICE, "total": PASS_PRICE, "pass": {"name": "news-day", "until": NOW}}]  # until is exclusive
    out = flow([{"url": "http://news.example/news/a", "pass": "news-day"}], answers, PASS_EXTRA)
    assert out["results"][0]["view"]["held"] is None and out["results"][0]["view"]["price"] == str(PRICE)


@settings(max_examples=10, deadline=None)
@given(charged=st.integers(PASS_PRICE + 1, 10 * PASS_PRICE))
def test_a_pass_receipt_charging_more_than_the_pass_price_blocks_the_site(charged):
    answers = [{"charged": charged, "total": charged, "pass": {"name": "news-day", "until": NOW + 86400}}]
    out = flow([{"url": "http://news.example/news/a", "pass": "news-day"}], answers, PASS_EXTRA)
    assert out["results"][0]["view"]["blocked"] is True


@settings(max_examples=10, deadline=None)
@given(
    until=st.integers(NOW + 1, 2**53 - 1),
    paid=st.integers(CAP, 10 * CAP),
    rereads=st.integers(1, 4),
)
def test_a_site_claiming_a_long_pass_or_a_reached_cap_gets_no_new_price_from_re_reads(until, paid, rereads):
    """Receipts are the site's word: a pass valid for ever or a cap reached make the page re-read
    without a click, and each re-read resends the held voucher, never one price more."""
    extra = {**CAP_EXTRA, **PASS_EXTRA}
    answers = [{"charged": PRICE, "total": PRICE, "cap": _cap(paid), "pass": {"name": "news-day", "until": until}}]
    answers += [{"charged": 0, "total": PRICE}] * rereads
    steps = [{"url": "http://news.example/news/0"}] + [{"url": f"http://news.example/news/{n}", "reread": True} for n in range(1, rereads + 1)]
    out = flow(steps, answers, extra)
    amounts = [int(s["amount"]) for s in out["sent"]]
    assert max(amounts) == amounts[0] == PRICE, amounts
    assert all(s["pass"] is None for s in out["sent"]), "a pass is bought only by its button"


@pytest.mark.parametrize("error", ["unknown_pass", "pass_not_covering"])
def test_a_pass_the_node_refuses_is_reported_with_its_code(error):
    out = flow([{"url": "http://news.example/news/a", "pass": "news-day"}], [{"status": 400, "error": error}], PASS_EXTRA)
    assert out["results"][0]["ok"] is False and out["results"][0]["code"] == error


def test_malformed_caps_and_passes_in_an_offer_are_left_out():
    extra = {
        "cap": {"name": "News!", "cap": "5", "period": "month"},
        "passes": [
            {"name": "ok", "price": "5", "duration": 3600},
            {"name": "ok", "price": "1", "duration": 3600},  # a second entry of that name
            {"name": "neg", "price": "-1", "duration": 3600},
            {"name": "float", "price": "0.3", "duration": 3600},
            {"name": "zero", "price": "5", "duration": 0},
            {"name": "<script>", "price": "5", "duration": 60},
        ],
    }
    out = run_bundle(FLOW, {"steps": [], "answers": [], "extra": extra, "price": PRICE, "now": NOW})
    assert out["terms"] == {"cap": None, "passes": ["ok"]}


HEADER = LOADER + r"""
const out = input.cases.map((c) => W.paymentSignature(c.network, c.contract, c.channel, c.amount, W.hexToBytes(c.signature),
                                                      undefined, undefined, c.pass));
process.stdout.write(JSON.stringify(out));
"""


@settings(max_examples=10, deadline=None)
@given(
    name=st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True),
    amount=st.integers(0, 2**128 - 1),
)
def test_the_pass_voucher_header_is_the_one_the_node_parses(name, amount):
    """The browser's `PAYMENT-SIGNATURE` buying a pass is wire/channel.py's, and the node reads the
    pass's name from it (Voucher.pass_name)."""
    from channel_node.wire.channel import parse_payment_signature, payment_signature
    from channel_node.wire.envelope import decode_header

    contract, channel, signature = "0x" + "22" * 20, b"\x07" * 32, b"\x01" * 64 + b"\x1b"
    case = {"network": "eip155:31337", "contract": contract, "channel": "0x" + channel.hex(), "amount": str(amount),
            "signature": "0x" + signature.hex(), "pass": name}  # fmt: skip
    [js] = run_bundle(HEADER, {"cases": [case]})
    expected = payment_signature("eip155:31337", contract, channel, amount, signature, pass_name=name)
    assert decode_header(js) == decode_header(expected)
    assert parse_payment_signature(js).pass_name == name
