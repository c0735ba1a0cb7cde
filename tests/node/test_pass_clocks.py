"""A pass bought on one node process is held on every other one sharing the store, whatever their
clocks say (docs/security.md, "Caps and passes: the cap boundary and pass replay"). The store used
to count a pass as held only when it was bought at or before the asking process's `now`, so a
process whose clock was a second behind the seller's sold the same pass again (charged twice) and
charged the list price for reads it covered."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core import ChannelState
from channel_node.core.spending import Pass
from channel_node.node.runtime import PaymentRequest, Runtime
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.store import ChannelWrite, MemoryStore, Pin

KEY = keccak256(b"pass clocks key")
DOMAIN = Domain(1337, b"\x0c" * 20)
RECEIVER = b"\x02" * 20
CONFIG = ChannelConfig.create(b"\x01" * 20, address_of_key(KEY), RECEIVER, None, 3600, 9)
CHANNEL = channel_id(DOMAIN, CONFIG)
DEPOSIT = 10**9
NOW = 1_800_000_000
DAY = Pass("day", 30, 86_400, pattern="/news/*")


@settings(max_examples=60, deadline=None)
@given(
    skew=st.integers(1, 30),
    steps=st.lists(st.tuples(st.integers(0, 1), st.booleans(), st.integers(0, 20)), min_size=2, max_size=12),
    seed=st.integers(0, 2**32),
)
def test_a_pass_is_charged_once_and_covers_on_every_process_whatever_their_clocks(skew, steps, seed):
    """Two processes on one store, one `skew` seconds ahead; requests to either (a purchase or a
    covered read, some time apart, all within the pass's day): the pass is charged once, and no
    read after the purchase is charged."""

    async def run() -> list[int]:
        store = MemoryStore()
        await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
        await store.commit(ChannelWrite(ChannelState(channel_id=CHANNEL, config=CONFIG, deposited=DEPOSIT), 0))
        elapsed = [0]
        offsets = random.Random(seed).sample([0, skew], 2)
        runtimes = [Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, None, close_margin=0,
                            clock=lambda o=o: float(NOW + o + elapsed[0])) for o in offsets]  # fmt: skip
        signature = sign_digest(KEY, voucher_digest(DOMAIN, CHANNEL, DEPOSIT))
        charges = []
        bought = False
        for n, (process, buys, gap) in enumerate(steps):
            elapsed[0] += gap
            buying = DAY if buys or n == 0 else None  # the first request buys the pass
            request = PaymentRequest(CHANNEL, DEPOSIT, signature, f"/news/{n}", 100, True, passes=(DAY,), buying=buying)
            outcome = await runtimes[process].pay(request)
            assert outcome.accepted
            charges.append(outcome.effect.charged)
            bought = True
        assert bought
        return charges

    charges = asyncio.run(run())
    assert charges[0] == DAY.price
    assert charges[1:] == [0] * (len(charges) - 1), "bought once; every later read and purchase is covered"
