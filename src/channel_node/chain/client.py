"""A thin, typed client for ChannelDeposit over web3.py's `AsyncWeb3`.

Everything the node does on chain goes through here: deploy, reads (`get_channel`, `pending_payouts`),
writes that return a `TxResult` with decoded events, and event queries for a watcher. Amounts are
Python ints end to end. A revert anywhere (estimate, call, or a mined transaction with status 0)
surfaces as `ContractRevert` with the contract's custom error decoded by its 4-byte selector.
"""

from __future__ import annotations

import ast
import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from typing import Any, ClassVar, TypeVar, Union

import eth_abi
from eth_account import Account
from eth_utils import to_canonical_address, to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, Web3RPCError, Web3ValueError

from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.signing.eip712 import (
    UINT128_MAX,
    ZERO_ADDRESS,
    ChannelConfig,
    Domain,
    channel_id,
    keccak256,
    to_compact,
)

AddressLike = Union[str, bytes]
BlockId = Union[int, str]

UINT256_MAX = (1 << 256) - 1
# getChannel already reports a settled channel as (closeDeadline 0, settled true); this is the raw
# all-ones 40-bit marker from the packed slot, checked too in case a deployment returns it unmapped.
_SETTLED_DEADLINE = (1 << 40) - 1

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string), from require/revert("...")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256), from assert/overflow


# ------------------------------------------------------------------ errors


class ContractRevert(Exception):
    """A ChannelDeposit call or transaction reverted.

    `error_name` is the custom error (e.g. "NothingToClaim"), "Error"/"Panic" for Solidity's built-in
    ones, or None when the data matches nothing in the ABI (then `data`/`reason` hold what is known).
    `args` are the error's decoded arguments (ChannelDeposit's errors take none).
    """

    def __init__(
        self,
        function: str,
        error_name: str | None,
        args: tuple = (),
        *,
        data: bytes = b"",
        reason: str | None = None,
        tx_hash: bytes | None = None,
        block_number: int | None = None,
    ) -> None:
        super().__init__(*args)  # Exception.args carries the decoded error arguments
        self.function = function
        self.error_name = error_name
        self.data = data
        self.reason = reason
        self.tx_hash = tx_hash
        self.block_number = block_number

    def __str__(self) -> str:
        if self.error_name is not None:
            what = f"{self.error_name}({', '.join(repr(a) for a in self.args)})"
        else:
            what = self.reason or "no reason given"
            if self.data:
                what += f" (data 0x{self.data.hex()})"
        where = f" in tx 0x{self.tx_hash.hex()}" if self.tx_hash else ""
        return f"{self.function} reverted: {what}{where}"

    def __repr__(self) -> str:
        return f"ContractRevert({str(self)!r})"

    def __reduce__(self):  # keep pickling working although `args` are not the constructor's arguments
        return (
            _rebuild_revert,
            (self.function, self.error_name, self.args, self.data, self.reason, self.tx_hash, self.block_number),
        )


def _rebuild_revert(function, error_name, args, data, reason, tx_hash, block_number) -> ContractRevert:
    return ContractRevert(
        function, error_name, args, data=data, reason=reason, tx_hash=tx_hash, block_number=block_number
    )


@cache
def _error_table() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    """4-byte selector -> (name, argument types) for every custom error in the ABI."""
    table = {}
    for entry in channel_deposit_artifact().abi:
        if entry["type"] == "error":
            types = tuple(_canonical_type(i) for i in entry["inputs"])
            table[keccak256(f"{entry['name']}({','.join(types)})".encode())[:4]] = (entry["name"], types)
    return table


def decode_revert_data(data: bytes) -> tuple[str | None, tuple]:
    """(error name, decoded arguments) for raw revert data; (None, ()) when it matches nothing known."""
    selector, body = data[:4], data[4:]
    try:
        if selector in _error_table():
            name, types = _error_table()[selector]
            return name, tuple(eth_abi.decode(list(types), body)) if types else ()
        if selector == _ERROR_STRING_SELECTOR:
            return "Error", tuple(eth_abi.decode(["string"], body))
        if selector == _PANIC_SELECTOR:
            return "Panic", tuple(eth_abi.decode(["uint256"], body))
    except Exception:  # malformed arguments: keep the name, the raw data stays on the exception
        known = _error_table().get(selector)
        return (known[0] if known else None), ()
    return None, ()


def _tester_failure_type() -> type | None:
    try:  # eth-tester is only present for the dev chain and tests
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # pragma: no cover
        return None
    return TransactionFailed


def _revert_payload(exc: BaseException) -> tuple[bytes, str | None] | None:
    """(raw revert data, reason text) if `exc` is a revert, else None.

    Nodes report reverts differently: web3 raises ContractLogicError with the data as hex (sometimes
    prefixed "Reverted ", sometimes nested in a dict); eth-tester raises TransactionFailed with
    "execution reverted: b'...'" (the bytes' repr) or an already decoded Error(string) reason."""
    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, Mapping):
            data = data.get("data")
        if isinstance(data, str):
            hexpart = data.split(" ", 1)[1] if data.startswith("Reverted ") else data
            if hexpart.startswith("0x"):
                try:
                    return bytes.fromhex(hexpart[2:]), None
                except ValueError:
                    pass
        return b"", exc.message
    tester_failure = _tester_failure_type()
    if tester_failure is not None and isinstance(exc, tester_failure):
        message = str(exc.args[0]) if exc.args else ""
        raw = message.split("execution reverted: ", 1)[-1]
        if raw.startswith(("b'", 'b"')):
            try:
                value = ast.literal_eval(raw)
                if isinstance(value, bytes):
                    return value, None
            except (ValueError, SyntaxError):
                pass
        return b"", raw
    if isinstance(exc, Web3RPCError) and "revert" in (exc.message or "").lower():
        error = (exc.rpc_response or {}).get("error") or {}
        data = error.get("data") if isinstance(error, Mapping) else None
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return bytes.fromhex(data[2:]), exc.message
            except ValueError:
                pass
        return b"", exc.message
    return None


def _as_revert(exc: BaseException, function: str, **where: Any) -> ContractRevert | None:
    payload = _revert_payload(exc)
    if payload is None:
        return None
    data, reason = payload
    name, args = decode_revert_data(data) if data else (None, ())
    return ContractRevert(function, name, args, data=data, reason=reason, **where)


# ------------------------------------------------------------------ senders


class Sender(ABC):
    """Who signs and pays for a transaction: an account the node unlocks, or a key held here."""

    address: str  # checksum address

    @abstractmethod
    async def send(self, w3: AsyncWeb3, tx: dict) -> bytes:
        """Sends a transaction that already has from/to/data/value/gas; returns its hash."""

    @staticmethod
    def unlocked(address: AddressLike) -> UnlockedSender:
        return UnlockedSender(address)

    @staticmethod
    def from_key(private_key: bytes | str) -> LocalKeySender:
        return LocalKeySender(private_key)


class UnlockedSender(Sender):
    """An account the node signs for (`eth_sendTransaction`): dev chains, a local geth/anvil."""

    def __init__(self, address: AddressLike) -> None:
        self.address = to_checksum_address(address)

    async def send(self, w3: AsyncWeb3, tx: dict) -> bytes:
        return bytes(await w3.eth.send_transaction(tx))

    def __repr__(self) -> str:
        return f"UnlockedSender({self.address})"


class LocalKeySender(Sender):
    """A private key held in this process: builds an EIP-1559 transaction, signs it with eth-account
    and sends it raw, so it works against any node. The key never appears in repr/str/errors."""

    def __init__(self, private_key: bytes | str) -> None:
        try:
            account = Account.from_key(private_key)
        except Exception:
            raise ValueError("invalid private key") from None  # never echo the key material
        self._account = account
        self.address = account.address
        # Nonce lookup, signing and sending are serialized so concurrent writes from this process
        # do not read the same 'pending' nonce.
        self._lock = asyncio.Lock()

    async def send(self, w3: AsyncWeb3, tx: dict) -> bytes:
        async with self._lock:
            full = {k: v for k, v in tx.items() if k != "from"}
            full["chainId"] = await w3.eth.chain_id
            full["nonce"] = await w3.eth.get_transaction_count(self.address, "pending")
            full.update(await _fees(w3))
            signed = self._account.sign_transaction(full)
            return bytes(await w3.eth.send_raw_transaction(signed.raw_transaction))

    def sign_digest(self, digest: bytes) -> bytes:
        """A 65-byte signature over a 32-byte EIP-712 digest (e.g. the payer's consent to a
        cooperative close), made with the same key that sends, which never leaves this object."""
        return bytes(self._account.unsafe_sign_hash(digest).signature)

    def __repr__(self) -> str:
        return f"LocalKeySender({self.address})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("LocalKeySender holds a private key and is not picklable")


async def _fees(w3: AsyncWeb3) -> dict[str, int]:
    """EIP-1559 fees from the node: the tip it suggests, and a max fee of twice the latest base fee
    plus the tip, which stays valid through several full blocks of base-fee increases (12.5% each)."""
    latest = await w3.eth.get_block("latest")
    base_fee = latest.get("baseFeePerGas")
    if base_fee is None:  # a pre-London chain
        return {"gasPrice": int(await w3.eth.gas_price)}
    tip = int(await w3.eth.max_priority_fee)
    return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base_fee) + tip}


# ------------------------------------------------------------------ typed results


@dataclass(frozen=True, slots=True)
class OnChainChannel:
    """`getChannel` decoded. A channel that was never funded reads as all zeros."""

    deposited: int
    claimed: int
    close_deadline: int | None  # the finalization time while a payer's close is pending
    settled: bool

    @property
    def exists(self) -> bool:
        return self.deposited > 0  # deposits of zero revert, so a funded channel is never 0

    @property
    def closing(self) -> bool:
        return self.close_deadline is not None

    @property
    def unclaimed(self) -> int:
        return self.deposited - self.claimed


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelEventLog:
    """One decoded ChannelDeposit log; subclasses carry the event's own fields (snake_case)."""

    block_number: int
    log_index: int
    tx_hash: bytes

    event_name: ClassVar[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelOpened(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelOpened"
    channel_id: bytes
    payer: str
    receiver: str
    signer: str
    token: str
    close_delay: int
    salt: int
    receiver_authorizer: str
    deposited: int

    @property
    def config(self) -> ChannelConfig:
        """The whole configuration travels in this event, so a watcher can rebuild the channel."""
        token = None if to_canonical_address(self.token) == ZERO_ADDRESS else self.token
        return ChannelConfig.create(
            self.payer, self.signer, self.receiver, token, self.close_delay, self.salt, self.receiver_authorizer
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelDeposited(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelDeposited"
    channel_id: bytes
    amount: int
    total_deposited: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelClaimed(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelClaimed"
    channel_id: bytes
    total_claimed: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseRequested(ChannelEventLog):
    event_name: ClassVar[str] = "CloseRequested"
    channel_id: bytes
    deadline: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelSettled(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelSettled"
    channel_id: bytes
    total_claimed: int
    refunded: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PayoutDeferred(ChannelEventLog):
    event_name: ClassVar[str] = "PayoutDeferred"
    token: str
    account: str
    amount: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingWithdrawn(ChannelEventLog):
    event_name: ClassVar[str] = "PendingWithdrawn"
    token: str
    account: str
    to: str
    amount: int


EVENT_TYPES: tuple[type[ChannelEventLog], ...] = (
    ChannelOpened,
    ChannelDeposited,
    ChannelClaimed,
    CloseRequested,
    ChannelSettled,
    PayoutDeferred,
    PendingWithdrawn,
)

E = TypeVar("E", bound=ChannelEventLog)


@dataclass(frozen=True, slots=True)
class TxResult:
    """A mined, successful transaction and the ChannelDeposit events it emitted, in log order."""

    tx_hash: bytes
    block_number: int
    gas_used: int
    effective_gas_price: int
    events: tuple[ChannelEventLog, ...]

    @property
    def fee(self) -> int:
        return self.gas_used * self.effective_gas_price

    def events_of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


# ------------------------------------------------------------------ event decoding


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _canonical_type(param: dict) -> str:
    if param["type"].startswith("tuple"):  # not used by ChannelDeposit's events/errors
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


@lru_cache(maxsize=4096)
def _checksum(raw: bytes) -> str:
    """EIP-55 checksum of 20 address bytes with the fast keccak (eth-utils' is most of a decode's
    time); cached because the same payers, receivers and tokens recur in every log."""
    lower = raw.hex()
    digest = keccak256(lower.encode()).hex()
    return "0x" + "".join(c.upper() if d in "89abcdef" else c for c, d in zip(lower, digest))


def _word_decoder(abi_type: str):
    """Decoder for one 32-byte word of a static type; None for types that need eth-abi."""
    if abi_type == "address":
        return lambda word: _checksum(word[12:])
    if abi_type.startswith("uint"):
        return lambda word: int.from_bytes(word, "big")
    if abi_type == "bool":
        return lambda word: word[-1] == 1
    if abi_type == "bytes32":
        return bytes
    return None


@dataclass(frozen=True, slots=True)
class _EventSpec:
    cls: type[ChannelEventLog]
    topic_fields: tuple[tuple[str, Any], ...]  # (field, word decoder) for topics[1:]
    data_fields: tuple[str, ...]
    data_types: tuple[str, ...]
    data_words: tuple[Any, ...] | None  # word decoders when every data field is static


@cache
def _event_specs() -> dict[bytes, _EventSpec]:
    """topic0 -> how to decode that event, built once from the committed ABI. Fails at first use if
    the ABI and the dataclasses above drift apart (a renamed or added field)."""
    by_name = {cls.event_name: cls for cls in EVENT_TYPES}
    specs = {}
    for entry in channel_deposit_artifact().abi:
        if entry["type"] != "event" or entry.get("anonymous"):
            continue
        cls = by_name.get(entry["name"])
        if cls is None:
            raise RuntimeError(f"ChannelDeposit event {entry['name']} has no dataclass in chain.client")
        names = [_snake(i["name"]) for i in entry["inputs"]]
        own = [f.name for f in fields(cls) if f.name not in ("block_number", "log_index", "tx_hash")]
        if sorted(names) != sorted(own):
            raise RuntimeError(f"{cls.__name__} fields {own} do not match the ABI's {names}")
        types = [_canonical_type(i) for i in entry["inputs"]]
        topic0 = keccak256(f"{entry['name']}({','.join(types)})".encode())
        indexed = [(n, _word_decoder(t)) for n, t, i in zip(names, types, entry["inputs"]) if i["indexed"]]
        if any(decoder is None for _, decoder in indexed):
            raise RuntimeError(f"{entry['name']}: indexed dynamic types are not supported")
        data = [(n, t) for n, t, i in zip(names, types, entry["inputs"]) if not i["indexed"]]
        words = tuple(_word_decoder(t) for _, t in data)
        specs[topic0] = _EventSpec(
            cls=cls,
            topic_fields=tuple(indexed),
            data_fields=tuple(n for n, _ in data),
            data_types=tuple(t for _, t in data),
            data_words=None if any(w is None for w in words) else words,
        )
    missing = set(by_name) - {s.cls.event_name for s in specs.values()}
    if missing:
        raise RuntimeError(f"events {sorted(missing)} are not in the ChannelDeposit ABI")
    return specs


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


def decode_log(log: Mapping[str, Any]) -> ChannelEventLog | None:
    """Decodes one log if its topic0 is a ChannelDeposit event, else None. Does not check the emitter:
    callers filter by address (a token could emit a log with the same topic)."""
    topics = log.get("topics") or ()
    if not topics:
        return None
    spec = _event_specs().get(_as_bytes(topics[0]))
    if spec is None or len(topics) != len(spec.topic_fields) + 1:
        return None
    values: dict[str, Any] = {}
    for (name, decoder), topic in zip(spec.topic_fields, topics[1:]):
        values[name] = decoder(_as_bytes(topic))
    data = _as_bytes(log.get("data") or b"")
    if spec.data_words is not None:
        if len(data) != 32 * len(spec.data_words):
            return None
        for i, (name, decoder) in enumerate(zip(spec.data_fields, spec.data_words)):
            values[name] = decoder(data[32 * i : 32 * i + 32])
    else:  # pragma: no cover - ChannelDeposit's events are all static
        for name, value in zip(spec.data_fields, eth_abi.decode(list(spec.data_types), data)):
            values[name] = value
    return spec.cls(
        block_number=_as_int(log["blockNumber"]),
        log_index=_as_int(log["logIndex"]),
        tx_hash=_as_bytes(log["transactionHash"]),
        **values,
    )


def _as_int(value: Any) -> int:
    """Quantities arrive as ints from web3's formatters and as 0x-hex from a raw JSON-RPC answer."""
    return int(value, 16) if isinstance(value, str) else int(value)


# ------------------------------------------------------------------ sending


def _uint(value: int, name: str, maximum: int = UINT256_MAX) -> int:
    # Amounts are base units; a float (or bool) here is a bug upstream, not something to round.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} out of range: {value}")
    return value


def _address(value: AddressLike | None) -> str:
    return to_checksum_address(ZERO_ADDRESS if value is None else value)


_NO_SIGNATURE = (b"\0" * 32, b"\0" * 32)


def _claim_amounts(voucher_amount: int, claim_amount: int) -> tuple[int, int]:
    """(voucher amount, claim amount) checked as the contract will: a claim above its voucher reverts
    ClaimAboveVoucher, so it is refused here before any gas is spent."""
    voucher_amount = _uint(voucher_amount, "voucher_amount", UINT128_MAX)
    claim_amount = _uint(claim_amount, "claim_amount", UINT128_MAX)
    if claim_amount > voucher_amount:
        raise ValueError(f"claim_amount {claim_amount} is above the voucher {voucher_amount}")
    return voucher_amount, claim_amount

#: Headroom over `eth_estimateGas`: state can change before inclusion, and payouts forward a bounded
#: amount of gas that some nodes' estimates cut close.
GAS_MARGIN_PERCENT = 20


def _raise_if_revert(exc: BaseException, function: str, **where: Any) -> None:
    revert = _as_revert(exc, function, **where)
    if revert is not None:
        raise revert from exc


async def _send_and_wait(
    w3: AsyncWeb3, sender: Sender, tx: dict, gas: int | None, function: str, *, timeout: float, poll_latency: float
) -> Mapping[str, Any]:
    """Estimate (unless `gas` is given), send, wait for the receipt; ContractRevert on any revert."""
    if gas is None:
        try:
            estimate = int(await w3.eth.estimate_gas(tx))
        except Exception as exc:
            _raise_if_revert(exc, function)
            raise
        gas = estimate + estimate * GAS_MARGIN_PERCENT // 100
    tx = {**tx, "gas": _uint(gas, "gas")}
    try:
        tx_hash = await sender.send(w3, tx)
    except Exception as exc:  # some nodes simulate on send and report the revert right away
        _raise_if_revert(exc, function)
        raise
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=poll_latency)
    if receipt["status"] != 1:
        raise await _mined_revert(w3, function, tx, receipt)
    return receipt


async def _mined_revert(w3: AsyncWeb3, function: str, tx: dict, receipt: Mapping[str, Any]) -> ContractRevert:
    """Receipts carry no revert data, so replay the call on the state before its block. Earlier
    transactions of the same block are not replayed, so on a busy chain this is best effort."""
    where = {"tx_hash": bytes(receipt["transactionHash"]), "block_number": int(receipt["blockNumber"])}
    try:
        await w3.eth.call(tx, max(where["block_number"] - 1, 0))
    except Exception as exc:
        revert = _as_revert(exc, function, **where)
        if revert is not None:
            return revert
        raise
    out_of_gas = int(receipt["gasUsed"]) >= int(tx["gas"])
    reason = f"out of gas ({tx['gas']} given)" if out_of_gas else "reverted on chain; the replay did not revert"
    return ContractRevert(function, None, (), reason=reason, **where)


# ------------------------------------------------------------------ the client


class ChannelDepositClient:
    """Typed access to one ChannelDeposit deployment.

    Writes use `sender` (per call) or the client's default sender, and `gas`: when given, no
    estimation happens (one fewer round trip; on py-evm it halves a transaction's time), and a revert
    is found from the receipt and decoded by replaying the call on the previous block's state.
    """

    def __init__(
        self,
        w3: AsyncWeb3,
        address: AddressLike,
        *,
        sender: Sender | None = None,
        receipt_timeout: float = 120.0,
        poll_latency: float = 0.5,
    ) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.sender = sender
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        self.contract = w3.eth.contract(address=self.address, abi=channel_deposit_artifact().abi)
        self._canonical = to_canonical_address(self.address)
        self._domain: Domain | None = None

    def __repr__(self) -> str:
        return f"ChannelDepositClient({self.address}, sender={self.sender!r})"

    def with_sender(self, sender: Sender) -> ChannelDepositClient:
        """The same deployment with another default sender (shares the cached domain)."""
        other = ChannelDepositClient(
            self.w3, self.address, sender=sender, receipt_timeout=self.receipt_timeout, poll_latency=self.poll_latency
        )
        other._domain = self._domain
        return other

    @classmethod
    async def deploy(
        cls,
        w3: AsyncWeb3,
        sender: Sender,
        max_deposit_per_channel: int = 0,
        gas: int | None = None,
        *,
        receipt_timeout: float = 120.0,
        poll_latency: float = 0.5,
    ) -> ChannelDepositClient:
        """Deploys the committed artifact; the deployer becomes the client's default sender.
        `max_deposit_per_channel` 0 means uncapped."""
        artifact = channel_deposit_artifact()
        data = artifact.bytecode + eth_abi.encode(["uint256"], [_uint(max_deposit_per_channel, "max_deposit")]).hex()
        tx = {"from": sender.address, "data": data, "value": 0}
        receipt = await _send_and_wait(
            w3, sender, tx, gas, "constructor", timeout=receipt_timeout, poll_latency=poll_latency
        )
        address = receipt.get("contractAddress")
        if not address:
            raise RuntimeError("deployment receipt has no contract address")
        return cls(w3, address, sender=sender, receipt_timeout=receipt_timeout, poll_latency=poll_latency)

    # ------------------------------------------------------------------ identity

    async def domain(self) -> Domain:
        """The EIP-712 domain, from the chain's id as the node reports it; cached."""
        if self._domain is None:
            self._domain = Domain(int(await self.w3.eth.chain_id), self.address)
        return self._domain

    async def verify_domain(self) -> Domain:
        """The domain, checked against the contract's own `domainSeparator()`: vouchers signed for a
        wrong chain id or address would all be rejected on chain, so a node checks this at startup."""
        domain = await self.domain()
        on_chain = bytes(await self._call("domainSeparator"))
        if on_chain != domain.separator:
            raise ValueError(f"domain separator mismatch for {self.address} on chain {domain.chain_id}")
        return domain

    async def channel_id(self, config: ChannelConfig) -> bytes:
        return channel_id(await self.domain(), config)

    # ------------------------------------------------------------------ reads

    async def get_channel(self, config_or_id: ChannelConfig | bytes, block: BlockId = "latest") -> OnChainChannel:
        cid = config_or_id if isinstance(config_or_id, (bytes, bytearray)) else await self.channel_id(config_or_id)
        if len(cid) != 32:
            raise ValueError("a channel id is 32 bytes")
        deposited, claimed, deadline, settled = await self._call("getChannel", bytes(cid), block=block)
        settled = bool(settled) or deadline == _SETTLED_DEADLINE
        return OnChainChannel(
            deposited=int(deposited),
            claimed=int(claimed),
            close_deadline=None if settled or deadline == 0 else int(deadline),
            settled=settled,
        )

    async def pending_payouts(self, token: AddressLike | None, account: AddressLike, block: BlockId = "latest") -> int:
        """Deferred payouts of `token` (None or the zero address for ETH) owed to `account`."""
        return int(await self._call("pendingPayouts", _address(token), _address(account), block=block))

    async def max_deposit_per_channel(self) -> int:
        return int(await self._call("maxDepositPerChannel"))

    # ------------------------------------------------------------------ writes

    async def deposit_eth(
        self, config: ChannelConfig, amount: int, *, sender: Sender | None = None, gas: int | None = None
    ) -> TxResult:
        """Opens (first deposit) or tops up an ETH channel with `amount` wei."""
        if not config.is_eth:  # the contract would revert WrongValue; say so before spending gas
            raise ValueError("deposit_eth needs an ETH channel (token = zero address)")
        return await self._transact(
            "depositEth", [config.as_abi_tuple()], value=_uint(amount, "amount"), sender=sender, gas=gas
        )

    async def deposit_token(
        self, config: ChannelConfig, amount: int, *, sender: Sender | None = None, gas: int | None = None
    ) -> TxResult:
        """Opens or tops up an ERC-20 channel from the sender's approved balance."""
        if config.is_eth:  # the contract would revert WrongValue; say so before spending gas
            raise ValueError("deposit_token needs a token channel (use deposit_eth for ETH)")
        return await self._transact(
            "depositToken", [config.as_abi_tuple(), _uint(amount, "amount")], sender=sender, gas=gas
        )

    async def deposit_token_with_permit(
        self, config: ChannelConfig, amount: int, deadline: int, r: bytes, vs: bytes, *,
        sender: Sender | None = None, gas: int | None = None,
    ) -> TxResult:
        """`deposit_token` with the payer's EIP-2612 permit (compact r, vs) in the same transaction:
        no separate approve. Reverts TokenTransferFailed when the permit did not grant the allowance."""
        if config.is_eth:
            raise ValueError("deposit_token_with_permit needs a token channel (use deposit_eth for ETH)")
        args = [config.as_abi_tuple(), _uint(amount, "amount"), _uint(deadline, "deadline"), bytes(r), bytes(vs)]
        return await self._transact("depositTokenWithPermit", args, sender=sender, gas=gas)  # fmt: skip

    async def claim(
        self,
        config: ChannelConfig,
        voucher_amount: int,
        signature: bytes,
        claim_amount: int | None = None,
        *,
        sender: Sender | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Raises the receiver's claimed total to `claim_amount` (default: the whole voucher) under
        the voucher for `voucher_amount` (signature: 65-byte or EIP-2098 64-byte). The sender must be
        the receiver or the channel's receiver authorizer."""
        claim_amount = voucher_amount if claim_amount is None else claim_amount
        r, vs = to_compact(signature)
        args = [config.as_abi_tuple(), *_claim_amounts(voucher_amount, claim_amount), r, vs]
        return await self._transact("claim", args, sender=sender, gas=gas)

    async def claim_batch(
        self,
        receiver: AddressLike,
        token: AddressLike | None,
        items: Sequence[tuple[ChannelConfig, int, bytes] | tuple[ChannelConfig, int, bytes, int]],
        *,
        receiver_authorizer: AddressLike | None = None,
        sender: Sender | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Claims many channels of one receiver, authorizer and token with a single payout. Items are
        (config, voucher amount, signature[, claim amount]); the claim amount defaults to the voucher."""
        receiver_bytes = to_canonical_address(receiver)
        token_bytes = ZERO_ADDRESS if token is None else to_canonical_address(token)
        authorizer_bytes = ZERO_ADDRESS if receiver_authorizer is None else to_canonical_address(receiver_authorizer)
        if not items:
            raise ValueError("claim_batch needs at least one item")
        encoded = []
        for item in items:
            config, voucher_amount, signature = item[:3]
            claim_amount = item[3] if len(item) > 3 else voucher_amount
            # The contract rebuilds each id from the batch's receiver, authorizer and token: a
            # mismatched config would name a channel that does not exist and be skipped silently.
            if (config.receiver, config.token, config.receiver_authorizer) != (receiver_bytes, token_bytes, authorizer_bytes):
                raise ValueError("every batch item must share the batch's receiver, authorizer and token")
            r, vs = to_compact(signature)
            payer, signer = to_checksum_address(config.payer), to_checksum_address(config.signer)
            encoded.append((payer, signer, config.close_delay, config.salt, *_claim_amounts(voucher_amount, claim_amount), r, vs))
        args = [_address(receiver), _address(receiver_authorizer), _address(token), encoded]
        return await self._transact("claimBatch", args, sender=sender, gas=gas)

    async def close_by_receiver(
        self,
        config: ChannelConfig,
        voucher_amount: int = 0,
        signature: bytes | None = None,
        claim_amount: int | None = None,
        *,
        sender: Sender | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """The receiver (or its authorizer) settles, claiming `claim_amount` (default: the whole
        voucher) under its best voucher, or nothing new (amount 0, no signature); the payer gets the rest."""
        claim_amount = voucher_amount if claim_amount is None else claim_amount
        if signature is None and claim_amount != 0:
            raise ValueError("a non-zero claim needs the voucher's signature")
        r, vs = _NO_SIGNATURE if signature is None else to_compact(signature)
        args = [config.as_abi_tuple(), *_claim_amounts(voucher_amount, claim_amount), r, vs]
        return await self._transact("closeByReceiver", args, sender=sender, gas=gas)

    async def close_cooperative(
        self,
        config: ChannelConfig,
        claim_amount: int,
        payer_signature: bytes = b"",
        receiver_signature: bytes = b"",
        *,
        sender: Sender | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Ends the channel at the agreed total. A party that is the sender may pass no signature;
        signatures are 65/64-byte ECDSA or an EIP-1271 blob, passed to the contract as they are."""
        amount = _uint(claim_amount, "claim_amount", UINT128_MAX)
        args = [config.as_abi_tuple(), amount, bytes(payer_signature), bytes(receiver_signature)]
        return await self._transact("closeCooperative", args, sender=sender, gas=gas)

    async def request_close(
        self, config: ChannelConfig, *, sender: Sender | None = None, gas: int | None = None
    ) -> TxResult:
        """The payer starts the close delay (a `CloseRequested` event carries the deadline)."""
        return await self._transact("requestClose", [config.as_abi_tuple()], sender=sender, gas=gas)

    async def finalize_close(
        self, config: ChannelConfig, *, sender: Sender | None = None, gas: int | None = None
    ) -> TxResult:
        """Anyone, after the deadline: refunds what was never claimed to the payer."""
        return await self._transact("finalizeClose", [config.as_abi_tuple()], sender=sender, gas=gas)

    async def withdraw_pending(
        self, token: AddressLike | None, to: AddressLike, *, sender: Sender | None = None, gas: int | None = None
    ) -> TxResult:
        """The sender withdraws its deferred payouts of `token` (None for ETH) to `to`."""
        return await self._transact("withdrawPending", [_address(token), _address(to)], sender=sender, gas=gas)

    # ------------------------------------------------------------------ events

    def decode_events(self, receipt: Mapping[str, Any]) -> list[ChannelEventLog]:
        """This deployment's events in a receipt, in log order (other emitters' logs are ignored)."""
        out = []
        for log in receipt.get("logs") or ():
            if to_canonical_address(log["address"]) != self._canonical:
                continue
            event = decode_log(log)
            if event is not None:
                out.append(event)
        return out

    async def get_events(
        self,
        from_block: BlockId,
        to_block: BlockId = "latest",
        *,
        kinds: Iterable[type[ChannelEventLog]] | None = None,
    ) -> list[ChannelEventLog]:
        """This deployment's events in a block range (inclusive), sorted by (block, log index).
        Nodes cap the range or result size of eth_getLogs; a watcher pages through large ranges."""
        params: dict[str, Any] = {"address": self.address, "fromBlock": from_block, "toBlock": to_block}
        if kinds is not None:
            wanted = {cls.event_name for cls in kinds}
            if not wanted:
                return []
            params["topics"] = [["0x" + t.hex() for t, s in _event_specs().items() if s.cls.event_name in wanted]]
        logs = await self._raw_logs(params)
        events = [e for e in map(decode_log, logs) if e is not None]
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    async def _raw_logs(self, params: dict[str, Any]) -> list[Mapping[str, Any]]:
        """eth_getLogs without web3's result formatters, which cost about twice the rest of a
        watcher's catch-up; decode_log reads the raw hex itself. Falls back to web3 for providers
        that do not speak raw JSON-RPC (the in-process tester)."""
        make_request = getattr(self.w3.provider, "make_request", None)
        if make_request is None or type(self.w3.provider).__name__.startswith("AsyncEthereumTester"):
            return await self.w3.eth.get_logs(params)
        raw = dict(params)
        for key in ("fromBlock", "toBlock"):
            if isinstance(raw[key], int):
                raw[key] = hex(raw[key])
        response = await make_request("eth_getLogs", [raw])
        if "error" in response:
            raise RuntimeError(f"eth_getLogs failed: {response['error']}")
        return [log for log in response["result"] if not log.get("removed")]

    # ------------------------------------------------------------------ plumbing

    async def _call(self, fn_name: str, *args: Any, block: BlockId = "latest") -> Any:
        try:
            return await self.contract.get_function_by_name(fn_name)(*args).call(block_identifier=block)
        except Exception as exc:
            _raise_if_revert(exc, fn_name)
            raise

    async def _transact(
        self, fn_name: str, args: list, *, value: int = 0, sender: Sender | None, gas: int | None
    ) -> TxResult:
        sender = sender or self.sender
        if sender is None:
            raise ValueError(f"{fn_name}: no sender given and the client has no default sender")
        data = self.contract.encode_abi(fn_name, args)
        tx = {"from": sender.address, "to": self.address, "data": data, "value": value}
        receipt = await _send_and_wait(
            self.w3, sender, tx, gas, fn_name, timeout=self.receipt_timeout, poll_latency=self.poll_latency
        )
        return TxResult(
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            effective_gas_price=int(receipt.get("effectiveGasPrice") or 0),
            events=tuple(self.decode_events(receipt)),
        )


# ------------------------------------------------------------------ ERC-20, for payers

_ERC20_ABI = [
    {"type": "function", "name": "balanceOf", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "allowance", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "nonces", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "DOMAIN_SEPARATOR", "stateMutability": "view",
     "inputs": [], "outputs": [{"name": "", "type": "bytes32"}]},
    # No outputs declared: tokens that return nothing from approve (USDT) are called the same way.
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}], "outputs": []},
]  # fmt: skip


_PERMIT_TYPEHASH = keccak256(b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")


class Erc20Client:
    """The ERC-20 calls a payer needs before a token deposit: balance, EIP-2612 permit, or allowance
    and approve for tokens without permits."""

    def __init__(self, w3: AsyncWeb3, address: AddressLike, *, receipt_timeout: float = 120.0, poll_latency: float = 0.5) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        self.contract = w3.eth.contract(address=self.address, abi=_ERC20_ABI)

    def __repr__(self) -> str:
        return f"Erc20Client({self.address})"

    async def balance_of(self, owner: AddressLike) -> int:
        return int(await self.contract.functions.balanceOf(to_checksum_address(owner)).call())

    async def allowance(self, owner: AddressLike, spender: AddressLike) -> int:
        return int(await self.contract.functions.allowance(to_checksum_address(owner), to_checksum_address(spender)).call())

    async def permit_signature(
        self, owner: LocalKeySender, spender: AddressLike, value: int, deadline: int
    ) -> tuple[bytes, bytes] | None:
        """The owner's EIP-2612 permit for `spender` to take `value` until `deadline`, as compact
        (r, vs); None when the token has no EIP-2612 `nonces`/`DOMAIN_SEPARATOR`. Signed over the
        token's own domain separator, so the token's name and version need not be guessed."""
        try:
            nonce = int(await self.contract.functions.nonces(owner.address).call())
            separator = bytes(await self.contract.functions.DOMAIN_SEPARATOR().call())
        except Exception as exc:
            if isinstance(exc, (BadFunctionCallOutput, Web3ValueError)) or _as_revert(exc, "nonces") is not None:
                return None  # no such functions (a revert or an empty answer): the caller approves instead
            raise
        fields = eth_abi.encode(
            ["address", "address", "uint256", "uint256", "uint256"],
            [owner.address, to_checksum_address(spender), _uint(value, "value"), nonce, _uint(deadline, "deadline")],
        )
        struct_hash = keccak256(_PERMIT_TYPEHASH + fields)
        return to_compact(owner.sign_digest(keccak256(b"\x19\x01" + separator + struct_hash)))

    async def ensure_allowance(self, spender: AddressLike, amount: int, *, sender: Sender, gas: int | None = None) -> None:
        """Lets `spender` take exactly `amount` (never an unlimited allowance: a reader's exposure
        stays what it deposits). Tokens such as USDT refuse a change from one non-zero allowance to
        another, so a stale non-zero allowance is set to zero first."""
        _uint(amount, "amount")
        current = await self.allowance(sender.address, spender)
        if current >= amount:
            return
        if current:
            await self._approve(spender, 0, sender=sender, gas=gas)
        await self._approve(spender, amount, sender=sender, gas=gas)

    async def _approve(self, spender: AddressLike, amount: int, *, sender: Sender, gas: int | None) -> None:
        data = self.contract.encode_abi("approve", [to_checksum_address(spender), amount])
        tx = {"from": sender.address, "to": self.address, "data": data, "value": 0}
        await _send_and_wait(self.w3, sender, tx, gas, "approve", timeout=self.receipt_timeout, poll_latency=self.poll_latency)


__all__ = [
    "EVENT_TYPES",
    "ChannelClaimed",
    "ChannelDeposited",
    "ChannelDepositClient",
    "ChannelEventLog",
    "ChannelOpened",
    "ChannelSettled",
    "CloseRequested",
    "ContractRevert",
    "Erc20Client",
    "LocalKeySender",
    "OnChainChannel",
    "PayoutDeferred",
    "PendingWithdrawn",
    "Sender",
    "TxResult",
    "UnlockedSender",
    "decode_log",
    "decode_revert_data",
]


def as_revert(exc: BaseException, function: str) -> ContractRevert | None:
    """The ContractRevert an exception from a call, estimate or send stands for, or None when it
    is not a revert (a transport or node failure)."""
    return _as_revert(exc, function)
