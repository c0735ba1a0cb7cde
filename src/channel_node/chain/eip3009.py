"""An EIP-3009 token as the node's `exact` sales need it (docs/protocol.md, "The `exact` scheme
(node)"): the reads (name, version, DOMAIN_SEPARATOR, authorizationState, balanceOf), the calldata
of `transferWithAuthorization` (the v, r, s overload every EIP-3009 token has), and the logs that say
what happened to an authorization (AuthorizationUsed, AuthorizationCanceled, Transfer). Raw
`eth_call`s with ABI-encoded arguments, so any token with these signatures works (DemoDollar, USDC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.types import BlockIdentifier, TxParams

from channel_node.signing.eip712 import keccak256


def _selector(signature: str) -> bytes:
    return keccak256(signature.encode())[:4]


TRANSFER_WITH_AUTHORIZATION = _selector(
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
)
TRANSFER_TOPIC = keccak256(b"Transfer(address,address,uint256)")
AUTHORIZATION_USED_TOPIC = keccak256(b"AuthorizationUsed(address,bytes32)")
AUTHORIZATION_CANCELED_TOPIC = keccak256(b"AuthorizationCanceled(address,bytes32)")


def _word(address: bytes) -> bytes:
    return b"\0" * 12 + address


def transfer_with_authorization_calldata(
    payer: bytes, to: bytes, value: int, valid_after: int, valid_before: int, nonce: bytes, signature: bytes
) -> bytes:
    """`transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, v, r, s)`."""
    if len(signature) != 65:
        raise ValueError("an authorization signature is 65 bytes")
    r, s, v = signature[:32], signature[32:64], signature[64]
    args = encode(
        ["address", "address", "uint256", "uint256", "uint256", "bytes32", "uint8", "bytes32", "bytes32"],
        [to_checksum_address(payer), to_checksum_address(to), value, valid_after, valid_before, nonce, v, r, s],
    )
    return TRANSFER_WITH_AUTHORIZATION + args


@dataclass(frozen=True)
class TokenLog:
    """One log of the token, by what the sales care about."""

    tx_hash: bytes
    block_number: int
    topics: tuple[bytes, ...]
    data: bytes


def transfers_to(logs: list[Any], token: bytes, payer: bytes, to: bytes) -> int:
    """The value the token's Transfer(payer -> to) logs in `logs` (a receipt's) moved: 0 when none
    (a token that succeeds and moves nothing)."""
    total = 0
    for log in logs:
        if bytes(HexBytes(log["address"])) != token:
            continue
        topics = [bytes(HexBytes(t)) for t in log["topics"]]
        if len(topics) == 3 and topics[0] == TRANSFER_TOPIC and topics[1] == _word(payer) and topics[2] == _word(to):
            total += int.from_bytes(bytes(HexBytes(log["data"]))[:32] or b"\0", "big")
    return total


class Eip3009Token:
    def __init__(self, w3: AsyncWeb3[Any], address: bytes) -> None:
        self.w3 = w3
        self.address = address
        self.checksum = to_checksum_address(address)

    async def _call(self, data: bytes, block: BlockIdentifier = "latest") -> bytes:
        tx: TxParams = {"to": self.checksum, "data": HexStr("0x" + data.hex())}
        return bytes(await self.w3.eth.call(tx, block))

    async def _string(self, signature: str) -> str:
        raw = await self._call(_selector(signature))
        (value,) = decode(["string"], raw)
        return str(value)

    async def name(self) -> str:
        return await self._string("name()")

    async def version(self) -> str:
        return await self._string("version()")

    async def domain_separator(self) -> bytes | None:
        """DOMAIN_SEPARATOR(), or None for a token without it (not every EIP-3009 token has it)."""
        try:
            raw = await self._call(_selector("DOMAIN_SEPARATOR()"))
        except Exception:
            return None
        return raw[:32] if len(raw) >= 32 else None

    async def authorization_state(self, payer: bytes, nonce: bytes) -> bool:
        raw = await self._call(_selector("authorizationState(address,bytes32)") + _word(payer) + nonce)
        (used,) = decode(["bool"], raw)
        return bool(used)

    async def balance_of(self, owner: bytes) -> int:
        raw = await self._call(_selector("balanceOf(address)") + _word(owner))
        (balance,) = decode(["uint256"], raw)
        return int(balance)

    async def authorization_logs(self, payer: bytes, nonce: bytes, from_block: int = 0) -> list[TokenLog]:
        """The token's AuthorizationUsed and AuthorizationCanceled logs for (payer, nonce)."""
        logs = await self.w3.eth.get_logs({
            "address": self.checksum,
            "fromBlock": from_block,
            "toBlock": "latest",
            "topics": [["0x" + AUTHORIZATION_USED_TOPIC.hex(), "0x" + AUTHORIZATION_CANCELED_TOPIC.hex()],
                       "0x" + _word(payer).hex(), "0x" + nonce.hex()],
        })  # fmt: skip
        return [
            TokenLog(bytes(log["transactionHash"]), int(log["blockNumber"]), tuple(bytes(t) for t in log["topics"]),
                     bytes(log["data"]))  # fmt: skip
            for log in logs
        ]


__all__ = [
    "AUTHORIZATION_CANCELED_TOPIC",
    "AUTHORIZATION_USED_TOPIC",
    "TRANSFER_TOPIC",
    "TRANSFER_WITH_AUTHORIZATION",
    "Eip3009Token",
    "TokenLog",
    "transfer_with_authorization_calldata",
    "transfers_to",
]
