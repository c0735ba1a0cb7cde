"""One error root, mapped at the edges (docs/design.md, "Errors"): every exception class of the
package subclasses `ChannelNodeError` through the category that says who must act; the command
line turns any of them into one `error:` line and the category's exit code; the paywall answers
an escaped `Refusal` with its code and any other error with a generic 5xx that leaks no text."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import channel_node
from channel_node.chain.ports import ChainUnavailable
from channel_node.chain.reverts import ContractRevert
from channel_node.cli import main as cli_main
from channel_node.cli.support import reporting_errors
from channel_node.client.store import WalletStoreError
from channel_node.client.wallet import ServerMisbehaved, SpendingLimitExceeded
from channel_node.errors import ChannelNodeError, ConfigError, Refusal, RemoteError, StateError, UsageError
from channel_node.keys import KeystoreError
from channel_node.node.assembly import NodeConfigError
from channel_node.server.admin import AdminError
from channel_node.signing import InvalidSignature
from channel_node.store import StaleWrite, StoreError, StoreLocked, StoreMismatch
from channel_node.wire.envelope import ProtocolError
from paywall_helpers import node_settings, start_node, write_site

PACKAGE_ROOT = Path(channel_node.__file__).resolve().parent
CATEGORIES = (UsageError, Refusal, RemoteError, StateError)


def _modules() -> list[str]:
    """Every module under src/channel_node, by walking the files (server/ has no __init__.py, so
    pkgutil would skip it)."""
    names = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


CLASSES = _exception_classes()


def test_the_walk_finds_the_package_s_exceptions():
    names = {f"{c.__module__}.{c.__qualname__}" for c in CLASSES}
    for known in (ProtocolError, AdminError, ChainUnavailable, StoreMismatch, KeystoreError, ServerMisbehaved):
        assert f"{known.__module__}.{known.__qualname__}" in names  # server/ included, subclasses too
    assert len(CLASSES) >= 30


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_exception_class_has_the_one_root_and_a_category(cls):
    assert issubclass(cls, ChannelNodeError), f"{cls.__qualname__} must subclass channel_node.errors.ChannelNodeError"
    if cls.__module__ != "channel_node.errors":
        assert issubclass(cls, CATEGORIES), f"{cls.__qualname__} must say who must act: subclass one of {CATEGORIES}"


def test_errors_py_is_the_lowest_layer():
    tree = ast.parse((PACKAGE_ROOT / "errors.py").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]  # fmt: skip
    assert all(not (name or "").startswith("channel_node") for name in imported), imported


def test_existing_catches_keep_working():
    # ValueError stays a base where callers catch ValueError; names, modules and attributes stay.
    assert issubclass(InvalidSignature, ValueError)
    from channel_node.insights.dashboard import BadRequest
    from channel_node.insights.queries import QueryError

    assert issubclass(BadRequest, ValueError) and issubclass(QueryError, ValueError)
    refused = ProtocolError("wrong_network", "this node is on eip155:1", 402)
    assert (refused.code, refused.detail, refused.status, str(refused)) == ("wrong_network", "this node is on eip155:1", 402, "this node is on eip155:1")
    admin = AdminError(404, "channel_unknown", "no such channel")
    assert (admin.status, admin.code, admin.message) == (404, "channel_unknown", "no such channel")
    assert issubclass(StoreMismatch, StoreError) and issubclass(StaleWrite, StoreError)


def test_refusals_carry_their_stable_code():
    assert ContractRevert("claim", "NothingToClaim").code == "NothingToClaim"
    assert ContractRevert("claim", None, data=b"\x01").code == "contract_revert"
    assert ContractRevert("claim", "NothingToClaim").function == "claim"  # its attributes stay
    from channel_node.core import Reject

    assert InvalidSignature("high s").code == Reject.INVALID_SIGNATURE.value


# ------------------------------------------------------------------ the command line

# One real class of each category (and of two categories at once), with the exit code promised.
CLI_CASES = [
    (KeystoreError("wrong password"), 2),
    (NodeConfigError("set `contract`"), 2),
    (SpendingLimitExceeded("price 5 above the limit 4"), 2),
    (StoreMismatch("store is pinned to chain 1"), 2),  # a store failure the configuration causes
    (StoreLocked("another channel-node process is using x.db"), 2),
    (ProtocolError("wrong_network", "this node is on eip155:1"), 2),
    (AdminError(401, "unauthorized", "send Authorization: Bearer <admin_token>"), 2),
    (ContractRevert("requestClose", "CloseAlreadyRequested"), 2),
    (ChainUnavailable("the RPC endpoint did not answer"), 1),
    (RemoteError("the site did not answer"), 1),
    (StoreError("database schema 9 is newer than this channel-node knows"), 1),
    (StaleWrite("the channel changed"), 1),
    (WalletStoreError("refusing to sign 5 again"), 1),
    (ChannelNodeError("something else"), 1),
]


def _run_main_raising(monkeypatch, exc: BaseException) -> int:
    """The real `main`, over a parser whose one command raises `exc`."""

    def handler(args: argparse.Namespace) -> int:
        raise exc

    def parser() -> argparse.ArgumentParser:
        built = argparse.ArgumentParser(prog="channel-node")
        built.set_defaults(handler=handler)
        return built

    monkeypatch.setattr(cli_main, "build_parser", parser)
    return cli_main.main([])


@pytest.mark.parametrize("exc, code", CLI_CASES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_main_maps_each_category_to_its_exit_code_and_one_line(monkeypatch, capsys, exc, code):
    assert _run_main_raising(monkeypatch, exc) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {exc}\n"  # the message unchanged, on one line, no traceback


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    category=st.sampled_from([(UsageError, 2), (ConfigError, 2), (RemoteError, 1), (StateError, 1), (ChannelNodeError, 1)]),
    message=st.text(max_size=80),
)
def test_any_message_is_one_line_and_the_category_decides_the_exit(monkeypatch, capsys, category, message):
    cls, code = category
    assert _run_main_raising(monkeypatch, cls(message)) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1
    assert "Traceback" not in err
    assert err == f"error: {' '.join(message.split()) or cls.__name__}\n"


def test_an_error_outside_the_hierarchy_is_not_swallowed(monkeypatch):
    # Only our errors are mapped: a bug (any other exception) still surfaces as itself.
    with pytest.raises(ZeroDivisionError):
        _run_main_raising(monkeypatch, ZeroDivisionError())


def test_a_real_command_lets_its_error_out_to_the_one_handler(tmp_path, capsys):
    # `keys show` no longer catches KeystoreError itself; main and reporting_errors map it.
    assert cli_main.main(["keys", "show", "--keystore", str(tmp_path / "absent.json")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_reporting_errors_applies_the_same_mapping(capsys):
    @reporting_errors
    def failing(args: argparse.Namespace) -> int:
        raise ChainUnavailable("line one\nline two")

    assert failing(argparse.Namespace()) == 1
    assert capsys.readouterr().err == "error: line one line two\n"


# ------------------------------------------------------------------ the paywall

SECRET = "postgres://admin:hunter2@10.0.0.7/db"  # what an exception's text might hold

HTTP_CASES = [
    (RemoteError(f"origin {SECRET} did not answer"), 503, "upstream_unavailable"),
    (ChainUnavailable(f"rpc {SECRET} timed out"), 503, "upstream_unavailable"),
    (WalletStoreError(f"cannot write {SECRET}"), 503, "store_unavailable"),
    (StaleWrite(f"channel changed in {SECRET}"), 503, "store_unavailable"),
    (NodeConfigError(f"bad setting {SECRET}"), 500, "internal_error"),  # a UsageError escaping is a bug
    (ChannelNodeError(SECRET), 500, "internal_error"),
]


@pytest.fixture
async def running(chain, deployed, parties, tmp_path):
    site = write_site(tmp_path / "site")
    node = await start_node(chain.tester, node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site))
    yield node
    await node.stop()


def _raise_from_the_source(node, exc: BaseException) -> None:
    async def fetch(*args, **kwargs):
        raise exc

    node.node.paywall.source.fetch = fetch  # a free GET reaches the content source in the handler


@pytest.mark.parametrize("exc, status, code", HTTP_CASES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
async def test_an_escaped_failure_is_a_generic_5xx_that_leaks_no_text(running, exc, status, code):
    _raise_from_the_source(running, exc)
    response = await running.client.get("/")
    assert response.status == status
    body = await response.json()
    assert body["error"] == code and set(body) == {"error", "message"}
    text = await response.text()
    assert "hunter2" not in text and "10.0.0.7" not in text and "Traceback" not in text


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (ProtocolError("wrong_network", "this node is on eip155:1", 400), 400, "wrong_network"),
        (AdminError(409, "nothing_to_close", "the channel has no voucher"), 409, "nothing_to_close"),
        (InvalidSignature("the signature is high-s"), 400, "invalid_signature"),
        (ContractRevert("claim", "NothingToClaim"), 409, "NothingToClaim"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
async def test_an_escaped_refusal_answers_its_code_and_message(running, exc, status, code):
    _raise_from_the_source(running, exc)
    response = await running.client.get("/")
    assert response.status == status
    assert await response.json() == {"error": code, "message": str(exc)}


async def test_the_paywall_still_answers_after_an_escaped_error(running):
    source = running.node.paywall.source
    original = source.fetch
    _raise_from_the_source(running, StaleWrite("x"))
    assert (await running.client.get("/")).status == 503
    source.fetch = original
    free = await running.client.get("/")
    assert free.status == 200 and await free.text() == "<h1>Front page</h1>"
