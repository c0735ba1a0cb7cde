"""Bundles the browser wallet (web/*.js and the pinned @noble libraries) into the committed asset
src/channel_node/server/static/wallet.js with the pinned esbuild from tools/node_modules.

    npm ci --prefix tools --no-audit --no-fund
    .venv/bin/python scripts/build_wallet_js.py           # rewrites the committed bundle
    .venv/bin/python scripts/build_wallet_js.py --check   # exit 1 when it differs from a fresh build

The build is deterministic: the same sources and the same pinned packages give the same bytes.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ESBUILD = TOOLS / "node_modules" / ".bin" / "esbuild"
ENTRY = ROOT / "web" / "wallet.js"
OUTPUT = ROOT / "src" / "channel_node" / "server" / "static" / "wallet.js"
GLOBAL_NAME = "ChannelWallet"
BANNER = (
    "/* channel-node browser wallet: built by scripts/build_wallet_js.py from web/*.js with @noble/curves "
    "and @noble/hashes (MIT, Paul Miller). Do not edit: edit web/ and rebuild. */"
)


def build(output: Path) -> None:
    if not ESBUILD.exists():
        raise SystemExit(f"{ESBUILD} is missing: run `npm ci --prefix tools --no-audit --no-fund`")
    command = [
        str(ESBUILD),
        str(ENTRY.relative_to(ROOT)),
        "--bundle",
        "--format=iife",
        f"--global-name={GLOBAL_NAME}",
        "--target=es2020",
        "--platform=browser",
        "--charset=utf8",
        "--legal-comments=inline",
        "--log-level=warning",
        f"--banner:js={BANNER}",
        f"--outfile={output}",
    ]
    # Module resolution starts from web/; the packages live in tools/node_modules.
    env = {**os.environ, "NODE_PATH": str(TOOLS / "node_modules")}
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed bundle")
    args = parser.parse_args(argv)
    if not args.check:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        build(OUTPUT)
        print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        fresh = Path(folder) / "wallet.js"
        build(fresh)
        new = fresh.read_text()
    old = OUTPUT.read_text() if OUTPUT.exists() else ""
    if new == old:
        print(f"{OUTPUT.relative_to(ROOT)} matches its sources")
        return 0
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), "committed", "fresh build", lineterm="", n=1)
    sys.stderr.write("\n".join(list(diff)[:60]) + "\n")
    sys.stderr.write(f"{OUTPUT.relative_to(ROOT)} is stale: run scripts/build_wallet_js.py\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
