// EIP-712 hashing, voucher signing and the few ABI encodings the browser wallet needs.
// Byte-identical to src/channel_node/signing/eip712.py and ChannelDeposit.sol (tests/test_wallet_js.py
// compares them). Pure: no DOM, no network.

import { secp256k1 } from "@noble/curves/secp256k1.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { bytesToHex, concatBytes, hexToBytes as nobleHexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";

export const DOMAIN_NAME = "ChannelDeposit";
export const DOMAIN_VERSION = "1";
export const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
const UINT128_MAX = (1n << 128n) - 1n;
const UINT96_MAX = (1n << 96n) - 1n;
const UINT32_MAX = (1n << 32n) - 1n;

export const keccak = (bytes) => keccak_256(bytes);
const typehash = (text) => keccak_256(utf8ToBytes(text));

export const DOMAIN_TYPEHASH = typehash("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
export const CHANNEL_TYPEHASH = typehash(
  "Channel(address payer,address signer,address receiver,address token,uint32 closeDelay,uint96 salt,address receiverAuthorizer)",
);
export const VOUCHER_TYPEHASH = typehash("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
export const COOPERATIVE_CLOSE_TYPEHASH = typehash("CooperativeClose(bytes32 channelId,uint128 claimAmount)");

// ------------------------------------------------------------------ bytes

export function hexToBytes(hex) {
  if (typeof hex !== "string" || !/^0x[0-9a-fA-F]*$/.test(hex) || hex.length % 2) throw new Error(`not 0x hex: ${hex}`);
  return nobleHexToBytes(hex.slice(2));
}

export const toHex = (bytes) => "0x" + bytesToHex(bytes);

export function word(value) {
  const n = BigInt(value);
  if (n < 0n || n >= 1n << 256n) throw new Error(`does not fit uint256: ${value}`);
  return nobleHexToBytes(n.toString(16).padStart(64, "0"));
}

export function addressBytes(address) {
  const raw = hexToBytes(address);
  if (raw.length !== 20) throw new Error(`not an address: ${address}`);
  return raw;
}

const addressWord = (address) => concatBytes(new Uint8Array(12), addressBytes(address));

function bytes32(value) {
  const raw = typeof value === "string" ? hexToBytes(value) : value;
  if (raw.length !== 32) throw new Error("expected 32 bytes");
  return raw;
}

function checkRange(name, value, max) {
  const n = BigInt(value);
  if (n < 0n || n > max) throw new Error(`${name} out of range: ${value}`);
  return n;
}

// ------------------------------------------------------------------ addresses

/** EIP-55 checksum form of a 20-byte address. */
export function checksumAddress(address) {
  const lower = bytesToHex(addressBytes(address));
  const hash = bytesToHex(keccak_256(utf8ToBytes(lower)));
  let out = "0x";
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  return out;
}

export function addressOfPublicKey(uncompressed) {
  return checksumAddress(toHex(keccak_256(uncompressed.slice(1)).slice(-20)));
}

export function addressOfKey(secretKey) {
  return addressOfPublicKey(secp256k1.getPublicKey(bytes32(secretKey), false));
}

// ------------------------------------------------------------------ EIP-712

export function domainSeparator(chainId, contract) {
  return keccak_256(
    concatBytes(
      DOMAIN_TYPEHASH,
      typehash(DOMAIN_NAME),
      typehash(DOMAIN_VERSION),
      word(chainId),
      addressWord(contract),
    ),
  );
}

export function hashTypedData(chainId, contract, structHash) {
  return keccak_256(concatBytes(new Uint8Array([0x19, 0x01]), domainSeparator(chainId, contract), structHash));
}

/** config: {payer, signer, receiver, token, closeDelay, salt, receiverAuthorizer} (addresses as 0x hex,
 * numbers or decimal strings; receiverAuthorizer absent means the zero address, as in ChannelDeposit.sol). */
export function channelStructHash(config) {
  return keccak_256(concatBytes(CHANNEL_TYPEHASH, configWords(config)));
}

export function channelId(chainId, contract, config) {
  return toHex(hashTypedData(chainId, contract, channelStructHash(config)));
}

function amountDigest(typeHash, chainId, contract, channel, amount) {
  const struct = keccak_256(concatBytes(typeHash, bytes32(channel), word(checkRange("amount", amount, UINT128_MAX))));
  return hashTypedData(chainId, contract, struct);
}

export const voucherDigest = (chainId, contract, channel, amount) =>
  amountDigest(VOUCHER_TYPEHASH, chainId, contract, channel, amount);

export const cooperativeCloseDigest = (chainId, contract, channel, amount) =>
  amountDigest(COOPERATIVE_CLOSE_TYPEHASH, chainId, contract, channel, amount);

/** The typed data a wallet signs with eth_signTypedData_v4 for a cooperative close: same digest. */
export function cooperativeCloseTypedData(chainId, contract, channel, amount) {
  return {
    types: {
      EIP712Domain: [
        { name: "name", type: "string" },
        { name: "version", type: "string" },
        { name: "chainId", type: "uint256" },
        { name: "verifyingContract", type: "address" },
      ],
      CooperativeClose: [
        { name: "channelId", type: "bytes32" },
        { name: "claimAmount", type: "uint128" },
      ],
    },
    primaryType: "CooperativeClose",
    domain: { name: DOMAIN_NAME, version: DOMAIN_VERSION, chainId: Number(chainId), verifyingContract: contract },
    message: { channelId: channel, claimAmount: BigInt(amount).toString() },
  };
}

// ------------------------------------------------------------------ signatures

export function randomSecretKey() {
  return secp256k1.utils.randomSecretKey();
}

/** 65-byte r || s || v (v = 27 or 28), low-s, RFC 6979: the same bytes as the Python `sign_digest`. */
export function signDigest(secretKey, digest) {
  const recovered = secp256k1.sign(digest, bytes32(secretKey), { prehash: false, format: "recovered", lowS: true });
  return concatBytes(recovered.slice(1), new Uint8Array([recovered[0] + 27]));
}

/** The address that signed `digest` (65-byte r || s || v signature). */
export function recoverAddress(digest, signature) {
  const raw = typeof signature === "string" ? hexToBytes(signature) : signature;
  if (raw.length !== 65) throw new Error("signature must be 65 bytes");
  const v = raw[64] >= 27 ? raw[64] - 27 : raw[64];
  const recovered = concatBytes(new Uint8Array([v]), raw.slice(0, 64));
  const point = secp256k1.recoverPublicKey(recovered, digest, { prehash: false });
  return addressOfPublicKey(secp256k1.Point.fromBytes(point).toBytes(false));
}

// ------------------------------------------------------------------ ABI (the calls the wallet makes)

const CONFIG_TUPLE = "(address,address,address,address,uint32,uint96,address)";
const selector = (signature) => keccak_256(utf8ToBytes(signature)).slice(0, 4);

function configWords(config) {
  return concatBytes(
    addressWord(config.payer),
    addressWord(config.signer),
    addressWord(config.receiver),
    addressWord(config.token),
    word(checkRange("closeDelay", config.closeDelay, UINT32_MAX)),
    word(checkRange("salt", config.salt, UINT96_MAX)),
    addressWord(config.receiverAuthorizer || ZERO_ADDRESS),
  );
}

function dynamicBytes(raw) {
  const padded = new Uint8Array(Math.ceil(raw.length / 32) * 32);
  padded.set(raw);
  return concatBytes(word(raw.length), padded);
}

export function encodeDepositEth(config) {
  return toHex(concatBytes(selector(`depositEth(${CONFIG_TUPLE})`), configWords(config)));
}

export function encodeCloseCooperative(config, amount, payerSignature, receiverSignature) {
  const payer = dynamicBytes(hexToBytes(payerSignature));
  const receiver = dynamicBytes(hexToBytes(receiverSignature));
  const head = 7 * 32 + 3 * 32; // the static tuple inline, the amount, two offsets
  return toHex(
    concatBytes(
      selector(`closeCooperative(${CONFIG_TUPLE},uint128,bytes,bytes)`),
      configWords(config),
      word(checkRange("amount", amount, UINT128_MAX)),
      word(head),
      word(head + payer.length),
      payer,
      receiver,
    ),
  );
}

export function encodeGetChannel(channel) {
  return toHex(concatBytes(selector("getChannel(bytes32)"), bytes32(channel)));
}

/** getChannel's answer: (uint256 deposited, uint256 claimed, uint256 closeDeadline, bool settled). */
export function decodeGetChannel(hex) {
  const raw = hexToBytes(hex);
  if (raw.length < 128) throw new Error("short getChannel answer");
  const at = (i) => BigInt(toHex(raw.slice(32 * i, 32 * i + 32)));
  return { deposited: at(0), claimed: at(1), closeDeadline: at(2), settled: at(3) !== 0n };
}

// ------------------------------------------------------------------ amounts

/** wei -> "0.00002" (exact, trailing zeros trimmed). */
export function formatUnits(value, decimals = 18) {
  const n = BigInt(value);
  const negative = n < 0n;
  const digits = (negative ? -n : n).toString().padStart(decimals + 1, "0");
  const whole = digits.slice(0, digits.length - decimals);
  const fraction = digits.slice(digits.length - decimals).replace(/0+$/, "");
  return (negative ? "-" : "") + whole + (fraction ? "." + fraction : "");
}

/** "0.001" -> wei, exact; refuses more decimals than the unit has. */
export function parseUnits(text, decimals = 18) {
  const match = /^\s*(\d*)(?:\.(\d*))?\s*$/.exec(String(text));
  if (!match || (match[1] === "" && !match[2])) throw new Error(`not an amount: ${text}`);
  const fraction = match[2] || "";
  if (fraction.length > decimals) throw new Error(`at most ${decimals} decimals`);
  return BigInt((match[1] || "0") + fraction.padEnd(decimals, "0"));
}

// ------------------------------------------------------------------ x402 headers

export function encodeHeader(document) {
  const bytes = utf8ToBytes(JSON.stringify(document));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

export function decodeHeader(value) {
  const binary = atob(value.trim());
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** A PAYMENT-SIGNATURE value, shaped like channel_node.server.protocol.payment_signature; `pass`
 * names the pass this payment buys (docs/protocol.md, "Caps and passes"). */
export function paymentSignature(network, contract, channel, amount, signature, config, paymentId, pass) {
  const payload = { channelId: channel, maxClaimableAmount: BigInt(amount).toString(), signature: toHex(signature) };
  if (paymentId) payload.paymentId = paymentId;
  if (pass) payload.pass = pass;
  const accepted = { scheme: "channel", network };
  if (config) {
    payload.channel = {
      payer: checksumAddress(config.payer),
      signer: checksumAddress(config.signer),
      receiver: checksumAddress(config.receiver),
      token: checksumAddress(config.token),
      closeDelay: Number(config.closeDelay),
      salt: BigInt(config.salt).toString(),
      receiverAuthorizer: checksumAddress(config.receiverAuthorizer || ZERO_ADDRESS),
    };
    accepted.asset = payload.channel.token;
    accepted.payTo = payload.channel.receiver;
  }
  accepted.extra = { contract };
  return encodeHeader({ x402Version: 2, accepted, payload });
}

// ------------------------------------------------------------------ x402 `exact` (EIP-3009)
// The token's own EIP-712 domain (name and version from the offer's `extra`, the token as the
// verifying contract) and TransferWithAuthorization, byte-identical to
// src/channel_node/signing/eip3009.py (docs/protocol.md, "The `exact` scheme (wire)").

export const TRANSFER_WITH_AUTHORIZATION_TYPEHASH = typehash(
  "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)",
);

/** domain: {name, version, chainId, verifyingContract} of the token. */
export function tokenDomainSeparator(domain) {
  return keccak_256(
    concatBytes(
      DOMAIN_TYPEHASH,
      typehash(domain.name),
      typehash(domain.version),
      word(domain.chainId),
      addressWord(domain.verifyingContract),
    ),
  );
}

// The two token messages the wallet signs (EIP-3009's TransferWithAuthorization, EIP-2612's
// Permit) share the token's domain: one digest and one typed-data document for both.
function tokenDigest(domain, typeHash, words) {
  const struct = keccak_256(concatBytes(typeHash, ...words));
  return keccak_256(concatBytes(new Uint8Array([0x19, 0x01]), tokenDomainSeparator(domain), struct));
}

function tokenTypedData(domain, primaryType, fields, message) {
  return {
    types: {
      EIP712Domain: [
        { name: "name", type: "string" },
        { name: "version", type: "string" },
        { name: "chainId", type: "uint256" },
        { name: "verifyingContract", type: "address" },
      ],
      [primaryType]: fields,
    },
    primaryType,
    domain: {
      name: domain.name,
      version: domain.version,
      chainId: Number(domain.chainId),
      verifyingContract: checksumAddress(domain.verifyingContract),
    },
    message,
  };
}

/** auth: {from, to, value, validAfter, validBefore, nonce} (numbers as decimal strings or bigints). */
export function transferAuthorizationDigest(domain, auth) {
  return tokenDigest(domain, TRANSFER_WITH_AUTHORIZATION_TYPEHASH, [
    addressWord(auth.from),
    addressWord(auth.to),
    word(auth.value),
    word(auth.validAfter),
    word(auth.validBefore),
    bytes32(auth.nonce),
  ]);
}

/** What the reader's wallet signs with eth_signTypedData_v4: the same digest. */
export function transferAuthorizationTypedData(domain, auth) {
  return tokenTypedData(
    domain,
    "TransferWithAuthorization",
    [
      { name: "from", type: "address" },
      { name: "to", type: "address" },
      { name: "value", type: "uint256" },
      { name: "validAfter", type: "uint256" },
      { name: "validBefore", type: "uint256" },
      { name: "nonce", type: "bytes32" },
    ],
    authorizationJson(auth),
  );
}

/** payload.authorization as written: EIP-55 addresses, decimal numbers, 0x-hex nonce. */
export function authorizationJson(auth) {
  return {
    from: checksumAddress(auth.from),
    to: checksumAddress(auth.to),
    value: BigInt(auth.value).toString(),
    validAfter: BigInt(auth.validAfter).toString(),
    validBefore: BigInt(auth.validBefore).toString(),
    nonce: toHex(bytes32(auth.nonce)),
  };
}

/** An `exact` PAYMENT-SIGNATURE: `accepted` is the offer's entry echoed verbatim, `resource` the 402's. */
export function exactPaymentSignature(accepted, auth, signature, resource) {
  const raw = typeof signature === "string" ? hexToBytes(signature) : signature;
  if (raw.length !== 65) throw new Error("an authorization signature is 65 bytes");
  const document = { x402Version: 2, payload: { authorization: authorizationJson(auth), signature: toHex(raw) }, accepted };
  if (resource) document.resource = resource;
  return encodeHeader(document);
}

export function encodeBalanceOf(address) {
  return toHex(concatBytes(selector("balanceOf(address)"), addressWord(address)));
}

// ------------------------------------------------------------------ ERC-20 channels (EIP-2612 permit, approve)
// The deposit of a token channel: `depositTokenWithPermit(config, amount, deadline, r, vs)` with the
// payer's EIP-2612 Permit for exactly the deposit, or `approve(contract, amount)` then
// `depositToken(config, amount)` (ChannelDeposit.sol; the Python wallet: chain/erc20.py).

export const PERMIT_TYPEHASH = typehash("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

/** permit: {owner, spender, value, nonce, deadline}; domain: the token's {name, version, chainId, verifyingContract}. */
export function permitDigest(domain, permit) {
  return tokenDigest(domain, PERMIT_TYPEHASH, [
    addressWord(permit.owner),
    addressWord(permit.spender),
    word(permit.value),
    word(permit.nonce),
    word(permit.deadline),
  ]);
}

/** What the reader's wallet signs with eth_signTypedData_v4 for the permit: the same digest. */
export function permitTypedData(domain, permit) {
  return tokenTypedData(
    domain,
    "Permit",
    [
      { name: "owner", type: "address" },
      { name: "spender", type: "address" },
      { name: "value", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
    {
      owner: checksumAddress(permit.owner),
      spender: checksumAddress(permit.spender),
      value: BigInt(permit.value).toString(),
      nonce: BigInt(permit.nonce).toString(),
      deadline: BigInt(permit.deadline).toString(),
    },
  );
}

/** A 65-byte r || s || v signature as EIP-2098 compact (r, vs), what ChannelDeposit takes. */
export function toCompact(signature) {
  const raw = typeof signature === "string" ? hexToBytes(signature) : signature;
  if (raw.length !== 65) throw new Error("signature must be 65 bytes");
  const v = raw[64] >= 27 ? raw[64] - 27 : raw[64];
  if (v > 1) throw new Error("bad signature v");
  const vs = raw.slice(32, 64);
  if (vs[0] & 0x80) throw new Error("high-s signature");
  if (v) vs[0] |= 0x80;
  return { r: toHex(raw.slice(0, 32)), vs: toHex(vs) };
}

export function encodeDepositToken(config, amount) {
  return toHex(concatBytes(selector(`depositToken(${CONFIG_TUPLE},uint256)`), configWords(config), word(amount)));
}

export function encodeDepositTokenWithPermit(config, amount, deadline, r, vs) {
  return toHex(
    concatBytes(
      selector(`depositTokenWithPermit(${CONFIG_TUPLE},uint256,uint256,bytes32,bytes32)`),
      configWords(config),
      word(amount),
      word(deadline),
      bytes32(r),
      bytes32(vs),
    ),
  );
}

export const encodeApprove = (spender, amount) =>
  toHex(concatBytes(selector("approve(address,uint256)"), addressWord(spender), word(amount)));
export const encodeAllowance = (owner, spender) =>
  toHex(concatBytes(selector("allowance(address,address)"), addressWord(owner), addressWord(spender)));
export const encodeNonces = (owner) => toHex(concatBytes(selector("nonces(address)"), addressWord(owner)));
export const encodeNoArguments = (signature) => toHex(selector(signature));

/** A uint256 answer of eth_call ("0x" alone: the function does not exist). */
export function decodeUint(hex) {
  const raw = hexToBytes(hex);
  if (raw.length < 32) throw new Error("short uint256 answer");
  return BigInt(toHex(raw.slice(0, 32)));
}

/** A `string` answer of eth_call (ABI-encoded dynamic string), or a bytes32 one (old tokens). */
export function decodeString(hex) {
  const raw = hexToBytes(hex);
  if (raw.length === 32) return new TextDecoder().decode(raw).replace(/\0+$/, "");
  if (raw.length < 64) throw new Error("short string answer");
  const offset = Number(BigInt(toHex(raw.slice(0, 32))));
  if (offset + 32 > raw.length) throw new Error("bad string offset");
  const length = Number(BigInt(toHex(raw.slice(offset, offset + 32))));
  if (offset + 32 + length > raw.length) throw new Error("bad string length");
  return new TextDecoder("utf-8", { fatal: true }).decode(raw.slice(offset + 32, offset + 32 + length));
}
