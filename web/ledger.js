// The browser wallet's money rules, pure (no I/O, no DOM), the same bound as the Python wallet's
// client/ledger.py (docs/security.md, "The wallet's exposure bound"): what a reader signs to a site
// is at most what it received, plus the price of the request in flight, plus one price of charges
// for content it never received; a site that claims more is blocked until the reader trusts it again.
//
// A book is {received, lost, blocked}: `received` what delivered content cost, `lost` what the node
// says it charged beyond that (accepted once, up to one price). Amounts are decimal strings (JSON).

const big = (value) => BigInt(value ?? 0);

/** A record saved before these rules counted everything the node charged as received. */
export function bookOf(record) {
  return {
    received: String(record.received ?? record.charged ?? "0"),
    lost: String(record.lost ?? "0"),
    blocked: Boolean(record.blocked),
  };
}

/** The charged total the reader accepts: received plus the accepted loss. */
export function acceptedCharged(book) {
  return big(book.received) + big(book.lost);
}

/** The voucher amount a request for `price` needs; reuse the held voucher while it covers it. */
export function voucherNeeded(book, price) {
  return acceptedCharged(book) + big(price);
}

/** The node states it has charged `stated` in all. Whatever is beyond what the reader accepts as
 * charged is content it never received: allowed up to one price in all, then the site is blocked. */
export function onStatedCharged(book, stated, price) {
  const excess = big(stated) - acceptedCharged(book);
  if (excess <= 0n) return book;
  const lost = big(book.lost) + excess;
  if (lost > big(price)) return { ...book, blocked: true };
  return { ...book, lost: lost.toString() };
}

/** A delivered response cost `amount` and the receipt says the total is now `total`. */
export function onDelivered(book, amount, total, price) {
  const delivered = { ...book, received: (big(book.received) + big(amount)).toString() };
  return onStatedCharged(delivered, total, price);
}

/** A response charged `amount` (receipt total `total`) but its body did not arrive whole: nothing of
 * it counts as received, and a charge for it blocks the site at once (client/ledger.py `delivered`
 * with `complete=False`); a free answer cut short costs nothing. */
export function onCutShort(book, amount, total, price) {
  const next = onStatedCharged(book, total, price);
  return big(amount) > 0n ? { ...next, blocked: true } : next;
}

/** The reader says the site may be paid again: what was lost stays counted as charged, and the
 * site has one price of allowance again. */
export function trusted(book) {
  return { received: acceptedCharged(book).toString(), lost: "0", blocked: false };
}
