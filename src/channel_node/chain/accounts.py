"""Who signs and pays for transactions, and the one transaction policy every sender follows.

The contract client (`chain/contract.py`), the ERC-20 client (`chain/erc20.py`) and the outbox
(`chain/outbox.py`) all take their fees, nonces and gas from here (docs/design.md, "Layers"):

- fees: `suggest_fees` — an EIP-1559 tip as the node suggests it (1 gwei when it cannot), and a
  max fee of twice the latest base fee plus the tip, which stays valid through several full blocks
  of base-fee increases (12.5% each); a legacy gas price on a chain without a base fee;
- replacement: `Fees.bumped` — a stuck transaction is re-sent with the same nonce and both fees
  raised by at least 12.5% (the replacement rule of geth and anvil), or to what the chain asks now;
- nonces: `Nonces` — the larger of the node's `pending` count and the next nonce this process
  handed out (a node behind a load balancer may not count a transaction just sent), forgotten
  when a transaction is refused so the next one asks the node again;
- gas: `with_gas_margin` — `eth_estimateGas` plus `GAS_MARGIN_PERCENT`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from eth_account import Account
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.types import TxParams

from channel_node.chain.reverts import ContractRevert, _as_revert, raise_if_revert
from channel_node.types import check_uint

AddressLike = str | bytes

#: A transaction as this edge builds it: web3's `TxParams` keys ("from", "to", "data", "value",
#: "gas", fees, nonce, chain id), added a field at a time, which a TypedDict cannot express.
Tx = dict[str, Any]


def tx_params(tx: Tx) -> TxParams:
    """`tx` handed to web3: its keys are TxParams' own (`Tx` above), so the cast only names the type."""
    return cast(TxParams, tx)

#: Headroom over `eth_estimateGas`, in whole percent (integer arithmetic). State can change between
#: the estimate and inclusion, payouts forward a bounded amount of gas that some nodes' estimates
#: cut close, and a claim that runs out of gas is a lost defence, while unused gas is refunded: the
#: larger of the two margins this code base had (25%, against 20%) is kept for every sender.
GAS_MARGIN_PERCENT = 25

#: The tip when the node cannot suggest one (`eth_maxPriorityFeePerGas` is not on every node).
DEFAULT_PRIORITY_FEE = 1_000_000_000

#: A replacement raises both fees by at least 12.5% (+1 wei), the replacement rule of geth and anvil.
MIN_BUMP_NUMERATOR, MIN_BUMP_DENOMINATOR = 1125, 1000


def with_gas_margin(estimate: int) -> int:
    """The gas limit to send with for an estimate: the estimate plus GAS_MARGIN_PERCENT, rounded down."""
    estimate = check_uint(estimate, "gas estimate")  # web3 answers an int; a float is a bug, not rounded
    return estimate + estimate * GAS_MARGIN_PERCENT // 100


def bump(value: int) -> int:
    """A fee raised by the minimum a replacement needs."""
    return value * MIN_BUMP_NUMERATOR // MIN_BUMP_DENOMINATOR + 1


@dataclass(frozen=True, slots=True)
class Fees:
    """What a transaction pays per gas, in wei. `legacy`: a chain without a base fee, where
    `max_fee` is the gas price (and `priority_fee` the same figure)."""

    max_fee: int
    priority_fee: int
    legacy: bool = False

    def tx_fields(self) -> dict[str, int]:
        if self.legacy:
            return {"gasPrice": self.max_fee}
        return {"maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.priority_fee}

    def bumped(self, current: Fees) -> Fees:
        """The fees of a replacement for a transaction sent with these: each raised by at least
        12.5%, and at least what the chain asks now (`current`)."""
        return Fees(
            max(bump(self.max_fee), current.max_fee), max(bump(self.priority_fee), current.priority_fee), current.legacy
        )


async def suggest_fees(w3: AsyncWeb3[Any]) -> Fees:
    """The fees a new transaction pays now (see the module's docstring)."""
    latest = await w3.eth.get_block("latest")
    base_fee = latest.get("baseFeePerGas")
    if base_fee is None:  # a pre-London chain
        price = int(await w3.eth.gas_price)
        return Fees(price, price, legacy=True)
    try:
        tip = int(await w3.eth.max_priority_fee)
    except Exception:  # the node does not suggest tips
        tip = DEFAULT_PRIORITY_FEE
    return Fees(2 * int(base_fee) + tip, tip)


class Nonces:
    """The nonce policy of one account held in this process (see the module's docstring)."""

    def __init__(self) -> None:
        self._next: int | None = None

    async def take(self, w3: AsyncWeb3[Any], address: ChecksumAddress) -> int:
        on_node = int(await w3.eth.get_transaction_count(address, "pending"))
        nonce = max(on_node, self._next or 0)
        self._next = nonce + 1
        return nonce

    def forget(self) -> None:
        """A transaction was refused (or never left): the next nonce comes from the node again."""
        self._next = None


# ------------------------------------------------------------------ senders


class Sender(ABC):
    """Who signs and pays for a transaction: an account the node unlocks, or a key held here."""

    address: ChecksumAddress

    @abstractmethod
    async def send(self, w3: AsyncWeb3[Any], tx: Tx) -> bytes:
        """Sends a transaction that already has from/to/data/value/gas; returns its hash."""

    @staticmethod
    def unlocked(address: AddressLike) -> UnlockedSender:
        return UnlockedSender(address)

    @staticmethod
    def from_key(private_key: bytes | str) -> LocalKeySender:
        return LocalKeySender(private_key)


class UnlockedSender(Sender):
    """An account the node signs for (`eth_sendTransaction`): dev chains, a local geth/anvil. The
    node picks its nonce and fees."""

    def __init__(self, address: AddressLike) -> None:
        self.address = to_checksum_address(address)

    async def send(self, w3: AsyncWeb3[Any], tx: Tx) -> bytes:
        return bytes(await w3.eth.send_transaction(tx_params(tx)))

    def __repr__(self) -> str:
        return f"UnlockedSender({self.address})"


class LocalKeySender(Sender):
    """A private key held in this process: builds an EIP-1559 transaction with this module's fees
    and nonces, signs it with eth-account and sends it raw, so it works against any node. The key
    never appears in repr/str/errors."""

    def __init__(self, private_key: bytes | str) -> None:
        try:
            account = Account.from_key(private_key)
        except Exception:
            raise ValueError("invalid private key") from None  # never echo the key material
        self._account = account
        self.address = account.address
        self.nonces = Nonces()
        # Nonce lookup, signing and sending are serialized so concurrent writes from this process
        # do not take the same nonce.
        self._lock = asyncio.Lock()

    async def prepare(self, w3: AsyncWeb3[Any], tx: Tx, *, nonce: int | None = None, fees: Fees | None = None) -> Tx:
        """`tx` (with gas) completed for signing: chain id, nonce (the policy's unless given) and
        fees (suggested now unless given)."""
        full = {k: v for k, v in tx.items() if k != "from"}
        full["chainId"] = int(await w3.eth.chain_id)
        full["nonce"] = await self.nonces.take(w3, self.address) if nonce is None else nonce
        full.update((fees or await suggest_fees(w3)).tx_fields())
        return full

    def sign(self, tx: Tx) -> tuple[bytes, bytes]:
        """(hash, raw bytes) of a prepared transaction, signed and not sent."""
        signed = self._account.sign_transaction(tx)
        return bytes(signed.hash), bytes(signed.raw_transaction)

    async def send(self, w3: AsyncWeb3[Any], tx: Tx) -> bytes:
        async with self._lock:
            _, raw = self.sign(await self.prepare(w3, tx))
            try:
                return bytes(await w3.eth.send_raw_transaction(raw))
            except Exception:
                self.nonces.forget()
                raise

    def sign_digest(self, digest: bytes) -> bytes:
        """A 65-byte signature over a 32-byte EIP-712 digest (e.g. the payer's consent to a
        cooperative close), made with the same key that sends, which never leaves this object."""
        return bytes(self._account.unsafe_sign_hash(digest).signature)

    def __repr__(self) -> str:
        return f"LocalKeySender({self.address})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("LocalKeySender holds a private key and is not picklable")


# ------------------------------------------------------------------ sending and waiting


async def estimate_gas(w3: AsyncWeb3[Any], tx: Tx, function: str) -> int:
    """The gas limit for `tx`: the node's estimate with the margin; ContractRevert if it would revert."""
    try:
        estimate = int(await w3.eth.estimate_gas(tx_params(tx)))
    except Exception as exc:
        raise_if_revert(exc, function)
        raise
    return with_gas_margin(estimate)


async def send_and_wait(
    w3: AsyncWeb3[Any], sender: Sender, tx: Tx, gas: int | None, function: str, *, timeout: float, poll_latency: float
) -> Mapping[str, Any]:
    """Estimate (unless `gas` is given), send, wait for the receipt; ContractRevert on any revert."""
    if gas is None:
        gas = await estimate_gas(w3, tx, function)
    tx = {**tx, "gas": check_uint(gas, "gas")}
    try:
        tx_hash = await sender.send(w3, tx)
    except Exception as exc:  # some nodes simulate on send and report the revert right away
        raise_if_revert(exc, function)
        raise
    receipt = await w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout, poll_latency=poll_latency)
    if receipt["status"] != 1:
        raise await mined_revert(w3, function, tx, receipt)
    return receipt


async def mined_revert(w3: AsyncWeb3[Any], function: str, tx: Tx, receipt: Mapping[str, Any]) -> ContractRevert:
    """Receipts carry no revert data, so replay the call on the state before its block. Earlier
    transactions of the same block are not replayed, so on a busy chain this is best effort."""
    tx_hash, block_number = bytes(receipt["transactionHash"]), int(receipt["blockNumber"])
    try:
        await w3.eth.call(tx_params(tx), max(block_number - 1, 0))
    except Exception as exc:
        revert = _as_revert(exc, function, tx_hash=tx_hash, block_number=block_number)
        if revert is not None:
            return revert
        raise
    out_of_gas = int(receipt["gasUsed"]) >= int(tx["gas"])
    reason = f"out of gas ({tx['gas']} given)" if out_of_gas else "reverted on chain; the replay did not revert"
    return ContractRevert(function, None, (), reason=reason, tx_hash=tx_hash, block_number=block_number)


__all__ = [
    "DEFAULT_PRIORITY_FEE",
    "GAS_MARGIN_PERCENT",
    "MIN_BUMP_DENOMINATOR",
    "MIN_BUMP_NUMERATOR",
    "Fees",
    "LocalKeySender",
    "Nonces",
    "Sender",
    "Tx",
    "UnlockedSender",
    "bump",
    "estimate_gas",
    "mined_revert",
    "send_and_wait",
    "suggest_fees",
    "tx_params",
    "with_gas_margin",
]
