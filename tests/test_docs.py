"""The docs name code that exists, and the code cites doc headings that exist.

- Every `path.py`, `path.py:name`, `path.py:Class.member` and `tests/...py::test` that
  docs/*.md or README.md names, where the path is one of ours (under src/channel_node/, tests/ or
  scripts/), is a file, and the name is defined in it (by its AST: a function, class, assignment
  or import; a class member: a method, a class attribute or a `self.` attribute). In backticks: a
  folder of ours (`node/`, `tests/store/`) exists; a test named alone (`test_...`) is defined under
  tests/; `Class.member` whose class is the package's names a member of it (or of a base); a
  dotted or slashed module path (`core.clocks.stops_sales`, `chain/ports.OnChainChannel`) resolves
  to a module and a name defined in it.
- docs/design.md's tree (the fenced block under "The tree") lists exactly the folders and modules
  under src/channel_node/ and the folders of tests/, lowest first: a module imports only what is
  listed above it (but for the one the tree says sits above its place).
- Every `docs/X.md, "Heading"` cited in src/, tests/, scripts/, web/, docs/ or README.md is a
  heading of that page: for docs/design.md exactly (code cites its headings by their text); for the
  other pages the heading, its start up to a punctuation mark, or one of its clauses (citations
  quote "Nothing reaches the origin unpaid" for a longer heading). `docs/protocol.md section N` is a
  numbered section of that page, a named `docs/X.md` exists, and a `page.md#anchor` link is an
  anchor of that page.

Prose is left alone: a `.py` name or a `Class.member` outside our files and classes is not checked.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "channel_node"
DOCS = ROOT / "docs"
PAGES = (*sorted(DOCS.glob("*.md")), ROOT / "README.md")
# Where code cites the docs.
CITERS = ("src", "tests", "scripts", "web")
OURS = ("src", "tests", "scripts")  # the folders whose files a page may name
# Names ending in .py that are not files: libraries.
NOT_FILES = frozenset({"web3.py"})
SUBPACKAGES = frozenset(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
TOP_MODULES = frozenset(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")

NAME = r"[A-Za-z_]\w*"
# `server/app.py`, `server/app.py:Paywall.handle`, `tests/test_x.py::test_y`, `errors.py`.
PY_REF = re.compile(
    rf"(?<![\w./*-])((?:[\w-]+/)*[\w-]+\.py)(?![\w/])(?:::({NAME}(?:::{NAME})?)|:({NAME}(?:\.{NAME})?))?"
)
BACKTICKED = re.compile(r"`([^`\n]+)`")
CLASS_MEMBER = re.compile(rf"({NAME})\.({NAME})(?:\(\))?")
MODULE_PATH = re.compile(rf"(?:channel_node[./])?({NAME}(?:[./]{NAME})*)(?:\(\))?")
FOLDER = re.compile(r"((?:[\w-]+/)+)")
# A file of another kind than Python, named by its path (`web/ledger.js`, `store/migrations/0003_outbox.sql`).
OTHER_FILE = re.compile(r"(?:[\w-]+/)+[\w.-]+\.(?:js|json|sql|sol|html|css|md|toml|txt|csv|svg|png)")
CITATION = re.compile(r'docs/([\w-]+)\.md,\s*(?:(?:#|//|\*)\s*)?"([^"]+)"')
SECTIONS = re.compile(r"docs/([\w-]+)\.md,?\s+sections?\s+(\d+(?:(?:,\s*|\s+and\s+)\d+)*)")
PAGE_NAME = re.compile(r"(?<![\w/.-])docs/([\w-]+)\.md\b")
ANCHOR = re.compile(r"\]\(((?:[\w./-]+/)?[\w-]*\.md)?#([\w-]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A paragraph's or list item's bold lead-in, which the other pages use as a run-in heading.
RUN_IN = re.compile(r"^(?:- )?\*\*([^*\n]+?)[.:]?\*\*", re.M)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


# ---------------------------------------------------------------------- what the code defines


@dataclass
class Definitions:
    names: set[str] = field(default_factory=set)  # top-level: defs, classes, assignments, imports
    classes: dict[str, set[str]] = field(default_factory=dict)  # class -> its members
    bases: dict[str, list[str]] = field(default_factory=dict)  # class -> its bases' names


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [name for element in node.elts for name in _targets(element)]
    return []


def _class_members(node: ast.ClassDef) -> set[str]:
    members: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members.add(item.name)
        elif isinstance(item, ast.Assign):
            members.update(name for target in item.targets for name in _targets(target))
        elif isinstance(item, ast.AnnAssign):
            members.update(_targets(item.target))
    for sub in ast.walk(node):  # self.x = ... in any method
        if isinstance(sub, (ast.Assign, ast.AnnAssign)):
            for target in sub.targets if isinstance(sub, ast.Assign) else [sub.target]:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                    members.add(target.attr)
    return members


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@cache
def definitions(path: Path) -> Definitions:
    found = Definitions()
    for node in parsed(path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            found.names.add(node.name)
            found.classes[node.name] = _class_members(node)
            found.bases[node.name] = [b.id if isinstance(b, ast.Name) else ast.unparse(b).split(".")[-1] for b in node.bases]
        elif isinstance(node, ast.Assign):
            found.names.update(name for target in node.targets for name in _targets(target))
        elif isinstance(node, ast.AnnAssign):
            found.names.update(_targets(node.target))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports and the like
            for sub in node.body:
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    found.names.update((alias.asname or alias.name).split(".")[0] for alias in sub.names)
    return found


@cache
def our_files() -> tuple[Path, ...]:
    return tuple(sorted(p for folder in OURS for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts))


@cache
def our_classes() -> dict[str, list[tuple[Path, str]]]:
    """Every class defined in the package: name -> where (the classes a page names as `Class.member`)."""
    index: dict[str, list[tuple[Path, str]]] = {}
    for path in our_files():
        if not path.is_relative_to(PACKAGE):
            continue
        for name in definitions(path).classes:
            index.setdefault(name, []).append((path, name))
    return index


@cache
def defined_tests() -> frozenset[str]:
    """Every test function under tests/ (a regex, not the AST: the files are many and large)."""
    found: set[str] = set()
    for path in our_files():
        if path.is_relative_to(ROOT / "tests"):
            found.update(re.findall(r"^\s*(?:async\s+)?def (test_\w+)", path.read_text(), re.M))
    return frozenset(found)


def _has_member(class_name: str, member: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether any class of ours named `class_name`, or one of its bases of ours, defines `member`."""
    for path, name in our_classes().get(class_name, []):
        found = definitions(path)
        if member in found.classes[name]:
            return True
        for base in found.bases[name]:
            if base not in seen and _has_member(base, member, seen | {class_name}):
                return True
    return False


def _defined(path: Path, name: str) -> bool:
    """`name` or `Class.member` is defined in the file at `path`."""
    found = definitions(path)
    head, _, member = name.partition(".")
    if not member:
        return head in found.names
    if head not in found.classes:
        return False
    return member in found.classes[head] or any(_has_member(base, member) for base in found.bases[head])


# ---------------------------------------------------------------------- resolving a page's references


def resolve(ref: str) -> Path | None | bool:
    """The file or folder a page's path names: a Path when it is ours and exists, None when it is
    ours and missing, False when it is not ours to check (another tree, an example name)."""
    ref = ref.removeprefix("./")
    first = ref.split("/", 1)[0]
    if "/" not in ref.rstrip("/"):
        if ref.endswith(".py"):  # a bare module name: somewhere in our files
            return next((p for p in our_files() if p.name == ref), None)
        if ref.rstrip("/") in SUBPACKAGES:
            return PACKAGE / ref
        return False
    if first in OURS:
        candidate = ROOT / ref
    elif first == "channel_node":
        candidate = ROOT / "src" / ref
    elif first in SUBPACKAGES:
        candidate = PACKAGE / ref
    else:
        return False
    return candidate if candidate.exists() else None


def _module(dotted: str) -> tuple[Path, list[str]] | None:
    """`core.clocks.stops_sales`, `chain/ports.OnChainChannel`: the longest module prefix of ours
    and the names after it; None when the first part is not one of our modules."""
    parts = re.split(r"[./]", dotted)
    if parts[0] not in SUBPACKAGES | TOP_MODULES:
        return None
    for cut in range(len(parts), 0, -1):
        base = PACKAGE.joinpath(*parts[:cut])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[cut:]
        if cut == 1 and base.is_dir():  # a namespace package (server/)
            return base, parts[cut:]
    return PACKAGE / parts[0], parts[1:]  # names a module that is not there


def page_problems(text: str, page: str) -> list[str]:
    """Every reference in one page's text that names something of ours that does not exist."""
    problems = []
    for match in PY_REF.finditer(text):
        ref, test, name = match.groups()
        if ref in NOT_FILES:
            continue
        where = resolve(ref)
        if where is False:
            continue
        if where is None:
            problems.append(f"{page}: {match.group(0)}: no such file")
            continue
        assert isinstance(where, Path)
        if test and not _defined(where, test.replace("::", ".")):
            problems.append(f"{page}: {match.group(0)}: no test {test} in {ref}")
        if name and not _defined(where, name):
            problems.append(f"{page}: {match.group(0)}: {name} is not defined in {ref}")
    for match in BACKTICKED.finditer(text):
        token = match.group(1).strip()
        if ".py" in token or " " in token:
            continue  # .py references are checked above; anything with a space is code or prose
        if re.fullmatch(r"test_\w+", token):
            if token not in defined_tests():
                problems.append(f"{page}: `{token}`: no such test under tests/")
        elif (folder := FOLDER.fullmatch(token)) and resolve(folder.group(1)) is None:
            problems.append(f"{page}: `{token}`: no such folder")
        elif OTHER_FILE.fullmatch(token):
            if resolve(token) is None:
                problems.append(f"{page}: `{token}`: no such file")
        elif (member := CLASS_MEMBER.fullmatch(token)) and member.group(1)[0].isupper():
            cls, attr = member.groups()
            if cls in our_classes() and not _has_member(cls, attr):
                problems.append(f"{page}: `{token}`: {cls} has no member {attr}")
        elif (dotted := MODULE_PATH.fullmatch(token)) and re.search(r"[./]", dotted.group(1)):
            found = _module(dotted.group(1))
            if found is None:
                continue
            module, names = found
            if not module.exists():
                problems.append(f"{page}: `{token}`: no such module")
            elif names and (module.is_dir() or len(names) > 2 or not _defined(module, ".".join(names))):
                problems.append(f"{page}: `{token}`: {'.'.join(names)} is not defined in {module.relative_to(ROOT)}")
    return problems


def test_every_file_function_and_method_a_page_names_exists():
    problems = [p for page in PAGES for p in page_problems(page.read_text(), str(page.relative_to(ROOT)))]
    assert problems == []


def test_a_renamed_or_moved_name_is_reported():
    """The checks above on made-up text: each stale reference is reported, the live ones and the
    prose are not."""
    text = """
    `node/runtime.py:Runtime.pay` and `node/runtime.py:Runtime.pay_twice`; `server/admin.py` and
    server/admin/api.py:AdminApi.close_many, `Runtime.check`, `Runtime.checks`, `Path.read_text`,
    `core.clocks.stops_sales`, `core.clocks.stop_sales`, `chain/ports.OnChainChannel`, `node/`,
    `tests/store/`, `tests/nowhere/`, `resource.url`, premium.php, `web/ledger.js`, `*_cli.py`, `gone.py`,
    tests/test_layers.py::test_no_import_cycle_among_our_modules, tests/test_layers.py::test_gone,
    `chain/nothing.py`, errors.py:ChannelNodeError, errors.py:NoSuchError, `Fees.bumped`,
    `channel_node/server/static/wallet.js`, `store/migrations/0009_none.sql`,
    `test_no_import_cycle_among_our_modules`, `test_renamed_long_ago`.
    """
    assert page_problems(text, "made-up") == [
        "made-up: node/runtime.py:Runtime.pay_twice: Runtime.pay_twice is not defined in node/runtime.py",
        "made-up: server/admin.py: no such file",
        "made-up: gone.py: no such file",
        "made-up: tests/test_layers.py::test_gone: no test test_gone in tests/test_layers.py",
        "made-up: chain/nothing.py: no such file",
        "made-up: errors.py:NoSuchError: NoSuchError is not defined in errors.py",
        "made-up: `Runtime.checks`: Runtime has no member checks",
        "made-up: `core.clocks.stop_sales`: stop_sales is not defined in src/channel_node/core/clocks.py",
        "made-up: `tests/nowhere/`: no such folder",
        "made-up: `store/migrations/0009_none.sql`: no such file",
        "made-up: `test_renamed_long_ago`: no such test under tests/",
    ]


# ---------------------------------------------------------------------- design.md's tree


def _tree() -> list[str]:
    """The paths docs/design.md's tree lists, from its fenced block under "### The tree": one entry
    a line, two spaces of indent per level, a folder ending in `/`."""
    text = (DOCS / "design.md").read_text()
    section = text.split("### The tree", 1)[1]
    block = FENCE.search(section)
    assert block is not None, "docs/design.md: no fenced block under 'The tree'"
    paths, stack = [], []
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        stack[depth:] = [name]
        paths.append("".join(stack))
    return paths


def test_the_tree_lists_every_folder_and_module_and_nothing_else():
    listed = set(_tree())
    package = {"src/channel_node/"} | {
        f"src/{p.relative_to(ROOT / 'src')}" + ("/" if p.is_dir() else "")
        for p in PACKAGE.rglob("*")
        if "__pycache__" not in p.parts and (p.is_dir() or (p.suffix == ".py" and p.name != "__init__.py"))
    }
    tests = {"tests/"} | {f"tests/{p.name}/" for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert sorted((package | tests) - listed) == [], "missing from docs/design.md's tree"
    assert sorted(listed - package - tests) == [], "in docs/design.md's tree but not in the repository"


# Above what it imports: it builds the whole node, paywall and admin listener included.
ABOVE_ITS_PLACE = ("src/channel_node/node/assembly.py",)


def _imported(path: Path) -> set[str]:
    """The modules of ours a module imports, at any depth of its body (lazy imports count), as
    dotted names below `channel_node` (the package uses absolute imports only)."""
    names = set()
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name.removeprefix("channel_node.") for name in names if name.startswith("channel_node.")}


def test_the_tree_lists_the_modules_lowest_first():
    """Each module in the tree imports only what is listed above it (a package: all of it), but for
    the one the tree says sits above its place."""
    order = [p for p in _tree() if p.startswith("src/channel_node/")]
    place = {p.removeprefix("src/channel_node/").removesuffix(".py").removesuffix("/").replace("/", "."): i
             for i, p in enumerate(order)}  # fmt: skip

    def position(name: str) -> int | None:
        while name and name not in place:
            name = name.rpartition(".")[0]
        if not name:
            return None
        return max(i for other, i in place.items() if other == name or other.startswith(name + "."))

    upward = []
    for i, listed in enumerate(order):
        if not listed.endswith(".py") or listed in ABOVE_ITS_PLACE:
            continue
        dotted = listed.removeprefix("src/channel_node/").removesuffix(".py").replace("/", ".")
        for name in sorted(_imported(ROOT / listed)):
            if dotted.startswith(name + "."):
                continue  # its own package (`from channel_node.node import chain_events`): the name after it counts
            at = position(name)
            if at is not None and at > i:
                upward.append(f"{listed} imports {name}, listed below it")
    assert upward == []


# ---------------------------------------------------------------------- headings the code cites


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", "")).strip()


@cache
def headings(page: str, run_in: bool = False) -> tuple[str, ...]:
    """The page's headings (with `run_in`, its bold lead-ins too), outside its fenced blocks."""
    path = DOCS / f"{page}.md"
    text = _prose(path.read_text()) if path.is_file() else ""
    return tuple(_normal(h) for h in HEADING.findall(text) + (RUN_IN.findall(text) if run_in else []))


def _prose(text: str) -> str:
    """A page without its fenced blocks (a shell comment there is no heading)."""
    return FENCE.sub("", text)


def _unwrap(quoted: str) -> str:
    """A heading quoted across lines of a comment or docstring, as one line."""
    return _normal(re.sub(r"\s*\n\s*(?:#|//|\*)?\s*", " ", quoted))


def cites(page: str, quoted: str) -> bool:
    """Whether `quoted` names a heading of docs/<page>.md (see the module's docstring)."""
    wanted = _unwrap(quoted)
    if page == "design":
        return wanted in headings(page)
    fold = wanted.casefold().removeprefix("the ")
    for heading in headings(page, run_in=True):
        plain = re.sub(r"^\d+\.\s+", "", heading).casefold()
        clauses = [plain, *(c.strip() for c in re.split(r"[;:]\s", plain))]
        for clause in clauses:
            clause = clause.removeprefix("the ")
            if clause == fold or (clause.startswith(fold) and clause[len(fold)] in ",;:("):
                return True
    return False


def _citing_files() -> list[Path]:
    files = [p for folder in CITERS for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".js", ".sql")]
    # This file's own made-up citations are its checks' inputs.
    return sorted(p for p in files if "__pycache__" not in p.parts and p != Path(__file__).resolve()) + list(PAGES)


def citation_problems(text: str, where: str) -> list[str]:
    problems = []
    for match in CITATION.finditer(text):
        page, quoted = match.groups()
        if not (DOCS / f"{page}.md").is_file():
            problems.append(f"{where}: docs/{page}.md does not exist")
        elif not cites(page, quoted):
            problems.append(f'{where}: docs/{page}.md has no heading "{_unwrap(quoted)}"')
    for match in SECTIONS.finditer(text):
        page, numbers = match.groups()
        numbered = {m.group(1) for h in headings(page) if (m := re.match(r"(\d+)\.", h))}
        problems += [f"{where}: docs/{page}.md has no section {n}" for n in re.findall(r"\d+", numbers) if n not in numbered]
    for match in PAGE_NAME.finditer(text):
        if not (DOCS / f"{match.group(1)}.md").is_file():
            problems.append(f"{where}: docs/{match.group(1)}.md does not exist")
    return problems


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.casefold()).replace(" ", "-")


def anchor_problems(text: str, page: Path) -> list[str]:
    problems = []
    for match in ANCHOR.finditer(text):
        target, anchor = match.groups()
        linked = (page.parent / target).resolve() if target else page
        slugs = {_slug(h) for h in HEADING.findall(_prose(linked.read_text()))} if linked.is_file() else set()
        if anchor not in slugs:
            problems.append(f"{page.relative_to(ROOT)}: {match.group(0)}: no such anchor")
    return problems


def test_every_cited_heading_exists():
    problems = []
    for path in _citing_files():
        problems += citation_problems(path.read_text(), str(path.relative_to(ROOT)))
    for page in PAGES:
        problems += anchor_problems(page.read_text(), page)
    assert problems == []


def test_the_code_cites_design_md_by_its_headings_exact_text():
    """The headings code cites most (docs/design.md's) match exactly; the other pages' citations
    may quote a heading's start or a clause, never a word that is not there."""
    assert cites("design", "Layers") and cites("design", "Two clocks")
    assert not cites("design", "layers") and not cites("design", "Two")
    assert cites("security", "Nothing reaches\n        the origin unpaid")  # a docstring's wrap
    assert cites("security", "An\n# unsold answer shows nothing of the origin's")  # a comment's, a clause
    assert cites("security", "The offer's close delay is a rule")  # the start, up to a comma
    assert cites("protocol", "Canonical resource")  # "10. The canonical resource"
    assert not cites("security", "Nothing reaches the origin")  # not up to a punctuation mark
    assert not cites("security", "Reorganisation")
    assert cites("security", "Where vouchers go") and not cites("design", "Where vouchers go")  # run-in
    assert citation_problems('docs/design.md, "Layer rules" and docs/protocol.md sections 1, 2 and 99', "x") == [
        'x: docs/design.md has no heading "Layer rules"', "x: docs/protocol.md has no section 99",
    ]
