"""Foundry's anvil (npm @foundry-rs/anvil-linux-amd64, installed by `npm ci --prefix tools`) as a
real JSON-RPC chain on a free loopback port, stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ANVIL = Path(__file__).resolve().parent.parent / "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rpc(url: str, method: str, params: list | None = None):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class Anvil:
    process: subprocess.Popen
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list | None = None):
        return rpc(self.http_url, method, params)

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_anvil() -> Anvil:
    if not ANVIL.exists():
        raise RuntimeError(f"anvil not found at {ANVIL}: run `npm ci --prefix tools`")
    port = free_port()
    process = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    anvil = Anvil(process, port)
    deadline = time.monotonic() + 20
    while True:
        try:
            anvil.rpc("eth_chainId")
            return anvil
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                anvil.stop()
                raise RuntimeError("anvil did not start") from None
            time.sleep(0.05)


def anvil_fixture(scope: Literal["function", "module"] = "function") -> Any:
    """A test module's `anvil` fixture, `anvil = anvil_fixture()`: a fresh chain for each test, or
    with "module" one for the module's tests; stopped after."""
    import pytest

    @pytest.fixture(scope=scope, name="anvil")
    def running() -> Iterator[Anvil]:
        chain = start_anvil()
        yield chain
        chain.stop()

    return running
