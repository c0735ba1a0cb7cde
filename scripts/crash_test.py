#!/usr/bin/env python3
"""Crash safety: SIGKILL the node under paid load, restart it, retry, and audit its database.

    python scripts/crash_test.py [--cycles 20] [--channels 8] [--json]

Starts anvil (npm @foundry-rs/anvil-linux-amd64 under tools/) on a free loopback port, deploys
ChannelDeposit and opens `--channels` ETH channels, each with its own voucher key. Then, per cycle:
starts `channel-node serve` (SQLite, synchronous=FULL, a fixed loopback port), retries every request
whose answer was lost in the previous crash (same paymentId, same resource, a voucher at least as
high as before), audits the database read-only, drives it with one aiohttp worker per channel
(`/api/*` costs 1000 wei per request, a fresh paymentId each) for a random 0.3-1.5 s and kills it
with SIGKILL while requests are in flight. A last clean start retries what is left, audits again
and stops the node with SIGTERM.

The audit, against what the clients were told (`PAYMENT-RESPONSE` of every 200):
  lost            acknowledged paymentIds without a row in `charges`
  double_charged  paymentIds with more than one `charges` row, a row whose amount is not the price,
                  or a paymentId the client was charged for (chargedAmount > 0) more than once
  per channel     channels.charged == sum(charges.amount) == price x distinct charged paymentIds;
                  every charged paymentId was asked for (acknowledged or still unknown); the stored
                  best voucher (ceiling, signature) recovers to the channel's voucher key, covers
                  `charged` and every maxClaimableAmount the node acknowledged.
Exit code 1 when anything is lost, double-charged or a per-channel check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PRICE = 1_000
DEPOSIT = 10**17  # 10^14 requests' worth: never the limit
RESOURCE = "/api/item"
BODY = b'{"item": "paid API answer"}\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Channel:
    """One reader's channel and what its wallet (one worker) knows."""

    index: int
    key: bytes
    config: object  # ChannelConfig
    id: bytes
    signed: int = 0  # the highest voucher ever signed: never goes down
    seq: int = 0
    unknown: dict[str, int] = field(default_factory=dict)  # paymentId -> voucher amount sent, answer lost
    acked: dict[str, int] = field(default_factory=dict)  # paymentId -> chargedAmount of its (last) receipt
    charged_receipts: Counter = field(default_factory=Counter)  # paymentId -> receipts with chargedAmount > 0
    refused: dict[str, str] = field(default_factory=dict)  # paymentId -> error code
    max_ack_ceiling: int = 0  # highest maxClaimableAmount the node acknowledged
    in_flight: int = 0


@dataclass
class Stats:
    unlocks: int = 0  # acknowledged deliveries with chargedAmount > 0
    acknowledged: int = 0
    retried: int = 0
    retried_free: int = 0  # retry served for 0: it had been committed before the crash
    retried_charged: int = 0  # retry charged now: the crash came before its commit
    killed_in_flight: int = 0  # kills with at least one request in flight
    in_flight_at_kill: int = 0
    lost: int = 0
    double_charged: int = 0
    failures: list[str] = field(default_factory=list)


class Harness:
    def __init__(self, anvil, folder: Path, channels: int, say, rng: random.Random) -> None:
        self.anvil = anvil
        self.folder = folder
        self.n_channels = channels
        self.say = say
        self.rng = rng
        self.channels: list[Channel] = []
        self.stats = Stats()
        self.process: subprocess.Popen | None = None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = folder / "data" / "node.db"
        self.log_path = folder / "node.log"

    # ------------------------------------------------------------------ set-up

    async def open_channels(self) -> None:
        from web3 import AsyncWeb3
        from web3.providers import AsyncHTTPProvider

        from channel_node.chain import ChannelDepositClient, Sender
        from channel_node.signing import ChannelConfig, address_of_key, channel_id, keccak256

        w3 = AsyncWeb3(AsyncHTTPProvider(self.anvil.http_url))
        try:
            accounts = await w3.eth.accounts
            deployer, payer, receiver = accounts[0], accounts[1], accounts[2]
            client = await ChannelDepositClient.deploy(w3, Sender.unlocked(deployer), poll_latency=0.005)
            self.domain = await client.domain()
            self.contract = client.address
            self.receiver = receiver
            for index in range(self.n_channels):
                key = keccak256(f"crash test voucher key {index}".encode())
                config = ChannelConfig.create(payer, address_of_key(key), receiver, None, 3600, index + 1)
                await client.deposit_eth(config, DEPOSIT, sender=Sender.unlocked(payer), gas=150_000)
                self.channels.append(Channel(index, key, config, channel_id(self.domain, config)))
        finally:
            await w3.provider.disconnect()
        self.anvil.mine(2)
        self.network = f"eip155:{self.domain.chain_id}"

    def write_config(self) -> Path:
        site = self.folder / "site"
        (site / "api").mkdir(parents=True, exist_ok=True)
        (site / "api" / "item").write_bytes(BODY)
        toml = self.folder / "node.toml"
        toml.write_text(
            f'rpc_url = "{self.anvil.http_url}"\ncontract = "{self.contract}"\nreceiver = "{self.receiver}"\n'
            f'database = "{self.database}"\nsqlite_synchronous = "full"\nconfirmations = 1\n'
            f'host = "127.0.0.1"\nport = {self.port}\nlog_format = "json"\nauto_claim = false\n\n'
            f'[paywall]\ncontent_dir = "{site}"\nfree = ["/"]\n\n'
            f'[[paywall.prices]]\npath = "/api/*"\nprice = {PRICE}\nonce = false\n'
        )
        self.toml = toml
        return toml

    # ------------------------------------------------------------------ the node

    async def start_node(self) -> None:
        import aiohttp

        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNEL_NODE_")}
        # Once per node start in this harness, not on a loop that serves anything: a local open and a
        # fork/exec that returns at once (the node is waited for below, by polling it).
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 (see above)
            self.process = subprocess.Popen(  # noqa: ASYNC220 (see above)
                [sys.executable, "-m", "channel_node.cli.main", "serve", "--config", str(self.toml)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the node exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    async with http.get(self.base + "/healthz") as response:
                        if response.status == 200:
                            await response.read()
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the node did not answer /healthz:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def kill_node(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop_node(self) -> None:
        """A clean stop (SIGTERM), SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        code = self.process.returncode
        self.process = None
        if code != 0:
            self.stats.failures.append(f"the node's clean stop exited with {code}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ the wallet side

    def header(self, channel: Channel, amount: int, payment_id: str) -> str:
        from channel_node.signing import sign_digest, voucher_digest
        from channel_node.wire.channel import payment_signature

        signature = sign_digest(channel.key, voucher_digest(self.domain, channel.id, amount))
        contract = "0x" + self.domain.verifying_contract.hex()
        return payment_signature(self.network, contract, channel.id, amount, signature, payment_id, channel.config)

    async def request(self, http, channel: Channel, payment_id: str, amount: int, retry: bool) -> None:
        """One paid request. A complete 200 with a receipt is acknowledged; a refusal is recorded;
        anything that did not come back whole leaves the paymentId unknown (retried later)."""
        import aiohttp

        from channel_node.wire.envelope import decode_header

        channel.unknown[payment_id] = max(amount, channel.unknown.get(payment_id, 0))
        headers = {"PAYMENT-SIGNATURE": self.header(channel, amount, payment_id)}
        channel.in_flight += 1
        try:
            async with http.get(self.base + RESOURCE, headers=headers) as response:
                body = await response.read()
                status, receipt_header = response.status, response.headers.get("PAYMENT-RESPONSE")
        except (TimeoutError, aiohttp.ClientError, OSError):
            return  # no complete answer: stays unknown
        finally:
            channel.in_flight -= 1
        del channel.unknown[payment_id]
        if status != 200 or receipt_header is None:
            try:
                code = json.loads(body).get("error", str(status))
            except ValueError:
                code = str(status)
            channel.refused[payment_id] = code
            self.stats.failures.append(f"channel {channel.index}: {'retry' if retry else 'request'} {payment_id} refused: {status} {code}")
            return
        receipt = decode_header(receipt_header)
        charged = int(receipt["chargedAmount"])
        if body != BODY:
            self.stats.failures.append(f"channel {channel.index}: {payment_id} answered with the wrong body")
        if receipt.get("paymentId") != payment_id or charged not in (0, PRICE) or (charged == 0 and not retry):
            self.stats.failures.append(f"channel {channel.index}: odd receipt for {payment_id}: {receipt}")
        channel.acked[payment_id] = charged
        channel.max_ack_ceiling = max(channel.max_ack_ceiling, int(receipt["maxClaimableAmount"]))
        self.stats.acknowledged += 1
        if charged:
            channel.charged_receipts[payment_id] += 1
            self.stats.unlocks += 1
        if retry:
            self.stats.retried_charged += bool(charged)
            self.stats.retried_free += not charged

    async def retry_unknown(self, http, channel: Channel) -> None:
        for payment_id, amount in list(channel.unknown.items()):
            self.stats.retried += 1
            # At least as high as before: the highest this wallet ever signed (which covers every
            # paymentId it has asked for, charged or not).
            await self.request(http, channel, payment_id, max(amount, channel.signed), retry=True)

    async def worker(self, http, channel: Channel, stop: asyncio.Event) -> None:
        while not stop.is_set():
            channel.seq += 1
            channel.signed += PRICE
            await self.request(http, channel, f"ch{channel.index}-{channel.seq}", channel.signed, retry=False)

    def session(self):
        import aiohttp

        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=15),
        )

    # ------------------------------------------------------------------ one cycle

    async def restart_and_retry(self) -> None:
        await self.start_node()
        async with self.session() as http:
            await asyncio.gather(*(self.retry_unknown(http, c) for c in self.channels))

    async def load_and_kill(self, window: float) -> int:
        stop = asyncio.Event()
        async with self.session() as http:
            workers = [asyncio.create_task(self.worker(http, c, stop)) for c in self.channels]
            await asyncio.sleep(window)
            stop.set()  # no new requests after this moment; then kill with these in flight
            in_flight = sum(c.in_flight for c in self.channels)
            os.kill(self.process.pid, signal.SIGKILL)
            await asyncio.gather(*workers)
        self.process.wait()
        self.process = None
        return in_flight

    # ------------------------------------------------------------------ the audit

    def audit(self, label: str) -> dict:
        """Reads the node's database read-only (WAL lets a reader in beside the running node)."""
        from channel_node.signing import InvalidSignature, recover_signer, voucher_digest

        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            charges = db.execute("SELECT channel_id, payment_id, amount FROM charges").fetchall()
            rows = {bytes(r[0]): r[1:] for r in db.execute("SELECT channel_id, charged, ceiling, signature FROM channels")}
        finally:
            db.close()
        failures: list[str] = []
        per_key = Counter((bytes(cid), pid) for cid, pid, _ in charges)
        amounts: dict[tuple[bytes, str], int] = {(bytes(cid), pid): int(amount) for cid, pid, amount in charges}
        lost = double = 0
        for channel in self.channels:
            in_db = {pid for (cid, pid) in per_key if cid == channel.id}
            missing = [pid for pid in channel.acked if pid not in in_db]
            lost += len(missing)
            if missing:
                failures.append(f"[{label}] channel {channel.index}: {len(missing)} acknowledged deliveries lost, e.g. {missing[:3]}")
            twice = [pid for pid, n in channel.charged_receipts.items() if n > 1]
            double += len(twice)
            if twice:
                failures.append(f"[{label}] channel {channel.index}: charged twice in receipts: {twice[:3]}")
            asked = set(channel.acked) | set(channel.unknown)
            never_asked = sorted(in_db - asked)
            if never_asked:
                failures.append(f"[{label}] channel {channel.index}: charged for paymentIds never asked for (or refused): {never_asked[:3]}")
            ours = [amounts[(channel.id, pid)] for pid in in_db]
            row = rows.get(channel.id)
            if row is None:
                if in_db or channel.acked:
                    failures.append(f"[{label}] channel {channel.index}: no channels row but charges/receipts exist")
                continue
            charged, ceiling, signature = int(row[0]), int(row[1]), bytes(row[2])
            if not charged == sum(ours) == PRICE * len(in_db):
                failures.append(
                    f"[{label}] channel {channel.index}: charged {charged}, sum of charges {sum(ours)}, "
                    f"{len(in_db)} paymentIds x {PRICE} = {PRICE * len(in_db)}"
                )
            try:
                signer = recover_signer(voucher_digest(self.domain, channel.id, ceiling), signature)
            except InvalidSignature as exc:
                signer = None
                failures.append(f"[{label}] channel {channel.index}: stored voucher does not recover: {exc}")
            if signer is not None and signer != channel.config.signer:
                failures.append(f"[{label}] channel {channel.index}: stored voucher is not signed by the channel's key")
            if ceiling < charged:
                failures.append(f"[{label}] channel {channel.index}: ceiling {ceiling} below charged {charged}")
            if ceiling < channel.max_ack_ceiling:
                failures.append(
                    f"[{label}] channel {channel.index}: ceiling {ceiling} below an acknowledged voucher {channel.max_ack_ceiling}"
                )
            if ceiling > channel.signed:
                failures.append(f"[{label}] channel {channel.index}: ceiling {ceiling} above anything signed ({channel.signed})")
        for (cid, pid), n in per_key.items():
            if n > 1 or amounts[(cid, pid)] != PRICE:
                double += 1
                failures.append(f"[{label}] paymentId {pid}: {n} charges rows, amount {amounts[(cid, pid)]}")
        self.stats.lost = max(self.stats.lost, lost)
        self.stats.double_charged = max(self.stats.double_charged, double)
        self.stats.failures.extend(failures)
        return {"charges": len(charges), "lost": lost, "double_charged": double, "failures": len(failures)}


async def run(
    cycles: int = 20,
    channels: int = 8,
    window: tuple[float, float] = (0.3, 1.5),
    seed: int | None = None,
    say=lambda message: None,
) -> dict:
    """Everything but argument parsing and printing; returns the figures (and `failures`)."""
    from anvil import start_anvil

    rng = random.Random(seed)
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="channel-node-crash-"))
    anvil = None
    harness = None
    try:
        anvil = start_anvil()
        harness = Harness(anvil, folder, channels, say, rng)
        await harness.open_channels()
        harness.write_config()
        say(f"anvil on {anvil.http_url}, {channels} channels open; node on {harness.base}, log {harness.log_path}")
        for cycle in range(1, cycles + 1):
            await harness.restart_and_retry()
            audit = harness.audit(f"cycle {cycle}")
            span = rng.uniform(*window)
            in_flight = await harness.load_and_kill(span)
            harness.stats.killed_in_flight += in_flight > 0
            harness.stats.in_flight_at_kill += in_flight
            unknown = sum(len(c.unknown) for c in harness.channels)
            say(
                f"cycle {cycle}/{cycles}: audit {audit['charges']} charges, lost {audit['lost']}, double {audit['double_charged']}; "
                f"load {span:.2f} s, killed with {in_flight} in flight, {unknown} unknown, "
                f"{harness.stats.unlocks} unlocks so far"
            )
        # Final clean start: every unknown request is retried, so every charge has been delivered.
        await harness.restart_and_retry()
        final = harness.audit("final")
        harness.stop_node()
        final_stopped = harness.audit("final, node stopped")
        left = sum(len(c.unknown) for c in harness.channels)
        if left:
            harness.stats.failures.append(f"{left} requests still unknown after the final retry")
        say(f"final: {final['charges']} charges (after the clean stop {final_stopped['charges']}), {left} unknown left")
    finally:
        if harness is not None and harness.process is not None:
            harness.kill_node()
        if anvil is not None:
            anvil.stop()
        shutil.rmtree(folder, ignore_errors=True)
    s = harness.stats
    return {
        "cycles": cycles,
        "unlocks": s.unlocks,
        "lost": s.lost,
        "double_charged": s.double_charged,
        "retried": s.retried,
        "seconds": round(time.perf_counter() - started, 1),
        "retried_free": s.retried_free,
        "retried_charged": s.retried_charged,
        "killed_in_flight": s.killed_in_flight,
        "in_flight_at_kill": s.in_flight_at_kill,
        "acknowledged": s.acknowledged,
        "failures": s.failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="kills (each followed by a restart)")
    parser.add_argument("--channels", type=int, default=8, help="channels, one client worker each")
    parser.add_argument("--min-window", type=float, default=0.3, help="shortest load before a kill (s)")
    parser.add_argument("--max-window", type=float, default=1.5, help="longest load before a kill (s)")
    parser.add_argument("--seed", type=int, help="random seed for the kill moments")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    result = asyncio.run(run(args.cycles, args.channels, (args.min_window, args.max_window), args.seed, say))
    failures = result.pop("failures")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['cycles']} kills in {result['seconds']} s: {result['unlocks']} paid unlocks acknowledged, "
            f"{result['retried']} retried ({result['retried_free']} already committed, {result['retried_charged']} charged on retry), "
            f"{result['in_flight_at_kill']} requests in flight at {result['killed_in_flight']} kills; "
            f"lost {result['lost']}, double-charged {result['double_charged']}"
        )
    return 1 if failures or result["lost"] or result["double_charged"] else 0


if __name__ == "__main__":
    sys.exit(main())
