"""Which node process runs the chain side (docs/scaling.md, "One chain side").

Every process on a database serves payments; only one at a time follows the chain, sends the
outbox and settles: the leader. `Leadership` is the port the node asks (`node/assembly.py`); each
store answers it its own way. SQLite allows one process per database (its file lock), so that
process always leads (`SoleLeader`). On PostgreSQL the leader holds a session-level advisory lock
on a connection of its own (`store/postgres_lease.py`): a dead process's connection drops and the
lock frees with it, and a hung one is cut off by the server after its lease timeout.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Protocol


def process_identity() -> str:
    """This process as `host:pid`: what `status` and `/healthz` name as the leader."""
    return f"{socket.gethostname()[:28]}:{os.getpid()}"  # short: PostgreSQL keeps 63 bytes of a name


@dataclass(frozen=True)
class LeaderInfo:
    """Who leads the chain side: its identity (`host:pid`), since when it leads and when it last
    proved it was alive (unix seconds; 0 when the store cannot say)."""

    identity: str
    since: float = 0.0
    heartbeat: float = 0.0


class Leadership(Protocol):
    identity: str

    async def try_lead(self) -> bool:
        """Leads (or keeps leading) if nobody else does; renews the lease when already leading.
        Never raises for a lost connection: answers False (the caller stops its chain side)."""
        ...

    def still_leading(self) -> bool:
        """Whether this process may act as the leader now (no I/O: checked before every transaction
        the outbox signs). False once the lease is lost or not renewed within its timeout."""
        ...

    async def leader(self) -> LeaderInfo | None:
        """The process that leads now, as the database shows it (None: nobody)."""
        ...

    async def release(self) -> None:
        """Stops leading (at shutdown): another process takes over at once."""
        ...


class SoleLeader:
    """One process per database (SQLite's file lock, or a store in memory): it always leads."""

    def __init__(self, identity: str | None = None) -> None:
        self.identity = identity or process_identity()
        self._since = time.time()
        self._leading = False

    async def try_lead(self) -> bool:
        self._leading = True
        return True

    def still_leading(self) -> bool:
        return True

    async def leader(self) -> LeaderInfo | None:
        return LeaderInfo(self.identity, self._since, time.time())

    async def release(self) -> None:
        self._leading = False


__all__ = ["LeaderInfo", "Leadership", "SoleLeader", "process_identity"]
