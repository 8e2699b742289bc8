"""`tracker import FILE`: posts from platforms without an API (Instagram, LinkedIn, Facebook).

CSV (header row, comma or semicolon separated, UTF-8 with or without BOM: what Excel writes) or
JSON Lines (one object a line). Columns:

| column | required | meaning |
|---|---|---|
| platform | yes | e.g. instagram, linkedin, facebook (lower-case letters, digits, - or _) |
| id | yes | the post's id or URL on that platform (unique per platform) |
| created_at | yes | ISO 8601, e.g. 2023-02-09T10:15:00+02:00; without an offset it is campaign local time |
| text | no | the post's text |
| url | no | link to the post |
| author | yes | the account's handle |
| author_name | no | display name |
| followers | no | the account's follower count |
| likes, shares, comments, quotes, views | no | whole numbers; empty = not known |
| language | no | e.g. fi, sv, en |
| kind | no | original (default), repost, reply or quote |
| hashtags | no | space or comma separated; if empty, #words in the text are used |

A bad row is reported by its line number and skipped; every good row is kept. Importing the same
file again updates the same posts (no duplicates).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tracker.errors import TrackerError
from tracker.posts import Author, Metrics, NormalisedPost, PostKind

COLUMNS = ("platform", "id", "created_at", "text", "url", "author", "author_name", "followers",
           "likes", "shares", "comments", "quotes", "views", "language", "kind", "hashtags")
REQUIRED = ("platform", "id", "created_at", "author")
_PLATFORM = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_HASHTAG = re.compile(r"(?<![\w&])#(\w+)")


class BadRow(ValueError):
    pass


@dataclass
class ImportReport:
    posts: list[NormalisedPost] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """'line N: problem' for every rejected row."""
    lines: int = 0


def _int(row: dict[str, Any], name: str) -> int | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise BadRow(f"{name}: expected a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "")
        if not re.fullmatch(r"\d+", text):
            raise BadRow(f"{name}: expected a whole number, got {value!r}")
        number = int(text)
    if number < 0:
        raise BadRow(f"{name}: must not be negative")
    return number


def _text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise BadRow(f"{name}: expected text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _created_at(value: str | None, tz: ZoneInfo) -> dt.datetime:
    if not value:
        raise BadRow("created_at: missing")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRow(f"created_at: '{value}' is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(dt.timezone.utc)


def row_to_post(row: dict[str, Any], tz: ZoneInfo, fetched_at: dt.datetime) -> NormalisedPost:
    """One import row to a normalised post; BadRow names the column and the problem."""
    unknown = [k for k in row if k not in COLUMNS and k is not None]
    if unknown:
        raise BadRow(f"unknown column(s) {', '.join(map(str, unknown))}")
    for name in REQUIRED:
        if _text(row, name) is None:
            raise BadRow(f"{name}: missing")
    platform = (_text(row, "platform") or "").lower()
    if not _PLATFORM.match(platform):
        raise BadRow(f"platform: '{platform}' is not a platform name")
    kind_text = (_text(row, "kind") or "original").lower()
    try:
        kind = PostKind(kind_text)
    except ValueError:
        raise BadRow(f"kind: '{kind_text}' is not one of original, repost, reply, quote") from None
    text = _text(row, "text") or ""
    tags_text = _text(row, "hashtags")
    hashtags = ([t.lstrip("#").lower() for t in re.split(r"[\s,;]+", tags_text) if t.strip("#")]
                if tags_text else [m.lower() for m in _HASHTAG.findall(text)])
    url = _text(row, "url")
    if url and not url.lower().startswith(("http://", "https://")):
        raise BadRow(f"url: '{url}' is not an http(s) link")
    handle = _text(row, "author") or ""
    return NormalisedPost(
        platform=platform,
        platform_id=_text(row, "id") or "",
        author=Author(platform_id=handle.lower(), handle=handle, display_name=_text(row, "author_name"),
                      followers=_int(row, "followers")),
        text=text,
        created_at=_created_at(_text(row, "created_at"), tz),
        fetched_at=fetched_at,
        url=url,
        language=_text(row, "language"),
        hashtags=tuple(dict.fromkeys(hashtags)),
        kind=kind,
        metrics=Metrics(likes=_int(row, "likes"), reposts=_int(row, "shares"), replies=_int(row, "comments"),
                        quotes=_int(row, "quotes"), views=_int(row, "views")),
    )


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    if reader.fieldnames is None:
        return
    reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames]
    for row in reader:
        extra = row.pop(None, None)  # type: ignore[call-overload]
        if extra:
            row["__extra__"] = extra
        yield reader.line_num, row


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        yield number, value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise TrackerError(f"{path}: cannot tell the format from the name; give --format csv or jsonl")


def read_import_file(path: Path, tz: ZoneInfo, fmt: str | None = None,
                     fetched_at: dt.datetime | None = None) -> ImportReport:
    """Parse a whole file; good rows become posts, bad rows become 'line N: ...' errors."""
    fetched_at = fetched_at or dt.datetime.now(dt.timezone.utc)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TrackerError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise TrackerError(f"{path}: not UTF-8 text (save it as 'CSV UTF-8' in Excel)") from None
    report = ImportReport()
    rows: Iterable[tuple[int, Any]] = _csv_rows(text) if detect_format(path, fmt) == "csv" else _jsonl_rows(text)
    for number, row in rows:
        report.lines += 1
        if isinstance(row, str):
            report.errors.append(f"line {number}: {row}")
            continue
        if "__extra__" in row:
            report.errors.append(f"line {number}: more values than columns")
            continue
        try:
            report.posts.append(row_to_post(row, tz, fetched_at))
        except (BadRow, ValueError) as exc:
            report.errors.append(f"line {number}: {exc}")
    return report
