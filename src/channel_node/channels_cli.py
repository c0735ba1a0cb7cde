"""Operator commands: `channels list|show|claim|close|settle` and `status`.

They talk to the running node through its admin API (`--admin-url`, token from
CHANNEL_NODE_ADMIN_TOKEN or the config's `admin_token`). When no node answers there, they work
directly on the node's database and chain from `--config` (the node must be stopped: the database
is locked while it runs). Either way the output is the same JSON the admin API returns; tables on a
terminal, `--json` for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ADMIN_URL = "http://127.0.0.1:8403"


class OperatorError(Exception):
    """Something the operator must fix; printed as one line, exit code 2."""


# ---------------------------------------------------------------------- two ways to reach the node


class AdminApi:
    def __init__(self, url: str, token: str) -> None:
        import aiohttp

        self.url = url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(total=30)
        )

    async def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        async with self._session.request(method, f"{self.url}/admin{path}", json=body, params=params) as response:
            document = await response.json(content_type=None)
            if response.status >= 400:
                raise OperatorError(f"{document.get('error')}: {document.get('message')}")
            return document

    async def close(self) -> None:
        await self._session.close()


class Direct:
    """The node's own objects over its database and chain, for when the node is stopped."""

    def __init__(self, node) -> None:
        self.node = node

    async def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        from channel_node.core import OperatorClaim, OperatorClose, Rejected
        from channel_node.server.admin import channel_json, channel_status, charge_json, outbox_json, parse_channel_id

        store, runtime = self.node.store, self.node.runtime
        params = params or {}
        if (method, path) == ("GET", "/channels"):
            rows = [channel_json(c.state) for c in await store.list_channels()]
            if params.get("status"):
                rows = [r for r in rows if r["status"] == params["status"]]
            if params.get("min_unclaimed"):
                rows = [r for r in rows if int(r["unclaimed"]) >= int(params["min_unclaimed"])]
            return rows
        if method == "GET" and path.startswith("/channels/"):
            channel = parse_channel_id(path.split("/")[2])
            stored = await store.load_channel(channel)
            if stored is None:
                raise OperatorError("channel_unknown: this node has no such channel")
            charges = [charge_json(c) for c in await store.charges(channel)]
            outbox = [outbox_json(r) for r in await store.outbox() if r.channel_id == channel]
            return channel_json(stored.state) | {"charges": charges, "outbox": outbox}
        if method == "POST" and path in ("/claim", "/close"):
            action = OperatorClaim() if path == "/claim" else OperatorClose()
            minimum = int((body or {}).get("min", "1"))
            wanted = {parse_channel_id(c) for c in (body or {}).get("channels", [])}
            queued, rejected = [], []
            for stored in await store.list_channels():
                state = stored.state
                if channel_status(state) == "settled" or (wanted and state.channel_id not in wanted):
                    continue
                if path == "/claim" and state.unclaimed < minimum:
                    continue
                effect = await runtime.operator(state.channel_id, action)
                target = rejected if isinstance(effect, Rejected) else queued
                target.append("0x" + state.channel_id.hex())
            return {"queued": len(queued), "channels": queued, "rejected": rejected}
        if (method, path) == ("GET", "/outbox"):
            return [outbox_json(r) for r in await store.outbox(("pending", "sent", "done", "abandoned"))]
        if (method, path) == ("GET", "/status"):
            channels = [c.state for c in await store.list_channels()]
            report = await self.node.health()
            report["totals"] = {
                "channels": len(channels),
                "revenue": str(sum(s.charged for s in channels)),
                "unclaimed": str(sum(s.unclaimed for s in channels)),
            }
            return report
        raise OperatorError(f"not available without a running node: {method} {path}")

    async def close(self) -> None:
        await self.node.close()


async def connect(args: argparse.Namespace):
    """The admin API when a node answers there, else the database and chain from --config."""
    from channel_node.config import load_settings

    settings = None
    if args.config:
        try:
            settings = load_settings(Path(args.config))
        except Exception as exc:
            raise OperatorError(f"invalid configuration: {str(exc).splitlines()[0]}") from None
    token = os.environ.get("CHANNEL_NODE_ADMIN_TOKEN") or (
        settings.admin_token.get_secret_value() if settings and settings.admin_token else None
    )
    url = args.admin_url or (f"http://{settings.admin_host}:{settings.admin_port}" if settings else DEFAULT_ADMIN_URL)
    if token:
        api = AdminApi(url, token)
        try:
            await api.call("GET", "/status")
            return api
        except OperatorError:
            await api.close()
            raise
        except Exception:  # nobody listening: fall through to direct mode
            await api.close()
    if settings is None:
        raise OperatorError(
            f"no node answered at {url} (set CHANNEL_NODE_ADMIN_TOKEN), and no --config to work without one"
        )
    return Direct(await _direct_node(settings))


async def _direct_node(settings):
    from channel_node.chain.connect import web3_for
    from channel_node.node import NodeConfigError, build_node
    from channel_node.store import StoreError, StoreLocked

    w3, persistent = web3_for(settings.rpc_url)
    try:
        if persistent:
            await w3.provider.connect()
        return await build_node(settings, w3)
    except StoreLocked:
        raise OperatorError("the node is running (its database is locked) but its admin API did not answer") from None
    except (NodeConfigError, StoreError) as exc:
        raise OperatorError(str(exc)) from None
    except OSError as exc:
        raise OperatorError(f"cannot reach the chain at the configured rpc_url ({type(exc).__name__})") from None


# ---------------------------------------------------------------------- commands


async def _list(node, args) -> Any:
    params = {k: v for k, v in (("status", args.status), ("min_unclaimed", args.min_unclaimed)) if v is not None}
    return await node.call("GET", "/channels", params=params)


async def _show(node, args) -> Any:
    return await node.call("GET", f"/channels/{args.channel}")


async def _claim(node, args) -> Any:
    if args.channel and args.all:
        raise OperatorError("give a channel id or --all, not both")
    if args.channel:
        if isinstance(node, Direct):
            return await node.call("POST", "/claim", {"channels": [args.channel], "min": "1"})
        return await node.call("POST", f"/channels/{args.channel}/claim")
    if not args.all:
        raise OperatorError("give a channel id or --all")
    return await node.call("POST", "/claim", {"min": str(args.min)})


async def _close(node, args) -> Any:
    if bool(args.channel) == bool(args.all):
        raise OperatorError("give a channel id or --all")
    body = {"all": True} if args.all else {"channels": [args.channel]}
    if isinstance(node, Direct) and args.all:
        body = {}
    return await node.call("POST", "/close", body)


async def _settle(node, args) -> Any:
    """Claims everything claimable and waits until the outbox has sent and confirmed it all."""
    queued = await node.call("POST", "/claim", {"min": "1"})
    deadline = time.monotonic() + args.wait
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("waiting for claims to confirm ...") as status:
        while True:
            if isinstance(node, Direct):  # nobody else is sending: do the node's work here
                await node.node.watcher.poll()
                if node.node.sender is None:
                    raise OperatorError("no claim_key or claim_keystore in the configuration: cannot send")
                await node.node.sender.tick()
            rows = await node.call("GET", "/outbox")
            open_rows = [r for r in rows if r["status"] in ("pending", "sent")]
            status.update(f"waiting for {len(open_rows)} transaction(s) to confirm ...")
            if not open_rows:
                break
            if time.monotonic() > deadline:
                raise OperatorError(f"{len(open_rows)} outbox rows still open after {args.wait} s")
            await asyncio.sleep(0.5 if isinstance(node, Direct) else 1.0)
    abandoned = [r for r in rows if r["status"] == "abandoned"]
    return {"queued": queued["queued"], "open": 0, "abandoned": len(abandoned)}


async def _status(node, args) -> Any:
    return await node.call("GET", "/status")


COMMANDS = {"list": _list, "show": _show, "claim": _claim, "close": _close, "settle": _settle, "status": _status}


def _render(command: str, result: Any, as_json: bool) -> None:
    if as_json or not sys.stdout.isatty():
        print(json.dumps(result, indent=None if not sys.stdout.isatty() else 2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if command == "list":
        table = Table(title=f"{len(result)} channel(s)")
        for column in ("channel", "payer", "status", "deposited", "charged", "unclaimed", "credit"):
            table.add_column(column, justify="right" if column not in ("channel", "payer", "status") else "left")
        for row in result:
            table.add_row(row["channelId"][:18] + "…", row["payer"], row["status"], row["deposited"], row["charged"],
                          row["unclaimed"], row["credit"])  # fmt: skip
        console.print(table)
    else:
        table = Table(show_header=False)
        table.add_column("field")
        table.add_column("value")
        for key, value in result.items():
            table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
        console.print(table)


def _handler(command: str):
    def handle(args: argparse.Namespace) -> int:
        from channel_node.cli_support import run_async

        async def main() -> int:
            try:
                node = await connect(args)
            except OperatorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            try:
                result = await COMMANDS[command](node, args)
            except OperatorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            finally:
                await node.close()
            _render(command, result, args.json)
            return 0

        return run_async(main())

    return handle


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the node's TOML configuration (for direct mode and the admin address)")
    parser.add_argument("--admin-url", help=f"the running node's admin API (default from config, else {DEFAULT_ADMIN_URL})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_operator_commands(subparsers) -> None:
    channels = subparsers.add_parser("channels", help="list, inspect, claim, close and settle channels")
    actions = channels.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the node's channels (filters: --status, --min-unclaimed)")
    listing.add_argument("--status", choices=["open", "closing", "receiver_closing", "settled"])
    listing.add_argument("--min-unclaimed", help="only channels with at least this much signed but unclaimed")
    show = actions.add_parser("show", help="one channel with its charges and outbox rows")
    show.add_argument("channel")
    claim = actions.add_parser("claim", help="claim one channel's best voucher, or --all above --min")
    claim.add_argument("channel", nargs="?")
    claim.add_argument("--all", action="store_true")
    claim.add_argument("--min", type=int, default=1, help="with --all: only channels with this much unclaimed")
    close = actions.add_parser("close", help="close a channel (or --all) with its best voucher, refunding the rest")
    close.add_argument("channel", nargs="?")
    close.add_argument("--all", action="store_true")
    settle = actions.add_parser("settle", help="claim everything and wait until it is confirmed")
    settle.add_argument("--wait", type=float, default=600, help="seconds to wait for confirmations (default 600)")
    for name, parser in (("list", listing), ("show", show), ("claim", claim), ("close", close), ("settle", settle)):
        _common(parser)
        parser.set_defaults(handler=_handler(name))
    status = subparsers.add_parser("status", help="chain head, cursor lag, outbox, gas balance, revenue")
    _common(status)
    status.set_defaults(handler=_handler("status"))
