"""`tracker import FILE`: posts from platforms without an API (Instagram, LinkedIn, Facebook).

CSV (header row, comma, semicolon or tab separated, UTF-8 with or without BOM: what Excel
writes) or JSON Lines (one object a line). The columns and the checks on each value are in
`tracker.import_rows`; README "Importing posts from other platforms" is the user's guide.

One bad row never stops an import: every row is read on its own and a row that cannot be
imported is reported as `line N: column: problem` and skipped. N is the row's number as a
spreadsheet shows it (the header is line 1); where a quoted cell spans several lines of the
file, the file's lines are added. Problems of the file itself (not UTF-8, a header with unknown,
missing or repeated columns, a JSON array instead of JSON Lines) refuse the file with exit code 2.
Messages never repeat a cell's value: the file holds other people's handles and texts.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from storage.db import Database
from storage.upserts import StoreResult
from tracker.errors import TrackerError
from tracker.hashtags import campaign_tags, carries_campaign_tag
from tracker.import_rows import COLUMNS, REQUIRED, BadRow, column_label, row_to_post
from tracker.posts import NormalisedPost

__all__ = ["COLUMNS", "BadRow", "ImportFileError", "ImportReport", "StoreOutcome", "detect_format",
           "read_import_file", "row_to_post", "store_import"]


class ImportFileError(TrackerError):
    """The file as a whole cannot be imported (nothing was stored)."""

    exit_code = 2


@dataclass
class ImportReport:
    posts: list[NormalisedPost] = field(default_factory=list)
    post_lines: list[int] = field(default_factory=list)
    """The line of each post in `posts` (same order)."""
    errors: list[str] = field(default_factory=list)
    """'line N: problem' for every rejected row, in file order."""
    rejected_lines: list[int] = field(default_factory=list)
    lines: int = 0
    """Rows read after the header (blank ones included)."""
    blank: int = 0
    without_campaign_tag: list[int] = field(default_factory=list)
    """Lines of good rows that carry none of the campaign's hashtags (still imported)."""

    def reject(self, line: int, problem: str, where: str = "") -> None:
        self.errors.append(f"line {line}{where}: {problem}")
        self.rejected_lines.append(line)


# -- reading ------------------------------------------------------------------------------------


def _decode(path: Path) -> str:
    """The file's text. Bytes that are not UTF-8 become lone surrogates, so the rows holding them
    are rejected one by one; a file whose first line is not UTF-8 text is refused whole."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    first_line = data.split(b"\n", 1)[0]
    try:
        first_line.decode("utf-8")
        ok = b"\x00" not in first_line
    except UnicodeDecodeError:
        ok = False
    if not ok:
        raise ImportFileError(f"{path}: not UTF-8 text (save it as 'CSV UTF-8' in Excel, or as UTF-8 elsewhere)")
    return data.decode("utf-8", errors="surrogateescape")


def _delimiter(header_line: str) -> str:
    """The separator the header uses (Excel writes ';' in Finnish settings, ',' in English)."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_problem(exc: csv.Error) -> str:
    message = str(exc)
    if "field larger than field limit" in message:
        return f"a cell is longer than {csv.field_size_limit()} characters"
    if "new-line character seen in unquoted field" in message:
        return 'a line break (CR) inside a cell that is not in double quotes'
    return f"cannot be read as CSV ({message})" if message.isascii() and len(message) < 80 else "cannot be read as CSV"


def _csv_records(text: str) -> Iterator[tuple[int, str, list[str] | str]]:
    """(spreadsheet line, where in the file if different, cells or a problem) per record."""
    if "\r" in text and "\n" not in text:  # lines ended by CR alone: "CSV (Macintosh)" of old Excel
        text = text.replace("\r", "\n")
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(text.split("\n", 1)[0]))
    number = 0
    while True:
        start = reader.line_num + 1
        try:
            cells: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells = _csv_problem(exc)
        number += 1
        end = reader.line_num
        where = "" if start == end == number else (
            f" (file line {start})" if start == end else f" (file lines {start}-{end})")
        yield number, where, cells


def _read_csv(text: str, path: Path, report: ImportReport, accept: Callable[[int, str, dict[str, Any]], None]) -> None:
    records = _csv_records(text)
    first = next(records, None)
    if first is None or isinstance(first[2], str) or not any(c.strip() for c in first[2]):
        raise ImportFileError(f"{path}: no header row (the first line names the columns: {', '.join(COLUMNS)})")
    header = [c.strip().lower() for c in first[2]]
    _check_header(header, path)
    for number, where, cells in records:
        report.lines += 1
        if isinstance(cells, str):
            report.reject(number, cells, where)
            continue
        if not any(c.strip() for c in cells):
            report.blank += 1
            continue
        if any(c.strip() for c in cells[len(header):]):
            report.reject(number, f"more values than the header has columns ({len(header)})", where)
            continue
        unnamed = [i for i, (name, cell) in enumerate(zip(header, cells), start=1) if not name and cell.strip()]
        if unnamed:
            report.reject(number, f"a value in column {unnamed[0]}, which has no name in the header", where)
            continue
        row = {name: cell for name, cell in zip(header, cells) if name}
        accept(number, where, row)


def _check_header(header: list[str], path: Path) -> None:
    named = [h for h in header if h]
    repeated = sorted({h for h in named if named.count(h) > 1})
    unknown = [h for h in named if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in named]
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {', '.join(column_label(h) for h in unknown)}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(column_label(h) for h in repeated)}")
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if problems:
        raise ImportFileError(f"{path}: line 1 (the header): {'; '.join(problems)}. "
                              f"The columns are {', '.join(COLUMNS)} (README: Importing posts); nothing imported")


def _read_jsonl(text: str, path: Path, report: ImportReport, accept: Callable[[int, str, dict[str, Any]], None]) -> None:
    first = text.lstrip()[:1]
    if first == "[":
        raise ImportFileError(f"{path}: a JSON array; write one object a line (JSON Lines), "
                              "e.g. jq -c '.[]' posts.json > posts.jsonl; nothing imported")
    lines = text.split("\n")  # not splitlines(): U+2028 and friends may stand inside a JSON string
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            report.lines += 1
            report.blank += 1
            continue
        report.lines += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            report.reject(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            report.reject(number, "invalid JSON: nested too deeply")
            continue
        except ValueError:  # e.g. a number with more digits than Python converts
            report.reject(number, "invalid JSON: a number too long to read")
            continue
        if not isinstance(value, dict):
            kind = "a list" if isinstance(value, list) else "a single value"
            report.reject(number, f"expected a JSON object ({{...}}), got {kind}")
            continue
        accept(number, "", value)


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".xlsx", ".xls", ".ods", ".numbers"):
        raise ImportFileError(f"{path}: a spreadsheet workbook; save it as 'CSV UTF-8' and import that file")
    raise ImportFileError(f"{path}: cannot tell the format from the name; give --format csv or jsonl")


def read_import_file(path: Path, tz: ZoneInfo, fmt: str | None = None, fetched_at: dt.datetime | None = None,
                     campaign_hashtags: Sequence[str] = ()) -> ImportReport:
    """Parse a whole file; good rows become posts, bad rows become 'line N: ...' errors.

    With `campaign_hashtags`, good rows that carry none of them are listed in
    `without_campaign_tag` (and still imported: the team picks import rows by hand).
    """
    fetched_at = fetched_at or dt.datetime.now(dt.timezone.utc)
    fmt = detect_format(path, fmt)
    text = _decode(path)
    campaign = campaign_tags(campaign_hashtags)
    report = ImportReport()

    def accept(number: int, where: str, row: dict[str, Any]) -> None:
        try:
            post = row_to_post(row, tz, fetched_at)
        except BadRow as exc:
            report.reject(number, str(exc), where)
            return
        report.posts.append(post)
        report.post_lines.append(number)
        if campaign and not carries_campaign_tag(post.hashtags, campaign):
            report.without_campaign_tag.append(number)

    (_read_csv if fmt == "csv" else _read_jsonl)(text, path, report, accept)
    return report


# -- storing ------------------------------------------------------------------------------------


@dataclass
class StoreOutcome:
    new: int = 0
    updated: int = 0
    stored: set[tuple[str, str]] = field(default_factory=set)
    """(platform, platform_id) of every post stored (rows of forgotten accounts are not)."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(line, why) for rows the database (or the checks before it) would not take."""
    batch_refused: bool = False
    """--strict only: some post was refused, so none was stored."""

    def count(self, posts: Sequence[NormalisedPost]) -> tuple[int, int]:
        """(rows stored, rows neither stored nor refused: their accounts asked to be forgotten)."""
        refused = {line for line, _ in self.refused}
        stored = sum(1 for p in posts if (p.platform, p.platform_id) in self.stored)
        return stored, max(0, len(posts) - stored - len(refused))


Ingest = Callable[[Any, Sequence[NormalisedPost]], StoreResult]
"""`tracker.pipeline.ingest` with the tagger and privacy bound: (session, posts) -> StoreResult."""


class _Rollback(Exception):
    pass


def _lines_refused(result: StoreResult, lines_of: dict[tuple[str, str], list[int]]) -> list[tuple[int, str]]:
    """The posts `ingest` reports it skipped ((platform, id, why) in `result.refused`), by line."""
    refused = [(line, why) for platform, platform_id, why in result.refused
               for line in lines_of.get((platform, platform_id), ())]
    return sorted(refused)


def store_import(db: Database, posts: Sequence[NormalisedPost], lines: Sequence[int], ingest: Ingest,
                 *, keep: bool = True) -> StoreOutcome:
    """Store the posts in one transaction; a post the database refuses is named by its line.

    The checks in import_rows keep such values out; this is the net behind them: `ingest` skips
    a post the database refuses (storage.upserts.store_posts) and lists it in `result.refused`
    with the kind of error only. `keep=False` (--strict): on any refusal nothing is stored.
    Errors of the database itself (unreachable, locked) are raised: they stop the import.
    """
    outcome = StoreOutcome()
    if not posts:
        return outcome
    lines_of: dict[tuple[str, str], list[int]] = {}
    for post, line in zip(posts, lines):
        lines_of.setdefault((post.platform, post.platform_id), []).append(line)
    try:
        with db.write() as session:
            result = ingest(session, posts)
            outcome.refused = _lines_refused(result, lines_of)
            if outcome.refused and not keep:
                raise _Rollback
    except _Rollback:
        outcome.batch_refused = True
        return outcome
    outcome.new, outcome.updated, outcome.stored = result.new, result.updated, set(result.ids)
    return outcome
