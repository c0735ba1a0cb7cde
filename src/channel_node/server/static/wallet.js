/* channel-node browser wallet: built by scripts/build_wallet_js.py from web/*.js with @noble/curves and @noble/hashes (MIT, Paul Miller). Do not edit: edit web/ and rebuild. */
var ChannelWallet = (() => {
  var __defProp = Object.defineProperty;
  var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
  var __getOwnPropNames = Object.getOwnPropertyNames;
  var __hasOwnProp = Object.prototype.hasOwnProperty;
  var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
  var __export = (target, all) => {
    for (var name in all)
      __defProp(target, name, { get: all[name], enumerable: true });
  };
  var __copyProps = (to, from, except, desc) => {
    if (from && typeof from === "object" || typeof from === "function") {
      for (let key of __getOwnPropNames(from))
        if (!__hasOwnProp.call(to, key) && key !== except)
          __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
    }
    return to;
  };
  var __toCommonJS = (mod2) => __copyProps(__defProp({}, "__esModule", { value: true }), mod2);
  var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);

  // web/wallet.js
  var wallet_exports = {};
  __export(wallet_exports, {
    CHANNEL_TYPEHASH: () => CHANNEL_TYPEHASH,
    COOPERATIVE_CLOSE_TYPEHASH: () => COOPERATIVE_CLOSE_TYPEHASH,
    DOMAIN_NAME: () => DOMAIN_NAME,
    DOMAIN_TYPEHASH: () => DOMAIN_TYPEHASH,
    DOMAIN_VERSION: () => DOMAIN_VERSION,
    PERMIT_TYPEHASH: () => PERMIT_TYPEHASH,
    TRANSFER_WITH_AUTHORIZATION_TYPEHASH: () => TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    VOUCHER_TYPEHASH: () => VOUCHER_TYPEHASH,
    ZERO_ADDRESS: () => ZERO_ADDRESS,
    acceptedCharged: () => acceptedCharged,
    addressBytes: () => addressBytes,
    addressOfKey: () => addressOfKey,
    addressOfPublicKey: () => addressOfPublicKey,
    authorizationJson: () => authorizationJson,
    bookOf: () => bookOf,
    capOf: () => capOf,
    capProgress: () => capProgress,
    capText: () => capText,
    channelId: () => channelId,
    channelStructHash: () => channelStructHash,
    checksumAddress: () => checksumAddress,
    closeChannel: () => closeChannel,
    cooperativeCloseDigest: () => cooperativeCloseDigest,
    cooperativeCloseTypedData: () => cooperativeCloseTypedData,
    decodeGetChannel: () => decodeGetChannel,
    decodeHeader: () => decodeHeader,
    decodeString: () => decodeString,
    decodeUint: () => decodeUint,
    depositFunds: () => depositFunds,
    displayOf: () => displayOf,
    domainSeparator: () => domainSeparator,
    effectivePrice: () => effectivePrice,
    encodeAllowance: () => encodeAllowance,
    encodeApprove: () => encodeApprove,
    encodeBalanceOf: () => encodeBalanceOf,
    encodeCloseCooperative: () => encodeCloseCooperative,
    encodeDepositEth: () => encodeDepositEth,
    encodeDepositToken: () => encodeDepositToken,
    encodeDepositTokenWithPermit: () => encodeDepositTokenWithPermit,
    encodeGetChannel: () => encodeGetChannel,
    encodeHeader: () => encodeHeader,
    encodeNoArguments: () => encodeNoArguments,
    encodeNonces: () => encodeNonces,
    exactPaymentSignature: () => exactPaymentSignature,
    exactRecords: () => exactRecords,
    exactTermsOf: () => exactTermsOf,
    formatDisplay: () => formatDisplay,
    formatNumber: () => formatNumber,
    formatUnits: () => formatUnits,
    hashTypedData: () => hashTypedData,
    heldPass: () => heldPass,
    hexToBytes: () => hexToBytes3,
    keccak: () => keccak,
    loadUnit: () => loadUnit,
    money: () => money,
    onCutShort: () => onCutShort,
    onDelivered: () => onDelivered,
    onStatedCharged: () => onStatedCharged,
    openChannel: () => openChannel,
    parseUnits: () => parseUnits,
    passesOf: () => passesOf,
    payExact: () => payExact,
    payFor: () => payFor,
    paymentSignature: () => paymentSignature,
    permitDigest: () => permitDigest,
    permitTerms: () => permitTerms,
    permitTypedData: () => permitTypedData,
    randomSecretKey: () => randomSecretKey,
    readToken: () => readToken,
    recoverAddress: () => recoverAddress,
    signDigest: () => signDigest,
    start: () => start,
    storageKey: () => storageKey,
    termsOf: () => termsOf,
    toCompact: () => toCompact,
    toHex: () => toHex,
    tokenDomainSeparator: () => tokenDomainSeparator,
    topUp: () => topUp,
    transferAuthorizationDigest: () => transferAuthorizationDigest,
    transferAuthorizationTypedData: () => transferAuthorizationTypedData,
    trustSite: () => trustSite,
    trusted: () => trusted,
    voucherDigest: () => voucherDigest,
    voucherNeeded: () => voucherNeeded,
    word: () => word
  });

  // tools/node_modules/@noble/hashes/_u64.js
  var U32_MASK64 = /* @__PURE__ */ (() => BigInt(2 ** 32 - 1))();
  var _32n = /* @__PURE__ */ BigInt(32);
  function fromBig(n, le = false) {
    if (le)
      return { h: Number(n & U32_MASK64), l: Number(n >> _32n & U32_MASK64) };
    return { h: Number(n >> _32n & U32_MASK64) | 0, l: Number(n & U32_MASK64) | 0 };
  }
  function split(lst, le = false) {
    const len = lst.length;
    let Ah = new Uint32Array(len);
    let Al = new Uint32Array(len);
    for (let i = 0; i < len; i++) {
      const { h, l } = fromBig(lst[i], le);
      [Ah[i], Al[i]] = [h, l];
    }
    return [Ah, Al];
  }
  var fromNumH = (n) => n / 2 ** 32 | 0;
  var fromNumL = (n) => n >>> 0;
  function setU64FromNum(view, byteOffset, n, isLE2) {
    const h = fromNumH(n);
    const l = fromNumL(n);
    view.setUint32(byteOffset, isLE2 ? l : h, isLE2);
    view.setUint32(byteOffset + 4, isLE2 ? h : l, isLE2);
  }

  // tools/node_modules/@noble/hashes/utils.js
  function isBytes(a) {
    return a instanceof Uint8Array || ArrayBuffer.isView(a) && a.constructor.name === "Uint8Array" && "BYTES_PER_ELEMENT" in a && a.BYTES_PER_ELEMENT === 1;
  }
  var atitle = (title) => title ? `"${title}" ` : "";
  function anumber(n, title = "") {
    if (typeof n !== "number")
      throw new TypeError(atitle(title) + "expected number, got " + typeof n);
    if (!Number.isSafeInteger(n) || n < 0)
      throw new RangeError(atitle(title) + "expected integer >= 0, got " + n);
    return n;
  }
  function abool(value, title = "") {
    if (typeof value !== "boolean")
      throw new TypeError(atitle(title) + "expected boolean, got type=" + typeof value);
    return value;
  }
  function abytes(value, length, title = "") {
    if (isBytes(value) && (length === void 0 || value.length === length))
      return value;
    if (length !== void 0)
      anumber(length, "length");
    const bytes = isBytes(value);
    const ofLen = length !== void 0 ? ` of length ${length}` : "";
    const got = bytes ? `length=${value.length}` : `type=${typeof value}`;
    const message = atitle(title) + "expected Uint8Array" + ofLen + ", got " + got;
    if (!bytes)
      throw new TypeError(message);
    throw new RangeError(message);
  }
  function ahash(h) {
    if (typeof h !== "function" || typeof h.create !== "function")
      throw new TypeError("expected hash wrapped by utils.createHasher");
    anumber(h.outputLen);
    anumber(h.blockLen);
    if (h.outputLen < 1 || h.blockLen < 1)
      throw new Error("hash blockLen / outputLen must be >= 1");
  }
  var aobject = (value, label) => {
    if (value === null || typeof value !== "object" || Array.isArray(value))
      throw new TypeError((label === "object" ? "" : `"${label}" `) + "expected object, got type=" + typeof value);
  };
  var aopts = (value, label) => {
    aobject(value, label);
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null)
      throw new TypeError(`"${label}" expected plain object`);
    if (Object.hasOwn(value, "__proto__"))
      throw new TypeError(`"${label}.__proto__" is not allowed`);
  };
  function aexists(instance, checkFinished = true) {
    if (instance.destroyed)
      throw new Error("hash was destroyed");
    if (checkFinished && instance.finished)
      throw new Error("digest() was already called");
  }
  function aoutput(out, instance) {
    abytes(out, void 0, "output");
    const min = instance.outputLen;
    if (!(out.length >= min)) {
      throw new RangeError('"output" expected length >= ' + min);
    }
  }
  function u32(arr) {
    return new Uint32Array(arr.buffer, arr.byteOffset, Math.floor(arr.byteLength / 4));
  }
  function clean(...arrays) {
    for (let i = 0; i < arrays.length; i++) {
      arrays[i].fill(0);
    }
  }
  function createView(arr) {
    return new DataView(arr.buffer, arr.byteOffset, arr.byteLength);
  }
  function rotr(word2, shift) {
    return word2 << 32 - shift | word2 >>> shift;
  }
  var isLE = /* @__PURE__ */ (() => new Uint8Array(new Uint32Array([287454020]).buffer)[0] === 68)();
  function byteSwap(word2) {
    return word2 << 24 & 4278190080 | word2 << 8 & 16711680 | word2 >>> 8 & 65280 | word2 >>> 24 & 255;
  }
  function byteSwap32(arr) {
    for (let i = 0; i < arr.length; i++) {
      arr[i] = byteSwap(arr[i]);
    }
    return arr;
  }
  var swap32IfBE = isLE ? (u) => u : byteSwap32;
  var hasHexBuiltin = /* @__PURE__ */ (() => (
    // @ts-ignore
    typeof Uint8Array.from([]).toHex === "function" && typeof Uint8Array.fromHex === "function"
  ))();
  var hexes = /* @__PURE__ */ Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
  function bytesToHex(bytes) {
    abytes(bytes);
    if (hasHexBuiltin)
      return bytes.toHex();
    let hex = "";
    for (let i = 0; i < bytes.length; i++) {
      hex += hexes[bytes[i]];
    }
    return hex;
  }
  function asciiToBase16(ch) {
    return ch >= 48 && ch <= 57 ? ch - 48 : ch >= 65 && ch <= 70 ? ch - (65 - 10) : ch >= 97 && ch <= 102 ? ch - (97 - 10) : void 0;
  }
  function hexToBytes(hex) {
    if (typeof hex !== "string")
      throw new TypeError("hex string expected, got " + typeof hex);
    if (hasHexBuiltin) {
      try {
        return Uint8Array.fromHex(hex);
      } catch (error) {
        if (error instanceof SyntaxError)
          throw new RangeError(error.message);
        throw error;
      }
    }
    const hl = hex.length;
    const al = hl / 2;
    if (hl % 2)
      throw new RangeError("hex string expected, got unpadded hex of length " + hl);
    const array = new Uint8Array(al);
    for (let ai = 0, hi = 0; ai < al; ai++, hi += 2) {
      const n1 = asciiToBase16(hex.charCodeAt(hi));
      const n2 = asciiToBase16(hex.charCodeAt(hi + 1));
      if (n1 === void 0 || n2 === void 0) {
        const char = hex[hi] + hex[hi + 1];
        throw new RangeError('hex string expected, got non-hex character "' + char + '" at index ' + hi);
      }
      array[ai] = n1 * 16 + n2;
    }
    return array;
  }
  function utf8ToBytes(str) {
    if (typeof str !== "string")
      throw new TypeError("string expected");
    const encoded = new TextEncoder().encode(str);
    try {
      return new Uint8Array(encoded);
    } finally {
      clean(encoded);
    }
  }
  function concatBytes(...arrays) {
    let sum = 0;
    for (let i = 0; i < arrays.length; i++) {
      const a = arrays[i];
      abytes(a);
      sum += a.length;
    }
    const res = new Uint8Array(sum);
    for (let i = 0, pad = 0; i < arrays.length; i++) {
      const a = arrays[i];
      res.set(a, pad);
      pad += a.length;
    }
    return res;
  }
  function checkOpts(defaults, opts, title = "opts") {
    aopts(defaults, "defaults");
    if (opts !== void 0)
      aopts(opts, title);
    const merged = Object.assign(/* @__PURE__ */ Object.create(null), defaults, opts);
    return merged;
  }
  function createHasher(hashCons, info = {}) {
    if (typeof hashCons !== "function")
      throw new TypeError('"hashCons" expected function, got type=' + typeof hashCons);
    info = checkOpts({}, info, "info");
    const hashC = (msg, opts) => hashCons(opts).update(msg).digest();
    const tmp = hashCons(void 0);
    hashC.outputLen = tmp.outputLen;
    hashC.blockLen = tmp.blockLen;
    hashC.canXOF = tmp.canXOF;
    hashC.create = (opts) => hashCons(opts);
    Object.assign(hashC, info);
    return Object.freeze(hashC);
  }
  function randomBytes(bytesLength = 32) {
    anumber(bytesLength, "bytesLength");
    const cr = typeof globalThis === "object" ? globalThis.crypto : null;
    if (typeof cr?.getRandomValues !== "function")
      throw new Error("crypto.getRandomValues must be defined");
    if (bytesLength > 65536)
      throw new RangeError(`"bytesLength" expected <= 65536, got ${bytesLength}`);
    return cr.getRandomValues(new Uint8Array(bytesLength));
  }
  var oidNist = (suffix) => ({
    // Current NIST hashAlgs suffixes used here fit in one DER subidentifier octet.
    // Larger suffix values would need base-128 OID encoding and a different length byte.
    oid: Uint8Array.from([6, 9, 96, 134, 72, 1, 101, 3, 4, 2, suffix])
  });

  // tools/node_modules/@noble/hashes/_md.js
  function Chi(a, b, c) {
    return a & b ^ ~a & c;
  }
  function Maj(a, b, c) {
    return a & b ^ a & c ^ b & c;
  }
  var HashMD = class {
    constructor(blockLen, outputLen, padOffset, isLE2) {
      __publicField(this, "blockLen");
      __publicField(this, "outputLen");
      __publicField(this, "canXOF", false);
      __publicField(this, "padOffset");
      __publicField(this, "isLE");
      // For partial updates less than block size
      __publicField(this, "buffer");
      __publicField(this, "view");
      __publicField(this, "finished", false);
      __publicField(this, "length", 0);
      __publicField(this, "pos", 0);
      __publicField(this, "destroyed", false);
      this.blockLen = blockLen;
      this.outputLen = outputLen;
      this.padOffset = padOffset;
      this.isLE = isLE2;
      this.buffer = new Uint8Array(blockLen);
      this.view = createView(this.buffer);
    }
    update(data) {
      aexists(this);
      abytes(data);
      const { view, buffer, blockLen } = this;
      const len = data.length;
      let processed = false;
      for (let pos = 0; pos < len; ) {
        const take = Math.min(blockLen - this.pos, len - pos);
        if (take === blockLen) {
          const dataView = createView(data);
          for (; blockLen <= len - pos; pos += blockLen)
            this.process(dataView, pos);
          processed = true;
          continue;
        }
        buffer.set(pos === 0 && take === len ? data : data.subarray(pos, pos + take), this.pos);
        this.pos += take;
        pos += take;
        if (this.pos === blockLen) {
          this.process(view, 0);
          this.pos = 0;
          processed = true;
        }
      }
      this.length += data.length;
      if (processed)
        this.roundClean();
      return this;
    }
    digestInto(out) {
      aexists(this);
      aoutput(out, this);
      this.finished = true;
      const { buffer, view, blockLen, isLE: isLE2 } = this;
      let { pos } = this;
      buffer[pos++] = 128;
      buffer.fill(0, pos);
      if (this.padOffset > blockLen - pos) {
        this.process(view, 0);
        buffer.fill(0);
      }
      setU64FromNum(view, blockLen - 8, this.length * 8, isLE2);
      this.process(view, 0);
      this.roundClean();
      const oview = out === buffer ? view : createView(out);
      const len = this.outputLen;
      const outLen = len / 4;
      const state = this.get();
      if (len % 4 || outLen > state.length)
        throw new Error("invalid outputLen");
      for (let i = 0; i < outLen; i++)
        oview.setUint32(4 * i, state[i], isLE2);
    }
    digest() {
      const { buffer, outputLen } = this;
      this.digestInto(buffer);
      const res = buffer.slice(0, outputLen);
      this.destroy();
      return res;
    }
    _cloneIntoMeta(to) {
      const { buffer, length, finished, destroyed, pos } = this;
      to.destroyed = destroyed;
      to.finished = finished;
      to.length = length;
      to.pos = pos;
      if (pos)
        to.buffer.set(buffer);
      return to;
    }
    clone() {
      return this._cloneInto();
    }
  };
  var SHA256_IV = /* @__PURE__ */ Uint32Array.from([
    1779033703,
    3144134277,
    1013904242,
    2773480762,
    1359893119,
    2600822924,
    528734635,
    1541459225
  ]);

  // tools/node_modules/@noble/hashes/sha2.js
  var SHA256_K = /* @__PURE__ */ Uint32Array.from([
    1116352408,
    1899447441,
    3049323471,
    3921009573,
    961987163,
    1508970993,
    2453635748,
    2870763221,
    3624381080,
    310598401,
    607225278,
    1426881987,
    1925078388,
    2162078206,
    2614888103,
    3248222580,
    3835390401,
    4022224774,
    264347078,
    604807628,
    770255983,
    1249150122,
    1555081692,
    1996064986,
    2554220882,
    2821834349,
    2952996808,
    3210313671,
    3336571891,
    3584528711,
    113926993,
    338241895,
    666307205,
    773529912,
    1294757372,
    1396182291,
    1695183700,
    1986661051,
    2177026350,
    2456956037,
    2730485921,
    2820302411,
    3259730800,
    3345764771,
    3516065817,
    3600352804,
    4094571909,
    275423344,
    430227734,
    506948616,
    659060556,
    883997877,
    958139571,
    1322822218,
    1537002063,
    1747873779,
    1955562222,
    2024104815,
    2227730452,
    2361852424,
    2428436474,
    2756734187,
    3204031479,
    3329325298
  ]);
  var SHA256_W = /* @__PURE__ */ new Uint32Array(64);
  var SHA2_32B = class extends HashMD {
    constructor(outputLen, IV) {
      super(64, outputLen, 8, false);
      // We cannot use array here since array allows indexing by variable
      // which means optimizer/compiler cannot use registers.
      // Numeric initializers matter: starting the fields as `undefined` changes
      // V8's field representation and makes sha256 3x slower (measured).
      __publicField(this, "A", 0);
      __publicField(this, "B", 0);
      __publicField(this, "C", 0);
      __publicField(this, "D", 0);
      __publicField(this, "E", 0);
      __publicField(this, "F", 0);
      __publicField(this, "G", 0);
      __publicField(this, "H", 0);
      this.A = IV[0] | 0;
      this.B = IV[1] | 0;
      this.C = IV[2] | 0;
      this.D = IV[3] | 0;
      this.E = IV[4] | 0;
      this.F = IV[5] | 0;
      this.G = IV[6] | 0;
      this.H = IV[7] | 0;
    }
    get() {
      const { A, B: B2, C, D, E, F, G, H } = this;
      return [A, B2, C, D, E, F, G, H];
    }
    // prettier-ignore
    set(A, B2, C, D, E, F, G, H) {
      this.A = A | 0;
      this.B = B2 | 0;
      this.C = C | 0;
      this.D = D | 0;
      this.E = E | 0;
      this.F = F | 0;
      this.G = G | 0;
      this.H = H | 0;
    }
    _cloneInto(to) {
      (to || (to = new this.constructor())).set(...this.get());
      return this._cloneIntoMeta(to);
    }
    process(view, offset) {
      for (let i = 0; i < 16; i++, offset += 4)
        SHA256_W[i] = view.getUint32(offset, false);
      for (let i = 16; i < 64; i++) {
        const W15 = SHA256_W[i - 15];
        const W2 = SHA256_W[i - 2];
        const s0 = rotr(W15, 7) ^ rotr(W15, 18) ^ W15 >>> 3;
        const s1 = rotr(W2, 17) ^ rotr(W2, 19) ^ W2 >>> 10;
        SHA256_W[i] = s1 + SHA256_W[i - 7] + s0 + SHA256_W[i - 16] | 0;
      }
      let { A, B: B2, C, D, E, F, G, H } = this;
      for (let i = 0; i < 64; i++) {
        const sigma1 = rotr(E, 6) ^ rotr(E, 11) ^ rotr(E, 25);
        const T1 = H + sigma1 + Chi(E, F, G) + SHA256_K[i] + SHA256_W[i] | 0;
        const sigma0 = rotr(A, 2) ^ rotr(A, 13) ^ rotr(A, 22);
        const T2 = sigma0 + Maj(A, B2, C) | 0;
        H = G;
        G = F;
        F = E;
        E = D + T1 | 0;
        D = C;
        C = B2;
        B2 = A;
        A = T1 + T2 | 0;
      }
      A = A + this.A | 0;
      B2 = B2 + this.B | 0;
      C = C + this.C | 0;
      D = D + this.D | 0;
      E = E + this.E | 0;
      F = F + this.F | 0;
      G = G + this.G | 0;
      H = H + this.H | 0;
      this.set(A, B2, C, D, E, F, G, H);
    }
    roundClean() {
      clean(SHA256_W);
    }
    destroy() {
      this.destroyed = true;
      this.set(0, 0, 0, 0, 0, 0, 0, 0);
      clean(this.buffer);
    }
  };
  var _SHA256 = class extends SHA2_32B {
    constructor() {
      super(32, SHA256_IV);
    }
  };
  var sha256 = /* @__PURE__ */ createHasher(
    () => new _SHA256(),
    /* @__PURE__ */ oidNist(1)
  );

  // tools/node_modules/@noble/curves/utils.js
  /*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
  function aarray(item, title, inner = () => {
  }) {
    if (!Array.isArray(item))
      throw new TypeError(`"${title}" expected array, got type=${typeof item}`);
    for (let i = 0; i < item.length; i++)
      inner(item[i], `${title}[${i}]`);
    return item;
  }
  var abytes2 = (value, length, title) => abytes(value, length, title);
  var anumber2 = anumber;
  function astring(value, title = "") {
    if (typeof value !== "string") {
      const prefix = title && `"${title}" `;
      throw new TypeError(prefix + "expected string, got type=" + typeof value);
    }
    return value;
  }
  function aobject2(value, title = "object") {
    if (value === null || typeof value !== "object" || Array.isArray(value))
      throw new TypeError(title === "object" ? "expected valid options object" : `"${title}" expected object, got type=${typeof value}`);
    return value;
  }
  function afunction(value, title) {
    if (typeof value !== "function")
      throw new TypeError(`"${title}" is invalid: expected function, got ${typeof value}`);
    return value;
  }
  var bytesToHex2 = bytesToHex;
  var concatBytes2 = (...arrays) => concatBytes(...arrays);
  var hexToBytes2 = (hex) => hexToBytes(hex);
  var isBytes2 = isBytes;
  var randomBytes2 = (bytesLength) => randomBytes(bytesLength);
  var _0n = /* @__PURE__ */ BigInt(0);
  var _1n = /* @__PURE__ */ BigInt(1);
  var atitle2 = (title) => title ? `"${title}" ` : "";
  function abool2(value, title = "") {
    if (typeof value !== "boolean")
      throw new TypeError(atitle2(title) + "expected boolean, got type=" + typeof value);
    return value;
  }
  function abignumber(n) {
    if (typeof n === "bigint") {
      if (!isPosBig(n))
        throw new RangeError("positive bigint expected, got " + n);
    } else
      anumber2(n);
    return n;
  }
  function asafenumber(value, title = "") {
    if (typeof value !== "number") {
      const prefix = title && `"${title}" `;
      throw new TypeError(prefix + "expected number, got type=" + typeof value);
    }
    if (!Number.isSafeInteger(value)) {
      const prefix = title && `"${title}" `;
      throw new RangeError(prefix + "expected safe integer, got " + value);
    }
  }
  function numberToHexUnpadded(num) {
    const hex = abignumber(num).toString(16);
    return hex.length & 1 ? "0" + hex : hex;
  }
  function hexToNumber(hex) {
    if (typeof hex !== "string")
      throw new TypeError("hex string expected, got " + typeof hex);
    return hex === "" ? _0n : BigInt("0x" + hex);
  }
  function bytesToNumberBE(bytes) {
    return hexToNumber(bytesToHex(bytes));
  }
  function bytesToNumberLE(bytes) {
    return hexToNumber(bytesToHex(copyBytes(abytes(bytes)).reverse()));
  }
  function numberToBytesBE(n, len) {
    anumber(len);
    if (len === 0)
      throw new Error("zero output length is invalid");
    n = abignumber(n);
    const expectedLen = len * 2;
    const hex = n.toString(16);
    if (hex.length > expectedLen)
      throw new RangeError("number is too large");
    return hexToBytes(hex.padStart(expectedLen, "0"));
  }
  function numberToBytesLE(n, len) {
    return numberToBytesBE(n, len).reverse();
  }
  function copyBytes(bytes) {
    return Uint8Array.from(abytes2(bytes));
  }
  function isPosBig(n) {
    return typeof n === "bigint" && _0n <= n;
  }
  function inRange(n, min, max) {
    return isPosBig(n) && isPosBig(min) && isPosBig(max) && min <= n && n < max;
  }
  function aInRange(title, n, min, max) {
    if (!inRange(n, min, max))
      throw new RangeError("expected valid " + title + ": " + min + " <= n < " + max + ", got " + n);
  }
  function bitLen(n) {
    if (n < _0n)
      throw new Error("expected non-negative bigint, got " + n);
    return n === _0n ? 0 : n.toString(2).length;
  }
  var bitMask = (n) => {
    asafenumber(n, "n");
    return (_1n << BigInt(n)) - _1n;
  };
  function createHmacDrbg(hashLen, qByteLen, hmacFn) {
    anumber(hashLen, "hashLen");
    anumber(qByteLen, "qByteLen");
    if (typeof hmacFn !== "function")
      throw new TypeError("hmacFn must be a function");
    const u8n = (len) => new Uint8Array(len);
    const NULL = Uint8Array.of();
    const byte0 = Uint8Array.of(0);
    const byte1 = Uint8Array.of(1);
    const _maxDrbgIters = 1e3;
    let v = u8n(hashLen);
    let k = u8n(hashLen);
    let i = 0;
    const reset = () => {
      v.fill(1);
      k.fill(0);
      i = 0;
    };
    const h = (...msgs) => hmacFn(k, concatBytes2(v, ...msgs));
    const reseed = (seed = NULL) => {
      k = h(byte0, seed);
      v = h();
      if (seed.length === 0)
        return;
      k = h(byte1, seed);
      v = h();
    };
    const gen = () => {
      if (i++ >= _maxDrbgIters)
        throw new Error("drbg: tried max amount of iterations");
      let len = 0;
      const out = [];
      while (len < qByteLen) {
        v = h();
        const sl = v.slice();
        out.push(sl);
        len += v.length;
      }
      return concatBytes2(...out);
    };
    const genUntil = (seed, pred) => {
      reset();
      reseed(seed);
      let res = void 0;
      while ((res = pred(gen())) === void 0)
        reseed();
      reset();
      return res;
    };
    return genUntil;
  }
  function validateObject(object, fields = {}, optFields = {}, title = "object") {
    aobject2(object, title);
    aobject2(fields, "fields");
    aobject2(optFields, "optFields");
    function checkField(fieldName, expectedType, isOpt) {
      const label = title === "object" ? `param "${String(fieldName)}"` : `"${title}.${String(fieldName)}"`;
      const val = object[fieldName];
      if (!Object.hasOwn(object, fieldName) && (isOpt ? val !== void 0 : expectedType !== "function")) {
        throw new TypeError(`${label} is invalid: expected own property`);
      }
      if (isOpt && val === void 0)
        return;
      const current = typeof val;
      if (current !== expectedType || val === null)
        throw new TypeError(`${label} is invalid: expected ${expectedType}, got ${current}`);
    }
    const iter = (f, isOpt) => Object.entries(f).forEach(([k, v]) => checkField(k, v, isOpt));
    iter(fields, false);
    iter(optFields, true);
  }

  // tools/node_modules/@noble/curves/abstract/modular.js
  /*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
  var _0n2 = /* @__PURE__ */ BigInt(0);
  var _1n2 = /* @__PURE__ */ BigInt(1);
  var _2n = /* @__PURE__ */ BigInt(2);
  var _3n = /* @__PURE__ */ BigInt(3);
  var _4n = /* @__PURE__ */ BigInt(4);
  var _5n = /* @__PURE__ */ BigInt(5);
  var _7n = /* @__PURE__ */ BigInt(7);
  var _8n = /* @__PURE__ */ BigInt(8);
  var _9n = /* @__PURE__ */ BigInt(9);
  var _15n = /* @__PURE__ */ BigInt(15);
  var _16n = /* @__PURE__ */ BigInt(16);
  var POW_WINDOWED_MIN = /* @__PURE__ */ BigInt("0x10000000000000000");
  function mod(a, b) {
    if (b <= _0n2)
      throw new Error("mod: expected positive modulus, got " + b);
    const result = a % b;
    return result >= _0n2 ? result : b + result;
  }
  function pow(num, power, modulo) {
    if (modulo <= _1n2)
      throw new Error("pow: expected modulus > 1, got " + modulo);
    if (typeof power !== "bigint")
      throw new TypeError("invalid exponent: expected bigint, got " + typeof power);
    if (power < _0n2)
      throw new Error("invalid exponent, negatives unsupported");
    if (power === _0n2)
      return _1n2;
    if (power === _1n2)
      return num;
    let d = num % modulo;
    if (d < _0n2)
      d += modulo;
    if (power < POW_WINDOWED_MIN) {
      let p2 = _1n2;
      while (power > _0n2) {
        if (power & _1n2)
          p2 = p2 * d % modulo;
        d = d * d % modulo;
        power >>= _1n2;
      }
      return p2;
    }
    const digits = [];
    while (power > _0n2) {
      digits.push(Number(power & _15n));
      power >>= _4n;
    }
    const table = new Array(16);
    table[0] = _1n2;
    table[1] = d;
    for (let i = 2; i < 16; i++)
      table[i] = table[i - 1] * d % modulo;
    let p = table[digits[digits.length - 1]];
    for (let w = digits.length - 2; w >= 0; w--) {
      p = p * p % modulo;
      p = p * p % modulo;
      p = p * p % modulo;
      p = p * p % modulo;
      const digit = digits[w];
      if (digit !== 0)
        p = p * table[digit] % modulo;
    }
    return p;
  }
  function pow2(x, power, modulo) {
    if (modulo <= _1n2)
      throw new Error("pow2: expected modulus > 1, got " + modulo);
    if (power < _0n2)
      throw new Error("pow2: expected non-negative exponent, got " + power);
    let res = x;
    while (power-- > _0n2) {
      res *= res;
      res %= modulo;
    }
    return res;
  }
  function invert(number, modulo) {
    if (number === _0n2)
      throw new Error("invert: expected non-zero number");
    if (modulo <= _1n2)
      throw new Error("invert: expected modulus > 1, got " + modulo);
    let a = mod(number, modulo);
    let b = modulo;
    let x = _0n2, u = _1n2;
    while (a !== _0n2) {
      const q = b / a;
      const r = b - a * q;
      const m = x - u * q;
      b = a, a = r, x = u, u = m;
    }
    const gcd = b;
    if (gcd !== _1n2)
      throw new Error("invert: does not exist");
    return mod(x, modulo);
  }
  function invertCt(a, prime) {
    if (prime <= _1n2)
      throw new Error("invertCt: expected prime modulus > 1, got " + prime);
    const an = mod(a, prime);
    if (an === _0n2)
      throw new Error("invertCt: expected non-zero number");
    const inverse = pow(an, prime - _2n, prime);
    if (mod(an * inverse, prime) !== _1n2)
      throw new Error("invertCt: does not exist");
    return inverse;
  }
  function assertIsSquare(Fp, root, n) {
    const F = Fp;
    if (!F.eql(F.sqr(root), n))
      throw new Error("Cannot find square root");
  }
  function aoddModulus(order, fnName) {
    if ((order & _1n2) === _0n2)
      throw new Error(fnName + ": expected odd modulus, got " + order);
  }
  function sqrt3mod4(Fp, n) {
    const F = Fp;
    const p1div4 = (F.ORDER + _1n2) / _4n;
    const root = F.pow(n, p1div4);
    assertIsSquare(F, root, n);
    return root;
  }
  function sqrt5mod8(Fp, n) {
    const F = Fp;
    const p5div8 = (F.ORDER - _5n) / _8n;
    const n2 = F.mul(n, _2n);
    const v = F.pow(n2, p5div8);
    const nv = F.mul(n, v);
    const i = F.mul(F.mul(nv, _2n), v);
    const root = F.mul(nv, F.sub(i, F.ONE));
    assertIsSquare(F, root, n);
    return root;
  }
  function sqrt9mod16(P) {
    const Fp_ = Field(P);
    const tn = tonelliShanks(P);
    const c1 = tn(Fp_, Fp_.neg(Fp_.ONE));
    const c2 = tn(Fp_, c1);
    const c3 = tn(Fp_, Fp_.neg(c1));
    const c4 = (P + _7n) / _16n;
    return ((Fp, n) => {
      const F = Fp;
      let tv1 = F.pow(n, c4);
      let tv2 = F.mul(tv1, c1);
      const tv3 = F.mul(tv1, c2);
      const tv4 = F.mul(tv1, c3);
      const e1 = F.eql(F.sqr(tv2), n);
      const e2 = F.eql(F.sqr(tv3), n);
      tv1 = F.cmov(tv1, tv2, e1);
      tv2 = F.cmov(tv4, tv3, e2);
      const e3 = F.eql(F.sqr(tv2), n);
      const root = F.cmov(tv1, tv2, e3);
      assertIsSquare(F, root, n);
      return root;
    });
  }
  function tonelliShanks(P) {
    if (P < _3n)
      throw new Error("sqrt is not defined for small field");
    aoddModulus(P, "tonelliShanks");
    let Q = P - _1n2;
    let S = 0;
    while (Q % _2n === _0n2) {
      Q /= _2n;
      S++;
    }
    let Z = _2n;
    const _Fp = Field(P);
    while (FpLegendre(_Fp, Z) === 1) {
      if (Z++ > 1e3)
        throw new Error("Cannot find square root: probably non-prime P");
    }
    if (S === 1)
      return sqrt3mod4;
    let cc = _Fp.pow(Z, Q);
    const Q1div2 = (Q + _1n2) / _2n;
    return function tonelliSlow(Fp, n) {
      const F = Fp;
      if (F.is0(n))
        return n;
      if (FpLegendre(F, n) !== 1)
        throw new Error("Cannot find square root");
      let M = S;
      let c = F.mul(F.ONE, cc);
      let t = F.pow(n, Q);
      let R = F.pow(n, Q1div2);
      while (!F.eql(t, F.ONE)) {
        if (F.is0(t))
          throw new Error("Cannot find square root: probably non-prime P");
        let i = 1;
        let t_tmp = F.sqr(t);
        while (!F.eql(t_tmp, F.ONE)) {
          i++;
          t_tmp = F.sqr(t_tmp);
          if (i === M)
            throw new Error("Cannot find square root");
        }
        const exponent = _1n2 << BigInt(M - i - 1);
        const b = F.pow(c, exponent);
        M = i;
        c = F.sqr(b);
        t = F.mul(t, c);
        R = F.mul(R, b);
      }
      return R;
    };
  }
  function FpSqrt(P) {
    aoddModulus(P, "Fp.sqrt");
    if (P % _4n === _3n)
      return sqrt3mod4;
    if (P % _8n === _5n)
      return sqrt5mod8;
    if (P % _16n === _9n)
      return sqrt9mod16(P);
    return tonelliShanks(P);
  }
  var FIELD_FIELDS = [
    "create",
    "isValid",
    "is0",
    "neg",
    "inv",
    "sqrt",
    "sqr",
    "eql",
    "add",
    "sub",
    "mul",
    "pow",
    "div",
    "addN",
    "subN",
    "mulN",
    "sqrN"
  ];
  function validateField(field) {
    aobject2(field, "field");
    if (typeof field.ORDER !== "bigint")
      throw new TypeError('param "ORDER" is invalid: expected bigint, got ' + typeof field.ORDER);
    asafenumber(field.BYTES, "BYTES");
    asafenumber(field.BITS, "BITS");
    for (const name of FIELD_FIELDS)
      afunction(field[name], "field." + name);
    if (field.BYTES < 1 || field.BITS < 1)
      throw new Error("invalid field: expected BYTES/BITS > 0");
    if (field.ORDER <= _1n2)
      throw new Error("invalid field: expected ORDER > 1, got " + field.ORDER);
    return field;
  }
  function FpInvertBatch(Fp, nums, passZero = false) {
    validateField(Fp);
    aarray(nums, "nums");
    abool2(passZero, "passZero");
    const F = Fp;
    const inverted = new Array(nums.length).fill(passZero ? F.ZERO : void 0);
    const multipliedAcc = nums.reduce((acc, num, i) => {
      if (F.is0(num))
        return acc;
      inverted[i] = acc;
      return F.mul(acc, num);
    }, F.ONE);
    const invertedAcc = F.inv(multipliedAcc);
    nums.reduceRight((acc, num, i) => {
      if (F.is0(num))
        return acc;
      inverted[i] = F.mul(acc, inverted[i]);
      return F.mul(acc, num);
    }, invertedAcc);
    return inverted;
  }
  function FpLegendre(Fp, n) {
    validateField(Fp);
    const F = Fp;
    aoddModulus(F.ORDER, "FpLegendre");
    const p1mod2 = (F.ORDER - _1n2) / _2n;
    const powered = F.pow(n, p1mod2);
    const yes = F.eql(powered, F.ONE);
    const zero = F.eql(powered, F.ZERO);
    const no = F.eql(powered, F.neg(F.ONE));
    if (!yes && !zero && !no)
      throw new Error("invalid Legendre symbol result");
    return yes ? 1 : zero ? 0 : -1;
  }
  function nLength(n, nBitLength) {
    if (nBitLength !== void 0)
      anumber2(nBitLength);
    if (n <= _0n2)
      throw new Error("invalid n length: expected positive n, got " + n);
    if (nBitLength !== void 0 && nBitLength < 1)
      throw new Error("invalid n length: expected positive bit length, got " + nBitLength);
    const bits = bitLen(n);
    if (nBitLength !== void 0 && nBitLength < bits)
      throw new Error(`invalid n length: expected nBitLength (${nBitLength}) >= bitLen(n) (${bits})`);
    const _nBitLength = nBitLength !== void 0 ? nBitLength : bits;
    const nByteLength = Math.ceil(_nBitLength / 8);
    return { nBitLength: _nBitLength, nByteLength };
  }
  var FIELD_SQRT = /* @__PURE__ */ new WeakMap();
  var _Field = class {
    constructor(ORDER, opts = {}) {
      __publicField(this, "ORDER");
      __publicField(this, "BITS");
      __publicField(this, "BYTES");
      __publicField(this, "isLE");
      __publicField(this, "ZERO", _0n2);
      __publicField(this, "ONE", _1n2);
      __publicField(this, "_lengths");
      __publicField(this, "_mod");
      if (ORDER <= _1n2)
        throw new Error("invalid field: expected ORDER > 1, got " + ORDER);
      let _nbitLength = void 0;
      this.isLE = false;
      if (opts != null && typeof opts === "object") {
        if (typeof opts.BITS === "number")
          _nbitLength = opts.BITS;
        if (typeof opts.sqrt === "function")
          Object.defineProperty(this, "sqrt", { value: opts.sqrt, enumerable: true });
        if (typeof opts.isLE === "boolean")
          this.isLE = opts.isLE;
        if (opts.allowedLengths)
          this._lengths = Object.freeze(opts.allowedLengths.slice());
        if (typeof opts.modFromBytes === "boolean")
          this._mod = opts.modFromBytes;
      }
      const { nBitLength, nByteLength } = nLength(ORDER, _nbitLength);
      if (nByteLength > 2048)
        throw new Error("invalid field: expected ORDER of <= 2048 bytes");
      this.ORDER = ORDER;
      this.BITS = nBitLength;
      this.BYTES = nByteLength;
      Object.freeze(this);
    }
    create(num) {
      return mod(num, this.ORDER);
    }
    isValid(num) {
      if (typeof num !== "bigint")
        throw new TypeError("invalid field element: expected bigint, got " + typeof num);
      return _0n2 <= num && num < this.ORDER;
    }
    is0(num) {
      return num === _0n2;
    }
    // is valid and invertible
    isValidNot0(num) {
      return !this.is0(num) && this.isValid(num);
    }
    isOdd(num) {
      return (num & _1n2) === _1n2;
    }
    neg(num) {
      return mod(-num, this.ORDER);
    }
    eql(lhs, rhs) {
      return lhs === rhs;
    }
    sqr(num) {
      return mod(num * num, this.ORDER);
    }
    add(lhs, rhs) {
      return mod(lhs + rhs, this.ORDER);
    }
    sub(lhs, rhs) {
      return mod(lhs - rhs, this.ORDER);
    }
    mul(lhs, rhs) {
      return mod(lhs * rhs, this.ORDER);
    }
    pow(num, power) {
      return pow(num, power, this.ORDER);
    }
    div(lhs, rhs) {
      return mod(lhs * invert(rhs, this.ORDER), this.ORDER);
    }
    // Same as above, but doesn't normalize
    sqrN(num) {
      return num * num;
    }
    addN(lhs, rhs) {
      return lhs + rhs;
    }
    subN(lhs, rhs) {
      return lhs - rhs;
    }
    mulN(lhs, rhs) {
      return lhs * rhs;
    }
    inv(num) {
      return invert(num, this.ORDER);
    }
    sqrt(num) {
      let sqrt = FIELD_SQRT.get(this);
      if (!sqrt)
        FIELD_SQRT.set(this, sqrt = FpSqrt(this.ORDER));
      return sqrt(this, num);
    }
    toBytes(num) {
      return this.isLE ? numberToBytesLE(num, this.BYTES) : numberToBytesBE(num, this.BYTES);
    }
    fromBytes(bytes, skipValidation = false) {
      abytes2(bytes);
      const { _lengths: allowedLengths, BYTES, isLE: isLE2, ORDER, _mod: modFromBytes } = this;
      if (allowedLengths) {
        if (bytes.length < 1 || !allowedLengths.includes(bytes.length) || bytes.length > BYTES) {
          throw new Error("Field.fromBytes: expected " + allowedLengths + " bytes, got " + bytes.length);
        }
        const padded = new Uint8Array(BYTES);
        padded.set(bytes, isLE2 ? 0 : padded.length - bytes.length);
        bytes = padded;
      }
      if (bytes.length !== BYTES)
        throw new Error("Field.fromBytes: expected " + BYTES + " bytes, got " + bytes.length);
      let scalar = isLE2 ? bytesToNumberLE(bytes) : bytesToNumberBE(bytes);
      if (modFromBytes)
        scalar = mod(scalar, ORDER);
      if (!skipValidation) {
        if (!this.isValid(scalar))
          throw new Error("invalid field element: outside of range 0..ORDER");
      }
      return scalar;
    }
    // TODO: we don't need it here, move out to separate fn
    invertBatch(lst) {
      return FpInvertBatch(this, lst, true);
    }
    // We can't move this out because Fp6, Fp12 implement it
    // and it's unclear what to return in there.
    cmov(a, b, condition) {
      abool2(condition, "condition");
      return condition ? b : a;
    }
  };
  function Field(ORDER, opts = {}) {
    Object.freeze(_Field.prototype);
    return new _Field(ORDER, opts);
  }
  function getFieldBytesLength(fieldOrder) {
    if (typeof fieldOrder !== "bigint")
      throw new Error("field order must be bigint");
    if (fieldOrder <= _1n2)
      throw new Error("field order must be greater than 1");
    const bitLength = bitLen(fieldOrder - _1n2);
    return Math.ceil(bitLength / 8);
  }
  function getMinHashLength(fieldOrder) {
    const length = getFieldBytesLength(fieldOrder);
    return length + Math.ceil(length / 2);
  }
  function mapHashToField(key, fieldOrder, isLE2 = false) {
    abytes2(key);
    const len = key.length;
    const fieldLen = getFieldBytesLength(fieldOrder);
    const minLen = Math.max(getMinHashLength(fieldOrder), 16);
    if (len < minLen || len > 1024)
      throw new Error("expected " + minLen + "-1024 bytes of input, got " + len);
    const num = isLE2 ? bytesToNumberLE(key) : bytesToNumberBE(key);
    const reduced = mod(num, fieldOrder - _1n2) + _1n2;
    return isLE2 ? numberToBytesLE(reduced, fieldLen) : numberToBytesBE(reduced, fieldLen);
  }

  // tools/node_modules/@noble/curves/abstract/curve.js
  /*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
  var _0n3 = /* @__PURE__ */ BigInt(0);
  var _1n3 = /* @__PURE__ */ BigInt(1);
  var _4n2 = /* @__PURE__ */ BigInt(4);
  var BLIND_BYTES = 16;
  var BLIND_BITS = 128;
  var FW_WINDOW = 5;
  var TABLE_BYTES_MAX = /* @__PURE__ */ (() => 2 ** 31)();
  function validatePointCons(Point) {
    const pc = Point;
    if (typeof pc !== "function")
      throw new TypeError('"Point" expected constructor, got type=' + typeof Point);
    afunction(pc.fromAffine, "Point.fromAffine");
    afunction(pc.fromBytes, "Point.fromBytes");
    afunction(pc.fromHex, "Point.fromHex");
    aobject2(pc.BASE, "Point.BASE");
    aobject2(pc.ZERO, "Point.ZERO");
    validateField(pc.Fp);
    validateField(pc.Fn);
  }
  function normalizeZ(c, points) {
    validatePointCons(c);
    validateMSMPoints(points, c);
    const invertedZs = FpInvertBatch(c.Fp, points.map((p) => p.Z));
    return points.map((p, i) => c.fromAffine(p.toAffine(invertedZs[i])));
  }
  function validateW(W, bits, min = 1) {
    if (!Number.isSafeInteger(W) || W < min || W > bits)
      throw new Error("invalid window size, expected [" + min + ".." + bits + "], got W=" + W);
  }
  function validateTableBytes(numPoints, fpBytes) {
    const bytes = numPoints * (4 * fpBytes + 128);
    if (bytes > TABLE_BYTES_MAX)
      throw new Error("invalid window size: table would need ~" + Math.ceil(bytes / 2 ** 20) + " MiB, max " + TABLE_BYTES_MAX / 2 ** 20 + " MiB");
  }
  function probeRandomBytes(randomBytes3, length) {
    if (randomBytes3 === void 0)
      return void 0;
    afunction(randomBytes3, "randomBytes");
    try {
      const probe = randomBytes3(length);
      if (!isBytes2(probe) || probe.length !== length)
        return void 0;
    } catch {
      return void 0;
    }
    return randomBytes3;
  }
  function validateMSMPoints(points, c) {
    aarray(points, "points");
    points.forEach((p, i) => {
      if (!(p instanceof c))
        throw new Error("invalid point at index " + i);
    });
  }
  function validateMSMScalars(scalars, field, maxScalar) {
    if (!Array.isArray(scalars))
      throw new Error("array of scalars expected");
    scalars.forEach((s, i) => {
      const ok = maxScalar === void 0 ? field.isValid(s) : isPosBig(s) && s < maxScalar;
      if (!ok)
        throw new Error("invalid scalar at index " + i);
    });
  }
  var pointWindowSizes = /* @__PURE__ */ new WeakMap();
  function getWindowSize(P) {
    return pointWindowSizes.get(P) || 1;
  }
  function oddMultiples(p, size) {
    const dbl = p.double();
    const t = [p];
    for (let j = 1; j < size; j++)
      t.push(t[j - 1].add(dbl));
    return t;
  }
  function wnafDigits(n, W) {
    const size = 2 ** W;
    const half = size / 2;
    const mask = BigInt(size - 1);
    const d = [];
    while (n > _0n3) {
      let w = 0;
      if (n & _1n3) {
        w = Number(n & mask);
        if (w >= half)
          w -= size;
        n -= BigInt(w);
      }
      d.push(w);
      n >>= _1n3;
    }
    return d;
  }
  function signedWindowDigits(n, W, windows) {
    const size = 2 ** W;
    const half = size / 2;
    const mask = BigInt(size - 1);
    const shiftBy = BigInt(W);
    const d = [];
    for (let w = 0; w < windows; w++) {
      let v = Number(n & mask);
      n >>= shiftBy;
      if (v > half) {
        v -= size;
        n += _1n3;
      }
      d.push(v);
    }
    if (n !== _0n3)
      throw new Error("invalid wnaf");
    return d;
  }
  function wnafWalk(zero, tables, digits) {
    let max = 0;
    for (const d of digits)
      max = Math.max(max, d.length);
    let acc = zero;
    for (let bit = max - 1; bit >= 0; bit--) {
      if (bit !== max - 1)
        acc = acc.double();
      for (let i = 0; i < digits.length; i++) {
        const w = digits[i][bit];
        if (w) {
          const item = tables[i][Math.abs(w) - 1 >> 1];
          acc = acc.add(w < 0 ? item.negate() : item);
        }
      }
    }
    return acc;
  }
  var ScalarMultiplier = class {
    // Parametrized with a given Point class (not individual point)
    constructor(Point, randomBytes3) {
      __publicField(this, "Point");
      __publicField(this, "BASE");
      __publicField(this, "ZERO");
      __publicField(this, "randomBytes");
      __publicField(this, "wnafPrecomputes", /* @__PURE__ */ new WeakMap());
      __publicField(this, "baseCanBeBlinded");
      __publicField(this, "bits");
      validatePointCons(Point);
      this.randomBytes = probeRandomBytes(randomBytes3, BLIND_BYTES);
      this.Point = Point;
      this.BASE = Point.BASE;
      this.ZERO = Point.ZERO;
      this.bits = Point.Fn.BITS;
    }
    /**
     * Creates a signed fixed-window wNAF precomputation table: for every window w, the
     * multiples `[1..2^(W−1)]⋅2^(w⋅W)⋅P`, flattened. All doublings are baked into the table,
     * so cached multiplication is additions-only. `windows = ceil(bits/W) + 1`: the extra
     * window absorbs the final carry of signed-digit recoding.
     * For a 256-bit curve and W=6, the table is 44⋅32 = 1408 points.
     * @param point - Point instance
     * @param W - window size
     * @param bits - scalar bitlength the table must cover
     */
    buildWnafTable(point, W, bits) {
      const windows = Math.ceil(bits / W) + 1;
      const half = 2 ** (W - 1);
      const comp = [];
      let base = point;
      for (let w = 0; w < windows; w++) {
        let acc = base;
        for (let i = 0; i < half; i++) {
          comp.push(acc);
          acc = acc.add(base);
        }
        base = comp[comp.length - 1].double();
      }
      return { W, bits, windows, comp };
    }
    /**
     * Implements ec multiplication using precomputed signed fixed-window wNAF tables.
     * Constant-time: fixed window count with one table addition per window — zero digits feed
     * the fake accumulator — and no doublings; the lookup scans the whole window slice.
     * Scalar bounds are validated by the public entry points ({@link ScalarMultiplier.mulCT},
     * {@link ScalarMultiplier.mulCTBlinded}, {@link ScalarMultiplier.mulUnsafe});
     * signedWindowDigits throws if `n` exceeds the table.
     * @returns real and fake (for const-time) points
     */
    wnafCachedCT(precomputes, n) {
      const { W, windows, comp } = precomputes;
      const half = 2 ** (W - 1);
      const digits = signedWindowDigits(n, W, windows);
      let p = this.ZERO;
      let f = this.BASE;
      for (let w = 0; w < windows; w++) {
        const digit = digits[w];
        const start2 = w * half;
        const idx = Math.abs(digit) - 1;
        let sel = comp[start2];
        for (let i = 1; i < half; i++)
          sel = i === idx ? comp[start2 + i] : sel;
        const neg = sel.negate();
        if (digit === 0)
          f = f.add(comp[start2]);
        else
          p = p.add(digit < 0 ? neg : sel);
      }
      return { p, f };
    }
    // Cache key is point identity plus (W, bits); at most two entries exist per point (public-width
    // `Fn.BITS` and blinded `Fn.BITS + BLIND_BITS`). Callers must not reuse the same point with
    // incompatible `transform(...)` layouts and expect a separate cache entry.
    getWnafPrecomputes(W, point, bits, transform) {
      let entries = this.wnafPrecomputes.get(point);
      let comp = entries?.find((entry) => entry.W === W && entry.bits === bits);
      if (!comp) {
        comp = this.buildWnafTable(point, W, bits);
        if (typeof transform === "function")
          comp = { ...comp, comp: transform(comp.comp) };
        if (!entries) {
          entries = [];
          this.wnafPrecomputes.set(point, entries);
        }
        entries.push(comp);
      }
      return comp;
    }
    assertPoint(point) {
      if (!(point instanceof this.Point))
        throw new TypeError('"point" expected Point instance, got type=' + typeof point);
    }
    // Shared prologue of the constant-time entry points. Rejects scalar 0: in key/signature-style
    // callers a zero scalar means broken upstream plumbing, and concrete Points already reject it.
    // Uses inRange instead of Fn.isValidNot0: validateField() only certifies the arithmetic subset.
    validateMulInput(point, scalar) {
      this.assertPoint(point);
      if (!inRange(scalar, _1n3, this.Point.Fn.ORDER))
        throw new Error("invalid scalar");
    }
    // Constant-time dispatch shared by mulCT / mulCTBlinded. Un-precomputed points (W===1, e.g.
    // ECDH peer keys) skip building a throwaway cached table in favor of a small fixed-window
    // multiply. `n` must be < 2^bits.
    runCT(point, n, bits, transform) {
      const W = getWindowSize(point);
      if (W === 1)
        return this.fixedWindowCT(point, n, bits);
      return this.wnafCachedCT(this.getWnafPrecomputes(W, point, bits, transform), n);
    }
    mulCT(point, scalar, transform) {
      this.validateMulInput(point, scalar);
      return this.runCT(point, scalar, this.bits, transform);
    }
    mulCTBlinded(point, scalar, transform) {
      this.validateMulInput(point, scalar);
      if (this.randomBytes === void 0)
        throw new Error("randomBytes is required for scalar blinding");
      const bits = this.Point.Fn.BITS + BLIND_BITS;
      const blind = this.randomBytes(BLIND_BYTES);
      if (!isBytes2(blind) || blind.length !== BLIND_BYTES)
        throw new Error("randomBytes returned invalid byte array");
      blind[0] = blind[0] & 63 | 128;
      const n = scalar + bytesToNumberBE(blind) * this.Point.Fn.ORDER;
      return this.runCT(point, n, bits, transform);
    }
    /**
     * Constant-time multiplication `n*point` for an un-precomputed point, via a small fixed window.
     * A cached wNAF table only pays off when reused; a flat 2^FW_WINDOW table (`size-1` adds) is
     * far cheaper to build for a single use. The point-operation sequence is independent of `n`:
     * build the table, then per window exactly FW_WINDOW doublings, a data-oblivious scan over
     * every table entry, and one addition (adds the identity when the window digit is 0 — never
     * skipped).
     *
     * `n` must be `< 2^bits`. Assumes complete addition (adding the identity costs the same as any
     * add), which holds for the Weierstrass/Edwards point types used here. The table is left in
     * projective form (no normalizeZ): normalizing this small a table costs more than the
     * mixed-add savings it would buy for a single multiply.
     * @returns real point `p`; `f` duplicates it only to match {@link wnafCachedCT}'s return shape
     * (this path needs no fake accumulator — its op-count is already scalar-independent).
     */
    fixedWindowCT(point, n, bits) {
      const W = FW_WINDOW;
      const size = 1 << W;
      const mask = bitMask(W);
      const table = new Array(size);
      table[0] = this.ZERO;
      for (let i = 1; i < size; i++)
        table[i] = table[i - 1].add(point);
      const windows = Math.ceil(bits / W);
      let acc = this.ZERO;
      for (let window2 = windows - 1; window2 >= 0; window2--) {
        if (window2 !== windows - 1)
          for (let d = 0; d < W; d++)
            acc = acc.double();
        const digit = Number(n >> BigInt(window2 * W) & mask);
        let sel = table[0];
        for (let i = 1; i < size; i++)
          sel = i === digit ? table[i] : sel;
        acc = acc.add(sel);
      }
      return { p: acc, f: acc };
    }
    shouldBlind(point, cofactor) {
      if (this.randomBytes === void 0)
        return false;
      if (cofactor === _1n3)
        return true;
      if (point !== this.BASE)
        return false;
      if (this.baseCanBeBlinded === void 0)
        this.baseCanBeBlinded = this.mulUnsafe(this.BASE, this.Point.Fn.ORDER).is0();
      return this.baseCanBeBlinded;
    }
    mulSecret(point, scalar, cofactor, transform) {
      return this.shouldBlind(point, cofactor) ? this.mulCTBlinded(point, scalar, transform) : this.mulCT(point, scalar, transform);
    }
    mulUnsafe(point, scalar, transform) {
      this.assertPoint(point);
      if (!isPosBig(scalar))
        throw new Error("invalid scalar");
      const W = getWindowSize(point);
      if (W === 1 || scalar >= this.Point.Fn.ORDER)
        return mulAddUnsafe(this.Point, [point], [scalar], true);
      const precomputes = this.getWnafPrecomputes(W, point, this.bits, transform);
      return this.wnafCachedCT(precomputes, scalar).p;
    }
    // Remembers the window size used for precomputed wNAF multiplication of the given point
    // and drops any previously built tables. Usually only the base point is precomputed.
    // W=1 resets the point to the un-precomputed (table-less) paths.
    // W is additionally capped so tables stay under ~2 GiB ({@link TABLE_BYTES_MAX}).
    setWindowSize(point, W) {
      this.assertPoint(point);
      validateW(W, this.bits);
      const windows = Math.ceil((this.bits + BLIND_BITS) / W) + 1;
      validateTableBytes(windows * 2 ** (W - 1), this.Point.Fp.BYTES);
      pointWindowSizes.set(point, W);
      this.wnafPrecomputes.delete(point);
    }
    // True when a window size is set: tables themselves are built lazily on first multiply.
    hasWindowSize(point) {
      return getWindowSize(point) !== 1;
    }
  };
  function mulAddUnsafe(c, points, scalars, allowOversized = false) {
    validatePointCons(c);
    validateMSMPoints(points, c);
    abool2(allowOversized, "allowOversized");
    validateMSMScalars(scalars, c.Fn, allowOversized ? c.Fn.ORDER ** _4n2 : void 0);
    if (points.length !== scalars.length)
      throw new Error("arrays of points and scalars must have equal length");
    const tables = points.map((p) => oddMultiples(p, 4));
    const digits = scalars.map((n) => wnafDigits(n, 4));
    return wnafWalk(c.ZERO, tables, digits);
  }
  function createField(order, field, isLE2) {
    if (field) {
      if (field.ORDER !== order)
        throw new Error("Field.ORDER must match order: Fp == p, Fn == n");
      validateField(field);
      return field;
    } else {
      return Field(order, { isLE: isLE2 });
    }
  }
  function createCurveFields(type, CURVE, curveOpts = {}, FpFnLE) {
    if (type !== "weierstrass" && type !== "edwards")
      throw new Error('expected curve type "weierstrass" or "edwards"');
    if (FpFnLE === void 0)
      FpFnLE = type === "edwards";
    if (!CURVE || typeof CURVE !== "object")
      throw new Error(`expected valid ${type} CURVE object`);
    validateObject(curveOpts);
    for (const p of ["p", "n", "h"]) {
      const val = CURVE[p];
      if (!(isPosBig(val) && val !== _0n3))
        throw new Error(`CURVE.${p} must be positive bigint`);
    }
    const Fp = createField(CURVE.p, curveOpts.Fp, FpFnLE);
    const Fn = createField(CURVE.n, curveOpts.Fn, FpFnLE);
    const _b = type === "weierstrass" ? "b" : "d";
    const params = ["Gx", "Gy", "a", _b];
    for (const p of params) {
      if (!Fp.isValid(CURVE[p]))
        throw new Error(`CURVE.${p} must be valid field element of CURVE.Fp`);
    }
    CURVE = Object.freeze(Object.assign({}, CURVE));
    return { CURVE, Fp, Fn };
  }
  function createKeygen(randomSecretKey2, getPublicKey) {
    return function keygen(seed) {
      const secretKey = randomSecretKey2(seed);
      return { secretKey, publicKey: getPublicKey(secretKey) };
    };
  }

  // tools/node_modules/@noble/hashes/hmac.js
  var _HMAC = class {
    constructor(hash, key) {
      __publicField(this, "oHash");
      __publicField(this, "iHash");
      __publicField(this, "blockLen");
      __publicField(this, "outputLen");
      __publicField(this, "canXOF", false);
      __publicField(this, "finished", false);
      __publicField(this, "destroyed", false);
      ahash(hash);
      abytes(key, void 0, "key");
      this.iHash = hash.create();
      if (typeof this.iHash.update !== "function")
        throw new Error("expected Hash instance");
      this.blockLen = this.iHash.blockLen;
      this.outputLen = this.iHash.outputLen;
      const blockLen = this.blockLen;
      const pad = new Uint8Array(blockLen);
      pad.set(key.length > blockLen ? hash.create().update(key).digest() : key);
      for (let i = 0; i < pad.length; i++)
        pad[i] ^= 54;
      this.iHash.update(pad);
      this.oHash = hash.create();
      for (let i = 0; i < pad.length; i++)
        pad[i] ^= 54 ^ 92;
      this.oHash.update(pad);
      clean(pad);
    }
    update(buf) {
      aexists(this);
      this.iHash.update(buf);
      return this;
    }
    digestInto(out) {
      aexists(this);
      aoutput(out, this);
      this.finished = true;
      const buf = out.subarray(0, this.outputLen);
      this.iHash.digestInto(buf);
      this.oHash.update(buf);
      this.oHash.digestInto(buf);
      this.destroy();
    }
    digest() {
      const out = new Uint8Array(this.oHash.outputLen);
      this.digestInto(out);
      return out;
    }
    _cloneInto(to) {
      to || (to = Object.create(Object.getPrototypeOf(this), {}));
      const { oHash, iHash, finished, destroyed, blockLen, outputLen, canXOF } = this;
      to = to;
      to.finished = finished;
      to.destroyed = destroyed;
      to.blockLen = blockLen;
      to.outputLen = outputLen;
      to.canXOF = canXOF;
      to.oHash = oHash._cloneInto(to.oHash);
      to.iHash = iHash._cloneInto(to.iHash);
      return to;
    }
    clone() {
      return this._cloneInto();
    }
    destroy() {
      this.destroyed = true;
      this.oHash.destroy();
      this.iHash.destroy();
    }
  };
  var hmac = /* @__PURE__ */ (() => {
    const hmac_ = ((hash, key, message) => new _HMAC(hash, key).update(message).digest());
    hmac_.create = (hash, key) => new _HMAC(hash, key);
    return hmac_;
  })();

  // tools/node_modules/@noble/curves/abstract/der.js
  /*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
  var _0n4 = /* @__PURE__ */ BigInt(0);
  var DERErr = class extends Error {
    constructor(m = "") {
      super(m);
    }
  };
  var _DER = {
    // asn.1 DER encoding utils
    Err: DERErr,
    // Basic building block is TLV (Tag-Length-Value)
    _tlv: {
      encode: (tag, data) => {
        const { Err: E } = _DER;
        asafenumber(tag, "tag");
        if (tag < 0 || tag > 255)
          throw new E("tlv.encode: wrong tag");
        astring(data, "data");
        if (data.length & 1)
          throw new E("tlv.encode: unpadded data");
        const dataLen = data.length / 2;
        const len = numberToHexUnpadded(dataLen);
        if (len.length / 2 & 128)
          throw new E("tlv.encode: long form length too big");
        const lenLen = dataLen > 127 ? numberToHexUnpadded(len.length / 2 | 128) : "";
        const t = numberToHexUnpadded(tag);
        return t + lenLen + len + data;
      },
      // v - value, l - left bytes (unparsed)
      decode(tag, data) {
        const { Err: E } = _DER;
        data = abytes2(data, void 0, "DER data");
        let pos = 0;
        if (tag < 0 || tag > 255)
          throw new E("tlv.decode: wrong tag");
        if (data.length < 2 || data[pos++] !== tag)
          throw new E("tlv.decode: wrong tlv");
        const first = data[pos++];
        const isLong = !!(first & 128);
        let length = 0;
        if (!isLong)
          length = first;
        else {
          const lenLen = first & 127;
          if (!lenLen)
            throw new E("tlv.decode(long): indefinite length not supported");
          if (lenLen > 4)
            throw new E("tlv.decode(long): byte length is too big");
          const lengthBytes = data.subarray(pos, pos + lenLen);
          if (lengthBytes.length !== lenLen)
            throw new E("tlv.decode: length bytes not complete");
          if (lengthBytes[0] === 0)
            throw new E("tlv.decode(long): zero leftmost byte");
          for (const b of lengthBytes)
            length = length << 8 | b;
          pos += lenLen;
          if (length < 128)
            throw new E("tlv.decode(long): not minimal encoding");
        }
        const v = data.subarray(pos, pos + length);
        if (v.length !== length)
          throw new E("tlv.decode: wrong value length");
        return { v, l: data.subarray(pos + length) };
      }
    },
    // https://crypto.stackexchange.com/a/57734 Leftmost bit of first byte is 'negative' flag,
    // since we always use positive integers here. It must always be empty:
    // - add zero byte if exists
    // - if next byte doesn't have a flag, leading zero is not allowed (minimal encoding)
    _int: {
      encode(num) {
        const { Err: E } = _DER;
        abignumber(num);
        if (num < _0n4)
          throw new E("integer: negative integers are not allowed");
        let hex = numberToHexUnpadded(num);
        if (Number.parseInt(hex[0], 16) & 8)
          hex = "00" + hex;
        if (hex.length & 1)
          throw new E("unexpected DER parsing assertion: unpadded hex");
        return hex;
      },
      decode(data) {
        const { Err: E } = _DER;
        if (data.length < 1)
          throw new E("invalid signature integer: empty");
        if (data[0] & 128)
          throw new E("invalid signature integer: negative");
        if (data.length > 1 && data[0] === 0 && !(data[1] & 128))
          throw new E("invalid signature integer: unnecessary leading zero");
        return bytesToNumberBE(data);
      }
    },
    toSig(bytes, maxScalarBytes) {
      const { Err: E, _int: int, _tlv: tlv } = _DER;
      if (maxScalarBytes !== void 0) {
        asafenumber(maxScalarBytes, "maxScalarBytes");
        if (maxScalarBytes < 1)
          throw new E("invalid signature: maxScalarBytes must be positive");
      }
      const data = abytes2(bytes, void 0, "signature");
      const { v: seqBytes, l: seqLeftBytes } = tlv.decode(48, data);
      if (seqLeftBytes.length)
        throw new E("invalid signature: left bytes after parsing");
      const { v: rBytes, l: rLeftBytes } = tlv.decode(2, seqBytes);
      const { v: sBytes, l: sLeftBytes } = tlv.decode(2, rLeftBytes);
      if (sLeftBytes.length)
        throw new E("invalid signature: left bytes after parsing");
      if (maxScalarBytes !== void 0 && (rBytes.length > maxScalarBytes || sBytes.length > maxScalarBytes))
        throw new E("invalid signature: integer too large");
      return { r: int.decode(rBytes), s: int.decode(sBytes) };
    },
    hexFromSig(sig) {
      const { _tlv: tlv, _int: int } = _DER;
      validateObject(sig, { r: "bigint", s: "bigint" }, {}, "sig");
      const rs = tlv.encode(2, int.encode(sig.r));
      const ss = tlv.encode(2, int.encode(sig.s));
      const seq = rs + ss;
      return tlv.encode(48, seq);
    }
  };
  var DER = /* @__PURE__ */ (() => {
    Object.freeze(_DER._tlv);
    Object.freeze(_DER._int);
    return Object.freeze(_DER);
  })();

  // tools/node_modules/@noble/curves/abstract/weierstrass.js
  /*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
  var divNearest = (num, den) => (num + (num >= 0 ? den : -den) / _2n2) / den;
  function _splitEndoScalar(k, basis, n) {
    aInRange("scalar", k, _0n5, n);
    const [[a1, b1], [a2, b2]] = basis;
    const c1 = divNearest(b2 * k, n);
    const c2 = divNearest(-b1 * k, n);
    let k1 = k - c1 * a1 - c2 * a2;
    let k2 = -c1 * b1 - c2 * b2;
    const k1neg = k1 < _0n5;
    const k2neg = k2 < _0n5;
    if (k1neg)
      k1 = -k1;
    if (k2neg)
      k2 = -k2;
    const MAX_NUM = bitMask(Math.ceil(bitLen(n) / 2)) + _1n4;
    if (k1 < _0n5 || k1 >= MAX_NUM || k2 < _0n5 || k2 >= MAX_NUM) {
      throw new Error("splitScalar (endomorphism): failed for k");
    }
    return { k1neg, k1, k2neg, k2 };
  }
  function validateSigFormat(format) {
    if (!["compact", "recovered", "der"].includes(format))
      throw new Error('Signature format must be "compact", "recovered", or "der"');
    return format;
  }
  function validateSigOpts(opts, def) {
    validateObject(opts);
    const optsn = {};
    for (let optName of Object.keys(def)) {
      optsn[optName] = opts[optName] === void 0 ? def[optName] : opts[optName];
    }
    abool2(optsn.lowS, "lowS");
    abool2(optsn.prehash, "prehash");
    if (optsn.format !== void 0)
      validateSigFormat(optsn.format);
    return optsn;
  }
  var _0n5 = /* @__PURE__ */ BigInt(0);
  var _1n4 = /* @__PURE__ */ BigInt(1);
  var _2n2 = /* @__PURE__ */ BigInt(2);
  var _3n2 = /* @__PURE__ */ BigInt(3);
  var _4n3 = /* @__PURE__ */ BigInt(4);
  function weierstrass(params, extraOpts = {}) {
    const validated = createCurveFields("weierstrass", params, extraOpts);
    const Fp = validated.Fp;
    const Fn = validated.Fn;
    let CURVE = validated.CURVE;
    const { h: cofactor, n: CURVE_ORDER } = CURVE;
    validateObject(extraOpts, {}, {
      allowInfinityPoint: "boolean",
      clearCofactor: "function",
      isTorsionFree: "function",
      fromBytes: "function",
      toBytes: "function",
      endo: "object",
      randomBytes: "function"
    });
    const { endo: endoOpts, allowInfinityPoint, clearCofactor, isTorsionFree, fromBytes, toBytes } = extraOpts;
    const randomBytes3 = extraOpts.randomBytes === void 0 ? randomBytes2 : extraOpts.randomBytes;
    if (endoOpts) {
      if (!Fp.is0(CURVE.a) || typeof endoOpts.beta !== "bigint" || !Array.isArray(endoOpts.basises)) {
        throw new Error('invalid endo: expected "beta": bigint and "basises": array');
      }
    }
    const endo = endoOpts ? {
      beta: endoOpts.beta,
      basises: endoOpts.basises.map((basis) => [...basis])
    } : void 0;
    const lengths = getWLengths(Fp, Fn);
    function assertCompressionIsSupported() {
      if (!Fp.isOdd)
        throw new Error("compression is not supported: Field does not have .isOdd()");
    }
    function pointToBytes(_c, point, isCompressed) {
      if (point.is0()) {
        if (!allowInfinityPoint)
          throw new Error("bad point: ZERO");
        return Uint8Array.of(0);
      }
      const { x, y } = point.toAffine();
      const bx = Fp.toBytes(x);
      abool2(isCompressed, "isCompressed");
      if (isCompressed) {
        assertCompressionIsSupported();
        const hasEvenY = !Fp.isOdd(y);
        return concatBytes2(pprefix(hasEvenY), bx);
      } else {
        return concatBytes2(Uint8Array.of(4), bx, Fp.toBytes(y));
      }
    }
    function pointFromBytes(bytes) {
      abytes2(bytes, void 0, "Point");
      const { publicKey: comp, publicKeyUncompressed: uncomp } = lengths;
      const length = bytes.length;
      const head = bytes[0];
      const tail = bytes.subarray(1);
      if (allowInfinityPoint && length === 1 && head === 0)
        return { x: Fp.ZERO, y: Fp.ZERO };
      if (length === comp && (head === 2 || head === 3)) {
        const x = Fp.fromBytes(tail);
        if (!Fp.isValid(x))
          throw new Error("bad point: is not on curve, wrong x");
        const y2 = weierstrassEquation(x);
        let y;
        try {
          y = Fp.sqrt(y2);
        } catch (sqrtError) {
          const err = sqrtError instanceof Error ? ": " + sqrtError.message : "";
          throw new Error("bad point: is not on curve, sqrt error" + err);
        }
        assertCompressionIsSupported();
        const evenY = Fp.isOdd(y);
        const evenH = (head & 1) === 1;
        if (evenH !== evenY)
          y = Fp.neg(y);
        return { x, y };
      } else if (length === uncomp && head === 4) {
        const L = Fp.BYTES;
        const x = Fp.fromBytes(tail.subarray(0, L));
        const y = Fp.fromBytes(tail.subarray(L, L * 2));
        if (!isValidXY(x, y))
          throw new Error("bad point: is not on curve");
        return { x, y };
      } else {
        throw new Error(`bad point: got length ${length}, expected compressed=${comp} or uncompressed=${uncomp}`);
      }
    }
    const encodePoint = toBytes === void 0 ? pointToBytes : toBytes;
    const decodePoint = fromBytes === void 0 ? pointFromBytes : fromBytes;
    const b3 = Fp.mul(CURVE.b, _3n2);
    const mulA = Fp.is0(CURVE.a) ? (_) => Fp.ZERO : (x) => Fp.mul(CURVE.a, x);
    function weierstrassEquation(x) {
      const x2 = Fp.sqr(x);
      const x3 = Fp.mul(x2, x);
      return Fp.add(Fp.add(x3, Fp.mul(x, CURVE.a)), CURVE.b);
    }
    function isValidXY(x, y) {
      const left = Fp.sqr(y);
      const right = weierstrassEquation(x);
      return Fp.eql(left, right);
    }
    if (!isValidXY(CURVE.Gx, CURVE.Gy))
      throw new Error("bad curve params: generator point");
    const _4a3 = Fp.mul(Fp.pow(CURVE.a, _3n2), _4n3);
    const _27b2 = Fp.mul(Fp.sqr(CURVE.b), BigInt(27));
    if (Fp.is0(Fp.add(_4a3, _27b2)))
      throw new Error("bad curve params: a or b");
    function acoord(title, n, banZero = false) {
      if (!Fp.isValid(n) || banZero && Fp.is0(n))
        throw new Error(`bad point coordinate ${title}`);
      return typeof n === "object" && n !== null ? Fp.create(n) : n;
    }
    function aprjpoint(other) {
      if (!(other instanceof Point))
        throw new Error("Weierstrass Point expected");
    }
    function splitEndoScalarN(k) {
      if (!endo || !endo.basises)
        throw new Error("no endo");
      return _splitEndoScalar(k, endo.basises, Fn.ORDER);
    }
    function pushWnafPair(points, scalars, p, k) {
      if (!Fn.isValid(k))
        throw new RangeError("invalid scalar: out of range");
      if (endo) {
        const { k1neg, k1, k2neg, k2 } = splitEndoScalarN(k);
        const psi = new Point(Fp.mul(p.X, endo.beta), p.Y, p.Z);
        points.push(k1neg ? p.negate() : p, k2neg ? psi.negate() : psi);
        scalars.push(k1, k2);
      } else {
        points.push(p);
        scalars.push(k);
      }
    }
    const validityCache = /* @__PURE__ */ new WeakSet();
    const _Point = class _Point {
      /** Does NOT validate if the point is valid. Use `.assertValidity()`. */
      constructor(X, Y, Z) {
        __publicField(this, "X");
        __publicField(this, "Y");
        __publicField(this, "Z");
        this.X = acoord("x", X);
        this.Y = acoord("y", Y, true);
        this.Z = acoord("z", Z);
        Object.freeze(this);
      }
      static CURVE() {
        return CURVE;
      }
      /** Does NOT validate if the point is valid. Use `.assertValidity()`. */
      static fromAffine(p) {
        const { x, y } = p || {};
        if (!p || !Fp.isValid(x) || !Fp.isValid(y))
          throw new Error("invalid affine point");
        if (p instanceof _Point)
          throw new Error("projective point not allowed");
        if (Fp.is0(x) && Fp.is0(y))
          return _Point.ZERO;
        return new _Point(x, y, Fp.ONE);
      }
      static fromBytes(bytes) {
        const P = _Point.fromAffine(decodePoint(abytes2(bytes, void 0, "point")));
        P.assertValidity();
        return P;
      }
      static fromHex(hex) {
        return _Point.fromBytes(hexToBytes2(hex));
      }
      get x() {
        return this.toAffine().x;
      }
      get y() {
        return this.toAffine().y;
      }
      /**
       * @param isLazy - true will defer table computation until the first multiplication
       */
      precompute(windowSize = 6, isLazy = true) {
        wnaf.setWindowSize(this, windowSize);
        if (!isLazy)
          this.multiply(_3n2);
        return this;
      }
      // TODO: return `this`
      /** A point on curve is valid if it conforms to equation. */
      assertValidity() {
        const p = this;
        if (p.is0()) {
          if (allowInfinityPoint && Fp.is0(p.X) && Fp.eql(p.Y, Fp.ONE) && Fp.is0(p.Z))
            return;
          throw new Error("bad point: ZERO");
        }
        if (validityCache.has(p))
          return;
        const { x, y } = p.toAffine();
        if (!Fp.isValid(x) || !Fp.isValid(y))
          throw new Error("bad point: x or y not field elements");
        if (!isValidXY(x, y))
          throw new Error("bad point: equation left != right");
        if (!p.isTorsionFree())
          throw new Error("bad point: not in prime-order subgroup");
        validityCache.add(p);
      }
      hasEvenY() {
        const { y } = this.toAffine();
        if (!Fp.isOdd)
          throw new Error("Field doesn't support isOdd");
        return !Fp.isOdd(y);
      }
      /** Compare one point to another. */
      equals(other) {
        aprjpoint(other);
        const { X: X1, Y: Y1, Z: Z1 } = this;
        const { X: X2, Y: Y2, Z: Z2 } = other;
        const U1 = Fp.eql(Fp.mul(X1, Z2), Fp.mul(X2, Z1));
        const U2 = Fp.eql(Fp.mul(Y1, Z2), Fp.mul(Y2, Z1));
        return U1 && U2;
      }
      /** Flips point to one corresponding to (x, -y) in Affine coordinates. */
      negate() {
        return new _Point(this.X, Fp.neg(this.Y), this.Z);
      }
      // Renes-Costello-Batina exception-free doubling formula.
      // There is 30% faster Jacobian formula, but it is not complete.
      // https://eprint.iacr.org/2015/1060, algorithm 3
      // Cost: 8M + 3S + 3*a + 2*b3 + 15add.
      double() {
        const { X: X1, Y: Y1, Z: Z1 } = this;
        let X3 = Fp.ZERO, Y3 = Fp.ZERO, Z3 = Fp.ZERO;
        let t0 = Fp.mul(X1, X1);
        let t1 = Fp.mul(Y1, Y1);
        let t2 = Fp.mul(Z1, Z1);
        let t3 = Fp.mul(X1, Y1);
        t3 = Fp.add(t3, t3);
        Z3 = Fp.mul(X1, Z1);
        Z3 = Fp.add(Z3, Z3);
        X3 = mulA(Z3);
        Y3 = Fp.mul(b3, t2);
        Y3 = Fp.add(X3, Y3);
        X3 = Fp.sub(t1, Y3);
        Y3 = Fp.add(t1, Y3);
        Y3 = Fp.mul(X3, Y3);
        X3 = Fp.mul(t3, X3);
        Z3 = Fp.mul(b3, Z3);
        t2 = mulA(t2);
        t3 = Fp.sub(t0, t2);
        t3 = mulA(t3);
        t3 = Fp.add(t3, Z3);
        Z3 = Fp.add(t0, t0);
        t0 = Fp.add(Z3, t0);
        t0 = Fp.add(t0, t2);
        t0 = Fp.mul(t0, t3);
        Y3 = Fp.add(Y3, t0);
        t2 = Fp.mul(Y1, Z1);
        t2 = Fp.add(t2, t2);
        t0 = Fp.mul(t2, t3);
        X3 = Fp.sub(X3, t0);
        Z3 = Fp.mul(t2, t1);
        Z3 = Fp.add(Z3, Z3);
        Z3 = Fp.add(Z3, Z3);
        return new _Point(X3, Y3, Z3);
      }
      // Renes-Costello-Batina exception-free addition formula.
      // There is 30% faster Jacobian formula, but it is not complete.
      // https://eprint.iacr.org/2015/1060, algorithm 1
      // Cost: 12M + 0S + 3*a + 3*b3 + 23add.
      add(other) {
        aprjpoint(other);
        const { X: X1, Y: Y1, Z: Z1 } = this;
        const { X: X2, Y: Y2, Z: Z2 } = other;
        let X3 = Fp.ZERO, Y3 = Fp.ZERO, Z3 = Fp.ZERO;
        let t0 = Fp.mul(X1, X2);
        let t1 = Fp.mul(Y1, Y2);
        let t2 = Fp.mul(Z1, Z2);
        let t3 = Fp.add(X1, Y1);
        let t4 = Fp.add(X2, Y2);
        t3 = Fp.mul(t3, t4);
        t4 = Fp.add(t0, t1);
        t3 = Fp.sub(t3, t4);
        t4 = Fp.add(X1, Z1);
        let t5 = Fp.add(X2, Z2);
        t4 = Fp.mul(t4, t5);
        t5 = Fp.add(t0, t2);
        t4 = Fp.sub(t4, t5);
        t5 = Fp.add(Y1, Z1);
        X3 = Fp.add(Y2, Z2);
        t5 = Fp.mul(t5, X3);
        X3 = Fp.add(t1, t2);
        t5 = Fp.sub(t5, X3);
        Z3 = mulA(t4);
        X3 = Fp.mul(b3, t2);
        Z3 = Fp.add(X3, Z3);
        X3 = Fp.sub(t1, Z3);
        Z3 = Fp.add(t1, Z3);
        Y3 = Fp.mul(X3, Z3);
        t1 = Fp.add(t0, t0);
        t1 = Fp.add(t1, t0);
        t2 = mulA(t2);
        t4 = Fp.mul(b3, t4);
        t1 = Fp.add(t1, t2);
        t2 = Fp.sub(t0, t2);
        t2 = mulA(t2);
        t4 = Fp.add(t4, t2);
        t0 = Fp.mul(t1, t4);
        Y3 = Fp.add(Y3, t0);
        t0 = Fp.mul(t5, t4);
        X3 = Fp.mul(t3, X3);
        X3 = Fp.sub(X3, t0);
        t0 = Fp.mul(t3, t1);
        Z3 = Fp.mul(t5, Z3);
        Z3 = Fp.add(Z3, t0);
        return new _Point(X3, Y3, Z3);
      }
      subtract(other) {
        aprjpoint(other);
        return this.add(other.negate());
      }
      is0() {
        return this.equals(_Point.ZERO);
      }
      /**
       * Constant time multiplication.
       * Uses precomputed tables (signed fixed-window wNAF) when available.
       * Uses scalar blinding and avoids endomorphism splitting in the secret-scalar path.
       * @param scalar - by which the point would be multiplied
       * @returns New point
       */
      multiply(scalar) {
        if (!Fn.isValidNot0(scalar))
          throw new RangeError("invalid scalar: out of range");
        const { p, f } = wnaf.mulSecret(this, scalar, cofactor, normalize);
        return normalize([p, f])[0];
      }
      /**
       * Non-constant-time multiplication. Uses width-4 wNAF with GLV endomorphism splitting
       * when available (two half-width scalars sharing one halved doubling chain).
       * It's faster, but should only be used when you don't care about
       * an exposed secret key e.g. sig verification, which works over *public* keys.
       */
      multiplyUnsafe(scalar) {
        const p = this;
        const sc = scalar;
        if (!Fn.isValid(sc))
          throw new RangeError("invalid scalar: out of range");
        if (sc === _0n5 || p.is0())
          return _Point.ZERO;
        if (sc === _1n4)
          return p;
        if (wnaf.hasWindowSize(this))
          return wnaf.mulUnsafe(p, sc, normalize);
        const points = [];
        const scalars = [];
        pushWnafPair(points, scalars, p, sc);
        return mulAddUnsafe(_Point, points, scalars);
      }
      /**
       * Non-constant-time double-scalar multiplication `a⋅this + b⋅other` (Strauss–Shamir).
       * Both walks share one doubling chain via {@link mulAddUnsafe}, and GLV endomorphism
       * (when available) halves the chain again by splitting each scalar into two half-width
       * parts. Used by ECDSA verification and public-key recovery for `R = u1⋅G + u2⋅P`.
       * Only for public scalars.
       */
      mulAddUnsafe(a, other, b) {
        aprjpoint(other);
        const points = [];
        const scalars = [];
        pushWnafPair(points, scalars, this, a);
        pushWnafPair(points, scalars, other, b);
        return mulAddUnsafe(_Point, points, scalars);
      }
      /**
       * Converts Projective point to affine (x, y) coordinates.
       * (X, Y, Z) ∋ (x=X/Z, y=Y/Z).
       * @param invertedZ - Z^-1 (inverted zero) - optional, precomputation is useful for invertBatch
       */
      toAffine(invertedZ) {
        const p = this;
        let iz = invertedZ;
        if (iz != null && !Fp.isValid(iz))
          throw new RangeError('"invertedZ" expected valid field element');
        const { X, Y, Z } = p;
        if (Fp.eql(Z, Fp.ONE))
          return { x: X, y: Y };
        const is0 = p.is0();
        if (iz == null)
          iz = is0 ? Fp.ONE : Fp.inv(Z);
        const x = Fp.mul(X, iz);
        const y = Fp.mul(Y, iz);
        const zz = Fp.mul(Z, iz);
        if (is0)
          return { x: Fp.ZERO, y: Fp.ZERO };
        if (!Fp.eql(zz, Fp.ONE))
          throw new Error("invZ was invalid");
        return { x, y };
      }
      /**
       * Checks whether Point is free of torsion elements (is in prime subgroup).
       * Always torsion-free for cofactor=1 curves.
       */
      isTorsionFree() {
        if (cofactor === _1n4)
          return true;
        if (isTorsionFree)
          return isTorsionFree(_Point, this);
        return wnaf.mulUnsafe(this, CURVE_ORDER).is0();
      }
      clearCofactor() {
        if (cofactor === _1n4)
          return this;
        if (clearCofactor)
          return clearCofactor(_Point, this);
        return this.multiplyUnsafe(cofactor);
      }
      isSmallOrder() {
        if (cofactor === _1n4)
          return this.is0();
        return this.clearCofactor().is0();
      }
      toBytes(isCompressed = true) {
        abool2(isCompressed, "isCompressed");
        this.assertValidity();
        return encodePoint(_Point, this, isCompressed);
      }
      toHex(isCompressed = true) {
        return bytesToHex2(this.toBytes(isCompressed));
      }
      toString() {
        return `<Point ${this.is0() ? "ZERO" : this.toHex()}>`;
      }
    };
    __publicField(_Point, "BASE", new _Point(CURVE.Gx, CURVE.Gy, Fp.ONE));
    __publicField(_Point, "ZERO", new _Point(Fp.ZERO, Fp.ONE, Fp.ZERO));
    __publicField(_Point, "Fp", Fp);
    __publicField(_Point, "Fn", Fn);
    let Point = _Point;
    const normalize = (points) => normalizeZ(Point, points);
    const wnaf = new ScalarMultiplier(Point, randomBytes3);
    if (wnaf.bits >= 6)
      Point.BASE.precompute(6);
    Object.freeze(Point.prototype);
    Object.freeze(Point);
    return Point;
  }
  function pprefix(hasEvenY) {
    return Uint8Array.of(hasEvenY ? 2 : 3);
  }
  function getWLengths(Fp, Fn) {
    return {
      secretKey: Fn.BYTES,
      publicKey: 1 + Fp.BYTES,
      publicKeyUncompressed: 1 + 2 * Fp.BYTES,
      publicKeyHasPrefix: true,
      // Raw compact `(r || s)` signature width; DER and recovered signatures use
      // different lengths outside this helper.
      signature: 2 * Fn.BYTES
    };
  }
  function ecdh(Point, ecdhOpts = {}) {
    validatePointCons(Point);
    const { Fn } = Point;
    const randomBytes_ = ecdhOpts.randomBytes === void 0 ? randomBytes2 : ecdhOpts.randomBytes;
    const lengths = Object.assign(getWLengths(Point.Fp, Fn), {
      seed: Math.max(getMinHashLength(Fn.ORDER), 16)
    });
    function isValidSecretKey(secretKey) {
      try {
        const num = Fn.fromBytes(secretKey);
        return Fn.isValidNot0(num);
      } catch (error) {
        return false;
      }
    }
    function isValidPublicKey(publicKey, isCompressed) {
      const { publicKey: comp, publicKeyUncompressed } = lengths;
      try {
        const l = publicKey.length;
        if (isCompressed === true && l !== comp)
          return false;
        if (isCompressed === false && l !== publicKeyUncompressed)
          return false;
        return !Point.fromBytes(publicKey).is0();
      } catch (error) {
        return false;
      }
    }
    function randomSecretKey2(seed) {
      seed = seed === void 0 ? randomBytes_(lengths.seed) : seed;
      return mapHashToField(abytes2(seed, lengths.seed, "seed"), Fn.ORDER);
    }
    function getPublicKey(secretKey, isCompressed = true) {
      return Point.BASE.multiply(Fn.fromBytes(secretKey)).toBytes(isCompressed);
    }
    function isProbPub(item) {
      const { secretKey, publicKey, publicKeyUncompressed } = lengths;
      const allowedLengths = Fn._lengths;
      if (!isBytes2(item))
        return void 0;
      const l = abytes2(item, void 0, "key").length;
      const isPub = l === publicKey || l === publicKeyUncompressed;
      const isSec = l === secretKey || !!allowedLengths?.includes(l);
      if (isPub && isSec)
        return void 0;
      return isPub;
    }
    function getSharedSecret(secretKeyA, publicKeyB, isCompressed = true) {
      if (isProbPub(secretKeyA) === true)
        throw new Error("first arg must be private key");
      if (isProbPub(publicKeyB) === false)
        throw new Error("second arg must be public key");
      const s = Fn.fromBytes(secretKeyA);
      const b = Point.fromBytes(publicKeyB);
      if (b.is0())
        throw new Error("invalid public key: point at infinity");
      return b.multiply(s).toBytes(isCompressed);
    }
    const utils = {
      isValidSecretKey,
      isValidPublicKey,
      randomSecretKey: randomSecretKey2
    };
    const keygen = createKeygen(randomSecretKey2, getPublicKey);
    Object.freeze(utils);
    Object.freeze(lengths);
    return Object.freeze({ getPublicKey, getSharedSecret, keygen, Point, utils, lengths });
  }
  function ecdsa(Point, hash, ecdsaOpts = {}) {
    validatePointCons(Point);
    const hash_ = hash;
    ahash(hash_);
    validateObject(ecdsaOpts, {}, {
      hmac: "function",
      lowS: "boolean",
      randomBytes: "function",
      bits2int: "function",
      bits2int_modN: "function"
    });
    const opts = Object.assign({}, ecdsaOpts);
    const randomBytes3 = opts.randomBytes === void 0 ? randomBytes2 : opts.randomBytes;
    const hmac2 = opts.hmac === void 0 ? (key, msg) => hmac(hash_, key, msg) : opts.hmac;
    const { Fp, Fn } = Point;
    const { ORDER: CURVE_ORDER, BITS: fnBits } = Fn;
    const blindLength = getMinHashLength(CURVE_ORDER);
    const csprng = probeRandomBytes(randomBytes3, blindLength);
    const { keygen, getPublicKey, getSharedSecret, utils, lengths } = ecdh(Point, opts);
    const defaultSigOpts = {
      prehash: true,
      lowS: typeof opts.lowS === "boolean" ? opts.lowS : true,
      format: "compact",
      extraEntropy: false
    };
    const hasLargeRecoveryLifts = CURVE_ORDER * _2n2 + _1n4 < Fp.ORDER;
    function isBiggerThanHalfOrder(number) {
      const HALF = CURVE_ORDER >> _1n4;
      return number > HALF;
    }
    function validateRS(title, num) {
      if (!Fn.isValidNot0(num))
        throw new Error(`invalid signature ${title}: out of range 1..Point.Fn.ORDER`);
      return num;
    }
    function assertFieldSignIsSupported() {
      if (!Fp.isOdd)
        throw new Error("Field doesn't support isOdd");
    }
    function getRecoveryBit(x, y, r) {
      assertFieldSignIsSupported();
      return (x === r ? 0 : 2) | Number(Fp.isOdd(y));
    }
    function assertRecoverableCurve() {
      if (hasLargeRecoveryLifts)
        throw new Error('"recovered" sig type is not supported for cofactor >2 curves');
    }
    function validateSigLength(bytes, format) {
      validateSigFormat(format);
      const size = lengths.signature;
      const sizer = format === "compact" ? size : format === "recovered" ? size + 1 : void 0;
      return abytes2(bytes, sizer);
    }
    class Signature {
      constructor(r, s, recovery) {
        __publicField(this, "r");
        __publicField(this, "s");
        __publicField(this, "recovery");
        this.r = validateRS("r", r);
        this.s = validateRS("s", s);
        if (recovery != null) {
          assertRecoverableCurve();
          if (![0, 1, 2, 3].includes(recovery))
            throw new Error("invalid recovery id");
          this.recovery = recovery;
        }
        Object.freeze(this);
      }
      static fromBytes(bytes, format = defaultSigOpts.format) {
        validateSigLength(bytes, format);
        let recid;
        if (format === "der") {
          if (bytes.length > 2 * Fn.BYTES + 16)
            throw new DER.Err("invalid signature: DER signature too long");
          const { r: r2, s: s2 } = DER.toSig(abytes2(bytes), Fn.BYTES + 1);
          return new Signature(r2, s2);
        }
        if (format === "recovered") {
          recid = bytes[0];
          format = "compact";
          bytes = bytes.subarray(1);
        }
        const L = lengths.signature / 2;
        const r = bytes.subarray(0, L);
        const s = bytes.subarray(L, L * 2);
        return new Signature(Fn.fromBytes(r), Fn.fromBytes(s), recid);
      }
      static fromHex(hex, format) {
        return this.fromBytes(hexToBytes2(hex), format);
      }
      assertRecovery() {
        const { recovery } = this;
        if (recovery == null)
          throw new Error("invalid recovery id: must be present");
        return recovery;
      }
      addRecoveryBit(recovery) {
        return new Signature(this.r, this.s, recovery);
      }
      // Unlike the top-level helper below, this method expects a digest that has
      // already been hashed to the curve's message representative.
      recoverPublicKey(messageHash) {
        const { r, s } = this;
        const recovery = this.assertRecovery();
        const radj = recovery === 2 || recovery === 3 ? r + CURVE_ORDER : r;
        if (!Fp.isValid(radj))
          throw new Error("invalid recovery id: sig.r+curve.n != R.x");
        const x = Fp.toBytes(radj);
        const R = Point.fromBytes(concatBytes2(pprefix((recovery & 1) === 0), x));
        const ir = Fn.inv(radj);
        const h = bits2int_modN(abytes2(messageHash, void 0, "msgHash"));
        const u1 = Fn.create(-h * ir);
        const u2 = Fn.create(s * ir);
        const Q = Point.BASE.mulAddUnsafe(u1, R, u2);
        if (Q.is0())
          throw new Error("invalid recovery: point at infinify");
        Q.assertValidity();
        return Q;
      }
      // Signatures should be low-s, to prevent malleability.
      hasHighS() {
        return isBiggerThanHalfOrder(this.s);
      }
      toBytes(format = defaultSigOpts.format) {
        validateSigFormat(format);
        if (format === "der")
          return hexToBytes2(DER.hexFromSig(this));
        const { r, s } = this;
        const rb = Fn.toBytes(r);
        const sb = Fn.toBytes(s);
        if (format === "recovered") {
          assertRecoverableCurve();
          return concatBytes2(Uint8Array.of(this.assertRecovery()), rb, sb);
        }
        return concatBytes2(rb, sb);
      }
      toHex(format) {
        return bytesToHex2(this.toBytes(format));
      }
    }
    Object.freeze(Signature.prototype);
    Object.freeze(Signature);
    const bits2int = opts.bits2int === void 0 ? function bits2int_def(bytes) {
      if (bytes.length > 8192)
        throw new Error("input is too large");
      const num = bytesToNumberBE(bytes);
      const delta = bytes.length * 8 - fnBits;
      return delta > 0 ? num >> BigInt(delta) : num;
    } : opts.bits2int;
    const bits2int_modN = opts.bits2int_modN === void 0 ? function bits2int_modN_def(bytes) {
      return Fn.create(bits2int(bytes));
    } : opts.bits2int_modN;
    const ORDER_MASK = bitMask(fnBits);
    function int2octets(num) {
      aInRange("num < 2^" + fnBits, num, _0n5, ORDER_MASK);
      return Fn.toBytes(num);
    }
    function validateMsgAndHash(message, prehash) {
      abytes2(message, void 0, "message");
      return prehash ? abytes2(hash_(message), void 0, "prehashed message") : message;
    }
    function prepSig(message, secretKey, opts2) {
      const { lowS, prehash, extraEntropy } = validateSigOpts(opts2, defaultSigOpts);
      message = validateMsgAndHash(message, prehash);
      const h1int = bits2int_modN(message);
      const d = Fn.fromBytes(secretKey);
      if (!Fn.isValidNot0(d))
        throw new Error("invalid private key");
      const seedArgs = [int2octets(d), int2octets(h1int)];
      if (extraEntropy != null && extraEntropy !== false) {
        const e = extraEntropy === true ? randomBytes3(lengths.secretKey) : extraEntropy;
        seedArgs.push(abytes2(e, void 0, "extraEntropy"));
      }
      const seed = concatBytes2(...seedArgs);
      const m = h1int;
      function k2sig(kBytes) {
        const k = bits2int(kBytes);
        if (!Fn.isValidNot0(k))
          return;
        const q = Point.BASE.multiply(k).toAffine();
        const r = Fn.create(q.x);
        if (r === _0n5)
          return;
        let s;
        if (csprng !== void 0) {
          const b = bytesToNumberBE(mapHashToField(csprng(blindLength), CURVE_ORDER));
          const ibk = Fn.inv(Fn.mul(b, k));
          const bm = Fn.mul(b, m);
          const bd = Fn.mul(b, d);
          s = Fn.create(ibk * Fn.create(bm + bd * r));
        } else {
          const ik = invertCt(k, CURVE_ORDER);
          s = Fn.create(ik * Fn.create(m + r * d));
        }
        if (s === _0n5)
          return;
        let recovery = getRecoveryBit(q.x, q.y, r);
        let normS = s;
        if (lowS && isBiggerThanHalfOrder(s)) {
          normS = Fn.neg(s);
          recovery ^= 1;
        }
        return new Signature(r, normS, hasLargeRecoveryLifts ? void 0 : recovery);
      }
      return { seed, k2sig };
    }
    function sign(message, secretKey, opts2 = {}) {
      const { seed, k2sig } = prepSig(message, secretKey, opts2);
      const drbg = createHmacDrbg(hash_.outputLen, Fn.BYTES, hmac2);
      const sig = drbg(seed, k2sig);
      return sig.toBytes(opts2.format);
    }
    function verify(signature, message, publicKey, opts2 = {}) {
      const { lowS, prehash, format } = validateSigOpts(opts2, defaultSigOpts);
      publicKey = abytes2(publicKey, void 0, "publicKey");
      message = validateMsgAndHash(message, prehash);
      if (!isBytes2(signature)) {
        const end = signature instanceof Signature ? ", use sig.toBytes()" : "";
        throw new Error("verify expects Uint8Array signature" + end);
      }
      validateSigLength(signature, format);
      try {
        const sig = Signature.fromBytes(signature, format);
        const P = Point.fromBytes(publicKey);
        if (P.is0())
          return false;
        if (lowS && sig.hasHighS())
          return false;
        const { r, s } = sig;
        const h = bits2int_modN(message);
        const is = Fn.inv(s);
        const u1 = Fn.create(h * is);
        const u2 = Fn.create(r * is);
        const R = Point.BASE.mulAddUnsafe(u1, P, u2);
        if (R.is0())
          return false;
        const q = R.toAffine();
        const v = Fn.create(q.x);
        if (v !== r)
          return false;
        if (format === "recovered" && sig.recovery !== getRecoveryBit(q.x, q.y, r))
          return false;
        return true;
      } catch (e) {
        return false;
      }
    }
    function recoverPublicKey(signature, message, opts2 = {}) {
      const { prehash } = validateSigOpts(opts2, defaultSigOpts);
      message = validateMsgAndHash(message, prehash);
      return Signature.fromBytes(signature, "recovered").recoverPublicKey(message).toBytes();
    }
    return Object.freeze({
      keygen,
      getPublicKey,
      getSharedSecret,
      utils,
      lengths,
      Point,
      sign,
      verify,
      recoverPublicKey,
      Signature,
      hash: hash_
    });
  }

  // tools/node_modules/@noble/curves/secp256k1.js
  /*! noble-curves - MIT License (c) 2022 Paul Miller (paulmillr.com) */
  var secp256k1_CURVE = {
    p: BigInt("0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f"),
    n: BigInt("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"),
    h: BigInt(1),
    a: BigInt(0),
    b: BigInt(7),
    Gx: BigInt("0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
    Gy: BigInt("0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8")
  };
  var secp256k1_ENDO = {
    beta: BigInt("0x7ae96a2b657c07106e64479eac3434e99cf0497512f58995c1396c28719501ee"),
    basises: [
      [BigInt("0x3086d221a7d46bcde86c90e49284eb15"), -BigInt("0xe4437ed6010e88286f547fa90abfe4c3")],
      [BigInt("0x114ca50f7a8e2f3f657c1108d9d44cfd8"), BigInt("0x3086d221a7d46bcde86c90e49284eb15")]
    ]
  };
  var _2n3 = /* @__PURE__ */ BigInt(2);
  function sqrtMod(y) {
    const P = secp256k1_CURVE.p;
    const _3n3 = BigInt(3), _6n = BigInt(6), _11n = BigInt(11), _22n = BigInt(22);
    const _23n = BigInt(23), _44n = BigInt(44), _88n = BigInt(88);
    const b2 = y * y * y % P;
    const b3 = b2 * b2 * y % P;
    const b6 = pow2(b3, _3n3, P) * b3 % P;
    const b9 = pow2(b6, _3n3, P) * b3 % P;
    const b11 = pow2(b9, _2n3, P) * b2 % P;
    const b22 = pow2(b11, _11n, P) * b11 % P;
    const b44 = pow2(b22, _22n, P) * b22 % P;
    const b88 = pow2(b44, _44n, P) * b44 % P;
    const b176 = pow2(b88, _88n, P) * b88 % P;
    const b220 = pow2(b176, _44n, P) * b44 % P;
    const b223 = pow2(b220, _3n3, P) * b3 % P;
    const t1 = pow2(b223, _23n, P) * b22 % P;
    const t2 = pow2(t1, _6n, P) * b2 % P;
    const root = pow2(t2, _2n3, P);
    if (!Fpk1.eql(Fpk1.sqr(root), y))
      throw new Error("Cannot find square root");
    return root;
  }
  var Fpk1 = /* @__PURE__ */ Field(secp256k1_CURVE.p, { sqrt: sqrtMod });
  var Pointk1 = /* @__PURE__ */ weierstrass(secp256k1_CURVE, {
    Fp: Fpk1,
    endo: secp256k1_ENDO
  });
  var secp256k1 = /* @__PURE__ */ ecdsa(Pointk1, sha256);

  // tools/node_modules/@noble/hashes/sha3.js
  var _0n6 = BigInt(0);
  var _1n5 = BigInt(1);
  var _2n4 = BigInt(2);
  var _7n2 = BigInt(7);
  var _256n = BigInt(256);
  var _0x71n = BigInt(113);
  var SHA3_PI = [];
  var SHA3_ROTL = [];
  var _SHA3_IOTA = [];
  for (let round = 0, R = _1n5, x = 1, y = 0; round < 24; round++) {
    [x, y] = [y, (2 * x + 3 * y) % 5];
    SHA3_PI.push(2 * (5 * y + x));
    SHA3_ROTL.push((round + 1) * (round + 2) / 2 % 64);
    let t = _0n6;
    for (let j = 0; j < 7; j++) {
      R = (R << _1n5 ^ (R >> _7n2) * _0x71n) % _256n;
      if (R & _2n4)
        t ^= _1n5 << (_1n5 << BigInt(j)) - _1n5;
    }
    _SHA3_IOTA.push(t);
  }
  var IOTAS = split(_SHA3_IOTA, true);
  var SHA3_IOTA_H = IOTAS[0];
  var SHA3_IOTA_L = IOTAS[1];
  var rotlSH = (h, l, s) => h << s | l >>> 32 - s;
  var rotlSL = (h, l, s) => l << s | h >>> 32 - s;
  var rotlBH = (h, l, s) => l << s - 32 | h >>> 64 - s;
  var rotlBL = (h, l, s) => h << s - 32 | l >>> 64 - s;
  var rotlH = (h, l, s) => s > 32 ? rotlBH(h, l, s) : rotlSH(h, l, s);
  var rotlL = (h, l, s) => s > 32 ? rotlBL(h, l, s) : rotlSL(h, l, s);
  var B = new Uint32Array(5 * 2);
  function keccakP(s, rounds = 24) {
    if (!(s instanceof Uint32Array))
      throw new TypeError('"s" expected Uint32Array(50), got type=' + typeof s);
    if (s.length !== 50)
      throw new RangeError('"s" expected Uint32Array(50), got length=' + s.length);
    anumber(rounds, "rounds");
    if (rounds < 1 || rounds > 24)
      throw new Error('"rounds" expected integer 1..24');
    for (let round = 24 - rounds; round < 24; round++) {
      for (let x = 0; x < 10; x++)
        B[x] = s[x] ^ s[x + 10] ^ s[x + 20] ^ s[x + 30] ^ s[x + 40];
      for (let x = 0; x < 10; x += 2) {
        const idx1 = (x + 8) % 10;
        const idx0 = (x + 2) % 10;
        const B0 = B[idx0];
        const B1 = B[idx0 + 1];
        const Th = rotlH(B0, B1, 1) ^ B[idx1];
        const Tl = rotlL(B0, B1, 1) ^ B[idx1 + 1];
        for (let y = 0; y < 50; y += 10) {
          s[x + y] ^= Th;
          s[x + y + 1] ^= Tl;
        }
      }
      let curH = s[2];
      let curL = s[3];
      for (let t = 0; t < 24; t++) {
        const shift = SHA3_ROTL[t];
        const Th = rotlH(curH, curL, shift);
        const Tl = rotlL(curH, curL, shift);
        const PI = SHA3_PI[t];
        curH = s[PI];
        curL = s[PI + 1];
        s[PI] = Th;
        s[PI + 1] = Tl;
      }
      for (let y = 0; y < 50; y += 10) {
        const b0 = s[y], b1 = s[y + 1], b2 = s[y + 2], b3 = s[y + 3];
        s[y] ^= ~s[y + 2] & s[y + 4];
        s[y + 1] ^= ~s[y + 3] & s[y + 5];
        s[y + 2] ^= ~s[y + 4] & s[y + 6];
        s[y + 3] ^= ~s[y + 5] & s[y + 7];
        s[y + 4] ^= ~s[y + 6] & s[y + 8];
        s[y + 5] ^= ~s[y + 7] & s[y + 9];
        s[y + 6] ^= ~s[y + 8] & b0;
        s[y + 7] ^= ~s[y + 9] & b1;
        s[y + 8] ^= ~b0 & b2;
        s[y + 9] ^= ~b1 & b3;
      }
      s[0] ^= SHA3_IOTA_H[round];
      s[1] ^= SHA3_IOTA_L[round];
    }
    clean(B);
  }
  var Keccak = class _Keccak {
    // NOTE: we accept arguments in bytes instead of bits here.
    constructor(blockLen, suffix, outputLen, enableXOF = false, rounds = 24) {
      __publicField(this, "state");
      __publicField(this, "pos", 0);
      __publicField(this, "posOut", 0);
      __publicField(this, "finished", false);
      __publicField(this, "state32");
      __publicField(this, "destroyed", false);
      __publicField(this, "blockLen");
      __publicField(this, "suffix");
      __publicField(this, "outputLen");
      __publicField(this, "canXOF");
      __publicField(this, "enableXOF", false);
      __publicField(this, "rounds");
      anumber(blockLen, "blockLen");
      anumber(suffix, "suffix");
      anumber(rounds, "rounds");
      abool(enableXOF, "enableXOF");
      this.blockLen = blockLen;
      this.suffix = suffix;
      this.outputLen = outputLen;
      this.enableXOF = enableXOF;
      this.canXOF = enableXOF;
      this.rounds = rounds;
      anumber(outputLen, "outputLen");
      if (!(0 < blockLen && blockLen < 200))
        throw new Error('"blockLen" must be 1..199');
      this.state = new Uint8Array(200);
      this.state32 = u32(this.state);
    }
    clone() {
      return this._cloneInto();
    }
    keccak() {
      swap32IfBE(this.state32);
      keccakP(this.state32, this.rounds);
      swap32IfBE(this.state32);
      this.posOut = 0;
      this.pos = 0;
    }
    update(data) {
      aexists(this);
      abytes(data);
      const { blockLen, state, state32 } = this;
      const len = data.length;
      const canUseU32 = blockLen % 4 === 0 && data.byteOffset % 4 === 0;
      const blockLen32 = blockLen / 4;
      const data32 = canUseU32 && len >= blockLen ? u32(data) : void 0;
      for (let pos = 0; pos < len; ) {
        if (data32 !== void 0 && this.pos === 0 && pos % 4 === 0 && len - pos >= blockLen) {
          for (let i = 0, o = pos / 4; i < blockLen32; i++)
            state32[i] ^= data32[o + i];
          pos += blockLen;
          this.pos = blockLen;
          this.keccak();
          continue;
        }
        const take = Math.min(blockLen - this.pos, len - pos);
        for (let i = 0; i < take; i++)
          state[this.pos++] ^= data[pos++];
        if (this.pos === blockLen)
          this.keccak();
      }
      return this;
    }
    finish() {
      if (this.finished)
        return;
      this.finished = true;
      const { state, suffix, pos, blockLen } = this;
      state[pos] ^= suffix;
      if ((suffix & 128) !== 0 && pos === blockLen - 1)
        this.keccak();
      state[blockLen - 1] ^= 128;
      this.keccak();
    }
    writeInto(out) {
      aexists(this, false);
      abytes(out);
      this.finish();
      const bufferOut = this.state;
      const { blockLen } = this;
      for (let pos = 0, len = out.length; pos < len; ) {
        if (this.posOut >= blockLen)
          this.keccak();
        const take = Math.min(blockLen - this.posOut, len - pos);
        out.set(bufferOut.subarray(this.posOut, this.posOut + take), pos);
        this.posOut += take;
        pos += take;
      }
      return out;
    }
    xofInto(out) {
      if (!this.enableXOF)
        throw new Error("XOF is not enabled");
      return this.writeInto(out);
    }
    xof(bytes) {
      anumber(bytes);
      return this.xofInto(new Uint8Array(bytes));
    }
    digestInto(out) {
      aoutput(out, this);
      if (this.finished)
        throw new Error("digest() was already called");
      this.writeInto(out.length === this.outputLen ? out : out.subarray(0, this.outputLen));
      this.destroy();
    }
    digest() {
      const out = new Uint8Array(this.outputLen);
      this.digestInto(out);
      return out;
    }
    destroy() {
      this.destroyed = true;
      clean(this.state);
    }
    _cloneInto(to) {
      const { blockLen, suffix, outputLen, rounds, enableXOF } = this;
      to || (to = new _Keccak(blockLen, suffix, outputLen, enableXOF, rounds));
      to.blockLen = blockLen;
      to.state32.set(this.state32);
      to.pos = this.pos;
      to.posOut = this.posOut;
      to.finished = this.finished;
      to.rounds = rounds;
      to.suffix = suffix;
      to.outputLen = outputLen;
      to.enableXOF = enableXOF;
      to.canXOF = this.canXOF;
      to.destroyed = this.destroyed;
      return to;
    }
  };
  var genKeccak = (suffix, blockLen, outputLen, info = {}) => createHasher(() => new Keccak(blockLen, suffix, outputLen), info);
  var keccak_256 = /* @__PURE__ */ genKeccak(1, 136, 32);

  // web/eip712.js
  var DOMAIN_NAME = "ChannelDeposit";
  var DOMAIN_VERSION = "1";
  var ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
  var UINT128_MAX = (1n << 128n) - 1n;
  var UINT96_MAX = (1n << 96n) - 1n;
  var UINT32_MAX = (1n << 32n) - 1n;
  var keccak = (bytes) => keccak_256(bytes);
  var typehash = (text) => keccak_256(utf8ToBytes(text));
  var DOMAIN_TYPEHASH = typehash("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
  var CHANNEL_TYPEHASH = typehash(
    "Channel(address payer,address signer,address receiver,address token,uint32 closeDelay,uint96 salt,address receiverAuthorizer)"
  );
  var VOUCHER_TYPEHASH = typehash("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
  var COOPERATIVE_CLOSE_TYPEHASH = typehash("CooperativeClose(bytes32 channelId,uint128 claimAmount)");
  function hexToBytes3(hex) {
    if (typeof hex !== "string" || !/^0x[0-9a-fA-F]*$/.test(hex) || hex.length % 2) throw new Error(`not 0x hex: ${hex}`);
    return hexToBytes(hex.slice(2));
  }
  var toHex = (bytes) => "0x" + bytesToHex(bytes);
  function word(value) {
    const n = BigInt(value);
    if (n < 0n || n >= 1n << 256n) throw new Error(`does not fit uint256: ${value}`);
    return hexToBytes(n.toString(16).padStart(64, "0"));
  }
  function addressBytes(address) {
    const raw = hexToBytes3(address);
    if (raw.length !== 20) throw new Error(`not an address: ${address}`);
    return raw;
  }
  var addressWord = (address) => concatBytes(new Uint8Array(12), addressBytes(address));
  function bytes32(value) {
    const raw = typeof value === "string" ? hexToBytes3(value) : value;
    if (raw.length !== 32) throw new Error("expected 32 bytes");
    return raw;
  }
  function checkRange(name, value, max) {
    const n = BigInt(value);
    if (n < 0n || n > max) throw new Error(`${name} out of range: ${value}`);
    return n;
  }
  function checksumAddress(address) {
    const lower = bytesToHex(addressBytes(address));
    const hash = bytesToHex(keccak_256(utf8ToBytes(lower)));
    let out = "0x";
    for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
    return out;
  }
  function addressOfPublicKey(uncompressed) {
    return checksumAddress(toHex(keccak_256(uncompressed.slice(1)).slice(-20)));
  }
  function addressOfKey(secretKey) {
    return addressOfPublicKey(secp256k1.getPublicKey(bytes32(secretKey), false));
  }
  function domainSeparator(chainId, contract) {
    return keccak_256(
      concatBytes(
        DOMAIN_TYPEHASH,
        typehash(DOMAIN_NAME),
        typehash(DOMAIN_VERSION),
        word(chainId),
        addressWord(contract)
      )
    );
  }
  function hashTypedData(chainId, contract, structHash) {
    return keccak_256(concatBytes(new Uint8Array([25, 1]), domainSeparator(chainId, contract), structHash));
  }
  function channelStructHash(config) {
    return keccak_256(concatBytes(CHANNEL_TYPEHASH, configWords(config)));
  }
  function channelId(chainId, contract, config) {
    return toHex(hashTypedData(chainId, contract, channelStructHash(config)));
  }
  function amountDigest(typeHash, chainId, contract, channel, amount) {
    const struct = keccak_256(concatBytes(typeHash, bytes32(channel), word(checkRange("amount", amount, UINT128_MAX))));
    return hashTypedData(chainId, contract, struct);
  }
  var voucherDigest = (chainId, contract, channel, amount) => amountDigest(VOUCHER_TYPEHASH, chainId, contract, channel, amount);
  var cooperativeCloseDigest = (chainId, contract, channel, amount) => amountDigest(COOPERATIVE_CLOSE_TYPEHASH, chainId, contract, channel, amount);
  function cooperativeCloseTypedData(chainId, contract, channel, amount) {
    return {
      types: {
        EIP712Domain: [
          { name: "name", type: "string" },
          { name: "version", type: "string" },
          { name: "chainId", type: "uint256" },
          { name: "verifyingContract", type: "address" }
        ],
        CooperativeClose: [
          { name: "channelId", type: "bytes32" },
          { name: "claimAmount", type: "uint128" }
        ]
      },
      primaryType: "CooperativeClose",
      domain: { name: DOMAIN_NAME, version: DOMAIN_VERSION, chainId: Number(chainId), verifyingContract: contract },
      message: { channelId: channel, claimAmount: BigInt(amount).toString() }
    };
  }
  function randomSecretKey() {
    return secp256k1.utils.randomSecretKey();
  }
  function signDigest(secretKey, digest) {
    const recovered = secp256k1.sign(digest, bytes32(secretKey), { prehash: false, format: "recovered", lowS: true });
    return concatBytes(recovered.slice(1), new Uint8Array([recovered[0] + 27]));
  }
  function recoverAddress(digest, signature) {
    const raw = typeof signature === "string" ? hexToBytes3(signature) : signature;
    if (raw.length !== 65) throw new Error("signature must be 65 bytes");
    const v = raw[64] >= 27 ? raw[64] - 27 : raw[64];
    const recovered = concatBytes(new Uint8Array([v]), raw.slice(0, 64));
    const point = secp256k1.recoverPublicKey(recovered, digest, { prehash: false });
    return addressOfPublicKey(secp256k1.Point.fromBytes(point).toBytes(false));
  }
  var CONFIG_TUPLE = "(address,address,address,address,uint32,uint96,address)";
  var selector = (signature) => keccak_256(utf8ToBytes(signature)).slice(0, 4);
  function configWords(config) {
    return concatBytes(
      addressWord(config.payer),
      addressWord(config.signer),
      addressWord(config.receiver),
      addressWord(config.token),
      word(checkRange("closeDelay", config.closeDelay, UINT32_MAX)),
      word(checkRange("salt", config.salt, UINT96_MAX)),
      addressWord(config.receiverAuthorizer || ZERO_ADDRESS)
    );
  }
  function dynamicBytes(raw) {
    const padded = new Uint8Array(Math.ceil(raw.length / 32) * 32);
    padded.set(raw);
    return concatBytes(word(raw.length), padded);
  }
  function encodeDepositEth(config) {
    return toHex(concatBytes(selector(`depositEth(${CONFIG_TUPLE})`), configWords(config)));
  }
  function encodeCloseCooperative(config, amount, payerSignature, receiverSignature) {
    const payer = dynamicBytes(hexToBytes3(payerSignature));
    const receiver = dynamicBytes(hexToBytes3(receiverSignature));
    const head = 7 * 32 + 3 * 32;
    return toHex(
      concatBytes(
        selector(`closeCooperative(${CONFIG_TUPLE},uint128,bytes,bytes)`),
        configWords(config),
        word(checkRange("amount", amount, UINT128_MAX)),
        word(head),
        word(head + payer.length),
        payer,
        receiver
      )
    );
  }
  function encodeGetChannel(channel) {
    return toHex(concatBytes(selector("getChannel(bytes32)"), bytes32(channel)));
  }
  function decodeGetChannel(hex) {
    const raw = hexToBytes3(hex);
    if (raw.length < 128) throw new Error("short getChannel answer");
    const at = (i) => BigInt(toHex(raw.slice(32 * i, 32 * i + 32)));
    return { deposited: at(0), claimed: at(1), closeDeadline: at(2), settled: at(3) !== 0n };
  }
  function formatUnits(value, decimals = 18) {
    const n = BigInt(value);
    const negative = n < 0n;
    const digits = (negative ? -n : n).toString().padStart(decimals + 1, "0");
    const whole = digits.slice(0, digits.length - decimals);
    const fraction = digits.slice(digits.length - decimals).replace(/0+$/, "");
    return (negative ? "-" : "") + whole + (fraction ? "." + fraction : "");
  }
  function parseUnits(text, decimals = 18) {
    const match = /^\s*(\d*)(?:\.(\d*))?\s*$/.exec(String(text));
    if (!match || match[1] === "" && !match[2]) throw new Error(`not an amount: ${text}`);
    const fraction = match[2] || "";
    if (fraction.length > decimals) throw new Error(`at most ${decimals} decimals`);
    return BigInt((match[1] || "0") + fraction.padEnd(decimals, "0"));
  }
  function encodeHeader(document2) {
    const bytes = utf8ToBytes(JSON.stringify(document2));
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary);
  }
  function decodeHeader(value) {
    const binary = atob(value.trim());
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }
  function paymentSignature(network, contract, channel, amount, signature, config, paymentId, pass) {
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
        receiverAuthorizer: checksumAddress(config.receiverAuthorizer || ZERO_ADDRESS)
      };
      accepted.asset = payload.channel.token;
      accepted.payTo = payload.channel.receiver;
    }
    accepted.extra = { contract };
    return encodeHeader({ x402Version: 2, accepted, payload });
  }
  var TRANSFER_WITH_AUTHORIZATION_TYPEHASH = typehash(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
  );
  function tokenDomainSeparator(domain) {
    return keccak_256(
      concatBytes(
        DOMAIN_TYPEHASH,
        typehash(domain.name),
        typehash(domain.version),
        word(domain.chainId),
        addressWord(domain.verifyingContract)
      )
    );
  }
  function tokenDigest(domain, typeHash, words) {
    const struct = keccak_256(concatBytes(typeHash, ...words));
    return keccak_256(concatBytes(new Uint8Array([25, 1]), tokenDomainSeparator(domain), struct));
  }
  function tokenTypedData(domain, primaryType, fields, message) {
    return {
      types: {
        EIP712Domain: [
          { name: "name", type: "string" },
          { name: "version", type: "string" },
          { name: "chainId", type: "uint256" },
          { name: "verifyingContract", type: "address" }
        ],
        [primaryType]: fields
      },
      primaryType,
      domain: {
        name: domain.name,
        version: domain.version,
        chainId: Number(domain.chainId),
        verifyingContract: checksumAddress(domain.verifyingContract)
      },
      message
    };
  }
  function transferAuthorizationDigest(domain, auth) {
    return tokenDigest(domain, TRANSFER_WITH_AUTHORIZATION_TYPEHASH, [
      addressWord(auth.from),
      addressWord(auth.to),
      word(auth.value),
      word(auth.validAfter),
      word(auth.validBefore),
      bytes32(auth.nonce)
    ]);
  }
  function transferAuthorizationTypedData(domain, auth) {
    return tokenTypedData(
      domain,
      "TransferWithAuthorization",
      [
        { name: "from", type: "address" },
        { name: "to", type: "address" },
        { name: "value", type: "uint256" },
        { name: "validAfter", type: "uint256" },
        { name: "validBefore", type: "uint256" },
        { name: "nonce", type: "bytes32" }
      ],
      authorizationJson(auth)
    );
  }
  function authorizationJson(auth) {
    return {
      from: checksumAddress(auth.from),
      to: checksumAddress(auth.to),
      value: BigInt(auth.value).toString(),
      validAfter: BigInt(auth.validAfter).toString(),
      validBefore: BigInt(auth.validBefore).toString(),
      nonce: toHex(bytes32(auth.nonce))
    };
  }
  function exactPaymentSignature(accepted, auth, signature, resource) {
    const raw = typeof signature === "string" ? hexToBytes3(signature) : signature;
    if (raw.length !== 65) throw new Error("an authorization signature is 65 bytes");
    const document2 = { x402Version: 2, payload: { authorization: authorizationJson(auth), signature: toHex(raw) }, accepted };
    if (resource) document2.resource = resource;
    return encodeHeader(document2);
  }
  function encodeBalanceOf(address) {
    return toHex(concatBytes(selector("balanceOf(address)"), addressWord(address)));
  }
  var PERMIT_TYPEHASH = typehash("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
  function permitDigest(domain, permit) {
    return tokenDigest(domain, PERMIT_TYPEHASH, [
      addressWord(permit.owner),
      addressWord(permit.spender),
      word(permit.value),
      word(permit.nonce),
      word(permit.deadline)
    ]);
  }
  function permitTypedData(domain, permit) {
    return tokenTypedData(
      domain,
      "Permit",
      [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" }
      ],
      {
        owner: checksumAddress(permit.owner),
        spender: checksumAddress(permit.spender),
        value: BigInt(permit.value).toString(),
        nonce: BigInt(permit.nonce).toString(),
        deadline: BigInt(permit.deadline).toString()
      }
    );
  }
  function toCompact(signature) {
    const raw = typeof signature === "string" ? hexToBytes3(signature) : signature;
    if (raw.length !== 65) throw new Error("signature must be 65 bytes");
    const v = raw[64] >= 27 ? raw[64] - 27 : raw[64];
    if (v > 1) throw new Error("bad signature v");
    const vs = raw.slice(32, 64);
    if (vs[0] & 128) throw new Error("high-s signature");
    if (v) vs[0] |= 128;
    return { r: toHex(raw.slice(0, 32)), vs: toHex(vs) };
  }
  function encodeDepositToken(config, amount) {
    return toHex(concatBytes(selector(`depositToken(${CONFIG_TUPLE},uint256)`), configWords(config), word(amount)));
  }
  function encodeDepositTokenWithPermit(config, amount, deadline, r, vs) {
    return toHex(
      concatBytes(
        selector(`depositTokenWithPermit(${CONFIG_TUPLE},uint256,uint256,bytes32,bytes32)`),
        configWords(config),
        word(amount),
        word(deadline),
        bytes32(r),
        bytes32(vs)
      )
    );
  }
  var encodeApprove = (spender, amount) => toHex(concatBytes(selector("approve(address,uint256)"), addressWord(spender), word(amount)));
  var encodeAllowance = (owner, spender) => toHex(concatBytes(selector("allowance(address,address)"), addressWord(owner), addressWord(spender)));
  var encodeNonces = (owner) => toHex(concatBytes(selector("nonces(address)"), addressWord(owner)));
  var encodeNoArguments = (signature) => toHex(selector(signature));
  function decodeUint(hex) {
    const raw = hexToBytes3(hex);
    if (raw.length < 32) throw new Error("short uint256 answer");
    return BigInt(toHex(raw.slice(0, 32)));
  }
  function decodeString(hex) {
    const raw = hexToBytes3(hex);
    if (raw.length === 32) return new TextDecoder().decode(raw).replace(/\0+$/, "");
    if (raw.length < 64) throw new Error("short string answer");
    const offset = Number(BigInt(toHex(raw.slice(0, 32))));
    if (offset + 32 > raw.length) throw new Error("bad string offset");
    const length = Number(BigInt(toHex(raw.slice(offset, offset + 32))));
    if (offset + 32 + length > raw.length) throw new Error("bad string length");
    return new TextDecoder("utf-8", { fatal: true }).decode(raw.slice(offset + 32, offset + 32 + length));
  }

  // web/display.js
  var CENT_SIGN = "¢";
  var MAX_SHOWN = 18;
  var MAX_SYMBOL = 4;
  function formatNumber(value, decimals, group = false) {
    const n = BigInt(value);
    const negative = n < 0n;
    const magnitude = negative ? -n : n;
    const unit = 10n ** BigInt(decimals);
    const whole = (magnitude / unit).toString();
    const fraction = (magnitude % unit).toString().padStart(decimals, "0").replace(/0+$/, "");
    const grouped = group ? whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") : whole;
    return (negative ? "-" : "") + grouped + (fraction && decimals ? "." + fraction : "");
  }
  function displayOf(document2, decimals) {
    if (!document2 || typeof document2 !== "object" || document2.decimals !== decimals) return null;
    const { symbol, centsBelow, shown = 2 } = document2;
    if (typeof symbol !== "string" || ![...symbol].length || [...symbol].length > MAX_SYMBOL) return null;
    if (!/^[\p{L}\p{Sc}]+$/u.test(symbol) || symbol.includes(CENT_SIGN)) return null;
    if (!Number.isSafeInteger(shown) || shown < 0 || shown > MAX_SHOWN || shown > decimals) return null;
    let below = null;
    if (centsBelow !== void 0) {
      if (typeof centsBelow !== "string" || !/^[0-9]{1,78}$/.test(centsBelow) || decimals < 2) return null;
      below = BigInt(centsBelow);
    }
    return { symbol, centsBelow: below, shown };
  }
  function formatDisplay(value, decimals, form) {
    const n = BigInt(value);
    const sign = n < 0n ? "-" : "";
    const magnitude = n < 0n ? -n : n;
    if (form.centsBelow !== null && magnitude > 0n && magnitude < form.centsBelow) {
      return sign + formatNumber(magnitude, decimals - 2, true) + CENT_SIGN;
    }
    const text = formatNumber(magnitude, decimals, true);
    const [whole, fraction = ""] = text.split(".");
    const shown = fraction.padEnd(form.shown, "0");
    return sign + form.symbol + whole + (shown ? "." + shown : "");
  }

  // web/ledger.js
  var big = (value) => BigInt(value ?? 0);
  function bookOf(record) {
    return {
      received: String(record.received ?? record.charged ?? "0"),
      lost: String(record.lost ?? "0"),
      blocked: Boolean(record.blocked)
    };
  }
  function acceptedCharged(book2) {
    return big(book2.received) + big(book2.lost);
  }
  function voucherNeeded(book2, price) {
    return acceptedCharged(book2) + big(price);
  }
  function onStatedCharged(book2, stated, price) {
    const excess = big(stated) - acceptedCharged(book2);
    if (excess <= 0n) return book2;
    const lost = big(book2.lost) + excess;
    if (lost > big(price)) return { ...book2, blocked: true };
    return { ...book2, lost: lost.toString() };
  }
  function onDelivered(book2, amount, total, price) {
    const delivered = { ...book2, received: (big(book2.received) + big(amount)).toString() };
    return onStatedCharged(delivered, total, price);
  }
  function onCutShort(book2, amount, total, price) {
    const next = onStatedCharged(book2, total, price);
    return big(amount) > 0n ? { ...next, blocked: true } : next;
  }
  function trusted(book2) {
    return { received: acceptedCharged(book2).toString(), lost: "0", blocked: false };
  }

  // web/wallet.js
  var STORAGE_PREFIX = "channel-node:v1:";
  var DEFAULT_CLOSE_DELAY = 3600;
  var DEFAULT_DEPOSIT_MULTIPLE = 50n;
  function termsOf(offer) {
    const accept = (offer.accepts || [])[0];
    if (!accept || accept.scheme !== "channel") throw new Error("the offer has no `channel` scheme");
    const match = /^eip155:(\d+)$/.exec(accept.network);
    if (!match) throw new Error(`unsupported network ${accept.network}`);
    const extra = accept.extra || {};
    const delay = extra.closeDelay || {};
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
      message: offer.message
    };
  }
  var DIGITS = /^[0-9]{1,78}$/;
  var NAME = /^[a-z0-9-]{1,32}$/;
  var PERIOD = /^(day|week|month|[1-9][0-9]{0,3}d)$/;
  var seconds = (value) => Number.isSafeInteger(value) && value > 0 ? value : null;
  var MAX_PASSES = 8;
  function capOf(document2) {
    if (!document2 || typeof document2 !== "object") return null;
    const { name, cap, period } = document2;
    if (typeof name !== "string" || !NAME.test(name) || typeof cap !== "string" || !DIGITS.test(cap)) return null;
    if (period !== void 0 && (typeof period !== "string" || !PERIOD.test(period))) return null;
    return {
      name,
      cap: BigInt(cap),
      period: period || null,
      periodEndsAt: seconds(document2.periodEndsAt),
      paid: typeof document2.paid === "string" && DIGITS.test(document2.paid) ? BigInt(document2.paid) : null,
      resetsAt: seconds(document2.resetsAt)
    };
  }
  function passesOf(list) {
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
  var nowSeconds = () => Math.floor(Date.now() / 1e3);
  function capProgress(terms, record, now = nowSeconds()) {
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
        paid = 0n;
      }
    } else if (paid === null && cap.period && !cap.period.endsWith("d")) {
      paid = 0n;
    }
    const room = paid === null ? null : cap.cap > paid ? cap.cap - paid : 0n;
    return { name: cap.name, cap: cap.cap, paid, room, reached: room === 0n, resetsAt, period: cap.period };
  }
  function heldPass(terms, record, now = nowSeconds()) {
    if (!record || !record.passes) return null;
    for (const pass of terms.passes) {
      const until = record.passes[pass.name];
      if (Number.isSafeInteger(until) && until > now) return { ...pass, until };
    }
    return null;
  }
  function effectivePrice(terms, record, now = nowSeconds()) {
    if (heldPass(terms, record, now)) return 0n;
    const progress = capProgress(terms, record, now);
    if (progress && progress.room !== null && progress.room < terms.price) return progress.room;
    return terms.price;
  }
  function keepSpending(record, receipt) {
    const cap = capOf(receipt.cap);
    if (cap && cap.paid !== null) {
      record.caps = { ...record.caps || {}, [cap.name]: { cap: cap.cap.toString(), paid: cap.paid.toString(), resetsAt: cap.resetsAt } };
    }
    const pass = receipt.pass;
    if (pass && typeof pass === "object" && typeof pass.name === "string" && NAME.test(pass.name) && seconds(pass.until)) {
      record.passes = { ...record.passes || {}, [pass.name]: pass.until };
    }
  }
  function storageKey(terms) {
    const key = `${STORAGE_PREFIX}${terms.chainId}:${terms.contract}:${terms.receiver}:${terms.asset}`;
    return (terms.receiverAuthorizer === ZERO_ADDRESS ? key : `${key}:${terms.receiverAuthorizer}`).toLowerCase();
  }
  function load(terms) {
    const raw = localStorage.getItem(storageKey(terms));
    return raw ? JSON.parse(raw) : null;
  }
  function save(terms, record) {
    localStorage.setItem(storageKey(terms), JSON.stringify(record));
  }
  function archive(terms) {
    const raw = localStorage.getItem(storageKey(terms));
    if (!raw) return;
    const old = JSON.parse(raw);
    if (old && old.channelId) localStorage.setItem(`${storageKey(terms)}:${String(old.channelId).toLowerCase()}`, raw);
  }
  function provider() {
    if (!window.ethereum || typeof window.ethereum.request !== "function") {
      throw new Error("no Ethereum wallet in this browser (install MetaMask or another EIP-1193 wallet)");
    }
    return window.ethereum;
  }
  var rpc = (method, params = []) => provider().request({ method, params });
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
      await sleep(1e3);
    }
    throw new Error(`transaction ${hash} not mined after 4 minutes`);
  }
  async function readChannel(terms, channel) {
    const answer = await rpc("eth_call", [{ to: terms.contract, data: encodeGetChannel(channel) }, "latest"]);
    return decodeGetChannel(answer);
  }
  var larger = (a, b) => (BigInt(a) > BigInt(b) ? BigInt(a) : BigInt(b)).toString();
  var sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  var hexQuantity = (n) => "0x" + BigInt(n).toString(16);
  var MAX_CLOSE_DELAY = 24 * 3600;
  function closeDelayFor(terms) {
    const delay = Math.min(Math.max(DEFAULT_CLOSE_DELAY, Number(terms.delayMin)), Number(terms.delayMax));
    if (!Number.isSafeInteger(delay) || delay < 0 || delay > MAX_CLOSE_DELAY) {
      throw new Error(`the site asks a close delay of ${terms.delayMin} s or more: your deposit would stay locked that long if it stopped cooperating (at most ${MAX_CLOSE_DELAY} s here)`);
    }
    return delay;
  }
  function randomSalt() {
    const raw = crypto.getRandomValues(new Uint8Array(12));
    return BigInt(toHex(raw)).toString();
  }
  var PERMIT_LIFETIME = 3600;
  var MAX_DECIMALS = 36;
  var isToken = (terms) => terms.asset !== ZERO_ADDRESS;
  var call = (to, data) => rpc("eth_call", [{ to, data }, "latest"]);
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
  function money(terms, amount) {
    const unit = terms.unit;
    if (!unit || unit.decimals === null || unit.decimals === void 0) return `${BigInt(amount)} base units of token ${terms.asset}`;
    const form = displayOf(terms.displayDocument, unit.decimals);
    if (form) return formatDisplay(amount, unit.decimals, form);
    return `${formatUnits(amount, unit.decimals)} ${unit.symbol || `units of token ${terms.asset}`}`;
  }
  async function loadUnit(terms, fallback = {}) {
    if (!isToken(terms) || terms.unit) return terms.unit;
    let decimals = null;
    let symbol = null;
    try {
      const answer = await optionalCall(terms.asset, encodeNoArguments("decimals()"));
      const n = answer ? decodeUint(answer) : null;
      if (n !== null && n <= BigInt(MAX_DECIMALS)) decimals = Number(n);
      const text = await optionalCall(terms.asset, encodeNoArguments("symbol()"));
      if (text) symbol = cleanSymbol(decodeString(text));
    } catch (error) {
    }
    if (decimals === null && Number.isSafeInteger(fallback.decimals) && fallback.decimals >= 0 && fallback.decimals <= MAX_DECIMALS) {
      decimals = fallback.decimals;
    }
    terms.unit = { decimals, symbol: symbol || cleanSymbol(fallback.symbol) };
    return terms.unit;
  }
  var cleanSymbol = (text) => typeof text === "string" && /^[\p{L}\p{N}\p{Sc}]{1,12}$/u.test(text) ? text : null;
  async function readToken(terms, owner) {
    const code = await rpc("eth_getCode", [terms.asset, "latest"]);
    if (typeof code !== "string" || code.length <= 2) {
      throw refused(`the site's asset ${terms.asset} is not a token contract on chain ${terms.chainId}`, "not_a_token");
    }
    const balanceAnswer = await optionalCall(terms.asset, encodeBalanceOf(owner));
    if (!balanceAnswer) throw refused(`the site's asset ${terms.asset} does not answer balanceOf: not an ERC-20 token`, "not_a_token");
    return { balance: decodeUint(balanceAnswer) };
  }
  async function permitTerms(terms, owner) {
    const [separator, nonceAnswer, nameAnswer, versionAnswer] = [
      await optionalCall(terms.asset, encodeNoArguments("DOMAIN_SEPARATOR()")),
      await optionalCall(terms.asset, encodeNonces(owner)),
      await optionalCall(terms.asset, encodeNoArguments("name()")),
      await optionalCall(terms.asset, encodeNoArguments("version()"))
    ];
    if (!separator || !nonceAnswer || !nameAnswer) return { reason: "no_permit" };
    let domain;
    try {
      domain = {
        name: decodeString(nameAnswer),
        version: versionAnswer ? decodeString(versionAnswer) : "1",
        chainId: terms.chainId,
        verifyingContract: terms.asset
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
  var userRejected = (error) => error && (error.code === 4001 || error.code === "ACTION_REJECTED");
  async function depositFunds(terms, payer, config, amount) {
    if (!isToken(terms)) {
      await sendAndWait({ from: payer, to: terms.contract, value: hexQuantity(amount), data: encodeDepositEth(config) });
      return "eth";
    }
    if (checksumAddress(config.token) !== terms.asset) throw refused("the channel's token is not the site's asset", "asset_mismatch");
    const token = await readToken(terms, payer);
    if (token.balance < amount) {
      throw refused(
        `a deposit of ${money(terms, amount)} needs more than this account holds (${money(terms, token.balance)})`,
        "insufficient_balance"
      );
    }
    const permit = await permitTerms(terms, payer);
    if (permit.domain) {
      const message = {
        owner: payer,
        spender: terms.contract,
        value: amount,
        nonce: permit.nonce,
        deadline: await latestTimestamp() + BigInt(PERMIT_LIFETIME)
      };
      let signature = null;
      try {
        signature = await rpc("eth_signTypedData_v4", [payer, JSON.stringify(permitTypedData(permit.domain, message))]);
      } catch (error) {
        signature = null;
      }
      if (signature) {
        if (recoverAddress(permitDigest(permit.domain, message), signature).toLowerCase() !== payer.toLowerCase()) {
          throw new Error("the wallet's typed-data signature does not match the permit digest");
        }
        const { r, vs } = toCompact(signature);
        try {
          await sendAndWait({
            from: payer,
            to: terms.contract,
            value: "0x0",
            data: encodeDepositTokenWithPermit(config, amount, message.deadline, r, vs)
          });
          return "permit";
        } catch (error) {
          if (userRejected(error)) throw error;
          console.warn("the permit deposit failed; approving exactly the deposit instead", error);
        }
      }
    }
    const allowance = decodeUint(await call(terms.asset, encodeAllowance(payer, terms.contract)));
    if (allowance < amount) {
      if (allowance > 0n) await sendAndWait({ from: payer, to: terms.asset, value: "0x0", data: encodeApprove(terms.contract, 0n) });
      await sendAndWait({ from: payer, to: terms.asset, value: "0x0", data: encodeApprove(terms.contract, amount) });
    }
    await sendAndWait({ from: payer, to: terms.contract, value: "0x0", data: encodeDepositToken(config, amount) });
    return "approve";
  }
  async function openChannel(terms, deposit) {
    const minimum = terms.price > terms.minDeposit ? terms.price : terms.minDeposit;
    if (deposit < minimum) throw new Error(`the deposit must be at least ${money(terms, minimum)}`);
    const closeDelay = closeDelayFor(terms);
    const payer = await connect(terms);
    if (isToken(terms)) {
      const token = await readToken(terms, payer);
      if (token.balance < deposit) {
        throw refused(
          `a deposit of ${money(terms, deposit)} needs more than this account holds (${money(terms, token.balance)})`,
          "insufficient_balance"
        );
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
      receiverAuthorizer: terms.receiverAuthorizer
    };
    const id = channelId(terms.chainId, terms.contract, config);
    const record = {
      channelId: id,
      config,
      voucherKey: toHex(key),
      status: "opening",
      deposited: "0",
      charged: "0",
      voucher: null,
      unlocks: [],
      network: terms.network,
      contract: terms.contract
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
  async function topUp(terms, record, amount) {
    const payer = await connect(terms);
    if (payer.toLowerCase() !== record.config.payer.toLowerCase()) throw new Error(`switch your wallet to ${record.config.payer}`);
    record.funded = await depositFunds(terms, payer, record.config, amount);
    record.deposited = (await readChannel(terms, record.channelId)).deposited.toString();
    save(terms, record);
    return record;
  }
  async function closeChannel(terms, record, base = location.origin) {
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
        body: JSON.stringify({ channelId: record.channelId, amount: amount.toString(), payerSignature })
      });
      const answer = await response.json();
      if (response.ok) {
        consent = { ...answer, payerSignature };
      } else if (answer.error === "close_amount_above_charged" && answer.channel && attempt === 0 && BigInt(answer.channel.charged) < amount) {
        amount = BigInt(answer.channel.charged);
      } else if (answer.error === "close_amount_too_low" && answer.channel && attempt === 0) {
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
    if (consent.amount === void 0 || BigInt(consent.amount) !== amount) {
      throw new Error("the node's consent names another amount than the one this browser agreed to");
    }
    const closeAmount = amount;
    const consenter = recoverAddress(
      cooperativeCloseDigest(terms.chainId, terms.contract, record.channelId, closeAmount),
      consent.receiverSignature
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
  function voucherFor(terms, record, price) {
    const needed = voucherNeeded(bookOf(record), price);
    if (needed > BigInt(record.deposited)) return null;
    const held = record.voucher ? BigInt(record.voucher.amount) : -1n;
    if (held >= needed) return record.voucher;
    const digest = voucherDigest(terms.chainId, terms.contract, record.channelId, needed);
    record.voucher = { amount: needed.toString(), signature: toHex(signDigest(hexToBytes3(record.voucherKey), digest)) };
    save(terms, record);
    return record.voucher;
  }
  function header(terms, record, voucher, passName = null) {
    return paymentSignature(
      terms.network,
      terms.contract,
      record.channelId,
      voucher.amount,
      hexToBytes3(voucher.signature),
      record.config,
      void 0,
      passName
    );
  }
  function unlockKind(terms, receipt, pass, charged) {
    if (pass && charged > 0n) return "pass";
    if (charged === 0n && receipt.pass) return "pass_read";
    if (receipt.cap && charged < terms.price) return "capped";
    return "article";
  }
  function misbehaved() {
    return Object.assign(
      new Error("this site claims charges for content this browser never received: stopped paying it"),
      { code: "server_misbehaved" }
    );
  }
  function book(terms, record, step) {
    const next = step(bookOf(record));
    Object.assign(record, next, { charged: (BigInt(next.received) + BigInt(next.lost)).toString() });
    save(terms, record);
    if (next.blocked) throw misbehaved();
  }
  function trustSite(terms) {
    const record = load(terms);
    if (record) book(terms, record, trusted);
    return record;
  }
  async function payFor(terms, record, url, { reread = false, pass = null } = {}) {
    const target = new URL(url, location.href);
    const path = target.pathname + target.search;
    if (bookOf(record).blocked) throw misbehaved();
    const price = pass ? pass.price : terms.price;
    let resynced = false;
    for (let attempt = 0; attempt < 20; attempt++) {
      const voucher = reread ? record.voucher && !resynced ? record.voucher : voucherFor(terms, record, 0n) : voucherFor(terms, record, price);
      if (!voucher) throw Object.assign(new Error("the deposit is used up: top up to keep reading"), { code: "top_up" });
      const response = await fetch(url, {
        headers: { "PAYMENT-SIGNATURE": header(terms, record, voucher, pass && !reread ? pass.name : null), Accept: "*/*" },
        cache: "no-store",
        redirect: "manual"
      });
      if (response.type === "opaqueredirect" || response.status >= 300 && response.status < 400) {
        throw Object.assign(
          new Error("the site answered the payment with a redirect: not following it with a voucher"),
          { code: "redirected" }
        );
      }
      if (response.ok) {
        const receipt = decodeHeader(response.headers.get("PAYMENT-RESPONSE"));
        const charged = BigInt(receipt.chargedAmount);
        if (charged > price || BigInt(receipt.chargedTotal) > BigInt(voucher.amount)) {
          book(terms, record, (b) => ({ ...b, blocked: true }));
        }
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
        let code = null;
        try {
          const body = await response.json();
          code = typeof body.error === "string" ? body.error : typeof body.code === "string" ? body.code : null;
        } catch (error) {
        }
        throw Object.assign(new Error(`the node answered ${response.status}${code ? ` (${code})` : ""}`), { code });
      }
      const refusal = termsOf(decodeHeader(requiredHeader));
      if (refusal.asset !== terms.asset || refusal.contract !== terms.contract || refusal.receiver !== terms.receiver) {
        throw refused("the site's answer names another asset, contract or receiver than its offer: not paying", "offer_changed");
      }
      const state = refusal.channelState;
      if ((refusal.error === "insufficient_voucher" || refusal.error === "stale_voucher") && state) {
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
        if (BigInt(record.deposited) >= BigInt(voucher.amount)) {
          throw Object.assign(new Error("the site has not seen your deposit yet: try again in a moment"), { code: "deposit_not_seen" });
        }
        throw Object.assign(new Error("the deposit is used up: top up to keep reading"), { code: "top_up" });
      } else if (refusal.error === "channel_unknown") {
        await sleep(1500);
      } else if (refusal.error === "channel_closing" || refusal.error === "channel_settled") {
        const onChain = await readChannel(terms, record.channelId);
        if (!onChain.settled && onChain.closeDeadline === 0n) {
          throw Object.assign(
            new Error("the site says this channel is closing, but the chain shows it open: not paying"),
            { code: "channel_open_on_chain" }
          );
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
  var MAX_EXACT_WINDOW = 600;
  var EXACT_PENDING_RETRIES = 20;
  function exactTermsOf(offer) {
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
      accepted,
      // echoed verbatim in the payment: the site compares its strings
      network: accepted.network,
      chainId: BigInt(match[1]),
      asset: checksumAddress(accepted.asset),
      payTo: checksumAddress(accepted.payTo),
      price: BigInt(accepted.amount),
      name: extra.name,
      version: extra.version,
      window: Math.min(timeout, MAX_EXACT_WINDOW),
      resource: offer.resource || null
    };
  }
  var exactKey = (terms) => `${STORAGE_PREFIX}exact:${terms.chainId}:${terms.asset}:${terms.payTo}`.toLowerCase();
  function exactRecords(terms) {
    const raw = localStorage.getItem(exactKey(terms));
    return raw ? JSON.parse(raw) : [];
  }
  function saveExact(terms, entry) {
    const records = exactRecords(terms).filter((r) => r.nonce !== entry.nonce);
    records.push(entry);
    localStorage.setItem(exactKey(terms), JSON.stringify(records.slice(-200)));
  }
  async function payExact(terms, url) {
    const target = new URL(url, location.href);
    const path = target.pathname + target.search;
    const payer = await connect(terms);
    const balance = BigInt(await rpc("eth_call", [{ to: terms.asset, data: encodeBalanceOf(payer) }, "latest"]));
    if (balance < terms.price) {
      throw Object.assign(
        new Error(`your balance of token ${terms.asset} (${balance}) is below the price (${terms.price})`),
        { code: "insufficient_balance" }
      );
    }
    const domain = { name: terms.name, version: terms.version, chainId: terms.chainId, verifyingContract: terms.asset };
    const auth = {
      from: payer,
      to: terms.payTo,
      value: terms.price,
      validAfter: 0n,
      validBefore: BigInt(Math.floor(Date.now() / 1e3) + terms.window),
      nonce: toHex(crypto.getRandomValues(new Uint8Array(32)))
    };
    const signature = await rpc("eth_signTypedData_v4", [payer, JSON.stringify(transferAuthorizationTypedData(domain, auth))]);
    if (recoverAddress(transferAuthorizationDigest(domain, auth), signature).toLowerCase() !== payer.toLowerCase()) {
      throw new Error("the wallet's typed-data signature does not match the transfer authorization");
    }
    const entry = {
      path,
      nonce: auth.nonce,
      value: terms.price.toString(),
      validBefore: auth.validBefore.toString(),
      status: "signed",
      transaction: null,
      at: Date.now()
    };
    saveExact(terms, entry);
    const header2 = exactPaymentSignature(terms.accepted, auth, signature, terms.resource);
    for (let attempt = 0; attempt < EXACT_PENDING_RETRIES; attempt++) {
      const response = await fetch(url, {
        headers: { "PAYMENT-SIGNATURE": header2, Accept: "*/*" },
        cache: "no-store",
        redirect: "manual"
      });
      if (response.type === "opaqueredirect" || response.status >= 300 && response.status < 400) {
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
      if (refusal.error === "settlement_pending" && BigInt(Math.floor(Date.now() / 1e3)) < auth.validBefore) {
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
        receipt.transaction ? ` (transaction ${receipt.transaction}).` : "."
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
  var $ = (id) => document.getElementById(id);
  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }
  function eth(wei) {
    return `${formatUnits(wei)} ETH`;
  }
  var decimalsOf = (terms) => terms.unit && terms.unit.decimals !== null ? terms.unit.decimals : 0;
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
        record.status === "closed" ? " (closed)" : ""
      )
    );
    const progress = capProgress(terms, record);
    if (progress && progress.paid !== null) {
      panel.append(element("p", { id: "channel-panel-cap" }, `Cap ${progress.name}: ${capText(terms, progress)}`));
    }
    const held = heldPass(terms, record);
    if (held) panel.append(element("p", { id: "channel-panel-pass" }, `Your ${held.name} pass: free reading until ${dateWords(held.until)}`));
    const list = element("ol", { id: "channel-unlocks" });
    for (const unlock2 of record.unlocks.slice(-20)) {
      const free = { pass_read: "free (pass)", capped: "free (cap reached)" }[unlock2.kind] || "free (already paid)";
      const paid = unlock2.kind === "pass" ? `${money(terms, unlock2.cost)} (pass)` : unlock2.kind === "capped" ? `${money(terms, unlock2.cost)} (capped)` : money(terms, unlock2.cost);
      const cost = BigInt(unlock2.cost) === 0n ? free : paid;
      list.append(element("li", { "data-cost": unlock2.cost, "data-kind": unlock2.kind || "article" }, `${unlock2.path}: ${cost}`));
    }
    if (record.unlocks.length) panel.append(element("p", {}, "Unlocks:"), list);
    if (bookOf(record).blocked) {
      const trust = element("button", { id: "channel-trust", type: "button" }, "Trust this site again");
      trust.addEventListener("click", () => act(terms, "Trusting this site again ...", async () => ({ record: trustSite(terms) })));
      panel.append(
        element("p", { id: "channel-blocked" }, "Stopped paying: this site claimed charges for content this browser never received."),
        element("p", {}, trust)
      );
    }
    if (record.status === "open") {
      const amount = element("input", {
        id: "channel-topup-amount",
        inputmode: "decimal",
        size: "10",
        value: formatUnits(terms.price * 10n, decimalsOf(terms))
      });
      const topup = element("button", { id: "channel-topup", type: "button" }, "Top up");
      const close = element("button", { id: "channel-close", type: "button" }, "Close channel and get the rest back");
      topup.addEventListener(
        "click",
        () => act(terms, "Topping up (confirm in your wallet) ...", async () => topUp(terms, load(terms), parseUnits(amount.value, decimalsOf(terms))))
      );
      close.addEventListener(
        "click",
        () => act(terms, "Closing (sign and confirm in your wallet) ...", async () => {
          const closed = await closeChannel(terms, load(terms));
          return { record: closed, note: `Channel closed: ${money(terms, closed.refunded)} returned to ${closed.config.payer}.` };
        })
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
  var busy = false;
  async function act(terms, message, work) {
    if (busy) return;
    busy = true;
    for (const button of document.querySelectorAll("#channel-paywall button, #channel-wallet button")) button.disabled = true;
    setStatus(message);
    try {
      const outcome = await work();
      const record = outcome && outcome.record ? outcome.record : load(terms);
      renderPanel(terms, record, outcome && outcome.note || "");
      setStatus(outcome && outcome.note || "");
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
  var PERIOD_WORDS = { day: "today", week: "this week", month: "this month" };
  function periodWords(period) {
    if (!period) return "";
    return PERIOD_WORDS[period] || `in any ${period.slice(0, -1)} days`;
  }
  function dateWords(unix) {
    return new Date(unix * 1e3).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
  }
  function durationWords(duration) {
    if (duration % 604800 === 0) return `${duration / 604800}-week`;
    if (duration % 86400 === 0) return `${duration / 86400}-day`;
    if (duration % 3600 === 0) return `${duration / 3600}-hour`;
    return `${duration}-second`;
  }
  function capText(terms, progress) {
    const cap = money(terms, progress.cap);
    const period = periodWords(progress.period);
    if (progress.paid === null) return `Never more than ${cap} ${period} on ${progress.name}`.trim();
    let text = `${money(terms, progress.paid)} of ${cap} ${period}`.trim();
    if (progress.resetsAt) text += `, resets ${dateWords(progress.resetsAt)}`;
    if (progress.reached) text += ": reading on is free until then";
    return text;
  }
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
  async function ensureOpen(terms, atLeast = 0n) {
    const current = load(terms);
    if (current && current.status === "open") return;
    const deposit = parseUnits($("channel-deposit").value, decimalsOf(terms));
    if (deposit < atLeast) throw new Error(`the deposit must cover ${money(terms, atLeast)} for this`);
    setStatus("Opening a channel (confirm the deposit in your wallet) ...");
    await openChannel(terms, deposit);
  }
  async function start() {
    const data = $("channel-offer");
    if (!data) return;
    const offer = JSON.parse(data.textContent);
    const exact = exactTermsOf(offer);
    const exactButton = $("channel-exact-unlock");
    if (exactButton && exact) exactButton.addEventListener("click", () => unlockExact(exact));
    const terms = termsOf(offer);
    const depositInput = $("channel-deposit");
    if (isToken(terms)) {
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
      readChannel(terms, record.channelId).then((onChain) => {
        if (onChain.deposited > 0n) Object.assign(record, { status: "open", deposited: onChain.deposited.toString() });
        save(terms, record);
        renderPanel(terms, record);
        refreshPaywall(terms);
      }).catch(() => {
      });
    }
    renderPanel(terms, record);
    refreshPaywall(terms);
    const button = $("channel-unlock");
    if (button) {
      button.addEventListener(
        "click",
        () => act(terms, "Unlocking ...", async () => {
          await ensureOpen(terms);
          return unlock(terms);
        })
      );
    }
    for (const passButton of document.querySelectorAll("button[data-pass]")) {
      passButton.addEventListener(
        "click",
        () => act(terms, "Buying the pass ...", async () => {
          const pass = terms.passes.find((p) => p.name === passButton.dataset.pass);
          if (!pass) throw new Error("the offer no longer sells this pass");
          await ensureOpen(terms, pass.price);
          return unlock(terms, { pass });
        })
      );
    }
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
  return __toCommonJS(wallet_exports);
})();
