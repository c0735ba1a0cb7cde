"""Shared fixtures: one in-process chain per session, rolled back to a snapshot after every test."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

import pytest
from eth_utils import to_checksum_address

from channel_node import logs
from channel_node.dev.devchain import DevAccount, DevChain
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    to_compact,
    voucher_digest,
)

# Each log line goes out when it is logged, into the output captured for the test that logged it.
logs.set_buffering(False)

HOUR = 3600
ETH = 10**18
ZERO_ADDRESS = "0x" + "00" * 20


@pytest.fixture(scope="session")
def dev_chain() -> DevChain:
    return DevChain()


@pytest.fixture(scope="session")
def deployed(dev_chain: DevChain):
    """The ChannelDeposit contract, deployed once per session (uncapped)."""
    return dev_chain.deploy_channel_deposit()


@pytest.fixture
def chain(dev_chain: DevChain, deployed):
    """The session chain with the contract deployed; every test's changes are rolled back."""
    snapshot = dev_chain.tester.take_snapshot()
    yield dev_chain
    dev_chain.tester.revert_to_snapshot(snapshot)


@dataclass
class Parties:
    deployer: DevAccount
    receiver: DevAccount
    payer: DevAccount
    other: DevAccount
    voucher_key: bytes

    @property
    def voucher_signer(self) -> str:
        return to_checksum_address(address_of_key(self.voucher_key))


@pytest.fixture(scope="session")
def parties(dev_chain: DevChain) -> Parties:
    a = dev_chain.accounts
    return Parties(deployer=a[0], receiver=a[1], payer=a[2], other=a[3], voucher_key=keccak256(b"test voucher key"))


class Channels:
    """Opens channels on the deployed contract and signs vouchers for them."""

    _salts = itertools.count(1)

    def __init__(self, chain: DevChain, contract, parties: Parties):
        self.chain = chain
        self.contract = contract
        self.parties = parties
        self.domain = Domain(chain.chain_id, contract.address)

    def config(self, token: str | None = None, close_delay: int = HOUR, payer: DevAccount | None = None, **kw) -> ChannelConfig:
        return ChannelConfig.create(
            payer=kw.get("payer_address", (payer or self.parties.payer).address),
            signer=kw.get("signer", self.parties.voucher_signer),
            receiver=kw.get("receiver", self.parties.receiver.address),
            token=token,
            close_delay=close_delay,
            salt=kw.get("salt", next(self._salts)),
            receiver_authorizer=kw.get("receiver_authorizer"),
        )

    def id(self, config: ChannelConfig) -> bytes:
        return channel_id(self.domain, config)

    def open_eth(self, amount: int = ETH, config: ChannelConfig | None = None, sender: DevAccount | None = None):
        config = config or self.config()
        receipt = self.chain.transact(
            self.contract.functions.depositEth(config.as_abi_tuple()), (sender or self.parties.payer).address, value=amount
        )
        assert receipt["status"] == 1, "depositEth reverted"
        return config

    def voucher(self, config: ChannelConfig, amount: int, key: bytes | None = None) -> tuple[bytes, bytes]:
        """Compact (r, vs) voucher signature, as the contract's claim functions take it."""
        return to_compact(self.signature(config, amount, key))

    def signature(self, config: ChannelConfig, amount: int, key: bytes | None = None) -> bytes:
        digest = voucher_digest(self.domain, self.id(config), amount)
        return sign_digest(key or self.parties.voucher_key, digest)

    def state(self, config: ChannelConfig) -> tuple[int, int, int, bool]:
        return self.contract.functions.getChannel(self.id(config)).call()


@pytest.fixture
def channels(chain: DevChain, deployed, parties: Parties) -> Channels:
    return Channels(chain, deployed, parties)



# ---------------------------------------------------------------------- stores: SQLite and PostgreSQL
#
# The store suites (tests/store/) run once per kind through `stores` (memory, sqlite, postgres) or
# `durable_stores` (sqlite, postgres).
# PostgreSQL is started once per session only when a test asks for it (tests/postgres.py).


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session (tests/postgres.py). Missing PostgreSQL skips locally, but
    fails under CI=true (postgres.py:unavailable)."""
    from postgres import PostgresMissing, start_postgres, unavailable

    try:
        server = start_postgres()
    except PostgresMissing as exc:
        unavailable(exc)
    yield server
    server.stop()


@pytest.fixture
async def postgres_dsn(postgres) -> str:
    """A new empty schema of the session's server, as a DSN (new_schema: faster than a database)."""
    return await postgres.new_schema()


class StoreMaker:
    """Makes unopened stores of one kind, each on a new database (`new`), or another store on the
    database of one made before (`again`: a restart, or a second process)."""

    def __init__(self, kind: str, tmp_path_factory, postgres=None) -> None:
        self.kind = kind
        self._tmp = tmp_path_factory
        self._postgres = postgres

    async def new(self):
        from channel_node.store import MemoryStore, PostgresStore, SQLiteStore

        if self.kind == "memory":
            return MemoryStore()
        if self.kind == "sqlite":
            return SQLiteStore(self._tmp.mktemp("db") / "node.db")
        return PostgresStore(await self._postgres.new_schema())

    def again(self, store):
        from channel_node.store import PostgresStore, SQLiteStore

        if isinstance(store, SQLiteStore):
            return SQLiteStore(store.path)
        if isinstance(store, PostgresStore):
            return PostgresStore(store.dsn)
        return store  # a MemoryStore is its own database

    async def opened(self, pin):
        store = await self.new()
        await store.open(pin)
        return store


def _maker(kind: str, request, tmp_path_factory) -> StoreMaker:
    server = request.getfixturevalue("postgres") if kind == "postgres" else None
    return StoreMaker(kind, tmp_path_factory, server)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def stores(request, tmp_path_factory) -> StoreMaker:
    """Every store: the contract all of them honour."""
    return _maker(request.param, request, tmp_path_factory)


@pytest.fixture(params=["sqlite", "postgres"])
def durable_stores(request, tmp_path_factory) -> StoreMaker:
    """The stores that keep their data across a restart and commit in groups."""
    return _maker(request.param, request, tmp_path_factory)
