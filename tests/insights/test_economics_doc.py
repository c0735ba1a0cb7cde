"""docs/economics.md's tables are scripts/economics.py's output over docs/gas.json (rerun
`python scripts/economics.py --write` after docs/gas.json changes), and the script's arithmetic
is the exact one: a row's dollars are gas x gwei x ETH price, and a channel's cost per unlock falls
with the unlocks while exact's does not."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import economics as script  # noqa: E402


def test_the_doc_shows_the_scripts_tables():
    doc = (ROOT / "docs" / "economics.md").read_text()
    shown = doc.split(script.START, 1)[1].split(script.END, 1)[0].strip()
    assert shown == script.default_tables().strip(), "rerun: python scripts/economics.py --write"


def test_every_operation_named_is_measured():
    gas = json.loads(script.GAS_JSON.read_text())
    assert {key for key, _, _ in script.OPERATIONS} <= set(gas)
    assert {key for _, keys, _ in script.PER_UNLOCK for key in keys} <= set(gas)


@settings(max_examples=100, deadline=None)
@given(gas=st.integers(1, 10**7), gwei=st.fractions(min_value=Fraction(1, 1000), max_value=1000),
       eth=st.fractions(min_value=1, max_value=10**5))  # fmt: skip
def test_a_cost_is_gas_times_gwei_times_the_eth_price_exactly(gas, gwei, eth):
    assert script.gas_cost(gas, gwei, eth) == Fraction(gas) * gwei * eth / 10**9


def test_the_script_refuses_a_price_that_is_not_a_decimal_and_prints_tables_at_others():
    run = [sys.executable, str(ROOT / "scripts" / "economics.py")]
    bad = subprocess.run([*run, "--gwei", "1e3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    good = subprocess.run([*run, "--gwei", "2", "--eth-price", "1000"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "| 2 gwei |" in good.stdout and "$1,000.00" in good.stdout
    # a batched claim at 2 gwei and $1000 per ETH: 14,548 x 2e-9 x 1000 = $0.0291
    assert "$0.0291" in good.stdout
