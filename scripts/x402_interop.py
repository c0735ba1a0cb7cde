"""x402 interop end to end, on a chain of its own: the official Python SDK (`x402HttpxClient`) and the
official TypeScript client (`@x402/fetch`, tools/x402_ts_client.mjs) pay a channel-node under the
`exact` scheme, each replays one authorization to another article (refused), and, when the wallet
side is there, our reader's wallet pays the official SDK's own server.

    npm ci --prefix tools --no-audit --no-fund          # anvil and the TypeScript client
    .venv/bin/python scripts/x402_interop.py --articles 5 --json

Starts anvil (tools/node_modules, 127.0.0.1, a free port; block time = wall clock, which the SDK
clients date their authorizations by), deploys ChannelDeposit and DemoDollar, mints DemoDollar to two
fresh payers that hold no ETH, runs `channel-node serve` with `[exact] enabled = true`, pays, and
stops everything it started by PID. Bounded by --timeout (seconds). With --json it prints one line:

    {"sdk_python_paid": n, "sdk_ts_paid": n, "wallet_paid_sdk_server": n | null,
     "replays_refused": n, "gas_per_exact_sale": g, "notes": {...}}

`wallet_paid_sdk_server` needs the wallet's exact support (client/exact.py) and the SDK site
(tests/client/x402_sdk_site.py, with fastapi and uvicorn); without them it is null and `notes` says
what is missing. `replays_refused` counts one replay per client that ran (2, or 3 with the wallet).
`gas_per_exact_sale` is the median gasUsed of the sales' transferWithAuthorization transactions (the
node pays it: docs/protocol.md, "`channel` and `exact` side by side"); `notes` gives the largest. A field that could not be measured
is null and `notes` says why. Exit status 0 when every payment and every refusal went as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import HTTPProvider, Web3

from channel_node.chain.artifacts import channel_deposit_artifact, demo_dollar_artifact
from channel_node.signing import keccak256

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ANVIL = TOOLS / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
TS_CLIENT = TOOLS / "x402_ts_client.mjs"
PRICE = 20_000  # DemoDollar units (6 decimals): 0.02 DUSD an article
PAYER_TOKENS = 1_000 * 10**6
CAP = str(100 * PRICE)  # the SDK clients' per-payment spend control for DemoDollar
# Public test keys, derived from labels: nothing here guards real money.
CLAIM_KEY = keccak256(b"x402 interop node gas key")
PYTHON_PAYER_KEY = keccak256(b"x402 interop python sdk payer")
TS_PAYER_KEY = keccak256(b"x402 interop typescript sdk payer")


class InteropError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """Stops one process this script started, by its PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def anvil_chain() -> Iterator[str]:
    if not ANVIL.exists():
        raise InteropError(f"anvil is missing at {ANVIL}: run `npm ci --prefix tools --no-audit --no-fund`")
    port = free_port()
    process = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 5}))
        deadline = time.monotonic() + 20
        while True:
            try:
                if w3.eth.chain_id:
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise InteropError("anvil did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        _stop(process)


@dataclass
class Deployment:
    rpc_url: str
    chain_id: int
    contract: str
    token: str
    receiver: str
    w3: Web3 = field(repr=False)

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"

    def token_balance(self, address: str) -> int:
        dollar = self.w3.eth.contract(address=self.token, abi=demo_dollar_artifact().abi)
        return int(dollar.functions.balanceOf(address).call())


def deploy(rpc_url: str) -> Deployment:
    """ChannelDeposit and DemoDollar, DemoDollar minted to both payers, gas for the node's key."""
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    deployer = w3.eth.accounts[0]
    receiver = w3.eth.accounts[1]

    def create(artifact: Any, *args: object) -> str:
        tx = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor(*args).transact({"from": deployer})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        if receipt["status"] != 1 or receipt["contractAddress"] is None:
            raise InteropError("a deployment failed")
        return str(receipt["contractAddress"])

    contract = create(channel_deposit_artifact(), 0)
    token = create(demo_dollar_artifact())
    dollar = w3.eth.contract(address=token, abi=demo_dollar_artifact().abi)
    for key in (PYTHON_PAYER_KEY, TS_PAYER_KEY):
        tx = dollar.functions.mint(Account.from_key(key).address, PAYER_TOKENS).transact({"from": deployer})
        if w3.eth.wait_for_transaction_receipt(tx)["status"] != 1:
            raise InteropError("minting DemoDollar failed")
    w3.provider.make_request("anvil_setBalance", [Account.from_key(CLAIM_KEY).address, hex(10**20)])  # type: ignore[arg-type]
    return Deployment(rpc_url, w3.eth.chain_id, contract, token, receiver, w3)


def write_site(folder: Path, articles: int) -> list[str]:
    (folder / "articles").mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text("<h1>x402 interop</h1>")
    paths = []
    for n in range(articles):
        (folder / "articles" / f"{n}.html").write_text(f"<h1>Article {n}</h1><p>{'words ' * 50}</p>")
        paths.append(f"/articles/{n}.html")
    return paths


def node_config(folder: Path, d: Deployment, site: Path) -> Path:
    path = folder / "node.toml"
    path.write_text(
        f'rpc_url = "{d.rpc_url}"\ncontract = "{d.contract}"\nreceiver = "{d.receiver}"\ntoken = "{d.token}"\n'
        f'claim_key = "0x{CLAIM_KEY.hex()}"\ndatabase = "{folder / "node.db"}"\nconfirmations = 1\n'
        f'host = "127.0.0.1"\n\n'
        "[exact]\nenabled = true\n\n"
        f'[paywall]\ncontent_dir = "{site}"\nfree = ["/", "/index.html"]\n\n'
        f'[[paywall.prices]]\npath = "/articles/*"\nprice = {PRICE}\ndescription = "an article"\n'
    )
    return path


@contextlib.contextmanager
def serving(config: Path, log: Path, timeout: float = 60) -> Iterator[str]:
    """`channel-node serve` on a free loopback port, its output in `log`; yields its base URL."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "channel_node.cli.main", "serve", "--config", str(config), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            base = None
            while base is None and time.monotonic() < deadline and process.poll() is None:
                for line in log.read_text().splitlines():
                    if line.startswith("channel-node serving "):
                        base = line.split()[2]
                time.sleep(0.1)
            if base is None:
                raise InteropError(f"the node did not start: {log.read_text().strip()[-600:]}")
            yield base
        finally:
            _stop(process)


def _decode(value: str | None) -> Any:
    return json.loads(base64.b64decode(value)) if value else None


@dataclass
class Outcome:
    paid: int = 0
    replays_refused: int = 0
    transactions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def python_sdk_pays(d: Deployment, base: str, paths: list[str], replay_to: str | None) -> Outcome:
    """The official Python SDK's httpx client pays each path under `exact`, then its first
    authorization is replayed by hand to `replay_to`."""
    import httpx
    from x402 import x402Client
    from x402.http.clients.httpx import x402AsyncTransport
    from x402.http.x402_http_client import x402HTTPClient
    from x402.mechanisms.evm.exact.register import register_exact_evm_client

    outcome = Outcome()
    client = x402Client()
    register_exact_evm_client(client, Account.from_key(PYTHON_PAYER_KEY), networks=d.network)
    client.set_spend_controls({"allowed_assets": [{"network": d.network, "asset": d.token, "max_amount_per_payment": CAP}]})
    sent: list[str] = []

    class Recording(httpx.AsyncHTTPTransport):
        """Under the SDK's transport, so it sees the SDK's signed retry too."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if "PAYMENT-SIGNATURE" in request.headers:
                sent.append(request.headers["PAYMENT-SIGNATURE"])
            return await super().handle_async_request(request)

    # x402HttpxClient(client) is httpx.AsyncClient(transport=x402AsyncTransport(client)): the same,
    # with the recording transport under it. The SDK's default httpx timeout (5 s) is too short for
    # a payment the node settles on chain before it answers.
    async with httpx.AsyncClient(transport=x402AsyncTransport(client, Recording()), timeout=30) as http:
        for path in paths:
            before = len(sent)
            response = await http.get(base + path)
            scheme = _decode(sent[-1])["accepted"]["scheme"] if len(sent) > before else None
            try:
                receipt = x402HTTPClient(client).get_payment_settle_response(response.headers.get)
            except Exception as error:  # no (or no parsable) receipt: judged below
                outcome.problems.append(f"python sdk {path}: receipt unreadable: {error}")
                receipt = None
            if response.status_code == 200 and scheme == "exact" and receipt is not None and receipt.success:
                outcome.paid += 1
                outcome.transactions.append(receipt.transaction)
            else:
                refusal = _decode(response.headers.get("PAYMENT-REQUIRED"))
                outcome.problems.append(
                    f"python sdk {path}: {response.status_code} scheme={scheme} {refusal and refusal.get('error')}"
                )
    if replay_to and sent:
        async with httpx.AsyncClient(timeout=30) as plain:
            again = await plain.get(base + replay_to, headers={"PAYMENT-SIGNATURE": sent[0]})
        refusal = _decode(again.headers.get("PAYMENT-REQUIRED"))
        if again.status_code == 402 and refusal and refusal.get("error") == "authorization_used":
            outcome.replays_refused += 1
        else:
            outcome.problems.append(f"python sdk replay to {replay_to}: {again.status_code} {refusal and refusal.get('error')}")
    return outcome


def ts_sdk_pays(d: Deployment, base: str, paths: list[str], replay_to: str | None, timeout: float) -> Outcome:
    outcome = Outcome()
    node = shutil.which("node")
    if node is None:
        raise InteropError("node is not installed")
    job = {
        "key": "0x" + TS_PAYER_KEY.hex(), "network": d.network, "asset": d.token, "maxAmountPerPayment": CAP,
        "base": base, "paths": paths, "replay": replay_to, "timeoutMs": int(timeout * 1000),
    }  # fmt: skip
    result = subprocess.run(
        [node, str(TS_CLIENT)], input=json.dumps(job), capture_output=True, text=True, timeout=timeout + 10, cwd=TOOLS
    )
    if result.returncode != 0:
        raise InteropError(f"the TypeScript client failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    report = json.loads(result.stdout)
    for item in report["paid"]:
        receipt = item["receipt"] or {}
        if item["status"] == 200 and item["scheme"] == "exact" and receipt.get("success"):
            outcome.paid += 1
            outcome.transactions.append(receipt["transaction"])
        else:
            error = (item["refusal"] or {}).get("error")
            outcome.problems.append(f"ts sdk {item['path']}: {item['status']} scheme={item['scheme']} {error}")
    replay = report["replay"]
    if replay_to:
        if replay and replay["status"] == 402 and replay["error"] == "authorization_used":
            outcome.replays_refused += 1
        else:
            outcome.problems.append(f"ts sdk replay to {replay_to}: {replay}")
    return outcome


def gas_of(d: Deployment, transactions: list[str]) -> tuple[int | None, int | None]:
    """The median and the largest gasUsed of the sales' transfers (the first transfer into an empty
    payTo balance writes a fresh storage slot and costs about 17k more than the rest)."""
    used = sorted(int(d.w3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in transactions)  # type: ignore[arg-type]
    if not used:
        return None, None
    return used[len(used) // 2], used[-1]


SDK_SITE = ROOT / "tests" / "client" / "x402_sdk_site.py"  # the official SDK as a site (branch x-wallet)
WALLET_READER_KEY = keccak256(b"x402 interop reader wallet")
SDK_PAY_TO = Account.from_key(keccak256(b"x402 interop sdk site payee")).address
# anvil's well-known dev account 1: the SDK's in-process facilitator pays the gas with it
SDK_FACILITATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def wallet_pays_sdk_server(articles: int, folder: Path, timeout: float) -> tuple[int | None, int, str | None]:
    """Our reader's wallet (client/exact.py, PayingSession with scheme "exact") pays the official
    SDK's own server (its FastAPI middleware and in-process facilitator, a subprocess) on another
    anvil, then replays its first header there. (paid, replays refused, note); paid is None with the
    reason when the pieces it needs are not installed or not merged."""
    needed = {"channel_node.client.exact": "the wallet's exact support (branch x-wallet)", "fastapi": "fastapi",
              "uvicorn": "uvicorn", "x402": "x402[evm,httpx]"}  # fmt: skip
    missing = [what for module, what in needed.items() if importlib.util.find_spec(module) is None]
    if not SDK_SITE.exists():
        missing.append(f"{SDK_SITE.relative_to(ROOT)} (branch x-wallet)")
    if missing:
        return None, 0, "not measured: missing " + ", ".join(missing)
    with anvil_chain() as rpc_url:
        w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        artifact = demo_dollar_artifact()
        deployer = w3.eth.accounts[0]
        tx = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor().transact({"from": deployer})
        token = str(w3.eth.wait_for_transaction_receipt(tx)["contractAddress"])
        dollar = w3.eth.contract(address=token, abi=artifact.abi)  # type: ignore[arg-type]
        reader = Account.from_key(WALLET_READER_KEY).address
        w3.eth.wait_for_transaction_receipt(dollar.functions.mint(reader, PAYER_TOKENS).transact({"from": deployer}))
        port = free_port()
        env = dict(os.environ, RPC=rpc_url, CHAIN=str(w3.eth.chain_id), TOKEN=token, PAYTO=SDK_PAY_TO,
                   FACILITATOR_KEY=SDK_FACILITATOR_KEY, PORT=str(port), TOKEN_NAME=dollar.functions.name().call(),
                   TOKEN_VERSION=dollar.functions.version().call(),
                   PRICES=",".join(f"{n}={PRICE}" for n in range(articles)))  # fmt: skip
        log = folder / "sdk_site.log"
        base = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            site = subprocess.Popen([sys.executable, str(SDK_SITE)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(base + "/health", timeout=2) as health:
                        if health.status == 200:
                            break
                except OSError:
                    pass
                if site.poll() is not None or time.monotonic() > deadline:
                    raise InteropError(f"the SDK site did not start: {log.read_text().strip()[-600:]}")
                time.sleep(0.2)
            before = int(dollar.functions.balanceOf(SDK_PAY_TO).call())
            paid, first_header = asyncio.run(asyncio.wait_for(_wallet_pays(rpc_url, token, base, articles, folder), timeout))
            received = int(dollar.functions.balanceOf(SDK_PAY_TO).call()) - before
            if received != paid * PRICE:
                raise InteropError(f"the SDK site's payee got {received} units for {paid} sales of {PRICE}")
            refused = 0
            if first_header is not None:
                replay = urllib.request.Request(f"{base}/articles/0", headers={"PAYMENT-SIGNATURE": first_header})
                try:
                    with urllib.request.urlopen(replay, timeout=30):
                        pass  # served again: not refused
                except urllib.error.HTTPError as error:
                    refused = int(error.code == 402)
            if int(dollar.functions.balanceOf(SDK_PAY_TO).call()) - before != received:
                raise InteropError("the replay moved money")
            return paid, refused, None
        finally:
            _stop(site)


async def _wallet_pays(rpc_url: str, token: str, base: str, articles: int, folder: Path) -> tuple[int, str | None]:
    from web3 import AsyncWeb3
    from web3.providers import AsyncHTTPProvider

    from channel_node.client import PayingSession, Policy, Wallet, WalletStore

    w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
    wallet = Wallet(w3, WALLET_READER_KEY, WalletStore(folder / "wallet.db"), Policy(asset=token))
    paid = 0
    try:
        async with PayingSession(wallet, scheme="exact") as session:
            for n in range(articles):
                result = await session.get(f"{base}/articles/{n}")
                if result.status == 200 and result.charged == PRICE:
                    paid += 1
        records = wallet.store.exact_payments()
    finally:
        await w3.provider.disconnect()
    return paid, (records[0].header if records else None)


@dataclass
class Report:
    sdk_python_paid: int = 0
    sdk_ts_paid: int = 0
    wallet_paid_sdk_server: int | None = None
    replays_refused: int = 0
    gas_per_exact_sale: int | None = None
    expected_replays: int = 2  # one per client that ran
    notes: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        document: dict[str, Any] = {
            "sdk_python_paid": self.sdk_python_paid,
            "sdk_ts_paid": self.sdk_ts_paid,
            "wallet_paid_sdk_server": self.wallet_paid_sdk_server,
            "replays_refused": self.replays_refused,
            "gas_per_exact_sale": self.gas_per_exact_sale,
        }
        if self.notes:
            document["notes"] = self.notes
        if self.problems:
            document["problems"] = self.problems
        return json.dumps(document, separators=(",", ":"))


def run(articles: int, timeout: float, keep: Path | None = None) -> Report:
    report = Report()
    folder = keep or Path(tempfile.mkdtemp(prefix="x402-interop-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def left() -> float:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            raise InteropError(f"out of time ({timeout:.0f} s)")
        return remaining

    try:
        with anvil_chain() as rpc_url:
            d = deploy(rpc_url)
            paths = write_site(folder / "site", articles + 1)  # one more: the replays' target
            payable, spare = paths[:articles], paths[articles]
            balance_before = d.token_balance(d.receiver)
            with serving(node_config(folder, d, folder / "site"), folder / "node.log", timeout=min(60, left())) as base:
                python = asyncio.run(asyncio.wait_for(python_sdk_pays(d, base, payable, spare), left()))
                ts = ts_sdk_pays(d, base, payable, spare, timeout=min(120, left()))
            report.sdk_python_paid, report.sdk_ts_paid = python.paid, ts.paid
            report.replays_refused = python.replays_refused + ts.replays_refused
            report.problems += python.problems + ts.problems
            report.gas_per_exact_sale, largest = gas_of(d, python.transactions + ts.transactions)
            if report.gas_per_exact_sale is None:
                report.notes["gas_per_exact_sale"] = "no exact sale was settled"
            else:
                report.notes["gas_per_exact_sale"] = (
                    f"median of {python.paid + ts.paid} sales; largest {largest} (the first into an empty payTo balance)"
                )
            received = d.token_balance(d.receiver) - balance_before
            if received != (python.paid + ts.paid) * PRICE:
                report.problems.append(f"the receiver got {received} units for {python.paid + ts.paid} sales of {PRICE}")
        paid, refused, note = wallet_pays_sdk_server(articles, folder, timeout=left())
        report.wallet_paid_sdk_server = paid
        report.replays_refused += refused
        report.expected_replays += 0 if paid is None else 1
        if note:
            report.notes["wallet_paid_sdk_server"] = note
    except (InteropError, TimeoutError, subprocess.TimeoutExpired) as error:
        report.problems.append(f"{type(error).__name__}: {error}")
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=5, help="articles each SDK client buys (default 5)")
    parser.add_argument("--timeout", type=float, default=300, help="the whole run's time limit in seconds")
    parser.add_argument("--keep", type=Path, help="keep the node's config, database and log in this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    if args.articles < 1:
        parser.error("--articles must be at least 1")
    report = run(args.articles, args.timeout, args.keep)
    if args.json:
        print(report.line())
    else:
        print(f"official Python SDK paid      {report.sdk_python_paid} of {args.articles}")
        print(f"official TypeScript SDK paid  {report.sdk_ts_paid} of {args.articles}")
        print(f"our wallet paid the SDK site  {report.wallet_paid_sdk_server}")
        print(f"replays refused               {report.replays_refused} of {report.expected_replays}")
        print(f"gas per exact sale            {report.gas_per_exact_sale}")
        for name, note in report.notes.items():
            print(f"note: {name}: {note}")
        for problem in report.problems:
            print(f"problem: {problem}")
    ok = (
        not report.problems
        and report.sdk_python_paid == args.articles
        and report.sdk_ts_paid == args.articles
        and report.replays_refused == report.expected_replays
        and report.wallet_paid_sdk_server in (None, args.articles)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
