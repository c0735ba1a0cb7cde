"""What every command module shares: how a command's coroutine is run.

`cli/main.py` (the parser) imports the command modules (`cli/channels.py`, `cli/wallet.py`, `cli/operator.py`)
to add their commands; they import this module, never `cli/main.py`, so the arrows point one way
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
