"""Running the committed browser-wallet bundle (web/*.js built by scripts/build_wallet_js.py) in
Node for the tests in tests/client/test_wallet_js*.py (docs/browser.md): a script gets its input
as JSON on stdin, `input.bundle` naming the bundle, and writes its answer as JSON on stdout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_wallet_js  # noqa: E402

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Loads the bundle into a fresh context: `W` is the wallet (window.ChannelWallet), `input` the payload.
LOADER = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const context = { atob, btoa, TextDecoder, TextEncoder, crypto: globalThis.crypto };
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.bundle, "utf8"), context);
const W = vm.runInContext("ChannelWallet", context);
"""


def run_bundle(script: str, payload: dict) -> Any:
    """`script`'s JSON answer to `payload` (plus the bundle's path); a failing script fails the test
    with its stderr."""
    assert NODE is not None
    payload = {"bundle": str(build_wallet_js.OUTPUT), **payload}
    result = subprocess.run([NODE, "-e", script], input=json.dumps(payload), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
