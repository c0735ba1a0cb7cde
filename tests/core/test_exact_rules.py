"""core/exact.py, the rules of an x402 `exact` sale, at every boundary: each refusal code on the
side of its boundary that refuses and the side that accepts, over generated clocks, windows,
values, balances and domains; the first failing rule decides."""

from __future__ import annotations

import os
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core.clocks import ChainTime, WallTime
from channel_node.core.exact import (
    CLOCK_SKEW,
    ExactAccepted,
    ExactFacts,
    ExactRefusal,
    ExactRefused,
    ExactTerms,
    check_exact,
    check_offline,
)
from channel_node.signing import address_of_key, keccak256
from channel_node.signing.eip712 import SECP256K1_N
from channel_node.signing.eip3009 import TokenDomain, TransferAuthorization, sign_authorization
from channel_node.wire.exact import ExactPayment, ExactRequirement

KEY = keccak256(b"exact payer")
PAYER = address_of_key(KEY)
PAY_TO = b"\x70" * 20
TOKEN = b"\x5f" * 20
CHAIN = 31337
DOMAIN = TokenDomain("Demo Dollar", "1", CHAIN, TOKEN)
TERMS = ExactTerms(DOMAIN, PAY_TO, max_timeout_seconds=120, settle_margin=30, min_price=0)
NOW = 1_800_000_000
PRICE = 1_000
EXAMPLES = settings(max_examples=150, deadline=None)


def payment(key: bytes = KEY, domain: TokenDomain = DOMAIN, accepted: dict | None = None, signature: bytes | None = None,
            **fields) -> ExactPayment:  # fmt: skip
    auth = TransferAuthorization(**{
        "from_": PAYER, "to": PAY_TO, "value": PRICE, "valid_after": 0, "valid_before": NOW + 120, "nonce": os.urandom(32),
        **fields,
    })  # fmt: skip
    entry = {"network": f"eip155:{CHAIN}", "chain_id": CHAIN, "amount": PRICE, "asset": TOKEN, "pay_to": PAY_TO,
             "max_timeout_seconds": 120, "name": "Demo Dollar", "version": "1", **(accepted or {})}  # fmt: skip
    sig = signature if signature is not None else sign_authorization(key, domain, auth)
    return ExactPayment(auth, sig, ExactRequirement(**entry), None)


def facts(head: int = NOW, used: bool = False, balance: int = 10**9, held: bool = False) -> ExactFacts:
    return ExactFacts(ChainTime(head), used, balance, held)


def code(verdict) -> ExactRefusal | None:
    return verdict.code if isinstance(verdict, ExactRefused) else None


def test_a_wallet_shaped_payment_is_accepted_and_names_its_payer():
    verdict = check_exact(payment(), TERMS, PRICE, facts(), WallTime(NOW))
    assert verdict == ExactAccepted(PAYER)


@EXAMPLES
@given(chain=st.integers(1, 2**64).filter(lambda c: c != CHAIN), asset=st.binary(min_size=20, max_size=20),
       pay_to=st.binary(min_size=20, max_size=20))  # fmt: skip
def test_another_network_asset_or_receiver_is_refused_first(chain, asset, pay_to):
    assert code(check_offline(payment(accepted={"chain_id": chain}), TERMS, PRICE, WallTime(NOW))) == ExactRefusal.WRONG_NETWORK
    if asset != TOKEN:
        assert code(check_offline(payment(accepted={"asset": asset}), TERMS, PRICE, WallTime(NOW))) == ExactRefusal.WRONG_ASSET
    if pay_to != PAY_TO:
        for p in (payment(to=pay_to), payment(accepted={"pay_to": pay_to})):
            assert code(check_offline(p, TERMS, PRICE, WallTime(NOW))) == ExactRefusal.WRONG_RECEIVER


@EXAMPLES
@given(price=st.integers(1, 10**30), minimum=st.integers(0, 10**30))
def test_a_price_below_the_exact_minimum_is_refused(price, minimum):
    terms = replace(TERMS, min_price=minimum)
    verdict = check_offline(payment(value=price), terms, price, WallTime(NOW))
    assert (code(verdict) == ExactRefusal.PRICE_BELOW_EXACT_MINIMUM) is (price < minimum)


@EXAMPLES
@given(price=st.integers(1, 2**256 - 1), delta=st.integers(-5, 5))
def test_a_value_below_the_price_is_refused_and_at_or_above_it_accepted(price, delta):
    value = min(max(price + delta, 0), 2**256 - 1)
    verdict = check_exact(payment(value=value), TERMS, price, facts(balance=2**256 - 1), WallTime(NOW))
    assert (code(verdict) == ExactRefusal.INSUFFICIENT_VALUE) is (value < price)
    if value >= price:
        assert isinstance(verdict, ExactAccepted)


@EXAMPLES
@given(valid_after=st.integers(0, NOW + 10), head=st.integers(NOW - 100, NOW + 100))
def test_valid_after_must_be_past_on_both_clocks(valid_after, head):
    verdict = check_exact(payment(valid_after=valid_after, valid_before=max(NOW, head) + 100), TERMS, PRICE,
                          facts(head=head), WallTime(NOW))  # fmt: skip
    assert (code(verdict) == ExactRefusal.AUTHORIZATION_NOT_YET_VALID) is (valid_after >= min(NOW, head))


@EXAMPLES
@given(ahead=st.integers(-60, 200), head=st.integers(NOW - 100, NOW + 100), margin=st.integers(0, 60))
def test_valid_before_must_outlast_the_later_clock_by_the_margin(ahead, head, margin):
    terms = replace(TERMS, settle_margin=margin, max_timeout_seconds=10_000)
    valid_before = NOW + ahead
    verdict = check_exact(payment(valid_before=max(valid_before, 0)), terms, PRICE, facts(head=head), WallTime(NOW))
    expires = valid_before < max(NOW, head) + margin
    assert (code(verdict) == ExactRefusal.AUTHORIZATION_EXPIRES) is expires
    if not expires:
        assert isinstance(verdict, ExactAccepted)


@EXAMPLES
@given(extra=st.integers(-10, 2 * CLOCK_SKEW), timeout=st.integers(31, 3600))
def test_an_authorization_valid_for_longer_than_the_offer_is_refused(extra, timeout):
    terms = replace(TERMS, max_timeout_seconds=timeout)
    valid_before = NOW + timeout + extra
    verdict = check_offline(payment(valid_before=valid_before), terms, PRICE, WallTime(NOW))
    assert (code(verdict) == ExactRefusal.AUTHORIZATION_TOO_LONG) is (extra > CLOCK_SKEW)


@EXAMPLES
@given(field=st.sampled_from(["name", "version", "chain_id", "verifying_contract"]), other=st.integers(1, 2**64))
def test_a_signature_in_any_other_domain_is_invalid_even_if_accepted_echoes_that_domain(field, other):
    values = {"name": "Demo Dollar", "version": "1", "chain_id": CHAIN, "verifying_contract": TOKEN}
    values[field] = {"name": f"Other {other}", "version": str(other + 1), "chain_id": CHAIN + other,
                     "verifying_contract": other.to_bytes(20, "big")}[field]  # fmt: skip
    theirs = TokenDomain(values["name"], values["version"], values["chain_id"], values["verifying_contract"])
    # The payer's `accepted` claims their domain's name and version: the node never builds its domain from it.
    p = payment(domain=theirs, accepted={"name": theirs.name, "version": theirs.version})
    assert code(check_offline(p, TERMS, PRICE, WallTime(NOW))) == ExactRefusal.INVALID_SIGNATURE


@EXAMPLES
@given(signature=st.binary(min_size=65, max_size=65))
def test_a_garbled_or_foreign_signature_is_invalid(signature):
    assert code(check_offline(payment(signature=signature), TERMS, PRICE, WallTime(NOW))) == ExactRefusal.INVALID_SIGNATURE


def test_high_s_v_0_1_and_another_signer_are_invalid():
    good = payment()
    r, s, v = good.signature[:32], int.from_bytes(good.signature[32:64], "big"), good.signature[64]
    high = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    for signature in (high, good.signature[:64] + bytes([v - 27]), good.signature[:64]):
        bad = ExactPayment(good.authorization, signature, good.accepted, None)
        assert code(check_offline(bad, TERMS, PRICE, WallTime(NOW))) == ExactRefusal.INVALID_SIGNATURE
    other = payment(key=keccak256(b"someone else"))
    assert code(check_offline(other, TERMS, PRICE, WallTime(NOW))) == ExactRefusal.INVALID_SIGNATURE


@EXAMPLES
@given(used=st.booleans(), held=st.booleans(), balance=st.integers(0, 2 * PRICE))
def test_a_used_or_held_nonce_then_the_balance(used, held, balance):
    verdict = check_exact(payment(), TERMS, PRICE, facts(used=used, held=held, balance=balance), WallTime(NOW))
    if used or held:
        assert code(verdict) == ExactRefusal.AUTHORIZATION_USED
    elif balance < PRICE:
        assert code(verdict) == ExactRefusal.INSUFFICIENT_BALANCE
    else:
        assert isinstance(verdict, ExactAccepted)


def test_the_codes_are_stable_text():
    assert {c.value for c in ExactRefusal} == {
        "wrong_network", "wrong_asset", "wrong_receiver", "price_below_exact_minimum", "insufficient_value",
        "authorization_not_yet_valid", "authorization_expires", "authorization_too_long", "invalid_signature",
        "authorization_used", "insufficient_balance",
    }  # fmt: skip
