"""How to name this program in a command the user is told to type: `channel-node` when that name on
PATH is this installation, else the path that works from here (README installs into `.venv`
without activating it, so `.venv/bin/channel-node`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

NAME = "channel-node"


def _same(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def program(argv0: str | None = None, executable: str | None = None, path: str | None = None) -> str:
    """The command that runs this channel-node: `channel-node` when PATH finds this installation's
    script, else the script as it was invoked (`.venv/bin/channel-node`), else the script beside
    the running interpreter, else `python -m channel_node.cli.main` with the interpreter's path."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    beside = Path(executable).parent / NAME
    invoked = Path(argv0) if Path(argv0).name == NAME and Path(argv0).is_file() else None
    ours = invoked or (beside if beside.is_file() else None)
    found = shutil.which(NAME, path=path)
    if found is not None and (ours is None or _same(found, ours)):
        return NAME
    if invoked is not None:
        return str(invoked) if os.sep in argv0 else NAME
    if ours is not None:
        return str(ours)
    return f"{executable} -m channel_node.cli.main"


__all__ = ["NAME", "program"]
