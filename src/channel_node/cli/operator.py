"""Operator commands: `keys new|import|show` (encrypted keystores) and `deploy` (ChannelDeposit).

Each `add_*` function adds subcommands to an argparse subparsers object; a command's `handler(args)`
returns the exit code: 0 on success, 2 with one `error: ...` line on stderr for anything the operator
can fix (no tracebacks). Secrets never travel through argv, which other users can read in `ps`: the
password comes from CHANNEL_NODE_KEYSTORE_PASSWORD or a no-echo prompt, an imported key from stdin
or a file.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channel_node.cli.support import EXIT_USER, reporting_errors, run_async
from channel_node.keys import (
    PASSWORD_ENV,
    KeystoreError,
    create_keystore,
    keystore_address,
    load_key,
    parse_private_key,
    read_password,
)

if TYPE_CHECKING:  # annotations only: the chain side is imported when `deploy` runs, to start fast
    from web3 import AsyncWeb3

    from channel_node.chain.accounts import Sender, Tx

Subparsers = argparse._SubParsersAction  # what `add_subparsers` returns (argparse names it privately)

#: ChannelDeposit.MAX_AMOUNT: the contract treats a larger cap as none, so the CLI refuses one
#: rather than silently deploying an uncapped contract.
MAX_AMOUNT = (1 << 108) - 1


def _error(message: str) -> int:
    # One line, whatever the underlying exception's text looked like (the same line as
    # cli/support.py's `error_line` for an error this module lets out).
    print("error: " + " ".join(message.split()), file=sys.stderr, flush=True)
    return EXIT_USER


# ------------------------------------------------------------------ argument types


def _wei(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of wei: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    if value > MAX_AMOUNT:
        raise argparse.ArgumentTypeError("above the contract's MAX_AMOUNT (2**108-1 wei); use 0 for uncapped")
    return value


def _gas(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _address(text: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(text):
        raise argparse.ArgumentTypeError(f"not an Ethereum address: {text!r}")
    return to_checksum_address(text)


# ------------------------------------------------------------------ keys


@reporting_errors  # a KeystoreError: one line, exit 2 (cli/support.py)
def _keys_new(args: argparse.Namespace) -> int:
    try:
        password = read_password(confirm=True)
        address = create_keystore(Path(args.keystore), password)
    except OSError as exc:
        return _error(f"cannot write keystore {args.keystore}: {exc.strerror or type(exc).__name__}")
    print(f"wrote keystore {args.keystore} (mode 0600)", file=sys.stderr)
    print(address, flush=True)  # alone on stdout, so `ADDRESS=$(channel-node keys new ...)` works
    return 0


def _read_key_text(args: argparse.Namespace) -> str:
    """The hex key from --key-file, else one line of stdin (prompted without echo at a terminal)."""
    if args.key_file:
        try:
            return Path(args.key_file).read_text()
        except OSError as exc:
            raise KeystoreError(f"cannot read key file {args.key_file}: {exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise KeystoreError(f"key file {args.key_file} is not text (expected 64 hex digits)") from None
    if sys.stdin is None:
        raise KeystoreError("no stdin to read the private key from; use --key-file")
    if sys.stdin.isatty():
        import getpass

        try:
            return getpass.getpass("Private key (hex): ")
        except (EOFError, KeyboardInterrupt):
            raise KeystoreError("no private key given") from None
    return sys.stdin.readline()


@reporting_errors
def _keys_import(args: argparse.Namespace) -> int:
    try:
        key = parse_private_key(_read_key_text(args))  # validated before asking for a password
        password = read_password(confirm=True)
        address = create_keystore(Path(args.keystore), password, key)
    except OSError as exc:
        return _error(f"cannot write keystore {args.keystore}: {exc.strerror or type(exc).__name__}")
    print(f"wrote keystore {args.keystore} (mode 0600)", file=sys.stderr)
    print(address, flush=True)
    return 0


@reporting_errors
def _keys_show(args: argparse.Namespace) -> int:
    address = keystore_address(Path(args.keystore))
    print(address, flush=True)
    return 0


def add_keys_commands(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `keys new|import|show`; returns the `keys` parser."""
    keys = subparsers.add_parser("keys", help="create, import or inspect an encrypted operator keystore")
    commands = keys.add_subparsers(dest="keys_command", required=True)
    password_note = f"The password comes from {PASSWORD_ENV} when set, else from a prompt."

    new = commands.add_parser(
        "new", help="generate a new key into an encrypted keystore", description="Generates a key. " + password_note
    )
    new.add_argument("--keystore", required=True, help="keystore file to create (never overwritten; mode 0600)")
    new.set_defaults(handler=_keys_new)

    imported = commands.add_parser(
        "import",
        help="encrypt an existing private key into a keystore",
        description="Reads a hex private key from one line of stdin, or from --key-file (never from the "
        "command line, which other users can see). " + password_note,
    )
    imported.add_argument("--keystore", required=True, help="keystore file to create (never overwritten; mode 0600)")
    imported.add_argument("--key-file", help="file holding the hex private key (default: read one line of stdin)")
    imported.set_defaults(handler=_keys_import)

    show = commands.add_parser("show", help="print a keystore's address (no password needed)")
    show.add_argument("--keystore", required=True, help="keystore file")
    show.set_defaults(handler=_keys_show)
    return keys


# ------------------------------------------------------------------ deploy


class _Sent:
    """The hash of the transaction a recording sender sent, None until it sent one."""

    tx_hash: bytes | None = None


def _recording(sender: Sender) -> tuple[Sender, _Sent]:
    """Wraps a Sender so the deployment's transaction hash is known even if waiting for it fails."""
    from channel_node.chain import Sender

    sent = _Sent()

    class RecordingSender(Sender):
        def __init__(self, inner: Sender) -> None:
            self.inner = inner
            self.address = inner.address

        async def send(self, w3: AsyncWeb3[Any], tx: Tx) -> bytes:
            sent.tx_hash = await self.inner.send(w3, tx)
            return sent.tx_hash

        def __repr__(self) -> str:
            return f"RecordingSender({self.inner!r})"

    return RecordingSender(sender), sent


def _is_insufficient_funds(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'message', '')} {exc}".lower()
    return "insufficient funds" in text or "insufficient balance" in text


def _describe(exc: BaseException) -> str:
    """The node's own error message when it sent one, else the exception's type and text."""
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return f"the node answered: {error['message']}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _deploy_main(args: argparse.Namespace, sender: Sender) -> int:
    from hexbytes import HexBytes
    from web3.exceptions import TimeExhausted

    from channel_node.chain import ChannelDepositClient, ContractRevert
    from channel_node.config import public_endpoint

    endpoint = public_endpoint(args.rpc_url)  # an API key in the URL never reaches a message
    from channel_node.chain.connect import web3_for
    from channel_node.cli.urls import check_url, unreachable

    check_url(args.rpc_url, "--rpc-url", ("http", "https", "ws", "wss"), secret=True)  # a UsageError: one line, exit 2

    w3, persistent = web3_for(args.rpc_url)
    connected = False
    try:
        try:
            if persistent:
                await w3.provider.connect()
                connected = True
            chain_id = int(await w3.eth.chain_id)
            balance = int(await w3.eth.get_balance(sender.address))
        except Exception as exc:
            return _error(unreachable(exc, endpoint, "the chain at", "is the chain's node running there? check --rpc-url"))
        if balance == 0:
            return _error(
                f"account {sender.address} has no funds on chain {chain_id}; fund it to pay for the deployment"
            )

        recorder, sent = _recording(sender)
        try:
            client = await ChannelDepositClient.deploy(
                w3, recorder, args.max_deposit, args.gas, receipt_timeout=args.timeout, poll_latency=0.25
            )
            assert sent.tx_hash is not None  # deploy returned: its transaction was sent and mined
            receipt = await w3.eth.get_transaction_receipt(HexBytes(sent.tx_hash))
        except ContractRevert as exc:
            return _error(f"the deployment reverted: {exc}")
        except TimeExhausted:
            return _error(
                f"deployment transaction 0x{(sent.tx_hash or b'').hex()} was not mined within {args.timeout:g} s; "
                "check it before deploying again (a second deploy makes a second contract)"
            )
        except Exception as exc:
            if _is_insufficient_funds(exc):
                return _error(
                    f"account {sender.address} has insufficient funds for the deployment on chain {chain_id} "
                    f"(balance {balance} wei)"
                )
            hint = " (--unlocked needs an account the node signs for)" if args.unlocked else ""
            return _error(f"the deployment failed: {_describe(exc)[:300]}{hint}")
    finally:
        if connected or not persistent:  # HTTP: closes web3's cached aiohttp sessions
            with contextlib.suppress(Exception):
                await w3.provider.disconnect()

    cap = "uncapped" if args.max_deposit == 0 else f"{args.max_deposit} wei"
    lines = [
        f"ChannelDeposit deployed on chain {chain_id}",
        f"  contract     {client.address}",
        f"  chain id     {chain_id}",
        f"  deployer     {sender.address}",
        f"  transaction  0x{bytes(receipt['transactionHash']).hex()} (block {int(receipt['blockNumber'])})",
        f"  gas used     {int(receipt['gasUsed']):,}",
        f"  max deposit  {cap} per channel",
    ]
    print("\n".join(lines), flush=True)
    return 0


@reporting_errors
def _deploy(args: argparse.Namespace) -> int:
    from channel_node.chain import Sender

    sender: Sender
    if args.keystore:
        key = load_key(Path(args.keystore), read_password(confirm=False))
        sender = Sender.from_key(key)
        del key  # the sender holds the only copy this command needs
    else:
        sender = Sender.unlocked(args.unlocked)
    return run_async(_deploy_main(args, sender))


def add_deploy_command(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `deploy`; returns its parser."""
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy the ChannelDeposit contract and print its address",
        description=f"Deploys ChannelDeposit. With --keystore the password comes from {PASSWORD_ENV} when set, "
        "else from a prompt.",
    )
    deploy.add_argument("--rpc-url", required=True, help="HTTP(S) or WS(S) JSON-RPC endpoint")
    who = deploy.add_mutually_exclusive_group(required=True)
    who.add_argument("--keystore", help="encrypted keystore of the deploying account (see `keys new`)")
    who.add_argument("--unlocked", type=_address, metavar="ADDRESS", help="an account the node signs for (dev chains)")
    deploy.add_argument(
        "--max-deposit", type=_wei, default=0, metavar="WEI", help="cap on one channel's deposit (default 0: uncapped)"
    )
    deploy.add_argument("--gas", type=_gas, help="gas limit (default: the node's estimate plus 20%%)")
    deploy.add_argument(
        "--timeout", type=_positive_seconds, default=300.0, help="seconds to wait for the transaction (default 300)"
    )
    deploy.set_defaults(handler=_deploy)
    return deploy
