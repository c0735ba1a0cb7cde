"""The price table: which paths cost what. Exact paths win, then free patterns, then priced patterns
in the order they are listed; a path nothing matches is free (the paywall guards only what is listed).

Paths are the canonical, decoded resource paths of server/resource.py. A path is free only when it
is free both as spelled and case-folded, so `/ARTICLES/a.html` costs what `/articles/a.html` costs
on an origin or file system that ignores case, and with and without a trailing slash; a request
is priced by every name of what it reads (`PriceTable.price_of`: a folder and its index file, a
file and its compressed copy, a script and the paths below it) (docs/protocol.md section 6).

The entries are `pricing.Price` values, which the settings file parses (config.py) without knowing
this matcher; `Price` is re-exported here for the table's callers."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import KeysView, Mapping

from channel_node.core.spending import Cap, Pass
from channel_node.pricing import Price

__all__ = ["COMPRESSED", "INDEX_FILES", "Price", "PriceTable", "SpendingTable", "fold_case"]


class PriceTable:
    def __init__(self, prices: list[Price], free: list[str]) -> None:
        for price in prices:
            if price.amount <= 0:
                raise ValueError(f"price for {price.path} must be positive (list free paths under `free`)")
        self._as_spelled = _Rules(prices, free, fold=False)
        self._folded = _Rules(prices, free, fold=True)
        self.prices = prices

    def match(self, path: str) -> Price | None:
        """The price of `path` (a canonical resource path), or None when it is free. A folder path
        ("/premium/") also costs what the same path without its slash costs: many origins answer
        both alike (the other way round, for origins only: `folder_price`)."""
        variants = (path, path.rstrip("/")) if len(path) > 1 and path.endswith("/") else (path,)
        for variant in variants:
            price = self._as_spelled.match(variant)
            if price is None:
                price = self._folded.match(fold_case(variant))
            if price is not None:
                return price
        return None

    def folder_price(self, path: str) -> Price | None:
        """What `path` costs as the folder `path/`, for an origin that answers "/premium" with the
        folder's index instead of redirecting: the folder's own exact rule, or, for a name that does
        not look like a file (no extension), any rule; nothing for a name listed on its own."""
        if path.endswith("/") or self.listed(path):
            return None
        folder = path + "/"
        if "." in path.rpartition("/")[2]:
            return self._as_spelled.exact_price(folder) or self._folded.exact_price(fold_case(folder))
        return self._as_spelled.match(folder) or self._folded.match(fold_case(folder))

    def listed(self, path: str) -> bool:
        """Whether `path` has an exact entry of its own, free or priced (as spelled or folded)."""
        return path in self._as_spelled.exact_names or fold_case(path) in self._folded.exact_names

    def price_of(self, path: str, served: str, folders_known: bool = True) -> Price | None:
        """The price of a request for `path` that reads the file `served` (a folder's index file in
        static mode): priced when any name of that file is priced. An index file (`index.html`,
        `index.htm`) named directly also costs what its folder costs (`/premium/index.html` as
        `/premium/` and `/premium`), as a folder costs what its index costs, since origins and the
        static source answer both alike, and a pre-compressed copy (`a.html.gz`, `.br`, `.zst`...)
        costs what `a.html` costs, and a path below a priced file name (`/premium.php/x`, which a
        PATH_INFO origin answers as `premium.php`) costs what that name costs; an exact free entry
        for the file itself keeps it free (docs/protocol.md section 6). `folders_known`: the source
        says which names are folders (static mode); else a name may be its folder (`folder_price`)."""
        price = self.match(served)
        if price is None and served != path:
            price = self.match(path)
        if price is None and not folders_known:  # an origin: "/premium" may be the folder
            price = self.folder_price(path)
        if price is not None:
            return price
        if self.listed_free(served) or self.listed_free(path):
            return None
        for name in {served, path}:
            head, _, last = name.rpartition("/")
            folded = last.casefold()
            if folded in INDEX_FILES:
                price = self.match(head + "/")
            elif folded.endswith(COMPRESSED) and "." in folded:
                # A pre-compressed copy (`a.html.gz` beside `a.html`, for gzip_static and the like)
                # is the same content: it costs what the file it compresses costs.
                base = name[: name.rindex(".")]
                price = self.price_of(base, base) if base.rpartition("/")[2] else None
            if price is not None:
                return price
        # Below a priced file: `/premium.php/x.css` runs `premium.php` on an origin that passes the
        # rest as PATH_INFO (Apache's AcceptPathInfo, PHP's cgi.fix_pathinfo, many frameworks), so
        # a path under a priced name with an extension costs what that name costs.
        segments = path.split("/")
        for end in range(len(segments) - 1, 1, -1):
            ancestor = "/".join(segments[:end])
            if "." in segments[end - 1].strip("."):
                price = self.match(ancestor)
                if price is not None:
                    return price
        return None

    def names_of(self, path: str, served: str, folders_known: bool = True) -> tuple[str, ...]:
        """Every name `price_of` prices a request for `path` (reading `served`) by: the path, the
        file served, the path without its trailing slash, the folder an index file stands for, the
        file a compressed copy compresses, the priced name a PATH_INFO path runs, and in
        reverse-proxy mode the folder `path/`. The caps and passes match a read over these
        (`SpendingTable`), so no alias of a file reaches a group other than the file's own
        (docs/security.md, "Caps and passes: the cap boundary and pass replay")."""
        names: dict[str, None] = {}
        # The PATH_INFO names, of the path only (as `price_of`): one pass over its segments. Popped
        # last: the path and the file served always come first, whatever the bound cuts.
        pending = []
        segments = path.split("/")
        prefix = len(segments[0])
        for end in range(2, len(segments)):
            prefix += 1 + len(segments[end - 1])
            if "." in segments[end - 1].strip("."):
                pending.append(path[:prefix])
        if not folders_known and not path.endswith("/"):
            pending.append(path + "/")
        pending += [served, path]
        while pending:  # each name's trailing slash, index file and compressed copy, a few steps each
            name = pending.pop()
            if name in names or len(names) >= 256:
                continue
            names[name] = None
            if len(name) > 1 and name.endswith("/"):
                pending.append(name.rstrip("/") or "/")
            head, _, last = name.rpartition("/")
            folded = last.casefold()
            if folded in INDEX_FILES:
                pending.append(head + "/")
            elif folded.endswith(COMPRESSED) and "." in folded:
                base = name[: name.rindex(".")]
                if base.rpartition("/")[2]:
                    pending.append(base)
        return tuple(names)

    def scripts_of(self, path: str, folders_known: bool = True) -> tuple[str, ...]:
        """The names a cap or a pass must cover, besides one of `names_of`, to give a read its
        discount (`SpendingTable`): the file a request names under another spelling (`/a.html` of
        `/a.html.gz` or `/a.html/`), and in reverse-proxy mode (`folders_known` False) the priced
        names with an extension above `path` (`/premium.php` of `/premium.php/a.html`), the script
        a PATH_INFO origin runs for it (a static source reads the file itself)."""
        found = []
        base = path
        while True:
            last = base.rpartition("/")[2]
            if len(base) > 1 and base.endswith("/") and "." in base.rstrip("/").rpartition("/")[2]:
                base = base.rstrip("/")
            elif last.casefold().endswith(COMPRESSED) and "." in last and base[: base.rindex(".")].rpartition("/")[2]:
                base = base[: base.rindex(".")]
            else:
                break
        if base != path:
            found.append(base)
        if folders_known:
            return tuple(found)
        segments = path.split("/")
        for end in range(len(segments) - 1, 1, -1):
            ancestor = "/".join(segments[:end])
            if "." in segments[end - 1].strip(".") and self.match(ancestor) is not None:
                found.append(ancestor)
        return tuple(found)

    def listed_free(self, path: str) -> bool:
        """Whether `path` is listed as an exact free path (as spelled or case-folded)."""
        return any(rules.exact_free(path if rules is self._as_spelled else fold_case(path))
                   for rules in (self._as_spelled, self._folded))  # fmt: skip


class SpendingTable:
    """Which cap group a priced read belongs to and which passes cover it (docs/protocol.md, "Caps
    and passes"). An entry matches a read when its tags all equal the matched price entry's and
    its pattern (if any) matches one of the read's names (its canonical path, the file it serves)
    both as spelled and case-folded: a discount never opens to another spelling of a path, while
    the price table charges every spelling (the module's docstring). A read belongs to the first
    cap that matches, and is covered by every pass that does."""

    def __init__(self, caps: list[Cap] | None = None, passes: list[Pass] | None = None) -> None:
        self.caps = list(caps or [])
        self.passes = list(passes or [])
        self._by_name = {p.name: p for p in self.passes}
        self._patterns: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {}
        patterns = [cap.pattern for cap in self.caps] + [p.pattern for p in self.passes]
        for pattern in patterns:
            if pattern is not None and pattern not in self._patterns:
                spelled = re.compile(fnmatch.translate(pattern), re.S)
                folded = re.compile(fnmatch.translate(fold_case(pattern)), re.S)
                self._patterns[pattern] = (spelled, folded)

    def __bool__(self) -> bool:
        return bool(self.caps or self.passes)

    def cap_of(self, names: tuple[str, ...], price: Price, scripts: tuple[str, ...] = ()) -> Cap | None:
        """The read's cap: the first cap it belongs to in any spelling (as spelled or case-folded)
        decides its group, and the read is capped only when it matches that cap in both. A spelling
        that only the folded pattern matches is uncapped (the list price), never passed on to a
        later cap it would not belong to as the file it reads (`/NEWS/a.html` of `/news/*` is not in
        a whole-site cap that is reached: docs/security.md, "Caps and passes: the cap boundary and
        pass replay"). `scripts`: the PATH_INFO scripts the read runs (`PriceTable.scripts_of`),
        which the cap must match as well."""
        for cap in self.caps:
            if self._matches(cap.pattern, cap.tags, names, price, loose=True):
                return cap if self._covers(cap.pattern, cap.tags, names, price, scripts) else None
        return None

    def passes_of(self, names: tuple[str, ...], price: Price, scripts: tuple[str, ...] = ()) -> tuple[Pass, ...]:
        """Every pass that covers the read: its names, and every script it runs (`cap_of`)."""
        return tuple(p for p in self.passes if self._covers(p.pattern, p.tags, names, price, scripts))

    def named(self, name: str) -> Pass | None:
        return self._by_name.get(name)

    def _covers(
        self, pattern: str | None, tags: Mapping[str, str], names: tuple[str, ...], price: Price, scripts: tuple[str, ...]
    ) -> bool:
        return self._matches(pattern, tags, names, price) and all(
            self._matches(pattern, tags, (script,), price) for script in scripts
        )

    def _matches(
        self, pattern: str | None, tags: Mapping[str, str], names: tuple[str, ...], price: Price, loose: bool = False
    ) -> bool:
        """Whether the entry matches a read: its tags all equal the price's, and its pattern matches
        a name both as spelled and case-folded (`loose`: either way)."""
        if any(price.tags.get(key) != value for key, value in tags.items()):
            return False
        if pattern is None:
            return True
        spelled, folded = self._patterns[pattern]
        if loose:
            return any(spelled.match(name) or folded.match(fold_case(name)) for name in names)
        return any(spelled.match(name) and folded.match(fold_case(name)) for name in names)


def fold_case(text: str) -> str:
    """Case-folded as every case-insensitive origin would agree: upper-cased first, so letters
    that only upper-case into ASCII (the dotless `ı` into `I`, as NTFS and .NET's invariant
    upper-casing do) fold with it (`/artıcles/a.html` costs what `/articles/a.html` costs)."""
    return text.upper().casefold()


INDEX_FILES = ("index.html", "index.htm")
COMPRESSED = (".gz", ".br", ".zst", ".zstd", ".bz2", ".xz", ".deflate", ".z")


class _Rules:
    def __init__(self, prices: list[Price], free: list[str], fold: bool) -> None:
        norm = fold_case if fold else (lambda text: text)
        self._exact: dict[str, Price | None] = {}
        self._free_patterns: list[re.Pattern[str]] = []
        self._patterns: list[tuple[re.Pattern[str], Price]] = []
        for path in free:
            if _is_pattern(path):
                self._free_patterns.append(re.compile(fnmatch.translate(norm(path)), re.S))
            else:
                self._exact.setdefault(norm(path), None)
        for price in prices:
            if _is_pattern(price.path):
                self._patterns.append((re.compile(fnmatch.translate(norm(price.path)), re.S), price))
            elif self._exact.get(norm(price.path)) is None:
                self._exact[norm(price.path)] = price  # folded: a priced spelling wins over a free one

    def exact_price(self, path: str) -> Price | None:
        return self._exact.get(path)

    @property
    def exact_names(self) -> KeysView[str]:
        return self._exact.keys()

    def exact_free(self, path: str) -> bool:
        return path in self._exact and self._exact[path] is None

    def match(self, path: str) -> Price | None:
        if path in self._exact:
            return self._exact[path]
        if any(pattern.match(path) for pattern in self._free_patterns):
            return None
        for pattern, price in self._patterns:
            if pattern.match(path):
                return price
        return None


def _is_pattern(path: str) -> bool:
    return any(ch in path for ch in "*?[")
