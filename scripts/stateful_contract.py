#!/usr/bin/env python3
"""Run the contract's stateful invariant test (tests/chain/test_invariants.py) with more examples.

    python scripts/stateful_contract.py --examples 2000 [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "chain"))  # test_invariants.py
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

from channel_node.dev.devchain import DevChain  # noqa: E402
from test_invariants import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="random sequences to run (default 1000)")
    parser.add_argument("--steps", type=int, default=25, help="steps per sequence (default 25)")
    args = parser.parse_args()
    chain = DevChain()
    contract = chain.deploy_channel_deposit()
    started = time.perf_counter()
    run(chain, contract, args.examples, args.steps)
    elapsed = time.perf_counter() - started
    print(f"{args.examples} examples x up to {args.steps} steps: all invariants held ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
