"""One process per database file: an exclusive, non-blocking flock on `<file>.lock`."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def lock_beside(path: Path) -> IO[str] | None:
    """The open lock file (keep it open: closing it releases the lock), or None when another
    process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}.lock", "w")  # noqa: SIM115 (returned open: the lock lasts as long as the handle)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
