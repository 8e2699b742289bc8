"""Posts and the per-visit summary as CSV or Excel, for people who continue in a spreadsheet.

- xlsx: one file with two sheets, `posts` and `summary`.
- csv: `out` is a folder (created if missing) that receives `posts.csv` and `summary.csv`,
  UTF-8 with a byte-order mark so Excel shows ä and ö correctly, comma separated.

Post text, names and handles come from the public, so every text cell that a spreadsheet could
read as a formula (starting with = + - @, or a tab or carriage return) gets a leading apostrophe.
Posts are streamed from the database in chunks; memory stays flat however many posts there are.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from storage import summary_queries as q
from storage.db import Database
from tracker.errors import TrackerError
from tracker.settings import Settings
from tracker.summary import (
    AGES,
    NUMERIC,
    Period,
    derived_figures,
    post_filter,
    engagement_at_ages,
    safe_url,
    summarise,
    visit_rows,
)

Format = Literal["csv", "xlsx"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL = 32_767

POST_COLUMNS = (
    "post_id", "platform", "platform_id", "url", "created_at_utc", "local_date", "kind", "language",
    "author_handle", "author_name", "author_followers", "text", "areas", "stop", "stop_area",
    "attributed_stop", "method", "confidence", "likes", "shares", "reply_count", "quote_count",
    "impressions", "engagement", "metrics_at_utc",
)
SUMMARY_COLUMNS = (
    "stop", "area", "area_name", "date", "platform", *NUMERIC, "engagement_per_post", "share_posts",
    "share_engagement", "rank", *(f"{k}_{age}" for age in AGES for k in ("engagement", "posts_covered")),
)


class ExportError(TrackerError):
    """The export cannot be written as asked (too many rows for Excel, unwritable path)."""

    exit_code = 1


def safe_cell(value: Any) -> Any:
    """Neutralise text a spreadsheet would run as a formula; other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _excel_cell(value: Any) -> Any:
    value = safe_cell(value)
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)[:EXCEL_MAX_CELL]
    elif isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)  # Excel has no time zones
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return safe_cell(value)


# -- rows ---------------------------------------------------------------------------------------


def _none(value: Any) -> Any:
    """pandas' NaN/NaT/NA -> None; numpy scalars -> Python."""
    if value is None:
        return None
    try:
        if value != value:  # NaN, NaT
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def post_rows(db: Database, settings: Settings, platform: str | None = None,
              period: Period | None = None) -> Iterator[dict[str, Any]]:
    """Every live post with author, tags and latest metrics, oldest first (streamed)."""
    f = post_filter(settings, platform, period)
    areas = {s.id: s.area for s in settings.tour.stops}
    with db.engine.connect() as conn:
        for chunk in q.export_posts(conn, f):
            for rec in chunk.to_dict("records"):
                rec = {k: _none(v) for k, v in rec.items()}
                tags = sorted(set((rec.pop("areas") or "").split(";")) - {""})
                yield {
                    "post_id": int(rec["post_id"]), "platform": rec["platform"],
                    "platform_id": rec["platform_id"], "url": safe_url(rec["url"]),
                    "created_at_utc": rec["created_at"], "local_date": rec["local_date"],
                    "kind": rec["kind"], "language": rec["language"],
                    "author_handle": rec["author_handle"], "author_name": rec["author_name"],
                    "author_followers": _int(rec["author_followers"]), "text": rec["text"],
                    "areas": ";".join(tags), "stop": rec["stop"], "stop_area": areas.get(rec["stop"]),
                    "attributed_stop": rec["attributed_stop"], "method": rec["method"],
                    "confidence": rec["confidence"],
                    **{k: _int(rec[k]) for k in ("likes", "shares", "reply_count", "quote_count",
                                                 "impressions", "engagement")},
                    "metrics_at_utc": rec["metrics_at"],
                }


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def summary_rows(db: Database, settings: Settings, platform: str | None = None, period: Period | None = None,
                 now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per visit: an `all` platforms row then one per platform; then no visit and the total."""
    summary = summarise(db, settings, platform, period)
    ages = engagement_at_ages(db, settings, platform=platform, period=period, now=now)
    flat = {r["stop"]: r for r in visit_rows(summary, settings, ages)}
    language = settings.campaign.language
    rows: list[dict[str, Any]] = []
    for visit in summary.visits:
        rows.append({**flat[visit["stop"]], "platform": "all"})
        for name, fig in visit["by_platform"].items():
            rows.append({"stop": visit["stop"], "area": visit["area"], "area_name": flat[visit["stop"]]["area_name"],
                         "date": visit["date"], "platform": name, **fig, **derived_figures(fig, summary.totals)})
    no_visit = {"no_visit": {"fi": "ei vierailua", "sv": "inget besök", "en": "no visit"},
                "total": {"fi": "yhteensä", "sv": "totalt", "en": "total"}}
    for key, fig in (("no_visit", summary.no_visit), ("total", summary.totals)):
        rows.append({"stop": key, "area": None, "area_name": no_visit[key].get(language, key), "date": None,
                     "platform": "all", **{k: fig[k] for k in NUMERIC}, **derived_figures(fig, summary.totals)})
    return rows


# -- writers ------------------------------------------------------------------------------------


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
            count += 1
    return count


def _write_xlsx(path: Path, sheets: Sequence[tuple[str, Sequence[str], Iterable[Mapping[str, Any]]]]) -> None:
    book = Workbook(write_only=True)
    for title, columns, rows in sheets:
        sheet = book.create_sheet(title)
        sheet.append(list(columns))
        for row in rows:
            sheet.append([_excel_cell(row.get(c)) for c in columns])
    book.save(path)


def export(db: Database, settings: Settings, out: str | Path, fmt: Format = "xlsx",
           platform: str | None = None, period: Period | None = None,
           now: dt.datetime | None = None, pseudonymise: bool = False) -> list[Path]:
    """Write the export; returns the files written. See the module docstring for the layout.

    `pseudonymise`: authors become `hmac-sha256(TRACKER_PSEUDONYM_KEY, platform:author_id)` and
    post ids (`platform_id`: a Mastodon URI names the user, a Bluesky AT-URI the DID) likewise
    (truncated, stable across exports); author names and post URLs are left out; in texts,
    @mentions of stored authors and DIDs become pseudonyms and links to profiles or posts
    "[link]" (tracker.privacy.Pseudonymiser). `post_id` is the database's own row number.
    """
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"unknown export format {fmt!r} (csv or xlsx)")
    pseudonymiser = None
    if pseudonymise:
        from tracker.privacy import Pseudonymiser

        pseudonymiser = Pseudonymiser.from_database(db, settings)  # no key: an error before any file
    target = Path(out)
    if fmt == "xlsx":
        with db.engine.connect() as conn:
            count = q.count_posts(conn, post_filter(settings, platform, period))
        if count > EXCEL_MAX_ROWS - 1:
            raise ExportError(f"{count:,} posts do not fit in one Excel sheet (at most {EXCEL_MAX_ROWS - 1:,}): "
                              "export with --format csv instead")
    summary = summary_rows(db, settings, platform, period, now)
    posts = post_rows(db, settings, platform, period)
    rows: Iterable[Mapping[str, Any]] = posts if pseudonymiser is None else map(pseudonymiser.row, posts)
    try:
        if fmt == "xlsx":
            if target.suffix.lower() != ".xlsx":
                target = target.with_name(target.name + ".xlsx")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            try:
                _write_xlsx(partial, [("posts", POST_COLUMNS, rows), ("summary", SUMMARY_COLUMNS, summary)])
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
            return [target]
        else:
            target.mkdir(parents=True, exist_ok=True)
            written = [target / "posts.csv", target / "summary.csv"]
            _write_csv(written[0], POST_COLUMNS, rows)
            _write_csv(written[1], SUMMARY_COLUMNS, summary)
            return written
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        posts.close()  # releases the database connection if writing stopped half-way
