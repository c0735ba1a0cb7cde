"""Constants that several layers share, defined once (docs/design.md, "Layers").

The bounds of the contract's integer types: amounts and totals are `uint128` in ChannelDeposit and
in the EIP-712 voucher (docs/protocol.md), salts and close delays fit smaller words, and calldata
words are `uint256`. Everything is an int in the token's smallest unit; nothing here imports
anything of ours, so every layer may import it.
"""

from __future__ import annotations

UINT32_MAX = (1 << 32) - 1
UINT96_MAX = (1 << 96) - 1
UINT128_MAX = (1 << 128) - 1
UINT256_MAX = (1 << 256) - 1


def check_uint(value: int, name: str, maximum: int = UINT256_MAX) -> int:
    """`value` if it is an int in [0, maximum]; TypeError for anything that is not an int (a float
    or a bool here is a bug upstream, not something to round), ValueError when out of range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} out of range: {value}")
    return value


__all__ = ["UINT128_MAX", "UINT256_MAX", "UINT32_MAX", "UINT96_MAX", "check_uint"]
