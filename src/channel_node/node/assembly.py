"""Assembles a node from its settings: chain checks, store, runtime, paywall application."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from eth_typing import ChecksumAddress
from eth_utils.address import to_canonical_address, to_checksum_address
from web3 import AsyncWeb3
from web3.providers.persistent import PersistentConnectionProvider

from channel_node.amounts import ETH, Asset, token_asset
from channel_node.chain.artifacts import channel_deposit_artifact, exact_batcher_artifact
from channel_node.chain.contract import ChannelDepositClient
from channel_node.chain.eip3009 import Eip3009Token
from channel_node.chain.erc20 import Erc20Client
from channel_node.chain.outbox import OutboxSender
from channel_node.chain.view import Web3ChainView
from channel_node.chain.watcher import Watcher
from channel_node.config import Settings, public_endpoint
from channel_node.core.exact import ExactTerms
from channel_node.errors import ConfigError
from channel_node.insights.recorder import Recorder
from channel_node.node.exact import ExactLimits, ExactSales
from channel_node.node.recovery import SignerRecovery
from channel_node.node.runtime import Runtime
from channel_node.node.settlement import SettlementPolicy
from channel_node.server.admin import add_dashboard_routes, create_admin_app
from channel_node.server.app import Paywall, create_app, make_offer
from channel_node.server.content import ProxySource, StaticSource
from channel_node.server.metrics import Metrics, add_chain_gauges, add_exact_gauges
from channel_node.server.prices import PriceTable, SpendingTable
from channel_node.signing import Domain, address_of_key
from channel_node.signing.eip3009 import TokenDomain
from channel_node.store import Cursor, Pin, Store, store_for
from channel_node.store.lease import Leadership, SoleLeader
from channel_node.store.postgres import PostgresStore
from channel_node.store.postgres_lease import PostgresLease
from channel_node.wire.channel import display_extra

log = structlog.get_logger("channel_node.node")

LEAD_INTERVAL = 1.0  # seconds between renewals of the lease (or attempts to take it)


class NodeConfigError(ConfigError):
    """The node cannot start with this configuration; the message says what to change."""


@dataclass
class Node:
    settings: Settings
    chain_id: int
    domain: Domain
    store: Store
    runtime: Runtime
    paywall: Paywall
    watcher: Watcher
    sender: OutboxSender | None
    policy: SettlementPolicy | None
    admin_app: web.Application | None = None
    insights: Recorder | None = None
    asset: Asset = ETH  # what the channels hold, as people read it (docs/amounts.md)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Who runs the chain side among the processes on this database (store/lease.py); alone on its
    # database (SQLite), this process always does.
    lease: Leadership = field(default_factory=SoleLeader)
    chain_tasks: list[asyncio.Task[None]] = field(default_factory=list)  # the chain side, while leading
    leadership_changes: int = 0  # times this process started or stopped its chain side
    # The paywall's application serves `health` below, so it is made after the node (build_node).
    app: web.Application = field(init=False)

    async def start(self) -> None:
        """Serves payments in every process; follows the chain, sends the outbox and settles only
        while this process leads (docs/scaling.md, "One chain side"). A process that cannot lead at
        start tries again every LEAD_INTERVAL seconds, and stops its chain side at once when it
        loses the lease."""
        if self.insights is not None:
            await self.insights.start()
        if self.sender is not None:
            self.sender.leading = self.lease.still_leading
        if await self.lease.try_lead():
            await self._start_chain_side()
        self.tasks.append(asyncio.create_task(self._keep_leading(), name="leadership"))

    @property
    def leading(self) -> bool:
        """Whether this process leads the chain side now (its tasks run from `start` on)."""
        return self.lease.still_leading()

    async def _start_chain_side(self) -> None:
        if await self.store.cursor() is None:
            await self._place_first_cursor()
        tasks = [asyncio.create_task(self.watcher.run(), name="watcher")]
        if isinstance(self.watcher.w3.provider, PersistentConnectionProvider):
            tasks.append(asyncio.create_task(self.watcher.follow_new_heads(), name="new-heads"))
        if self.sender is not None:
            self.sender.restarted()  # re-broadcasts what an earlier leader left sent
            tasks.append(asyncio.create_task(self.sender.run(), name="outbox-sender"))
        if self.policy is not None:
            tasks.append(asyncio.create_task(self.policy.run(), name="settlement"))
        self.chain_tasks = tasks
        self.leadership_changes += 1
        log.info("chain_side_started", process=self.lease.identity)

    async def _stop_chain_side(self) -> None:
        tasks, self.chain_tasks = self.chain_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            self.leadership_changes += 1

    async def _keep_leading(self) -> None:
        """Renews the lease every LEAD_INTERVAL seconds (or takes it when it is free) and starts or
        stops the chain side to match."""
        while True:
            await asyncio.sleep(LEAD_INTERVAL)
            try:
                leading = await self.lease.try_lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lease that cannot be renewed is lost: never lead on a guess
                log.warning("leadership_check_failed", error=type(exc).__name__)
                leading = False
            if leading and not self.chain_tasks:
                try:
                    await self._start_chain_side()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the chain is unreachable: let another process try, and try again
                    log.warning("chain_side_start_failed", error=f"{type(exc).__name__}: {exc}"[:200])
                    await self._stop_chain_side()
                    await self.lease.release()
            elif not leading and self.chain_tasks:
                log.warning("leadership_lost", process=self.lease.identity, action="chain side stopped")
                await self._stop_chain_side()

    async def _place_first_cursor(self) -> None:
        start = self.settings.watch_from_block
        if start is None:  # a new node watches from now; older channels are learnt from their vouchers
            start = max(0, await self.watcher.w3.eth.block_number - self.settings.confirmations + 1)
            block = await self.watcher.w3.eth.get_block(start)
            await self.store.set_cursor(Cursor(start, bytes(block["hash"])))
        else:
            self.watcher.start_block = start

    async def health(self) -> dict[str, object]:
        problems: list[str] = []
        stats = self.watcher.stats
        leading = self.leading
        if leading:  # a follower's watcher does not run: the leader's health says how the chain side fares
            if stats.last_poll and time.time() - stats.last_poll > 3 * self.settings.poll_interval + 30:
                problems.append("chain_stale")
            if stats.last_error is not None:
                problems.append("chain_unreachable")
            if stats.lag > 2 * self.settings.log_range:
                problems.append("catching_up")
        open_rows = len(await self.store.outbox())
        if self.sender is None and open_rows:
            problems.append("no_claim_key")
        if leading and self.sender is not None and not self.sender.stats.gas_ok:
            problems.append("gas_balance_low")
        leader = await self.lease.leader()
        if leader is None:
            problems.append("no_leader")
        cursor = stats.cursor
        if not leading:
            stored = await self.store.cursor()
            cursor = stored.block if stored is not None else -1
        report: dict[str, object] = {
            "chainId": self.chain_id,
            "contract": self.paywall.offer.contract,
            "receiver": self.paywall.offer.pay_to,
            "head": stats.head,
            "cursor": cursor,
            "lag": stats.lag,
            "outbox": open_rows,
            "problems": problems,
            # docs/scaling.md, "One chain side": whether this process leads, and who does.
            "leader": leading,
            "process": self.lease.identity,
            "leaderProcess": leader.identity if leader is not None else None,
            "leaderSince": int(leader.since) if leader is not None else None,
            "leaderHeartbeat": int(leader.heartbeat) if leader is not None else None,
        }
        if self.sender is not None and leading:
            report["gas"] = {"address": self.sender.address, "balance": str(self.sender.stats.balance),
                             "needed": str(self.sender.stats.needed)}  # fmt: skip
        sales = self.paywall.exact
        if sales is not None:  # x402 exact (docs/protocol.md, "The `exact` scheme (node)")
            report["exact"] = {"inFlight": await self.store.exact_held(), "gasLastHour": sales.gas_last_hour(),
                               "sold": sales.sold, "failed": sales.failed}  # fmt: skip
        return report

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        await self._stop_chain_side()
        try:  # another process takes the chain side over at once
            await self.lease.release()
        except Exception as exc:
            log.warning("lease_release_failed", error=type(exc).__name__)
        if self.runtime.recovery is not None:
            self.runtime.recovery.close()
        if self.insights is not None:
            await self.insights.close()
        await self.store.close()


def leadership_for(store: Store) -> Leadership:
    """Who decides which process runs the chain side (docs/scaling.md, "One chain side"): on
    PostgreSQL an advisory lock among the processes; a database only one process opens leads itself."""
    if isinstance(store, PostgresStore):
        return PostgresLease(store.dsn)
    return SoleLeader()


def claim_key(settings: Settings) -> bytes | None:
    """The key that sends claims: from an encrypted keystore (preferred) or a hex secret."""
    if settings.claim_keystore is not None:
        from channel_node.keys import KeystoreError, load_key, read_password

        try:
            return load_key(settings.claim_keystore, read_password(confirm=False))
        except KeystoreError as exc:
            raise NodeConfigError(str(exc)) from None
    if settings.claim_key is not None:
        raw = settings.claim_key.get_secret_value().removeprefix("0x")
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise NodeConfigError("claim_key must be 32 bytes of hex")  # never echo the value
        return key
    return None


async def check_contract(w3: AsyncWeb3[Any], address: ChecksumAddress, domain: Domain) -> None:
    """Refuses an address without our contract, or one whose EIP-712 domain differs from ours."""
    code = await w3.eth.get_code(address)
    if not code:
        raise NodeConfigError(f"no contract at {address} on chain {domain.chain_id}: deploy one (`channel-node deploy`) "
                              "and set `contract` to its address, or check that rpc_url is the chain it was deployed on")  # fmt: skip
    contract = w3.eth.contract(address=address, abi=channel_deposit_artifact().abi)
    try:
        separator = await contract.functions.domainSeparator().call()
    except Exception as exc:
        raise NodeConfigError(f"{address} is not a ChannelDeposit contract ({type(exc).__name__})") from None
    if separator != domain.separator:
        raise NodeConfigError(f"{address} is not this version of ChannelDeposit (domain separator differs)")


async def read_asset(w3: AsyncWeb3[Any], token: str | None) -> Asset:
    """ETH, or the token's symbol and decimals as its contract answers them (docs/amounts.md)."""
    if token is None:
        return ETH
    address = to_checksum_address(token)
    try:
        symbol, decimals = await Erc20Client(w3, address).metadata()
    except Exception as exc:
        raise NodeConfigError(f"cannot read the symbol and decimals of token {address} ({type(exc).__name__})") from None
    return token_asset(symbol, decimals, address)


def check_local(settings: Settings) -> None:
    """What the node can check before it talks to the chain: the settings it needs and the files it
    reads (docs/operations.md, "When something goes wrong"). Each refusal names the field and the fix."""
    if settings.contract is None:
        raise NodeConfigError("set `contract` (the deployed ChannelDeposit address; `channel-node deploy` prints it)")
    if settings.receiver is None:
        raise NodeConfigError("set `receiver` (the address vouchers pay)")
    folder = settings.paywall.content_dir
    if folder is not None and not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise NodeConfigError(
            f"paywall.content_dir {str(folder)!r} {what}: create it, or point content_dir at the folder of the site's files "
            "(a relative path counts from the directory you start the node in)"
        )
    if settings.claim_keystore is not None and not settings.claim_keystore.is_file():
        raise NodeConfigError(f"claim_keystore {str(settings.claim_keystore)!r} not found: "
                              "create one with `channel-node keys new`, or fix the path")  # fmt: skip
    # The database's folder is created when missing (lockfile.lock_beside): a fresh data folder is normal.


async def build_node(settings: Settings, w3: AsyncWeb3[Any], store: Store | None = None) -> Node:
    check_local(settings)
    assert settings.contract is not None  # check_local refuses a configuration without one
    try:
        chain_id = await w3.eth.chain_id
    except Exception as exc:
        raise NodeConfigError(
            f"cannot reach the chain at rpc_url {public_endpoint(settings.rpc_url)} ({type(exc).__name__}): is it running? "
            "check rpc_url in the configuration or CHANNEL_NODE_RPC_URL"
        ) from None
    contract = to_checksum_address(settings.contract)
    domain = Domain(chain_id, contract)
    await check_contract(w3, contract, domain)
    asset = await read_asset(w3, settings.token)
    if settings.paywall.display is not None:  # the operator's display form, once the decimals are known
        asset = settings.paywall.display.for_asset(asset)
    caps, passes = settings.spending(asset)  # text amounts read in the asset's unit (a SettingsError)

    receiver = settings.receiver_bytes
    if store is None:
        store = store_for(settings.database, settings.sqlite_synchronous)
    await store.open(Pin(chain_id, to_canonical_address(contract), receiver))
    runtime = Runtime(
        store=store,
        domain=domain,
        receiver=receiver,
        token=settings.token_bytes,
        chain=Web3ChainView(w3, contract, settings.confirmations),
        close_margin=settings.close_margin,
        recovery=SignerRecovery() if settings.recovery_thread else None,
        zone=ZoneInfo(settings.paywall.timezone),
    )
    wall = settings.paywall
    source: StaticSource | ProxySource
    if wall.content_dir is not None:
        source = StaticSource(wall.content_dir)
    elif wall.upstream is not None:
        source = ProxySource(wall.upstream, wall.upstream_max_body, wall.upstream_timeout)
    else:  # config.py's PaywallSettings already refuses this
        raise NodeConfigError("set exactly one of paywall.content_dir or paywall.upstream")
    key = claim_key(settings)
    settler = address_of_key(key) if key is not None else None
    # The claim key settles the node's channels: new channels name it receiver authorizer unless it
    # is the receiver's own key, so the receiver's key can stay cold (docs/operations.md).
    runtime.settler = settler
    runtime.close_delay_min = settings.close_delay_min  # the offer's minimum is also the rule
    offer = make_offer(
        chain_id, contract, receiver, settings.token_bytes, settings.min_deposit,
        settings.close_delay_min, settings.close_delay_max,
        receiver_authorizer=settler if settler not in (None, receiver) else None,
    )  # fmt: skip
    offer = replace(offer, display=display_extra(asset))
    paywall = Paywall(
        runtime=runtime,
        prices=PriceTable([rule.to_price() for rule in wall.prices], wall.free),
        source=source,
        offer=offer,
        metrics=Metrics(),
        receiver=receiver,
        token=settings.token_bytes,
        public_url=settings.public_url,
        asset=asset,
        spending=SpendingTable(caps, passes),
    )
    client = ChannelDepositClient(w3, contract)
    watcher = Watcher(
        w3, client, runtime, store, settings.confirmations, block_range=settings.log_range,
        poll_interval=settings.poll_interval, progress=sys.stdout.isatty(),
    )  # fmt: skip
    sender = None
    if key is not None:
        sender = OutboxSender(
            w3, client, store, key, bump_after=settings.fee_bump_after, poll_interval=settings.poll_interval,
            batch_size=settings.claim_batch_size, confirmations=settings.confirmations,
            exact_batcher=None if settings.exact.batch_contract is None else to_canonical_address(settings.exact.batch_contract),
            exact_batch_max=settings.exact.batch_max,
        )  # fmt: skip
    policy = None
    if settings.auto_claim or settings.idle_close_after:
        policy = SettlementPolicy(
            runtime, store, claim_interval=settings.claim_interval,
            claim_min_unclaimed=settings.claim_min_unclaimed if settings.auto_claim else (1 << 256),
            idle_close_after=settings.idle_close_after,
        )  # fmt: skip
    if settings.exact.enabled or any(rule.exact for rule in wall.prices):
        paywall.exact = await build_exact_sales(settings, w3, store, chain_id, sender)
        add_exact_gauges(paywall.metrics, lambda: paywall.exact.held if paywall.exact else 0,
                         paywall.exact.gas_last_hour, sender)  # fmt: skip
    node = Node(settings, chain_id, domain, store, runtime, paywall, watcher, sender, policy, asset=asset,
                lease=leadership_for(store))  # fmt: skip
    runtime.shared = not isinstance(node.lease, SoleLeader)  # other processes write too (docs/scaling.md)
    if key is not None:
        paywall.consent_key = key  # co-signs cooperative closes on channels that accept it (receiver or authorizer)
    add_chain_gauges(paywall.metrics, watcher, sender)
    node.app = create_app(paywall, health=node.health)
    node.admin_app = create_admin_app(node)
    if settings.insights_database is not None:
        recorder = Recorder(settings.insights_database, asset=asset, eth_price=settings.economics.eth_price,
                            gas_price_gwei=settings.economics.gas_price_gwei)  # fmt: skip
        node.insights = paywall.insights = recorder
        if sender is not None:  # what collection costs, beside what it earns (docs/economics.md)
            sender.on_gas = lambda spent: recorder.gas(spent.tx_hash, spent.kind, spent.gas_used, spent.gas_price,
                                                       spent.rows, spent.at)  # fmt: skip
        add_dashboard_routes(node.admin_app, node.insights, asset=asset)
    return node


async def build_exact_sales(
    settings: Settings, w3: AsyncWeb3[Any], store: Store, chain_id: int, sender: OutboxSender | None
) -> ExactSales:
    """The `exact` scheme's sales, after checking the site can sell under it: an EIP-3009 token
    that answers name(), version() and authorizationState() (and, when it has one, a
    DOMAIN_SEPARATOR() equal to the domain those give), and a claim key to pay the transfers' gas.
    Each refusal is one line: the field, its value, the fix."""
    exact = settings.exact
    if settings.token is None:
        raise NodeConfigError(
            "exact.enabled = true: this site is priced in ETH, and exact needs an EIP-3009 token; "
            "set `token` to one, or exact.enabled = false"
        )
    if sender is None:
        raise NodeConfigError(
            "exact.enabled = true: no claim key to pay each sale's transfer gas; set `claim_keystore`, or exact.enabled = false"
        )
    token_address = settings.token_bytes
    token = Eip3009Token(w3, token_address)
    try:
        name, version = await token.name(), await token.version()
        await token.authorization_state(b"\0" * 20, b"\0" * 32)
    except Exception:
        raise NodeConfigError(
            f"token = {to_checksum_address(token_address)}: it does not answer name(), version() and "
            "authorizationState(), so it is not an EIP-3009 token; use one, or set exact.enabled = false"
        ) from None
    domain = TokenDomain(name, version, chain_id, token_address)
    separator = await token.domain_separator()
    if separator is not None and separator != domain.separator:
        raise NodeConfigError(
            f"token = {to_checksum_address(token_address)}: its DOMAIN_SEPARATOR() is not the EIP-712 domain of "
            f"name {name!r}, version {version!r}, chain {chain_id}; exact payments would not verify: set exact.enabled = false"
        )
    if exact.batch_contract is not None:
        # The batcher is one more contract the sales pass through: only our own, byte for byte.
        code = bytes(await w3.eth.get_code(to_checksum_address(exact.batch_contract)))
        if code != bytes.fromhex(exact_batcher_artifact().deployed_bytecode[2:]):
            raise NodeConfigError(
                f"exact.batch_contract = {to_checksum_address(exact.batch_contract)}: its code is not this release's "
                "ExactBatcher (contracts/ExactBatcher.sol); deploy that one (its artifact: ExactBatcher.json), or unset it"
            )
    terms = ExactTerms(domain, settings.receiver_bytes, exact.max_timeout_seconds, exact.settle_margin, exact.min_price)
    limits = ExactLimits(exact.settle_timeout, exact.max_in_flight, exact.max_gas_per_hour, exact.min_gas_balance)
    return ExactSales(w3, store, token, terms, limits, sender, site_wide=exact.enabled)


__all__ = [
    "Node", "NodeConfigError", "build_exact_sales", "build_node", "check_contract", "check_local", "leadership_for", "read_asset",
]  # fmt: skip
