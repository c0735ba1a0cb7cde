"""The `channel-node` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from channel_node import __version__
from channel_node.cli.support import report_error, run_async
from channel_node.errors import ChannelNodeError, UsageError

if TYPE_CHECKING:  # annotations only: the commands import what they run lazily, to start fast
    from aiohttp import web

    from channel_node.config import Settings
    from channel_node.dev.stack import DevWorld


def freeze_startup_objects() -> None:
    """Moves everything allocated at start-up (web3, the ABI, an in-process chain) out of the cyclic
    garbage collector's sight: full collections then scan only per-request garbage, which removes
    pauses of tens of milliseconds from the latency tail."""
    import gc

    gc.collect()
    gc.freeze()


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)


async def _serve_app(
    app: web.Application, host: str, port: int, option: str = "--port", reuse_port: bool = False
) -> tuple[web.AppRunner, str]:
    """Listens on host:port; a port in use or an address not of this machine is the user's to
    change (a UsageError naming `option`, exit 2), not a traceback. `reuse_port`: a worker of
    `serve --workers`, sharing the port with its siblings (cli/workers.py)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(listen_error(exc, host, port, option)) from None
    bound = runner.addresses[0]
    return runner, f"http://{bound[0]}:{bound[1]}"


def listen_error(exc: OSError, host: str, port: int, option: str) -> str:
    """What to do when a listening socket cannot be opened (docs/operations.md, "When something goes wrong")."""
    import errno
    import socket

    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another channel-node or program listens there): "
                f"stop it, or choose another port with {option}; `{option.split()[0]} 0` picks a free one")  # fmt: skip
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"not allowed to listen on port {port} (ports below 1024 need privileges): pass {option} with a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"cannot listen on {host}: it is not an address of this machine (use 127.0.0.1, or 0.0.0.0 for every interface)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# ---------------------------------------------------------------------- dev


async def _dev_main(args: argparse.Namespace) -> int:
    import aiohttp
    from web3 import AsyncWeb3
    from web3.providers.eth_tester import AsyncEthereumTesterProvider

    from channel_node.cli.program import program
    from channel_node.dev.stack import ARTICLES, create_world, dev_settings, instructions, operator_lines, reader_lines
    from channel_node.node.assembly import build_node
    from channel_node.wire.envelope import decode_header

    if args.exact_batcher and not args.token:
        print("channel-node dev: --exact-batcher batches x402 exact sales, which need --token", file=sys.stderr)
        return 2
    print("channel-node dev: starting an in-process chain and deploying ChannelDeposit ...", flush=True)
    world = create_world(Path(args.data_dir) if args.data_dir else None, token=args.token, batcher=args.exact_batcher)
    provider = AsyncEthereumTesterProvider()
    provider.ethereum_tester = world.chain.tester  # the node reads the same in-process chain
    admin_token = secrets.token_urlsafe(24)
    settings = dev_settings(world, args.host, args.port, admin_token)
    node = await build_node(settings, AsyncWeb3(provider))
    await node.start()
    try:
        runner, base_url = await _serve_app(node.app, args.host, args.port)
    except UsageError:
        await node.close()
        raise
    assert node.admin_app is not None  # build_node always makes one (it refuses every call without a token)
    admin_runner, admin_url = await _serve_app(node.admin_app, "127.0.0.1", 0)
    rpc_runner, rpc_url = await _serve_rpc(world, args.rpc_port)
    reader_wallet = _dev_reader_wallet(world)
    freeze_startup_objects()
    try:
        # Prove the whole path once: 402, then a paid fetch with the reader's first voucher.
        first = ARTICLES[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(base_url + first) as offer:
                offer_status = offer.status
            price = node.paywall.prices.match(first)
            if price is None:  # the sample site prices every article; a free one cannot check the path
                print(f"self-check failed: {first} has no price", file=sys.stderr)
                return 1
            header = world.voucher_header(price.amount, first=True)
            async with http.get(base_url + first, headers={"PAYMENT-SIGNATURE": header}) as paid:
                paid_status = paid.status
                receipt = decode_header(paid.headers["PAYMENT-RESPONSE"]) if paid.status == 200 else None
        if offer_status != 402 or receipt is None:
            print(f"self-check failed: offer {offer_status}, payment {paid_status}", file=sys.stderr)
            return 1
        print(
            f"\nserving {base_url}  (self-check: {first} answered 402, then 200 after paying "
            f"{world.amount(int(receipt['chargedAmount']))}; charged total {receipt['chargedTotal']})\n",
            flush=True,
        )
        _print(instructions(world, base_url, paid_first=True))
        _print(operator_lines(admin_url, admin_token, program()))
        _print(reader_lines(world, base_url, rpc_url, reader_wallet, program()))
        if world.token is None:
            from channel_node.server.browser import browser_instructions

            _print(browser_instructions(base_url, rpc_url, world.domain.chain_id, world.reader_key, ARTICLES[1]))
        else:
            print("\nBrowser: the in-page wallet script pays native ETH only; run `channel-node dev` without --token for it.")
        if args.once:
            return 0
        print("\nPress Ctrl-C to stop.", flush=True)
        await _wait_for_signal()
        return 0
    finally:
        await rpc_runner.cleanup()
        await admin_runner.cleanup()
        await runner.cleanup()
        await node.close()


async def _serve_rpc(world: DevWorld, port: int) -> tuple[web.AppRunner, str]:
    """The in-process chain as JSON-RPC on loopback; a free port when the wanted one is taken."""
    from channel_node.dev.rpc_bridge import create_rpc_app

    app = create_rpc_app(world.chain.tester)
    try:
        return await _serve_app(app, "127.0.0.1", port)
    except OSError:
        return await _serve_app(app, "127.0.0.1", 0)


def _dev_reader_wallet(world: DevWorld) -> Path:
    """A wallet folder holding the dev reader's (public, well-known) key, password "dev"."""
    from channel_node.keys import import_key

    folder = world.database.parent / "reader-wallet"
    keystore = folder / "keystore.json"
    if not keystore.exists():
        folder.mkdir(mode=0o700, exist_ok=True)
        import_key(keystore, "dev", world.reader_key.hex())
    return folder


def _dev(args: argparse.Namespace) -> int:
    from channel_node.dev.stack import run_folder
    from channel_node.logs import configure

    configure(args.log_format)
    # A run without --data-dir gets a temporary folder, removed however the run ends (unless --keep).
    with run_folder(Path(args.data_dir) if args.data_dir else None, args.keep, lambda line: print(line, flush=True)) as folder:
        args.data_dir = str(folder)
        return run_async(_dev_main(args))


# ---------------------------------------------------------------------- serve


async def _serve_main(settings: Settings, worker: bool = False) -> int:
    from channel_node.chain.connect import web3_for
    from channel_node.config import public_endpoint
    from channel_node.node.assembly import NodeConfigError, build_node

    w3, persistent = web3_for(settings.rpc_url)
    if persistent:
        try:
            await w3.provider.connect()
        except Exception as exc:
            raise NodeConfigError(
                f"cannot connect to the chain at rpc_url {public_endpoint(settings.rpc_url)} ({type(exc).__name__}): "
                "is the node running there? check rpc_url in the configuration or CHANNEL_NODE_RPC_URL"
            ) from None
    try:
        node = await build_node(settings, w3)  # a NodeConfigError or StoreError: main's one line and exit code
    except BaseException:
        await w3.provider.disconnect()
        raise
    if node.sender is None:
        print("warning: no claim_key or claim_keystore: the node cannot defend channels or claim", file=sys.stderr)
    await node.start()
    admin_runner = runner = None
    try:
        runner, base_url = await _serve_app(node.app, settings.host, settings.port, "--port (or port in the configuration)",
                                            reuse_port=worker)  # fmt: skip
        if settings.admin_token is not None:
            assert node.admin_app is not None  # build_node always makes one
            admin_runner, admin_url = await _serve_app(node.admin_app, settings.admin_host, settings.admin_port,
                                                       "admin_port in the configuration", reuse_port=worker)  # fmt: skip
            print(f"admin API on {admin_url}/admin (bearer token; OpenAPI at /admin/openapi.json)", flush=True)
    except UsageError:
        if runner is not None:
            await runner.cleanup()
        await node.close()
        await w3.provider.disconnect()
        raise
    freeze_startup_objects()
    print(f"channel-node serving {base_url} (chain {node.chain_id}, contract {settings.contract})", flush=True)
    try:
        await _wait_for_signal()
    finally:
        if admin_runner is not None:
            await admin_runner.cleanup()
        await runner.cleanup()
        await node.close()
        await w3.provider.disconnect()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from channel_node.config import load_settings
    from channel_node.logs import configure

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    # A SettingsError (a ConfigError) names the field, the value and the fix: main's one line, exit 2.
    settings = load_settings(Path(args.config) if args.config else None, **overrides)
    if args.workers is not None and args.workers != 1:
        from channel_node.cli.workers import run_workers

        return run_workers(settings, args.workers, args.config)  # docs/scaling.md
    configure(settings.log_format)
    return run_async(_serve_main(settings, worker=args.worker))


# ---------------------------------------------------------------------- contract demo


def _contract_demo(args: argparse.Namespace) -> int:
    from rich.console import Console, JustifyMethod
    from rich.table import Table

    from channel_node.dev.demo import run_contract_demo

    table = Table(title="One payment channel, end to end, on the in-process chain")
    columns: tuple[tuple[str, JustifyMethod], ...] = (("step", "left"), ("gas", "right"), ("result", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for step in run_contract_demo(unlocks=args.unlocks, price=args.price):
        table.add_row(step.name, f"{step.gas:,}" if step.gas else "—", step.result)
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="channel-node", description=__doc__)
    parser.add_argument("--version", action="version", version=f"channel-node {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the node on an embedded in-process chain with a sample priced site")
    dev.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8402, help="listen port (default 8402; 0 picks a free one)")
    dev.add_argument("--data-dir", help="folder for the node's database (default: a new temporary folder)")
    dev.add_argument("--once", action="store_true", help="exit after the self-check and instructions")
    dev.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, reader wallet) at exit")
    dev.add_argument("--rpc-port", type=int, default=8545, help="loopback JSON-RPC port of the dev chain (default 8545)")
    dev.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    dev.add_argument("--token", action="store_true",
                     help="price the site in DemoDollar, a stand-in ERC-20 stablecoin (6 decimals) deployed on the dev chain")
    dev.add_argument("--exact-batcher", action="store_true",
                     help="with --token: deploy an ExactBatcher and send the exact sales open at once in one transaction")
    dev.set_defaults(handler=_dev)

    serve = commands.add_parser("serve", help="run the node against a JSON-RPC endpoint and a deployed contract")
    serve.add_argument("--config", help="TOML configuration file (CHANNEL_NODE_* environment variables override it)")
    serve.add_argument("--host", help="listen address (overrides the configuration)")
    serve.add_argument("--port", type=int, help="listen port (overrides the configuration)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="run N processes on the port (SO_REUSEPORT); needs a PostgreSQL database")  # fmt: skip
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a child of --workers
    serve.set_defaults(handler=_serve)

    from channel_node.cli.channels import add_operator_commands
    from channel_node.cli.doctor import add_doctor_command
    from channel_node.cli.operator import add_deploy_command, add_keys_commands
    from channel_node.cli.wallet import add_wallet_commands

    add_operator_commands(commands)
    add_wallet_commands(commands)
    add_keys_commands(commands)
    add_deploy_command(commands)
    add_doctor_command(commands)
    from channel_node.cli.report import add_report_command

    add_report_command(commands)

    demo = commands.add_parser("contract-demo", help="walk one channel through its on-chain life and print the gas")
    demo.add_argument("--unlocks", type=int, default=1000, help="off-chain vouchers to sign and verify (default 1000)")
    demo.add_argument("--price", type=int, default=20_000_000_000_000, help="price per unlock in wei (default 2e13)")
    demo.set_defaults(handler=_contract_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command. The command line's one error edge (docs/design.md, "Errors"): any
    `ChannelNodeError` a command lets out is one `error: <message>` line on stderr and exit code 2
    (the user must act) or 1 (a remote party or local state failed), never a traceback."""
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
    args = build_parser().parse_args(argv)
    # Every command whose stdout is its answer (tables, JSON, content) logs to stderr; `dev` and
    # `serve` reconfigure for the node, whose log lines are its output.
    from channel_node.logs import configure

    configure("console", logging.WARNING, stream="stderr")
    try:
        code: int = args.handler(args)
    except ChannelNodeError as exc:  # the one place a command's error becomes its exit code
        return report_error(exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
