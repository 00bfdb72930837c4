"""What the commands print: rich tables and progress for people (progress on stderr),
one JSON document (or one per line, for streams) on stdout for scripts (``--json``)."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from crucible_cli.client import clean

# Piped, tables are not squeezed into 80 columns (unless COLUMNS says so).
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
out = Console(highlight=False, soft_wrap=True, width=_PIPED_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Output:
    """The output mode of one command: ``json`` for scripts, else for people."""

    def __init__(self, as_json: bool = False) -> None:
        self.json = as_json

    def emit(self, value: Any) -> None:
        """A JSON document on one line of stdout."""
        # escaped for a terminal (no control character of the API's reaches it raw)
        text = json.dumps(value, default=str, ensure_ascii=sys.stdout.isatty())
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def say(self, *parts: object, style: str | None = None) -> None:
        """A line for people (nothing in JSON mode); API text is printed as text, never
        as markup."""
        if not self.json:
            out.print(Text(" ".join(clean(p) for p in parts), style=style or ""))

    def note(self, *parts: object, style: str | None = "dim") -> None:
        """A line for people on stderr (in JSON mode too: stdout stays the document)."""
        err.print(Text(" ".join(clean(p) for p in parts), style=style or ""))

    def table(self, title: str | None, columns: list[str], rows: list[list[object]]) -> None:
        # API text is never rich markup: a title is plain text, as every cell is
        t = Table(
            title=None if title is None else Text(clean(title)),
            title_justify="left",
            header_style="bold",
        )
        for c in columns:
            t.add_column(c, overflow="fold")
        for row in rows:
            t.add_row(*(cell(v) for v in row))
        out.print(t)

    def pairs(self, rows: list[tuple[str, object]]) -> None:
        """Names and values, one a line."""
        t = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        for name, value in rows:
            t.add_row(Text(name), cell(value))
        out.print(t)

    def progress(self, *, transfer: bool) -> Progress:
        """Bars on stderr, one task per file or job; none in JSON mode."""
        columns = [
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
        ]
        if transfer:
            columns += [DownloadColumn(), TransferSpeedColumn()]
        columns += [TimeRemainingColumn(), TextColumn("{task.fields[note]}", markup=False)]
        return Progress(*columns, console=err, disable=self.json, transient=False)


def cell(value: object) -> Text:
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, Text):
        return value
    if isinstance(value, float):
        return Text(f"{value:.4g}")
    if isinstance(value, datetime):
        return Text(value.strftime("%Y-%m-%d %H:%M:%S"))
    return Text(clean(value))


def when(iso: str | None) -> str | None:
    """An API timestamp, to the second, for tables."""
    if not iso:
        return None
    return clean(iso).replace("T", " ")[:19]


def size(n: int | float | None) -> str | None:
    if n is None:
        return None
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return None


STATUS_STYLE = {
    "completed": "green",
    "ready": "green",
    "failed": "red",
    "stopped": "yellow",
    "cancelled": "yellow",
    "stopping": "yellow",
}


def status(value: str | None) -> Text:
    v = clean(value or "-")
    return Text(v, style=STATUS_STYLE.get(v, "cyan"))
