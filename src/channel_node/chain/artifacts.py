"""Compiled contract artifacts committed under channel_node/artifacts (built by scripts/build_contracts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list
    bytecode: str
    deployed_bytecode: str
    compiler: str


@cache
def load_bundle(package: str = "channel_node.artifacts", filename: str = "ChannelDeposit.json") -> dict:
    return json.loads(resources.files(package).joinpath(filename).read_text())


def channel_deposit_artifact() -> Artifact:
    bundle = load_bundle()
    contract = bundle["contracts"]["ChannelDeposit"]
    return Artifact(
        name="ChannelDeposit",
        abi=contract["abi"],
        bytecode=contract["bytecode"],
        deployed_bytecode=contract["deployedBytecode"],
        compiler=bundle["compiler"],
    )
