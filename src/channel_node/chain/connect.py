"""An AsyncWeb3 for a JSON-RPC URL, the one way every command connects."""

from __future__ import annotations

from typing import Any

from web3 import AsyncWeb3, WebSocketProvider
from web3.providers import AsyncHTTPProvider


def web3_for(url: str) -> tuple[AsyncWeb3[Any], bool]:
    """AsyncWeb3 over HTTP(S) or WS(S), and whether its provider needs `connect()` (WebSocket).
    A dead WebSocket endpoint gets one retry rather than web3's default five with growing back-off
    (about 20 s before a command could say so)."""
    if url.startswith(("ws://", "wss://")):
        return AsyncWeb3(WebSocketProvider(url, max_connection_retries=2)), True
    return AsyncWeb3(AsyncHTTPProvider(url)), False
