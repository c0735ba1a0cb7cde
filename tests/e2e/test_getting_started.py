"""docs/getting-started.md's local part, command by command, through the real CLI: the blocks marked
```` ```sh getting-started ```` run in order in one bash (set -euo pipefail) from the checkout, as a
reader pasting them would; only the block marked `settings` (the guide's folder and ports, the
variables the guide documents for that) is replaced by a temporary folder and free ports. The walk
ends with a paid article on disk, a topped-up channel and a cooperative close."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from anvil import ANVIL, free_port

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs/getting-started.md"
FENCE = re.compile(r"^```sh getting-started(?: (?P<role>\w+))?\n(?P<body>.*?)^```$", re.M | re.S)


def guide_blocks() -> list[tuple[str | None, str]]:
    return [(m.group("role"), m.group("body")) for m in FENCE.finditer(GUIDE.read_text())]


def test_the_guide_marks_its_blocks_and_documents_the_variables_it_substitutes():
    blocks = guide_blocks()
    roles = [role for role, _ in blocks]
    assert roles[0] == "settings" and roles.count("settings") == 1 and set(roles) <= {None, "settings"}
    settings = blocks[0][1]
    assert all(name in settings for name in ("GUIDE_DIR=", "RPC_PORT=", "NODE_PORT=", "ADMIN_PORT="))
    body = "\n".join(b for _, b in blocks)
    # It starts anvil the way that confirms deposits (a block time), on loopback, from tools/.
    assert '"$ANVIL" --host 127.0.0.1' in body and "--block-time 1" in body and "tools/node_modules/.bin/anvil" in body
    assert (ROOT / "tools/node_modules/.bin/anvil").exists() or not ANVIL.exists()


@pytest.mark.slow
def test_the_guide_walks_from_nothing_to_a_paid_article(tmp_path):
    if not ANVIL.exists():
        pytest.skip("anvil not installed: run `npm ci --prefix tools`")
    if shutil.which("curl") is None:
        pytest.skip("the guide funds accounts with curl, which is not installed")
    guide_dir = tmp_path / "guide"
    ports = {"RPC_PORT": free_port(), "NODE_PORT": free_port(), "ADMIN_PORT": free_port()}
    settings = f'export GUIDE_DIR="{guide_dir}"\nexport ' + " ".join(f"{k}={v}" for k, v in ports.items()) + "\n"
    parts = ["set -euo pipefail"]
    for n, (role, body) in enumerate(guide_blocks()):
        parts.append(f"echo \"### block {n} at $SECONDS s\" >&2")
        parts.append(settings if role == "settings" else body)
    script = "\n".join(parts) + '\necho "### done at $SECONDS s" >&2\n'
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNEL_NODE_") and k != "VIRTUAL_ENV"}
    env["HOME"] = str(tmp_path / "home")  # the guide writes nowhere else than GUIDE_DIR
    # Its own session: the background processes the guide starts (anvil, the node) are stopped with
    # it, by its process group, whatever step fails.
    process = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail("the guide's commands did not finish in 180 s:\n" + output[-4000:])
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in guide_dir.glob("*.log"))
    assert process.returncode == 0 and "### done" in output, output[-6000:] + logs

    # A paid article: the reader's copy is the site's file, and the node charged the price for it.
    assert (guide_dir / "hello.html").read_text() == (guide_dir / "site/articles/hello.html").read_text()
    assert "all 10 checks pass" in output
    assert "\"accepts\"" in output  # the 402 offer the curl step printed
    node_log = (guide_dir / "node.log").read_text()
    assert "channel-node serving" in node_log and "Traceback" not in node_log
    # The money of it, in base units (the commands' JSON): a deposit of 50 prices, a top-up of 0.001
    # ETH, and a close that pays the receiver one price and gives the payer the rest at once.
    price, deposit, topup = 20_000_000_000_000, 50 * 20_000_000_000_000, 10**15
    steps = re.split(r"### block \d+ at \d+ s\n", output)
    assert any(f'"deposited": "{deposit + topup}"' in step for step in steps), output[-3000:]
    [closed] = [step for step in steps if '"closed": "cooperatively"' in step]
    assert f'"refunded": "{deposit + topup - price}"' in closed and f'"paid_to_receiver": "{price}"' in closed, closed
