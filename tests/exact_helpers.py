"""A chain of its own for the x402 `exact` tests: a fresh eth-tester chain that is never time
travelled (the SDK clients date authorizations by wall clock, and the session chain's tests move
chain time ahead of it), with ChannelDeposit, DemoDollar and a funded payer; a node selling under
both schemes on it; and a payer that signs EIP-3009 authorizations the way x402 clients do."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from eth_utils import to_checksum_address

from channel_node.chain.artifacts import demo_dollar_artifact
from channel_node.config import load_settings
from channel_node.dev.devchain import DevAccount, DevChain
from channel_node.node.assembly import Node, build_node
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, sign_authorization
from channel_node.wire.envelope import decode_header
from channel_node.wire.exact import exact_payment_signature
from paywall_helpers import async_web3, write_site

FUNDS = 10**12
PRICE = 1_000


@dataclass
class ExactChain:
    chain: DevChain
    contract: str
    token: object  # web3 Contract (DemoDollar)
    deployer: DevAccount
    receiver: DevAccount
    payer: DevAccount
    other: DevAccount

    @property
    def domain(self) -> TokenDomain:
        return TokenDomain("Demo Dollar", "1", self.chain.chain_id, self.token.address)

    def balance(self, who: str) -> int:
        return self.token.functions.balanceOf(who).call()

    def used(self, payer: str, nonce: bytes) -> bool:
        return self.token.functions.authorizationState(payer, nonce).call()


def make_exact_chain() -> ExactChain:
    chain = DevChain()
    deployer, receiver, payer, other = chain.accounts[:4]
    contract = chain.deploy_channel_deposit()
    artifact = demo_dollar_artifact()
    token = chain.deploy(artifact.abi, artifact.bytecode)
    assert chain.transact(token.functions.mint(payer.address, FUNDS), deployer.address)["status"] == 1
    return ExactChain(chain, contract.address, token, deployer, receiver, payer, other)


@dataclass
class ExactNode:
    node: Node
    client: TestClient
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()
        await self.node.close()


async def start_exact_node(
    world: ExactChain, database: Path, run_sender: bool = True, prices: list[dict] | None = None, **exact
) -> ExactNode:
    exact.setdefault("enabled", True)
    prices = prices or [
        {"path": "/articles/*", "price": PRICE, "description": "an article"},
        {"path": "/api/*", "price": PRICE, "once": False},
    ]  # fmt: skip
    settings = load_settings(
        contract=world.contract, receiver=world.receiver.address, database=database, token=world.token.address,
        claim_key=world.receiver.private_key.hex(), confirmations=1, close_margin=60, poll_interval=0.2,
        exact=exact, paywall={"content_dir": write_site(database.parent / "site"), "prices": prices},
    )  # fmt: skip
    node = await build_node(settings, async_web3(world.chain.tester))
    client = TestClient(TestServer(node.app))
    await client.start_server()
    running = ExactNode(node, client)
    if run_sender:
        assert node.sender is not None
        running.tasks.append(asyncio.create_task(node.sender.run()))
    return running


class ExactPayer:
    """Signs `TransferWithAuthorization`s as the x402 clients do: validAfter 0, validBefore wall
    clock + maxTimeoutSeconds, value = amount, 32 random bytes of nonce, `accepted` echoed."""

    def __init__(self, world: ExactChain, account: DevAccount | None = None):
        self.world = world
        self.account = account or world.payer

    def authorization(self, accepted: dict, **override) -> TransferAuthorization:
        fields = {
            "from_": self.account.address, "to": accepted["payTo"], "value": int(accepted["amount"]),
            "valid_after": 0, "valid_before": int(time.time()) + int(accepted["maxTimeoutSeconds"]),
            "nonce": os.urandom(32),
        }  # fmt: skip
        fields.update(override)
        return TransferAuthorization(**fields)

    def header(self, offer: dict, auth: TransferAuthorization | None = None, key: bytes | None = None,
               domain: TokenDomain | None = None, accepted: dict | None = None) -> str:  # fmt: skip
        entry = accepted or exact_entry(offer)
        auth = auth or self.authorization(entry)
        signature = sign_authorization(key or self.account.private_key, domain or self.world.domain, auth)
        return exact_payment_signature(entry, auth, signature, offer.get("resource"))


def exact_entry(offer: dict) -> dict:
    (entry,) = [e for e in offer["accepts"] if e["scheme"] == "exact"]
    return entry


async def offer_of(client: TestClient, path: str) -> dict:
    response = await client.get(path)
    assert response.status == 402
    return decode_header(response.headers["PAYMENT-REQUIRED"])


def checksum(address: str) -> str:
    return to_checksum_address(address)
