"""Rows out to the terminal or a pipe: a rich table, JSON or CSV. One place for all commands."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    return str(value)


def emit(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: str = "table",
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Print rows. `columns` are (key, heading); JSON and CSV use the keys and full values."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump([dict(r) for r in rows], out, ensure_ascii=False, indent=2, default=str)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row.get(k) for k, _ in columns])
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for key, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    wide = None if getattr(out, "isatty", lambda: False)() else 240  # pipes: don't fold at 80
    Console(file=out, width=wide, soft_wrap=False).print(table)
