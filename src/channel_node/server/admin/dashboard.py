"""The revenue dashboard's HTTP side, on the admin listener: `GET /admin/insights` (the HTML page),
`GET /admin/insights/data.json`, `GET /admin/insights/export.csv`, and the login form that trades
the admin token for the dashboard's cookie.

Why the handlers live here and not in `insights/`: the page is served by the admin application,
behind the admin guard, and its login is the admin token's business (`auth.py`: the bearer check,
the cookie and its constant-time comparison). Keeping the HTTP and auth side next to that guard
leaves `insights/` a library with no web framework and no secrets: schema, recorder, queries,
charts, the page's figures and markup (`insights/dashboard.py`) and the terminal report, which any
edge (this listener, the CLI, a script) may use. The arrow points one way: `server/admin` imports
`insights`, never the reverse (tests/test_layers.py checks it). Moving auth to a module both
import would have kept aiohttp and the cookie inside `insights/` for the login route's sake.

The admin application's middleware already demands the bearer token (or, for these reads, the
cookie) for every path under /admin; these handlers only add routes. The query parameters are
described in `insights/dashboard.py`. Queries run on a worker thread over a read-only connection
(WAL: beside the recorder's writer), so the paywall on the same event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from channel_node.amounts import Asset
from channel_node.insights import queries as q
from channel_node.insights.charts import Money
from channel_node.insights.dashboard import (
    PARAMS,
    TABLES,
    BadRequest,
    compute,
    jsonable,
    parse_period,
    parse_tag,
    parse_top,
    render_page,
    resolve_range,
    to_csv,
)
from channel_node.insights.recorder import Recorder
from channel_node.insights.schema import asset_of_file
from channel_node.server.admin.api import ADMIN_API
from channel_node.server.admin.auth import DASHBOARD_COOKIE, DASHBOARD_LOGIN, DASHBOARD_PREFIX

PREFIX = DASHBOARD_PREFIX
FLUSH_WAIT = 2.0  # seconds the page waits for the recorder to write the last second of events


def _log() -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger("channel_node.admin")  # get_logger is untyped (Any)
    return logger


def _params(request: web.Request, extra: tuple[str, ...] = ()) -> dict[str, str]:
    allowed = set(PARAMS) | set(extra)
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            raise BadRequest(f"unknown query parameter {key!r}; known: {sorted(allowed)}")
        if key in out:
            raise BadRequest(f"query parameter {key!r} given twice")
        out[key] = value
    return out


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class Dashboard:
    def __init__(self, source: Recorder | str | Path, money: Money | None = None,
                 clock: Callable[[], float] = time.time, asset: Asset | None = None) -> None:  # fmt: skip
        self.recorder = source if isinstance(source, Recorder) else None
        self.path = source.path if isinstance(source, Recorder) else Path(source)
        self.fixed_money = money  # the flags' or the node's; else the file's own asset, read per page
        self.asset = asset  # gas is converted into it (docs/economics.md); None: the file's own
        self.clock = clock

    @property
    def money(self) -> Money:
        if self.fixed_money is not None:
            return self.fixed_money
        asset = asset_of_file(self.path) if self.path.exists() else None
        return Money.of(asset) if asset is not None else Money()

    async def _data(
        self, request: web.Request, extra: tuple[str, ...] = (), top_default: int | None = 10
    ) -> tuple[dict[str, str], dict[str, Any]]:
        params = _params(request, extra)
        bucket = params.get("bucket", "day")
        since, until = resolve_range(bucket, params.get("since"), params.get("until"), self.clock())
        tag = parse_tag(params)
        top = parse_top(params, top_default)
        period = parse_period(params, bucket)
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        if self.recorder is not None and self.recorder.running:
            try:  # the last second of events too
                await asyncio.wait_for(self.recorder.flush(), timeout=FLUSH_WAIT)
            except (TimeoutError, RuntimeError):
                pass
        data = await asyncio.to_thread(compute, self.path, bucket, since, until, tag, top if top is not None else 10**9,
                                       period, None, self.asset)  # fmt: skip
        return params, data

    async def _answer(self, make: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await make()
        except (BadRequest, q.QueryError) as exc:
            return _error(400, "malformed_request", str(exc))
        except FileNotFoundError:
            return _error(503, "insights_unavailable", "no insights recorded yet")
        except sqlite3.Error as exc:
            return _error(503, "insights_unavailable", f"the insights database could not be read ({type(exc).__name__})")

    async def page(self, request: web.Request) -> web.StreamResponse:
        async def make() -> web.StreamResponse:
            params, data = await self._data(request)
            money = await asyncio.to_thread(lambda: self.money)
            return web.Response(text=render_page(data, params, money, prefix=PREFIX), content_type="text/html",
                                charset="utf-8", headers={"Cache-Control": "no-store"})  # fmt: skip

        return await self._answer(make)

    async def data_json(self, request: web.Request) -> web.StreamResponse:
        async def make() -> web.StreamResponse:
            _, data = await self._data(request)
            return web.Response(body=orjson.dumps(jsonable(data)), content_type="application/json",
                                headers={"Cache-Control": "no-store"})  # fmt: skip

        return await self._answer(make)

    async def export_csv(self, request: web.Request) -> web.StreamResponse:
        async def make() -> web.StreamResponse:
            table = request.query.get("table", "series")
            if table not in TABLES:
                raise BadRequest(f"table must be one of {list(TABLES)}")
            _, data = await self._data(request, ("table",), top_default=None if table == "resources" else 10)
            name = f"insights-{table}-{data['range']['bucket']}-{data['range']['since']}-{data['range']['until']}.csv"
            return web.Response(text=to_csv(data, table), content_type="text/csv", charset="utf-8",
                                headers={"Content-Disposition": f'attachment; filename="{name}"',
                                         "Cache-Control": "no-store"})  # fmt: skip

        return await self._answer(make)


def add_dashboard_routes(
    app: web.Application, source: Recorder | str | Path, decimals: int | None = None, symbol: str | None = None,
    *, asset: Asset | None = None,
) -> Dashboard:
    """Adds the dashboard's three GET routes and its login form to `app` (the admin application: its
    middleware checks the token). `source` is the node's Recorder (its file; the page flushes it
    first) or a path. Amounts are shown in `asset` (the node's), else in `decimals` and `symbol`
    when given (e.g. 18, "ETH"), else in the asset the file records (docs/amounts.md)."""
    money = Money.of(asset) if asset is not None else Money(decimals, symbol) if decimals or symbol else None
    dashboard = Dashboard(source, money, asset=asset)
    app.router.add_get(PREFIX, dashboard.page, allow_head=False)
    app.router.add_get(f"{PREFIX}/data.json", dashboard.data_json, allow_head=False)
    app.router.add_get(f"{PREFIX}/export.csv", dashboard.export_csv, allow_head=False)
    app.router.add_get(DASHBOARD_LOGIN, _login_form, allow_head=False)
    app.router.add_post(DASHBOARD_LOGIN, _login)
    return dashboard


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>channel-node insights</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28em;margin:4em auto}}input{{width:100%;padding:.4em}}</style>
</head><body><h1>Revenue insights</h1>{message}
<form method="post" action="login"><label>Admin token<br><input type="password" name="token" autofocus></label>
<p><button type="submit">Open the dashboard</button></p></form></body></html>"""


async def _login_form(request: web.Request) -> web.Response:
    return web.Response(text=_LOGIN_PAGE.format(message=""), content_type="text/html")


async def _login(request: web.Request) -> web.Response:
    """Trades the admin token for an HttpOnly, same-site cookie that opens the dashboard's pages
    (reads only) in a browser, which cannot send a bearer header."""
    auth = request.app[ADMIN_API].auth
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not auth.token_matches(token):
        _log().warning("dashboard_login_refused", remote=request.remote)
        page = _LOGIN_PAGE.format(message="<p><strong>That token is not this node's admin token.</strong></p>")
        return web.Response(text=page, content_type="text/html", status=401)
    _log().info("dashboard_login", remote=request.remote)
    response = web.Response(status=303, headers={"Location": DASHBOARD_PREFIX})
    response.set_cookie(DASHBOARD_COOKIE, auth.dashboard_session(), httponly=True, samesite="Strict", path=DASHBOARD_PREFIX)
    return response


__all__ = ["Dashboard", "add_dashboard_routes"]
