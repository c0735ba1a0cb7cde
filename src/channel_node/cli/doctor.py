"""`channel-node doctor --config FILE`: checks a configuration end to end and prints one line per
check, `ok` or `FIX` with what to do (docs/operations.md, "Checking a configuration: doctor").

This module gathers what the rules in `node/doctor.py` judge: the chain's answers (chain id, the
contract's code and domain, the claim key's balance, the fee, two head reads a bounded interval
apart), the content source, and the database's pin, read without opening the store (a running node
may hold it). Exit code 0 when every check passes, 2 when something must be fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channel_node.cli.support import run_async
from channel_node.errors import ChannelNodeError, ConfigError

if TYPE_CHECKING:
    from web3 import AsyncWeb3

    from channel_node.config import Settings
    from channel_node.node.doctor import Heads, Observations, Pinned

Subparsers = argparse._SubParsersAction  # what `add_subparsers` returns (argparse names it privately)

#: How long `doctor` waits for the chain's head to move, by default (seconds): a public test network
#: makes a block every 12 s or so; anvil with --block-time 1 answers within a second.
BLOCK_WAIT = 15.0


def _load(path: str) -> Settings:
    """The settings, or the one-line ConfigError load_settings raises for a mistake in them."""
    from channel_node.config import load_settings

    try:
        return load_settings(Path(path))
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc}: give the node's TOML file (README, \"Running against a real chain\")") from None


async def read_database_pin(database: Path | str) -> Pinned:
    """The pin of the `database` setting: an SQLite file (`read_pin`) or a PostgreSQL database
    (store/postgres.py:stored_pin), read only either way."""
    from channel_node.node.doctor import Pinned
    from channel_node.store import StoreError, is_postgres_url
    from channel_node.store.postgres import stored_pin

    if not is_postgres_url(database):
        return read_pin(Path(database))
    try:
        stored = await stored_pin(str(database))
    except StoreError as exc:
        return Pinned(error=str(exc))
    if not stored:
        return Pinned()
    return Pinned(stored.get("chain_id"), stored.get("contract"), stored.get("receiver"))


def read_pin(database: Path) -> Pinned:
    """The pin a node database holds (store/sqlite.py's `meta` table), read only; an empty Pinned
    when the file does not exist yet."""
    from channel_node.node.doctor import Pinned

    if not database.exists():
        return Pinned()
    try:
        connection = sqlite3.connect(f"file:{database.absolute()}?mode=ro", uri=True, timeout=2)
        try:
            stored = dict(connection.execute("SELECT key, value FROM meta"))
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return Pinned(error=str(exc))
    if not stored:
        return Pinned()
    return Pinned(stored.get("chain_id"), stored.get("contract"), stored.get("receiver"))


async def _heads(w3: AsyncWeb3[Any], wait: float) -> Heads:
    """Two reads of the head at most `wait` seconds apart (the second as soon as it moved), and the
    seconds per block from the two blocks' timestamps."""
    from channel_node.node.doctor import Heads

    first = await w3.eth.get_block("latest")
    start = time.monotonic()
    head = int(first["number"])
    while time.monotonic() - start < wait:
        await asyncio.sleep(min(0.25, wait))
        head = int(await w3.eth.block_number)
        if head > int(first["number"]):
            break
    waited = time.monotonic() - start
    pace = None
    if head > int(first["number"]):
        last = await w3.eth.get_block(head)
        pace = max(0, int(last["timestamp"]) - int(first["timestamp"])) / (head - int(first["number"])) or None
    return Heads(int(first["number"]), head, waited, pace)


async def _upstream(url: str) -> tuple[str | None, str | None]:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, http.get(url) as answer:
            return f"HTTP {answer.status}", None
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return None, type(exc).__name__


async def observe(settings: Settings, expected_chain_id: int | None = None, block_wait: float = BLOCK_WAIT) -> Observations:
    """Everything `diagnose` judges, read from the chain, the files and the database."""
    from eth_utils.address import to_checksum_address

    from channel_node.chain.accounts import suggest_fees
    from channel_node.chain.artifacts import channel_deposit_artifact
    from channel_node.chain.connect import web3_for
    from channel_node.cli.program import program
    from channel_node.config import public_endpoint
    from channel_node.node.assembly import claim_key
    from channel_node.node.doctor import ClaimKey, Observations, same_code
    from channel_node.signing import Domain, address_of_key
    from channel_node.store import describe_database

    o = Observations(rpc_url=public_endpoint(settings.rpc_url), expected_chain_id=expected_chain_id,
                     confirmations=settings.confirmations, admin_token=settings.admin_token is not None,
                     database=describe_database(settings.database), pinned=await read_database_pin(settings.database),
                     program=program())  # fmt: skip
    o.contract = to_checksum_address(settings.contract) if settings.contract else None
    o.receiver = to_checksum_address(settings.receiver) if settings.receiver else None
    o.token = to_checksum_address(settings.token) if settings.token else None
    wall = settings.paywall
    if wall.content_dir is not None:
        o.content_dir, o.content_dir_ok = str(wall.content_dir), wall.content_dir.is_dir()
    else:
        o.upstream = wall.upstream
        o.upstream_answer, o.upstream_error = await _upstream(wall.upstream or "")
    if settings.claim_keystore is not None or settings.claim_key is not None:
        source = f"keystore {settings.claim_keystore}" if settings.claim_keystore is not None else "claim_key"
        try:
            key = claim_key(settings)
        except ChannelNodeError as exc:
            o.claim = ClaimKey(source, error=str(exc))
        else:
            o.claim = ClaimKey(source, to_checksum_address(address_of_key(key)) if key else None)
            del key

    w3, persistent = web3_for(settings.rpc_url)
    try:
        try:
            if persistent:
                await w3.provider.connect()
            o.chain_id = int(await w3.eth.chain_id)
        except Exception as exc:  # any failure to answer is the same finding: this endpoint does not serve
            o.rpc_error = type(exc).__name__
            return o
        if o.contract is not None:
            code = bytes(await w3.eth.get_code(o.contract))
            o.has_code = bool(code)
            if code:
                artifact = channel_deposit_artifact()
                o.code_matches = same_code(code, bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x")))
                try:
                    contract = w3.eth.contract(address=o.contract, abi=artifact.abi)
                    separator = bytes(await contract.functions.domainSeparator().call())
                    o.domain_matches = separator == Domain(o.chain_id, o.contract).separator
                except Exception as exc:  # not our ABI: the call reverts or answers nothing decodable
                    o.domain_matches, o.domain_error = False, type(exc).__name__
        if o.token is not None:
            o.token_has_code = bool(await w3.eth.get_code(o.token))
            if o.token_has_code:
                from channel_node.chain.erc20 import Erc20Client

                try:
                    o.token_symbol, o.token_decimals = await Erc20Client(w3, o.token).metadata()
                except Exception:  # an answer that is no ERC-20's: as good as none
                    o.token_symbol = o.token_decimals = None
        if o.claim is not None and o.claim.address is not None:
            o.gas_balance = int(await w3.eth.get_balance(o.claim.address))  # type: ignore[arg-type]
            o.max_fee = (await suggest_fees(w3)).max_fee
        o.heads = await _heads(w3, block_wait)
    finally:
        with contextlib.suppress(Exception):
            await w3.provider.disconnect()
    return o


async def _doctor_main(args: argparse.Namespace) -> int:
    from channel_node.node.doctor import diagnose, exit_code, summary

    settings = _load(args.config)
    checks = diagnose(await observe(settings, args.chain_id, args.block_wait))
    for check in checks:
        print(check.line(), flush=True)
    print(summary(checks), flush=True)
    return exit_code(checks)


def _doctor(args: argparse.Namespace) -> int:
    return run_async(_doctor_main(args))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError("must be above 0 and at most 600 seconds")
    return value


def add_doctor_command(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `doctor`; returns its parser."""
    doctor = subparsers.add_parser(
        "doctor", help="check a node's configuration end to end and print what to fix",
        description="Checks the RPC and its chain id, the contract, the receiver and claim key, the claim key's gas, "
        "that blocks are produced, the admin token, the content and the database's pin. Exit 0 when all pass, "
        "2 when something must be fixed. The claim keystore's password comes from CHANNEL_NODE_KEYSTORE_PASSWORD "
        "when set, else from a prompt.",
    )  # fmt: skip
    doctor.add_argument("--config", required=True, help="the node's TOML file (CHANNEL_NODE_* variables override it)")
    doctor.add_argument("--chain-id", type=int, help="the chain id you mean (e.g. 11155111 for Sepolia); a different chain is a FIX")
    doctor.add_argument("--block-wait", type=_seconds, default=BLOCK_WAIT,
                        help=f"seconds to wait for a new block (default {BLOCK_WAIT:g})")  # fmt: skip
    doctor.set_defaults(handler=_doctor)
    return doctor


__all__ = ["BLOCK_WAIT", "add_doctor_command", "observe", "read_database_pin", "read_pin"]
