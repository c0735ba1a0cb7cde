"""Several `channel-node serve` processes on one PostgreSQL database and one chain (anvil)
(docs/scaling.md): concurrent paid load spread over two processes with every voucher audited
afterwards, the leader killed (SIGKILL) mid-load and replaced without anything lost or any
transaction sent twice, and a payer's close defended by the process that took over.

The readers here behave as wallets do (docs/protocol.md): one request at a time per channel, each
signing the charged total plus the price, each request carrying a payment identifier, a request
whose answer never came resent as it was (same voucher, same identifier) to the other process, as
a load balancer would."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from eth_account import Account
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from anvil import anvil_fixture
from channel_node.chain import ChannelDepositClient, Sender
from channel_node.signing import ChannelConfig, address_of_key, channel_id, keccak256, sign_digest, voucher_digest
from channel_node.wire.channel import payment_signature
from channel_node.wire.envelope import decode_header

PRICE = 10**12
DELAY = 3600
RECEIVER_KEY = keccak256(b"scaleout receiver")
VOUCHER_KEY = keccak256(b"scaleout voucher key")
ARTICLES = 6


anvil = anvil_fixture("module")


@dataclass
class World:
    anvil: object
    w3: AsyncWeb3
    client: ChannelDepositClient
    receiver: str
    payer: str
    domain: object = None
    salt: int = 0

    async def open(self, amount: int = 1000 * PRICE) -> ChannelConfig:
        self.salt += 1
        config = ChannelConfig.create(self.payer, address_of_key(VOUCHER_KEY), self.receiver, None, DELAY, self.salt)
        await self.client.deposit_eth(config, amount, sender=Sender.unlocked(self.payer))
        return config


@pytest.fixture
async def world(anvil):
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.http_url))
    accounts = await w3.eth.accounts
    receiver = Account.from_key(RECEIVER_KEY).address
    anvil.rpc("anvil_setBalance", [receiver, hex(10**20)])
    client = await ChannelDepositClient.deploy(w3, Sender.unlocked(accounts[0]), poll_latency=0.02)
    world = World(anvil, w3, client, receiver, accounts[1])
    world.domain = await client.domain()
    yield world
    await w3.provider.disconnect()


ADMIN_TOKEN = "scaleout-admin-token-0123456789abcdef"


def write_config(tmp_path, world: World, dsn: str, claim_interval: float = 3600.0, admin: bool = False) -> str:
    site = tmp_path / "site"
    (site / "articles").mkdir(parents=True, exist_ok=True)
    (site / "api").mkdir(exist_ok=True)
    for n in range(ARTICLES):
        (site / "articles" / f"{n}.html").write_text(f"article {n}")
    (site / "api" / "quote").write_text('{"quote": 1}')
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'rpc_url = "{world.anvil.http_url}"\ncontract = "{world.client.address}"\nreceiver = "{world.receiver}"\n'
        f'database = "{dsn}"\nconfirmations = 1\npoll_interval = 0.2\nclose_margin = 60\n'
        f'claim_key = "0x{RECEIVER_KEY.hex()}"\nclaim_interval = {claim_interval}\nfee_bump_after = 600\n'
        f'log_format = "json"\n'
        + (f'admin_token = "{ADMIN_TOKEN}"\nadmin_port = 0\n' if admin else "") + "\n"
        f'[paywall]\ncontent_dir = "{site}"\nfree = ["/"]\n\n'
        f'[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\n\n'
        f'[[paywall.prices]]\npath = "/api/*"\nprice = {PRICE}\nonce = false\n'
    )
    return str(toml)


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    url: str
    lines: list[str] = field(default_factory=list)
    drain: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 20)
        if self.drain is not None:
            await self.drain


async def serve(toml: str) -> Serve:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", "serve", "--config", toml, "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ},
    )  # fmt: skip
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "".join(seen)
        seen.append(line)
        if line.startswith("channel-node serving"):
            break
    running = Serve(process, line.split("serving ")[1].split()[0], seen)

    async def drain() -> None:  # keep reading: a full pipe would block the node
        while line := await process.stdout.readline():
            running.lines.append(line.decode())

    running.drain = asyncio.create_task(drain())
    return running


async def health(http: aiohttp.ClientSession, node: Serve) -> dict:
    async with http.get(node.url + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as answer:
        return await answer.json()


async def until_leader(http, nodes: list[Serve], seconds: float = 15.0) -> Serve:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for node in nodes:
            try:
                if (await health(http, node))["leader"]:
                    return node
            except aiohttp.ClientError:
                pass
        await asyncio.sleep(0.1)
    raise AssertionError("no process took the lead")


@asynccontextmanager
async def first_leads(toml: str) -> AsyncIterator[tuple[aiohttp.ClientSession, list[Serve]]]:
    """One process started alone takes the lead: (a session, [that process]); the caller appends the
    processes it starts after, and every one is stopped when the block ends."""
    nodes = [await serve(toml)]
    try:
        async with aiohttp.ClientSession() as http:
            assert await until_leader(http, nodes) is nodes[0]
            yield http, nodes
    finally:
        for node in nodes:
            await node.stop()


@dataclass
class Served:
    payment_id: str
    resource: str
    charged: int


class Reader:
    """One channel's wallet: one request at a time; a request left unanswered is resent as it was."""

    def __init__(self, world: World, config: ChannelConfig, seed: int) -> None:
        self.world, self.config = world, config
        self.id = channel_id(world.domain, config)
        self.random = random.Random(seed)
        self.charged = 0
        self.first = True
        self.bought: list[str] = []
        self.served: list[Served] = []
        self.retried = 0
        self.refused: list[tuple[int, str]] = []
        self.count = 0

    def header(self, amount: int, payment_id: str) -> str:
        signature = sign_digest(VOUCHER_KEY, voucher_digest(self.world.domain, self.id, amount))
        contract = "0x" + self.world.domain.verifying_contract.hex()
        return payment_signature(f"eip155:{self.world.domain.chain_id}", contract, self.id, amount, signature,
                                 payment_id, self.config if self.first else None)  # fmt: skip

    def next_request(self) -> tuple[str, int]:
        roll = self.random.random()
        if self.bought and roll < 0.25:
            return self.random.choice(self.bought), self.charged  # a re-read: the current total opens it
        unread = [f"/articles/{n}.html" for n in range(ARTICLES) if f"/articles/{n}.html" not in self.bought]
        if unread and roll < 0.6:
            return self.random.choice(unread), self.charged + PRICE
        return "/api/quote", self.charged + PRICE

    async def run(self, http: aiohttp.ClientSession, nodes: list[Serve], requests: int, pause: float = 0.0) -> None:
        for _ in range(requests):
            await asyncio.sleep(pause)
            resource, amount = self.next_request()
            self.count += 1
            payment_id = f"{self.id.hex()[:8]}-{self.count}"
            headers = {"PAYMENT-SIGNATURE": self.header(amount, payment_id)}
            order = self.random.sample(nodes, len(nodes))
            for attempt in range(6):  # the load balancer: the next process when one does not answer
                node = order[attempt % len(order)]
                try:
                    async with http.get(node.url + resource, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as answer:
                        status = answer.status
                        receipt = decode_header(answer.headers["PAYMENT-RESPONSE"]) if status == 200 else None
                        body = await answer.read()
                    break
                except (aiohttp.ClientError, TimeoutError):
                    self.retried += 1
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"no process answered {resource}")
            if status != 200:
                self.refused.append((status, body.decode()[:200]))
                continue
            self.first = False
            self.charged = int(receipt["chargedTotal"])
            self.served.append(Served(payment_id, resource, int(receipt["chargedAmount"])))
            if resource.startswith("/articles/") and resource not in self.bought:
                self.bought.append(resource)


async def audit(dsn: str, readers: list[Reader]) -> None:
    """Every voucher accounted for: each charge in the database is a 200 a reader received (by its
    payment identifier), each 200 that charged is a charge, nothing twice."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        for reader in readers:
            rows = await connection.fetch("SELECT resource, amount, payment_id FROM charges WHERE channel_id = $1", reader.id)
            unlocked = {r["resource"] for r in await connection.fetch("SELECT resource FROM unlocks WHERE channel_id = $1", reader.id)}
            channel = await connection.fetchrow("SELECT charged FROM channels WHERE channel_id = $1", reader.id)
            charges = {r["payment_id"]: (r["resource"], int(r["amount"])) for r in rows}
            assert len(charges) == len(rows), "a payment identifier charged twice"
            once = [r["resource"] for r in rows if r["resource"].startswith("/articles/")]
            assert len(once) == len(set(once)), "an article charged twice on one channel"
            assert set(once) == unlocked == set(reader.bought)
            charged_answers = {s.payment_id: (s.resource, s.charged) for s in reader.served if s.charged}
            received = {s.payment_id for s in reader.served}
            # A charge whose first answer was lost (its process killed) is the retry's 200, at no charge.
            assert set(charges) <= received, "a charge for a request no reader got an answer to"
            assert {k: v for k, v in charges.items() if k in charged_answers} == charged_answers, "a 200 that charged is durable"
            assert int(channel["charged"]) == sum(amount for _, amount in charges.values()) == reader.charged
            assert not [r for r in reader.refused if r[0] >= 500], reader.refused
    finally:
        await connection.close()


# ---------------------------------------------------------------------- the tests


@pytest.mark.slow
async def test_two_processes_on_one_database_serve_concurrent_paid_load_and_every_voucher_is_audited(
    world, postgres_dsn, tmp_path
):
    toml = write_config(tmp_path, world, postgres_dsn)
    readers = [Reader(world, await world.open(), seed) for seed in range(8)]
    world.anvil.mine(1)
    nodes = [await serve(toml), await serve(toml)]
    try:
        async with aiohttp.ClientSession() as http:
            leader = await until_leader(http, nodes)
            reports = [await health(http, node) for node in nodes]
            assert sorted(r["leader"] for r in reports) == [False, True], "exactly one process leads"
            assert {r["leaderProcess"] for r in reports} == {reports[nodes.index(leader)]["process"]}
            started = time.perf_counter()
            await asyncio.gather(*(reader.run(http, nodes, 30) for reader in readers))
            elapsed = time.perf_counter() - started
        await audit(postgres_dsn, readers)
        served = sum(len(r.served) for r in readers)
        assert served >= 0.9 * 8 * 30, [r.refused for r in readers]
        print(f"two processes: {served} paid answers in {elapsed:.1f} s")
    finally:
        for node in nodes:
            await node.stop()


@pytest.mark.slow
async def test_the_leader_killed_mid_load_is_replaced_and_nothing_is_lost_or_sent_twice(world, postgres_dsn, tmp_path):
    toml = write_config(tmp_path, world, postgres_dsn, claim_interval=1.0)  # claims keep flowing
    readers = [Reader(world, await world.open(), 100 + seed) for seed in range(6)]
    world.anvil.mine(1)
    async with first_leads(toml) as (http, nodes):
        first = nodes[0]
        nodes.append(await serve(toml))
        load = asyncio.gather(*(reader.run(http, nodes, 50, pause=0.03) for reader in readers))
        for _ in range(600):  # until a third of the load is served
            if sum(len(r.served) for r in readers) >= 6 * 50 // 3:
                break
            await asyncio.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)  # mid-load, with claims going out every second
        killed = time.perf_counter()
        successor = await until_leader(http, nodes[1:], seconds=20)
        takeover = time.perf_counter() - killed
        served_at_takeover = sum(len(r.served) for r in readers)
        await load
        assert served_at_takeover < 6 * 50, "the new leader took over while the load ran"
        assert takeover < 8.0, f"the other process led {takeover:.1f} s after the leader died"
        print(f"takeover after SIGKILL: {takeover:.2f} s; requests resent to the other process: "
              f"{sum(r.retried for r in readers)}")
        # Let the new leader claim what is left, then compare the chain with the outbox.
        await asyncio.sleep(3.0)
        report = await health(http, successor)
        assert report["leaderProcess"] == report["process"]
        await audit(postgres_dsn, readers)
        assert sum(r.retried for r in readers) >= 1, "requests sent to the dead process were resent to the other"
        await no_transaction_twice(world, postgres_dsn, readers)


async def no_transaction_twice(world: World, dsn: str, readers: list[Reader]) -> None:
    """The claim key sent exactly the transactions the outbox recorded: its nonce count is the
    number of nonces the rows name, each recorded transaction is on chain once, and nothing was
    claimed beyond what was charged."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, status, tx_hash, nonce FROM outbox WHERE tx_hash IS NOT NULL")
    finally:
        await connection.close()
    address = Account.from_key(RECEIVER_KEY).address
    sent = await world.w3.eth.get_transaction_count(address)
    nonces = {row["nonce"] for row in rows}
    assert rows, "the leaders sent claims during the load"
    assert sent == len(nonces) == max(nonces) + 1, f"{sent} transactions from the claim key, rows name {sorted(nonces)}"
    print(f"claim transactions: {sent}, outbox rows sent: {len(rows)}")
    for tx in {bytes(row["tx_hash"]) for row in rows if row["status"] == "done"}:
        receipt = await world.w3.eth.get_transaction_receipt(tx)
        assert receipt["status"] == 1
    for reader in readers:
        on_chain = await world.client.get_channel(reader.config)
        assert on_chain.claimed <= reader.charged, "never claimed above what was charged"


async def defended(world: World, reader: Reader, seconds: float = 10.0) -> None:
    """The payer requested a close: the leader claims what was charged before the deadline."""
    deadline = (await world.client.get_channel(reader.config)).close_deadline
    for _ in range(int(seconds / 0.1)):
        if (await world.client.get_channel(reader.config)).claimed >= reader.charged:
            break
        await asyncio.sleep(0.1)
    on_chain = await world.client.get_channel(reader.config)
    assert on_chain.claimed == reader.charged, "the leader claimed what was charged"
    assert (await world.w3.eth.get_block("latest"))["timestamp"] < deadline


@pytest.mark.slow
async def test_a_payers_close_is_defended_by_the_leader_and_by_the_process_that_took_over(world, postgres_dsn, tmp_path):
    toml = write_config(tmp_path, world, postgres_dsn)
    before, after = Reader(world, await world.open(), 7), Reader(world, await world.open(), 8)
    world.anvil.mine(1)
    async with first_leads(toml) as (http, nodes):
        first = nodes[0]
        follower = await serve(toml)
        nodes.append(follower)
        world.anvil.mine(2)
        await asyncio.sleep(1.0)  # the leader has applied blocks: it knows its channels (none of these)
        for reader in (before, after):
            await reader.run(http, [follower], 6)  # sold by the follower only
            assert reader.charged >= 2 * PRICE, reader.refused
        # A payer's close on a channel the leader never served: it learns it from the store.
        await world.client.request_close(before.config, sender=Sender.unlocked(world.payer))
        await defended(world, before)
        first.process.send_signal(signal.SIGKILL)
        # The next payer closes while nobody leads: its log lies above the persisted cursor.
        await world.client.request_close(after.config, sender=Sender.unlocked(world.payer))
        assert await until_leader(http, [follower], seconds=20) is follower
        await defended(world, after)


async def test_serve_workers_refuses_a_sqlite_database_in_one_line(tmp_path):
    (tmp_path / "site").mkdir()
    toml = tmp_path / "node.toml"
    toml.write_text(f'contract = "0x{"11" * 20}"\nreceiver = "0x{"22" * 20}"\ndatabase = "{tmp_path / "node.db"}"\n\n'
                    f'[paywall]\ncontent_dir = "{tmp_path / "site"}"\n')  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", "serve", "--config", str(toml), "--workers", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and out == b""
    [line] = err.decode().splitlines()
    assert line.startswith("error: --workers 2 needs a PostgreSQL database") and "SQLite allows one process" in line


@pytest.mark.slow
async def test_serve_workers_share_one_port_restart_a_crashed_child_and_stop_together(world, postgres_dsn, tmp_path):
    toml = write_config(tmp_path, world, postgres_dsn, admin=True)
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", "serve", "--config", toml, "--port", "0", "--workers", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    try:
        while sum(line.startswith("channel-node serving") for line in lines) < 2:
            line = (await asyncio.wait_for(parent.stdout.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        urls = {line.split("serving ")[1].split()[0] for line in lines if line.startswith("channel-node serving")}
        assert len(urls) == 1, "both workers listen on the one port the parent picked"
        [url] = urls
        [pids] = [line for line in lines if line.startswith("channel-node: 2 workers")]
        children = [int(p) for p in pids.split("pids ")[1].rstrip(")\n").split(", ")]
        seen: set[str] = set()
        for _ in range(200):  # a new connection each time: the kernel spreads them over both
            async with aiohttp.ClientSession() as http:
                seen.add((await health(http, Serve(parent, url)))["process"])
            if len(seen) == 2:
                break
        assert len(seen) == 2, "both workers answer on the port"
        admins = {line.split("admin API on ")[1].split("/admin")[0] for line in lines if line.startswith("admin API on")}
        assert len(admins) == 1, "the admin API too is one port for both"
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession(headers=bearer) as http, http.get(admins.pop() + "/admin/status") as answer:
            status = await answer.json()
        assert status["leaderProcess"] in seen and status["process"] in seen  # `channel-node status` says who leads
        os.kill(children[0], signal.SIGKILL)
        while not any("restarted as" in line for line in lines):
            line = (await asyncio.wait_for(parent.stdout.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        async with aiohttp.ClientSession() as http:
            leader = None
            for _ in range(100):  # the survivor (or the new child) leads
                reports = [await health(http, Serve(parent, url)) for _ in range(6)]
                leaders = {r["leaderProcess"] for r in reports}
                if len(leaders) == 1 and None not in leaders:
                    leader = leaders.pop()
                    break
                await asyncio.sleep(0.1)
            assert leader is not None and not leader.endswith(f":{children[0]}")
    finally:
        if parent.returncode is None:
            parent.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(parent.communicate(), 40))[0].decode()
    assert parent.returncode == 0, "".join(lines) + rest
    for pid in children[1:]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_serve_workers_stop_at_once_when_the_settings_are_wrong(postgres_dsn, tmp_path):
    """A worker that refuses its settings (exit 2, one line) is not restarted: the parent exits 2."""
    (tmp_path / "site").mkdir()
    toml = tmp_path / "node.toml"
    toml.write_text(f'rpc_url = "http://127.0.0.1:9"\ncontract = "0x{"11" * 20}"\nreceiver = "0x{"22" * 20}"\n'
                    f'database = "{postgres_dsn}"\n\n[paywall]\ncontent_dir = "{tmp_path / "site"}"\n')  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channel_node.cli.main", "serve", "--config", str(toml), "--port", "0", "--workers", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 2, output
    assert "cannot reach the chain" in output and "restarted as" not in output and "Traceback" not in output
