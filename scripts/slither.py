#!/usr/bin/env python3
"""Static analysis of ChannelDeposit with Slither, using the pinned npm solc.

    python scripts/slither.py [--json]

Slither wants a `solc` binary; this machine has no registry that ships one, so the script puts a
stand-in in front of the npm `solcjs` (standard-JSON only, which is all crytic-compile's
`solc-json` framework needs), installs slither-analyzer into a throwaway virtualenv, compiles with
the project's settings and prints the findings by detector. docs/security.md justifies each one.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
SLITHER_VERSION = "0.11.6"

SOLC_STAND_IN = """#!/usr/bin/env python3
import os, subprocess, sys, tempfile
args = sys.argv[1:]
if "--version" in args:
    print("solc, the solidity compiler commandline interface\\nVersion: {version}.Linux.g++")
    sys.exit(0)
if "--standard-json" in args:
    request = sys.stdin.read()
    with tempfile.TemporaryFile("w+") as out:  # solcjs truncates output written to a pipe
        subprocess.run([{solcjs!r}, "--standard-json"], input=request, stdout=out, text=True, check=True)
        out.seek(0)
        text = out.read()
    sys.stdout.write(text[text.index("{{"):])
    sys.exit(0)
sys.exit("solc stand-in: only --version and --standard-json are supported")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args()
    import build_contracts

    if not build_contracts.SOLCJS.exists():
        sys.exit("npm solc missing: run `npm ci --prefix tools` first")
    version = subprocess.run([str(build_contracts.SOLCJS), "--version"], capture_output=True, text=True).stdout
    version = version.strip().split(".Emscripten")[0]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", f"slither-analyzer=={SLITHER_VERSION}"], check=True)
        solc = work / "solc"
        solc.write_text(SOLC_STAND_IN.format(version=version, solcjs=str(build_contracts.SOLCJS)))
        solc.chmod(0o755)
        settings = dict(build_contracts.SETTINGS)
        settings["outputSelection"] = {
            "*": {"*": ["abi", "evm.bytecode", "evm.deployedBytecode", "evm.methodIdentifiers", "userdoc", "devdoc"], "": ["ast"]}
        }
        source = "contracts/ChannelDeposit.sol"
        request = {"language": "Solidity", "sources": {source: {"content": (ROOT / source).read_text()}}, "settings": settings}
        (work / "input.json").write_text(json.dumps(request))
        report = work / "report.json"
        subprocess.run(
            [str(venv / "bin/slither"), str(work / "input.json"), "--solc", str(solc),
             "--compile-force-framework", "solc-json", "--json", str(report)],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ},
        )  # fmt: skip
        if not report.exists():
            sys.exit("slither produced no report")
        findings = json.loads(report.read_text())["results"].get("detectors", [])
    counts = collections.Counter((f["impact"], f["check"]) for f in findings)
    if args.json:
        print(json.dumps([{"impact": i, "check": c, "count": n} for (i, c), n in sorted(counts.items())]))
    else:
        print(f"slither {SLITHER_VERSION} on {source} with solc {version}: {len(findings)} findings")
        for (impact, check), count in sorted(counts.items()):
            print(f"  {impact:<14} {check:<22} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
