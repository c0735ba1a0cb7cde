"""ChannelDepositClient over AsyncWeb3 on an in-process eth-tester chain: deploy and domain, typed
reads, every write returning decoded events, reverts decoded to the contract's custom errors, a
locally signed sender, and eth_getLogs returning the same typed events as the receipts."""

from __future__ import annotations

import itertools
import pickle
from dataclasses import dataclass

import eth_abi
import pytest
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from channel_node.chain.accounts import LocalKeySender, Sender
from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.chain.contract import ChannelDepositClient, TxResult
from channel_node.chain.logs import (
    ChannelClaimed,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    CloseRequested,
    PayoutDeferred,
    PendingWithdrawn,
    _checksum,
)
from channel_node.chain.ports import OnChainChannel
from channel_node.chain.reverts import ContractRevert, _as_revert, decode_revert_data
from channel_node.signing import (
    ChannelConfig,
    address_of_key,
    cooperative_close_digest,
    keccak256,
    sign_digest,
    voucher_digest,
)
from contract_helpers import test_contracts as load_test_contracts

GAS = 500_000  # explicit gas everywhere: no estimation round trip (about half a transaction's time)
DEPLOY_GAS = 3_000_000
HOUR = 3600
ETH = 10**18
UNIT = 10**15
VOUCHER_KEY = keccak256(b"client test voucher key")


@dataclass
class Env:
    w3: AsyncWeb3
    tester: object
    client: ChannelDepositClient
    deployer: Sender
    payer: Sender
    receiver: Sender
    other: Sender

    def config(
        self, *, token: str | None = None, receiver: str | None = None, payer: str | None = None,
        receiver_authorizer: str | None = None,
    ) -> ChannelConfig:
        return ChannelConfig.create(
            payer=payer or self.payer.address,
            signer=address_of_key(VOUCHER_KEY),
            receiver=receiver or self.receiver.address,
            token=token,
            close_delay=HOUR,
            salt=next(_salts),
            receiver_authorizer=receiver_authorizer,
        )

    async def voucher(self, config: ChannelConfig, amount: int, key: bytes = VOUCHER_KEY) -> bytes:
        domain = await self.client.domain()
        return sign_digest(key, voucher_digest(domain, await self.client.channel_id(config), amount))

    async def open_eth(self, amount: int = ETH, **kw) -> ChannelConfig:
        config = self.config(**kw)
        await self.client.deposit_eth(config, amount, sender=self.payer, gas=GAS)
        return config

    async def balance(self, address: str) -> int:
        return await self.w3.eth.get_balance(address)

    async def deploy_test_contract(self, name: str, *args, types: list[str] | None = None):
        spec = load_test_contracts()[name]
        data = spec["bytecode"] + (eth_abi.encode(types, list(args)).hex() if types else "")
        tx_hash = await self.w3.eth.send_transaction({"from": self.deployer.address, "data": data, "gas": DEPLOY_GAS})
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=spec["abi"])

    async def send(self, call, sender: Sender, gas: int = GAS) -> dict:
        tx_hash = await call.transact({"from": sender.address, "gas": gas})
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt


_salts = itertools.count(1)


@pytest.fixture(scope="module")
async def env() -> Env:
    w3 = AsyncWeb3(AsyncEthereumTesterProvider())
    tester = w3.provider.ethereum_tester
    senders = [Sender.unlocked(key.public_key.to_checksum_address()) for key in tester.backend.account_keys]
    client = await ChannelDepositClient.deploy(w3, senders[0], gas=DEPLOY_GAS)
    return Env(w3, tester, client, deployer=senders[0], payer=senders[2], receiver=senders[1], other=senders[3])


# ------------------------------------------------------------------ deploy, domain, reads


async def test_deploy_and_domain_from_the_chain(env: Env):
    domain = await env.client.domain()
    assert domain.chain_id == await env.w3.eth.chain_id
    assert to_checksum_address(domain.verifying_contract) == env.client.address
    assert domain.separator == await env.client.contract.functions.domainSeparator().call()
    assert await env.client.verify_domain() is domain  # cached
    assert await env.client.max_deposit_per_channel() == (1 << 108) - 1  # 0 at deploy means uncapped
    assert env.client.sender is env.deployer
    # a second, capped deployment with estimated gas
    capped = await ChannelDepositClient.deploy(env.w3, env.other, max_deposit_per_channel=ETH)
    assert capped.address != env.client.address and await capped.max_deposit_per_channel() == ETH
    assert (await capped.domain()).separator != domain.separator  # another contract, another domain
    config = env.config()
    await capped.deposit_eth(config, ETH, sender=env.payer, gas=GAS)
    with pytest.raises(ContractRevert) as info:
        await capped.deposit_eth(config, 1, sender=env.payer, gas=GAS)
    assert info.value.error_name == "DepositLimitExceeded"
    code = await env.w3.eth.get_code(env.client.address)
    # the committed artifact's runtime code (immutables differ: chain id, separator, cap)
    assert len(code) == len(bytes.fromhex(channel_deposit_artifact().deployed_bytecode.removeprefix("0x")))


async def test_open_top_up_and_get_channel(env: Env):
    config = env.config()
    cid = await env.client.channel_id(config)
    assert await env.client.get_channel(config) == OnChainChannel(0, 0, None, False)
    assert not (await env.client.get_channel(cid)).exists

    opened = await env.client.deposit_eth(config, ETH, sender=env.payer, gas=GAS)
    assert isinstance(opened, TxResult) and opened.gas_used > 0 and len(opened.tx_hash) == 32
    (event,) = opened.events
    assert isinstance(event, ChannelOpened)
    assert (event.channel_id, event.payer, event.receiver, event.deposited) == (cid, env.payer.address, env.receiver.address, ETH)
    assert event.config == config  # the whole configuration travels in the event
    assert (event.block_number, event.tx_hash) == (opened.block_number, opened.tx_hash)

    topped = await env.client.deposit_eth(config, ETH // 2, sender=env.other, gas=GAS)
    assert topped.events_of(ChannelDeposited) == [
        ChannelDeposited(channel_id=cid, amount=ETH // 2, total_deposited=ETH * 3 // 2, block_number=topped.block_number,
                         log_index=topped.events[0].log_index, tx_hash=topped.tx_hash)
    ]
    state = await env.client.get_channel(cid)
    assert state == OnChainChannel(deposited=ETH * 3 // 2, claimed=0, close_deadline=None, settled=False)
    assert state.exists and not state.closing and type(state.deposited) is int


async def test_amounts_must_be_ints(env: Env):
    config = env.config()
    with pytest.raises(TypeError):
        await env.client.deposit_eth(config, 1.0, sender=env.payer, gas=GAS)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await env.client.claim(config, 1 << 128, b"\0" * 65, sender=env.payer, gas=GAS)
    with pytest.raises(ValueError):
        await ChannelDepositClient(env.w3, env.client.address).request_close(config, gas=GAS)  # no sender at all


# ------------------------------------------------------------------ claims and reverts


async def test_claim_with_signed_voucher(env: Env):
    config = await env.open_eth(ETH, receiver_authorizer=env.other.address)
    cid = await env.client.channel_id(config)
    before = await env.balance(env.receiver.address)
    voucher = await env.voucher(config, 3 * UNIT)
    # the authorizer sends; it claims what was charged (2 units) under a 3-unit voucher
    result = await env.client.claim(config, 3 * UNIT, voucher, 2 * UNIT, sender=env.other, gas=GAS)
    (claimed,) = result.events
    assert isinstance(claimed, ChannelClaimed)
    assert (claimed.channel_id, claimed.total_claimed) == (cid, 2 * UNIT)
    assert await env.balance(env.receiver.address) - before == 2 * UNIT  # paid to the stored receiver
    assert await env.client.get_channel(config) == OnChainChannel(ETH, 2 * UNIT, None, False)
    with pytest.raises(ValueError):  # above its voucher: refused before any gas is spent
        await env.client.claim(config, 3 * UNIT, voucher, 3 * UNIT + 1, sender=env.other, gas=GAS)
    with pytest.raises(ContractRevert) as info:  # nobody else may claim
        await env.client.claim(config, 3 * UNIT, voucher, sender=env.payer, gas=GAS)
    assert info.value.error_name == "NotReceiver"


async def test_reverts_decode_to_custom_errors(env: Env):
    config = await env.open_eth(10 * UNIT)
    await env.client.claim(config, 2 * UNIT, await env.voucher(config, 2 * UNIT), sender=env.receiver, gas=GAS)

    # mined with status 0 (explicit gas, no estimate): decoded by replaying the call
    with pytest.raises(ContractRevert) as info:
        await env.client.claim(config, 2 * UNIT, await env.voucher(config, 2 * UNIT), sender=env.receiver, gas=GAS)
    assert info.value.error_name == "NothingToClaim" and info.value.args == ()
    assert info.value.function == "claim" and info.value.tx_hash is not None and info.value.block_number is not None
    assert "NothingToClaim" in str(info.value)
    receipt = await env.w3.eth.get_transaction_receipt(info.value.tx_hash)
    assert receipt["status"] == 0

    # caught by the estimate (no gas given): nothing is sent
    with pytest.raises(ContractRevert) as info:
        await env.client.claim(config, 5 * UNIT, await env.voucher(config, 5 * UNIT, key=keccak256(b"not the signer")), sender=env.receiver)
    assert info.value.error_name == "InvalidSignature" and info.value.tx_hash is None
    assert info.value.data == keccak256(b"InvalidSignature()")[:4]

    cases = [
        (lambda: env.client.request_close(config, sender=env.other, gas=GAS), "NotPayer"),
        (lambda: env.client.finalize_close(config, sender=env.payer, gas=GAS), "CloseNotRequested"),
        (lambda: env.client.withdraw_pending(None, env.other.address, sender=env.other, gas=GAS), "NothingPending"),
        (lambda: env.client.close_by_receiver(config, sender=env.other, gas=GAS), "NotReceiver"),
        (lambda: env.client.deposit_eth(env.config(), 0, sender=env.payer), "ZeroDeposit"),
    ]
    for write, name in cases:
        with pytest.raises(ContractRevert) as info:
            await write()
        assert info.value.error_name == name
    # the state is untouched by all of that
    assert await env.client.get_channel(config) == OnChainChannel(10 * UNIT, 2 * UNIT, None, False)


def test_node_style_reverts_are_decoded_too():
    """Real nodes surface reverts as web3 exceptions carrying hex data (eth-tester raises its own)."""
    selector = "0x" + keccak256(b"NothingPending()")[:4].hex()
    reason = "0x08c379a0" + eth_abi.encode(["string"], ["nope"]).hex()
    cases = [
        (ContractCustomError(selector, data=selector), "NothingPending", ()),
        (ContractLogicError("execution reverted", data={"message": "m", "data": selector}), "NothingPending", ()),
        (ContractLogicError("execution reverted: nope", data=reason), "Error", ("nope",)),
        (Web3RPCError("execution reverted", rpc_response={"error": {"code": 3, "message": "execution reverted", "data": selector}}), "NothingPending", ()),
        (ContractLogicError("execution reverted", data=None), None, ()),
    ]
    for exc, name, args in cases:
        revert = _as_revert(exc, "withdrawPending")
        assert (revert.error_name, revert.args) == (name, args)
    assert _as_revert(ValueError("not a revert"), "withdrawPending") is None


def test_fast_checksum_matches_eth_utils():
    for seed in range(200):
        raw = keccak256(seed.to_bytes(2, "big"))[:20]
        assert _checksum(raw) == to_checksum_address(raw)


def test_revert_decoding_fallbacks_and_pickling():
    assert decode_revert_data(keccak256(b"ChannelClosing()")[:4]) == ("ChannelClosing", ())
    reason = bytes.fromhex("08c379a0") + eth_abi.encode(["string"], ["no ETH, thanks"])
    assert decode_revert_data(reason) == ("Error", ("no ETH, thanks",))
    assert decode_revert_data(bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")) == ("Panic", (0x11,))
    assert decode_revert_data(b"\xde\xad\xbe\xef") == (None, ())
    exc = ContractRevert("claim", "NothingToClaim", data=b"\x01\x02\x03\x04", tx_hash=b"\xaa" * 32, block_number=7)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.function, copy.error_name, copy.args, copy.data, copy.tx_hash, copy.block_number) == (
        "claim", "NothingToClaim", (), b"\x01\x02\x03\x04", b"\xaa" * 32, 7,
    )


# ------------------------------------------------------------------ closes


async def test_request_close_time_travel_and_finalize(env: Env):
    config = await env.open_eth(ETH)
    await env.client.claim(config, 3 * UNIT, await env.voucher(config, 3 * UNIT), sender=env.receiver, gas=GAS)
    requested = await env.client.request_close(config, sender=env.payer, gas=GAS)
    (event,) = requested.events
    assert isinstance(event, CloseRequested)
    block = await env.w3.eth.get_block(requested.block_number)
    assert event.deadline == block["timestamp"] + HOUR
    state = await env.client.get_channel(config)
    assert state == OnChainChannel(ETH, 3 * UNIT, event.deadline, False) and state.closing

    with pytest.raises(ContractRevert) as info:
        await env.client.finalize_close(config, sender=env.other, gas=GAS)
    assert info.value.error_name == "CloseDelayNotOver"
    with pytest.raises(ContractRevert) as info:
        await env.client.deposit_eth(config, ETH, sender=env.payer, gas=GAS)
    assert info.value.error_name == "ChannelClosing"

    env.tester.time_travel(event.deadline)
    payer_before = await env.balance(env.payer.address)
    finalized = await env.client.finalize_close(config, sender=env.other, gas=GAS)  # anyone may finalize
    assert finalized.events == (
        ChannelSettled(channel_id=event.channel_id, total_claimed=3 * UNIT, refunded=ETH - 3 * UNIT,
                       block_number=finalized.block_number, log_index=finalized.events[0].log_index, tx_hash=finalized.tx_hash),
    )
    assert await env.balance(env.payer.address) - payer_before == ETH - 3 * UNIT
    # settled: the contract's all-ones deadline marker reads as settled with no deadline
    assert await env.client.get_channel(config) == OnChainChannel(ETH, 3 * UNIT, None, True)
    with pytest.raises(ContractRevert) as info:
        await env.client.claim(config, 9 * UNIT, await env.voucher(config, 9 * UNIT), sender=env.receiver, gas=GAS)
    assert info.value.error_name == "ChannelIsSettled"


async def test_close_by_receiver_and_cooperative(env: Env):
    config = await env.open_eth(ETH)
    result = await env.client.close_by_receiver(config, 4 * UNIT, await env.voucher(config, 4 * UNIT), sender=env.receiver, gas=GAS)
    assert [(e.total_claimed, e.refunded) for e in result.events_of(ChannelSettled)] == [(4 * UNIT, ETH - 4 * UNIT)]

    config = await env.open_eth(ETH)
    cid = await env.client.channel_id(config)
    digest = cooperative_close_digest(await env.client.domain(), cid, 7 * UNIT)
    keys = {k.public_key.to_checksum_address(): k.to_bytes() for k in env.tester.backend.account_keys}
    payer_sig = sign_digest(keys[env.payer.address], digest)
    receiver_sig = sign_digest(keys[env.receiver.address], digest)
    result = await env.client.close_cooperative(config, 7 * UNIT, payer_sig, receiver_sig, sender=env.other, gas=GAS)
    assert [(e.channel_id, e.total_claimed) for e in result.events_of(ChannelSettled)] == [(cid, 7 * UNIT)]
    assert await env.client.get_channel(cid) == OnChainChannel(ETH, 7 * UNIT, None, True)


async def test_token_channels_batch_claim(env: Env):
    token = await env.deploy_test_contract("TestToken", "T", types=["string"])
    await env.send(token.functions.mint(env.payer.address, 10**6), env.payer)
    await env.send(token.functions.approve(env.client.address, 2**256 - 1), env.payer)
    configs = [env.config(token=token.address) for _ in range(3)]
    for config in configs:
        await env.client.deposit_token(config, 1000, sender=env.payer, gas=GAS)
    items = [(c, amount, await env.voucher(c, amount)) for c, amount in zip(configs, (100, 2000, 250), strict=True)]
    result = await env.client.claim_batch(env.receiver.address, token.address, items, sender=env.receiver, gas=GAS)
    assert {e.channel_id: e.total_claimed for e in result.events_of(ChannelClaimed)} == {
        await env.client.channel_id(configs[0]): 100,
        await env.client.channel_id(configs[1]): 1000,  # clamped to the deposit
        await env.client.channel_id(configs[2]): 250,
    }
    assert await token.functions.balanceOf(env.receiver.address).call() == 1350
    with pytest.raises(ValueError):  # a config for another receiver would be skipped on chain: refuse
        await env.client.claim_batch(env.other.address, token.address, items, sender=env.other, gas=GAS)


async def test_deferred_payout_and_withdrawal(env: Env):
    rejecting = await env.deploy_test_contract("RejectingAccount")
    config = await env.open_eth(ETH, receiver=rejecting.address, receiver_authorizer=env.other.address)
    result = await env.client.claim(config, 2 * UNIT, await env.voucher(config, 2 * UNIT), sender=env.other, gas=GAS)
    assert [type(e) for e in result.events] == [ChannelClaimed, PayoutDeferred]
    deferred = result.events_of(PayoutDeferred)[0]
    assert (deferred.token, deferred.account, deferred.amount) == ("0x" + "00" * 20, rejecting.address, 2 * UNIT)
    assert await env.client.pending_payouts(None, rejecting.address) == 2 * UNIT

    # the receiver contract pulls its payout; its receipt also holds no foreign logs to confuse decoding
    call = env.client.contract.encode_abi("withdrawPending", ["0x" + "00" * 20, env.other.address])
    receipt = await env.send(rejecting.functions.exec(env.client.address, call), env.other)
    (withdrawn,) = env.client.decode_events(receipt)
    assert isinstance(withdrawn, PendingWithdrawn)
    assert (withdrawn.account, withdrawn.to, withdrawn.amount) == (rejecting.address, env.other.address, 2 * UNIT)
    assert await env.client.pending_payouts(None, rejecting.address) == 0


# ------------------------------------------------------------------ a locally signed sender


async def test_local_key_sender_signs_and_sends_raw(env: Env):
    key = keccak256(b"client test local payer")
    local = Sender.from_key(key)
    assert isinstance(local, LocalKeySender) and local.address == to_checksum_address(address_of_key(key))
    assert key.hex() not in repr(local) and key.hex() not in str(local)
    with pytest.raises(ValueError) as info:
        Sender.from_key(b"\x01" * 31)
    assert "01" * 31 not in str(info.value)
    # the tester cannot sign for this key, so every transaction below is signed here
    fund = await env.w3.eth.send_transaction({"from": env.deployer.address, "to": local.address, "value": 10 * ETH, "gas": 21_000})
    await env.w3.eth.wait_for_transaction_receipt(fund)

    config = env.config(payer=local.address)
    opened = await env.client.deposit_eth(config, ETH, sender=local, gas=GAS)
    assert opened.events_of(ChannelOpened)[0].payer == local.address
    requested = await env.client.request_close(config, sender=local)  # estimated gas, EIP-1559 fees
    assert requested.events_of(CloseRequested)
    tx = await env.w3.eth.get_transaction(requested.tx_hash)
    assert tx["from"] == local.address and tx["type"] == 2 and tx["nonce"] == 1
    with pytest.raises(ContractRevert) as info:  # nobody but the payer may request a close
        await env.client.request_close(env.config(), sender=local, gas=GAS)
    assert info.value.error_name == "NotPayer"
    assert (await env.client.get_channel(config)).closing


# ------------------------------------------------------------------ eth_getLogs


async def test_get_events_matches_receipts_in_order(env: Env):
    start = await env.w3.eth.block_number + 1
    config = env.config()
    results = [
        await env.client.deposit_eth(config, ETH, sender=env.payer, gas=GAS),
        await env.client.deposit_eth(config, ETH, sender=env.payer, gas=GAS),
        await env.client.claim(config, UNIT, await env.voucher(config, UNIT), sender=env.receiver, gas=GAS),
        await env.client.close_by_receiver(config, 2 * UNIT, await env.voucher(config, 2 * UNIT), sender=env.receiver, gas=GAS),
    ]
    end = await env.w3.eth.block_number
    from_receipts = [e for r in results for e in r.events]
    assert [type(e) for e in from_receipts] == [ChannelOpened, ChannelDeposited, ChannelClaimed, ChannelSettled]
    logs = await env.client.get_events(start, end)
    assert logs == from_receipts
    assert [(e.block_number, e.log_index) for e in logs] == sorted((e.block_number, e.log_index) for e in logs)
    only_claims = await env.client.get_events(start, end, kinds=[ChannelClaimed])
    assert only_claims == [e for e in from_receipts if isinstance(e, ChannelClaimed)]
    assert await env.client.get_events(start, end, kinds=[]) == []
