// Display forms in the page (docs/amounts.md, "Display forms"): the offer's `extra.display` makes
// `$0.02`, `$1.40`, `2¢` of base units, exactly as src/channel_node/amounts.py's format_display does
// (tests/client/test_wallet_js_caps.py compares them). Never rounded: an amount with more digits than
// the form shows gets all of them. Pure: no DOM, no network.

const CENT_SIGN = "¢";
const MAX_SHOWN = 18;
const MAX_SYMBOL = 4;

/** `value` base units as exact whole units: "0.0005", "12", with thousands separators when `group`. */
export function formatNumber(value, decimals, group = false) {
  const n = BigInt(value);
  const negative = n < 0n;
  const magnitude = negative ? -n : n;
  const unit = 10n ** BigInt(decimals);
  const whole = (magnitude / unit).toString();
  const fraction = (magnitude % unit).toString().padStart(decimals, "0").replace(/0+$/, "");
  const grouped = group ? whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") : whole;
  return (negative ? "-" : "") + grouped + (fraction && decimals ? "." + fraction : "");
}

/** The offer's `extra.display` checked against the asset's `decimals` (the token's own), as
 * wire/channel.py's read_display: {symbol, centsBelow (bigint or null), shown}, or null when it is
 * absent, malformed, or made for other decimals. */
export function displayOf(document, decimals) {
  if (!document || typeof document !== "object" || document.decimals !== decimals) return null;
  const { symbol, centsBelow, shown = 2 } = document;
  if (typeof symbol !== "string" || ![...symbol].length || [...symbol].length > MAX_SYMBOL) return null;
  if (!/^[\p{L}\p{Sc}]+$/u.test(symbol) || symbol.includes(CENT_SIGN)) return null;
  if (!Number.isSafeInteger(shown) || shown < 0 || shown > MAX_SHOWN || shown > decimals) return null;
  let below = null;
  if (centsBelow !== undefined) {
    if (typeof centsBelow !== "string" || !/^[0-9]{1,78}$/.test(centsBelow) || decimals < 2) return null;
    below = BigInt(centsBelow);
  }
  return { symbol, centsBelow: below, shown };
}

/** `value` base units in the display form `form` of an asset of `decimals`: `$0.02`, `2¢`. */
export function formatDisplay(value, decimals, form) {
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
