"""Helpers shared by the contract tests and scripts/gas_report.py: test contracts, permits, vouchers."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from channel_node.dev.devchain import DevChain
from channel_node.signing import keccak256, sign_digest, to_compact

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "test_contracts.json"

PERMIT_TYPEHASH = keccak256(b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")


@cache
def test_contracts() -> dict:
    return json.loads(ARTIFACTS.read_text())["contracts"]


def deploy_test_contract(chain: DevChain, name: str, *args):
    spec = test_contracts()[name]
    return chain.deploy(spec["abi"], spec["bytecode"], *args)


def deploy_test_token(chain: DevChain, name: str = "TestToken", *args):
    return deploy_test_contract(chain, name, *(args or ("Test Token",)))


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return b"\0" * 12 + bytes.fromhex(address[2:])


def sign_permit(token, owner, spender: str, value: int, deadline: int) -> tuple[bytes, bytes]:
    """EIP-2612 permit signature by `owner` (a DevAccount) for TestToken, EIP-2098 compact (r, vs)
    as ChannelDeposit.depositTokenWithPermit takes it."""
    nonce = token.functions.nonces(owner.address).call()
    separator = token.functions.DOMAIN_SEPARATOR().call()
    struct_hash = keccak256(
        PERMIT_TYPEHASH + _address_word(owner.address) + _address_word(spender) + _word(value) + _word(nonce) + _word(deadline)
    )
    signature = sign_digest(owner.private_key, keccak256(b"\x19\x01" + separator + struct_hash))
    return to_compact(signature)
