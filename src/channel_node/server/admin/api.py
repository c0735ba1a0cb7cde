"""The admin API's routes and handlers: an aiohttp application under `/admin`, for the node's operator.

It is meant for its own listener bound to 127.0.0.1 (never the paywall's): every request must carry
`Authorization: Bearer <admin_token>`; a node without `admin_token` answers every request 503
`admin_disabled`. Reads list and show channels, the outbox and totals; writes queue claims and
closes through `channel_node.node.operations` (which channels, what amount: the same choice the operator
commands make on a stopped node and the settlement policy makes), decided by the core and committed
as outbox rows like any other transaction (the sender broadcasts them). Every write is logged as
`admin_action`.

Amounts are decimal strings in the token's smallest unit (uint256-safe, never floats). Every
refusal is JSON `{"error": <stable code>, "message": ...}`; nothing a client sends raises a 500.
`GET /admin/openapi.json` describes all of it (`openapi.py`, which also holds the enums and limits
the handlers enforce); who may call is `auth.py`'s decision, made in the `guard` middleware below.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson
import structlog
from aiohttp import web
from structlog.typing import FilteringBoundLogger

from channel_node.config import Settings
from channel_node.core import ChannelState, Reject
from channel_node.core import channel_status as channel_status  # the one derivation; re-exported for the package
from channel_node.errors import Refusal
from channel_node.node.operations import Batch, Operations, Queued, Refused
from channel_node.node.runtime import Runtime
from channel_node.server.admin.auth import DASHBOARD_COOKIE, AdminAuth, Admission
from channel_node.server.admin.openapi import (
    CHANNEL_STATUSES,
    DEFAULT_LIMIT,
    MAX_BATCH,
    MAX_LIMIT,
    OUTBOX_OPEN,
    OUTBOX_STATUSES,
    PREFIX,
    openapi_document,
)
from channel_node.store import Charge, OutboxRow, OutboxStatus, Store, StoreError
from channel_node.types import UINT256_MAX
from channel_node.wire.channel import config_json

MAX_BODY = 1024 * 1024

_HEX_ID = re.compile(r"(0x)?([0-9a-fA-F]{64})")
_DIGITS = re.compile(r"[0-9]{1,78}")


class AdminError(Refusal):
    """A refusal: answered as `{"error": code, "message": message}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A batch operation of `Operations`, handed the list it fills with each channel's result as it goes.
Operate = Callable[[list[Queued | Refused]], Awaitable[Batch]]


class AdminNode(Protocol):
    """What the admin API and the operator commands use of a node (`node.assembly.Node` is one)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def runtime(self) -> Runtime: ...

    async def health(self) -> Mapping[str, Any]: ...


def _log() -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger("channel_node.admin")  # get_logger is untyped (Any)
    return logger


# ------------------------------------------------------------------ JSON shapes


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def channel_json(state: ChannelState) -> dict[str, Any]:
    return {
        "channelId": _hex(state.channel_id),
        **config_json(state.config),
        "deposited": str(state.deposited),
        "claimed": str(state.claimed),
        "maxClaimableAmount": str(state.ceiling),
        "charged": str(state.charged),
        "unclaimed": str(state.unclaimed),
        "credit": str(state.credit),
        "closeDeadline": state.close_deadline,
        "settled": state.settled,
        "receiverClosing": state.receiver_closing,
        "status": channel_status(state),
    }


def charge_json(charge: Charge) -> dict[str, Any]:
    return {
        "resource": charge.resource,
        "amount": str(charge.amount),
        "paymentId": charge.payment_id,
        "once": charge.once,
        "at": charge.at,
    }


def outbox_json(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "channelId": _hex(row.channel_id),
        "kind": row.kind,
        "amount": str(row.amount),
        "voucherAmount": str(row.voucher),
        "deadline": row.deadline,
        "status": row.status,
        "txHash": _hex(row.tx_hash),
        "nonce": row.nonce,
        "maxFee": None if row.max_fee is None else str(row.max_fee),
        "priorityFee": None if row.priority_fee is None else str(row.priority_fee),
        "sentAt": row.sent_at,
        "attempts": row.attempts,
        "note": row.note,
        # what its mined transaction cost (its share of a batch), docs/economics.md; None until mined
        "gasUsed": row.gas_used,
        "gasPrice": None if row.gas_price is None else str(row.gas_price),
    }


def result_json(result: Queued | Refused) -> dict[str, Any]:
    """A queued claim or close (with its outbox row when known), or a refusal with its code."""
    if isinstance(result, Refused):
        return {"channelId": _hex(result.channel_id), "error": result.code, "message": result.message}
    out: dict[str, Any] = {"channelId": _hex(result.channel_id), "kind": result.kind, "amount": str(result.amount)}
    if result.outbox_id is not None:
        out |= {"outboxId": result.outbox_id, "status": result.status, "deadline": result.deadline}
    return out


def batch_json(batch: Batch) -> dict[str, Any]:
    return {
        "queued": len(batch.queued),
        "channels": [result_json(r) for r in batch.queued],
        "rejected": [result_json(r) for r in batch.rejected],
    }


def matching_channels(states: Iterable[ChannelState], status: str | None, minimum: int | None) -> list[ChannelState]:
    """The list's filters (`status`, at least `minimum` unclaimed), in the order given."""
    return [
        s for s in states
        if (status is None or channel_status(s) == status) and (minimum is None or s.unclaimed >= minimum)
    ]  # fmt: skip


async def channel_document(node: AdminNode, channel: bytes) -> dict[str, Any] | None:
    """One channel with its charges and open outbox rows (None: the node has no such channel)."""
    state = await node.runtime.channel(channel)
    if state is None:
        return None
    charges = await node.store.charges(channel)
    rows = [row for row in await node.store.outbox(OUTBOX_OPEN) if row.channel_id == channel]
    return channel_json(state) | {"charges": [charge_json(c) for c in charges], "outbox": [outbox_json(r) for r in rows]}


async def status_document(node: AdminNode) -> dict[str, Any]:
    """The node's health report plus totals over every channel and the open outbox."""
    health = await node.health()
    states = [stored.state for stored in await node.store.list_channels()]
    by_status = dict.fromkeys(CHANNEL_STATUSES, 0)
    for state in states:
        by_status[channel_status(state)] += 1
    open_rows = await node.store.outbox(OUTBOX_OPEN)
    outbox = {
        status: {
            "rows": sum(1 for r in open_rows if r.status == status),
            "amount": str(sum(r.amount for r in open_rows if r.status == status)),
        }
        for status in OUTBOX_OPEN
    }
    totals = {
        "channels": len(states),
        "channelsByStatus": by_status,
        "deposited": str(sum(s.deposited for s in states)),
        "claimed": str(sum(s.claimed for s in states)),
        "revenue": str(sum(s.charged for s in states)),
        "unclaimed": str(sum(s.unclaimed for s in states)),
        "credit": str(sum(s.credit for s in states)),
        "outbox": outbox,
    }
    document = {"status": "degraded" if health.get("problems") else "ok", **health, "totals": totals}
    asset = getattr(node, "asset", None)  # the node's (node.assembly.Node has one): the commands show amounts in it
    if asset is not None:
        document["asset"] = {"symbol": asset.symbol, "decimals": asset.decimals, "address": asset.address}
    return document


# ------------------------------------------------------------------ input parsing


def parse_channel_id(text: object) -> bytes:
    match = _HEX_ID.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise AdminError(400, "malformed_channel_id", "a channel id is 32 bytes of hex (0x followed by 64 digits)")
    return bytes.fromhex(match.group(2))


def _amount(value: object, name: str) -> int:
    """A uint256 amount: a decimal string (preferred) or a JSON integer; never a float or a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AdminError(400, "malformed_request", f"{name} must be a whole number as a decimal string")
    if isinstance(value, str):
        if _DIGITS.fullmatch(value) is None:
            raise AdminError(400, "malformed_request", f"{name} must be a whole number as a decimal string")
        value = int(value)
    if not 0 <= value <= UINT256_MAX:
        raise AdminError(400, "malformed_request", f"{name} must be between 0 and 2**256 - 1")
    return value


amount_arg = _amount  # for the operator commands on a stopped node (cli/channels.Direct)


def _query(request: web.Request, names: Iterable[str]) -> dict[str, str]:
    allowed = set(names)
    query: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            raise AdminError(400, "malformed_request", f"unknown query parameter {key!r}; known: {sorted(allowed)}")
        if key in query:
            raise AdminError(400, "malformed_request", f"query parameter {key!r} given twice")
        query[key] = value
    return query


def _page(query: dict[str, str]) -> tuple[int, int]:
    limit, offset = DEFAULT_LIMIT, 0
    if "limit" in query:
        limit = _amount(query["limit"], "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise AdminError(400, "malformed_request", f"limit must be between 1 and {MAX_LIMIT}")
    if "offset" in query:
        offset = _amount(query["offset"], "offset")
    return limit, offset


async def _body(request: web.Request, allowed: set[str], required: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise AdminError(400, "malformed_request", "this call needs a JSON object body")
        return {}
    try:
        # orjson, not json: it caps nesting at 1024, while py-evm raises the interpreter's recursion limit
        # so far that the stdlib parser would crash the process on a deeply nested body. Integers beyond
        # 64 bits come back as floats, which `_amount` refuses (amounts are decimal strings).
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AdminError(400, "malformed_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise AdminError(400, "malformed_request", "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise AdminError(400, "malformed_request", f"unknown fields {sorted(unknown)}; known: {sorted(allowed)}")
    return body


# ------------------------------------------------------------------ the application


class AdminApi:
    def __init__(self, node: AdminNode) -> None:
        self.node = node
        self.auth = AdminAuth(node.settings.admin_token)

    def __repr__(self) -> str:  # never the token
        return f"AdminApi(enabled={self.auth.enabled})"

    @property
    def store(self) -> Store:
        return self.node.store

    @property
    def runtime(self) -> Runtime:
        return self.node.runtime

    @property
    def operations(self) -> Operations:
        return Operations(self.node.runtime, self.node.store)

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            admission = self.auth.admit(request.method, request.path, request.headers.get("Authorization"),
                                        request.cookies.get(DASHBOARD_COOKIE))  # fmt: skip
            if admission is Admission.DISABLED:
                raise AdminError(503, "admin_disabled", "the admin API is disabled: set admin_token to enable it")
            if admission is Admission.DENIED:
                _log().warning("admin_denied", method=request.method, path=request.path, remote=request.remote)
                raise AdminError(
                    401, "unauthorized", "send Authorization: Bearer <admin_token>",
                    {"WWW-Authenticate": 'Bearer realm="channel-node admin"'},
                )  # fmt: skip
            return await handler(request)
        except AdminError as exc:
            return exc.response()
        except web.HTTPException as exc:  # routing (404, 405) and body size (413) refusals
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status, "http_error")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, code, exc.reason, headers)
        except StoreError as exc:
            _log().error("admin_store_failed", path=request.path, error=type(exc).__name__)
            return error_response(503, "store_unavailable", "the node's database could not be used; retry later")
        except Exception as exc:  # a bug: answer JSON, log the type (never the request's headers)
            error = f"{type(exc).__name__}: {exc}"[:300]
            _log().error("admin_failed", method=request.method, path=request.path, error=error)
            return error_response(500, "internal_error", "the node failed to answer; see its log")

    # ------------------------------------------------------------------ reads

    async def list_channels(self, request: web.Request) -> web.Response:
        query = _query(request, ("status", "min_unclaimed", "limit", "offset"))
        status = query.get("status")
        if status is not None and status not in CHANNEL_STATUSES:
            raise AdminError(400, "malformed_request", f"status must be one of {[str(s) for s in CHANNEL_STATUSES]}")
        minimum = _amount(query["min_unclaimed"], "min_unclaimed") if "min_unclaimed" in query else None
        limit, offset = _page(query)
        selected = matching_channels(await self._states(), status, minimum)
        page = selected[offset : offset + limit]
        return web.json_response([channel_json(s) for s in page], headers={"X-Total-Count": str(len(selected))})

    async def show_channel(self, request: web.Request) -> web.Response:
        _query(request, ())
        channel = parse_channel_id(request.match_info["id"])
        document = await channel_document(self.node, channel)
        if document is None:
            raise AdminError(404, Reject.CHANNEL_UNKNOWN.value, "this node has no such channel")
        return web.json_response(document)

    async def outbox(self, request: web.Request) -> web.Response:
        query = _query(request, ("status", "channel", "limit", "offset"))
        statuses: tuple[OutboxStatus, ...] = OUTBOX_STATUSES
        if "status" in query:
            if query["status"] not in OUTBOX_STATUSES:
                raise AdminError(400, "malformed_request", f"status must be one of {[str(s) for s in OUTBOX_STATUSES]}")
            statuses = (OutboxStatus(query["status"]),)
        channel = parse_channel_id(query["channel"]) if "channel" in query else None
        limit, offset = _page(query)
        rows = await self.store.outbox(statuses)
        rows = [row for row in reversed(rows) if channel is None or row.channel_id == channel]  # newest first
        page = rows[offset : offset + limit]
        return web.json_response([outbox_json(r) for r in page], headers={"X-Total-Count": str(len(rows))})

    async def status(self, request: web.Request) -> web.Response:
        _query(request, ())
        return web.json_response(await status_document(self.node))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def _states(self) -> list[ChannelState]:
        """Every channel, ordered by id (a stable order for paging)."""
        return await self.operations.states()

    # ------------------------------------------------------------------ writes

    async def claim_one(self, request: web.Request) -> web.Response:
        return await self._one(request, "claim")

    async def close_one(self, request: web.Request) -> web.Response:
        return await self._one(request, "close")

    async def _one(self, request: web.Request, kind: str) -> web.Response:
        _query(request, ())
        channel = parse_channel_id(request.match_info["id"])
        await _body(request, set())  # no fields; a body, if any, must still be a JSON object
        result = await self.operations.one(kind, channel)
        if isinstance(result, Refused):
            self._log_action(request, kind, [channel], result=result.code)
            status = 404 if result.code == Reject.CHANNEL_UNKNOWN.value else 409
            raise AdminError(status, result.code, result.message)
        self._log_action(request, kind, [channel], result="queued", amount=str(result.amount))
        return web.json_response(result_json(result), status=202)

    async def claim_many(self, request: web.Request) -> web.Response:
        _query(request, ())
        body = await _body(request, {"min"})
        minimum = _amount(body.get("min", "1"), "min")
        if minimum < 1:
            raise AdminError(400, "malformed_request", "min must be at least 1")
        return await self._many(request, "claim", lambda results: self.operations.claim_all(minimum, results),
                                min=str(minimum))  # fmt: skip

    async def close_many(self, request: web.Request) -> web.Response:
        _query(request, ())
        body = await _body(request, {"all", "channels"}, required=True)
        if "all" in body and "channels" in body:
            raise AdminError(400, "malformed_request", 'send either {"all": true} or {"channels": [...]}, not both')
        if "all" in body:
            if body["all"] is not True:
                raise AdminError(400, "malformed_request", '"all" must be true')
            # Which channels: channel_node.node.operations (none without a voucher, none settled or already closing).
            return await self._many(request, "close", self.operations.close_all, all=True)
        ids = body.get("channels")
        if not isinstance(ids, list) or not ids:
            raise AdminError(400, "malformed_request", 'send {"all": true} or {"channels": [<channel id>, ...]}')
        if len(ids) > MAX_BATCH:
            raise AdminError(400, "malformed_request", f"at most {MAX_BATCH} channels per call")
        targets = [parse_channel_id(text) for text in ids]  # all checked before any is closed
        return await self._many(request, "close", lambda results: self.operations.close_listed(targets, results))

    async def _many(self, request: web.Request, kind: str, operate: Operate, **fields: object) -> web.Response:
        results: list[Queued | Refused] = []
        try:
            batch = await operate(results)
        finally:  # logged even when the store fails half way: what was queued stays queued
            queued = [r for r in results if isinstance(r, Queued)]
            rejected = [r for r in results if isinstance(r, Refused)]
            self._log_action(
                request, kind, [r.channel_id for r in queued], result="queued", queued=len(queued),
                rejected=[f"{_hex(r.channel_id)}:{r.code}" for r in rejected], **fields,
            )  # fmt: skip
        return web.json_response(batch_json(batch), status=202)

    @staticmethod
    def _log_action(request: web.Request, action: str, channels: list[bytes], **fields: object) -> None:
        names = [_hex(c) for c in channels]
        _log().info("admin_action", action=action, channels=names, remote=request.remote, **fields)


ADMIN_API = web.AppKey("admin_api", AdminApi)


def create_admin_app(node: AdminNode) -> web.Application:
    """The admin application for `node` (serve it on its own listener, 127.0.0.1 by default)."""
    api = AdminApi(node)
    app = web.Application(middlewares=[api.guard], client_max_size=MAX_BODY)
    app[ADMIN_API] = api
    app.router.add_get(f"{PREFIX}/channels", api.list_channels, allow_head=False)
    app.router.add_get(f"{PREFIX}/channels/{{id}}", api.show_channel, allow_head=False)
    app.router.add_post(f"{PREFIX}/channels/{{id}}/claim", api.claim_one)
    app.router.add_post(f"{PREFIX}/channels/{{id}}/close", api.close_one)
    app.router.add_post(f"{PREFIX}/claim", api.claim_many)
    app.router.add_post(f"{PREFIX}/close", api.close_many)
    app.router.add_get(f"{PREFIX}/status", api.status, allow_head=False)
    app.router.add_get(f"{PREFIX}/outbox", api.outbox, allow_head=False)
    app.router.add_get(f"{PREFIX}/openapi.json", api.openapi, allow_head=False)
    return app
