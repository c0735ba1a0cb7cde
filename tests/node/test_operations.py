"""The operator's claims and closes decide their targets in one place (channel_node/node/operations.py).

The class (docs/design.md, "Operations"): a set of channels in every condition (voucherless,
charged, credit only, already claimed, settled, closing by the payer, closing by the receiver)
and an operator command. Whichever way it arrives (through the admin API, on a stopped node
through `cli/channels.Direct`, or as the settlement policy's round), the same channels are chosen
with the same amount (the charged total), and the same JSON comes back. Settled, receiver-closing
and voucherless channels are never among "every channel".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from channel_node.chain.outbox import SenderStats
from channel_node.chain.watcher import WatcherStats
from channel_node.cli.channels import COMMANDS, AdminApi, Direct, OperatorError
from channel_node.core import ChannelState
from channel_node.node.operations import claim_targets, close_targets, settlement_targets
from channel_node.node.runtime import Runtime
from channel_node.node.settlement import SettlementPolicy
from channel_node.server.admin import create_admin_app
from channel_node.signing import ChannelConfig, Domain, keccak256
from channel_node.store import OUTBOX_OPEN, ChannelWrite, MemoryStore, Pin, StoredChannel
from channel_node.store.lease import SoleLeader

TOKEN = "operations-test-token"
DOMAIN = Domain(31337, b"\xc0" * 20)
RECEIVER = keccak256(b"operations receiver")[:20]
CONFIG = ChannelConfig.create(keccak256(b"payer")[:20], keccak256(b"signer")[:20], RECEIVER, None, 3600, 1)
KINDS = ("voucherless", "charged", "credit_only", "claimed_all", "settled", "payer_closing", "receiver_closing")
_ids = itertools.count(1)


@st.composite
def channel_states(draw, kind: str | None = None) -> ChannelState:
    kind = kind or draw(st.sampled_from(KINDS))
    deposited = draw(st.integers(1, 10**6))
    ceiling = 0 if kind == "voucherless" else draw(st.integers(1, deposited))
    charged = 0 if kind in ("voucherless", "credit_only") else draw(st.integers(1, ceiling))
    claimed = charged if kind in ("claimed_all", "settled") else draw(st.integers(0, charged))
    if kind not in ("claimed_all", "settled") and claimed == charged and charged:
        claimed = charged - 1  # something left to claim
    cid = keccak256(b"channel %d" % next(_ids))
    return ChannelState(
        channel_id=cid, config=CONFIG, deposited=deposited, claimed=claimed, ceiling=ceiling,
        signature=b"\x01" * 65 if ceiling else b"", charged=charged,
        close_deadline=1_700_000_000 if kind == "payer_closing" else None,
        settled=kind == "settled", receiver_closing=kind == "receiver_closing",
    )  # fmt: skip


def worlds():
    """A few channels of every kind, always with at least one voucherless and one settled."""
    return st.tuples(
        st.lists(channel_states(), max_size=6), channel_states("voucherless"), channel_states("settled"),
        channel_states("charged"),
    ).map(lambda t: [*t[0], t[1], t[2], t[3]])  # fmt: skip


class FakeSender:
    """Confirms every open row at once (what the real sender and watcher end with)."""

    address = b"\x11" * 20

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.stats = SenderStats()

    async def tick(self) -> None:
        for row in await self.store.outbox(OUTBOX_OPEN):
            await self.store.update_outbox(row.id, status="done")


class FakeEth:
    """The chain reads of an offline `status` (cli/channels.py's Direct.status)."""

    @property
    async def block_number(self) -> int:
        return 100

    async def get_balance(self, address: str) -> int:
        return 10**18


class FakeWatcher:
    def __init__(self) -> None:
        self.stats = WatcherStats()
        self.w3 = argparse.Namespace(eth=FakeEth())

    async def poll(self) -> int:
        return 0


class FakeNode:
    """What the admin API and `Direct` use of a node: settings, store, runtime, health, its workers."""

    def __init__(self, store: MemoryStore) -> None:
        self.settings = argparse.Namespace(admin_token=SecretStr(TOKEN), rpc_url="http://chain.invalid", confirmations=2)
        self.store = store
        self.runtime = Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, chain=None, close_margin=60)
        self.sender = FakeSender(store)
        self.watcher = FakeWatcher()
        self.lease = SoleLeader()  # alone on its database: Direct's work leads the chain side

    async def health(self) -> dict:
        return {"chainId": DOMAIN.chain_id, "problems": []}

    async def close(self) -> None:
        pass


async def seeded(states: list[ChannelState]) -> FakeNode:
    store = MemoryStore()
    await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
    for state in states:
        await store.commit(ChannelWrite(state, 0))
    return FakeNode(store)


def args(**fields) -> argparse.Namespace:
    """The parser's namespace; amounts are typed in base units (`--base-units`), as the channels here hold them."""
    defaults = {"channel": None, "all": False, "min": "1", "status": None, "min_unclaimed": None, "wait": 10.0,
                "base_units": True}  # fmt: skip
    if isinstance(fields.get("min"), int):
        fields["min"] = str(fields["min"])
    return argparse.Namespace(**(defaults | fields))


async def both(api, direct, command: str, namespace: argparse.Namespace):
    """The command's answer through the API and on the stopped node (an error: its one line)."""
    answers = []
    for node in (api, direct):
        try:
            answers.append(await COMMANDS[command](node, namespace))
        except OperatorError as exc:
            answers.append(f"error: {exc}")
    return answers


def hex_of(state: ChannelState) -> str:
    return "0x" + state.channel_id.hex()


@settings(max_examples=40, deadline=None)
@given(states=worlds(), minimum=st.integers(1, 10**6), pick=st.integers(0, 100))
def test_every_command_chooses_the_same_channels_through_the_api_and_on_a_stopped_node(states, minimum, pick):
    async def run() -> None:
        api_node, direct_node = await seeded(states), await seeded(states)
        server = TestServer(create_admin_app(api_node))
        await server.start_server()
        api = AdminApi(str(server.make_url("")), TOKEN, page_size=2)  # several pages even for a few channels
        direct = Direct(direct_node)
        by_id = {s.channel_id: s for s in states}
        try:
            listed = await both(api, direct, "list", args())
            assert listed[0] == listed[1] and len(listed[0]) == len(states)

            # One named channel, whatever its kind (refusals have the same code and message).
            named = states[pick % len(states)]
            for command in ("claim", "close"):
                api_answer, direct_answer = await both(api, direct, command, args(channel=hex_of(named)))
                assert api_answer == direct_answer, command
            if named.ceiling == 0 and not named.settled:  # close <id> of a voucherless channel: refused, not sent
                assert (api_answer["queued"], [r["error"] for r in api_answer["rejected"]]) == (0, ["nothing_to_close"])
            untouched = [s for s in states if s.channel_id != named.channel_id]

            # claim --all --min: the same channels, each for its charged total.
            claimed = await both(api, direct, "claim", args(all=True, min=minimum))
            assert claimed[0] == claimed[1]
            chosen = {c["channelId"]: int(c["amount"]) for c in claimed[0]["channels"]}
            assert set(chosen) == {"0x" + c.hex() for c in claim_targets(untouched, minimum)} - {hex_of(named)}
            for channel, amount in chosen.items():
                state = by_id[bytes.fromhex(channel[2:])]
                assert amount == state.claim_amount == min(state.charged, state.ceiling), "the charged total"
                assert not state.settled and not state.receiver_closing and state.ceiling > 0

            # close --all: the same channels; never a voucherless, settled or receiver-closing one.
            closed = await both(api, direct, "close", args(all=True))
            assert closed[0] == closed[1]
            chosen = {c["channelId"] for c in closed[0]["channels"]}
            expected = {"0x" + c.hex() for c in close_targets(untouched)}
            assert chosen == expected - {hex_of(named)} and closed[0]["rejected"] == []
            for state in states:
                if state.ceiling == 0 or state.settled or state.receiver_closing:
                    assert hex_of(state) not in chosen

            after = await both(api, direct, "list", args())
            assert after[0] == after[1]
            statuses = await both(api, direct, "status", args())
            assert statuses[0] == statuses[1]
            assert [(r.channel_id, r.kind, r.amount) for r in await api_node.store.outbox()] == [
                (r.channel_id, r.kind, r.amount) for r in await direct_node.store.outbox()]  # fmt: skip
        finally:
            await api.close()
            await server.close()

    asyncio.run(run())


@settings(max_examples=40, deadline=None)
@given(states=worlds())
def test_settle_queues_the_same_claims_both_ways_and_waits_for_them(states):
    async def run() -> None:
        api_node, direct_node = await seeded(states), await seeded(states)
        server = TestServer(create_admin_app(api_node))
        await server.start_server()
        api, direct = AdminApi(str(server.make_url("")), TOKEN, page_size=2), Direct(direct_node)
        api.poll_delay = direct.poll_delay = 0.005

        async def running_node() -> None:  # the API's node sends on its own
            while True:
                await api_node.sender.tick()
                await asyncio.sleep(0.002)

        worker = asyncio.create_task(running_node())
        try:
            settled = await both(api, direct, "settle", args(wait=10.0))
            expected = len(claim_targets(states, 1))
            assert settled[0] == settled[1] == {"queued": expected, "open": 0, "abandoned": 0}
            for node in (api_node, direct_node):
                rows = await node.store.outbox(("pending", "sent", "done", "abandoned"))
                assert sorted(r.channel_id for r in rows) == claim_targets(states, 1)
                assert {r.kind for r in rows} <= {"claim"}
        finally:
            worker.cancel()
            await api.close()
            await server.close()

    asyncio.run(run())


@settings(max_examples=60, deadline=None)
@given(states=worlds(), minimum=st.integers(1, 10**6))
def test_the_settlement_policy_makes_the_operators_choice(states, minimum):
    """Auto-claims are `claim --all --min`; idle closes are `close --all` (on idle channels)."""

    async def run() -> None:
        claims_node, claim_all_node = await seeded(states), await seeded(states)
        assert await SettlementPolicy(claims_node.runtime, claims_node.store, claim_min_unclaimed=minimum).tick(0) == (
            len(claim_targets(states, minimum)), 0)  # fmt: skip
        batch = await COMMANDS["claim"](Direct(claim_all_node), args(all=True, min=minimum))
        policy_rows = [(r.channel_id, r.kind, r.amount) for r in await claims_node.store.outbox()]
        assert policy_rows == [(r.channel_id, r.kind, r.amount) for r in await claim_all_node.store.outbox()]
        assert batch["queued"] == len(policy_rows)

        closes_node, close_all_node = await seeded(states), await seeded(states)
        policy = SettlementPolicy(closes_node.runtime, closes_node.store, idle_close_after=0)
        assert await policy.tick(10**10) == (0, len(close_targets(states)))
        await COMMANDS["close"](Direct(close_all_node), args(all=True))
        assert [(r.channel_id, r.kind, r.amount) for r in await closes_node.store.outbox()] == [
            (r.channel_id, r.kind, r.amount) for r in await close_all_node.store.outbox()]  # fmt: skip
        assert await policy.tick(10**10) == (0, 0), "nothing twice: the closes are queued, the channels closing"

    asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(states=st.lists(channel_states(), max_size=12), minimum=st.integers(0, 10**6), now=st.integers(0, 10**6),
       idle=st.one_of(st.none(), st.integers(0, 10**6)), updated=st.lists(st.integers(0, 10**6), min_size=12, max_size=12))
def test_every_channel_never_means_a_voucherless_settled_or_receiver_closing_one(states, minimum, now, idle, updated):
    # `updated` has 12 times, one for each of up to 12 states (strict=False: the surplus is unused).
    stored = [StoredChannel(s, 1, updated_at=t) for s, t in zip(states, updated, strict=False)]
    closes, claims = settlement_targets(stored, [], now, idle, minimum)
    for chosen in (claim_targets(states, minimum), close_targets(states), closes, claims):
        for state in states:
            if state.channel_id in chosen:
                assert state.ceiling > 0 and not state.settled and not state.receiver_closing
    assert set(claims) <= set(claim_targets(states, minimum)) and set(closes) <= set(close_targets(states))
    assert not set(closes) & set(claims), "a channel is closed or claimed, not both"
    for state in states:  # nothing claimable is left out of claim --all
        if not state.settled and not state.receiver_closing and state.unclaimed >= max(1, minimum):
            assert state.channel_id in claim_targets(states, minimum)
        if not state.settled and not state.receiver_closing and state.ceiling > 0:
            assert state.channel_id in close_targets(states)


def test_claim_all_refuses_a_minimum_below_one_both_ways():
    async def run() -> None:
        node = await seeded([])
        with pytest.raises(OperatorError, match="malformed_request: min must be at least 1"):
            await COMMANDS["claim"](Direct(node), args(all=True, min=0))

    asyncio.run(run())
