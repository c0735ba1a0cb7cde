"""Every user mistake of issue 15 through the real command line: exit code 2, exactly one line on
stderr saying what is wrong and what to do, no traceback, no secret (docs/operations.md, "When
something goes wrong").

The mistakes that need nothing run against files in a temporary folder; those that need a chain
and a running node share one module-scoped anvil (no block time, as anvil starts by default: it
mines only when a transaction arrives) with a deployed contract, a `serve` node waiting for 2
confirmations and a funded reader wallet."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from anvil import start_anvil

PASSWORD = "mistakes-keystore-password"
ADMIN_TOKEN = "mistakes-admin-token-3f9a"
CLAIM_KEY = "0x" + "5a" * 32
READER_KEY = "0x" + "3c" * 32
SECRETS = (PASSWORD, ADMIN_TOKEN, CLAIM_KEY[2:], READER_KEY[2:])
PRICE = 20_000_000_000_000


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """`channel-node ARGS` as a user runs it (the module entry point the other e2e tests use)."""
    process = subprocess.run(
        [sys.executable, "-m", "channel_node.cli.main", *args], input=stdin, capture_output=True, text=True,
        env={**os.environ, "CHANNEL_NODE_KEYSTORE_PASSWORD": PASSWORD, **(env or {})}, timeout=timeout,
    )  # fmt: skip
    return process.returncode, process.stdout, process.stderr


def assert_one_clear_line(code: int, err: str, *keywords: str) -> None:
    lines = err.strip("\n").split("\n")
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    for word in keywords:
        assert word.lower() in lines[0].lower(), f"{word!r} missing from: {lines[0]}"
    for secret in SECRETS:
        assert secret not in err, "a secret was printed"
    assert "pydantic" not in err and "https://errors" not in err, lines[0]
    print(lines[0])  # `pytest -rP` lists every mistake's line (the closing note shows them)


def node_toml(folder: Path, body: str, paywall: str = 'content_dir = "{site}"\n') -> Path:
    site = folder / "site"
    site.mkdir(exist_ok=True)
    path = folder / f"node-{abs(hash(body + paywall))}.toml"
    path.write_text(
        'rpc_url = "http://127.0.0.1:9"\ncontract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"\n'
        'receiver = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"\n' + body + "\n[paywall]\n" + paywall.format(site=site)
    )
    return path


def without_paywall(path: Path) -> Path:
    path.write_text(path.read_text().replace("[paywall]\n", ""))
    return path


# ---------------------------------------------------------------------- mistakes without a chain

# (name, how to run it given a temporary folder, key words the line must carry)
OFFLINE: list[tuple[str, Callable[[Path], tuple[list[str], dict[str, str]]], tuple[str, ...]]] = [
    ("typo'd key", lambda d: (["serve", "--config", str(node_toml(d, "confirmation = 2"))], {}),
     ("confirmation", "did you mean `confirmations`?")),
    ("typo'd nested key", lambda d: (["serve", "--config", str(node_toml(d, "", 'content_dir = "{site}"\nupstream_timout = 5\n'))], {}),
     ("upstream_timout", "[paywall]", "did you mean `upstream_timeout`?")),
    ("TOML syntax error", lambda d: (["serve", "--config", str(node_toml(d, 'host = "127.0.0.1'))], {}),
     ("TOML syntax error", "line 4, column", "not closed")),
    ("bad value", lambda d: (["serve", "--config", str(node_toml(d, 'port = "eighty"'))], {}),
     ("port", "'eighty'", "must be a valid integer")),
    ("float amount", lambda d: (["serve", "--config", str(node_toml(d, "", 'content_dir = "{site}"\n[[paywall.prices]]\npath = "/a"\nprice = 0.5\n'))], {}),
     ("paywall.prices[0].price", "0.5", "no floats")),
    ("env var with a bad value", lambda d: (["serve", "--config", str(node_toml(d, ""))], {"CHANNEL_NODE_CONFIRMATIONS": "two"}),
     ("CHANNEL_NODE_CONFIRMATIONS=", "'two'", "integer")),
    ("secret never echoed", lambda d: (["serve", "--config", str(node_toml(d, f'claim_key = "{CLAIM_KEY}"\nadmin_port = -1'))], {}),
     ("admin_port", "greater than or equal to 0")),
    ("secret value hidden", lambda d: (["serve", "--config", str(node_toml(d, "claim_key = 5"))], {}),
     ("claim_key", "(hidden)")),
    ("no paywall table", lambda d: (["serve", "--config", str(without_paywall(node_toml(d, "", "")))], {}),
     ("[paywall] is missing", "content_dir")),
    ("config file missing", lambda d: (["serve", "--config", str(d / "nope.toml")], {}),
     ("nope.toml", "not found")),
    ("missing content_dir", lambda d: (["serve", "--config", str(node_toml(d, "", 'content_dir = "{site}/gone"\n'))], {}),
     ("content_dir", "does not exist", "create it")),
    ("URL without a scheme", lambda d: (["wallet", "get", "127.0.0.1:8402/articles/a.html", "--wallet", str(d)], {}),
     ("no scheme", "http://127.0.0.1:8402/articles/a.html")),
    ("URL of another scheme", lambda d: (["wallet", "get", "ftp://news.example/a", "--wallet", str(d)], {}),
     ("ftp://", "http:// or https://")),
    ("no wallet", lambda d: (["wallet", "channels", "--wallet", str(d / "none")], {}),
     ("no wallet", "wallet new")),
    ("admin API that nobody serves", lambda d: (["status", "--admin-url", f"http://127.0.0.1:{_dead_port()}"], {"CHANNEL_NODE_ADMIN_TOKEN": ADMIN_TOKEN}),
     ("no node answered", "--config")),
    ("key file missing", lambda d: (["wallet", "import", "--wallet", str(d), "--key-file", str(d / "no-key.hex")], {}),
     ("cannot read --key-file", "no-key.hex")),
    ("deploy to a dead chain", lambda d: (["deploy", "--rpc-url", f"http://127.0.0.1:{_dead_port()}/v3/{ADMIN_TOKEN}", "--unlocked", "0x" + "11" * 20], {}),
     ("cannot reach the chain at", "nothing is listening", "--rpc-url")),
    ("RPC URL without a scheme", lambda d: (["wallet", "channels", "--wallet", str(d), "--rpc-url", f"127.0.0.1:8545/v3/{ADMIN_TOKEN}"], {}),
     ("--rpc-url must be an absolute URL", "http://")),
    ("admin URL without a scheme", lambda d: (["channels", "list", "--admin-url", "127.0.0.1:8403"], {}),
     ("no scheme", "http://127.0.0.1:8403")),
]  # fmt: skip


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def run_all(commands: list[tuple[list[str], dict[str, str]]]) -> list[tuple[int, str, str]]:
    """Runs the commands two at a time (each is mostly Python's start-up): the table stays fast."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda command: run(*command[0], env=command[1]), commands))


@pytest.fixture(scope="module")
def offline_results(tmp_path_factory):
    folders = [tmp_path_factory.mktemp("offline") for _ in OFFLINE]
    return dict(zip([row[0] for row in OFFLINE], run_all([row[1](d) for row, d in zip(OFFLINE, folders, strict=True)]), strict=True))


@pytest.mark.parametrize(("name", "keywords"), [(row[0], row[2]) for row in OFFLINE], ids=[row[0] for row in OFFLINE])
def test_offline_mistake(name, keywords, offline_results):
    code, _, err = offline_results[name]
    assert_one_clear_line(code, err, *keywords)


# ---------------------------------------------------------------------- mistakes against a chain and a node


@dataclass
class World:
    rpc: str
    folder: Path
    config: Path
    node_url: str
    admin_url: str
    wallet: Path
    channel: str
    first_get: tuple[int, str, str]
    head: int

    def wallet_args(self) -> list[str]:
        return ["--wallet", str(self.wallet), "--rpc-url", self.rpc]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mistakes")
    chain = start_anvil()
    serve = None
    try:
        deployer = chain.rpc("eth_accounts")[0]
        for key in (CLAIM_KEY, READER_KEY):
            chain.rpc("anvil_setBalance", [Account.from_key(key).address, hex(10**19)])
        code, out, err = run("deploy", "--rpc-url", chain.http_url, "--unlocked", deployer)
        assert code == 0, err
        contract = re.search(r"contract\s+(0x[0-9a-fA-F]{40})", out).group(1)
        site = folder / "site"
        (site / "articles").mkdir(parents=True)
        (site / "articles" / "a.html").write_text("paid words")
        port, admin_port = _dead_port(), _dead_port()
        config = folder / "node.toml"
        config.write_text(
            f'rpc_url = "{chain.http_url}"\ncontract = "{contract}"\nreceiver = "{Account.from_key(CLAIM_KEY).address}"\n'
            f'claim_key = "{CLAIM_KEY}"\ndatabase = "{folder / "node.db"}"\nport = {port}\nadmin_port = {admin_port}\n'
            f'admin_token = "{ADMIN_TOKEN}"\nconfirmations = 2\npoll_interval = 0.2\n\n'
            f'[paywall]\ncontent_dir = "{site}"\n[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\n'
        )
        serve = subprocess.Popen(
            [sys.executable, "-m", "channel_node.cli.main", "serve", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        seen = []
        while not (line := serve.stdout.readline()).startswith("channel-node serving"):
            assert line, "".join(seen)
            seen.append(line)
        wallet = folder / "wallet"
        code, _, err = run("wallet", "import", "--wallet", str(wallet), stdin=READER_KEY + "\n")
        assert code == 0, err
        url = f"http://127.0.0.1:{port}/articles/a.html"
        # The finding itself: anvil mines only on a transaction, so the deposit never gets 2 confirmations.
        first_get = run("wallet", "get", url, "--wallet", str(wallet), "--rpc-url", chain.http_url)
        code, out, err = run("wallet", "channels", "--json", "--wallet", str(wallet), "--rpc-url", chain.http_url)
        assert code == 0, err
        channel = json.loads(out)[0]["channel"]
        head = int(chain.rpc("eth_blockNumber"), 16)
        yield World(chain.http_url, folder, config, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}",
                    wallet, channel, first_get, head)  # fmt: skip
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(20)
        chain.stop()


def test_unconfirmed_channel_says_why_it_cannot_pay(world):
    code, _, err = world.first_get
    assert_one_clear_line(code, err, world.channel, "not confirmed", f"chain is at block {world.head}",
                          "2 by default", "--block-time 1")  # fmt: skip
    assert "charged 0" not in err


ONLINE: list[tuple[str, Callable[[World], tuple[list[str], dict[str, str]]], tuple[str, ...]]] = [
    ("dead host", lambda w: (["wallet", "get", f"http://127.0.0.1:{_dead_port()}/a", *w.wallet_args()], {}),
     ("cannot reach the site at", "nothing is listening", "is the site running?")),
    ("unknown host", lambda w: (["wallet", "get", "http://no-such-host.invalid/a", *w.wallet_args()], {}),
     ("unknown host", "no-such-host.invalid", "spelling")),
    ("dead chain", lambda w: (["wallet", "channels", "--wallet", str(w.wallet), "--rpc-url", f"http://127.0.0.1:{_dead_port()}"], {}),
     ("cannot reach the chain at", "nothing is listening", "--rpc-url", "CHANNEL_NODE_RPC_URL")),
    ("wrong keystore password", lambda w: (["wallet", "channels", *w.wallet_args()], {"CHANNEL_NODE_KEYSTORE_PASSWORD": "not-it"}),
     ("wrong password",)),
    ("bad channel id", lambda w: (["wallet", "finalize", "0x12", *w.wallet_args()], {}),
     ("0x12", "64 hex digits", "wallet channels")),
    ("close refused by the node", lambda w: (["wallet", "close", w.channel, "--node", w.node_url, *w.wallet_args()], {}),
     ("refused to co-sign", "channel_unknown")),
    ("close through a dead node", lambda w: (["wallet", "close", w.channel, "--node", f"http://127.0.0.1:{_dead_port()}", *w.wallet_args()], {}),
     ("could not reach the node", "is it running")),
    ("finalize before any close", lambda w: (["wallet", "finalize", w.channel, *w.wallet_args()], {}),
     ("no close was requested", "wallet close")),
    ("serve on a port in use", lambda w: (["serve", "--config", str(w.config)], {"CHANNEL_NODE_DATABASE": str(w.folder / "second.db")}),
     ("already in use", "--port")),
    ("dev on a port in use", lambda w: (["dev", "--once", "--port", w.node_url.rsplit(":", 1)[1], "--rpc-port", "0"], {}),
     ("already in use", "--port 0")),
    ("no contract at the address", lambda w: (["serve", "--config", str(w.config)], {
        "CHANNEL_NODE_CONTRACT": "0x" + "00" * 19 + "01", "CHANNEL_NODE_DATABASE": str(w.folder / "third.db")}),
     ("no contract at", "channel-node deploy", "rpc_url")),
    ("malformed --token", lambda w: (["wallet", "channels", *w.wallet_args(), "--token", "0x12"], {}),
     ("--token", "address", "40 hex digits")),
    ("admin call without a token", lambda w: (["status", "--admin-url", w.admin_url], {"CHANNEL_NODE_ADMIN_TOKEN": ""}),
     ("needs its admin token", "401", "CHANNEL_NODE_ADMIN_TOKEN")),
    ("admin call with a wrong token", lambda w: (["status", "--admin-url", w.admin_url], {"CHANNEL_NODE_ADMIN_TOKEN": "not-the-token"}),
     ("refused the admin token", "401", "CHANNEL_NODE_ADMIN_TOKEN")),
    ("admin call to the paywall's port", lambda w: (["status", "--admin-url", w.node_url], {"CHANNEL_NODE_ADMIN_TOKEN": ADMIN_TOKEN}),
     ("404", "admin_port")),
]  # fmt: skip


@pytest.fixture(scope="module")
def online_results(world):
    return dict(zip([row[0] for row in ONLINE], run_all([row[1](world) for row in ONLINE]), strict=True))


@pytest.mark.parametrize(("name", "keywords"), [(row[0], row[2]) for row in ONLINE], ids=[row[0] for row in ONLINE])
def test_mistake_against_a_node(name, keywords, online_results):
    code, _, err = online_results[name]
    assert_one_clear_line(code, err, *keywords)


def test_offline_status_reads_the_chain(world):
    """A stopped node's `status --config` (here: a second database, the first is the running
    node's) reports the chain's head and the claim key's gas balance, not head 0 and balance 0."""
    offline = world.folder / "offline.toml"
    text = world.config.read_text().replace(str(world.folder / "node.db"), str(world.folder / "offline.db"))
    offline.write_text(re.sub(r"admin_port = \d+", f"admin_port = {_dead_port()}", text))
    code, out, err = run("status", "--config", str(offline), "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["head"] >= world.head > 0
    assert status["cursor"] >= 0
    assert int(status["gas"]["balance"]) > 0 and status["gas"]["address"] == Account.from_key(CLAIM_KEY).address
