"""`channel-node doctor --config FILE` through the real CLI against anvil: a good configuration
passes every check (exit 0); each broken item prints its FIX line and exits 2. Its pure rules
(node/doctor.py) over generated inputs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

from anvil import ANVIL, Anvil, free_port, start_anvil
from channel_node.chain import ChannelDepositClient, Sender
from channel_node.node.doctor import DEFENCE_GAS, Observations, Pinned, Verdict, diagnose, same_code

ROOT = Path(__file__).resolve().parents[2]
# anvil's well-known dev accounts (public keys of a public mnemonic): #1 receives, #2 claims.
RECEIVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CLAIM_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
CLAIM_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
EMPTY_KEY = "0x" + "5e" * 32  # an account nobody funded


def start_chain(block_time: int | None):
    if block_time is None:
        return start_anvil()
    port = free_port()
    process = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent", "--block-time",
                                str(block_time)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    chain = Anvil(process, port)
    deadline = time.monotonic() + 20
    while True:
        try:
            chain.rpc("eth_chainId")
            return chain
        except OSError:
            if time.monotonic() > deadline:
                chain.stop()
                raise
            time.sleep(0.05)


async def deploy(url: str) -> str:
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        client = await ChannelDepositClient.deploy(w3, Sender.unlocked((await w3.eth.accounts)[0]), poll_latency=0.05)
        return client.address
    finally:
        await w3.provider.disconnect()


@pytest.fixture(scope="module")
def ticking():
    """anvil making a block every second, as docs/getting-started.md starts it."""
    chain = start_chain(1)
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def stuck():
    """anvil's default: a block only when a transaction arrives."""
    chain = start_chain(None)
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def contract(ticking):
    return asyncio.run(deploy(ticking.http_url))


def write_config(folder: Path, rpc_url: str, contract: str, **changes: str) -> Path:
    site = folder / "site"
    site.mkdir(exist_ok=True)
    values = {"rpc_url": rpc_url, "contract": contract, "receiver": RECEIVER, "claim_key": CLAIM_KEY, "admin_token": "t" * 32,
              "database": str(folder / "node.db"), "confirmations": "2", "content_dir": str(site)}  # fmt: skip
    values.update(changes)
    top = "\n".join(f'{k} = "{v}"' if k != "confirmations" else f"{k} = {v}" for k, v in values.items() if k != "content_dir")
    path = folder / "node.toml"
    path.write_text(f'{top}\n\n[paywall]\ncontent_dir = "{values["content_dir"]}"\n')
    return path


def doctor(config: Path, *options: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHANNEL_NODE_KEYSTORE_PASSWORD"}
    if password is not None:
        env["CHANNEL_NODE_KEYSTORE_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "channel_node.cli.main", "doctor", "--config", str(config), *options],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)  # fmt: skip


def lines_of(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each check's line by its name (the line's second column)."""
    found = {}
    for line in result.stdout.splitlines()[:-1]:
        verdict, rest = line[:4].strip(), line[4:]
        found[rest[:12].strip()] = f"{verdict} {rest[12:]}"
    return found


def test_a_good_configuration_passes_every_check(ticking, contract, tmp_path):
    result = doctor(write_config(tmp_path, ticking.http_url, contract))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_of(result)
    assert set(checks) == {"rpc", "contract", "asset", "receiver", "claim key", "gas", "blocks", "admin", "content", "database"}
    assert all(line.startswith("ok ") for line in checks.values()), result.stdout
    assert "chain id 31337" in checks["rpc"] and "a block every 1 s" in checks["blocks"]
    assert "receiver authorizer" in checks["claim key"] and CLAIM_ADDRESS in checks["claim key"]
    assert result.stdout.splitlines()[-1] == "all 10 checks pass" and result.stderr == ""
    assert CLAIM_KEY[2:] not in result.stdout  # never the key


def _pinned_elsewhere(folder: Path) -> None:
    """A database a node made for another contract and receiver (the real store writes its pin)."""
    from channel_node.store import Pin, SQLiteStore

    async def pin() -> None:
        store = SQLiteStore(folder / "node.db")
        await store.open(Pin(31337, bytes(20), bytes.fromhex("11" * 20)))
        await store.close()

    asyncio.run(pin())


def test_the_pin_is_read_while_a_node_holds_the_database(tmp_path):
    """Read only, beside the running node's lock; a file that is no database is its own finding."""
    from channel_node.cli.doctor import read_pin
    from channel_node.store import Pin, SQLiteStore

    async def run() -> None:
        store = SQLiteStore(tmp_path / "node.db")
        await store.open(Pin(5, bytes.fromhex("ab" * 20), bytes.fromhex("cd" * 20)))
        try:
            assert read_pin(tmp_path / "node.db") == Pinned("5", "ab" * 20, "cd" * 20)
        finally:
            await store.close()

    asyncio.run(run())
    assert read_pin(tmp_path / "none.db") == Pinned()
    (tmp_path / "text.db").write_text("not a database")
    assert read_pin(tmp_path / "text.db").error


CASES = {
    # name: (config changes, doctor options, the check that fails, words its FIX line says)
    "wrong chain id": ({}, ("--chain-id", "11155111"), "rpc", ["chain 31337", "11155111 (Sepolia)", "set `rpc_url`"]),
    "wrong contract address": ({"contract": "0x" + "12" * 20}, (), "contract", ["no contract at", "channel-node deploy"]),
    "wrong token address": ({"token": "0x" + "34" * 20}, (), "asset", ["no contract at token", "remove it"]),
    "no gas": ({"claim_key": EMPTY_KEY}, (), "gas", ["holds 0 ETH", "less than one defence", "send it at least"]),
    "missing content dir": ({"content_dir": "/nonexistent/site"}, (), "content", ["not a directory", "paywall.content_dir"]),
    "wrong pin": ({}, (), "database", ["belongs to", "contract 0000", "receiver 1111", "new file"]),
    "no admin token": ({"admin_token": ""}, (), "admin", ["no `admin_token`", "openssl rand"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_broken_item_prints_its_fix_and_exits_2(ticking, contract, tmp_path, case):
    changes, options, failing, words = CASES[case]
    changes = dict(changes)
    if case == "wrong pin":
        _pinned_elsewhere(tmp_path)
    config = write_config(tmp_path, ticking.http_url, changes.pop("contract", contract), **changes)
    if case == "no admin token":
        config.write_text("\n".join(l for l in config.read_text().splitlines() if not l.startswith("admin_token")))
    result = doctor(config, *options)
    assert result.returncode == 2, result.stdout + result.stderr
    checks = lines_of(result)
    assert checks[failing].startswith("FIX "), result.stdout
    for word in words:
        assert word in checks[failing], (word, checks[failing])
    others = {name: line for name, line in checks.items() if name != failing}
    assert all(not line.startswith("FIX") for line in others.values()), result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_chain_that_makes_no_blocks_is_a_fix_naming_the_block_time(stuck, tmp_path):
    address = asyncio.run(deploy(stuck.http_url))
    result = doctor(write_config(tmp_path, stuck.http_url, address), "--block-wait", "1.5")
    assert result.returncode == 2, result.stdout
    line = lines_of(result)["blocks"]
    assert line.startswith("FIX ") and "no new block in 2 s" in line and "anvil: --block-time 1" in line
    assert "confirmations = 2" in line
    # With one confirmation a chain that mines per transaction still confirms deposits.
    one = doctor(write_config(tmp_path, stuck.http_url, address, confirmations="1"), "--block-wait", "1")
    assert one.returncode == 0 and lines_of(one)["blocks"].startswith("ok "), one.stdout


def test_a_token_is_named_by_its_symbol_and_decimals(ticking, contract, tmp_path):
    from channel_node.chain.artifacts import demo_dollar_artifact

    async def deploy_dollar() -> str:
        w3 = AsyncWeb3(AsyncHTTPProvider(ticking.http_url))
        try:
            artifact = demo_dollar_artifact()
            factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
            tx = await factory.constructor().transact({"from": (await w3.eth.accounts)[0]})
            return (await w3.eth.wait_for_transaction_receipt(tx, poll_latency=0.05))["contractAddress"]
        finally:
            await w3.provider.disconnect()

    dollar = asyncio.run(deploy_dollar())
    result = doctor(write_config(tmp_path, ticking.http_url, contract, token=dollar))
    assert result.returncode == 0, result.stdout
    assert lines_of(result)["asset"] == f"ok token DUSD at {dollar}, 6 decimals"


def test_a_claim_keystore_opens_or_is_a_fix_that_never_shows_the_password(ticking, contract, tmp_path, monkeypatch):
    from channel_node import keys

    monkeypatch.setattr(keys, "SCRYPT_N", 2**4)  # a quick keystore; loading reads N from the file
    keys.import_key(tmp_path / "claim.json", "right horse", CLAIM_KEY)
    config = write_config(tmp_path, ticking.http_url, contract)
    config.write_text(config.read_text().replace(f'claim_key = "{CLAIM_KEY}"', 'claim_keystore = "' + str(tmp_path / "claim.json") + '"'))
    good = doctor(config, password="right horse")
    assert good.returncode == 0 and f"{CLAIM_ADDRESS} from keystore" in lines_of(good)["claim key"], good.stdout
    wrong = doctor(config, password="wrong horse")
    line = lines_of(wrong)["claim key"]
    assert wrong.returncode == 2 and line.startswith("FIX ") and "wrong password" in line and "CHANNEL_NODE_KEYSTORE_PASSWORD" in line
    assert lines_of(wrong)["gas"].startswith("-- ") and "horse" not in wrong.stdout + wrong.stderr


def test_a_dead_rpc_is_one_fix_and_the_chain_checks_wait_on_it(tmp_path):
    result = doctor(write_config(tmp_path, f"http://127.0.0.1:{free_port()}", "0x" + "12" * 20))
    assert result.returncode == 2
    checks = lines_of(result)
    assert checks["rpc"].startswith("FIX ") and "start the chain" in checks["rpc"]
    assert checks["contract"].startswith("-- ") and checks["blocks"].startswith("-- ")


def test_a_missing_config_file_is_one_error_line(tmp_path):
    result = doctor(tmp_path / "nope.toml")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_the_defence_gas_is_the_gas_tables_costliest_defence():
    table = json.loads((ROOT / "docs/gas.json").read_text())
    assert max(table[k] for k in ("claim", "claim_erc20", "claim_by_authorizer", "close_receiver")) == DEFENCE_GAS


# ------------------------------------------------------------------ pure rules

_code = st.lists(st.one_of(st.binary(min_size=1, max_size=40).filter(lambda b: b[0] != 0x7F), st.just(b"IMM")), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(parts=_code, values=st.lists(st.binary(min_size=32, max_size=32), min_size=12, max_size=12), flip=st.integers(0, 10**6))
def test_same_code_accepts_filled_immutables_and_nothing_else(parts, values, flip):
    """solc's artifact leaves each immutable as PUSH32 0x00..00; the deployed code differs exactly there."""
    placeholder = b"\x7f" + bytes(32)
    artifact = b"".join(placeholder if p == b"IMM" else p for p in parts)
    deployed = b"".join(b"\x7f" + values[i] if p == b"IMM" else p for i, p in enumerate(parts))
    assert same_code(deployed, artifact)
    assert not same_code(deployed + b"\x00", artifact) and not same_code(b"", b"")
    # Any byte changed outside an immutable's 32 bytes is another contract.
    fixed = [i for i in range(len(artifact)) if not any(
        artifact[s : s + 33] == placeholder and s < i <= s + 32 for s in range(max(0, i - 32), i))]  # fmt: skip
    if fixed:
        at = fixed[flip % len(fixed)]
        changed = bytearray(deployed)
        changed[at] ^= 0x01
        assert not same_code(bytes(changed), artifact)


_hex20 = st.binary(min_size=20, max_size=20).map(bytes.hex)


@settings(max_examples=150, deadline=None)
@given(chain=st.integers(1, 2**32), contract=_hex20, receiver=_hex20, other=st.tuples(st.integers(1, 2**32), _hex20, _hex20),
       keep=st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_the_pin_check_names_exactly_the_fields_that_differ(chain, contract, receiver, other, keep):
    mine = (str(chain), contract, receiver)
    stored = [m if k else str(o) for m, o, k in zip(mine, other, keep, strict=True)]
    o = Observations(rpc_url="x", chain_id=chain, contract="0x" + contract.upper(), receiver="0x" + receiver,
                     pinned=Pinned(*stored))  # fmt: skip
    check = next(c for c in diagnose(o) if c.name == "database")
    differ = [k for k, a, b in zip(("chain_id", "contract", "receiver"), mine, stored, strict=True) if a != b]
    assert (check.verdict is Verdict.FIX) == bool(differ)
    if differ:
        for key in ("chain_id", "contract", "receiver"):
            assert (f"{key} " in check.text.split(": set `database`")[0]) == (key in differ), check.text


@settings(max_examples=100, deadline=None)
@given(balance=st.integers(0, 10**21), fee=st.integers(0, 10**12))
def test_the_gas_check_passes_exactly_when_one_defence_is_covered(balance, fee):
    from channel_node.node.doctor import ClaimKey

    o = Observations(rpc_url="x", chain_id=1, claim=ClaimKey("claim_key", CLAIM_ADDRESS), gas_balance=balance, max_fee=fee)
    check = next(c for c in diagnose(o) if c.name == "gas")
    assert (check.verdict is Verdict.OK) == (balance >= DEFENCE_GAS * fee)
