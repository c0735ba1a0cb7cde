"""The ERC-20 calls a payer needs before a token deposit: balance, an EIP-2612 permit, or an
allowance and approve for tokens without permits (docs/security.md: a reader's exposure stays
what it deposits, so an allowance is never unlimited). Approvals are sent under the one
transaction policy of `chain/accounts.py`."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import BadFunctionCallOutput, Web3ValueError

from channel_node.chain.accounts import AddressLike, LocalKeySender, Sender, send_and_wait
from channel_node.chain.reverts import _as_revert
from channel_node.signing.eip712 import keccak256, to_compact
from channel_node.types import check_uint as _uint

_ERC20_ABI = [
    {"type": "function", "name": "balanceOf", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "allowance", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "nonces", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "symbol", "stateMutability": "view",
     "inputs": [], "outputs": [{"name": "", "type": "string"}]},
    {"type": "function", "name": "decimals", "stateMutability": "view",
     "inputs": [], "outputs": [{"name": "", "type": "uint8"}]},
    {"type": "function", "name": "DOMAIN_SEPARATOR", "stateMutability": "view",
     "inputs": [], "outputs": [{"name": "", "type": "bytes32"}]},
    # No outputs declared: tokens that return nothing from approve (USDT) are called the same way.
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}], "outputs": []},
]  # fmt: skip


# What a token answers to symbol() and decimals(), per endpoint and token: neither changes for a
# deployed token, so each is read once per process (docs/amounts.md).
_METADATA: dict[tuple[str, str], tuple[str | None, int | None]] = {}

_PERMIT_TYPEHASH = keccak256(b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")


class Erc20Client:
    """The ERC-20 calls a payer needs before a token deposit: balance, EIP-2612 permit, or allowance
    and approve for tokens without permits."""

    def __init__(self, w3: AsyncWeb3[Any], address: AddressLike, *, receipt_timeout: float = 120.0, poll_latency: float = 0.5) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        self.contract = w3.eth.contract(address=self.address, abi=_ERC20_ABI)

    def __repr__(self) -> str:
        return f"Erc20Client({self.address})"

    async def metadata(self) -> tuple[str | None, int | None]:
        """The token's `symbol()` and `decimals()` as it answers them (cached per endpoint and
        token); None for one the token does not answer (both are optional in ERC-20). The caller
        turns them into what is shown (`channel_node.amounts.token_asset`): a symbol is anyone's text."""
        key = (str(getattr(self.w3.provider, "endpoint_uri", None) or id(self.w3.provider)), self.address)
        if key not in _METADATA:
            symbol = await self._optional(self.contract.functions.symbol(), "symbol")
            decimals = await self._optional(self.contract.functions.decimals(), "decimals")
            _METADATA[key] = (
                symbol if isinstance(symbol, str) else None,
                decimals if isinstance(decimals, int) and not isinstance(decimals, bool) else None,
            )
        return _METADATA[key]

    @staticmethod
    async def _optional(call: Any, name: str) -> object:
        try:
            result: object = await call.call()
        except Exception as exc:
            if isinstance(exc, (BadFunctionCallOutput, Web3ValueError, OverflowError, UnicodeDecodeError)):
                return None  # not implemented, or an answer of another type (a bytes32 symbol)
            if _as_revert(exc, name) is not None:
                return None
            raise
        return result

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
        fields = abi_encode(
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
        await send_and_wait(self.w3, sender, tx, gas, "approve", timeout=self.receipt_timeout, poll_latency=self.poll_latency)




__all__ = ["Erc20Client"]
