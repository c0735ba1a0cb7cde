"""What every command module shares: how a command's coroutine is run.

`cli.py` (the parser) imports the command modules (`channels_cli`, `wallet_cli`, `operator_cli`)
to add their commands; they import this module, never `cli.py`, so the arrows point one way
(docs/design.md, "Layers"). It imports nothing of ours.
"""

from __future__ import annotations

import asyncio


def run_async(main) -> int:
    """Runs `main` on uvloop where it is installed (faster sockets), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


__all__ = ["run_async"]
