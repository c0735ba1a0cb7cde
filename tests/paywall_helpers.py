"""Running a paywall node in-process over the session's eth-tester chain, and paying it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from channel_node.config import load_settings
from channel_node.node.assembly import Node, build_node
from channel_node.signing import ChannelConfig
from channel_node.wire.channel import payment_signature
from channel_node.wire.envelope import decode_header

PRICE = 1_000
ARTICLES = {f"/articles/{n}.html": f"<h1>Article {n}</h1>" for n in range(1, 6)}


def write_site(root: Path) -> Path:
    (root / "articles").mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text("<h1>Front page</h1>")
    for path, text in ARTICLES.items():
        (root / path.lstrip("/")).write_text(text)
    (root / "api").mkdir(exist_ok=True)
    for name in ["quote", "other", *(f"item-{n}" for n in range(50))]:
        (root / "api" / name).write_text(f'{{"item": "{name}"}}')
    return root


def async_web3(tester) -> AsyncWeb3:
    """An AsyncWeb3 on the same in-process chain as the sync test fixtures."""
    provider = AsyncEthereumTesterProvider()
    provider.ethereum_tester = tester
    return AsyncWeb3(provider)


def node_settings(
    contract: str, receiver: str, database: Path, token: str | None = None, claim_key: str | None = None, **paywall
):
    paywall.setdefault("prices", [
        {"path": "/articles/*", "price": PRICE, "description": "an article", "tags": {"section": "news"}},
        {"path": "/api/*", "price": PRICE, "once": False},
    ])  # fmt: skip
    paywall.setdefault("free", ["/articles/index.html"])
    return load_settings(
        contract=contract, receiver=receiver, database=database, token=token, claim_key=claim_key, confirmations=1, close_margin=60,
        paywall=paywall,
    )  # fmt: skip


DAY = 86_400
# Mid-December, UTC: the month ends at 2027-01-01T00:00Z (caps and passes, docs/protocol.md).
NOW = int(datetime(2026, 12, 10, 12, tzinfo=UTC).timestamp())
NEXT_MONTH = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())


class Clock:
    """One wall clock for the node's rules (and a wallet's budgets and passes), moved by the test."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


@dataclass
class RunningNode:
    node: Node
    client: TestClient
    clock: Clock | None = None

    async def stop(self) -> None:
        await self.client.close()
        await self.node.close()


async def start_node(tester, settings) -> RunningNode:
    node = await build_node(settings, async_web3(tester))
    client = TestClient(TestServer(node.app))
    await client.start_server()
    return RunningNode(node, client)


async def start_clocked_node(tester, contract: str, receiver: str, folder: Path, articles: int, **paywall) -> RunningNode:
    """A node on write_site's site with articles 6 to `articles` added, its runtime on a Clock at NOW
    (`running.clock.now = ...` moves it); `paywall` as node_settings."""
    site = write_site(folder / "site")
    for n in range(6, articles + 1):
        (site / "articles" / f"{n}.html").write_text(f"<h1>Article {n}</h1>")
    node = await start_node(tester, node_settings(contract, receiver, folder / "node.db", content_dir=site, **paywall))
    node.clock = Clock(NOW)
    node.node.runtime.clock = node.clock
    return node


class Payer:
    """Signs vouchers for one channel the way a wallet would (cumulative ceilings)."""

    def __init__(self, channels, config: ChannelConfig):
        self.channels = channels
        self.config = config
        self.id = channels.id(config)
        self.network = f"eip155:{channels.chain.chain_id}"

    def header(self, amount: int, payment_id: str | None = None, key: bytes | None = None, with_config: bool = True,
               network: str | None = None, contract: str | None = None, pass_name: str | None = None) -> str:  # fmt: skip
        return payment_signature(
            network or self.network,
            contract or self.channels.contract.address,
            self.id,
            amount,
            self.channels.signature(self.config, amount, key),
            payment_id,
            self.config if with_config else None,
            pass_name,
        )


def receipt(response) -> dict:
    return decode_header(response.headers["PAYMENT-RESPONSE"])


async def refusal(response) -> tuple[int, str, dict]:
    body = await response.json()
    assert decode_header(response.headers["PAYMENT-REQUIRED"]) == body, "header and body carry the same JSON"
    return response.status, body["error"], body


