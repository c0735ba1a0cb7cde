"""The `channel-node` command line."""

from __future__ import annotations

import argparse
import os
import sys

from channel_node import __version__


def _dev(args: argparse.Namespace) -> int:
    """Until the paywall node lands, `dev` walks one channel through its life on the embedded chain."""
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
    from rich.console import Console
    from rich.table import Table

    from channel_node.demo import run_contract_demo

    console = Console()
    console.print("[bold]channel-node dev[/]: in-process chain (eth-tester/py-evm), ChannelDeposit deployed")
    table = Table(title="One payment channel, end to end")
    for column, justify in (("step", "left"), ("gas", "right"), ("result", "left")):
        table.add_column(column, justify=justify)
    for step in run_contract_demo(unlocks=args.unlocks, price=args.price):
        table.add_row(step.name, f"{step.gas:,}" if step.gas else "—", step.result)
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="channel-node", description=__doc__)
    parser.add_argument("--version", action="version", version=f"channel-node {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run on the embedded in-process chain")
    dev.add_argument("--unlocks", type=int, default=1000, help="off-chain vouchers to sign and verify (default 1000)")
    dev.add_argument("--price", type=int, default=20_000_000_000_000, help="price per unlock in wei (default 2e13)")
    dev.set_defaults(handler=_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
