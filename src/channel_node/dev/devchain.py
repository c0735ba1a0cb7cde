"""The embedded in-process chain (eth-tester on py-evm) used by `channel-node dev`, tests and the gas report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import TxReceipt, Wei

from channel_node.chain.artifacts import channel_deposit_artifact

# Explicit gas skips estimation, which roughly halves the time of a transaction on py-evm.
DEFAULT_GAS = 3_000_000


@dataclass
class DevAccount:
    address: str
    private_key: bytes


class DevChain:
    """An in-process chain with ten funded, unlocked accounts (1,000,000 ETH each)."""

    def __init__(self) -> None:
        self.backend = PyEVMBackend()
        self.tester = EthereumTester(self.backend)
        self.w3 = Web3(EthereumTesterProvider(self.tester))
        self.accounts = [
            DevAccount(address=key.public_key.to_checksum_address(), private_key=key.to_bytes())
            for key in self.backend.account_keys
        ]

    @property
    def chain_id(self) -> int:
        return self.w3.eth.chain_id

    def deploy(self, abi: Sequence[Mapping[str, Any]], bytecode: str, *args: object, sender: str | None = None) -> Contract:
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        tx_hash = factory.constructor(*args).transact({"from": sender or self.accounts[0].address, "gas": 8_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        address = receipt["contractAddress"]
        if address is None:  # a reverted constructor creates nothing
            raise RuntimeError("the deployment created no contract")
        return self.w3.eth.contract(address=address, abi=abi)

    def deploy_channel_deposit(self, max_deposit_per_channel: int = 0, sender: str | None = None) -> Contract:
        artifact = channel_deposit_artifact()
        return self.deploy(artifact.abi, artifact.bytecode, max_deposit_per_channel, sender=sender)

    def transact(self, call: ContractFunction, sender: str, value: int = 0, gas: int = DEFAULT_GAS) -> TxReceipt:
        """Sends a contract call and returns its receipt (status checked by the caller)."""
        tx_hash = call.transact({"from": sender, "value": Wei(value), "gas": gas})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def time_travel(self, seconds: int) -> None:
        """Moves the next block's timestamp `seconds` ahead (of the pending block, which after a
        snapshot revert can already be later than the latest mined one)."""
        pending = self.tester.get_block_by_number("pending")["timestamp"]
        latest = self.w3.eth.get_block("latest")["timestamp"]
        self.tester.time_travel(max(pending, latest) + seconds)
