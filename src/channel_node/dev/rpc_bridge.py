"""The embedded dev chain as a JSON-RPC endpoint on loopback, for wallets in other processes (the
reader CLI, a browser wallet) while `channel-node dev` runs.

Requests go through web3's eth-tester provider, which turns JSON-RPC parameters into eth-tester
calls; results come back as Python values and are encoded the way JSON-RPC nodes answer (integers
as hex quantities, bytes as 0x data). It runs on the event loop's thread: eth-tester is not
thread-safe and the node uses the same chain.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from eth_tester import EthereumTester
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

MAX_BODY = 1 << 20


def to_json_rpc(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {key: to_json_rpc(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_rpc(item) for item in value]
    return value


# A JSON-RPC 2.0 response object (a result or an error), as JSON values.
RpcResponse = dict[str, Any]


def _error(request_id: Any, code: int, message: str) -> RpcResponse:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def create_rpc_app(tester: EthereumTester) -> web.Application:
    """`tester` is the dev chain's EthereumTester."""
    w3 = Web3(EthereumTesterProvider(tester))
    # ENS lookups make no sense on a dev chain and choke on log filters passed through raw.
    w3.middleware_onion.remove("ens_name_to_address")
    app = web.Application(client_max_size=MAX_BODY)

    def answer(call: Any) -> RpcResponse:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _error(None, -32600, "invalid request")
        request_id = call.get("id")
        params = call.get("params") or []
        try:
            result = w3.manager.request_blocking(call["method"], params)
        except Exception as exc:  # a revert, an unknown method, a bad parameter: a JSON-RPC error
            data = getattr(exc, "data", None)
            error = _error(request_id, -32000, f"{type(exc).__name__}: {exc}"[:500])
            if isinstance(data, str) and data.startswith("0x"):
                error["error"]["data"] = data
            return error
        return {"jsonrpc": "2.0", "id": request_id, "result": to_json_rpc(result)}

    async def handle(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response(_error(None, -32700, "parse error"))
        if isinstance(body, list):
            return web.json_response([answer(call) for call in body[:100]])
        return web.json_response(answer(body))

    async def preflight(request: web.Request) -> web.Response:
        return web.Response(headers=_CORS)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Browser wallets on the dev site's page call this endpoint from another origin.
        response = await handler(request)
        response.headers.update(_CORS)
        return response

    app.middlewares.append(cors)
    app.router.add_post("/", handle)
    app.router.add_route("OPTIONS", "/", preflight)
    return app


_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
}
