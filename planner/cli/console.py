"""The console a verb prints its tables to: the terminal's width, or a wide page when piped.

Why: rich falls back to 80 columns when stdout is not a terminal, which folds wide tables (a plan's
configuration names, the catalog's GPU sheet) into unreadable columns in a log file; a terminal (or an
explicit ``COLUMNS``) gets its own width, and the tables are laid out to stay readable at 80.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 160
"""Width of output that goes to a pipe or file with no ``COLUMNS`` set."""


def table_console(*, stderr: bool = False) -> Console:
    """A console at the terminal's width (``COLUMNS`` wins), else :data:`PIPE_WIDTH`."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH)


@dataclass(frozen=True)
class Col:
    """A column of a :func:`fitted_table`.

    Attributes:
        name: header.
        left: left-justified (names); numbers are right-justified.
        keep: the higher, the longer it stays when the terminal is narrow (0: first to go).
        wrap: may wrap at spaces (long names); other columns never wrap or truncate.
    """

    name: str
    left: bool = False
    keep: int = 0
    wrap: bool = False


def fitted_table(console: Console, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> Table:
    """A table that fits ``console``: when even its narrowest layout is too wide, the columns with the
    lowest ``keep`` are left out (last first among equals) and named in the caption, so no cell is ever
    cut to an ellipsis."""
    def need(i: int) -> int:
        cells = [cols[i].name, *(str(r[i]) for r in rows)]
        if cols[i].wrap:  # wraps at spaces and line breaks: its longest word
            return max(len(w) for c in cells for w in c.replace("\n", " ").split(" "))
        return max(len(line) for c in cells for line in c.split("\n"))

    shown = list(range(len(cols)))
    while True:
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for i in shown:
            c = cols[i]
            table.add_column(c.name, justify="left" if c.left else "right", no_wrap=not c.wrap,
                             overflow="fold")
        for row in rows:
            table.add_row(*(row[i] for i in shown))
        # cells plus two spaces between columns (collapsed padding) and a margin at each edge
        if sum(need(i) for i in shown) + 2 * (len(shown) - 1) + 2 <= console.width or len(shown) <= 2:
            break
        shown.remove(min(shown, key=lambda i: (cols[i].keep, -i)))
    hidden = [c.name for i, c in enumerate(cols) if i not in shown]
    if hidden:
        table.caption = f"left out at {console.width} columns: {', '.join(hidden)} (--json has every field)"
    return table
