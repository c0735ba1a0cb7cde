"""`channel-node dev` with the browser paywall wired in, for tests/e2e/test_browser.py.

    python tests/browser_dev.py dev --port 0 --rpc-port 0 --data-dir DIR

Until `Paywall._required` and `create_app` call channel_node.server.browser themselves, this
applies the same integration from outside (an HTML 402 for `Accept: text/html`, and the
`/_channel/wallet.js` route); once they do, it changes nothing and runs the real command.

Two test-only knobs, for tests/e2e/test_browser_token.py:
- `CHANNEL_NODE_TEST_PAYWALL`: JSON merged into the dev site's `[paywall]` settings (caps, passes);
- `CHANNEL_NODE_TEST_CLOCK=1`: the dev chain's JSON-RPC endpoint also answers `test_moveClock`
  with params `[seconds]`, which moves the node's clock (the runtime's `clock`) and the dev chain's
  next block time that far ahead, as a day passing would.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import types

CLOCK_OFFSET = [0]  # seconds the node's clock runs ahead of the wall clock (test_moveClock)


def integrate() -> None:
    from channel_node.server import app as app_module
    from channel_node.server.browser import add_browser_routes, html_402, teaser_for, wants_html
    from channel_node.wire.envelope import REQUIRED_HEADER

    if "paywall_page" not in inspect.getsource(app_module) and "html_402" not in inspect.getsource(app_module):
        original = app_module.Paywall._required

        def _required(self, request, price, status, code, message, state=None):
            response = original(self, request, price, status, code, message, state)
            if not wants_html(request.headers.get("Accept")):
                return response
            page = html_402(json.loads(response.body), teaser_for(self.source, request.path, price.description), status)
            page.headers[REQUIRED_HEADER] = response.headers[REQUIRED_HEADER]
            page.headers["Access-Control-Expose-Headers"] = response.headers["Access-Control-Expose-Headers"]
            return page

        app_module.Paywall._required = _required

    if "add_browser_routes" not in inspect.getsource(app_module.create_app):
        real_web = app_module.web

        def application(*args, **kwargs):
            app = real_web.Application(*args, **kwargs)
            add_browser_routes(app)  # first, so the paywall's catch-all route comes after it
            return app

        app_module.web = types.SimpleNamespace(**{**vars(real_web), "Application": application})


def test_knobs() -> None:
    paywall = os.environ.get("CHANNEL_NODE_TEST_PAYWALL")
    if paywall:
        from channel_node.dev import stack

        original_load = stack.load_settings  # dev_settings builds the dev site's settings with it

        def load_settings(*args, **kwargs):
            if isinstance(kwargs.get("paywall"), dict):
                kwargs["paywall"] = {**kwargs["paywall"], **json.loads(paywall)}
            return original_load(*args, **kwargs)

        stack.load_settings = load_settings
    if os.environ.get("CHANNEL_NODE_TEST_CLOCK") == "1":
        from aiohttp import web

        from channel_node.dev import rpc_bridge
        from channel_node.node.runtime import Runtime

        original_init = Runtime.__init__

        def init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            self.clock = lambda: time.time() + CLOCK_OFFSET[0]

        Runtime.__init__ = init
        original_rpc = rpc_bridge.create_rpc_app

        def create_rpc_app(tester):
            app = original_rpc(tester)

            @web.middleware
            async def move_clock(request, handler):
                if request.method == "POST":
                    try:
                        body = json.loads(await request.read() or b"null")
                    except ValueError:
                        body = None
                    if isinstance(body, dict) and body.get("method") == "test_moveClock":
                        seconds = int(body["params"][0])
                        CLOCK_OFFSET[0] += seconds
                        pending = tester.get_block_by_number("pending")["timestamp"]
                        tester.time_travel(max(pending, int(time.time()) + CLOCK_OFFSET[0]))
                        tester.mine_blocks(1)
                        return web.json_response({"jsonrpc": "2.0", "id": body.get("id"), "result": CLOCK_OFFSET[0]})
                return await handler(request)

            app.middlewares.insert(0, move_clock)
            return app

        rpc_bridge.create_rpc_app = create_rpc_app


if __name__ == "__main__":
    integrate()
    test_knobs()
    from channel_node.cli.main import main

    sys.exit(main(sys.argv[1:]))
