"""`channel-node dev` with the browser paywall wired in, for tests/e2e/test_browser.py.

    python tests/browser_dev.py dev --port 0 --rpc-port 0 --data-dir DIR

Until `Paywall._required` and `create_app` call channel_node.server.browser themselves, this
applies the same integration from outside (an HTML 402 for `Accept: text/html`, and the
`/_channel/wallet.js` route); once they do, it changes nothing and runs the real command.
"""

from __future__ import annotations

import inspect
import json
import sys
import types


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


if __name__ == "__main__":
    integrate()
    from channel_node.cli.main import main

    sys.exit(main(sys.argv[1:]))
