"""contracts/ExactBatcher.sol as the outbox uses it (docs/protocol.md, "The `exact` scheme
(node)", `exact.batch_contract`): the calldata of `transferAll(token, items)`, what a signed
transaction sent to it carried (decoded from the raw bytes the outbox keeps, so a restart knows
which sale each item was), and a receipt's logs cut into one segment per item by the batcher's
`ItemOutcome(index, success)` logs, so each sale is judged by the logs its own item produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode, encode
from eth_utils.address import to_canonical_address, to_checksum_address
from hexbytes import HexBytes

from channel_node.signing.eip712 import keccak256

ITEM = "(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
TRANSFER_ALL = keccak256(f"transferAll(address,{ITEM}[])".encode())[:4]
ITEM_OUTCOME_TOPIC = keccak256(b"ItemOutcome(uint256,bool)")


@dataclass(frozen=True)
class BatchItem:
    """One authorization in a batch: what `transferWithAuthorization` takes (signature as 65 bytes)."""

    payer: bytes
    to: bytes
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    signature: bytes


def transfer_all_calldata(token: bytes, items: list[BatchItem]) -> bytes:
    encoded = []
    for item in items:
        if len(item.signature) != 65:
            raise ValueError("an authorization signature is 65 bytes")
        sig = item.signature
        encoded.append((to_checksum_address(item.payer), to_checksum_address(item.to), item.value, item.valid_after,
                        item.valid_before, item.nonce, sig[64], sig[:32], sig[32:64]))  # fmt: skip
    return TRANSFER_ALL + encode(["address", f"{ITEM}[]"], [to_checksum_address(token), encoded])


def decode_transfer_all(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """(token, [(payer, nonce) per item, in order]) of transferAll calldata; None for other calldata."""
    if data[:4] != TRANSFER_ALL:
        return None
    token, items = decode(["address", f"{ITEM}[]"], data[4:])
    return to_canonical_address(token), [(to_canonical_address(item[0]), bytes(item[5])) for item in items]


def raw_destination(raw: bytes) -> tuple[bytes, bytes]:
    """(to, data) of a signed transaction's raw bytes: legacy, EIP-2930 or EIP-1559."""
    if raw[0] >= 0xC0:  # legacy: [nonce, gasPrice, gas, to, value, data, v, r, s]
        fields = rlp.decode(raw)
        return bytes(fields[3]), bytes(fields[5])
    fields = rlp.decode(raw[1:])
    at = {1: 4, 2: 5}.get(raw[0])  # 2930: [chainId, nonce, gasPrice, gas, to, ...]; 1559: [.., maxFee, gas, to, ..]
    if at is None:
        raise ValueError(f"transaction type {raw[0]} is not one the outbox signs")
    return bytes(fields[at]), bytes(fields[at + 2])


def item_segments(logs: list[Any], batcher: bytes) -> dict[int, tuple[bool, list[Any]]]:
    """index -> (success, the logs item `index` produced): the logs since the previous item's
    ItemOutcome, which the batcher emits right after each call into the token."""
    out: dict[int, tuple[bool, list[Any]]] = {}
    current: list[Any] = []
    for log in logs:
        topics = [bytes(HexBytes(t)) for t in log["topics"]]
        if bytes(HexBytes(log["address"])) == batcher and topics and topics[0] == ITEM_OUTCOME_TOPIC:
            data = bytes(HexBytes(log["data"]))
            out[int.from_bytes(data[:32], "big")] = (int.from_bytes(data[32:64], "big") != 0, current)
            current = []
        else:
            current.append(log)
    return out


__all__ = [
    "ITEM_OUTCOME_TOPIC",
    "TRANSFER_ALL",
    "BatchItem",
    "decode_transfer_all",
    "item_segments",
    "raw_destination",
    "transfer_all_calldata",
]
