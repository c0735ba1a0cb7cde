"""The layers of docs/design.md hold: the chain side knows no consumer (the watcher feeds a
`ChainSink`, which the runtime implements), the lower layers import nothing above them, and no
module imports itself round a cycle (the command modules included)."""

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
