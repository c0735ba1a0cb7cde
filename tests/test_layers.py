"""The layers of docs/design.md hold: the chain side knows no consumer (the watcher feeds a
`ChainSink`, which the runtime implements), the lower layers import nothing above them, and no
module imports itself round a cycle (the command modules included); chain/ imports only core,
signing, store and types; dev/ is imported only by cli/."""

from __future__ import annotations

import ast
import asyncio
import inspect
import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.chain.ports import ChainSink
from channel_node.chain.watcher import Watcher
from channel_node.node.runtime import Runtime
from channel_node.signing import ChannelConfig, Domain, address_of_key, keccak256
from channel_node.store import Cursor, MemoryStore, Pin
from fake_chain import CONTRACT, Deposit, FakeChain, FakeClient, FakeWeb3

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "channel_node"
LOWER = ("core", "signing", "store", "chain")
# Everything that joins edges or faces a user: the lower layers never import any of it.
UPPER = ("node", "server", "client", "cli", "insights", "dev")

DOMAIN = Domain(31337, bytes.fromhex(CONTRACT[2:]))
RECEIVER = keccak256(b"layers test receiver")[:20]
_salts = itertools.count(1)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every module of ours each module imports, at any depth of its body (lazy imports count)."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith(PACKAGE):
                    resolved = owner(target)
                    # A package's own __init__ is not an import of a module inside it.
                    if resolved and resolved != name and not name.startswith(resolved + "."):
                        found.add(resolved)
        graph[name] = found
    return graph


def _under(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == f"{PACKAGE}.{layer}" or module.startswith(f"{PACKAGE}.{layer}.") for layer in layers)


def test_lower_layers_import_nothing_above_them():
    graph = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _under(a, LOWER) and _under(b, UPPER))
    assert upward == []
    assert f"{PACKAGE}.chain.ports" in graph and f"{PACKAGE}.chain.ports" in graph[f"{PACKAGE}.chain.watcher"]


# The chain edge's own allowance (docs/design.md, "Layers"): besides itself, only these. `errors`
# is the shared exception module, when there is one.
CHAIN_MAY_IMPORT = ("chain", "core", "signing", "store", "types", "errors")
# The embedded dev chain and demo are tooling: only the command line (and tests and scripts, which
# live outside the package) may import them, never the node, the paywall or the wallet.
DEV_IMPORTED_BY = ("dev", "cli")


def _outside(graph: dict[str, set[str]], importers: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """The imports of a module under `importers` of one of ours that is not under `allowed`."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() if _under(a, importers) for b in targets if not _under(b, allowed))


def _importers_of(graph: dict[str, set[str]], imported: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """The imports of a module under `imported` by one of ours that is not under `allowed`."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _under(b, imported) and not _under(a, allowed))


def test_chain_imports_only_core_signing_store_and_types():
    graph = _imports(_modules())
    assert _outside(graph, ("chain",), CHAIN_MAY_IMPORT) == []
    # The rule sees chain/'s real imports (not an empty graph): the watcher reaches the store.
    assert f"{PACKAGE}.store" in graph[f"{PACKAGE}.chain.watcher"] | graph[f"{PACKAGE}.chain.ports"]


def test_dev_is_imported_only_by_the_command_line():
    graph = _imports(_modules())
    assert _importers_of(graph, ("dev",), DEV_IMPORTED_BY) == []
    assert any(_under(b, ("dev",)) for b in graph[f"{PACKAGE}.cli.main"]), "cli/main.py runs `dev` and `demo`"


def test_the_layer_rules_report_a_forbidden_import():
    """The two rules above on a made-up graph: each forbidden edge is reported, the allowed ones not."""
    graph = {
        f"{PACKAGE}.chain.watcher": {f"{PACKAGE}.store", f"{PACKAGE}.types", f"{PACKAGE}.server.metrics"},
        f"{PACKAGE}.chain.logs": {f"{PACKAGE}.signing.eip712", f"{PACKAGE}.config"},
        f"{PACKAGE}.cli.main": {f"{PACKAGE}.dev.stack"},
        f"{PACKAGE}.dev.stack": {f"{PACKAGE}.dev.devchain", f"{PACKAGE}.chain.artifacts"},
        f"{PACKAGE}.node.assembly": {f"{PACKAGE}.dev.devchain", f"{PACKAGE}.chain.watcher"},
    }
    assert _outside(graph, ("chain",), CHAIN_MAY_IMPORT) == [
        f"{PACKAGE}.chain.logs -> {PACKAGE}.config",
        f"{PACKAGE}.chain.watcher -> {PACKAGE}.server.metrics",
    ]
    assert _importers_of(graph, ("dev",), DEV_IMPORTED_BY) == [f"{PACKAGE}.node.assembly -> {PACKAGE}.dev.devchain"]


def test_insights_is_a_library_without_http_or_auth():
    """The dashboard's HTTP handlers and login live in server/admin/ beside the admin guard; insights/
    (schema, recorder, queries, charts, the page's figures, the report) imports nothing from server/
    and no web framework, so the arrow between them points one way (docs/design.md)."""
    modules = _modules()
    graph = _imports(modules)
    insights = [name for name in graph if _under(name, ("insights",))]
    assert f"{PACKAGE}.insights.schema" in insights and f"{PACKAGE}.insights.dashboard" in insights
    upward = sorted(f"{a} -> {b}" for a in insights for b in graph[a] if _under(b, ("server",)))
    assert upward == []
    web = []
    for name in insights:
        for node in ast.walk(ast.parse(modules[name].read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if (
                isinstance(node, ast.ImportFrom) and not node.level) else []  # fmt: skip
            web += [f"{name} -> {n}" for n in names if n.split(".")[0] in ("aiohttp", "hmac")]
    assert web == []
    assert any(_under(b, ("insights",)) for b in graph[f"{PACKAGE}.server.admin.dashboard"])


def test_no_import_cycle_among_our_modules():
    graph = _imports(_modules())
    # Depth-first search for a back edge; reports one cycle as a path.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert visit(module) is None, f"import cycle: {' -> '.join(stack)}"
    commands = graph[f"{PACKAGE}.cli.channels"] | graph[f"{PACKAGE}.cli.wallet"] | graph[f"{PACKAGE}.cli.operator"]
    assert f"{PACKAGE}.cli.main" not in commands, "the command modules take run_async from cli/support.py"


def _arrows(graph: dict[str, set[str]], sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, found in graph.items() for b in found if _under(a, sources) and _under(b, targets))


def test_the_wallet_and_the_paywall_meet_only_in_wire():
    """The reader wallet and the node speak one envelope, defined once in wire/ (docs/protocol.md
    section 12): client/ never imports server/, nor server/ client/, and wire/ imports none
    of the packages that use it or do I/O, so it stays a leaf both sides can share."""
    graph = _imports(_modules())
    assert _arrows(graph, ("client",), ("server",)) == []
    assert _arrows(graph, ("server",), ("client",)) == []
    assert _arrows(graph, ("wire",), ("client", "server", "node", "cli", "chain", "store", "dev", "insights")) == []
    assert f"{PACKAGE}.wire.envelope" in graph[f"{PACKAGE}.client.session"]
    assert f"{PACKAGE}.wire.channel" in graph[f"{PACKAGE}.server.app"]


def test_the_settings_do_not_know_the_paywall():
    """config.py parses price entries into pricing.Price without importing server/ (the matcher)."""
    graph = _imports(_modules())
    assert _arrows(graph, ("config",), UPPER) == []
    assert _arrows(graph, ("pricing",), ("config", *UPPER)) == []
    assert f"{PACKAGE}.pricing" in graph[f"{PACKAGE}.config"] and f"{PACKAGE}.pricing" in graph[f"{PACKAGE}.server.prices"]


def test_the_runtime_implements_the_chain_sink():
    members = [name for name in vars(ChainSink) if not name.startswith("_")]
    assert {"apply_chain_events", "new_block", "suspend", "suspended", "replace_chain_view", "cover_anchor"} <= set(members)
    for name in members:
        wanted, present = inspect.getattr_static(ChainSink, name), inspect.getattr_static(Runtime, name, None)
        assert present is not None, f"Runtime lacks {name}"
        if isinstance(wanted, property):
            assert isinstance(present, property), name
            continue
        assert inspect.iscoroutinefunction(present) == inspect.iscoroutinefunction(wanted), name
        assert list(inspect.signature(present).parameters) == list(inspect.signature(wanted).parameters), name


class RecordingSink:
    """A consumer that is not a runtime: it only writes down what the watcher tells it."""

    def __init__(self) -> None:
        self.logs: list = []
        self.blocks: list[int] = []
        self._suspended: set[bytes] = set()
        self.replaced: list[tuple[bytes, object]] = []

    async def apply_chain_events(self, logs) -> int:
        self.logs += logs
        return len(logs)

    async def new_block(self, timestamp: int) -> int:
        self.blocks.append(timestamp)
        return 0

    def suspend(self, channel: bytes) -> None:
        self._suspended.add(channel)

    @property
    def suspended(self) -> frozenset[bytes]:
        return frozenset(self._suspended)

    async def replace_chain_view(self, channel: bytes, on_chain) -> None:
        self._suspended.discard(channel)
        self.replaced.append((channel, on_chain))

    async def cover_anchor(self, channel: bytes, anchor) -> bool:
        return True


def _config() -> ChannelConfig:
    return ChannelConfig.create(keccak256(b"layers payer")[:20], address_of_key(keccak256(b"k")), RECEIVER, None, 3600,
                                next(_salts))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(blocks=st.lists(st.lists(st.integers(1, 5), max_size=3), min_size=1, max_size=8), confirmations=st.integers(1, 3))
def test_the_watcher_reports_confirmed_logs_to_any_sink(blocks, confirmations):
    """Whatever the deposits per block, the sink hears exactly the logs at the confirmation depth,
    in chain order, and a confirmed block's time; no runtime is involved."""

    async def run() -> None:
        chain = FakeChain(DOMAIN)
        configs = [_config() for _ in range(3)]
        for amounts in blocks:
            chain.mine([Deposit(configs[i % 3], amount) for i, amount in enumerate(amounts)])
        store = MemoryStore()
        await store.open(Pin(DOMAIN.chain_id, DOMAIN.verifying_contract, RECEIVER))
        await store.set_cursor(Cursor(0, chain.canonical[0].hash))
        sink = RecordingSink()
        watcher = Watcher(FakeWeb3(chain), FakeClient(chain), sink, store, confirmations, defence_interval=0)
        assert await watcher.poll() == sum(len(b.logs) for b in chain.canonical[1 : chain.head - confirmations + 2])
        confirmed = max(0, chain.head - confirmations + 1)
        expected = [log for block in chain.canonical[1 : confirmed + 1] for log in block.logs]
        assert [(log.block_number, log.log_index) for log in sink.logs] == [(l.block_number, l.log_index) for l in expected]
        assert sink.blocks == [chain.canonical[confirmed].timestamp]
        assert (await store.cursor()).block == confirmed

    asyncio.run(run())
