"""What every command module shares: how a command's coroutine is run, and how an error it lets
out reaches the user.

`cli/main.py` (the parser) imports the command modules (`cli/channels.py`, `cli/wallet.py`, `cli/operator.py`)
to add their commands; they import this module, never `cli/main.py`, so the arrows point one way
(docs/design.md, "Layers"). Of ours it imports only `errors`, the lowest layer.

The command line's edge of the error hierarchy (docs/design.md, "Errors"): any `ChannelNodeError`
a command lets out is one line `error: <message>` on stderr, never a traceback, and exit code 2
when the user must change something (`UsageError`, `Refusal`), 1 when a remote party or local
state failed (`RemoteError`, `StateError`, anything else). `cli/main.py` applies it once around
every command; `reporting_errors` applies the same mapping to a handler called without `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from channel_node.errors import ChannelNodeError, Refusal, UsageError

#: Exit codes by who must act.
EXIT_USER = 2  # the user's input, choice or configuration, or a refusal naming why
EXIT_FAILURE = 1  # a remote party or local state failed; the same command may work later

Handler = Callable[[argparse.Namespace], int]


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Runs `main` on uvloop where it is installed (faster sockets), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def exit_code(exc: ChannelNodeError) -> int:
    """2 when the user must change something, 1 for a remote or local failure."""
    return EXIT_USER if isinstance(exc, (UsageError, Refusal)) else EXIT_FAILURE


def error_line(exc: ChannelNodeError) -> str:
    """`error: <message>` on one line, whatever the message's own line breaks (the class name when
    the message is empty). The message of a ChannelNodeError is written to be shown; no traceback."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"error: {message}"


def report_error(exc: ChannelNodeError) -> int:
    """Prints `exc` as one line on stderr and answers its exit code."""
    print(error_line(exc), file=sys.stderr, flush=True)
    return exit_code(exc)


def reporting_errors(handler: Handler) -> Handler:
    """`handler` with the command line's error mapping applied: for command handlers that are also
    called directly (tests, other commands), so they answer the same exit code without `main`."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ChannelNodeError as exc:
            return report_error(exc)

    return run


__all__ = ["EXIT_FAILURE", "EXIT_USER", "error_line", "exit_code", "report_error", "reporting_errors", "run_async"]
