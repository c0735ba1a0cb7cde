"""`channel-node serve --workers N`: N serve processes with the same settings on one port.

Each child is `channel-node serve` itself, listening with SO_REUSEPORT so the kernel spreads the
connections among them (docs/scaling.md, "Serving with `--workers` and behind a load balancer").
The parent picks a free port first when it is 0 (holding a bound, never listening, socket so no
other program takes it), reads a keystore password once for all of them, forwards SIGTERM and
SIGINT, restarts a child that died (at most RESTARTS_PER_MINUTE a minute, then it stops the others
and exits 1; a child that exits 2, the settings' fault, stops them all with exit 2) and exits when
every child has. SQLite allows one process per database: refused.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from channel_node.errors import UsageError

if TYPE_CHECKING:
    from channel_node.config import Settings

RESTARTS_PER_MINUTE = 5
STOP_GRACE = 20.0  # seconds a child has to stop after SIGTERM before it is killed


def is_shared_database(database: object) -> bool:
    """Whether `database` names a server several processes may share (PostgreSQL), not a file."""
    from channel_node.store import is_postgres_url

    return is_postgres_url(database)


def _reserve_port(host: str) -> tuple[socket.socket, int]:
    """A free port on `host`, held by a bound socket with SO_REUSEPORT that never listens (so the
    kernel gives it no connection) until the children have bound theirs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, 0))
    return holder, int(holder.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover (runs in the child, before exec)
    """A child whose parent is killed gets SIGTERM (Linux), instead of serving on unwatched."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def run_workers(settings: Settings, count: int, config: str | None) -> int:
    if count < 1:
        raise UsageError("--workers must be at least 1")
    if not is_shared_database(settings.database):
        raise UsageError(
            f"--workers {count} needs a PostgreSQL database (database = \"postgresql://…\"): "
            "SQLite allows one process per database; run one `serve`, or move the store to PostgreSQL"
        )
    if settings.insights_database is not None:
        raise UsageError(
            f"--workers {count} with insights_database: the insights file takes one writing process; unset "
            "insights_database, or run separate `serve` processes, each with its own file (docs/scaling.md)"
        )
    held: list[socket.socket] = []
    env = dict(os.environ)
    port = settings.port
    if port == 0:
        holder, port = _reserve_port(settings.host)
        held.append(holder)
    if settings.admin_token is not None:
        admin_port = settings.admin_port
        if admin_port == 0:
            holder, admin_port = _reserve_port(settings.admin_host)
            held.append(holder)
        env["CHANNEL_NODE_ADMIN_PORT"] = str(admin_port)
    if settings.claim_keystore is not None and "CHANNEL_NODE_KEYSTORE_PASSWORD" not in env:
        from channel_node.keys import KeystoreError, read_password

        try:  # asked once, for every child (they read it from their environment)
            env["CHANNEL_NODE_KEYSTORE_PASSWORD"] = read_password(confirm=False)
        except KeystoreError as exc:
            raise UsageError(str(exc)) from None
    command = [sys.executable, "-m", "channel_node.cli.main", "serve", "--worker", "--host", settings.host, "--port", str(port)]
    if config is not None:
        command += ["--config", config]
    try:
        return _supervise(command, count, env)
    finally:
        for holder in held:
            holder.close()


def _supervise(command: Sequence[str], count: int, env: dict[str, str]) -> int:
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)

    children = [spawn() for _ in range(count)]
    restarts: deque[float] = deque()
    code = 0
    print(f"channel-node: {count} workers (pids {', '.join(str(c.pid) for c in children)})", flush=True)
    try:
        while not stopping:
            time.sleep(0.2)
            for index, child in enumerate(children):
                status = child.poll()
                if status is None or stopping:
                    continue
                if status == 2:  # the settings are wrong (the child said so in one line): restarting cannot help
                    code = 2
                    stopping.append(signal.SIGTERM)
                    break
                now = time.monotonic()
                while restarts and now - restarts[0] > 60:
                    restarts.popleft()
                if len(restarts) >= RESTARTS_PER_MINUTE:
                    print(f"error: worker {child.pid} exited with {status}; {RESTARTS_PER_MINUTE} restarts in a minute: "
                          "stopping the others", file=sys.stderr, flush=True)  # fmt: skip
                    code = 1
                    stopping.append(signal.SIGTERM)
                    break
                restarts.append(now)
                children[index] = spawn()
                print(f"channel-node: worker {child.pid} exited with {status}; restarted as {children[index].pid}",
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


__all__ = ["RESTARTS_PER_MINUTE", "is_shared_database", "run_workers"]
