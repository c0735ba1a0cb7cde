"""A pass bought, then its terms changed in the settings (docs/security.md, "Caps and passes: the
cap boundary and pass replay"). The store used to hold a pass by its name only, so a pass whose
pattern or tags were widened (`/news/*` to `/*`), or moved (`/news/*` to `/premium/*`), covered
what the channel never bought. A pass is now recorded under its terms' key
(`core/spending.py:pass_key`): what the old terms did not cover is never free under the new ones,
while a change of price or duration keeps what was bought (not charged twice, until its old end)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core import ChannelState
from channel_node.core.spending import Pass, SaleKind
from channel_node.node.runtime import PaymentRequest, Runtime
from channel_node.server.prices import Price, SpendingTable
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

KEY = keccak256(b"pass terms key")
DOMAIN = Domain(1337, b"\x0c" * 20)
RECEIVER = b"\x02" * 20
CONFIG = ChannelConfig.create(b"\x01" * 20, address_of_key(KEY), RECEIVER, None, 3600, 7)
CHANNEL = channel_id(DOMAIN, CONFIG)
DEPOSIT = 10**9
NOW = 1_800_000_000
PRICE = 100
PATTERNS = ["/news/*", "/*", "/premium/*", "/news/a*", None]
TAGS = [{}, {"section": "news"}, {"section": "premium"}]
PATHS = [("/news/a1", {"section": "news"}), ("/news/b2", {"section": "news"}), ("/premium/a3", {"section": "premium"}),
         ("/premium/x", {}), ("/other/a", {})]  # fmt: skip


def _terms(draw_pattern: int, draw_tags: int) -> tuple[str | None, dict[str, str]]:
    pattern, tags = PATTERNS[draw_pattern], TAGS[draw_tags]
    return (pattern, tags) if pattern is not None or tags else ("/news/*", tags)  # a pass covers something


async def _run(old: Pass, new: Pass, bought_on: tuple[str, dict[str, str]], read: tuple[str, dict[str, str]],
               rebuy: bool) -> tuple[int, SaleKind | None, int]:  # fmt: skip
    store = MemoryStore()
    await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
    await store.commit(ChannelWrite(ChannelState(channel_id=CHANNEL, config=CONFIG, deposited=DEPOSIT), 0))
    clock = [float(NOW)]
    runtime = Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, None, close_margin=0, clock=lambda: clock[0])
    signature = sign_digest(KEY, voucher_digest(DOMAIN, CHANNEL, DEPOSIT))

    def request(table: SpendingTable, path: str, tags: dict[str, str], buying: Pass | None) -> PaymentRequest:
        price = Price(path=path, amount=PRICE, tags=tags)
        covering = table.passes_of((path,), price)
        return PaymentRequest(CHANNEL, DEPOSIT, signature, path, PRICE, True, passes=covering, buying=buying)

    bought = await runtime.pay(request(SpendingTable(passes=[old]), *bought_on, old))
    assert bought.accepted and bought.effect.charged == old.price
    clock[0] += 60  # the settings change; the node restarts (a new runtime, no cache)
    runtime = Runtime(store, DOMAIN, RECEIVER, b"\0" * 20, None, close_margin=0, clock=lambda: clock[0])
    table = SpendingTable(passes=[new])
    target = request(table, read[0], read[1], new if rebuy and new in table.passes_of((read[0],), Price(
        path=read[0], amount=PRICE, tags=read[1])) else None)  # fmt: skip
    outcome = await runtime.pay(target)
    assert outcome.accepted
    sale = outcome.effect.sale
    return outcome.effect.charged, sale.kind if sale is not None else None, target.price


@settings(max_examples=120, deadline=None)
@given(
    old_terms=st.tuples(st.integers(0, len(PATTERNS) - 1), st.integers(0, len(TAGS) - 1)),
    new_terms=st.tuples(st.integers(0, len(PATTERNS) - 1), st.integers(0, len(TAGS) - 1)),
    new_price=st.sampled_from([30, 1, 500]),
    new_duration=st.sampled_from([3600, 86_400]),
    read=st.sampled_from(PATHS),
    rebuy=st.booleans(),
)
def test_a_pass_covers_only_what_it_was_bought_for_after_its_terms_change(old_terms, new_terms, new_price,
                                                                           new_duration, read, rebuy):  # fmt: skip
    old_pattern, old_tags = _terms(*old_terms)
    new_pattern, new_tags = _terms(*new_terms)
    old = Pass("day", 30, 86_400, pattern=old_pattern, tags=old_tags)
    new = Pass("day", new_price, new_duration, pattern=new_pattern, tags=new_tags)
    old_table = SpendingTable(passes=[old])
    covered_by_old = [p for p, tags in PATHS if old_table.passes_of((p,), Price(path=p, amount=PRICE, tags=tags))]
    if not covered_by_old:
        return
    bought_on = next((p, t) for p, t in PATHS if p == covered_by_old[0])
    charged, kind, price = asyncio.run(_run(old, new, bought_on, read, rebuy))
    read_covered_by_old = read[0] in covered_by_old
    same_terms = (old_pattern, old_tags) == (new_pattern, new_tags)
    if charged == 0 and read[0] != bought_on[0]:
        # Free only under a pass the channel bought for this read: the old terms covered it.
        assert read_covered_by_old and kind == SaleKind.PASS_READ, (old, new, read)
    if same_terms and read_covered_by_old and read[0] != bought_on[0]:
        # Only the price or the duration changed: what was bought holds, never charged twice.
        assert charged == 0 and kind == SaleKind.PASS_READ
    if not same_terms and read[0] != bought_on[0]:
        assert charged in (price, new_price if rebuy else price)  # the old pass counts for nothing new


def test_a_pass_moved_to_another_pattern_does_not_open_it():
    """The reported shape: `day` bought for `/news/*`, then set to `/premium/*` under the same name."""
    old = Pass("day", 30, 86_400, pattern="/news/*")
    new = Pass("day", 30, 86_400, pattern="/premium/*")
    charged, kind, price = asyncio.run(_run(old, new, ("/news/a1", {}), ("/premium/a3", {}), False))
    assert charged == price and kind == SaleKind.ARTICLE
