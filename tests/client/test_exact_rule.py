"""The choice between `channel` and `exact` (client/exact.py `choose_scheme`, docs/protocol.md "The
wallet and `exact`"): a pure function, over generated options."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.client.exact import (
    CHANNEL,
    CHANNEL_GAS_ETH,
    CHANNEL_GAS_TOKEN,
    EXACT,
    EXACT_GAS,
    SchemeOptions,
    choose_scheme,
)

GAS = json.loads((Path(__file__).resolve().parents[2] / "docs" / "gas.json").read_text())

options = st.builds(
    SchemeOptions,
    channel=st.booleans(),
    exact=st.booleans(),
    open_channel=st.booleans(),
    visits=st.integers(0, 10**6),
    forced=st.sampled_from([None, CHANNEL, EXACT]),
    channel_gas=st.integers(1, 10**7),
    exact_gas=st.integers(1, 10**6),
)


def test_the_gas_figures_are_those_of_docs_gas_json():
    assert GAS["transfer_with_authorization"] == EXACT_GAS
    assert GAS["open_erc20_permit"] + GAS["close_cooperative"] == CHANNEL_GAS_TOKEN
    assert GAS["open_eth"] + GAS["close_cooperative"] == CHANNEL_GAS_ETH


@settings(max_examples=200, deadline=None)
@given(options)
def test_never_a_scheme_the_site_does_not_offer(o):
    choice = choose_scheme(o)
    assert choice in (None, CHANNEL, EXACT)
    if choice == CHANNEL:
        assert o.channel
    if choice == EXACT:
        assert o.exact
    if o.forced is None and (o.channel or o.exact):
        assert choice is not None  # something payable is always paid


@settings(max_examples=200, deadline=None)
@given(options)
def test_a_forced_scheme_is_that_one_or_none(o):
    if o.forced is None:
        return
    offered = o.channel if o.forced == CHANNEL else o.exact
    assert choose_scheme(o) == (o.forced if offered else None)


@settings(max_examples=200, deadline=None)
@given(options)
def test_an_open_channel_always_wins_unless_forced(o):
    both = SchemeOptions(True, True, True, o.visits, None, o.channel_gas, o.exact_gas)
    assert choose_scheme(both) == CHANNEL


@settings(max_examples=200, deadline=None)
@given(options)
def test_exact_until_the_visits_repay_a_channel_then_channel_for_good(o):
    base = SchemeOptions(True, True, False, o.visits, None, o.channel_gas, o.exact_gas)
    choice = choose_scheme(base)
    assert choice == (CHANNEL if (o.visits + 1) * o.exact_gas >= o.channel_gas else EXACT)
    if choice == CHANNEL:  # monotone: a regular stays a regular
        more = SchemeOptions(True, True, False, o.visits + 1, None, o.channel_gas, o.exact_gas)
        assert choose_scheme(more) == CHANNEL
    # Ski rental: the gas spent by the rule is at most twice the better choice in hindsight, for any
    # number of visits n (each exact visit burns exact_gas, a channel once channel_gas).
    n = min(o.visits, 2000) + 1  # bounded: the loop below walks every visit
    switch = next(k for k in range(n + 1) if k == n or choose_scheme(
        SchemeOptions(True, True, False, k, None, o.channel_gas, o.exact_gas)) == CHANNEL)  # fmt: skip
    spent = switch * o.exact_gas + (o.channel_gas if switch < n else 0)
    assert spent <= 2 * min(n * o.exact_gas, o.channel_gas)


def test_with_the_measured_gas_a_one_off_read_pays_exact_and_the_third_payment_opens_a_channel():
    assert [choose_scheme(SchemeOptions(True, True, visits=v)) for v in range(4)] == [EXACT, EXACT, CHANNEL, CHANNEL]
    # ETH channels are cheaper to open: the second payment opens one.
    eth = [choose_scheme(SchemeOptions(True, True, visits=v, channel_gas=CHANNEL_GAS_ETH)) for v in range(3)]
    assert eth == [EXACT, CHANNEL, CHANNEL]
    assert choose_scheme(SchemeOptions(True, True, visits=50, forced=EXACT)) == EXACT
    assert choose_scheme(SchemeOptions(False, True, visits=50, forced=CHANNEL)) is None
