"""Assembles a node from its settings: chain checks, store, runtime, paywall application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from eth_utils import to_canonical_address, to_checksum_address
from web3 import AsyncWeb3

from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.chain.view import Web3ChainView
from channel_node.config import Settings
from channel_node.recovery import SignerRecovery
from channel_node.runtime import Runtime
from channel_node.server.app import Paywall, create_app, make_offer
from channel_node.server.content import ProxySource, StaticSource
from channel_node.server.metrics import Metrics
from channel_node.server.prices import PriceTable
from channel_node.signing import Domain
from channel_node.store import MemoryStore, Pin, SQLiteStore, Store


class NodeConfigError(Exception):
    """The node cannot start with this configuration; the message says what to change."""


@dataclass
class Node:
    settings: Settings
    chain_id: int
    domain: Domain
    store: Store
    runtime: Runtime
    paywall: Paywall
    app: web.Application

    async def close(self) -> None:
        if self.runtime.recovery is not None:
            self.runtime.recovery.close()
        await self.store.close()


async def check_contract(w3: AsyncWeb3, address: str, domain: Domain) -> None:
    """Refuses an address without our contract, or one whose EIP-712 domain differs from ours."""
    code = await w3.eth.get_code(address)
    if not code:
        raise NodeConfigError(f"no contract at {address} on chain {domain.chain_id}")
    contract = w3.eth.contract(address=address, abi=channel_deposit_artifact().abi)
    try:
        separator = await contract.functions.domainSeparator().call()
    except Exception as exc:
        raise NodeConfigError(f"{address} is not a ChannelDeposit contract ({type(exc).__name__})") from None
    if separator != domain.separator:
        raise NodeConfigError(f"{address} is not this version of ChannelDeposit (domain separator differs)")


async def build_node(settings: Settings, w3: AsyncWeb3, store: Store | None = None) -> Node:
    if settings.contract is None:
        raise NodeConfigError("set `contract` (the deployed ChannelDeposit address)")
    if settings.receiver is None:
        raise NodeConfigError("set `receiver` (the address vouchers pay)")
    try:
        chain_id = await w3.eth.chain_id
    except Exception as exc:
        raise NodeConfigError(f"cannot reach the chain at the configured rpc_url ({type(exc).__name__})") from None
    contract = to_checksum_address(settings.contract)
    domain = Domain(chain_id, contract)
    await check_contract(w3, contract, domain)

    receiver = settings.receiver_bytes
    if store is None:
        store = SQLiteStore(settings.database, settings.sqlite_synchronous)
    await store.open(Pin(chain_id, to_canonical_address(contract), receiver))
    runtime = Runtime(
        store=store,
        domain=domain,
        receiver=receiver,
        token=settings.token_bytes,
        chain=Web3ChainView(w3, contract, settings.confirmations),
        close_margin=settings.close_margin,
        recovery=SignerRecovery() if settings.recovery_thread else None,
    )
    wall = settings.paywall
    source = (
        StaticSource(wall.content_dir)
        if wall.content_dir is not None
        else ProxySource(wall.upstream, wall.upstream_max_body)
    )
    offer = make_offer(
        chain_id, contract, receiver, settings.token_bytes, settings.min_deposit,
        settings.close_delay_min, settings.close_delay_max,
    )  # fmt: skip
    paywall = Paywall(
        runtime=runtime,
        prices=PriceTable([rule.to_price() for rule in wall.prices], wall.free),
        source=source,
        offer=offer,
        metrics=Metrics(),
        receiver=receiver,
        token=settings.token_bytes,
    )
    app = create_app(paywall, health={"chainId": chain_id, "contract": contract, "receiver": offer.pay_to})
    return Node(settings, chain_id, domain, store, runtime, paywall, app)


__all__ = ["MemoryStore", "Node", "NodeConfigError", "build_node", "check_contract"]
