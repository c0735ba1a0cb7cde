"""Compiled contract artifacts committed under channel_node/artifacts (built by scripts/build_contracts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: str


@cache
def load_bundle(package: str = "channel_node.artifacts", filename: str = "ChannelDeposit.json") -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(resources.files(package).joinpath(filename).read_text())
    return bundle


def _artifact(filename: str, name: str) -> Artifact:
    bundle = load_bundle(filename=filename)
    contract = bundle["contracts"][name]
    return Artifact(
        name=name,
        abi=contract["abi"],
        bytecode=contract["bytecode"],
        deployed_bytecode=contract["deployedBytecode"],
        compiler=bundle["compiler"],
    )


def channel_deposit_artifact() -> Artifact:
    return _artifact("ChannelDeposit.json", "ChannelDeposit")


def exact_batcher_artifact() -> Artifact:
    """The optional batcher of x402 `exact` transfers (`exact.batch_contract`, docs/protocol.md)."""
    return _artifact("ExactBatcher.json", "ExactBatcher")


def demo_dollar_artifact() -> Artifact:
    """The dev chain's stand-in stablecoin (`channel-node dev --token`); never deployed elsewhere."""
    return _artifact("DevContracts.json", "DemoDollar")


def canonical_type(param: dict[str, Any]) -> str:
    """An ABI parameter's canonical type, as selectors and topics hash it (errors and events)."""
    if param["type"].startswith("tuple"):  # not used by ChannelDeposit's events/errors
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    kind: str = param["type"]
    return kind
