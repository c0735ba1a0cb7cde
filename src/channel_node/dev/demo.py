"""A contract-level walk-through on the embedded chain: open, pay off-chain per unlock, claim, close."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_utils.address import to_checksum_address
from web3.contract.contract import ContractFunction

from channel_node.dev.devchain import DevAccount, DevChain
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    recover_signer,
    sign_digest,
    to_compact,
    voucher_digest,
)


@dataclass
class Step:
    name: str
    gas: int
    result: str


def run_contract_demo(unlocks: int = 1000, price: int = 20_000_000_000_000) -> list[Step]:
    if unlocks < 1 or price < 1:
        raise ValueError("unlocks and price must be positive")
    chain = DevChain()
    publisher, reader = chain.accounts[1], chain.accounts[2]
    contract = chain.deploy_channel_deposit()
    domain = Domain(chain.chain_id, contract.address)
    voucher_key = keccak256(b"channel-node demo voucher key")
    deposit = unlocks * price * 2
    config = ChannelConfig.create(
        payer=reader.address,
        signer=address_of_key(voucher_key),
        receiver=publisher.address,
        token=None,
        close_delay=3600,
        salt=1,
    )
    channel = channel_id(domain, config)
    steps: list[Step] = []

    def send(name: str, call: ContractFunction, sender: DevAccount, value: int = 0) -> None:
        receipt = chain.transact(call, sender.address, value=value)
        if receipt["status"] != 1:
            raise RuntimeError(f"{name} reverted")
        steps.append(Step(name, receipt["gasUsed"], "ok"))

    send("reader opens a channel", contract.functions.depositEth(config.as_abi_tuple()), reader, value=deposit)
    steps[-1].result = f"deposit {deposit} wei, channel {channel.hex()[:16]}…"

    # Off-chain: one cumulative voucher per unlock, verified by recovering its signer.
    started = time.perf_counter()
    signature = b""
    for n in range(1, unlocks + 1):
        digest = voucher_digest(domain, channel, n * price)
        signature = sign_digest(voucher_key, digest)
        if recover_signer(digest, signature) != config.signer:
            raise RuntimeError("voucher did not verify")
    elapsed = time.perf_counter() - started
    total = unlocks * price
    steps.append(Step(f"{unlocks} unlocks paid off-chain", 0, f"{unlocks / elapsed:,.0f} sign+verify/s, total {total} wei"))

    send("publisher claims the last voucher", contract.functions.claim(config.as_abi_tuple(), total, total, *to_compact(signature)), publisher)
    send("publisher closes, refund to reader", contract.functions.closeByReceiver(config.as_abi_tuple(), total, total, *to_compact(signature)), publisher)
    deposited, claimed, _, settled = contract.functions.getChannel(channel).call()
    steps[-1].result = f"claimed {claimed} wei, refunded {deposited - claimed} wei, settled={settled}"
    steps.append(Step("contract", 0, to_checksum_address(contract.address)))
    return steps
