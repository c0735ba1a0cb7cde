"""A throwaway PostgreSQL server for the tests (Debian's `postgresql` package, installed by .ci/run):
`initdb` into a temporary folder, `postgres` on a free loopback port (its socket in that folder),
stopped by its PID at the end. initdb and postgres refuse to run as root: when the tests do (this
machine and CI), they run as the Debian `postgres` user, which owns the folder."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from anvil import free_port


class PostgresMissing(RuntimeError):
    """PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)."""


def unavailable(exc: PostgresMissing, environ=os.environ):
    """Without PostgreSQL the tests that need it skip, locally; under CI=true they fail: CI installs
    it (.ci/run), so a skip there would hide the PostgreSQL store's tests."""
    import pytest

    if environ.get("CI") == "true":
        pytest.fail(f"CI must run the PostgreSQL store's tests: {exc}")
    pytest.skip(str(exc))


def find_bin() -> Path:
    """The folder holding initdb and postgres: on PATH, else Debian's /usr/lib/postgresql/<ver>/bin
    (the newest version)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)  # fmt: skip
    if versions:
        return versions[-1].parent
    raise PostgresMissing("PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql): "
                          "apt-get install postgresql")  # fmt: skip


@dataclass
class PostgresServer:
    process: subprocess.Popen
    port: int
    folder: Path
    user: str = "postgres"
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))
    _stores: bool = False

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """A new empty database; returns its DSN."""
        import asyncpg

        name = f"t{os.getpid()}_{next(self._names)}"
        connection = await asyncpg.connect(self.dsn())
        try:
            await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await connection.close()
        return self.dsn(name)

    async def new_schema(self) -> str:
        """A new empty schema in the session's `stores` database, as a DSN whose search_path names
        it: much faster than a database (hypothesis makes a store per example)."""
        import asyncpg

        if not self._stores:
            self._stores = True
            connection = await asyncpg.connect(self.dsn())
            try:
                await connection.execute('CREATE DATABASE "stores" TEMPLATE template0')
            finally:
                await connection.close()
        name = f"s{os.getpid()}_{next(self._names)}"
        connection = await asyncpg.connect(self.dsn("stores"))
        try:
            await connection.execute(f'CREATE SCHEMA "{name}"')
        finally:
            await connection.close()
        return self.dsn("stores") + f"?search_path={name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # "fast" shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_postgres() -> dict:
    """Popen arguments that run a program as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing("running as root and there is no `postgres` user to run PostgreSQL as") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "env": {**os.environ, "HOME": entry.pw_dir}}


def start_postgres(fsync: bool = False) -> PostgresServer:
    """`fsync=True` keeps PostgreSQL's durability settings (scripts/bench_store.py measures with them)."""
    bin_dir = find_bin()
    # Not under pytest's tmp_path: its folders are 0700 root, which the postgres user cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="channel-node-pg-"))
    data = folder / "data"
    run_as = _as_postgres()
    if run_as:
        os.chown(folder, run_as["user"], run_as["group"])
    log = folder / "initdb.log"
    with open(log, "w") as out:
        if run_as:
            os.chown(log, run_as["user"], run_as["group"])
        done = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync",
             "--no-instructions"],
            stdout=out, stderr=subprocess.STDOUT, **run_as,
        )  # fmt: skip
    if done.returncode != 0:
        text = log.read_text()[-2000:]
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{text}")
    for _ in range(3):  # another program may take the free port before postgres binds it
        server = _serve(bin_dir, folder, data, run_as, fsync)
        if server is not None:
            return server
    text = (folder / "postgres.log").read_text()[-2000:]
    shutil.rmtree(folder, ignore_errors=True)
    raise RuntimeError(f"postgres did not start:\n{text}")


def _serve(bin_dir: Path, folder: Path, data: Path, run_as: dict, fsync: bool) -> PostgresServer | None:
    """postgres on a free port, once it answers; None when it exited before (its log says why)."""
    port = free_port()
    server_log = open(folder / "postgres.log", "w")  # noqa: SIM115 (the server writes it until stopped)
    if run_as:
        os.chown(folder / "postgres.log", run_as["user"], run_as["group"])
    # Durability settings off for the tests: these databases are thrown away (the store's own tests
    # of group commit count transactions, not disk syncs).
    durability = [] if fsync else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(folder),
         *durability, "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
        stdout=server_log, stderr=subprocess.STDOUT, **run_as,
    )  # fmt: skip
    server_log.close()
    server = PostgresServer(process, port, folder)
    deadline = time.monotonic() + 30
    while True:
        ready = subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False)
        if ready.returncode == 0:
            return server
        if process.poll() is not None:
            return None
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return None
        time.sleep(0.1)
