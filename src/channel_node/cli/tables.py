"""Terminal tables that fit the terminal and never cut an amount (docs/amounts.md).

Columns are of three kinds: kept ones (amounts, statuses, symbols) are exactly as wide as their
longest cell and never wrap or shrink; folded ones (channel ids a command takes back, paths) share
what is left of the width and fold onto further lines, every character still shown; shortened
ones (ids in a long list, where `--json` has them whole) share it too and lose their middle to an
ellipsis (`0x1a2b…9f0e`). When the kept columns alone do not fit, each row is shown as a small
table of its own (field, value) instead, so an amount is never cut, whatever the width (80
columns is what the tests render).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

KEEP, FOLD, SHORTEN = "keep", "fold", "shorten"
_MIN_FOLD = 12  # narrower than this, a folded column is more line breaks than text: one table per row
_MIN_SHORT = 13  # 0x1234…abcd: less is no help in telling ids apart


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle replaced by an ellipsis when it is longer."""
    if len(text) <= width:
        return text
    head = (width - 1 + 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def fitted_table(
    title: str | None,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[str]],
    width: int,
    right: Sequence[str] = (),
) -> RenderableType:
    """A table of `rows` under `columns` ((name, KEEP, FOLD or SHORTEN), ...) that fits `width`
    characters; `right` names the columns aligned to the right (figures)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table

    natural = [max([len(name)] + [len(row[i]) for row in rows]) for i, (name, _) in enumerate(columns)]
    frame = 2 * (len(columns) - 1)  # the style below: a space of padding and a space of rule between columns
    least = {KEEP: 0, FOLD: _MIN_FOLD, SHORTEN: _MIN_SHORT}
    flexible = [i for i, (_, kind) in enumerate(columns) if kind != KEEP]
    widths = list(natural)
    room = width - frame - sum(w for w, (_, kind) in zip(natural, columns, strict=True) if kind == KEEP)
    if sum(natural[i] for i in flexible) > room:
        # Each flexible column gets its least (or all it needs, when less), then the rest of the room
        # in proportion to what each still wants.
        for i in flexible:
            widths[i] = min(natural[i], max(least[columns[i][1]], len(columns[i][0])))
        spare, wanted = room - sum(widths[i] for i in flexible), sum(natural[i] - widths[i] for i in flexible)
        if spare > 0 and wanted > 0:
            for i in flexible:
                widths[i] += spare * (natural[i] - widths[i]) // wanted
    if sum(widths) + frame > width:
        return Group(*(record_table(None if n else title, dict(zip([c for c, _ in columns], row, strict=True)))
                       for n, row in enumerate(rows)))  # fmt: skip
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for (name, kind), column_width in zip(columns, widths, strict=True):
        table.add_column(
            name, width=column_width, no_wrap=kind == KEEP, overflow="fold",
            justify="right" if name in right else "left",
        )  # fmt: skip
    for row in rows:
        table.add_row(*(shorten(cell, widths[i]) if columns[i][1] == SHORTEN else cell for i, cell in enumerate(row)))
    return table


def record_table(title: str | None, fields: Mapping[str, str]) -> RenderableType:
    """One record as a two-column table (field, value): values fold, so nothing is cut."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        table.add_row(key, value)
    return table


def print_table(console: Console, renderable: RenderableType) -> None:
    """Prints without rich's own soft wrapping or cropping: the widths were chosen to fit."""
    console.print(renderable, crop=False)


__all__ = ["FOLD", "KEEP", "SHORTEN", "fitted_table", "print_table", "record_table", "shorten"]
