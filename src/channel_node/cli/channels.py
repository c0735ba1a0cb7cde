"""Operator commands: `channels list|show|claim|close|settle` and `status`.

They talk to the running node through its admin API (`--admin-url`, token from
CHANNEL_NODE_ADMIN_TOKEN or the config's `admin_token`). When no node answers there, they work
directly on the node's database and chain from `--config` (the node must be stopped: the database
is locked while it runs). Either way the output is the same JSON the admin API returns with
`--json` (amounts in base units, for scripts); on a terminal, tables with amounts in the node's
asset (`0.0005 ETH`, `0.02 DUSD`) that fit its width. Typed amounts (`--min`, `--min-unclaimed`)
are in the asset's unit too, or in base units with `wei`/`base` or `--base-units` (docs/amounts.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the commands import the node lazily: `channel-node --help` stays fast
    from channel_node.amounts import Asset
    from channel_node.config import Settings
    from channel_node.node.assembly import Node
    from channel_node.node.operations import Queued, Refused

from channel_node.cli.support import reporting_errors
from channel_node.core import ChannelStatus
from channel_node.errors import UsageError
from channel_node.store import OUTBOX_OPEN

DEFAULT_ADMIN_URL = "http://127.0.0.1:8403"
Document = dict[str, Any]  # a JSON object as the admin API answers it


class OperatorError(UsageError):
    """Something the operator must fix; printed as one line, exit code 2."""


# ---------------------------------------------------------------------- two ways to reach the node
#
# Both offer the same calls and answer the same JSON. Neither decides which channels a claim or a
# close takes: the admin API and `Direct` both ask `channel_node.node.operations` (docs/design.md,
# "Operations"), so `close --all` makes the same choice through the API and on a stopped node.


class NodeAccess(Protocol):
    """What the commands need of the node, whichever way it is reached (`AdminApi` or `Direct`)."""

    poll_delay: float

    async def list_channels(self, status: str | None = None, min_unclaimed: str | None = None) -> list[Document]: ...

    async def show_channel(self, channel: str) -> Document: ...

    async def claim_one(self, channel: str) -> Document: ...

    async def claim_all(self, minimum: int) -> Document: ...

    async def close_listed(self, channels: list[str]) -> Document: ...

    async def close_all(self) -> Document: ...

    async def outbox(self) -> list[Document]: ...

    async def status(self) -> Document: ...

    async def asset(self) -> Asset: ...

    async def work(self) -> None: ...

    async def close(self) -> None: ...


def channel_arg(text: str) -> str:
    """A channel id as the operator typed it, checked and normalised (0x and 64 lowercase digits)."""
    from channel_node.server.admin import AdminError, parse_channel_id

    try:
        return "0x" + parse_channel_id(text).hex()
    except AdminError as exc:
        raise OperatorError(f"{exc.code}: {exc.message}") from None


class AdminApi:
    """The running node's admin API. Lists are read page by page to the end."""

    poll_delay = 1.0  # seconds between outbox reads while `settle` waits

    def __init__(self, url: str, token: str, page_size: int = 1000) -> None:
        import aiohttp

        self.url = url.rstrip("/")
        self.page_size = page_size
        self._status: Document | None = None  # the first status read: it names the node's asset
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=aiohttp.ClientTimeout(total=30)
        )

    async def call(
        self, method: str, path: str, body: Document | None = None, params: dict[str, str | int] | None = None
    ) -> object:
        async with self._session.request(method, f"{self.url}/admin{path}", json=body, params=params) as response:
            document: object = await response.json(content_type=None)
            if response.status >= 400:
                if isinstance(document, dict):
                    raise OperatorError(f"{document.get('error')}: {document.get('message')}")
                raise OperatorError(f"the admin API answered {method} {path} with HTTP {response.status}")
            return document

    async def probe(self) -> int | None:
        """The HTTP status of GET /admin/status, or None when nothing answers there."""
        import aiohttp

        try:
            async with self._session.get(f"{self.url}/admin/status", timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status
        except (OSError, TimeoutError, aiohttp.ClientError):
            return None

    async def _object(self, method: str, path: str, body: Document | None = None) -> Document:
        document = await self.call(method, path, body)
        if not isinstance(document, dict):
            raise OperatorError(f"the admin API answered {method} {path} with something other than a JSON object")
        return document

    async def _all_pages(self, path: str, params: dict[str, str] | None = None) -> list[Document]:
        rows: list[Document] = []
        while True:
            page = await self.call("GET", path, params={**(params or {}), "limit": self.page_size, "offset": len(rows)})
            if not isinstance(page, list) or not all(isinstance(row, dict) for row in page):
                raise OperatorError(f"the admin API answered GET {path} with something other than a list of objects")
            rows += page
            if len(page) < self.page_size:
                return rows

    async def list_channels(self, status: str | None = None, min_unclaimed: str | None = None) -> list[Document]:
        params = {k: v for k, v in (("status", status), ("min_unclaimed", min_unclaimed)) if v is not None}
        return await self._all_pages("/channels", params)

    async def show_channel(self, channel: str) -> Document:
        return await self._object("GET", f"/channels/{channel_arg(channel)}")

    async def claim_one(self, channel: str) -> Document:
        return await self._object("POST", f"/channels/{channel_arg(channel)}/claim")

    async def claim_all(self, minimum: int) -> Document:
        return await self._object("POST", "/claim", {"min": str(minimum)})

    async def close_listed(self, channels: list[str]) -> Document:
        return await self._object("POST", "/close", {"channels": [channel_arg(c) for c in channels]})

    async def close_all(self) -> Document:
        return await self._object("POST", "/close", {"all": True})

    async def outbox(self) -> list[Document]:
        return await self._all_pages("/outbox")

    async def status(self) -> Document:
        document = await self._object("GET", "/status")
        self._status = self._status or document
        return document

    async def asset(self) -> Asset:
        """The node's asset as its status names it (a node from before it did: its base units)."""
        from channel_node.amounts import Asset

        named = (self._status or await self.status()).get("asset")
        try:
            if isinstance(named, dict):
                return Asset(named["symbol"], named["decimals"], named.get("address"))
        except (KeyError, TypeError, ValueError):
            pass
        return Asset("base", 0, "")

    async def work(self) -> None:
        """Nothing: the running node's own watcher and sender do the work."""

    async def close(self) -> None:
        await self._session.close()


class Direct:
    """The node's own objects over its database and chain, for when the node is stopped: the same
    documents the admin API answers, built by the same functions."""

    poll_delay = 0.5

    def __init__(self, node: Node) -> None:
        from channel_node.node.operations import Operations

        self.node = node
        self.operations = Operations(node.runtime, node.store)

    async def list_channels(self, status: str | None = None, min_unclaimed: str | None = None) -> list[Document]:
        from channel_node.server.admin import AdminError, amount_arg, channel_json, matching_channels

        try:  # the API's own check, so a bad figure gets the same answer both ways
            minimum = None if min_unclaimed is None else amount_arg(min_unclaimed, "min_unclaimed")
        except AdminError as exc:
            raise OperatorError(f"{exc.code}: {exc.message}") from None
        return [channel_json(s) for s in matching_channels(await self.operations.states(), status, minimum)]

    async def show_channel(self, channel: str) -> Document:
        from channel_node.server.admin import channel_document

        document = await channel_document(self.node, bytes.fromhex(channel_arg(channel)[2:]))
        if document is None:
            raise OperatorError("channel_unknown: this node has no such channel")
        return document

    async def claim_one(self, channel: str) -> Document:
        return self._one(await self.operations.one("claim", bytes.fromhex(channel_arg(channel)[2:])))

    async def claim_all(self, minimum: int) -> Document:
        from channel_node.server.admin import batch_json

        return batch_json(await self.operations.claim_all(minimum))

    async def close_listed(self, channels: list[str]) -> Document:
        from channel_node.server.admin import batch_json

        ids = [bytes.fromhex(channel_arg(c)[2:]) for c in channels]  # all checked before any is closed
        return batch_json(await self.operations.close_listed(ids))

    async def close_all(self) -> Document:
        from channel_node.server.admin import batch_json

        return batch_json(await self.operations.close_all())

    async def outbox(self) -> list[Document]:
        from channel_node.server.admin import OUTBOX_STATUSES, outbox_json

        return [outbox_json(r) for r in reversed(await self.node.store.outbox(OUTBOX_STATUSES))]  # newest first

    async def status(self) -> Document:
        """The same document as the running node's, with the chain read now (a stopped node's
        watcher and sender have not run: their figures would read head 0, cursor -1, balance 0)."""
        from eth_utils.address import to_checksum_address

        from channel_node.server.admin import status_document
        from channel_node.store import OUTBOX_OPEN

        node, stats = self.node, self.node.watcher.stats
        rpc = node.settings.rpc_url
        try:
            stats.head = await node.watcher.w3.eth.block_number
        except Exception as exc:
            raise OperatorError(f"could not read the chain's head block from rpc_url {rpc} ({type(exc).__name__})") from None
        stats.confirmed = max(0, stats.head - node.settings.confirmations + 1)
        cursor = await node.store.cursor()
        stats.cursor = cursor.block if cursor is not None else stats.confirmed  # a new database starts at the confirmed head
        if node.sender is not None:
            address = to_checksum_address(node.sender.address)
            try:
                node.sender.stats.balance = int(await node.watcher.w3.eth.get_balance(address))
            except Exception as exc:
                raise OperatorError(f"could not read the gas balance of the claim key {address} from rpc_url {rpc} "
                                    f"({type(exc).__name__})") from None  # fmt: skip
            node.sender.stats.open_rows = len(await node.store.outbox(OUTBOX_OPEN))
        return await status_document(node)

    async def asset(self) -> Asset:
        return self.node.asset

    async def work(self) -> None:
        """Nobody else is sending: do the node's work here (follow the chain, send the outbox), once
        this process holds the chain side's lease (on PostgreSQL a running node may hold it:
        docs/scaling.md, "One chain side")."""
        if not await self.node.lease.try_lead():
            leader = await self.node.lease.leader()
            who = f" ({leader.identity})" if leader is not None else ""
            raise OperatorError(f"another node process leads the chain side{who}: it sends the outbox; "
                                "give its admin API with --admin-url instead of --config")  # fmt: skip
        if self.node.sender is not None:
            self.node.sender.leading = self.node.lease.still_leading
        await self.node.watcher.poll()
        if self.node.sender is None:
            raise OperatorError("no claim_key or claim_keystore in the configuration: cannot send")
        await self.node.sender.tick()

    @staticmethod
    def _one(result: Queued | Refused) -> Document:
        from channel_node.node.operations import Refused
        from channel_node.server.admin import result_json

        if isinstance(result, Refused):
            raise OperatorError(f"{result.code}: {result.message}")
        return result_json(result)

    async def close(self) -> None:
        await self.node.close()


TOKEN_HINT = "set CHANNEL_NODE_ADMIN_TOKEN to the node's admin_token (or give --config with admin_token)"


async def connect(args: argparse.Namespace) -> NodeAccess:
    """The admin API when a node answers there, else the database and chain from --config.

    Each way this fails says what happened (docs/operations.md, "When something goes wrong"): a node
    that answered without the token, or refused it (401), is never "no node answered"."""
    from channel_node.cli.urls import check_url
    from channel_node.config import load_settings

    settings = load_settings(Path(args.config)) if args.config else None  # a SettingsError is one line, exit 2
    token = os.environ.get("CHANNEL_NODE_ADMIN_TOKEN") or (
        settings.admin_token.get_secret_value() if settings and settings.admin_token else None
    )
    url = args.admin_url or (f"http://{settings.admin_host}:{settings.admin_port}" if settings else DEFAULT_ADMIN_URL)
    check_url(url, "--admin-url")
    api = AdminApi(url, token or "")
    try:
        answered = await api.probe()
        if answered == 200 and token:
            return api
    except BaseException:
        await api.close()
        raise
    await api.close()
    if answered == 401:
        what = "refused the admin token given" if token else "needs its admin token, and none was given"
        raise OperatorError(f"the node at {url} {what} (401 unauthorized): {TOKEN_HINT}")
    if answered is not None and answered != 200:
        raise OperatorError(f"{url} answered HTTP {answered} at /admin/status: is it the node's admin API? "
                            "(admin_host and admin_port in its configuration; not the paywall's port)")  # fmt: skip
    if settings is None:
        raise OperatorError(
            f"no node answered at {url}: start it (`channel-node serve`), give its admin API with --admin-url, "
            "or give --config to work on a stopped node's database"
        )
    return Direct(await _direct_node(settings))


async def _direct_node(settings: Settings) -> Node:
    from channel_node.chain.connect import web3_for
    from channel_node.node.assembly import NodeConfigError, build_node
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


async def _typed_amount(node: NodeAccess, args: argparse.Namespace, text: str, flag: str) -> int:
    """An amount the operator typed, in the node's asset (docs/amounts.md); with `--base-units`,
    a whole number of base units."""
    import re

    from channel_node.amounts import MAX_AMOUNT, parse_amount

    if args.base_units:
        if not re.fullmatch(r"[0-9]{1,78}", text.strip()) or int(text) > MAX_AMOUNT:
            raise OperatorError(f"{flag}: with --base-units, {text.strip()!r} must be a whole number of base units (e.g. 20000)")
        return int(text)
    try:
        return parse_amount(text, await node.asset())
    except UsageError as exc:
        raise OperatorError(f"{flag}: {exc}") from None


async def _list(node: NodeAccess, args: argparse.Namespace) -> Any:
    minimum = args.min_unclaimed
    if minimum is not None:
        minimum = str(await _typed_amount(node, args, minimum, "--min-unclaimed"))
    return await node.list_channels(args.status, minimum)


async def _show(node: NodeAccess, args: argparse.Namespace) -> Any:
    return await node.show_channel(args.channel)


async def _claim(node: NodeAccess, args: argparse.Namespace) -> Any:
    if args.channel and args.all:
        raise OperatorError("give a channel id or --all, not both")
    if args.channel:
        return await node.claim_one(args.channel)
    if not args.all:
        raise OperatorError("give a channel id or --all")
    minimum = 1 if args.min is None else await _typed_amount(node, args, args.min, "--min")
    if minimum < 1:
        raise OperatorError("malformed_request: min must be at least 1")
    return await node.claim_all(minimum)


async def _close(node: NodeAccess, args: argparse.Namespace) -> Any:
    if bool(args.channel) == bool(args.all):
        raise OperatorError("give a channel id or --all")
    return await node.close_all() if args.all else await node.close_listed([args.channel])


async def _settle(node: NodeAccess, args: argparse.Namespace) -> Any:
    """Claims everything claimable and waits until the outbox has sent and confirmed it all."""
    queued = await node.claim_all(1)
    deadline = time.monotonic() + args.wait
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("waiting for claims to confirm ...") as status:
        while True:
            await node.work()
            rows = await node.outbox()
            open_rows = [r for r in rows if r["status"] in OUTBOX_OPEN]
            status.update(f"waiting for {len(open_rows)} transaction(s) to confirm ...")
            if not open_rows:
                break
            if time.monotonic() > deadline:
                raise OperatorError(f"{len(open_rows)} outbox rows still open after {args.wait} s")
            await asyncio.sleep(node.poll_delay)
    abandoned = [r for r in rows if r["status"] == "abandoned"]
    return {"queued": queued["queued"], "open": 0, "abandoned": len(abandoned)}


async def _status(node: NodeAccess, args: argparse.Namespace) -> Any:
    return await node.status()


COMMANDS: dict[str, Callable[[NodeAccess, argparse.Namespace], Awaitable[Any]]] = {
    "list": _list,
    "show": _show,
    "claim": _claim,
    "close": _close,
    "settle": _settle,
    "status": _status,
}


# Fields that are amounts in the node's asset, wherever they appear in a document; `gas` holds ETH.
_MONEY = frozenset({"deposited", "claimed", "maxClaimableAmount", "charged", "unclaimed", "credit", "revenue", "amount",
                    "voucherAmount"})  # fmt: skip
_GAS = frozenset({"balance", "needed"})


def _humane(value: Any, key: str, asset: Asset, within: str = "") -> Any:
    """`value` with its amounts as people read them (`0.0005 ETH`); the rest as it is."""
    from channel_node.amounts import ETH, MAX_AMOUNT, format_amount

    if isinstance(value, dict):
        return {k: _humane(v, k, asset, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_humane(v, key, asset, within) for v in value]
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) <= MAX_AMOUNT:
        if within == "gas" and key in _GAS:
            return format_amount(int(value), ETH)
        if key in _MONEY:
            return format_amount(int(value), asset)
    return value


def _fields(document: Document, prefix: str = "") -> dict[str, str]:
    """A document as (dotted field, text) pairs: nested objects flattened, lists as compact JSON."""
    out: dict[str, str] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _fields(value, name + ".")
        elif isinstance(value, list):
            out[name] = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        else:
            out[name] = "" if value is None else str(value)
    return out


def _render(command: str, result: Any, as_json: bool, asset: Asset | None = None) -> None:
    if as_json or not sys.stdout.isatty() or asset is None:
        print(json.dumps(result, indent=None if not sys.stdout.isatty() else 2))
        return
    from rich.console import Console

    from channel_node.cli.tables import print_table

    console = Console()
    print_table(console, _view(command, result, asset, console.width))


def _view(command: str, result: Any, asset: Asset, width: int) -> Any:
    """What a terminal shows: amounts in `asset`, the table fitted to `width` (cli/tables.py)."""
    from channel_node.amounts import format_number
    from channel_node.cli.tables import KEEP, SHORTEN, fitted_table, record_table

    if command == "list":
        figures = ("deposited", "charged", "unclaimed", "credit")
        columns = [("channel", SHORTEN), ("payer", SHORTEN), ("status", KEEP)] + [(f, KEEP) for f in figures]
        rows = [[row["channelId"], row["payer"], row["status"]] + [format_number(int(row[f]), asset.decimals) for f in figures]
                for row in result]  # fmt: skip
        return fitted_table(f"{len(result)} channel(s), amounts in {asset.symbol}", columns, rows, width, right=figures)
    return record_table(None, _fields(_humane(result, "", asset)))


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    @reporting_errors  # an OperatorError is one line and exit 2 (cli/support.py), however it is called
    def handle(args: argparse.Namespace) -> int:
        from channel_node.cli.support import run_async

        async def main() -> int:
            node = await connect(args)
            try:
                result = await COMMANDS[command](node, args)
                asset = None if args.json or not sys.stdout.isatty() else await node.asset()
            finally:
                await node.close()
            _render(command, result, args.json, asset)
            return 0

        return run_async(main())

    return handle


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="the node's TOML configuration (for direct mode and the admin address)")
    parser.add_argument("--admin-url", help=f"the running node's admin API (default from config, else {DEFAULT_ADMIN_URL})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table (amounts in base units)")
    parser.add_argument("--base-units", action="store_true",
                        help="read typed amounts as whole numbers of the asset's smallest unit (wei for ETH)")


def add_operator_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    channels = subparsers.add_parser("channels", help="list, inspect, claim, close and settle channels")
    actions = channels.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the node's channels (filters: --status, --min-unclaimed)")
    listing.add_argument("--status", choices=[str(s) for s in ChannelStatus])
    listing.add_argument("--min-unclaimed", help="only channels with at least this much signed but unclaimed (e.g. 0.001)")
    show = actions.add_parser("show", help="one channel with its charges and outbox rows")
    show.add_argument("channel")
    claim = actions.add_parser("claim", help="claim one channel's best voucher, or --all above --min")
    claim.add_argument("channel", nargs="?")
    claim.add_argument("--all", action="store_true")
    claim.add_argument("--min", help="with --all: only channels with this much unclaimed (e.g. 0.001; default: any)")
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
