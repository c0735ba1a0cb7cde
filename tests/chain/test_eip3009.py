"""DemoDollar's EIP-3009 transfer authorizations (what x402's `exact` scheme settles with): use,
replay, cancel, the strict validity window, signature rules (signer, low-s, v, domain), the
receive-caller rule, events, and the hostile test token. Signatures come from eth_account's
`encode_typed_data`, independent of our own code; the last test ties signing/eip3009.py to the token."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channel_node.chain.artifacts import demo_dollar_artifact
from channel_node.signing import keccak256, sign_digest
from channel_node.signing.eip712 import SECP256K1_N
from channel_node.signing.eip3009 import (
    TokenDomain,
    TransferAuthorization,
    cancel_authorization_digest,
    sign_authorization,
)
from contract_helpers import deploy_test_contract

GAS = 300_000
FUNDS = 10**12

AUTH_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class Token:
    """A DemoDollar on the session chain, with the payer funded, and eth_account signing helpers."""

    def __init__(self, chain, contract, payer, payee, other):
        self.chain, self.contract, self.payer, self.payee, self.other = chain, contract, payer, payee, other
        self.f = contract.functions

    def domain(self, **override) -> dict:
        domain = {"name": "Demo Dollar", "version": "1", "chainId": self.chain.chain_id,
                  "verifyingContract": self.contract.address}  # fmt: skip
        return {**domain, **override}

    def sign(self, key: bytes, primary: str, message: dict, domain: dict | None = None) -> tuple[int, bytes, bytes]:
        fields = [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
        data = {
            "types": {"EIP712Domain": DOMAIN_FIELDS, primary: fields if primary == "CancelAuthorization" else AUTH_FIELDS},
            "primaryType": primary,
            "domain": domain or self.domain(),
            "message": message,
        }
        signed = Account.sign_message(encode_typed_data(full_message=data), key)
        return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")

    def auth(self, nonce: bytes, value: int = 1000, valid_after: int = 0, valid_before: int = 2**40, to=None) -> dict:
        return {"from": self.payer.address, "to": (to or self.payee).address, "value": value,
                "validAfter": valid_after, "validBefore": valid_before, "nonce": nonce}  # fmt: skip

    def args(self, auth: dict) -> tuple:
        return (auth["from"], auth["to"], auth["value"], auth["validAfter"], auth["validBefore"], auth["nonce"])

    def transfer_call(self, auth: dict, key: bytes | None = None, primary: str = "TransferWithAuthorization", **domain):
        v, r, s = self.sign(key or self.payer.private_key, primary, auth, self.domain(**domain) if domain else None)
        return self.f.transferWithAuthorization(*self.args(auth), v, r, s)

    def balances(self) -> tuple[int, int]:
        return self.f.balanceOf(self.payer.address).call(), self.f.balanceOf(self.payee.address).call()

    def used(self, nonce: bytes) -> bool:
        return self.f.authorizationState(self.payer.address, nonce).call()

    def send(self, call, sender) -> dict:
        return self.chain.transact(call, sender.address, gas=GAS)

    def at(self, timestamp: int) -> None:
        """The next block is mined at exactly `timestamp` (which must not be in the chain's past)."""
        self.chain.tester.time_travel(timestamp)


def revert_reason(call, sender) -> str:
    try:
        call.call({"from": sender.address, "gas": GAS})
    except Exception as exc:  # eth-tester / web3 raise their own revert types
        return str(exc)
    return "<no revert>"


def assert_reverts(token: Token, call, sender, reason: str) -> None:
    """The call reverts with `reason`, and a sent transaction fails and changes no balance or state."""
    assert reason in revert_reason(call, sender)
    before = token.balances()
    receipt = token.send(call, sender)
    assert receipt["status"] == 0
    assert token.balances() == before


_nonce_counter = iter(range(1, 2**62))


def fresh_nonce() -> bytes:
    return keccak256(next(_nonce_counter).to_bytes(8, "big") + os.urandom(8))


@pytest.fixture(scope="module")
def module_token(dev_chain, parties):
    artifact = demo_dollar_artifact()
    contract = dev_chain.deploy(artifact.abi, artifact.bytecode)
    dev_chain.transact(contract.functions.mint(parties.payer.address, FUNDS), parties.deployer.address, gas=GAS)
    return contract


@pytest.fixture
def token(chain, module_token, parties) -> Token:
    return Token(chain, module_token, parties.payer, parties.receiver, parties.other)


def head_time(token: Token) -> int:
    pending = token.chain.tester.get_block_by_number("pending")["timestamp"]
    return max(pending, token.chain.w3.eth.get_block("latest")["timestamp"])


# ------------------------------------------------------------------ use, replay, events


def test_authorized_transfer_moves_value_marks_nonce_and_logs_used_then_transfer(token):
    nonce = fresh_nonce()
    assert token.used(nonce) is False
    before = token.balances()
    receipt = token.send(token.transfer_call(token.auth(nonce, value=1234)), token.other)  # anyone may submit
    assert receipt["status"] == 1
    assert token.balances() == (before[0] - 1234, before[1] + 1234)
    assert token.used(nonce) is True
    used_topic = keccak256(b"AuthorizationUsed(address,bytes32)")
    transfer_topic = keccak256(b"Transfer(address,address,uint256)")
    logs = receipt["logs"]
    assert [bytes(log["topics"][0]) for log in logs] == [used_topic, transfer_topic]
    assert bytes(logs[0]["topics"][1])[-20:] == bytes.fromhex(token.payer.address[2:])
    assert bytes(logs[0]["topics"][2]) == nonce
    used = token.contract.events.AuthorizationUsed().process_receipt(receipt)[0]["args"]
    moved = token.contract.events.Transfer().process_receipt(receipt)[0]["args"]
    assert (used["authorizer"], bytes(used["nonce"])) == (token.payer.address, nonce)
    assert (moved["from"], moved["to"], moved["value"]) == (token.payer.address, token.payee.address, 1234)


def test_replayed_authorization_reverts(token):
    auth = token.auth(fresh_nonce())
    call = token.transfer_call(auth)
    assert token.send(call, token.other)["status"] == 1
    assert_reverts(token, call, token.other, "authorization is used or canceled")
    # the same nonce under a different, validly signed value is just as dead
    assert_reverts(token, token.transfer_call({**auth, "value": 1}), token.other, "authorization is used or canceled")


def test_bytes_signature_overload_and_its_length_check(token):
    auth = token.auth(fresh_nonce(), value=77)
    v, r, s = token.sign(token.payer.private_key, "TransferWithAuthorization", auth)
    for bad in (r + s, r + s + bytes([v]) + b"\0"):
        call = token.f.transferWithAuthorization(*token.args(auth), bad)
        assert_reverts(token, call, token.other, "invalid signature length")
    before = token.balances()
    receipt = token.send(token.f.transferWithAuthorization(*token.args(auth), r + s + bytes([v])), token.other)
    assert receipt["status"] == 1
    assert token.balances() == (before[0] - 77, before[1] + 77)


def test_insufficient_balance_reverts_and_leaves_nonce_unused(token):
    nonce = fresh_nonce()
    call = token.transfer_call(token.auth(nonce, value=FUNDS + 1))
    assert_reverts(token, call, token.other, "DUSD: balance")
    assert token.used(nonce) is False


# ------------------------------------------------------------------ cancel


def test_cancel_then_use_reverts_and_cancel_is_final(token):
    nonce = fresh_nonce()
    v, r, s = token.sign(token.payer.private_key, "CancelAuthorization", {"authorizer": token.payer.address, "nonce": nonce})
    cancel = token.f.cancelAuthorization(token.payer.address, nonce, v, r, s)
    receipt = token.send(cancel, token.other)
    assert receipt["status"] == 1
    event = token.contract.events.AuthorizationCanceled().process_receipt(receipt)[0]["args"]
    assert (event["authorizer"], bytes(event["nonce"])) == (token.payer.address, nonce)
    assert token.used(nonce) is True
    assert_reverts(token, token.transfer_call(token.auth(nonce)), token.other, "authorization is used or canceled")
    assert_reverts(token, cancel, token.other, "authorization is used or canceled")


def test_cancel_needs_the_authorizers_signature_and_an_unused_nonce(token):
    nonce = fresh_nonce()
    message = {"authorizer": token.payer.address, "nonce": nonce}
    v, r, s = token.sign(token.other.private_key, "CancelAuthorization", message)
    assert_reverts(token, token.f.cancelAuthorization(token.payer.address, nonce, v, r, s), token.other, "invalid signature")
    assert token.used(nonce) is False
    # bytes overload, after the nonce was used: refused
    assert token.send(token.transfer_call(token.auth(nonce)), token.other)["status"] == 1
    v, r, s = token.sign(token.payer.private_key, "CancelAuthorization", message)
    call = token.f.cancelAuthorization(token.payer.address, nonce, r + s + bytes([v]))
    assert_reverts(token, call, token.other, "authorization is used or canceled")


# ------------------------------------------------------------------ window


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(after=st.integers(-3, 3), before=st.integers(-3, 3))
def test_window_is_strict_on_both_ends(token, after, before):
    """Valid iff validAfter < block.timestamp < validBefore, at the block the transfer is mined in."""
    when = head_time(token) + 5
    nonce = fresh_nonce()
    call = token.transfer_call(token.auth(nonce, valid_after=max(0, when + after), valid_before=when + before))
    token.at(when)
    receipt = token.send(call, token.other)
    assert token.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == when
    assert receipt["status"] == (1 if after < 0 and before > 0 else 0)
    assert token.used(nonce) is (receipt["status"] == 1)


# ------------------------------------------------------------------ signatures and domain


def test_wrong_signer_or_altered_field_reverts(token):
    auth = token.auth(fresh_nonce(), value=500)
    assert_reverts(token, token.transfer_call(auth, key=token.other.private_key), token.other, "invalid signature")
    v, r, s = token.sign(token.payer.private_key, "TransferWithAuthorization", auth)
    for field, value in (("value", 501), ("to", token.other.address), ("validBefore", 2**40 + 1)):
        altered = {**auth, field: value}
        assert_reverts(token, token.f.transferWithAuthorization(*token.args(altered), v, r, s), token.other, "invalid signature")


def test_high_s_and_noncanonical_v_revert(token):
    auth = token.auth(fresh_nonce())
    v, r, s = token.sign(token.payer.private_key, "TransferWithAuthorization", auth)
    high_s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")  # the same signature's malleable twin
    twin = token.f.transferWithAuthorization(*token.args(auth), 55 - v, r, high_s)
    assert_reverts(token, twin, token.other, "invalid signature")
    for bad_v in (v - 27, 0, 1, 29):
        assert_reverts(token, token.f.transferWithAuthorization(*token.args(auth), bad_v, r, s), token.other, "invalid signature")
    # r = 0 makes ecrecover return address(0): refused even for an authorizer of address(0)
    zero = {**auth, "from": "0x" + "00" * 20}
    assert_reverts(token, token.f.transferWithAuthorization(*token.args(zero), 27, b"\0" * 32, s), token.other, "invalid signature")
    assert token.used(auth["nonce"]) is False


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["name", "version", "chainId", "verifyingContract"]), data=st.data())
def test_signature_for_another_domain_reverts(token, field, data):
    wrong = {
        "name": data.draw(st.sampled_from(["Demo Dolar", "USD Coin", "demo dollar"])),
        "version": data.draw(st.sampled_from(["2", "", "1.0"])),
        "chainId": data.draw(st.sampled_from([1, 31337, token.chain.chain_id + 1])),
        "verifyingContract": token.other.address,
    }[field]
    call = token.transfer_call(token.auth(fresh_nonce()), **{field: wrong})
    assert_reverts(token, call, token.other, "invalid signature")


def test_domain_separator_is_the_one_eth_account_signs_and_permit_still_works(token):
    cancel_types = [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
    signable = encode_typed_data(full_message={
        "types": {"EIP712Domain": DOMAIN_FIELDS, "CancelAuthorization": cancel_types}, "primaryType": "CancelAuthorization",
        "domain": token.domain(), "message": {"authorizer": token.payer.address, "nonce": b"\0" * 32}})  # fmt: skip
    assert bytes(token.f.DOMAIN_SEPARATOR().call()) == signable.header  # EIP-712: header = domain separator
    assert (token.f.name().call(), token.f.version().call(), token.f.decimals().call()) == ("Demo Dollar", "1", 6)
    # EIP-2612 in the same domain
    fields = [{"name": n, "type": t} for n, t in
              (("owner", "address"), ("spender", "address"), ("value", "uint256"), ("nonce", "uint256"), ("deadline", "uint256"))]  # fmt: skip
    message = {"owner": token.payer.address, "spender": token.other.address, "value": 99,
               "nonce": token.f.nonces(token.payer.address).call(), "deadline": 2**40}  # fmt: skip
    data = {"types": {"EIP712Domain": DOMAIN_FIELDS, "Permit": fields}, "primaryType": "Permit",
            "domain": token.domain(), "message": message}  # fmt: skip
    signed = Account.sign_message(encode_typed_data(full_message=data), token.payer.private_key)
    call = token.f.permit(token.payer.address, token.other.address, 99, 2**40, signed.v,
                          signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))  # fmt: skip
    assert token.send(call, token.other)["status"] == 1
    assert token.f.allowance(token.payer.address, token.other.address).call() == 99


# ------------------------------------------------------------------ receiveWithAuthorization


def test_receive_only_by_the_payee_and_not_interchangeable_with_transfer(token):
    auth = token.auth(fresh_nonce(), value=321)
    v, r, s = token.sign(token.payer.private_key, "ReceiveWithAuthorization", auth)
    receive = token.f.receiveWithAuthorization(*token.args(auth), v, r, s)
    assert_reverts(token, receive, token.other, "caller must be the payee")
    assert_reverts(token, receive, token.payer, "caller must be the payee")
    # a receive signature is not a transfer signature (different typehash), and vice versa
    assert_reverts(token, token.f.transferWithAuthorization(*token.args(auth), v, r, s), token.other, "invalid signature")
    tv, tr, ts = token.sign(token.payer.private_key, "TransferWithAuthorization", auth)
    bytes_receive = token.f.receiveWithAuthorization(*token.args(auth), tr + ts + bytes([tv]))
    assert_reverts(token, bytes_receive, token.payee, "invalid signature")
    before = token.balances()
    receipt = token.send(receive, token.payee)
    assert receipt["status"] == 1
    assert token.balances() == (before[0] - 321, before[1] + 321)
    assert len(token.contract.events.AuthorizationUsed().process_receipt(receipt)) == 1
    assert_reverts(token, receive, token.payee, "authorization is used or canceled")


# ------------------------------------------------------------------ hostile test token


@pytest.mark.parametrize("fake_log", [False, True])
def test_hollow_token_reports_success_but_moves_nothing(chain, parties, fake_log):
    """The hostile variant the settlement tests use: the call succeeds and marks the nonce, yet no
    balance changes (with `fake_log`, it even emits a matching Transfer log)."""
    hollow = deploy_test_contract(chain, "HollowAuthorizationToken", fake_log)
    chain.transact(hollow.functions.mint(parties.payer.address, FUNDS), parties.deployer.address, gas=GAS)
    nonce = fresh_nonce()
    call = hollow.functions.transferWithAuthorization(
        parties.payer.address, parties.receiver.address, 1000, 0, 2**40, nonce, 27, b"\1" * 32, b"\1" * 32
    )
    receipt = chain.transact(call, parties.other.address, gas=GAS)
    assert receipt["status"] == 1
    assert hollow.functions.authorizationState(parties.payer.address, nonce).call() is True
    assert hollow.functions.balanceOf(parties.receiver.address).call() == 0
    assert hollow.functions.balanceOf(parties.payer.address).call() == FUNDS
    assert len(hollow.events.Transfer().process_receipt(receipt)) == (1 if fake_log else 0)


# ------------------------------------------------------------------ our signing code on the contract


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.integers(0, 10**6), valid_after=st.integers(0, 10**6), lifetime=st.integers(60, 2**40))
def test_contract_accepts_what_sign_authorization_signs(token, value, valid_after, lifetime):
    """signing/eip3009.py and DemoDollar agree: the digest we sign is the one the token checks."""
    domain = TokenDomain("Demo Dollar", "1", token.chain.chain_id, token.contract.address)
    assert domain.separator == bytes(token.f.DOMAIN_SEPARATOR().call())
    nonce = fresh_nonce()
    valid_after = min(valid_after, head_time(token) - 1)
    auth = TransferAuthorization(token.payer.address, token.payee.address, value, valid_after, head_time(token) + lifetime, nonce)
    signature = sign_authorization(token.payer.private_key, domain, auth)
    before = token.balances()
    call = token.f.transferWithAuthorization(*token.args(token.auth(nonce, value, valid_after, auth.valid_before)), signature)
    assert token.send(call, token.other)["status"] == 1
    assert token.balances() == (before[0] - value, before[1] + value)
    # and a cancel signed with our digest burns a fresh nonce
    other_nonce = fresh_nonce()
    cancel = sign_digest(token.payer.private_key, cancel_authorization_digest(domain, token.payer.address, other_nonce))
    assert token.send(token.f.cancelAuthorization(token.payer.address, other_nonce, cancel), token.other)["status"] == 1
    assert token.used(other_nonce) is True
