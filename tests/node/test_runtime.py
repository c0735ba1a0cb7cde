"""The runtime's joins, over the in-memory store and a scripted chain: discovery, chain failures,
another writer, and hostile payment headers that must never become a 5xx."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core import Accepted, ConsentToClose, Reject
from channel_node.node.runtime import ChainChannel, ChainUnavailable, PaymentRequest, Runtime
from channel_node.signing import (
    ChannelConfig,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.store import ChannelWrite, MemoryStore
from channel_node.wire.channel import Voucher, parse_payment_signature, payment_signature
from channel_node.wire.envelope import ProtocolError, decode_header
from runtime_helpers import DOMAIN, RECEIVER, make_channel, opened

CHANNEL_UNDER_TEST = make_channel(b"runtime test key", 1)
KEY, CONFIG, CHANNEL = CHANNEL_UNDER_TEST.key, CHANNEL_UNDER_TEST.config, CHANNEL_UNDER_TEST.id


class ScriptedChain:
    def __init__(self, channel: ChainChannel | None = None, fail: bool = False):
        self.channel, self.fail, self.calls = channel, fail, 0

    async def confirmed_channel(self, channel_id: bytes) -> ChainChannel | None:
        self.calls += 1
        if self.fail:
            raise ChainUnavailable("rpc down")
        return self.channel


def request(amount: int, resource: str = "/a", key: bytes = KEY, config: ChannelConfig | None = CONFIG) -> PaymentRequest:
    return PaymentRequest(CHANNEL, amount, CHANNEL_UNDER_TEST.sign(amount, key), resource, price=10, once=True, config=config)


async def runtime_with(chain: ScriptedChain) -> Runtime:
    store = await opened(MemoryStore())
    return Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, chain, close_margin=60, clock=lambda: 1000.0)


async def test_first_voucher_discovers_the_channel_on_chain_once():
    chain = ScriptedChain(ChainChannel(deposited=100, claimed=0, close_deadline=None, settled=False))
    runtime = await runtime_with(chain)
    outcome = await runtime.pay(request(10))
    assert outcome.effect == Accepted(charged=10) and outcome.state.deposited == 100
    assert (await runtime.pay(request(20, "/b", config=None))).accepted
    assert chain.calls == 1, "a known channel is served from the store, not the chain"


async def test_unknown_and_forged_channels_cost_at_most_one_chain_call():
    chain = ScriptedChain(None)
    runtime = await runtime_with(chain)
    for _ in range(3):
        assert (await runtime.pay(request(10))).effect.code is Reject.CHANNEL_UNKNOWN
    assert chain.calls == 1, "unknown ids are remembered for a while"
    forged = await runtime.pay(request(10, key=keccak256(b"someone else")))
    assert forged.effect.code is Reject.INVALID_SIGNATURE and chain.calls == 1
    wrong_id = await runtime.pay(request(10, config=make_channel(b"runtime test key", 2).config))
    assert wrong_id.effect.code is Reject.CHANNEL_UNKNOWN and chain.calls == 1


async def test_chain_failure_is_raised_for_a_retry_and_records_nothing():
    runtime = await runtime_with(ScriptedChain(fail=True))
    with pytest.raises(ChainUnavailable):
        await runtime.pay(request(10))
    assert await runtime.store.load_channel(CHANNEL) is None


async def test_another_writer_is_detected_and_nothing_is_charged_twice():
    chain = ScriptedChain(ChainChannel(deposited=100, claimed=0, close_deadline=None, settled=False))
    runtime = await runtime_with(chain)
    await runtime.pay(request(30))  # charged 10, ceiling 30
    stored = await runtime.store.load_channel(CHANNEL)
    # Another process spends the remaining credit behind this runtime's cache.
    from dataclasses import replace

    await runtime.store.commit(ChannelWrite(replace(stored.state, charged=30), stored.version))
    outcome = await runtime.pay(request(30, "/b", config=None))
    assert outcome.effect.code is Reject.STALE_VOUCHER, "the runtime reloaded and saw the credit was gone"
    assert (await runtime.store.load_channel(CHANNEL)).state.charged == 30


# ---------------------------------------------------------------------- hostile headers

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**300), 2**300) | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
VALID = decode_header(payment_signature("eip155:1337", "0x" + "0c" * 20, CHANNEL, 10, CHANNEL_UNDER_TEST.sign(10), "p-1", CONFIG))
PATHS = [("x402Version",), ("accepted",), ("accepted", "scheme"), ("accepted", "network"), ("accepted", "extra"),
         ("payload",), ("payload", "channelId"), ("payload", "maxClaimableAmount"), ("payload", "signature"),
         ("payload", "paymentId"), ("payload", "channel"), ("payload", "channel", "closeDelay"),
         ("payload", "channel", "salt"), ("payload", "channel", "payer")]  # fmt: skip


def encode(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def parse_or_refuse(header: str) -> Voucher | None:
    try:
        return parse_payment_signature(header)
    except ProtocolError as exc:
        assert 400 <= exc.status < 500 and exc.code == "malformed_payment"
        return None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
def test_garbage_headers_are_refused_as_malformed(header):
    assert parse_or_refuse(header) is None


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_a_valid_header_with_any_field_replaced_parses_or_is_refused(path, value):
    document = json.loads(json.dumps(VALID))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    voucher = parse_or_refuse(encode(document))
    if voucher is not None:  # whatever parses is within the types the node works with
        assert 0 <= voucher.amount < 2**128 and len(voucher.channel_id) == 32 and len(voucher.signature) in (64, 65)


@settings(max_examples=60, deadline=None)
@given(named=st.sampled_from(["none", "settler", "other", "receiver"]), settler=st.sampled_from(["receiver", "hot", None]))
def test_the_node_sells_only_on_channels_its_claim_key_can_settle(named, settler):
    """A channel whose configuration does not let the claim key claim and close (as receiver or as
    receiver authorizer), or that names an authorizer the node does not hold (who could consent to
    a cooperative close at nothing with the payer), is refused with wrong_authorizer before anything
    is charged; the same rule decides whether the node may consent to a cooperative close."""
    import asyncio

    from channel_node.signing import cooperative_close_digest

    hot, other = b"\x0a" * 20, b"\x0b" * 20
    settler_address = {"receiver": RECEIVER, "hot": hot, None: None}[settler]
    authorizer = {"none": None, "settler": settler_address or hot, "other": other, "receiver": RECEIVER}[named]
    payer_key = keccak256(b"runtime payer")
    config = ChannelConfig.create(address_of_key(payer_key), address_of_key(KEY), RECEIVER, None, 3600, 1, authorizer)
    cid = channel_id(DOMAIN, config)
    # Every key the contract lets act for the receiver is one the node holds (or the receiver's).
    own = authorizer in (None, RECEIVER) or authorizer == settler_address
    settleable = own and (settler_address is None or config.may_act_for_receiver(settler_address))
    if named == "other" or (named == "settler" and settler is None):
        assert not settleable, "a foreign authorizer is never accepted, whichever key the node holds"

    async def scenario():
        chain = ScriptedChain(ChainChannel(deposited=100, claimed=0, close_deadline=None, settled=False))
        runtime = await runtime_with(chain)
        runtime.settler = settler_address
        signature = sign_digest(KEY, voucher_digest(DOMAIN, cid, 10))
        outcome = await runtime.pay(PaymentRequest(cid, 10, signature, "/a", price=10, once=True, config=config))
        if settleable:
            assert outcome.accepted
        else:
            assert outcome.effect.code is Reject.WRONG_AUTHORIZER and outcome.state is None
            assert await runtime.store.charges(cid) == [] and chain.calls == 0, "refused before any chain read"
            return
        consent = sign_digest(payer_key, cooperative_close_digest(DOMAIN, cid, 10))
        effect = await runtime.cooperative_close(cid, 10, consent, consenter=other)
        if config.may_act_for_receiver(other):
            assert isinstance(effect, ConsentToClose)
            return
        assert effect.code is Reject.CANNOT_CONSENT
        assert not (await runtime.channel(cid)).receiver_closing, "a refused consent records nothing"
        if settler_address is not None:
            assert isinstance(await runtime.cooperative_close(cid, 10, consent, consenter=settler_address), ConsentToClose)

    asyncio.run(scenario())


class OvertakenStore(MemoryStore):
    """Another writer commits to the channel just before this node's next `overtaken` commits."""

    overtaken = 0

    async def commit(self, write: ChannelWrite) -> int:
        if self.overtaken:
            self.overtaken -= 1
            current = await self.load_channel(write.state.channel_id)
            assert current is not None
            await super().commit(ChannelWrite(current.state, current.version))  # the other writer
        return await super().commit(write)


@pytest.mark.parametrize("action", ["claim", "close", "reset", "block"])
async def test_every_write_path_decides_again_after_another_writer(action):
    """The runtime's one write path (`_step`): an overtaken commit (StaleWrite) is decided again
    from a fresh load, for operator actions and chain inputs alike, and the outcome is committed
    once with its outbox row; a reset releases the suspended channel only once durable."""
    from channel_node.core import ContractSendClaim, ContractSendClose, OperatorClaim, OperatorClose
    from channel_node.store import OutboxKind

    store = await opened(OvertakenStore())
    chain = ScriptedChain(ChainChannel(deposited=100, claimed=0, close_deadline=None, settled=False))
    runtime = Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, chain, close_margin=60, clock=lambda: 1000.0)
    assert (await runtime.pay(request(30))).accepted  # charged 10 under a voucher of 30
    store.overtaken = 1
    if action == "claim":
        assert isinstance(await runtime.operator(CHANNEL, OperatorClaim()), ContractSendClaim)
    elif action == "close":
        assert isinstance(await runtime.operator(CHANNEL, OperatorClose()), ContractSendClose)
    elif action == "reset":
        runtime.suspend(CHANNEL)
        await runtime.replace_chain_view(CHANNEL, ChainChannel(100, 0, 5000, False, block=9, block_hash=b"\x09" * 32))
        assert CHANNEL not in runtime.suspended
    else:
        await runtime.replace_chain_view(CHANNEL, ChainChannel(100, 0, 5000, False))
        store.overtaken = 1
        assert await runtime.new_block(4000) == 1
    assert store.overtaken == 0, "the other writer did get in first"
    [row] = await store.outbox()
    assert row.kind is (OutboxKind.CLOSE if action == "close" else OutboxKind.CLAIM) and row.amount == 10
    stored = await store.load_channel(CHANNEL)
    assert stored is not None and stored.state.charged == 10 and stored.state.ceiling == 30


async def test_a_reset_that_cannot_commit_leaves_the_channel_suspended():
    from channel_node.store import StaleWrite

    store = await opened(OvertakenStore())
    chain = ScriptedChain(ChainChannel(deposited=100, claimed=0, close_deadline=None, settled=False))
    runtime = Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, chain, close_margin=60, clock=lambda: 1000.0)
    assert (await runtime.pay(request(30))).accepted
    runtime.suspend(CHANNEL)
    store.overtaken = 10  # every attempt overtaken
    with pytest.raises(StaleWrite):
        await runtime.replace_chain_view(CHANNEL, ChainChannel(100, 0, None, False))
    assert CHANNEL in runtime.suspended, "nothing is sold on figures that were never stored"
