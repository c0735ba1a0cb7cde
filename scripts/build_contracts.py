#!/usr/bin/env python3
"""Compile the Solidity sources with the pinned npm `solc` into committed JSON artifacts.

    python scripts/build_contracts.py          # rebuild the artifacts
    python scripts/build_contracts.py --check  # exit 1 if the committed artifacts are stale

The compiler is the npm package pinned in tools/package.json (install it with
`npm ci --prefix tools`). Only this script needs Node; the Python package reads the artifacts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLCJS = ROOT / "tools" / "node_modules" / ".bin" / "solcjs"

# Each artifact bundle: the sources it compiles and where the JSON lands.
BUNDLES = {
    "main": {
        "sources": ["contracts/ChannelDeposit.sol"],
        "output": "src/channel_node/artifacts/ChannelDeposit.json",
    },
    "batcher": {  # optional: `exact.batch_contract` (docs/protocol.md, "The `exact` scheme (node)")
        "sources": ["contracts/ExactBatcher.sol"],
        "output": "src/channel_node/artifacts/ExactBatcher.json",
    },
    "dev": {  # deployed by `channel-node dev --token` on the embedded chain only
        "sources": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "contracts" / "dev").glob("*.sol")),
        "output": "src/channel_node/artifacts/DevContracts.json",
    },
    "test": {
        "sources": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "contracts" / "test").glob("*.sol")),
        "output": "tests/artifacts/test_contracts.json",
    },
}

SETTINGS = {
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 1000000},
    "viaIR": True,
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def source_hash(paths: list[str]) -> str:
    """sha256 over (path, content) pairs: changes when any source or the file set changes."""
    digest = hashlib.sha256()
    for rel in paths:
        digest.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def compile_sources(paths: list[str]) -> tuple[str, dict]:
    if not SOLCJS.exists():
        sys.exit(f"solc not installed: run `npm ci --prefix {ROOT / 'tools'}` first")
    request = {
        "language": "Solidity",
        "sources": {rel: {"content": (ROOT / rel).read_text()} for rel in paths},
        "settings": SETTINGS,
    }
    # solcjs exits before a pipe drains (output over 64 KiB is cut), so it writes to a file instead.
    with tempfile.TemporaryFile("w+") as out:
        subprocess.run([str(SOLCJS), "--standard-json"], input=json.dumps(request), stdout=out, text=True, check=True)
        out.seek(0)
        text = out.read()
    # solcjs may print a note (e.g. about SMT solvers) before the JSON document.
    output = json.loads(text[text.index("{") :])
    errors = [e for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        sys.exit("\n".join(e["formattedMessage"] for e in errors))
    for warning in output.get("errors", []):
        print(warning["formattedMessage"], file=sys.stderr)
    version = subprocess.run([str(SOLCJS), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return version, output["contracts"]


def build_bundle(paths: list[str]) -> dict:
    version, contracts = compile_sources(paths)
    bundle = {
        "compiler": f"solc {version}",
        "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
        "sourceHash": source_hash(paths),
        "sources": paths,
        "contracts": {},
    }
    for rel in paths:
        for name, out in sorted(contracts[rel].items()):
            bundle["contracts"][name] = {
                "source": rel,
                "abi": out["abi"],
                "bytecode": "0x" + out["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
            }
    return bundle


def render(bundle: dict) -> str:
    return json.dumps(bundle, indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed artifacts, write nothing")
    parser.add_argument("--bundle", choices=sorted(BUNDLES), action="append", help="only this bundle (repeatable)")
    args = parser.parse_args()
    stale = []
    for name, spec in BUNDLES.items():
        if args.bundle and name not in args.bundle:
            continue
        rendered = render(build_bundle(spec["sources"]))
        target = ROOT / spec["output"]
        if args.check:
            if not target.exists() or target.read_text() != rendered:
                stale.append(spec["output"])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rendered)
            print(f"{name}: wrote {spec['output']}")
    if stale:
        print("stale artifacts (run scripts/build_contracts.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
