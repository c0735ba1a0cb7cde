#!/usr/bin/env python3
"""Paid fetches per second through the reader's wallet (PayingSession), against a real node.

    python scripts/bench_wallet.py [--fetches 2000] [--concurrency 16] [--json]

One process, one event loop: the node (SQLite, synchronous=FULL) on a loopback port over the
in-process chain, and a wallet that opens one channel and pays for every fetch with a fresh
voucher (a per-request priced path, so every fetch is charged). Prints sequential and concurrent
fetches per second; the wallet's SQLite writes (a voucher is durable before it is sent) and the
node's commits are both in the measured path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
ROOT = Path(__file__).resolve().parent.parent
PRICE = 10**12


async def run(fetches: int, concurrency: int) -> dict:
    import logging

    from aiohttp import web
    from web3 import AsyncWeb3
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    from channel_node.client import PayingSession, Policy, Wallet, WalletStore
    from channel_node.config import load_settings
    from channel_node.dev.devchain import DevChain
    from channel_node.logs import configure
    from channel_node.node.assembly import build_node

    configure("json", logging.WARNING)
    chain = DevChain()
    contract = chain.deploy_channel_deposit()
    publisher, reader = chain.accounts[1], chain.accounts[2]
    provider = AsyncEthereumTesterProvider()
    provider.ethereum_tester = chain.tester
    w3 = AsyncWeb3(provider)
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder) / "site"
        (site / "api").mkdir(parents=True)
        (site / "api" / "quote").write_text('{"price": 42}')
        settings = load_settings(
            contract=contract.address, receiver=publisher.address, database=Path(folder) / "node.db", confirmations=1,
            paywall={"content_dir": site, "prices": [{"path": "/api/*", "price": PRICE, "once": False}]},
        )  # fmt: skip
        node = await build_node(settings, w3)
        runner = web.AppRunner(node.app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/quote"
        store = WalletStore(Path(folder) / "wallet.db")
        wallet = Wallet(w3, reader.private_key, store, Policy(deposit_multiple=4 * (fetches + 10)), gas=300_000)
        try:
            async with PayingSession(wallet) as session:
                first = await session.get(url)  # opens the channel: not measured
                assert first.status == 200
                started = time.perf_counter()
                for _ in range(fetches):
                    assert (await session.get(url)).charged == PRICE
                sequential = fetches / (time.perf_counter() - started)

                async def worker(count: int) -> None:
                    for _ in range(count):
                        assert (await session.get(url)).charged == PRICE

                started = time.perf_counter()
                await asyncio.gather(*(worker(fetches // concurrency) for _ in range(concurrency)))
                concurrent = (fetches // concurrency * concurrency) / (time.perf_counter() - started)
            [record] = wallet.channels()
            charged = (await node.store.load_channel(record.channel_id)).state.charged
        finally:
            store.close()
            await runner.cleanup()
            await node.close()
    total = 1 + fetches + fetches // concurrency * concurrency
    return {
        "fetches": total,
        "sequential_fetches_per_s": round(sequential),
        "concurrent_fetches_per_s": round(concurrent),
        "concurrency": concurrency,
        "charged_matches": charged == total * PRICE == record.charged,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetches", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from channel_node.cli.main import run_async

    result = run_async(run(args.fetches, args.concurrency))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}  {value}")
    return 0 if result["charged_matches"] else 1


if __name__ == "__main__":
    sys.exit(main())
