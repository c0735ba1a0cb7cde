#!/usr/bin/env python3
"""How fast a node that was down catches up with the chain: contract events applied per second.

    python scripts/bench_catchup.py [--channels 500] [--rounds 60] [--json]

Starts anvil (npm @foundry-rs/anvil-linux-amd64 under tools/) on a free loopback port, deploys
ChannelDeposit, opens `--channels` channels to one receiver and claims them all `--rounds` times
with claimBatch (one ChannelClaimed event per channel per round), then starts a fresh node (SQLite
store) whose watcher reads the whole history from block 0 and applies every event to its channels.
Prints the events applied and events per second of that catch-up.
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
sys.path.insert(0, str(ROOT / "tests"))

PRICE = 10**12


async def build_history(anvil, channels: int, rounds: int, say) -> tuple:
    from web3 import AsyncWeb3
    from web3.providers import AsyncHTTPProvider

    from channel_node.chain import ChannelDepositClient, Sender
    from channel_node.signing import ChannelConfig, address_of_key, channel_id, keccak256, sign_digest, voucher_digest

    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    accounts = await w3.eth.accounts
    deployer, payer, receiver = accounts[0], accounts[1], accounts[2]
    client = await ChannelDepositClient.deploy(w3, Sender.unlocked(deployer), poll_latency=0.005)
    domain = await client.domain()
    voucher_key = keccak256(b"bench catch-up voucher key")
    signer = address_of_key(voucher_key)
    configs = [ChannelConfig.create(payer, signer, receiver, None, 3600, salt) for salt in range(1, channels + 1)]
    started = time.perf_counter()
    for config in configs:
        await client.deposit_eth(config, rounds * PRICE, sender=Sender.unlocked(payer), gas=150_000)
    say(f"  opened {channels} channels in {time.perf_counter() - started:.1f} s")
    ids = [channel_id(domain, c) for c in configs]
    started = time.perf_counter()
    for round_number in range(1, rounds + 1):
        amount = round_number * PRICE
        items = [(c, amount, sign_digest(voucher_key, voucher_digest(domain, i, amount))) for c, i in zip(configs, ids, strict=True)]
        await client.claim_batch(receiver, None, items, sender=Sender.unlocked(receiver), gas=15_000_000)  # only the receiver (or an authorizer) claims
    say(f"  {rounds} batched claims of {channels} channels in {time.perf_counter() - started:.1f} s")
    anvil.mine(2)
    await w3.provider.disconnect()
    return client.address, receiver


async def catch_up(anvil, contract: str, receiver: str, database: Path, block_range: int) -> tuple[int, float]:
    from web3 import AsyncWeb3
    from web3.providers import AsyncHTTPProvider

    from channel_node.chain import ChannelDepositClient
    from channel_node.chain.watcher import Watcher
    from channel_node.node.runtime import Runtime
    from channel_node.store import Pin, SQLiteStore

    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    client = ChannelDepositClient(w3, contract)
    domain = await client.domain()
    store = SQLiteStore(database)
    receiver_bytes = bytes.fromhex(receiver[2:])
    await store.open(Pin(domain.chain_id, domain.verifying_contract, receiver_bytes))
    runtime = Runtime(store, domain, receiver_bytes, b"\0" * 20, None, close_margin=300)
    watcher = Watcher(w3, client, runtime, store, confirmations=2, block_range=block_range, progress=sys.stderr.isatty())
    started = time.perf_counter()
    applied = await watcher.poll()
    elapsed = time.perf_counter() - started
    channels = await store.list_channels()
    wrong = [c.state for c in channels if c.state.claimed != c.state.deposited]
    assert not wrong and channels, f"{len(channels)} channels, {len(wrong)} not fully claimed: {wrong[:1]}"
    await store.close()
    await w3.provider.disconnect()
    return applied, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=60, help="batched claims of every channel (events per channel)")
    parser.add_argument("--block-range", type=int, default=2_000, help="blocks per eth_getLogs request")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    from anvil import start_anvil

    anvil = start_anvil()
    try:
        say(f"building history on anvil: {args.channels} channels x {args.rounds} claims ...")
        contract, receiver = asyncio.run(build_history(anvil, args.channels, args.rounds, say))
        with tempfile.TemporaryDirectory() as folder:
            say("catching up from block 0 with a fresh node ...")
            applied, elapsed = asyncio.run(catch_up(anvil, contract, receiver, Path(folder) / "node.db", args.block_range))
    finally:
        anvil.stop()
    result = {"events": applied, "seconds": round(elapsed, 3), "events_per_s": round(applied / elapsed)}
    print(json.dumps(result) if args.json else f"{applied:,} events in {elapsed:.2f} s: {applied / elapsed:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
