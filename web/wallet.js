// The browser wallet of channel-node's paywall page (served as /_channel/wallet.js, built by
// scripts/build_wallet_js.py into src/channel_node/server/static/wallet.js).
//
// The reader's EIP-1193 wallet (MetaMask, ...) is asked only for on-chain steps: open (a deposit the
// reader chooses), top-up and close. At open, this script generates a voucher key in the browser and
// names it the channel's voucher signer; the key stays in localStorage and signs each unlock's
// voucher here, with no wallet pop-up. The paid content replaces the paywall in place.
//
// A channel in an ERC-20 token is opened and topped up with one transaction carrying an EIP-2612
// permit the wallet signs as typed data (eth_signTypedData_v4) for exactly the deposit, or, for a
// token without a permit (or a wallet that refuses to sign one), with `approve(contract, exactly the
// deposit)` then the plain token deposit: never an unlimited allowance (docs/browser.md, "Token channels").
//
// When the offer also lists x402's `exact` scheme, a second button pays just this page: the reader's
// wallet signs one EIP-3009 TransferWithAuthorization (eth_signTypedData_v4) for exactly the price,
// the page retries with it, and the site submits the transfer (the reader sends no transaction).

import {
  ZERO_ADDRESS,
  addressOfKey,
  channelId,
  checksumAddress,
  cooperativeCloseDigest,
  cooperativeCloseTypedData,
  decodeGetChannel,
  decodeHeader,
  decodeString,
  decodeUint,
  encodeAllowance,
  encodeApprove,
  encodeCloseCooperative,
  encodeDepositEth,
  encodeDepositToken,
  encodeDepositTokenWithPermit,
  encodeBalanceOf,
  encodeGetChannel,
  encodeNoArguments,
  encodeNonces,
  exactPaymentSignature,
  formatUnits,
  hexToBytes,
  parseUnits,
  paymentSignature,
  permitDigest,
  permitTypedData,
  randomSecretKey,
  recoverAddress,
  signDigest,
  toCompact,
  toHex,
  tokenDomainSeparator,
  transferAuthorizationDigest,
  transferAuthorizationTypedData,
  voucherDigest,
} from "./eip712.js";

import { displayOf, formatDisplay } from "./display.js";
import { bookOf, onCutShort, onDelivered, onStatedCharged, trusted, voucherNeeded } from "./ledger.js";
export * from "./display.js";
export * from "./eip712.js";
export * from "./ledger.js";

const STORAGE_PREFIX = "channel-node:v1:";
const DEFAULT_CLOSE_DELAY = 3600;
const DEFAULT_DEPOSIT_MULTIPLE = 50n;

// ------------------------------------------------------------------ terms and storage

/** The terms of the first `accepts` entry of a 402 document. */
export function termsOf(offer) {
  const accept = (offer.accepts || [])[0];
  if (!accept || accept.scheme !== "channel") throw new Error("the offer has no `channel` scheme");
  const match = /^eip155:(\d+)$/.exec(accept.network);
  if (!match) throw new Error(`unsupported network ${accept.network}`);
  const extra = accept.extra || {};
  const delay = extra.closeDelay || {};
  // The node settles only channels naming its claim key (zero: the receiver settles itself); one
  // opened with anything else would be refused (docs/browser.md).
  if (typeof extra.receiverAuthorizer !== "string") throw new Error("the offer names no receiverAuthorizer");
  return {
    network: accept.network,
    chainId: BigInt(match[1]),
    contract: checksumAddress(extra.contract),
    receiver: checksumAddress(accept.payTo),
    receiverAuthorizer: checksumAddress(extra.receiverAuthorizer),
    asset: checksumAddress(accept.asset || ZERO_ADDRESS),
    price: BigInt(accept.amount),
    minDeposit: BigInt(extra.minDeposit || "0"),
    once: extra.once !== false,
    delayMin: delay.min ?? 0,
    delayMax: delay.max ?? 2 ** 32 - 1,
    channelState: extra.channel || null,
    // How amounts read: ETH's 18 decimals; a token's are read from the token itself (loadUnit), and
    // the site's display form ($0.02, 2¢) applies only when it is made for those decimals.
    unit: accept.asset && checksumAddress(accept.asset) !== ZERO_ADDRESS ? null : { decimals: 18, symbol: "ETH" },
    displayDocument: extra.display || null,
    // Caps and passes (docs/protocol.md, "Caps and passes"; docs/browser.md, "Caps and passes").
    cap: capOf(extra.cap),
    passes: passesOf(extra.passes),
    resource: offer.resource || {},
    error: offer.error,
    message: offer.message,
  };
}

// ------------------------------------------------------------------ caps and passes (what the offer and receipts say)

const DIGITS = /^[0-9]{1,78}$/;
const NAME = /^[a-z0-9-]{1,32}$/;
const PERIOD = /^(day|week|month|[1-9][0-9]{0,3}d)$/;
const seconds = (value) => (Number.isSafeInteger(value) && value > 0 ? value : null);
const MAX_PASSES = 8;

/** The offer's (or a receipt's) `cap` object, checked: {name, cap, period, periodEndsAt, paid,
 * resetsAt} with amounts as BigInt (paid null when not stated), or null when absent or malformed. */
export function capOf(document) {
  if (!document || typeof document !== "object") return null;
  const { name, cap, period } = document;
  if (typeof name !== "string" || !NAME.test(name) || typeof cap !== "string" || !DIGITS.test(cap)) return null;
  if (period !== undefined && (typeof period !== "string" || !PERIOD.test(period))) return null;
  return {
    name,
    cap: BigInt(cap),
    period: period || null,
    periodEndsAt: seconds(document.periodEndsAt),
    paid: typeof document.paid === "string" && DIGITS.test(document.paid) ? BigInt(document.paid) : null,
    resetsAt: seconds(document.resetsAt),
  };
}

/** The offer's `passes`, checked: [{name, price, duration, description}] (malformed entries left out). */
export function passesOf(list) {
  if (!Array.isArray(list)) return [];
  const out = [];
  for (const entry of list) {
    if (!entry || typeof entry !== "object" || typeof entry.name !== "string" || !NAME.test(entry.name)) continue;
    if (typeof entry.price !== "string" || !DIGITS.test(entry.price) || !seconds(entry.duration)) continue;
    if (out.some((p) => p.name === entry.name)) continue;
    const description = typeof entry.description === "string" ? entry.description.slice(0, 200) : "";
    out.push({ name: entry.name, price: BigInt(entry.price), duration: entry.duration, description });
  }
  return out.slice(0, MAX_PASSES);
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Where the reader stands against the offer's cap: {name, cap, paid, room, reached, resetsAt,
 * period}; paid is the node's figure when the offer states one (it saw this channel's voucher), else
 * the last receipt's while its period lasts (a calendar period that ended starts again at 0; a
 * rolling window that moved is unknown, null). Null when the offer has no cap. */
export function capProgress(terms, record, now = nowSeconds()) {
  const cap = terms.cap;
  if (!cap) return null;
  let paid = cap.paid;
  let resetsAt = cap.resetsAt || cap.periodEndsAt;
  const held = record && record.caps ? record.caps[cap.name] : null;
  if (paid === null && held) {
    if (held.resetsAt && held.resetsAt > now) {
      paid = BigInt(held.paid);
      resetsAt = held.resetsAt;
    } else if (cap.period && !cap.period.endsWith("d")) {
      paid = 0n; // a calendar period that ended: the new one starts from nothing
    }
  } else if (paid === null && cap.period && !cap.period.endsWith("d")) {
    paid = 0n; // no receipt in this group yet
  }
  const room = paid === null ? null : cap.cap > paid ? cap.cap - paid : 0n;
  return { name: cap.name, cap: cap.cap, paid, room, reached: room === 0n, resetsAt, period: cap.period };
}

/** The pass this channel holds that covers the page (the offer lists the passes covering it), or null. */
export function heldPass(terms, record, now = nowSeconds()) {
  if (!record || !record.passes) return null;
  for (const pass of terms.passes) {
    const until = record.passes[pass.name];
    if (Number.isSafeInteger(until) && until > now) return { ...pass, until };
  }
  return null;
}

/** What the next read of this page should cost: 0 under a held pass or a reached cap, the cap's
 * room when it is below the price, else the price. The node decides; this is what the page shows. */
export function effectivePrice(terms, record, now = nowSeconds()) {
  if (heldPass(terms, record, now)) return 0n;
  const progress = capProgress(terms, record, now);
  if (progress && progress.room !== null && progress.room < terms.price) return progress.room;
  return terms.price;
}

/** A receipt's `cap` and `pass` figures kept in the record (the page's own view of them). */
function keepSpending(record, receipt) {
  const cap = capOf(receipt.cap);
  if (cap && cap.paid !== null) {
    record.caps = { ...(record.caps || {}), [cap.name]: { cap: cap.cap.toString(), paid: cap.paid.toString(), resetsAt: cap.resetsAt } };
  }
  const pass = receipt.pass;
  if (pass && typeof pass === "object" && typeof pass.name === "string" && NAME.test(pass.name) && seconds(pass.until)) {
    record.passes = { ...(record.passes || {}), [pass.name]: pass.until };
  }
}

export function storageKey(terms) {
  const key = `${STORAGE_PREFIX}${terms.chainId}:${terms.contract}:${terms.receiver}:${terms.asset}`;
  // A channel for another authorizer is another channel (the node changed its claim key).
  return (terms.receiverAuthorizer === ZERO_ADDRESS ? key : `${key}:${terms.receiverAuthorizer}`).toLowerCase();
}

function load(terms) {
  const raw = localStorage.getItem(storageKey(terms));
  return raw ? JSON.parse(raw) : null;
}

function save(terms, record) {
  localStorage.setItem(storageKey(terms), JSON.stringify(record));
}

/** Keeps the channel stored under these terms (its configuration and voucher key: what closing or
 * finalizing it takes) under a key of its own before a new channel takes the place: opening a new
 * channel never forgets a deposit. */
function archive(terms) {
  const raw = localStorage.getItem(storageKey(terms));
  if (!raw) return;
  const old = JSON.parse(raw);
  if (old && old.channelId) localStorage.setItem(`${storageKey(terms)}:${String(old.channelId).toLowerCase()}`, raw);
}

// ------------------------------------------------------------------ EIP-1193

function provider() {
  if (!window.ethereum || typeof window.ethereum.request !== "function") {
    throw new Error("no Ethereum wallet in this browser (install MetaMask or another EIP-1193 wallet)");
  }
  return window.ethereum;
}

const rpc = (method, params = []) => provider().request({ method, params });

async function connect(terms) {
  const [account] = await rpc("eth_requestAccounts");
  if (!account) throw new Error("the wallet shared no account");
  const chain = BigInt(await rpc("eth_chainId"));
  if (chain !== terms.chainId) {
    try {
      await rpc("wallet_switchEthereumChain", [{ chainId: "0x" + terms.chainId.toString(16) }]);
    } catch (error) {
      throw new Error(`switch your wallet to chain ${terms.chainId} (it is on ${chain})`);
    }
  }
  return checksumAddress(account);
}

async function sendAndWait(tx) {
  const hash = await rpc("eth_sendTransaction", [tx]);
  for (let i = 0; i < 240; i++) {
    const receipt = await rpc("eth_getTransactionReceipt", [hash]);
    if (receipt) {
      if (BigInt(receipt.status) !== 1n) throw new Error(`transaction ${hash} failed`);
      return receipt;
    }
    await sleep(1000);
  }
  throw new Error(`transaction ${hash} not mined after 4 minutes`);
}

async function readChannel(terms, channel) {
  const answer = await rpc("eth_call", [{ to: terms.contract, data: encodeGetChannel(channel) }, "latest"]);
  return decodeGetChannel(answer);
}

// Deposits only grow while a channel is open; the node's figure can lag the chain's (top-up).
const larger = (a, b) => (BigInt(a) > BigInt(b) ? BigInt(a) : BigInt(b)).toString();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const hexQuantity = (n) => "0x" + BigInt(n).toString(16);

// ------------------------------------------------------------------ channel operations

// The longest close delay the browser agrees to: what the deposit stays locked for if the site stops
// cooperating. A site asking more (up to the contract's 30 days) is refused before anything is sent.
const MAX_CLOSE_DELAY = 24 * 3600;

function closeDelayFor(terms) {
  const delay = Math.min(Math.max(DEFAULT_CLOSE_DELAY, Number(terms.delayMin)), Number(terms.delayMax));
  if (!Number.isSafeInteger(delay) || delay < 0 || delay > MAX_CLOSE_DELAY) {
    throw new Error(`the site asks a close delay of ${terms.delayMin} s or more: your deposit would stay locked that long ` +
      `if it stopped cooperating (at most ${MAX_CLOSE_DELAY} s here)`);
  }
  return delay;
}

function randomSalt() {
  const raw = crypto.getRandomValues(new Uint8Array(12));
  return BigInt(toHex(raw)).toString();
}

// ------------------------------------------------------------------ ERC-20 deposits

// How long a deposit's permit stays valid (as the Python wallet's PERMIT_LIFETIME): long enough for a
// slow block, short enough not to linger.
const PERMIT_LIFETIME = 3600;
const MAX_DECIMALS = 36;
const isToken = (terms) => terms.asset !== ZERO_ADDRESS;
const call = (to, data) => rpc("eth_call", [{ to, data }, "latest"]);

/** An eth_call that may not be implemented: null for a revert or an empty answer. */
async function optionalCall(to, data) {
  try {
    const answer = await call(to, data);
    return typeof answer === "string" && answer.length > 2 ? answer : null;
  } catch (error) {
    return null;
  }
}

function refused(message, code) {
  return Object.assign(new Error(message), { code });
}

/** `amount` base units of the site's asset as people read them: "0.02 DUSD", "0.00002 ETH", or
 * base units with the token's address while its decimals are unknown. */
export function money(terms, amount) {
  const unit = terms.unit;
  if (!unit || unit.decimals === null || unit.decimals === undefined) return `${BigInt(amount)} base units of token ${terms.asset}`;
  const form = displayOf(terms.displayDocument, unit.decimals);
  if (form) return formatDisplay(amount, unit.decimals, form);
  return `${formatUnits(amount, unit.decimals)} ${unit.symbol || `units of token ${terms.asset}`}`;
}

/** Sets `terms.unit` from the token's own decimals() and symbol() (the chain's word, not the
 * site's); `fallback` (the page's markup) only for what the token does not answer. */
export async function loadUnit(terms, fallback = {}) {
  if (!isToken(terms) || terms.unit) return terms.unit;
  let decimals = null;
  let symbol = null;
  try {
    const answer = await optionalCall(terms.asset, encodeNoArguments("decimals()"));
    const n = answer ? decodeUint(answer) : null;
    if (n !== null && n <= BigInt(MAX_DECIMALS)) decimals = Number(n);
    const text = await optionalCall(terms.asset, encodeNoArguments("symbol()"));
    if (text) symbol = cleanSymbol(decodeString(text));
  } catch (error) { /* no wallet, or answers of another type */ }
  if (decimals === null && Number.isSafeInteger(fallback.decimals) && fallback.decimals >= 0 && fallback.decimals <= MAX_DECIMALS) {
    decimals = fallback.decimals;
  }
  terms.unit = { decimals, symbol: symbol || cleanSymbol(fallback.symbol) };
  return terms.unit;
}

// A symbol is anyone's text: shown only when it is a few letters, digits or currency signs.
const cleanSymbol = (text) => (typeof text === "string" && /^[\p{L}\p{N}\p{Sc}]{1,12}$/u.test(text) ? text : null);

/** What the token holds for `owner` (its balanceOf), refusing an asset without code or balanceOf:
 * an offer naming an account, or a contract that is no token, gets no deposit and no signature. */
export async function readToken(terms, owner) {
  const code = await rpc("eth_getCode", [terms.asset, "latest"]);
  if (typeof code !== "string" || code.length <= 2) {
    throw refused(`the site's asset ${terms.asset} is not a token contract on chain ${terms.chainId}`, "not_a_token");
  }
  const balanceAnswer = await optionalCall(terms.asset, encodeBalanceOf(owner));
  if (!balanceAnswer) throw refused(`the site's asset ${terms.asset} does not answer balanceOf: not an ERC-20 token`, "not_a_token");
  return { balance: decodeUint(balanceAnswer) };
}

/** The token's EIP-2612 permit terms for `owner`: {domain, nonce}, or {reason} when it has none the
 * wallet can sign for. The domain is built from the token's own name() and version() (version "1"
 * when absent), this chain and the token's address, and must give the token's own
 * DOMAIN_SEPARATOR(): a token (or offer) whose separator is another contract's is not signed for. */
export async function permitTerms(terms, owner) {
  const [separator, nonceAnswer, nameAnswer, versionAnswer] = [
    await optionalCall(terms.asset, encodeNoArguments("DOMAIN_SEPARATOR()")),
    await optionalCall(terms.asset, encodeNonces(owner)),
    await optionalCall(terms.asset, encodeNoArguments("name()")),
    await optionalCall(terms.asset, encodeNoArguments("version()")),
  ];
  if (!separator || !nonceAnswer || !nameAnswer) return { reason: "no_permit" };
  let domain;
  try {
    domain = {
      name: decodeString(nameAnswer),
      version: versionAnswer ? decodeString(versionAnswer) : "1",
      chainId: terms.chainId,
      verifyingContract: terms.asset,
    };
  } catch (error) {
    return { reason: "no_permit" };
  }
  if (toHex(tokenDomainSeparator(domain)) !== separator.slice(0, 66).toLowerCase()) return { reason: "domain_mismatch" };
  return { domain, nonce: decodeUint(nonceAnswer) };
}

async function latestTimestamp() {
  const block = await rpc("eth_getBlockByNumber", ["latest", false]);
  return BigInt(block.timestamp);
}

const userRejected = (error) => error && (error.code === 4001 || error.code === "ACTION_REJECTED");

/** Deposits `amount` (base units) into the channel of `config`: ETH with the call; a token by permit,
 * else by an approve of exactly `amount`. Returns how: "eth" | "permit" | "approve". */
export async function depositFunds(terms, payer, config, amount) {
  if (!isToken(terms)) {
    await sendAndWait({ from: payer, to: terms.contract, value: hexQuantity(amount), data: encodeDepositEth(config) });
    return "eth";
  }
  if (checksumAddress(config.token) !== terms.asset) throw refused("the channel's token is not the site's asset", "asset_mismatch");
  const token = await readToken(terms, payer);
  if (token.balance < amount) {
    throw refused(`a deposit of ${money(terms, amount)} needs more than this account holds (${money(terms, token.balance)})`,
      "insufficient_balance");
  }
  const permit = await permitTerms(terms, payer);
  if (permit.domain) {
    const message = { owner: payer, spender: terms.contract, value: amount, nonce: permit.nonce,
                      deadline: (await latestTimestamp()) + BigInt(PERMIT_LIFETIME) };
    let signature = null;
    try {
      signature = await rpc("eth_signTypedData_v4", [payer, JSON.stringify(permitTypedData(permit.domain, message))]);
    } catch (error) {
      signature = null; // the wallet would not sign typed data: an approve of exactly the deposit instead
    }
    if (signature) {
      if (recoverAddress(permitDigest(permit.domain, message), signature).toLowerCase() !== payer.toLowerCase()) {
        throw new Error("the wallet's typed-data signature does not match the permit digest");
      }
      const { r, vs } = toCompact(signature);
      try {
        await sendAndWait({ from: payer, to: terms.contract, value: "0x0",
                            data: encodeDepositTokenWithPermit(config, amount, message.deadline, r, vs) });
        return "permit";
      } catch (error) {
        if (userRejected(error)) throw error;
        console.warn("the permit deposit failed; approving exactly the deposit instead", error);
      }
    }
  }
  // No permit: let the contract take exactly this deposit. A token such as USDT refuses to change one
  // non-zero allowance into another, so a stale one is set to zero first.
  const allowance = decodeUint(await call(terms.asset, encodeAllowance(payer, terms.contract)));
  if (allowance < amount) {
    if (allowance > 0n) await sendAndWait({ from: payer, to: terms.asset, value: "0x0", data: encodeApprove(terms.contract, 0n) });
    await sendAndWait({ from: payer, to: terms.asset, value: "0x0", data: encodeApprove(terms.contract, amount) });
  }
  await sendAndWait({ from: payer, to: terms.contract, value: "0x0", data: encodeDepositToken(config, amount) });
  return "approve";
}

/** Opens a channel with `deposit` (base units of the site's asset): the voucher key is stored before
 * any money moves; a token balance below the deposit is refused before anything is signed. */
export async function openChannel(terms, deposit) {
  const minimum = terms.price > terms.minDeposit ? terms.price : terms.minDeposit;
  if (deposit < minimum) throw new Error(`the deposit must be at least ${money(terms, minimum)}`);
  const closeDelay = closeDelayFor(terms);
  const payer = await connect(terms);
  if (isToken(terms)) {
    const token = await readToken(terms, payer);
    if (token.balance < deposit) {
      throw refused(`a deposit of ${money(terms, deposit)} needs more than this account holds (${money(terms, token.balance)})`,
        "insufficient_balance");
    }
  }
  const key = randomSecretKey();
  const config = {
    payer,
    signer: addressOfKey(key),
    receiver: terms.receiver,
    token: terms.asset,
    closeDelay,
    salt: randomSalt(),
    receiverAuthorizer: terms.receiverAuthorizer,
  };
  const id = channelId(terms.chainId, terms.contract, config);
  const record = {
    channelId: id, config, voucherKey: toHex(key), status: "opening", deposited: "0", charged: "0",
    voucher: null, unlocks: [], network: terms.network, contract: terms.contract,
  };
  archive(terms);
  save(terms, record);
  record.funded = await depositFunds(terms, payer, config, deposit);
  const onChain = await readChannel(terms, id);
  record.status = "open";
  record.deposited = onChain.deposited.toString();
  save(terms, record);
  return record;
}

export async function topUp(terms, record, amount) {
  const payer = await connect(terms);
  if (payer.toLowerCase() !== record.config.payer.toLowerCase()) throw new Error(`switch your wallet to ${record.config.payer}`);
  record.funded = await depositFunds(terms, payer, record.config, amount);
  record.deposited = (await readChannel(terms, record.channelId)).deposited.toString();
  save(terms, record);
  return record;
}

/** Cooperative close: the node consents, the payer sends closeCooperative and gets the rest back. */
export async function closeChannel(terms, record, base = location.origin) {
  const payer = await connect(terms);
  if (payer.toLowerCase() !== record.config.payer.toLowerCase()) throw new Error(`switch your wallet to ${record.config.payer}`);
  let amount = BigInt(record.charged);
  let consent = null;
  for (let attempt = 0; attempt < 2 && !consent; attempt++) {
    const typed = cooperativeCloseTypedData(terms.chainId, terms.contract, record.channelId, amount);
    const payerSignature = await rpc("eth_signTypedData_v4", [payer, JSON.stringify(typed)]);
    const digest = cooperativeCloseDigest(terms.chainId, terms.contract, record.channelId, amount);
    if (recoverAddress(digest, payerSignature).toLowerCase() !== payer.toLowerCase()) {
      throw new Error("the wallet's typed-data signature does not match the close digest");
    }
    const response = await fetch(new URL("/_channel/cooperative-close", base), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ channelId: record.channelId, amount: amount.toString(), payerSignature }),
    });
    const answer = await response.json();
    if (response.ok) {
      consent = { ...answer, payerSignature };
    } else if (answer.error === "close_amount_above_charged" && answer.channel && attempt === 0
               && BigInt(answer.channel.charged) < amount) {
      amount = BigInt(answer.channel.charged); // the node sold less than we counted: the rest comes back
    } else if (answer.error === "close_amount_too_low" && answer.channel && attempt === 0) {
      // The node charged more than we recorded: its figure is agreed to only up to the highest voucher
      // this browser signed (what the receiver could claim with it anyway), never beyond.
      const stated = BigInt(answer.channel.charged);
      const signed = record.voucher ? BigInt(record.voucher.amount) : 0n;
      if (stated > signed) {
        throw new Error(`the node asks ${money(terms, stated)} to close; this browser only ever signed ${money(terms, signed)}`);
      }
      amount = stated;
    } else {
      throw new Error(`the node refused to close: ${answer.error} ${answer.message || ""}`);
    }
  }
  if (!consent) throw new Error("the node did not consent to the close");
  // The close pays the receiver exactly the amount this browser chose and signed, whatever the
  // node's answer names: the payer sends the close itself, so the contract checks no payer signature.
  if (consent.amount === undefined || BigInt(consent.amount) !== amount) {
    throw new Error("the node's consent names another amount than the one this browser agreed to");
  }
  const closeAmount = amount;
  // The contract takes the receiver's consent from the receiver or the channel's authorizer: check
  // it before spending gas on a close that would revert.
  const consenter = recoverAddress(
    cooperativeCloseDigest(terms.chainId, terms.contract, record.channelId, closeAmount), consent.receiverSignature,
  ).toLowerCase();
  const authorizer = (record.config.receiverAuthorizer || ZERO_ADDRESS).toLowerCase();
  if (consenter !== record.config.receiver.toLowerCase() && (authorizer === ZERO_ADDRESS || consenter !== authorizer)) {
    throw new Error("the node's consent is not signed by the receiver or the channel's authorizer");
  }
  const data = encodeCloseCooperative(record.config, closeAmount, consent.payerSignature, consent.receiverSignature);
  await sendAndWait({ from: payer, to: terms.contract, value: "0x0", data });
  const onChain = await readChannel(terms, record.channelId);
  record.status = onChain.settled ? "closed" : record.status;
  record.closedAmount = closeAmount.toString();
  record.refunded = (BigInt(record.deposited) - closeAmount).toString();
  save(terms, record);
  return record;
}

/** Signs (or reuses) a voucher covering what the reader accepts as charged plus `price` (web/ledger.js). */
function voucherFor(terms, record, price) {
  const needed = voucherNeeded(bookOf(record), price);
  if (needed > BigInt(record.deposited)) return null;
  const held = record.voucher ? BigInt(record.voucher.amount) : -1n;
  if (held >= needed) return record.voucher;
  const digest = voucherDigest(terms.chainId, terms.contract, record.channelId, needed);
  record.voucher = { amount: needed.toString(), signature: toHex(signDigest(hexToBytes(record.voucherKey), digest)) };
  save(terms, record);
  return record.voucher;
}

function header(terms, record, voucher, passName = null) {
  return paymentSignature(
    terms.network, terms.contract, record.channelId, voucher.amount, hexToBytes(voucher.signature), record.config,
    undefined, passName,
  );
}

/** What an unlock was, for the panel: "pass" (a pass bought), "pass_read" (read under one),
 * "capped" (less than the price because of the cap), or "article". */
function unlockKind(terms, receipt, pass, charged) {
  if (pass && charged > 0n) return "pass";
  if (charged === 0n && receipt.pass) return "pass_read";
  if (receipt.cap && charged < terms.price) return "capped";
  return "article";
}

function misbehaved() {
  return Object.assign(
    new Error("this site claims charges for content this browser never received: stopped paying it"),
    { code: "server_misbehaved" },
  );
}

/** Applies a ledger step to the record; saves it, and throws once the site is blocked. */
function book(terms, record, step) {
  const next = step(bookOf(record));
  Object.assign(record, next, { charged: (BigInt(next.received) + BigInt(next.lost)).toString() });
  save(terms, record);
  if (next.blocked) throw misbehaved();
}

/** The reader trusts a blocked site again (what it lost stays counted as charged). */
export function trustSite(terms) {
  const record = load(terms);
  if (record) book(terms, record, trusted);
  return record;
}

/** Fetches `url` paying with the channel: {response, receipt} or throws with the node's code. With
 * `pass` (one of the offer's passes), it buys that pass: the voucher covers its price, the payload
 * names it, and the page is served under it. */
export async function payFor(terms, record, url, { reread = false, pass = null } = {}) {
  const target = new URL(url, location.href);
  const path = target.pathname + target.search; // behind a reverse proxy the query is part of a purchase
  if (bookOf(record).blocked) throw misbehaved();
  // What this request may cost at most: the page's price, or the pass's (which covers the page).
  const price = pass ? pass.price : terms.price;
  let resynced = false;
  for (let attempt = 0; attempt < 20; attempt++) {
    // A re-read (started by the page loading, not by the reader) never pays a price: it resends the
    // held voucher, or one for the charged total the node states, and stops if that does not do.
    const voucher = reread ? (record.voucher && !resynced ? record.voucher : voucherFor(terms, record, 0n))
      : voucherFor(terms, record, price);
    if (!voucher) throw Object.assign(new Error("the deposit is used up: top up to keep reading"), { code: "top_up" });
    // The voucher goes to this URL only: a redirect is not followed with it (the browser would send
    // the header on to the page redirected to, of this site or, after a preflight, another one).
    const response = await fetch(url, {
      headers: { "PAYMENT-SIGNATURE": header(terms, record, voucher, pass && !reread ? pass.name : null), Accept: "*/*" },
      cache: "no-store",
      redirect: "manual",
    });
    if (response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400)) {
      throw Object.assign(new Error("the site answered the payment with a redirect: not following it with a voucher"),
        { code: "redirected" });
    }
    if (response.ok) {
      const receipt = decodeHeader(response.headers.get("PAYMENT-RESPONSE"));
      const charged = BigInt(receipt.chargedAmount);
      if (charged > price || BigInt(receipt.chargedTotal) > BigInt(voucher.amount)) {
        book(terms, record, (b) => ({ ...b, blocked: true }));
      }
      // A charge counts as received only once the whole body arrived (a body cut short is not).
      let text;
      try {
        text = await response.text();
      } catch (error) {
        book(terms, record, (b) => onCutShort(b, receipt.chargedAmount, receipt.chargedTotal, price));
        throw Object.assign(new Error("the page did not arrive whole"), { code: "cut_short" });
      }
      book(terms, record, (b) => onDelivered(b, receipt.chargedAmount, receipt.chargedTotal, price));
      record.deposited = larger(record.deposited, receipt.deposited);
      keepSpending(record, receipt);
      record.unlocks.push({ path, cost: receipt.chargedAmount, at: Date.now(), kind: unlockKind(terms, receipt, pass, charged) });
      save(terms, record);
      return { response, receipt, text };
    }
    const requiredHeader = response.headers.get("PAYMENT-REQUIRED");
    if (!requiredHeader) {
      // A 400 such as unknown_pass or pass_not_covering: the node's code, when its body names one.
      let code = null;
      try {
        const body = await response.json();
        code = typeof body.error === "string" ? body.error : typeof body.code === "string" ? body.code : null;
      } catch (error) { /* not JSON */ }
      throw Object.assign(new Error(`the node answered ${response.status}${code ? ` (${code})` : ""}`), { code });
    }
    const refusal = termsOf(decodeHeader(requiredHeader));
    if (refusal.asset !== terms.asset || refusal.contract !== terms.contract || refusal.receiver !== terms.receiver) {
      // A corrective 402 for another asset, contract or receiver is not about this channel: its
      // figures are not believed, and nothing more is signed for it.
      throw refused("the site's answer names another asset, contract or receiver than its offer: not paying", "offer_changed");
    }
    const state = refusal.channelState;
    if ((refusal.error === "insufficient_voucher" || refusal.error === "stale_voucher") && state) {
      // Resync only as far as the ledger allows: a node claiming charges for content this browser
      // never received gets one price of that, then nothing.
      book(terms, record, (b) => onStatedCharged(b, state.charged, terms.price));
      record.deposited = larger(record.deposited, state.deposited);
      if (reread && resynced) {
        throw Object.assign(new Error("this page is not bought on this channel yet: unlock it to pay"), { code: "not_bought" });
      }
      resynced = true;
      save(terms, record);
    } else if (refusal.error === "exceeds_deposit") {
      record.deposited = (await readChannel(terms, record.channelId)).deposited.toString();
      save(terms, record);
      // Asked to top up only when the chain agrees: a node behind the chain (or a site that would have
      // the reader lock more) is told to wait, and no more is deposited for it.
      if (BigInt(record.deposited) >= BigInt(voucher.amount)) {
        throw Object.assign(new Error("the site has not seen your deposit yet: try again in a moment"), { code: "deposit_not_seen" });
      }
      throw Object.assign(new Error("the deposit is used up: top up to keep reading"), { code: "top_up" });
    } else if (refusal.error === "channel_unknown") {
      await sleep(1500); // the deposit is not yet confirmed deep enough for the node
    } else if (refusal.error === "channel_closing" || refusal.error === "channel_settled") {
      // Believed only when the chain shows the close pending or done: otherwise a site could make the
      // reader leave a funded channel for a new deposit, one after another (docs/browser.md).
      const onChain = await readChannel(terms, record.channelId);
      if (!onChain.settled && onChain.closeDeadline === 0n) {
        throw Object.assign(new Error("the site says this channel is closing, but the chain shows it open: not paying"),
          { code: "channel_open_on_chain" });
      }
      record.status = "closed";
      save(terms, record);
      throw Object.assign(new Error("this channel is closing: open a new one"), { code: refusal.error });
    } else {
      throw Object.assign(new Error(`payment refused: ${refusal.error} ${refusal.message || ""}`), { code: refusal.error });
    }
  }
  throw new Error("the node did not accept the payment; try again later");
}

// ------------------------------------------------------------------ x402 `exact`: one signature per page

// The longest an authorization signed here stays valid, whatever the site allows: a site that never
// submits it cannot hold the reader's signature longer than this (docs/browser.md, "The exact unlock").
const MAX_EXACT_WINDOW = 600;
const EXACT_PENDING_RETRIES = 20;

/** The `exact` entry of a 402 document, checked, or null when the offer lists none. */
export function exactTermsOf(offer) {
  const accepted = (offer.accepts || []).find((entry) => entry && entry.scheme === "exact");
  if (!accepted) return null;
  const match = /^eip155:(\d+)$/.exec(accepted.network);
  if (!match) throw new Error(`unsupported network ${accepted.network}`);
  const extra = accepted.extra || {};
  if (typeof extra.name !== "string" || typeof extra.version !== "string") {
    throw new Error("the exact offer names no token domain (extra.name, extra.version)");
  }
  if (typeof accepted.amount !== "string" || !/^[0-9]{1,78}$/.test(accepted.amount)) throw new Error("the exact offer has no amount");
  const timeout = accepted.maxTimeoutSeconds;
  if (!Number.isSafeInteger(timeout) || timeout <= 0) throw new Error("the exact offer has no maxTimeoutSeconds");
  return {
    accepted, // echoed verbatim in the payment: the site compares its strings
    network: accepted.network,
    chainId: BigInt(match[1]),
    asset: checksumAddress(accepted.asset),
    payTo: checksumAddress(accepted.payTo),
    price: BigInt(accepted.amount),
    name: extra.name,
    version: extra.version,
    window: Math.min(timeout, MAX_EXACT_WINDOW),
    resource: offer.resource || null,
  };
}

const exactKey = (terms) => `${STORAGE_PREFIX}exact:${terms.chainId}:${terms.asset}:${terms.payTo}`.toLowerCase();

/** The authorizations this browser signed for a site (spent money from the moment they are signed). */
export function exactRecords(terms) {
  const raw = localStorage.getItem(exactKey(terms));
  return raw ? JSON.parse(raw) : [];
}

function saveExact(terms, entry) {
  const records = exactRecords(terms).filter((r) => r.nonce !== entry.nonce);
  records.push(entry);
  localStorage.setItem(exactKey(terms), JSON.stringify(records.slice(-200)));
}

/** Pays `url` with one signed transfer of exactly the price: {response, receipt, text} or throws
 * with the site's code. The reader's wallet signs typed data only; the site sends the transaction. */
export async function payExact(terms, url) {
  const target = new URL(url, location.href);
  const path = target.pathname + target.search;
  const payer = await connect(terms);
  const balance = BigInt(await rpc("eth_call", [{ to: terms.asset, data: encodeBalanceOf(payer) }, "latest"]));
  if (balance < terms.price) {
    throw Object.assign(new Error(`your balance of token ${terms.asset} (${balance}) is below the price (${terms.price})`),
      { code: "insufficient_balance" });
  }
  const domain = { name: terms.name, version: terms.version, chainId: terms.chainId, verifyingContract: terms.asset };
  const auth = {
    from: payer,
    to: terms.payTo,
    value: terms.price,
    validAfter: 0n,
    validBefore: BigInt(Math.floor(Date.now() / 1000) + terms.window),
    nonce: toHex(crypto.getRandomValues(new Uint8Array(32))),
  };
  const signature = await rpc("eth_signTypedData_v4", [payer, JSON.stringify(transferAuthorizationTypedData(domain, auth))]);
  if (recoverAddress(transferAuthorizationDigest(domain, auth), signature).toLowerCase() !== payer.toLowerCase()) {
    throw new Error("the wallet's typed-data signature does not match the transfer authorization");
  }
  const entry = {
    path, nonce: auth.nonce, value: terms.price.toString(), validBefore: auth.validBefore.toString(),
    status: "signed", transaction: null, at: Date.now(),
  };
  saveExact(terms, entry); // recorded before it leaves the page: what was signed is known after a crash
  const header = exactPaymentSignature(terms.accepted, auth, signature, terms.resource);
  for (let attempt = 0; attempt < EXACT_PENDING_RETRIES; attempt++) {
    const response = await fetch(url, {
      headers: { "PAYMENT-SIGNATURE": header, Accept: "*/*" },
      cache: "no-store",
      redirect: "manual",
    });
    if (response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400)) {
      throw Object.assign(new Error("the site answered the payment with a redirect: not following it"), { code: "redirected" });
    }
    if (response.ok) {
      const receiptHeader = response.headers.get("PAYMENT-RESPONSE");
      const receipt = receiptHeader ? decodeHeader(receiptHeader) : {};
      const text = await response.text();
      Object.assign(entry, { status: receipt.success ? "paid" : "served", transaction: receipt.transaction || null });
      saveExact(terms, entry);
      return { response, receipt, text };
    }
    const requiredHeader = response.headers.get("PAYMENT-REQUIRED");
    if (!requiredHeader) throw new Error(`the site answered ${response.status}`);
    const refusal = decodeHeader(requiredHeader);
    // Still settling: the same header is the same payment (docs/protocol.md); ask again with it.
    if (refusal.error === "settlement_pending" && BigInt(Math.floor(Date.now() / 1000)) < auth.validBefore) {
      await sleep(1500);
      continue;
    }
    Object.assign(entry, { status: "refused", error: refusal.error });
    saveExact(terms, entry);
    throw Object.assign(new Error(`payment refused: ${refusal.error} ${refusal.message || ""}`), { code: refusal.error });
  }
  throw Object.assign(new Error("the site has not settled the payment yet: reload the page in a moment"), { code: "settlement_pending" });
}

function amountOf(value, asset) {
  return asset.toLowerCase() === ZERO_ADDRESS ? eth(value) : `${value} units of token ${asset}`;
}

async function unlockExact(exact) {
  if (busy) return;
  busy = true;
  for (const button of document.querySelectorAll("#channel-paywall button, #channel-wallet button")) button.disabled = true;
  setStatus("Sign the payment in your wallet ...");
  try {
    const { receipt, text } = await payExact(exact, location.href);
    showContent(text);
    const note = element(
      "p",
      { id: "channel-exact-receipt", "data-transaction": receipt.transaction || "" },
      `Paid ${amountOf(exact.price, exact.asset)} with one signature`,
      receipt.transaction ? ` (transaction ${receipt.transaction}).` : ".",
    );
    document.body.append(element("aside", { id: "channel-exact" }, note));
  } catch (error) {
    console.error(error);
    setStatus(error.message || String(error), "error");
  } finally {
    busy = false;
    for (const button of document.querySelectorAll("#channel-paywall button, #channel-wallet button")) button.disabled = false;
  }
}

// ------------------------------------------------------------------ page

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function eth(wei) {
  return `${formatUnits(wei)} ETH`;
}

/** The decimals of the deposit and top-up fields: the token's, or 0 (base units) while unknown. */
const decimalsOf = (terms) => (terms.unit && terms.unit.decimals !== null ? terms.unit.decimals : 0);

function showContent(html) {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  if (parsed.title) document.title = parsed.title;
  for (const link of parsed.head.querySelectorAll('link[rel="stylesheet"], style')) {
    document.head.append(document.importNode(link, true));
  }
  const container = element("div", { id: "channel-content" });
  for (const node of [...parsed.body.childNodes]) {
    if (node.nodeName !== "SCRIPT") container.append(document.importNode(node, true));
  }
  const paywall = $("channel-paywall");
  paywall.replaceWith(container);
}

function renderPanel(terms, record, note = "") {
  let panel = $("channel-wallet");
  if (!panel) {
    panel = element("aside", { id: "channel-wallet", "aria-label": "your payment channel" });
    document.body.append(panel);
  }
  panel.replaceChildren();
  if (!record) return;
  const remaining = BigInt(record.deposited) - BigInt(record.charged);
  panel.append(
    element("h2", {}, "Your channel with this site"),
    element(
      "p",
      {},
      "Remaining deposit: ",
      element("strong", { id: "channel-remaining" }, money(terms, remaining)),
      ` of ${money(terms, record.deposited)}`,
      record.status === "closed" ? " (closed)" : "",
    ),
  );
  // Where the reader stands on this page's cap and pass, as the receipts said.
  const progress = capProgress(terms, record);
  if (progress && progress.paid !== null) {
    panel.append(element("p", { id: "channel-panel-cap" }, `Cap ${progress.name}: ${capText(terms, progress)}`));
  }
  const held = heldPass(terms, record);
  if (held) panel.append(element("p", { id: "channel-panel-pass" }, `Your ${held.name} pass: free reading until ${dateWords(held.until)}`));
  const list = element("ol", { id: "channel-unlocks" });
  for (const unlock of record.unlocks.slice(-20)) {
    const free = { pass_read: "free (pass)", capped: "free (cap reached)" }[unlock.kind] || "free (already paid)";
    const paid = unlock.kind === "pass" ? `${money(terms, unlock.cost)} (pass)` : unlock.kind === "capped"
      ? `${money(terms, unlock.cost)} (capped)` : money(terms, unlock.cost);
    const cost = BigInt(unlock.cost) === 0n ? free : paid;
    list.append(element("li", { "data-cost": unlock.cost, "data-kind": unlock.kind || "article" }, `${unlock.path}: ${cost}`));
  }
  if (record.unlocks.length) panel.append(element("p", {}, "Unlocks:"), list);
  if (bookOf(record).blocked) {
    const trust = element("button", { id: "channel-trust", type: "button" }, "Trust this site again");
    trust.addEventListener("click", () => act(terms, "Trusting this site again ...", async () => ({ record: trustSite(terms) })));
    panel.append(
      element("p", { id: "channel-blocked" }, "Stopped paying: this site claimed charges for content this browser never received."),
      element("p", {}, trust),
    );
  }
  if (record.status === "open") {
    const amount = element("input", { id: "channel-topup-amount", inputmode: "decimal", size: "10",
                                      value: formatUnits(terms.price * 10n, decimalsOf(terms)) });
    const topup = element("button", { id: "channel-topup", type: "button" }, "Top up");
    const close = element("button", { id: "channel-close", type: "button" }, "Close channel and get the rest back");
    topup.addEventListener("click", () =>
      act(terms, "Topping up (confirm in your wallet) ...", async () => topUp(terms, load(terms), parseUnits(amount.value, decimalsOf(terms)))),
    );
    close.addEventListener("click", () =>
      act(terms, "Closing (sign and confirm in your wallet) ...", async () => {
        const closed = await closeChannel(terms, load(terms));
        return { record: closed, note: `Channel closed: ${money(terms, closed.refunded)} returned to ${closed.config.payer}.` };
      }),
    );
    const unit = terms.unit && terms.unit.decimals !== null ? terms.unit.symbol || "" : "base units";
    panel.append(element("p", {}, element("label", {}, "Add ", amount, ` ${unit} `), topup), element("p", {}, close));
  } else if (record.status === "closed" && record.refunded) {
    panel.append(element("p", { id: "channel-closed" }, `Closed: ${money(terms, record.closedAmount)} paid, ${money(terms, record.refunded)} returned.`));
  }
  panel.append(element("p", { id: "channel-wallet-status", role: "status" }, note));
}

function setStatus(text, kind = "info") {
  const target = $("channel-status") || $("channel-wallet-status");
  if (target) {
    target.textContent = text;
    target.dataset.kind = kind;
  }
}

let busy = false;

async function act(terms, message, work) {
  if (busy) return;
  busy = true;
  for (const button of document.querySelectorAll("#channel-paywall button, #channel-wallet button")) button.disabled = true;
  setStatus(message);
  try {
    const outcome = await work();
    const record = outcome && outcome.record ? outcome.record : load(terms);
    renderPanel(terms, record, (outcome && outcome.note) || "");
    setStatus((outcome && outcome.note) || "");
  } catch (error) {
    console.error(error);
    renderPanel(terms, load(terms));
    setStatus(error.message || String(error), "error");
  } finally {
    busy = false;
    for (const button of document.querySelectorAll("#channel-paywall button, #channel-wallet button")) button.disabled = false;
    refreshPaywall(terms);
  }
}

async function unlock(terms, options = {}) {
  const response = await payFor(terms, load(terms), location.href, options);
  showContent(response.text);
  const cost = BigInt(response.receipt.chargedAmount);
  const record = load(terms);
  const kind = record && record.unlocks.length ? record.unlocks[record.unlocks.length - 1].kind : "article";
  if (kind === "pass") {
    const until = record.passes && record.passes[options.pass.name];
    return { note: `Bought the ${options.pass.name} pass for ${money(terms, cost)}` + (until ? `: free reading until ${dateWords(until)}.` : ".") };
  }
  if (cost === 0n) {
    if (kind === "pass_read") return { note: "Read with your pass: free." };
    if (kind === "capped") return { note: "Free: you have reached this site's cap for the period." };
    return { note: "Already paid: shown again for free." };
  }
  return { note: `Unlocked for ${money(terms, cost)}.` };
}

const PERIOD_WORDS = { day: "today", week: "this week", month: "this month" };

function periodWords(period) {
  if (!period) return "";
  return PERIOD_WORDS[period] || `in any ${period.slice(0, -1)} days`;
}

function dateWords(unix) {
  return new Date(unix * 1000).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

function durationWords(duration) {
  if (duration % 604800 === 0) return `${duration / 604800}-week`;
  if (duration % 86400 === 0) return `${duration / 86400}-day`;
  if (duration % 3600 === 0) return `${duration / 3600}-hour`;
  return `${duration}-second`;
}

/** "$1.40 of $2.00 this month, resets 1 Jan 2027, 00:00", from the offer and the receipts. */
export function capText(terms, progress) {
  const cap = money(terms, progress.cap);
  const period = periodWords(progress.period);
  if (progress.paid === null) return `Never more than ${cap} ${period} on ${progress.name}`.trim();
  let text = `${money(terms, progress.paid)} of ${cap} ${period}`.trim();
  if (progress.resetsAt) text += `, resets ${dateWords(progress.resetsAt)}`;
  if (progress.reached) text += ": reading on is free until then";
  return text;
}

/** The paywall's buttons and cap line as the channel's record stands (effective price, held pass). */
function refreshPaywall(terms) {
  const button = $("channel-unlock");
  if (!button) return;
  const record = load(terms);
  const open = record && record.status === "open";
  const deposit = $("channel-deposit-row");
  if (deposit) deposit.hidden = Boolean(open);
  const unit = $("channel-deposit-unit");
  if (unit) unit.textContent = terms.unit && terms.unit.decimals !== null ? terms.unit.symbol || "" : "base units";
  const progress = capProgress(terms, record);
  const capLine = $("channel-cap");
  if (capLine && progress) {
    capLine.textContent = capText(terms, progress);
    capLine.dataset.paid = progress.paid === null ? "" : progress.paid.toString();
    capLine.dataset.reached = String(progress.reached);
  }
  const held = heldPass(terms, record);
  const price = effectivePrice(terms, record);
  const priceText = $("channel-price");
  if (priceText) priceText.textContent = money(terms, price);
  if (held) button.textContent = `Read with your ${held.name} pass (until ${dateWords(held.until)})`;
  else if (price === 0n) button.textContent = open ? "Read free (cap reached)" : "Open a channel and read free (cap reached)";
  else button.textContent = open ? `Unlock for ${money(terms, price)}` : `Open a channel and unlock for ${money(terms, price)}`;
  for (const passButton of document.querySelectorAll("button[data-pass]")) {
    const pass = terms.passes.find((p) => p.name === passButton.dataset.pass);
    passButton.hidden = !pass || Boolean(held && held.name === pass.name);
    if (!pass) continue;
    const what = `the ${durationWords(pass.duration)} pass for ${money(terms, pass.price)}`;
    passButton.textContent = open ? `Buy ${what}` : `Open a channel and buy ${what}`;
  }
  const passPrice = $("channel-pass-price");
  const offered = terms.passes.find((p) => passPrice && p.name === passPrice.dataset.pass);
  if (passPrice && offered) passPrice.textContent = money(terms, offered.price);
}

/** Opens a channel with the deposit the reader typed, when there is none open yet; `atLeast` is
 * what the first payment needs (a pass's price), refused before anything is signed when the deposit
 * is smaller. */
async function ensureOpen(terms, atLeast = 0n) {
  const current = load(terms);
  if (current && current.status === "open") return;
  const deposit = parseUnits($("channel-deposit").value, decimalsOf(terms));
  if (deposit < atLeast) throw new Error(`the deposit must cover ${money(terms, atLeast)} for this`);
  setStatus("Opening a channel (confirm the deposit in your wallet) ...");
  await openChannel(terms, deposit);
}

export async function start() {
  const data = $("channel-offer");
  if (!data) return;
  const offer = JSON.parse(data.textContent);
  const exact = exactTermsOf(offer);
  const exactButton = $("channel-exact-unlock");
  if (exactButton && exact) exactButton.addEventListener("click", () => unlockExact(exact));
  const terms = termsOf(offer);
  const depositInput = $("channel-deposit");
  if (isToken(terms)) {
    // The deposit field reads in the token's units: its decimals come from the token itself. Until
    // they are known the field and the buttons wait (nothing typed is read in the wrong unit, and
    // the suggestion below never lands in the middle of what the reader types).
    const waiting = [depositInput, ...document.querySelectorAll("#channel-paywall button")].filter(Boolean);
    for (const control of waiting) control.disabled = true;
    const hint = depositInput ? { decimals: Number(depositInput.dataset.decimals), symbol: depositInput.dataset.symbol } : {};
    try {
      await loadUnit(terms, hint);
    } finally {
      for (const control of waiting) control.disabled = false;
    }
  }
  if (depositInput && !depositInput.value) {
    const suggested = terms.price * DEFAULT_DEPOSIT_MULTIPLE;
    depositInput.value = formatUnits(suggested > terms.minDeposit ? suggested : terms.minDeposit, decimalsOf(terms));
  }
  const record = load(terms);
  if (record && record.status === "opening") {
    // The page closed while the deposit was on its way: the chain says whether it arrived.
    readChannel(terms, record.channelId)
      .then((onChain) => {
        if (onChain.deposited > 0n) Object.assign(record, { status: "open", deposited: onChain.deposited.toString() });
        save(terms, record);
        renderPanel(terms, record);
        refreshPaywall(terms);
      })
      .catch(() => {});
  }
  renderPanel(terms, record);
  refreshPaywall(terms);
  const button = $("channel-unlock");
  if (button) {
    button.addEventListener("click", () =>
      act(terms, "Unlocking ...", async () => {
        await ensureOpen(terms);
        return unlock(terms);
      }),
    );
  }
  // One button per pass the offer sells for this page: one click buys it (opening a channel first
  // when there is none) and shows the page under it.
  for (const passButton of document.querySelectorAll("button[data-pass]")) {
    passButton.addEventListener("click", () =>
      act(terms, "Buying the pass ...", async () => {
        const pass = terms.passes.find((p) => p.name === passButton.dataset.pass);
        if (!pass) throw new Error("the offer no longer sells this pass");
        await ensureOpen(terms, pass.price);
        return unlock(terms, { pass });
      }),
    );
  }
  // Shown again at once, without the reader's click and never for a new price (a re-read): a
  // resource this channel already bought (once per channel), one a held pass covers, or one in a
  // group whose cap this channel has reached.
  const path = location.pathname + location.search;
  if (record && record.status === "open" && record.voucher) {
    const progress = capProgress(terms, record);
    if (terms.once && record.unlocks.some((u) => u.path === path)) {
      act(terms, "Already paid: loading ...", () => unlock(terms, { reread: true }));
    } else if (heldPass(terms, record)) {
      act(terms, "Your pass covers this page: loading ...", () => unlock(terms, { reread: true }));
    } else if (progress && progress.reached) {
      act(terms, "Your cap is reached: loading ...", () => unlock(terms, { reread: true }));
    }
  }
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}
