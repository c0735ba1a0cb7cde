"""ChannelDeposit: every operation's happy path and revert paths, replay, signatures, hostile tokens
and hostile recipients. Balances and state are asserted exactly."""

from __future__ import annotations

import ast

import pytest
from eth_utils import to_checksum_address

from channel_node.signing import (
    ChannelConfig,
    Domain,
    channel_id,
    cooperative_close_digest,
    keccak256,
    sign_digest,
    to_compact,
    voucher_digest,
)
from channel_node.signing.eip712 import SECP256K1_N
from conftest import ETH, HOUR, ZERO_ADDRESS
from contract_helpers import deploy_test_contract, sign_permit

GAS = 3_000_000
UNIT = 10**15


# ------------------------------------------------------------------ helpers


def error_selector(contract, name: str) -> bytes:
    entry = next(e for e in contract.abi if e["type"] == "error" and e["name"] == name)
    return keccak256(f"{name}({','.join(i['type'] for i in entry['inputs'])})".encode())[:4]


def revert_data(call, sender: str, value: int = 0) -> bytes:
    try:
        call.call({"from": sender, "value": value})
    except Exception as exc:  # eth-tester: "execution reverted: b'...'"
        message = str(exc.args[0]) if exc.args else str(exc)
        raw = message.split("execution reverted: ", 1)[-1]
        return ast.literal_eval(raw) if raw.startswith("b") else b""
    return b"<no revert>"


def expect_revert(chain, call, sender, error: str | None, value: int = 0) -> None:
    """The call reverts with the named custom error (None: an empty revert), and a sent transaction fails."""
    data = revert_data(call, sender.address, value)
    expected = error_selector(call.contract_abi_holder, error) if error else b""
    assert data[:4] == expected, f"expected {error}, got {data!r}"
    receipt = chain.transact(call, sender.address, value=value, gas=GAS)
    assert receipt["status"] == 0


def send(chain, call, sender, value: int = 0) -> dict:
    receipt = chain.transact(call, sender.address, value=value, gas=GAS)
    assert receipt["status"] == 1, f"{call.fn_name} reverted"
    return receipt


def events(contract, receipt, name: str) -> list[dict]:
    return [dict(e["args"]) for e in getattr(contract.events, name)().process_receipt(receipt)]


def balance(chain, address: str) -> int:
    return chain.w3.eth.get_balance(address)


def gas_cost(receipt) -> int:
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]


@pytest.fixture
def f(deployed):
    # Let expect_revert find the ABI from a bound call.
    for _fn in deployed.all_functions():
        pass
    return deployed.functions


@pytest.fixture(autouse=True)
def _abi_on_calls(deployed, monkeypatch):
    from web3.contract.contract import ContractFunction

    monkeypatch.setattr(ContractFunction, "contract_abi_holder", property(lambda self: self), raising=False)


def err(contract, call, sender, error, chain, value=0):
    data = revert_data(call, sender.address, value)
    assert data[:4] == error_selector(contract, error), f"expected {error}, got {data!r}"
    assert chain.transact(call, sender.address, value=value, gas=GAS)["status"] == 0


def token_config(channels, token, **kw) -> ChannelConfig:
    return channels.config(token=token.address, **kw)


def fund_token(chain, token, owner, spender: str, amount: int = 10**24) -> None:
    send(chain, token.functions.mint(owner.address, amount), owner)
    send(chain, token.functions.approve(spender, 2**256 - 1), owner)


# ------------------------------------------------------------------ deposits


def test_open_and_top_up_eth(chain, deployed, channels, parties):
    config = channels.config()
    receipt = send(chain, deployed.functions.depositEth(config.as_abi_tuple()), parties.payer, ETH)
    (opened,) = events(deployed, receipt, "ChannelOpened")
    assert opened == {
        "channelId": channels.id(config), "payer": parties.payer.address, "receiver": parties.receiver.address,
        "signer": parties.voucher_signer, "token": ZERO_ADDRESS, "closeDelay": HOUR, "salt": config.salt,
        "receiverAuthorizer": ZERO_ADDRESS, "deposited": ETH,
    }
    receipt = send(chain, deployed.functions.depositEth(config.as_abi_tuple()), parties.other, ETH // 2)
    assert events(deployed, receipt, "ChannelDeposited") == [
        {"channelId": channels.id(config), "amount": ETH // 2, "totalDeposited": ETH * 3 // 2}
    ]
    assert channels.state(config) == [ETH * 3 // 2, 0, 0, False]
    assert balance(chain, deployed.address) == ETH * 3 // 2


def test_open_rejects_bad_configs(chain, deployed, channels, parties):
    f = deployed.functions
    cases = [
        channels.config(payer_address=ZERO_ADDRESS),
        channels.config(signer=ZERO_ADDRESS),
        channels.config(receiver=ZERO_ADDRESS),
        channels.config(close_delay=15 * 60 - 1),
        channels.config(close_delay=30 * 86400 + 1),
    ]
    for config in cases:
        err(deployed, f.depositEth(config.as_abi_tuple()), parties.payer, "InvalidConfig", chain, ETH)
    for delay in (15 * 60, 30 * 86400):  # the bounds themselves are allowed
        channels.open_eth(config=channels.config(close_delay=delay))
    err(deployed, f.depositEth(channels.config().as_abi_tuple()), parties.payer, "ZeroDeposit", chain, 0)


def test_wrong_asset_and_deposit_limit(chain, dev_chain, deployed, channels, parties):
    token = deploy_test_contract(chain, "TestToken", "T")
    f = deployed.functions
    err(deployed, f.depositEth(token_config(channels, token).as_abi_tuple()), parties.payer, "WrongValue", chain, ETH)
    err(deployed, f.depositToken(channels.config().as_abi_tuple(), ETH), parties.payer, "WrongValue", chain)
    capped = dev_chain.deploy_channel_deposit(max_deposit_per_channel=ETH)
    config = channels.config()
    send(chain, capped.functions.depositEth(config.as_abi_tuple()), parties.payer, ETH)
    err(capped, capped.functions.depositEth(config.as_abi_tuple()), parties.payer, "DepositLimitExceeded", chain, 1)


def test_non_canonical_config_encoding_reverts(chain, deployed, channels, parties):
    config = channels.config()
    data = bytearray(bytes.fromhex(deployed.encode_abi("depositEth", [config.as_abi_tuple()])[2:]))
    data[4 + 32 * 5 + 10] = 0xFF  # a dirty high byte in the uint96 salt word
    tx = {"from": parties.payer.address, "to": deployed.address, "data": bytes(data), "value": ETH, "gas": GAS}
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(tx))
    assert receipt["status"] == 0


def test_token_open_top_up_and_fee_on_transfer(chain, deployed, channels, parties):
    token = deploy_test_contract(chain, "TestToken", "T")
    fund_token(chain, token, parties.payer, deployed.address)
    config = token_config(channels, token)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 500), parties.payer)
    assert channels.state(config)[0] == 1500
    assert token.functions.balanceOf(deployed.address).call() == 1500

    fee_token = deploy_test_contract(chain, "FeeToken", 100)  # 1%
    fund_token(chain, fee_token, parties.payer, deployed.address)
    config = token_config(channels, fee_token)
    receipt = send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 10_000), parties.payer)
    assert events(deployed, receipt, "ChannelOpened")[0]["deposited"] == 9_900
    assert channels.state(config)[0] == 9_900 == fee_token.functions.balanceOf(deployed.address).call()
    # payouts stay solvent: the receiver closes with a voucher for everything credited
    send(chain, deployed.functions.closeByReceiver(config.as_abi_tuple(), 9_900, 9_900, *channels.voucher(config, 9_900)), parties.receiver)
    assert fee_token.functions.balanceOf(parties.receiver.address).call() == 9_801  # the token takes its fee again


def test_no_return_and_false_returning_tokens(chain, deployed, channels, parties):
    quiet = deploy_test_contract(chain, "NoReturnToken")
    send(chain, quiet.functions.mint(parties.payer.address, 10**6), parties.payer)
    send(chain, quiet.functions.approve(deployed.address, 10**6), parties.payer)
    config = token_config(channels, quiet)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer)
    send(chain, deployed.functions.claim(config.as_abi_tuple(), 400, 400, *channels.voucher(config, 400)), parties.receiver)
    assert quiet.functions.balanceOf(parties.receiver.address).call() == 400
    err(deployed, deployed.functions.depositToken(config.as_abi_tuple(), 10**7), parties.payer, "TokenTransferFailed", chain)

    liar = deploy_test_contract(chain, "FalseToken")
    fund_token(chain, liar, parties.payer, deployed.address)
    config = token_config(channels, liar)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer)
    send(chain, liar.functions.setFailing(True), parties.payer)
    err(deployed, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer, "TokenTransferFailed", chain)
    # a payout the token refuses is deferred, never lost, and the claim still counts
    receipt = send(chain, deployed.functions.claim(config.as_abi_tuple(), 300, 300, *channels.voucher(config, 300)), parties.receiver)
    assert events(deployed, receipt, "PayoutDeferred") == [{"token": liar.address, "account": parties.receiver.address, "amount": 300}]
    assert deployed.functions.pendingPayouts(liar.address, parties.receiver.address).call() == 300
    err(deployed, deployed.functions.withdrawPending(liar.address, parties.receiver.address), parties.receiver, "TokenTransferFailed", chain)
    send(chain, liar.functions.setFailing(False), parties.payer)
    send(chain, deployed.functions.withdrawPending(liar.address, parties.other.address), parties.receiver)
    assert liar.functions.balanceOf(parties.other.address).call() == 300
    err(deployed, deployed.functions.withdrawPending(liar.address, parties.other.address), parties.receiver, "NothingPending", chain)


def test_permit_open_and_front_run_permit(chain, deployed, channels, parties):
    token = deploy_test_contract(chain, "TestToken", "Permit Token")
    send(chain, token.functions.mint(parties.payer.address, 10**6), parties.payer)
    config = token_config(channels, token)
    r, vs = sign_permit(token, parties.payer, deployed.address, 1000, 2**40)
    send(chain, deployed.functions.depositTokenWithPermit(config.as_abi_tuple(), 1000, 2**40, r, vs), parties.payer)
    assert channels.state(config)[0] == 1000
    # someone front-runs the permit itself: the deposit still goes through on the allowance it set
    config2 = token_config(channels, token)
    r, vs = sign_permit(token, parties.payer, deployed.address, 700, 2**40)
    rs = int.from_bytes(vs, "big")
    v, s = (rs >> 255) + 27, (rs & ((1 << 255) - 1)).to_bytes(32, "big")
    send(chain, token.functions.permit(parties.payer.address, deployed.address, 700, 2**40, v, r, s), parties.other)
    send(chain, deployed.functions.depositTokenWithPermit(config2.as_abi_tuple(), 700, 2**40, r, vs), parties.payer)
    assert channels.state(config2)[0] == 700
    # a bad permit with no allowance fails on the transfer
    err(deployed, deployed.functions.depositTokenWithPermit(token_config(channels, token).as_abi_tuple(), 5, 2**40, r, vs),
        parties.payer, "TokenTransferFailed", chain)


def test_reentrant_token_is_stopped(chain, deployed, channels, parties):
    token = deploy_test_contract(chain, "ReentrantToken")
    fund_token(chain, token, parties.payer, deployed.address)
    config = token_config(channels, token)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer)
    # the token's hook tries to deposit again (which would double-count the balance difference)
    inner = deployed.encode_abi("depositToken", [config.as_abi_tuple(), 1000])
    send(chain, token.functions.arm(deployed.address, inner), parties.payer)
    # the lock stops the inner deposit; its revert fails transferFrom, so the outer deposit reverts whole
    err(deployed, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer, "TokenTransferFailed", chain)
    assert channels.state(config)[0] == 1000
    assert token.functions.balanceOf(deployed.address).call() == 1000
    send(chain, token.functions.arm(ZERO_ADDRESS, b""), parties.payer)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer)  # unarmed: fine
    assert channels.state(config)[0] == 2000
    # ... and tries to claim again during a claim's payout
    inner = deployed.encode_abi("claim", [config.as_abi_tuple(), 600, 600, *channels.voucher(config, 600)])
    send(chain, token.functions.arm(deployed.address, inner), parties.payer)
    receipt = send(chain, deployed.functions.claim(config.as_abi_tuple(), 500, 500, *channels.voucher(config, 500)), parties.receiver)
    assert events(deployed, receipt, "PayoutDeferred")[0]["amount"] == 500  # the hook's revert failed the payout
    assert channels.state(config)[:2] == [2000, 500]
    assert token.functions.balanceOf(deployed.address).call() == 2000


# ------------------------------------------------------------------ claims


def test_claim_pays_receiver_and_is_monotonic(chain, deployed, channels, parties):
    config = channels.open_eth(ETH, config=channels.config(receiver_authorizer=parties.other.address))
    f = deployed.functions
    before = balance(chain, parties.receiver.address)
    receipt = send(chain, f.claim(config.as_abi_tuple(), 3 * UNIT, 3 * UNIT, *channels.voucher(config, 3 * UNIT)), parties.other)
    assert events(deployed, receipt, "ChannelClaimed") == [{"channelId": channels.id(config), "totalClaimed": 3 * UNIT}]
    assert balance(chain, parties.receiver.address) - before == 3 * UNIT  # paid to the stored receiver, not the sender
    for amount in (3 * UNIT, 2 * UNIT):
        err(deployed, f.claim(config.as_abi_tuple(), amount, amount, *channels.voucher(config, amount)), parties.receiver, "NothingToClaim", chain)
    send(chain, f.claim(config.as_abi_tuple(), 5 * UNIT, 5 * UNIT, *channels.voucher(config, 5 * UNIT)), parties.receiver)
    assert channels.state(config) == [ETH, 5 * UNIT, 0, False]
    unknown = channels.config()
    err(deployed, f.claim(unknown.as_abi_tuple(), UNIT, UNIT, *channels.voucher(unknown, UNIT)), parties.receiver, "ChannelUnknown", chain)


def test_voucher_above_deposit_is_clamped_then_claims_rest_after_top_up(chain, deployed, channels, parties):
    config = channels.open_eth(10 * UNIT)
    voucher = channels.voucher(config, 15 * UNIT)
    send(chain, deployed.functions.claim(config.as_abi_tuple(), 15 * UNIT, 15 * UNIT, *voucher), parties.receiver)
    assert channels.state(config)[:2] == [10 * UNIT, 10 * UNIT]
    err(deployed, deployed.functions.claim(config.as_abi_tuple(), 15 * UNIT, 15 * UNIT, *voucher), parties.receiver, "NothingToClaim", chain)
    channels.open_eth(10 * UNIT, config=config)  # top-up
    send(chain, deployed.functions.claim(config.as_abi_tuple(), 15 * UNIT, 15 * UNIT, *voucher), parties.receiver)
    assert channels.state(config)[:2] == [20 * UNIT, 15 * UNIT]


def test_replay_across_channels_contracts_chains_and_kinds(chain, dev_chain, deployed, channels, parties):
    a, b = channels.open_eth(ETH), channels.open_eth(ETH)
    f = deployed.functions
    err(deployed, f.claim(b.as_abi_tuple(), UNIT, UNIT, *channels.voucher(a, UNIT)), parties.receiver, "InvalidSignature", chain)
    other = dev_chain.deploy_channel_deposit()
    foreign = Domain(chain.chain_id, other.address)
    sig = to_compact(sign_digest(parties.voucher_key, voucher_digest(foreign, channel_id(foreign, a), UNIT)))
    err(deployed, f.claim(a.as_abi_tuple(), UNIT, UNIT, *sig), parties.receiver, "InvalidSignature", chain)
    fork = Domain(chain.chain_id + 1, deployed.address)
    sig = to_compact(sign_digest(parties.voucher_key, voucher_digest(fork, channel_id(fork, a), UNIT)))
    err(deployed, f.claim(a.as_abi_tuple(), UNIT, UNIT, *sig), parties.receiver, "InvalidSignature", chain)
    # a cooperative-close signature by the voucher key is not a voucher (different typehash)
    sig = to_compact(sign_digest(parties.voucher_key, cooperative_close_digest(channels.domain, channels.id(a), UNIT)))
    err(deployed, f.claim(a.as_abi_tuple(), UNIT, UNIT, *sig), parties.receiver, "InvalidSignature", chain)
    # and a voucher is not a cooperative-close consent
    voucher_sig = sign_digest(parties.receiver.private_key, voucher_digest(channels.domain, channels.id(a), UNIT))
    err(deployed, f.closeCooperative(a.as_abi_tuple(), UNIT, b"", voucher_sig), parties.payer, "InvalidSignature", chain)


def _high_s(r: bytes, vs: bytes) -> tuple[bytes, bytes]:
    value = int.from_bytes(vs, "big")
    s, parity = value & ((1 << 255) - 1), value >> 255
    return r, ((SECP256K1_N - s) | ((parity ^ 1) << 255)).to_bytes(32, "big")


def test_bad_signatures_rejected(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    claim = lambda r, vs: deployed.functions.claim(config.as_abi_tuple(), UNIT, UNIT, r, vs)  # noqa: E731
    r, vs = channels.voucher(config, UNIT)
    # high-s: the same signature's malleable twin (ecrecover alone would accept it)
    err(deployed, claim(*_high_s(r, vs)), parties.receiver, "InvalidSignature", chain)
    for bad in [(b"\0" * 32, vs), (r, b"\0" * 32), (b"\x11" * 32, b"\x22" * 32), (r[:31] + b"\0", vs)]:
        err(deployed, claim(*bad), parties.receiver, "InvalidSignature", chain)
    payer_key_sig = to_compact(sign_digest(parties.payer.private_key, voucher_digest(channels.domain, channels.id(config), UNIT)))
    err(deployed, claim(*payer_key_sig), parties.receiver, "InvalidSignature", chain)
    send(chain, claim(r, vs), parties.receiver)


def test_batch_claim_one_payout_skips_what_has_nothing_new(chain, deployed, channels, parties):
    token = deploy_test_contract(chain, "TestToken", "T")
    fund_token(chain, token, parties.payer, deployed.address)
    configs = [token_config(channels, token) for _ in range(5)]
    for c in configs:
        send(chain, deployed.functions.depositToken(c.as_abi_tuple(), 1000), parties.payer)
    send(chain, deployed.functions.claim(configs[1].as_abi_tuple(), 300, 300, *channels.voucher(configs[1], 300)), parties.receiver)
    send(chain, deployed.functions.closeByReceiver(configs[2].as_abi_tuple(), 0, 0, b"\0" * 32, b"\0" * 32), parties.receiver)
    unknown = token_config(channels, token)

    def item(c, amount):
        return (to_checksum_address(c.payer), to_checksum_address(c.signer), c.close_delay, c.salt, amount, amount, *channels.voucher(c, amount))

    items = [item(configs[0], 100), item(configs[1], 300), item(configs[2], 500), item(unknown, 5), item(configs[3], 2000), item(configs[4], 250)]
    receipt = send(chain, deployed.functions.claimBatch(parties.receiver.address, ZERO_ADDRESS, token.address, items), parties.receiver)
    claimed = {e["channelId"]: e["totalClaimed"] for e in events(deployed, receipt, "ChannelClaimed")}
    assert claimed == {channels.id(configs[0]): 100, channels.id(configs[3]): 1000, channels.id(configs[4]): 250}
    transfers = token.events.Transfer().process_receipt(receipt)
    assert [(t["args"]["to"], t["args"]["value"]) for t in transfers] == [(parties.receiver.address, 1350)]
    err(deployed, deployed.functions.claimBatch(parties.receiver.address, ZERO_ADDRESS, token.address, items), parties.receiver, "NothingToClaim", chain)
    forged = [item(configs[0], 200)[:6] + channels.voucher(configs[1], 200)]
    err(deployed, deployed.functions.claimBatch(parties.receiver.address, ZERO_ADDRESS, token.address, forged), parties.receiver, "InvalidSignature", chain)
    # nobody else may send a batch: it would claim payers' unspent credit for the receiver
    err(deployed, deployed.functions.claimBatch(parties.receiver.address, ZERO_ADDRESS, token.address, items), parties.other, "NotReceiver", chain)


# ------------------------------------------------------------------ closes


def test_receiver_close_settles_and_refunds(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    f = deployed.functions
    err(deployed, f.closeByReceiver(config.as_abi_tuple(), UNIT, UNIT, *channels.voucher(config, UNIT)), parties.other, "NotReceiver", chain)
    payer_before, receiver_before = balance(chain, parties.payer.address), balance(chain, parties.receiver.address)
    receipt = send(chain, f.closeByReceiver(config.as_abi_tuple(), 4 * UNIT, 4 * UNIT, *channels.voucher(config, 4 * UNIT)), parties.receiver)
    assert events(deployed, receipt, "ChannelSettled") == [{"channelId": channels.id(config), "totalClaimed": 4 * UNIT, "refunded": ETH - 4 * UNIT}]
    assert balance(chain, parties.payer.address) - payer_before == ETH - 4 * UNIT
    assert balance(chain, parties.receiver.address) - receiver_before == 4 * UNIT - gas_cost(receipt)
    assert channels.state(config) == [ETH, 4 * UNIT, 0, True]
    assert balance(chain, deployed.address) == 0
    # settled is final: no claim, top-up, close or reopen of the same configuration
    err(deployed, f.claim(config.as_abi_tuple(), 5 * UNIT, 5 * UNIT, *channels.voucher(config, 5 * UNIT)), parties.receiver, "ChannelIsSettled", chain)
    err(deployed, f.depositEth(config.as_abi_tuple()), parties.payer, "ChannelIsSettled", chain, ETH)
    err(deployed, f.requestClose(config.as_abi_tuple()), parties.payer, "ChannelIsSettled", chain)
    err(deployed, f.finalizeClose(config.as_abi_tuple()), parties.payer, "ChannelIsSettled", chain)
    err(deployed, f.closeByReceiver(config.as_abi_tuple(), 0, 0, b"\0" * 32, b"\0" * 32), parties.receiver, "ChannelIsSettled", chain)


def test_receiver_close_without_voucher_refunds_everything_unclaimed(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    send(chain, deployed.functions.claim(config.as_abi_tuple(), UNIT, UNIT, *channels.voucher(config, UNIT)), parties.receiver)
    before = balance(chain, parties.payer.address)
    send(chain, deployed.functions.closeByReceiver(config.as_abi_tuple(), 0, 0, b"\0" * 32, b"\0" * 32), parties.receiver)
    assert balance(chain, parties.payer.address) - before == ETH - UNIT


def test_cooperative_close_by_either_side_or_a_relayer(chain, deployed, channels, parties):
    f = deployed.functions
    for sender in ("payer", "receiver", "relayer", "compact"):
        config = channels.open_eth(ETH)
        digest = cooperative_close_digest(channels.domain, channels.id(config), 7 * UNIT)
        payer_sig = sign_digest(parties.payer.private_key, digest)
        receiver_sig = sign_digest(parties.receiver.private_key, digest)
        if sender == "payer":
            call, who = f.closeCooperative(config.as_abi_tuple(), 7 * UNIT, b"", receiver_sig), parties.payer
        elif sender == "receiver":
            call, who = f.closeCooperative(config.as_abi_tuple(), 7 * UNIT, payer_sig, b""), parties.receiver
        elif sender == "relayer":
            call, who = f.closeCooperative(config.as_abi_tuple(), 7 * UNIT, payer_sig, receiver_sig), parties.other
        else:
            call, who = f.closeCooperative(config.as_abi_tuple(), 7 * UNIT, b"".join(to_compact(payer_sig)), b"".join(to_compact(receiver_sig))), parties.other
        receiver_before = balance(chain, parties.receiver.address)
        receipt = send(chain, call, who)
        paid = balance(chain, parties.receiver.address) - receiver_before + (gas_cost(receipt) if who is parties.receiver else 0)
        assert paid == 7 * UNIT and channels.state(config) == [ETH, 7 * UNIT, 0, True]
    config = channels.open_eth(ETH)
    digest = cooperative_close_digest(channels.domain, channels.id(config), 7 * UNIT)
    receiver_sig = sign_digest(parties.receiver.private_key, digest)
    # without the payer's consent a third party cannot close, nor with a consent for another amount
    err(deployed, f.closeCooperative(config.as_abi_tuple(), 7 * UNIT, b"", receiver_sig), parties.other, "InvalidSignature", chain)
    err(deployed, f.closeCooperative(config.as_abi_tuple(), 8 * UNIT, b"", receiver_sig), parties.payer, "InvalidSignature", chain)


def test_cooperative_close_never_undoes_a_claim(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    send(chain, deployed.functions.claim(config.as_abi_tuple(), 5 * UNIT, 5 * UNIT, *channels.voucher(config, 5 * UNIT)), parties.receiver)
    sig = sign_digest(parties.receiver.private_key, cooperative_close_digest(channels.domain, channels.id(config), 2 * UNIT))
    send(chain, deployed.functions.closeCooperative(config.as_abi_tuple(), 2 * UNIT, b"", sig), parties.payer)
    assert channels.state(config) == [ETH, 5 * UNIT, 0, True]


def test_payer_close_delay_claims_in_between_and_finalize(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    f = deployed.functions
    err(deployed, f.requestClose(config.as_abi_tuple()), parties.other, "NotPayer", chain)
    err(deployed, f.finalizeClose(config.as_abi_tuple()), parties.payer, "CloseNotRequested", chain)
    receipt = send(chain, f.requestClose(config.as_abi_tuple()), parties.payer)
    (requested,) = events(deployed, receipt, "CloseRequested")
    deadline = requested["deadline"]
    assert deadline == chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + HOUR
    err(deployed, f.requestClose(config.as_abi_tuple()), parties.payer, "ChannelClosing", chain)
    err(deployed, f.depositEth(config.as_abi_tuple()), parties.payer, "ChannelClosing", chain, ETH)
    # the receiver can still claim, and that does not move the deadline
    send(chain, f.claim(config.as_abi_tuple(), 3 * UNIT, 3 * UNIT, *channels.voucher(config, 3 * UNIT)), parties.receiver)
    assert channels.state(config) == [ETH, 3 * UNIT, deadline, False]
    err(deployed, f.finalizeClose(config.as_abi_tuple()), parties.payer, "CloseDelayNotOver", chain)
    chain.tester.time_travel(deadline)
    before = balance(chain, parties.payer.address)
    send(chain, f.finalizeClose(config.as_abi_tuple()), parties.other)  # anyone may finalize
    assert balance(chain, parties.payer.address) - before == ETH - 3 * UNIT
    assert channels.state(config) == [ETH, 3 * UNIT, 0, True]
    err(deployed, f.claim(config.as_abi_tuple(), 9 * UNIT, 9 * UNIT, *channels.voucher(config, 9 * UNIT)), parties.receiver, "ChannelIsSettled", chain)


# ------------------------------------------------------------------ hostile recipients and contract accounts


@pytest.mark.parametrize("kind", ["RejectingAccount", "GasBurningAccount"])
def test_hostile_payer_cannot_block_the_receiver(chain, deployed, channels, parties, kind):
    payer = deploy_test_contract(chain, kind)
    config = channels.config(payer_address=payer.address)
    send(chain, deployed.functions.depositEth(config.as_abi_tuple()), parties.other, ETH)
    receiver_before = balance(chain, parties.receiver.address)
    receipt = send(chain, deployed.functions.closeByReceiver(config.as_abi_tuple(), UNIT, UNIT, *channels.voucher(config, UNIT)), parties.receiver)
    assert receipt["gasUsed"] < 250_000, "a gas-burning payer must not make the receiver's close expensive"
    assert balance(chain, parties.receiver.address) - receiver_before == UNIT - gas_cost(receipt)
    assert events(deployed, receipt, "PayoutDeferred") == [{"token": ZERO_ADDRESS, "account": payer.address, "amount": ETH - UNIT}]
    assert deployed.functions.pendingPayouts(ZERO_ADDRESS, payer.address).call() == ETH - UNIT
    # the payer's contract pulls its refund to an address that accepts ETH
    withdraw = deployed.encode_abi("withdrawPending", [ZERO_ADDRESS, parties.other.address])
    before = balance(chain, parties.other.address)
    send(chain, payer.functions.exec(deployed.address, withdraw), parties.payer)
    assert balance(chain, parties.other.address) - before == ETH - UNIT
    assert balance(chain, deployed.address) == 0


def test_blocklisted_payer_refund_is_deferred(chain, deployed, channels, parties):
    token = deploy_test_contract(chain, "BlocklistToken")
    fund_token(chain, token, parties.payer, deployed.address)
    config = token_config(channels, token)
    send(chain, deployed.functions.depositToken(config.as_abi_tuple(), 1000), parties.payer)
    send(chain, token.functions.setBlocked(parties.payer.address, True), parties.other)
    send(chain, deployed.functions.closeByReceiver(config.as_abi_tuple(), 400, 400, *channels.voucher(config, 400)), parties.receiver)
    assert token.functions.balanceOf(parties.receiver.address).call() == 400
    assert deployed.functions.pendingPayouts(token.address, parties.payer.address).call() == 600
    send(chain, deployed.functions.withdrawPending(token.address, parties.other.address), parties.payer)
    assert token.functions.balanceOf(parties.other.address).call() == 600


def test_eip1271_payer_consents_to_cooperative_close(chain, deployed, channels, parties):
    wallet = deploy_test_contract(chain, "ERC1271Wallet", parties.payer.address)
    config = channels.config(payer_address=wallet.address)
    send(chain, deployed.functions.depositEth(config.as_abi_tuple()), parties.other, ETH)
    digest = cooperative_close_digest(channels.domain, channels.id(config), 2 * UNIT)
    owner_sig = sign_digest(parties.payer.private_key, digest)
    send(chain, wallet.functions.setHonest(False), parties.other)
    err(deployed, deployed.functions.closeCooperative(config.as_abi_tuple(), 2 * UNIT, owner_sig, b""), parties.receiver, "InvalidSignature", chain)
    send(chain, wallet.functions.setHonest(True), parties.other)
    send(chain, deployed.functions.closeCooperative(config.as_abi_tuple(), 2 * UNIT, owner_sig, b""), parties.receiver)
    assert channels.state(config) == [ETH, 2 * UNIT, 0, True]
    assert balance(chain, wallet.address) == ETH - 2 * UNIT


# ------------------------------------------------------------------ claim amounts and the receiver authorizer


def test_claim_takes_only_the_claim_amount_and_the_rest_goes_back_at_close(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    f = deployed.functions
    voucher = channels.voucher(config, 10 * UNIT)
    err(deployed, f.claim(config.as_abi_tuple(), 10 * UNIT, 10 * UNIT + 1, *voucher), parties.receiver, "ClaimAboveVoucher", chain)
    before = balance(chain, parties.receiver.address)
    receipt = send(chain, f.claim(config.as_abi_tuple(), 10 * UNIT, 4 * UNIT, *voucher), parties.receiver)
    assert balance(chain, parties.receiver.address) - before == 4 * UNIT - gas_cost(receipt)
    assert channels.state(config) == [ETH, 4 * UNIT, 0, False]
    err(deployed, f.claim(config.as_abi_tuple(), 10 * UNIT, 3 * UNIT, *voucher), parties.receiver, "NothingToClaim", chain)
    # the same voucher authorises a later, higher claim
    send(chain, f.claim(config.as_abi_tuple(), 10 * UNIT, 6 * UNIT, *voucher), parties.receiver)
    err(deployed, f.closeByReceiver(config.as_abi_tuple(), 10 * UNIT, 11 * UNIT, *voucher), parties.receiver, "ClaimAboveVoucher", chain)
    payer_before = balance(chain, parties.payer.address)
    receipt = send(chain, f.closeByReceiver(config.as_abi_tuple(), 10 * UNIT, 7 * UNIT, *voucher), parties.receiver)
    assert events(deployed, receipt, "ChannelSettled") == [{"channelId": channels.id(config), "totalClaimed": 7 * UNIT, "refunded": ETH - 7 * UNIT}]
    assert balance(chain, parties.payer.address) - payer_before == ETH - 7 * UNIT, "unspent credit goes back to the payer"
    assert balance(chain, deployed.address) == 0


def test_receiver_close_below_what_is_claimed_claims_nothing_new(chain, deployed, channels, parties):
    config = channels.open_eth(ETH)
    f = deployed.functions
    send(chain, f.claim(config.as_abi_tuple(), 5 * UNIT, 5 * UNIT, *channels.voucher(config, 5 * UNIT)), parties.receiver)
    # no valid signature is needed when nothing new is claimed, and claimed never decreases
    send(chain, f.closeByReceiver(config.as_abi_tuple(), 9 * UNIT, 2 * UNIT, b"\0" * 32, b"\0" * 32), parties.receiver)
    assert channels.state(config) == [ETH, 5 * UNIT, 0, True]


def test_only_the_receiver_or_its_authorizer_claims_and_closes(chain, deployed, channels, parties):
    f = deployed.functions
    authorizer, stranger = parties.other, parties.deployer
    alone = channels.open_eth(ETH)
    for who in (authorizer, stranger, parties.payer):  # no authorizer: nobody but the receiver
        err(deployed, f.claim(alone.as_abi_tuple(), UNIT, UNIT, *channels.voucher(alone, UNIT)), who, "NotReceiver", chain)
        err(deployed, f.closeByReceiver(alone.as_abi_tuple(), 0, 0, b"\0" * 32, b"\0" * 32), who, "NotReceiver", chain)
    config = channels.open_eth(ETH, config=channels.config(receiver_authorizer=authorizer.address))
    for who in (stranger, parties.payer):
        err(deployed, f.claim(config.as_abi_tuple(), UNIT, UNIT, *channels.voucher(config, UNIT)), who, "NotReceiver", chain)
        err(deployed, f.closeByReceiver(config.as_abi_tuple(), 0, 0, b"\0" * 32, b"\0" * 32), who, "NotReceiver", chain)
    receiver_before = balance(chain, parties.receiver.address)
    own = send(chain, f.claim(config.as_abi_tuple(), 3 * UNIT, 2 * UNIT, *channels.voucher(config, 3 * UNIT)), parties.receiver)
    send(chain, f.claim(config.as_abi_tuple(), 3 * UNIT, 3 * UNIT, *channels.voucher(config, 3 * UNIT)), authorizer)
    payer_before = balance(chain, parties.payer.address)
    send(chain, f.closeByReceiver(config.as_abi_tuple(), 5 * UNIT, 4 * UNIT, *channels.voucher(config, 5 * UNIT)), authorizer)
    assert channels.state(config) == [ETH, 4 * UNIT, 0, True]
    # the authorizer moves money only to the receiver and the payer, never to itself
    assert balance(chain, parties.payer.address) - payer_before == ETH - 4 * UNIT
    assert balance(chain, parties.receiver.address) - receiver_before == 4 * UNIT - gas_cost(own)


def test_an_authorizer_consents_to_a_cooperative_close_for_the_receiver(chain, deployed, channels, parties):
    f = deployed.functions
    authorizer, stranger = parties.other, parties.deployer
    for how in ("signs", "sends"):
        config = channels.open_eth(ETH, config=channels.config(receiver_authorizer=authorizer.address))
        digest = cooperative_close_digest(channels.domain, channels.id(config), 2 * UNIT)
        payer_sig = sign_digest(parties.payer.private_key, digest)
        receiver_before, payer_before = balance(chain, parties.receiver.address), balance(chain, parties.payer.address)
        if how == "signs":
            receipt = send(chain, f.closeCooperative(config.as_abi_tuple(), 2 * UNIT, b"", sign_digest(authorizer.private_key, digest)), parties.payer)
            refund = ETH - 2 * UNIT - gas_cost(receipt)
        else:
            send(chain, f.closeCooperative(config.as_abi_tuple(), 2 * UNIT, payer_sig, b""), authorizer)
            refund = ETH - 2 * UNIT
        assert balance(chain, parties.receiver.address) - receiver_before == 2 * UNIT
        assert balance(chain, parties.payer.address) - payer_before == refund
        assert channels.state(config) == [ETH, 2 * UNIT, 0, True]
    # a stranger's consent is not the receiver's, whether it signs or sends; nor is an authorizer's
    # consent on a channel that names no authorizer (or another one)
    named = channels.open_eth(ETH, config=channels.config(receiver_authorizer=authorizer.address))
    alone = channels.open_eth(ETH)
    for config in (named, alone):
        digest = cooperative_close_digest(channels.domain, channels.id(config), 2 * UNIT)
        payer_sig = sign_digest(parties.payer.private_key, digest)
        stranger_sig = sign_digest(stranger.private_key, digest)
        err(deployed, f.closeCooperative(config.as_abi_tuple(), 2 * UNIT, b"", stranger_sig), parties.payer, "InvalidSignature", chain)
        err(deployed, f.closeCooperative(config.as_abi_tuple(), 2 * UNIT, payer_sig, b""), stranger, "InvalidSignature", chain)
    digest = cooperative_close_digest(channels.domain, channels.id(alone), 2 * UNIT)
    authorizer_sig, payer_sig = sign_digest(authorizer.private_key, digest), sign_digest(parties.payer.private_key, digest)
    err(deployed, f.closeCooperative(alone.as_abi_tuple(), 2 * UNIT, b"", authorizer_sig), parties.payer, "InvalidSignature", chain)
    err(deployed, f.closeCooperative(alone.as_abi_tuple(), 2 * UNIT, payer_sig, b""), authorizer, "InvalidSignature", chain)


def test_batch_claim_by_the_authorizer_with_claim_amounts(chain, deployed, channels, parties):
    f = deployed.functions
    authorizer = parties.other
    mine = [channels.open_eth(ETH, config=channels.config(receiver_authorizer=authorizer.address)) for _ in range(2)]
    foreign = channels.open_eth(ETH, config=channels.config(receiver_authorizer=parties.deployer.address))

    def item(c, voucher, claim):
        return (to_checksum_address(c.payer), to_checksum_address(c.signer), c.close_delay, c.salt, voucher, claim,
                *channels.voucher(c, voucher))  # fmt: skip

    items = [item(mine[0], 5 * UNIT, 2 * UNIT), item(mine[1], 7 * UNIT, 7 * UNIT), item(foreign, 3 * UNIT, 3 * UNIT)]
    err(deployed, f.claimBatch(parties.receiver.address, authorizer.address, ZERO_ADDRESS, items), parties.deployer, "NotReceiver", chain)
    err(deployed, f.claimBatch(parties.receiver.address, ZERO_ADDRESS, ZERO_ADDRESS, items), authorizer, "NotReceiver", chain)
    above = [item(mine[0], 5 * UNIT, 5 * UNIT + 1)]
    err(deployed, f.claimBatch(parties.receiver.address, authorizer.address, ZERO_ADDRESS, above), authorizer, "ClaimAboveVoucher", chain)
    before = balance(chain, parties.receiver.address)
    receipt = send(chain, f.claimBatch(parties.receiver.address, authorizer.address, ZERO_ADDRESS, items), authorizer)
    claimed = {e["channelId"]: e["totalClaimed"] for e in events(deployed, receipt, "ChannelClaimed")}
    assert claimed == {channels.id(mine[0]): 2 * UNIT, channels.id(mine[1]): 7 * UNIT}, "another authorizer's channel is skipped"
    assert balance(chain, parties.receiver.address) - before == 9 * UNIT
    assert channels.state(foreign)[1] == 0


def test_authorizer_is_part_of_the_channel_id_and_canonically_encoded(chain, deployed, channels, parties):
    base = channels.config()
    other = ChannelConfig.create(base.payer, base.signer, base.receiver, None, base.close_delay, base.salt, parties.other.address)
    assert channels.id(base) != channels.id(other)
    assert deployed.functions.channelId(other.as_abi_tuple()).call() == channels.id(other)
    data = bytearray(bytes.fromhex(deployed.encode_abi("depositEth", [other.as_abi_tuple()])[2:]))
    data[4 + 32 * 6 + 3] = 0x01  # a dirty high byte in the receiverAuthorizer word
    tx = {"from": parties.payer.address, "to": deployed.address, "data": bytes(data), "value": ETH, "gas": GAS}
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(tx))
    assert receipt["status"] == 0
    receipt = send(chain, deployed.functions.depositEth(other.as_abi_tuple()), parties.payer, ETH)
    assert events(deployed, receipt, "ChannelOpened")[0]["receiverAuthorizer"] == parties.other.address
