"""A thin, typed client for one ChannelDeposit deployment over web3.py's `AsyncWeb3`.

Deploy, reads (`get_channel`, `pending_payouts`), writes that return a `TxResult` with decoded
events, and event queries for a watcher. Amounts are Python ints end to end. A revert anywhere
surfaces as `ContractRevert` (`chain/reverts.py`); transactions follow the one fee, nonce and gas
policy of `chain/accounts.py`; logs are decoded by `chain/logs.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_canonical_address, to_checksum_address
from web3 import AsyncWeb3
from web3.types import FilterParams

from channel_node.chain.accounts import AddressLike, Sender, send_and_wait
from channel_node.chain.artifacts import channel_deposit_artifact
from channel_node.chain.logs import ChannelEventLog, decode_log, event_topics
from channel_node.chain.ports import ChainTime, OnChainChannel
from channel_node.chain.reverts import raise_if_revert
from channel_node.signing.eip712 import ZERO_ADDRESS, ChannelConfig, Domain, channel_id, to_compact
from channel_node.types import UINT128_MAX
from channel_node.types import check_uint as _uint

BlockId = int | str

# getChannel already reports a settled channel as (closeDeadline 0, settled true); this is the raw
# all-ones 40-bit marker from the packed slot, checked too in case a deployment returns it unmapped.
_SETTLED_DEADLINE = (1 << 40) - 1

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


class ChannelDepositClient:
    """Typed access to one ChannelDeposit deployment.

    Writes use `sender` (per call) or the client's default sender, and `gas`: when given, no
    estimation happens (one fewer round trip; on py-evm it halves a transaction's time), and a revert
    is found from the receipt and decoded by replaying the call on the previous block's state.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
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
        w3: AsyncWeb3[Any],
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
        data = artifact.bytecode + abi_encode(["uint256"], [_uint(max_deposit_per_channel, "max_deposit")]).hex()
        tx = {"from": sender.address, "data": data, "value": 0}
        receipt = await send_and_wait(
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
            close_deadline=None if settled or deadline == 0 else ChainTime(int(deadline)),
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
            topics = event_topics(kinds)
            if not topics:
                return []
            params["topics"] = [topics]
        logs = await self._raw_logs(params)
        events = [e for e in map(decode_log, logs) if e is not None]
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return events

    async def _raw_logs(self, params: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        """eth_getLogs without web3's result formatters, which cost about twice the rest of a
        watcher's catch-up; decode_log reads the raw hex itself. Falls back to web3 for providers
        that do not speak raw JSON-RPC (the in-process tester)."""
        make_request = getattr(self.w3.provider, "make_request", None)
        if make_request is None or type(self.w3.provider).__name__.startswith("AsyncEthereumTester"):
            return await self.w3.eth.get_logs(cast(FilterParams, params))  # built with FilterParams' keys by get_events
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
            raise_if_revert(exc, fn_name)
            raise

    async def _transact(
        self, fn_name: str, args: list[Any], *, value: int = 0, sender: Sender | None, gas: int | None
    ) -> TxResult:
        sender = sender or self.sender
        if sender is None:
            raise ValueError(f"{fn_name}: no sender given and the client has no default sender")
        data = self.contract.encode_abi(fn_name, args)
        tx = {"from": sender.address, "to": self.address, "data": data, "value": value}
        receipt = await send_and_wait(
            self.w3, sender, tx, gas, fn_name, timeout=self.receipt_timeout, poll_latency=self.poll_latency
        )
        return TxResult(
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            effective_gas_price=int(receipt.get("effectiveGasPrice") or 0),
            events=tuple(self.decode_events(receipt)),
        )



__all__ = ["BlockId", "ChannelDepositClient", "OnChainChannel", "TxResult"]
