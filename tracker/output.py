"""Everything the CLI prints goes through here: rows as a rich table, JSON or CSV, and lines.

Text from platforms, imports and settings is untrusted: printed as it is, `[/bold]` would be
read as Rich markup (a crash, or text that vanishes) and escape sequences would reach the
terminal (a title change, a cleared screen, lines that overwrite others). So tables are built
from `rich.text.Text` (never parsed as markup), and every cell, title and line is passed
through `safe`, which shows control characters and bidirectional overrides as visible escapes.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "csv")
BROKEN_PIPE_EXIT = 141
"""Exit code when the reader of our output went away (`| head`): 128 + SIGPIPE, as a shell
reports for any command stopped by a closed pipe."""

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""Arabic letter mark, LRM/RLM, embeddings and overrides, isolates: they reorder what follows."""
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_WITH_NEWLINES = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}]")  # json.dumps already escapes C0


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object, *, newlines: bool = False) -> str:
    """`text` made harmless for a terminal: C0/C1 control characters (ESC, CSI, BEL, CR, ...)
    and bidirectional overrides become visible escapes such as `\\x1b`; tabs become spaces.
    Newlines are kept only with `newlines=True` (multi-line output); otherwise escaped."""
    value = str(text).replace("\t", " ")
    return (_UNSAFE if newlines else _UNSAFE_WITH_NEWLINES).sub(_visible, value)


def echo(message: object = "", *, err: bool = False, nl: bool = True, multiline: bool = False) -> None:
    """click.echo of a line that may hold untrusted text (see `safe`)."""
    click.echo(safe(message, newlines=multiline), err=err, nl=nl)


def _cell(value: Any) -> Text:
    if value is None:
        return Text("–")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, float):
        return Text(f"{value:,.2f}")
    if isinstance(value, int):
        return Text(f"{value:,}".replace(",", "\u202f"))
    return Text(safe(value))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(data: Any) -> str:
    """JSON as readable text, with C1 controls and bidi overrides written as \\u escapes too
    (json.dumps escapes C0 already): the same data for any JSON reader, harmless on a terminal."""
    return _JSON_UNSAFE.sub(_json_escape, json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _is_terminal(out: TextIO) -> bool:
    return bool(getattr(out, "isatty", lambda: False)())


def emit(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: str = "table",
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Print rows. `columns` are (key, heading); JSON and CSV use the keys and full values
    (CSV cells are escaped only when written to a terminal: files keep the data as it is)."""
    out = out or sys.stdout
    if fmt == "json":
        _write_lines(out, json_text([dict(r) for r in rows]) + "\n")
        return
    if fmt == "csv":
        clean = safe if _is_terminal(out) else str
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            values = (row.get(key) for key, _ in columns)
            writer.writerow(["" if v is None else clean(v) if isinstance(v, str) else v for v in values])
        return
    table = Table(title=Text(safe(title)) if title is not None else None, show_lines=False, header_style="bold")
    for key, heading in columns:
        table.add_column(Text(safe(heading)), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    if _is_terminal(out):
        Console(file=out, soft_wrap=False).print(table)
        return
    rendered = io.StringIO()  # pipes: don't fold at 80; written line by line, as a pipe reads it
    Console(file=rendered, width=240, soft_wrap=False).print(table)
    _write_lines(out, rendered.getvalue())


def _write_lines(out: TextIO, text: str) -> None:
    """Write line by line, so a reader that stops early (`| head`) is noticed while writing."""
    for line in text.splitlines(keepends=True):
        out.write(line)


class SafeStream:
    """For code that writes to a stream itself (`tracker tag-file`): each write made safe as
    `safe` does, newlines kept. With `json=True` the text is JSON and stays valid: only C1
    controls and bidi overrides can appear raw in it, and they are written as \\u escapes."""

    def __init__(self, stream: TextIO, *, json: bool = False) -> None:
        self.stream = stream
        self.json = json

    def write(self, text: str) -> int:
        if self.json:
            self.stream.write(_JSON_UNSAFE.sub(_json_escape, text))
        else:
            self.stream.write(safe(text, newlines=True))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def reader_gone() -> None:
    """Our stdout's reader went away (`tracker ... | head`): point stdout at /dev/null so the
    interpreter's final flush does not fail again, and exit quietly with BROKEN_PIPE_EXIT."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (tests): nothing to redirect
        pass
    sys.exit(BROKEN_PIPE_EXIT)


def is_broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)
