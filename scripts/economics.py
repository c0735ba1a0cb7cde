"""What collecting a payment costs, from the measured gas (docs/gas.json), at gas prices you choose:
per operation, per unlock for N unlocks per channel, and beside a card payment's fee and x402
`exact`'s per-payment gas (docs/economics.md shows this script's output).

    python scripts/economics.py                                   # the tables, as markdown
    python scripts/economics.py --gwei 0.05,1,20 --eth-price 3000 # other prices (1 ETH in dollars)
    python scripts/economics.py --write                           # rewrite the tables in docs/economics.md

Exact arithmetic (fractions) throughout; amounts are rounded to three significant digits only to
be shown. Dollars assume a dollar stablecoin (or ETH priced in dollars at --eth-price).
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

from channel_node.amounts import format_short
from channel_node.insights.economics import WEI_PER_ETH, WEI_PER_GWEI, parse_decimal

ROOT = Path(__file__).resolve().parents[1]
GAS_JSON = ROOT / "docs" / "gas.json"
DOC = ROOT / "docs" / "economics.md"
START, END = "<!-- economics-tables:start -->", "<!-- economics-tables:end -->"
DEFAULT_GWEI = "0.05,1,20"
DEFAULT_ETH_PRICE = "3000"
UNLOCKS = (1, 10, 100, 1000)
ARTICLE_PRICES = ("0.02", "0.10", "0.50", "1.00")
# The commonly published US online card price (Stripe's standard pricing page: 2.9% + 30¢ per
# successful domestic card charge); a small merchant pays about this, larger ones negotiate less.
CARD_PERCENT, CARD_FIXED = Fraction(29, 1000), Fraction(30, 100)

# (gas.json key, what it is, who sends it and pays its gas)
OPERATIONS = (
    ("open_erc20", "open a channel, ERC-20 (after approve)", "reader"),
    ("approve", "ERC-20 approve before that open", "reader"),
    ("open_erc20_permit", "open a channel, ERC-20 with EIP-2612 permit (one tx)", "reader"),
    ("open_eth", "open a channel, ETH", "reader"),
    ("topup_erc20", "top up, ERC-20", "reader"),
    ("topup_eth", "top up, ETH", "reader"),
    ("claim_erc20", "claim, ERC-20, one channel", "publisher"),
    ("claim_batch_per_channel_50", "claim, batched: per channel at 50 a transaction", "publisher"),
    ("close_receiver", "close by the receiver (claims, refunds the rest)", "publisher"),
    ("close_cooperative", "cooperative close (the payer sends it)", "reader"),
    ("request_plus_finalize", "settle unilaterally: request close + finalize", "reader"),
    ("transfer_with_authorization", "x402 `exact`: one transferWithAuthorization", "publisher"),
    ("exact_batch_per_item_20", "x402 `exact` batched: per sale at 20 a transaction", "publisher"),
)

# Per unlock: (what, gas per channel or per payment, whether it is spread over the channel's unlocks)
PER_UNLOCK = (
    ("channel: the publisher's batched claim", ("claim_batch_per_channel_50",), True),
    ("channel: the publisher's receiver close", ("close_receiver",), True),
    ("channel, all in: approve + open + receiver close", ("approve", "open_erc20", "close_receiver"), True),
    ("x402 `exact`: one transfer per payment", ("transfer_with_authorization",), False),
    ("x402 `exact` batched at 20", ("exact_batch_per_item_20",), False),
)


def dollars(value: Fraction) -> str:
    """$0.000109, $0.0436, $1.30: three significant digits, plain decimals."""
    nano = int(value * 10**9 + Fraction(1, 2))  # half up, in billionths of a dollar
    text = format_short(nano, 9)
    if "." not in text:
        text += ".00"
    elif len(text.split(".")[1]) == 1:
        text += "0"
    return f"${text}"


def percent(ratio: Fraction) -> str:
    """0.15 -> 15.0%, to one decimal (half up); never 0.0% for a cost that is not 0."""
    scaled = int(ratio * 1000 + Fraction(1, 2))
    if scaled == 0 and ratio > 0:
        return "<0.1%"
    whole, tenth = divmod(scaled, 10)
    return f"{whole:,}.{tenth}%"


def gas_cost(gas: int, gwei: Fraction, eth_price: Fraction) -> Fraction:
    """Dollars for `gas` units at `gwei` per unit and `eth_price` dollars per ETH."""
    return gas * gwei * WEI_PER_GWEI * eth_price / WEI_PER_ETH


def _g(gwei: Fraction) -> str:
    return f"{float(gwei):g} gwei"


def tables(gas: dict[str, int], gweis: list[Fraction], eth_price: Fraction) -> str:
    lines = [f"At 1 ETH = ${float(eth_price):,.2f}; gas prices of " + ", ".join(_g(g) for g in gweis) + ".", ""]
    lines += ["| operation | paid by | gas | " + " | ".join(_g(g) for g in gweis) + " |",
              "|---|---|---:|" + "---:|" * len(gweis)]  # fmt: skip
    for key, what, who in OPERATIONS:
        lines.append(f"| {what} (`{key}`) | {who} | {gas[key]:,} | "
                     + " | ".join(dollars(gas_cost(gas[key], g, eth_price)) for g in gweis) + " |")  # fmt: skip
    for g in gweis:
        lines += ["", f"Gas per unlock at {_g(g)}, for N unlocks per channel:", "",
                  "| collected by | " + " | ".join(f"N = {n:,}" for n in UNLOCKS) + " |",
                  "|---|" + "---:|" * len(UNLOCKS)]  # fmt: skip
        for what, keys, spread in PER_UNLOCK:
            total = sum(gas[k] for k in keys)
            cells = [dollars(gas_cost(total, g, eth_price) / (n if spread else 1)) for n in UNLOCKS]
            lines.append(f"| {what} | " + " | ".join(cells) + " |")
    middle = gweis[len(gweis) // 2]
    lines += ["", f"Against a card payment (2.9% + $0.30), per payment, gas at {_g(middle)} and {_g(gweis[-1])}:", "",
              f"| price | card fee | card, % of price | channel, batched claim, N = 100, {_g(middle)} | "
              f"x402 `exact`, {_g(middle)} | x402 `exact`, {_g(gweis[-1])} |",
              "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    claim = gas["claim_batch_per_channel_50"]
    transfer = gas["transfer_with_authorization"]
    for text in ARTICLE_PRICES:
        price = Fraction(text)
        card = price * CARD_PERCENT + CARD_FIXED
        channel = gas_cost(claim, middle, eth_price) / 100
        exact_mid, exact_high = gas_cost(transfer, middle, eth_price), gas_cost(transfer, gweis[-1], eth_price)
        lines.append(f"| ${text} | {dollars(card)} | {percent(card / price)} | "
                     f"{dollars(channel)} ({percent(channel / price)}) | "
                     f"{dollars(exact_mid)} ({percent(exact_mid / price)}) | "
                     f"{dollars(exact_high)} ({percent(exact_high / price)}) |")  # fmt: skip
    return "\n".join(lines)


def default_tables() -> str:
    """The tables docs/economics.md shows: docs/gas.json at the default prices."""
    gas = json.loads(GAS_JSON.read_text())
    return tables(gas, [parse_decimal(g, "gwei") for g in DEFAULT_GWEI.split(",")], parse_decimal(DEFAULT_ETH_PRICE, "eth-price"))


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gwei", default=DEFAULT_GWEI, help=f"gas prices, comma separated (default {DEFAULT_GWEI})")
    parser.add_argument("--eth-price", default=DEFAULT_ETH_PRICE, help=f"1 ETH in dollars (default {DEFAULT_ETH_PRICE})")
    parser.add_argument("--write", action="store_true", help="rewrite the tables in docs/economics.md (default prices only)")
    args = parser.parse_args()
    try:
        gweis = [parse_decimal(g, "--gwei") for g in args.gwei.split(",")]
        eth_price = parse_decimal(args.eth_price, "--eth-price")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write and (args.gwei, args.eth_price) != (DEFAULT_GWEI, DEFAULT_ETH_PRICE):
        print("error: --write keeps the documented prices; drop --gwei/--eth-price", file=sys.stderr)
        return 2
    text = tables(json.loads(GAS_JSON.read_text()), gweis, eth_price)
    print(text)
    if args.write:
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
