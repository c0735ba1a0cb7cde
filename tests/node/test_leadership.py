"""One chain side among the processes on a database (docs/scaling.md, "One chain side"): the node
runs its watcher, sender and settlement only while its lease says it leads, starts them when it
takes the lease, stops them at once when it loses it, and its sender records no transaction while
it does not lead. Every process serves payments either way; `/healthz` says who leads."""

from __future__ import annotations

import asyncio

import pytest

from channel_node.config import load_settings
from channel_node.core import ContractSendClaim, OperatorClaim
from channel_node.node import assembly
from channel_node.server.admin import status_document
from channel_node.store import OutboxStatus
from channel_node.store.lease import LeaderInfo
from paywall_helpers import PRICE, Payer, start_node, write_site


class SwitchedLease:
    """A lease the test hands out and takes back: `other` leads whenever this process does not."""

    def __init__(self, leading: bool) -> None:
        self.identity = "this-host:1"
        self.leading = leading
        self.other = "other-host:2"

    async def try_lead(self) -> bool:
        return self.leading

    def still_leading(self) -> bool:
        return self.leading

    async def leader(self) -> LeaderInfo | None:
        return LeaderInfo(self.identity if self.leading else self.other, 1.0, 2.0)

    async def release(self) -> None:
        self.leading = False


async def until(predicate, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


@pytest.fixture
def fast_leadership(monkeypatch):
    monkeypatch.setattr(assembly, "LEAD_INTERVAL", 0.05)


async def test_the_chain_side_runs_only_while_leading_and_payments_are_served_either_way(
    chain, deployed, parties, channels, tmp_path, fast_leadership
):
    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db", confirmations=1,
        claim_key=parties.receiver.private_key.hex(), poll_interval=0.05,
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    running = await start_node(chain.tester, settings)
    node = running.node
    lease = node.lease = SwitchedLease(leading=False)
    try:
        await node.start()
        assert node.chain_tasks == [] and await node.store.cursor() is None, "a follower places no cursor"
        health = await (await running.client.get("/healthz")).json()
        assert (health["leader"], health["process"], health["leaderProcess"]) == (False, "this-host:1", "other-host:2")
        payer = Payer(channels, channels.open_eth(10 * PRICE, channels.config()))
        paid = await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
        assert paid.status == 200, "a follower serves payments"

        lease.leading = True  # the leader died: this process takes the lease
        await until(lambda: len(node.chain_tasks) >= 2)
        await until(lambda: node.watcher.stats.last_poll > 0)
        assert await node.store.cursor() is not None, "the new leader places the cursor and follows the chain"
        health = await (await running.client.get("/healthz")).json()
        assert (health["leader"], health["leaderProcess"]) == (True, "this-host:1")
        status = await status_document(node)  # what `channel-node status` prints
        assert (status["leader"], status["process"], status["leaderProcess"]) == (True, "this-host:1", "this-host:1")

        lease.leading = False  # lost (its connection dropped): everything of the chain side stops
        await until(lambda: node.chain_tasks == [])
        assert node.leadership_changes == 2
        paid = await running.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": payer.header(2 * PRICE)})
        assert paid.status == 200
    finally:
        await running.stop()


async def test_a_sender_that_no_longer_leads_records_and_broadcasts_nothing(chain, deployed, parties, channels, tmp_path):
    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db", confirmations=1,
        claim_key=parties.receiver.private_key.hex(),
        paywall={"content_dir": write_site(tmp_path / "site"), "prices": [{"path": "/articles/*", "price": PRICE}]},
    )  # fmt: skip
    running = await start_node(chain.tester, settings)
    node = running.node
    try:
        payer = Payer(channels, channels.open_eth(10 * PRICE, channels.config()))
        paid = await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
        assert paid.status == 200
        queued = await node.runtime.operator(payer.id, OperatorClaim())
        assert isinstance(queued, ContractSendClaim)
        lease = SwitchedLease(leading=False)
        node.sender.leading = lease.still_leading
        await node.sender.tick()
        [row] = await node.store.outbox()
        assert (row.status, row.tx_hash, row.attempts) == (OutboxStatus.PENDING, None, 0), "nothing recorded"
        assert node.sender.stats.sent == 0, "nothing broadcast"
        lease.leading = True
        await node.sender.tick()
        [row] = await node.store.outbox()
        assert row.status == OutboxStatus.SENT and row.attempts == 1
    finally:
        await running.stop()
