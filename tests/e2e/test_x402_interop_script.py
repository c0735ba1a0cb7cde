"""scripts/x402_interop.py, short: on its own anvil, the official Python and TypeScript x402 clients
each buy two articles from the node under `exact`, each replay is refused, and the one JSON line
carries the figures (gas per sale within what a transferWithAuthorization costs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "x402_interop.py"
ARTICLES = 2


@pytest.mark.slow
def test_interop_script_prints_the_figures_on_one_line(tmp_path):
    tools = ROOT / "tools" / "node_modules"
    missing = [what for what, ok in (("node", shutil.which("node")), ("tools/node_modules", tools.exists())) if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {missing}")
        pytest.skip(f"missing {missing}: npm ci --prefix tools --no-audit --no-fund")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--articles", str(ARTICLES), "--json", "--timeout", "150", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    report = json.loads(lines[0])
    assert result.returncode == 0, (report, (tmp_path / "node.log").read_text()[-2000:])
    assert set(report) >= {"sdk_python_paid", "sdk_ts_paid", "wallet_paid_sdk_server", "replays_refused", "gas_per_exact_sale"}
    assert report["sdk_python_paid"] == ARTICLES and report["sdk_ts_paid"] == ARTICLES
    wallet = report["wallet_paid_sdk_server"]
    # One replay per client that ran: both SDKs, and our wallet against the SDK's site once it is merged.
    assert report["replays_refused"] == 2 + (wallet is not None)
    assert 40_000 <= report["gas_per_exact_sale"] <= 100_000  # one transferWithAuthorization (docs/gas.json: 65,141)
    assert "problems" not in report
    if wallet is None:
        assert report["notes"]["wallet_paid_sdk_server"].startswith("not measured: missing")
    else:
        assert wallet == ARTICLES
