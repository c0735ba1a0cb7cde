"""The program name printed commands use (cli/program.py): `channel-node` only when PATH finds this
installation, else a path that runs it from here (issue 15, finding 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from channel_node.cli.program import program


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_on_path_it_is_the_bare_name(tmp_path):
    script = _script(tmp_path / "venv/bin/channel-node")
    python = tmp_path / "venv/bin/python"
    assert program(str(script), str(python), path=str(script.parent)) == "channel-node"
    assert program("channel-node", str(python), path=str(script.parent)) == "channel-node"


def test_not_on_path_it_is_the_path_it_was_run_by(tmp_path, monkeypatch):
    script = _script(tmp_path / ".venv/bin/channel-node")
    monkeypatch.chdir(tmp_path)
    assert program(".venv/bin/channel-node", str(tmp_path / ".venv/bin/python"), path="/nonexistent") == ".venv/bin/channel-node"
    # Another installation on PATH is not this one: the path that runs this one wins.
    other = _script(tmp_path / "other/bin/channel-node")
    assert program(".venv/bin/channel-node", str(script.parent / "python"), path=str(other.parent)) == ".venv/bin/channel-node"


def test_run_as_a_module_it_is_the_script_beside_the_interpreter_or_python_m(tmp_path):
    script = _script(tmp_path / "venv/bin/channel-node")
    main = str(tmp_path / "src/channel_node/cli/main.py")
    assert program(main, str(script.parent / "python"), path="/nonexistent") == str(script)
    bare = tmp_path / "bare/bin/python"
    assert program(main, str(bare), path="/nonexistent") == f"{bare} -m channel_node.cli.main"
    assert os.sep in program(main, str(bare), path="/nonexistent")


def test_wallet_new_prints_the_address_alone_and_how_to_fund_it(tmp_path, monkeypatch, capsys):
    """Issue 15, finding 2: stdout is the address only (`ADDRESS=$(channel-node wallet new)`); stderr
    says what to send and gives the anvil command (which works as printed) and the test-network way."""
    import json
    import shlex

    from channel_node import keys
    from channel_node.cli.main import main

    monkeypatch.setattr(keys, "SCRYPT_N", 2**4)
    monkeypatch.setenv("CHANNEL_NODE_KEYSTORE_PASSWORD", "pw")
    rpc = "http://127.0.0.1:18999"
    assert main(["wallet", "new", "--wallet", str(tmp_path / "w"), "--rpc-url", rpc]) == 0
    out, err = capsys.readouterr()
    address = out.strip()
    assert out == address + "\n" and address.startswith("0x") and len(address) == 42
    assert f"Fund {address} before paying" in err and "test network" in err and "faucet" in err
    curl = next(line.strip() for line in err.splitlines() if line.strip().startswith("curl "))
    words = shlex.split(curl)
    call = json.loads(words[words.index("--data") + 1])
    assert call["method"] == "anvil_setBalance" and call["params"] == [address, hex(10**18)] and words[-1] == rpc
    check = next(line for line in err.splitlines() if "then check:" in line)
    assert "wallet balance --wallet" in check and str(tmp_path / "w") in check
