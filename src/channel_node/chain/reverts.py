"""Reverts of ChannelDeposit calls and transactions, decoded by their 4-byte selector.

A revert anywhere (estimate, call, or a mined transaction with status 0) surfaces as
`ContractRevert` with the contract's custom error decoded (docs/contract.md lists the errors), or
Solidity's built-in `Error(string)` / `Panic(uint256)`. Nodes report reverts in several shapes;
`as_revert` reads each of them and answers None for what is not a revert (a transport failure).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from web3.exceptions import ContractLogicError, Web3RPCError

from channel_node.chain.artifacts import canonical_type, channel_deposit_artifact
from channel_node.errors import Refusal
from channel_node.signing.eip712 import keccak256

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string), from require/revert("...")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256), from assert/overflow


class ContractRevert(Refusal):
    """A ChannelDeposit call or transaction reverted.

    `error_name` is the custom error (e.g. "NothingToClaim"), "Error"/"Panic" for Solidity's built-in
    ones, or None when the data matches nothing in the ABI (then `data`/`reason` hold what is known).
    `args` are the error's decoded arguments (ChannelDeposit's errors take none). A refusal by the
    contract: its stable `code` is `error_name`, or "contract_revert" when nothing in the ABI
    matched (docs/design.md, "Errors"); over HTTP it would answer 409, a conflict with chain state.
    """

    status = 409

    def __init__(
        self,
        function: str,
        error_name: str | None,
        args: tuple[Any, ...] = (),
        *,
        data: bytes = b"",
        reason: str | None = None,
        tx_hash: bytes | None = None,
        block_number: int | None = None,
    ) -> None:
        super().__init__(*args)  # Exception.args carries the decoded error arguments
        self.function = function
        self.error_name = error_name
        self.code = error_name if error_name is not None else "contract_revert"
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

    def __reduce__(self) -> tuple[Any, ...]:  # keep pickling working although `args` are not the constructor's arguments
        return (
            _rebuild_revert,
            (self.function, self.error_name, self.args, self.data, self.reason, self.tx_hash, self.block_number),
        )


def _rebuild_revert(
    function: str, error_name: str | None, args: tuple[Any, ...], data: bytes, reason: str | None,
    tx_hash: bytes | None, block_number: int | None,
) -> ContractRevert:
    return ContractRevert(
        function, error_name, args, data=data, reason=reason, tx_hash=tx_hash, block_number=block_number
    )


@cache
def _error_table() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    """4-byte selector -> (name, argument types) for every custom error in the ABI."""
    table = {}
    for entry in channel_deposit_artifact().abi:
        if entry["type"] == "error":
            types = tuple(canonical_type(i) for i in entry["inputs"])
            table[keccak256(f"{entry['name']}({','.join(types)})".encode())[:4]] = (entry["name"], types)
    return table


def decode_revert_data(data: bytes) -> tuple[str | None, tuple[Any, ...]]:
    """(error name, decoded arguments) for raw revert data; (None, ()) when it matches nothing known."""
    selector, body = data[:4], data[4:]
    try:
        if selector in _error_table():
            name, types = _error_table()[selector]
            return name, tuple(abi_decode(list(types), body)) if types else ()
        if selector == _ERROR_STRING_SELECTOR:
            return "Error", tuple(abi_decode(["string"], body))
        if selector == _PANIC_SELECTOR:
            return "Panic", tuple(abi_decode(["uint256"], body))
    except Exception:  # malformed arguments: keep the name, the raw data stays on the exception
        known = _error_table().get(selector)
        return (known[0] if known else None), ()
    return None, ()


def _tester_failure_type() -> type[BaseException] | None:
    try:  # eth-tester is only present for the dev chain and tests
        from eth_tester.exceptions import TransactionFailed
    except ImportError:  # pragma: no cover
        return None
    failure: type[BaseException] = TransactionFailed  # eth-tester ships no types: name what it is
    return failure


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
        error: object = exc.rpc_response.get("error") if exc.rpc_response else None
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



def as_revert(exc: BaseException, function: str) -> ContractRevert | None:
    """The ContractRevert an exception from a call, estimate or send stands for, or None when it
    is not a revert (a transport or node failure)."""
    return _as_revert(exc, function)


def raise_if_revert(exc: BaseException, function: str, **where: Any) -> None:
    """Raises the ContractRevert `exc` stands for (chained to it); returns when it is no revert."""
    revert = _as_revert(exc, function, **where)
    if revert is not None:
        raise revert from exc


__all__ = ["ContractRevert", "as_revert", "decode_revert_data", "raise_if_revert"]
