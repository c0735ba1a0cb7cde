"""The committed contract artifacts match the Solidity sources; CI runs what README says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import build_contracts  # noqa: E402


@pytest.mark.parametrize("bundle", sorted(build_contracts.BUNDLES))
def test_artifact_source_hash_matches_sources(bundle):
    spec = build_contracts.BUNDLES[bundle]
    committed = json.loads((ROOT / spec["output"]).read_text())
    assert committed["sources"] == spec["sources"], "the set of sources changed: rebuild the artifacts"
    assert committed["sourceHash"] == build_contracts.source_hash(spec["sources"]), (
        "a .sol file changed since the artifacts were built: run scripts/build_contracts.py"
    )


def test_artifacts_recompile_byte_for_byte():
    if not build_contracts.SOLCJS.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install the pinned solc (npm ci --prefix tools)")
        pytest.skip("pinned solc not installed (npm ci --prefix tools)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_contracts.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_package_loads_artifact_without_node():
    from channel_node.chain.artifacts import channel_deposit_artifact

    artifact = channel_deposit_artifact()
    assert artifact.compiler.startswith("solc 0.8.37")
    assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 1000
    assert {entry.get("name") for entry in artifact.abi} >= {"depositEth", "claim", "claimBatch", "ChannelOpened"}


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 -m venv .*)$", readme, flags=re.M)
    assert len(commands) >= 2, "README must start with the run command and the test command"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
