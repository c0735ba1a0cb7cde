"""ERC-20 channels in the browser wallet (web/eip712.js, web/wallet.js, run from the committed bundle
in Node): the EIP-2612 Permit it hands to eth_signTypedData_v4 hashes, in eth_account's EIP-712
implementation, to the digest the token checks (the Python wallet's chain/erc20.py formula); its
call data is ChannelDeposit's and ERC-20's ABI; and against a scripted token and wallet it deposits
by permit, falls back to an approve of exactly the deposit (never more) when the token has no
permit, its permit domain is not its own, or the wallet refuses typed data, and refuses before
signing anything when the balance is short or the offer's asset is no token (docs/browser.md,
"Token channels")."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from channel_node.chain.artifacts import channel_deposit_artifact, demo_dollar_artifact
from channel_node.signing import ChannelConfig, keccak256
from channel_node.signing.eip3009 import TokenDomain
from wallet_js_helpers import LOADER, needs_node, run_bundle

pytestmark = needs_node
PERMIT_TYPEHASH = keccak256(b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")
CHAIN_ID = 31337
CONTRACT = to_checksum_address("0x" + "22" * 20)
TOKEN = to_checksum_address("0x" + "33" * 20)
PRICE = 20_000
DEPOSIT = 50 * PRICE


ENCODINGS = LOADER + r"""
const out = input.cases.map((c) => ({
  digest: W.toHex(W.permitDigest(c.domain, c.permit)),
  typed: W.permitTypedData(c.domain, c.permit),
  depositToken: W.encodeDepositToken(c.config, c.permit.value),
  withPermit: W.encodeDepositTokenWithPermit(c.config, c.permit.value, c.permit.deadline, c.r, c.vs),
  approve: W.encodeApprove(c.permit.spender, c.permit.value),
  allowance: W.encodeAllowance(c.permit.owner, c.permit.spender),
  nonces: W.encodeNonces(c.permit.owner),
  compact: W.toCompact(c.signature),
  name: W.decodeString(c.nameAnswer),
}));
process.stdout.write(JSON.stringify(out));
"""


def _address(seed: bytes) -> str:
    return to_checksum_address(keccak256(seed)[-20:])


@settings(max_examples=25, deadline=None)
@given(
    value=st.integers(0, 2**256 - 1),
    nonce=st.integers(0, 2**64),
    deadline=st.integers(0, 2**64),
    chain_id=st.integers(1, 2**53 - 1),
    name=st.text(min_size=1, max_size=20),
    version=st.sampled_from(["1", "2", "v1.0"]),
    salt=st.integers(0, 2**96 - 1),
)
def test_permit_digest_typed_data_and_call_data_match_python_and_the_abi(value, nonce, deadline, chain_id, name, version, salt):
    from eth_account import Account

    owner, spender, token = _address(b"owner"), _address(b"spender %d" % salt), _address(b"token")
    domain = {"name": name, "version": version, "chainId": chain_id, "verifyingContract": token}
    permit = {"owner": owner, "spender": spender, "value": str(value), "nonce": str(nonce), "deadline": str(deadline)}
    config = {"payer": owner, "signer": _address(b"signer"), "receiver": _address(b"receiver"), "token": token,
              "closeDelay": 3600, "salt": str(salt), "receiverAuthorizer": _address(b"authorizer")}  # fmt: skip
    key = keccak256(b"permit owner key")
    signature = Account.from_key(key).unsafe_sign_hash(keccak256(b"anything %d" % salt)).signature
    name_answer = "0x" + abi_encode(["string"], [name]).hex()
    case = {"domain": domain, "permit": permit, "config": config, "r": "0x" + "ab" * 32, "vs": "0x" + "7c" * 32,
            "signature": "0x" + bytes(signature).hex(), "nameAnswer": name_answer}  # fmt: skip
    [js] = run_bundle(ENCODINGS, {"cases": [case]})

    # The Python wallet's permit digest (chain/erc20.py): the token's separator and Permit struct.
    separator = TokenDomain(name, version, chain_id, token).separator
    fields = abi_encode(["address", "address", "uint256", "uint256", "uint256"], [owner, spender, value, nonce, deadline])
    digest = keccak256(b"\x19\x01" + separator + keccak256(PERMIT_TYPEHASH + fields))
    assert js["digest"] == "0x" + digest.hex()
    # What the wallet is asked to sign hashes to the same digest in another EIP-712 implementation.
    signable = encode_typed_data(full_message=js["typed"])
    assert keccak256(b"\x19" + signable.version + signable.header + signable.body) == digest
    assert js["typed"]["message"]["value"] == str(value), "amounts are decimal strings, never floats"

    w3 = Web3()
    channel = w3.eth.contract(address=CONTRACT, abi=channel_deposit_artifact().abi)
    cfg = ChannelConfig.create(owner, config["signer"], config["receiver"], token, 3600, salt, config["receiverAuthorizer"])
    assert js["depositToken"] == channel.encode_abi("depositToken", [cfg.as_abi_tuple(), value])
    assert js["withPermit"] == channel.encode_abi(
        "depositTokenWithPermit", [cfg.as_abi_tuple(), value, deadline, b"\xab" * 32, b"\x7c" * 32]
    )
    erc20 = w3.eth.contract(address=token, abi=demo_dollar_artifact().abi)
    assert js["approve"] == erc20.encode_abi("approve", [spender, value])
    assert js["allowance"] == erc20.encode_abi("allowance", [owner, spender])
    assert js["nonces"] == erc20.encode_abi("nonces", [owner])
    from channel_node.signing.eip712 import to_compact

    r, vs = to_compact(bytes(signature))
    assert js["compact"] == {"r": "0x" + r.hex(), "vs": "0x" + vs.hex()}
    assert js["name"] == name


# ---------------------------------------------------------------- the deposit flow against a scripted token

FLOW = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const store = new Map();
const localStorage = { getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, String(v)),
                       removeItem: (k) => store.delete(k) };
let W = null;
const payerKey = Uint8Array.from(Buffer.from(input.payerKey, "hex"));
const tok = input.token; // the scripted token's behaviour
const sel = (sig) => W.toHex(W.keccak(new TextEncoder().encode(sig)).slice(0, 4));
const word = (n) => BigInt(n).toString(16).padStart(64, "0");
const abiString = (s) => { const b = Buffer.from(s); return "0x" + word(32) + word(b.length) + b.toString("hex").padEnd(Math.ceil(b.length / 32) * 64, "0"); };
const state = { allowance: BigInt(tok.allowance || 0), balance: BigInt(tok.balance), nonce: 0n, deposited: 0n };
const log = { typed: [], txs: [], calls: [] };
const realDomain = () => ({ name: tok.name, version: tok.version || "1", chainId: 31337n, verifyingContract: input.asset });
const revert = () => { throw Object.assign(new Error("execution reverted"), { code: 3 }); };
function tokenCall(data) {
  const s = data.slice(0, 10);
  log.calls.push(s);
  if (s === sel("balanceOf(address)")) return "0x" + word(state.balance);
  if (s === sel("decimals()")) return "0x" + word(6);
  if (s === sel("symbol()")) return abiString("DUSD");
  if (s === sel("name()")) return abiString(tok.name);
  if (s === sel("version()")) return tok.version ? abiString(tok.version) : revert();
  if (s === sel("allowance(address,address)")) return "0x" + word(state.allowance);
  if (s === sel("nonces(address)")) return tok.permit ? "0x" + word(state.nonce) : revert();
  if (s === sel("DOMAIN_SEPARATOR()")) {
    if (!tok.permit) return "0x";
    const domain = tok.separatorOf ? { ...realDomain(), ...tok.separatorOf } : realDomain();
    return W.toHex(W.tokenDomainSeparator(domain));
  }
  return revert();
}
const receipts = new Map();
function execute(tx) {
  const s = tx.data.slice(0, 10);
  const words = (i) => BigInt("0x" + tx.data.slice(10 + 64 * i, 10 + 64 * (i + 1)));
  if (tx.to.toLowerCase() === input.asset.toLowerCase() && s === sel("approve(address,uint256)")) {
    state.allowance = words(1);
    return true;
  }
  if (tx.to.toLowerCase() !== input.contract.toLowerCase()) return false;
  let amount;
  if (s === sel("depositToken((address,address,address,address,uint32,uint96,address),uint256)")) amount = words(7);
  else if (s === sel("depositTokenWithPermit((address,address,address,address,uint32,uint96,address),uint256,uint256,bytes32,bytes32)")) {
    amount = words(7);
    // the token honours the permit only when it was signed over its real domain for exactly this
    if (tok.permit && tok.honoursPermit !== false && log.typed.length) {
      const t = log.typed[log.typed.length - 1];
      if (t.message.spender.toLowerCase() === input.contract.toLowerCase() && BigInt(t.message.value) === amount) {
        state.allowance = amount; state.nonce += 1n;
      }
    }
  } else return false;
  if (state.allowance < amount || state.balance < amount) return false; // TokenTransferFailed
  state.allowance -= amount; state.balance -= amount; state.deposited += amount;
  return true;
}
const ethereum = {
  request: async ({ method, params }) => {
    if (method === "eth_requestAccounts") return [W.addressOfKey(payerKey)];
    if (method === "eth_chainId") return "0x7a69";
    if (method === "eth_getCode") return params[0].toLowerCase() === input.asset.toLowerCase() && tok.noCode ? "0x" : "0x6080";
    if (method === "eth_getBlockByNumber") return { timestamp: "0x" + (1_800_000_000).toString(16) };
    if (method === "eth_call") {
      const { to, data } = params[0];
      if (to.toLowerCase() === input.contract.toLowerCase()) return "0x" + word(state.deposited) + word(0) + word(0) + word(0);
      return tokenCall(data);
    }
    if (method === "eth_signTypedData_v4") {
      const typed = JSON.parse(params[1]);
      log.typed.push(typed);
      if (input.refuseTypedData) throw Object.assign(new Error("User rejected the request."), { code: 4001 });
      const domain = { ...typed.domain, chainId: BigInt(typed.domain.chainId) };
      return W.toHex(W.signDigest(payerKey, W.permitDigest(domain, typed.message)));
    }
    if (method === "eth_sendTransaction") {
      const tx = params[0];
      log.txs.push({ to: tx.to, data: tx.data, value: tx.value });
      const hash = "0x" + word(log.txs.length);
      receipts.set(hash, { status: execute(tx) ? "0x1" : "0x0" });
      return hash;
    }
    if (method === "eth_getTransactionReceipt") return receipts.get(params[0]) || null;
    throw new Error("unexpected " + method);
  },
};
const offer = { x402Version: 2, resource: { url: "http://news.example/a" },
  accepts: [{ scheme: "channel", network: "eip155:31337", amount: String(input.price), asset: input.asset,
              payTo: "0x" + "44".repeat(20),
              extra: { contract: input.contract, receiverAuthorizer: "0x" + "00".repeat(20), once: true, minDeposit: "0" } }] };
const context = { atob, btoa, TextDecoder, TextEncoder, crypto: globalThis.crypto, localStorage, URL, console: { ...console, warn() {} },
                  setTimeout: (f) => setTimeout(f, 0), location: { href: "http://news.example/a", origin: "http://news.example" },
                  window: { ethereum } };
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.bundle, "utf8"), context);
W = vm.runInContext("ChannelWallet", context);
(async () => {
  const terms = W.termsOf(offer);
  const results = [];
  for (const step of input.steps) {
    try {
      if (step.open !== undefined) {
        const record = await W.openChannel(terms, BigInt(step.open));
        results.push({ ok: true, funded: record.funded, deposited: record.deposited });
      } else if (step.topUp !== undefined) {
        const record = await W.topUp(terms, JSON.parse(localStorage.getItem(W.storageKey(terms))), BigInt(step.topUp));
        results.push({ ok: true, funded: record.funded, deposited: record.deposited });
      } else if (step.tamperToken) {
        // the record names another token than the site's asset (a record of another site, say)
        const record = JSON.parse(localStorage.getItem(W.storageKey(terms)));
        record.config.token = step.tamperToken;
        localStorage.setItem(W.storageKey(terms), JSON.stringify(record));
        results.push({ ok: true });
      } else if (step.unit) {
        const unit = await W.loadUnit(terms);
        results.push({ ok: true, unit, price: W.money(terms, terms.price) });
      }
    } catch (error) {
      results.push({ ok: false, code: error.code || null, message: error.message });
    }
  }
  const raw = localStorage.getItem(W.storageKey(terms));
  process.stdout.write(JSON.stringify({ results, typed: log.typed, txs: log.txs, record: raw ? JSON.parse(raw) : null,
    state: { allowance: state.allowance.toString(), balance: state.balance.toString(), deposited: state.deposited.toString() } }));
})();
"""

PAYER_KEY = keccak256(b"js token payer")


def flow(steps: list[dict], token: dict | None = None, **options) -> dict:
    token = {"name": "Demo Dollar", "version": "1", "permit": True, "balance": 10 * DEPOSIT, **(token or {})}
    out = run_bundle(FLOW, {"payerKey": PAYER_KEY.hex(), "asset": TOKEN, "contract": CONTRACT, "price": PRICE,
                       "token": token, "steps": steps, **options})  # fmt: skip
    assert isinstance(out, dict)
    return out


def _decoded(txs: list[dict]) -> list[tuple[str, str, dict]]:
    w3 = Web3()
    channel = w3.eth.contract(address=CONTRACT, abi=channel_deposit_artifact().abi)
    erc20 = w3.eth.contract(address=TOKEN, abi=demo_dollar_artifact().abi)
    out = []
    for tx in txs:
        target = channel if tx["to"].lower() == CONTRACT.lower() else erc20
        function, arguments = target.decode_function_input(tx["data"])
        assert int(tx["value"], 16) == 0, "a token deposit sends no ETH"
        out.append((target.address, function.fn_name, arguments))
    return out


def test_a_token_channel_opens_with_one_permit_deposit_for_exactly_the_deposit():
    out = flow([{"open": DEPOSIT}, {"topUp": 3 * PRICE}])
    assert [r["ok"] for r in out["results"]] == [True, True], out["results"]
    assert [r["funded"] for r in out["results"]] == ["permit", "permit"]
    calls = _decoded(out["txs"])
    assert [name for _, name, _ in calls] == ["depositTokenWithPermit", "depositTokenWithPermit"], "no approve at all"
    config = calls[0][2]["c"]
    assert config["token"] == TOKEN, "the channel is in the offer's token"
    assert [args["amount"] for _, _, args in calls] == [DEPOSIT, 3 * PRICE]
    for typed, amount in zip(out["typed"], [DEPOSIT, 3 * PRICE], strict=True):
        assert typed["primaryType"] == "Permit"
        assert typed["domain"] == {"name": "Demo Dollar", "version": "1", "chainId": CHAIN_ID, "verifyingContract": TOKEN}
        assert typed["message"]["spender"] == CONTRACT and typed["message"]["value"] == str(amount)
    assert out["state"]["deposited"] == str(DEPOSIT + 3 * PRICE) == out["record"]["deposited"]
    assert out["state"]["allowance"] == "0", "the permit leaves no allowance behind"


@pytest.mark.parametrize(
    ("token", "options", "signs"),
    [
        ({"permit": False}, {}, False),  # no nonces / DOMAIN_SEPARATOR: no EIP-2612
        ({"separatorOf": {"name": "USD Coin", "version": "2"}}, {}, False),  # its separator is another token's
        ({"separatorOf": {"verifyingContract": "0x" + "55" * 20}}, {}, False),  # another contract's domain
        ({}, {"refuseTypedData": True}, True),  # the wallet refuses to sign typed data
        ({"honoursPermit": False}, {}, True),  # the token does not honour the permit it signs for
    ],
)
def test_without_a_working_permit_the_deposit_is_an_approve_of_exactly_that_amount(token, options, signs):
    out = flow([{"open": DEPOSIT}, {"topUp": 3 * PRICE}], token, **options)
    assert [r["ok"] for r in out["results"]] == [True, True], out["results"]
    assert [r["funded"] for r in out["results"]] == ["approve", "approve"]
    assert bool(out["typed"]) is signs, "a permit whose domain is not the token's own is never signed"
    calls = [(name, args) for _, name, args in _decoded(out["txs"]) if name != "depositTokenWithPermit"]
    assert calls == [
        ("approve", {"spender": CONTRACT, "amount": DEPOSIT}),
        ("depositToken", {"c": calls[1][1]["c"], "amount": DEPOSIT}),
        ("approve", {"spender": CONTRACT, "amount": 3 * PRICE}),
        ("depositToken", {"c": calls[1][1]["c"], "amount": 3 * PRICE}),
    ], "an allowance of exactly each deposit, never an unlimited one"
    assert out["state"]["deposited"] == str(DEPOSIT + 3 * PRICE) and out["state"]["allowance"] == "0"


@settings(max_examples=20, deadline=None)
@given(stale=st.integers(1, 2 * DEPOSIT), deposit=st.integers(PRICE, 2 * DEPOSIT))
def test_a_stale_allowance_is_reset_before_the_exact_approve(stale, deposit):
    """USDT-like tokens refuse to change one non-zero allowance into another: a stale one below the
    deposit goes to zero first; one covering it is used as it is. Never more than the deposit."""
    out = flow([{"open": deposit}], {"permit": False, "allowance": stale})
    assert out["results"][0]["ok"], out["results"]
    names = [(name, args.get("amount")) for _, name, args in _decoded(out["txs"])]
    if stale >= deposit:
        assert names == [("depositToken", deposit)]
    else:
        assert names == [("approve", 0), ("approve", deposit), ("depositToken", deposit)]
    assert max(a for _, a in names) <= max(deposit, stale)


@settings(max_examples=20, deadline=None)
@given(balance=st.integers(0, DEPOSIT - 1))
def test_a_balance_below_the_deposit_is_refused_before_anything_is_signed(balance):
    out = flow([{"open": DEPOSIT}], {"balance": balance})
    assert out["results"][0]["code"] == "insufficient_balance"
    assert out["typed"] == [] and out["txs"] == [], "nothing signed, nothing sent"
    assert out["record"] is None, "no channel record for a deposit that never left"


def test_a_top_up_beyond_the_balance_is_refused_before_anything_is_signed():
    out = flow([{"open": DEPOSIT}, {"topUp": 10 * DEPOSIT}])
    assert out["results"][1]["code"] == "insufficient_balance"
    assert len(out["typed"]) == 1 and len(out["txs"]) == 1, "only the open was signed and sent"


def test_a_top_up_of_a_channel_in_another_token_than_the_sites_asset_is_refused():
    out = flow([{"open": DEPOSIT}, {"tamperToken": _address(b"another token")}, {"topUp": PRICE}])
    assert out["results"][2]["code"] == "asset_mismatch"
    assert len(out["typed"]) == 1 and len(out["txs"]) == 1, "nothing signed or sent for the top-up"


def test_an_offer_whose_asset_is_no_token_contract_gets_nothing():
    out = flow([{"open": DEPOSIT}], {"noCode": True})
    assert out["results"][0]["code"] == "not_a_token"
    assert out["typed"] == [] and out["txs"] == []


def test_the_price_reads_in_the_tokens_own_decimals_and_symbol():
    out = flow([{"unit": True}])
    assert out["results"][0]["unit"] == {"decimals": 6, "symbol": "DUSD"}
    assert out["results"][0]["price"] == "0.02 DUSD"


# ---------------------------------------------------------------- a corrective 402 about other terms

REFUSAL = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const store = new Map();
const localStorage = { getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, String(v)) };
const enc = (doc) => Buffer.from(JSON.stringify(doc)).toString("base64");
const offer = (asset, contract) => ({ x402Version: 2, resource: { url: "http://news.example/a" },
  accepts: [{ scheme: "channel", network: "eip155:31337", amount: "1000", asset, payTo: "0x" + "44".repeat(20),
              extra: { contract, receiverAuthorizer: "0x" + "00".repeat(20), once: true } }] });
const sent = [];
async function fetch(url, opts) {
  const h = opts.headers["PAYMENT-SIGNATURE"];
  sent.push(JSON.parse(Buffer.from(h, "base64").toString()).payload.maxClaimableAmount);
  const doc = offer(input.answerAsset, input.answerContract);
  doc.error = "insufficient_voucher";
  doc.accepts[0].extra.channel = { charged: "5000", deposited: "1000000" };
  return { ok: false, status: 402, type: "basic", headers: { get: (n) => (n === "PAYMENT-REQUIRED" ? enc(doc) : null) } };
}
const context = { atob, btoa, TextDecoder, TextEncoder, crypto: globalThis.crypto, localStorage, fetch, URL, console,
                  setTimeout, location: { href: "http://news.example/a" }, window: {} };
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.bundle, "utf8"), context);
const W = vm.runInContext("ChannelWallet", context);
const terms = W.termsOf(offer(input.asset, input.contract));
const key = W.randomSecretKey();
const config = { payer: "0x" + "66".repeat(20), signer: W.addressOfKey(key), receiver: terms.receiver, token: terms.asset,
                 closeDelay: 3600, salt: "1", receiverAuthorizer: W.ZERO_ADDRESS };
const record = { channelId: W.channelId(terms.chainId, terms.contract, config), config, voucherKey: W.toHex(key), status: "open",
                 deposited: "1000000", charged: "0", voucher: null, unlocks: [] };
localStorage.setItem(W.storageKey(terms), JSON.stringify(record));
W.payFor(terms, record, "http://news.example/a").then(
  () => process.stdout.write(JSON.stringify({ ok: true, sent })),
  (error) => process.stdout.write(JSON.stringify({ ok: false, code: error.code || null, sent,
                                                   record: JSON.parse(localStorage.getItem(W.storageKey(terms))) })));
"""


@pytest.mark.parametrize(
    ("answer_asset", "answer_contract"),
    [(_address(b"another token"), CONTRACT), ("0x" + "00" * 20, CONTRACT), (TOKEN, _address(b"another contract"))],
)
def test_a_corrective_402_naming_another_asset_or_contract_is_not_believed(answer_asset, answer_contract):
    out = run_bundle(REFUSAL, {"asset": TOKEN, "contract": CONTRACT, "answerAsset": answer_asset, "answerContract": answer_contract})
    assert isinstance(out, dict)
    assert out["ok"] is False and out["code"] == "offer_changed"
    assert out["sent"] == ["1000"], "one voucher for the price, no resync to the figures of another channel"
    assert out["record"]["charged"] == "0" and not out["record"].get("blocked")
