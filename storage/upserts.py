"""Bulk, idempotent writes: storing the same posts twice changes nothing but `last seen`.

Batches are de-duplicated before insert (PostgreSQL refuses to touch one key twice in a single
INSERT .. ON CONFLICT) and chunked under each database's bound-parameter limit. Metrics on the
post row follow the newest snapshot: an older fetch arriving late never overwrites a newer one.
An author's follower count goes into `author_followers` when it differs from the count in effect
at that moment (the latest earlier observation): the history keeps every change, not every repeat.

How it stays close to what the database itself costs (tests/benchmarks/bench_ingest.py measures
it against plain driver INSERTs / COPY of the same rows):
- Statements are SQL text written once per dialect and run through the session's connection
  (`exec_driver_sql`); rows are plain tuples built once per post, timestamps converted here (the
  same checks and the same stored form as `UTCDateTime`), no per-value type processors.
- SQLite: multi-row VALUES (up to 1 000 rows a statement, under the parameter limit).
  PostgreSQL: one binary array per column (`INSERT .. SELECT .. FROM unnest(..)`): one round trip
  and one short statement text whatever the batch size, prepared once by the driver.
- An upsert that would leave a row exactly as it is writes nothing (`DO UPDATE .. WHERE` a value
  differs; on PostgreSQL such rows are also left out before the insert, as its DO UPDATE locks
  (writes) a row even when the WHERE then says no). Seeing the same posts again costs lookups.
- Ids come back from RETURNING (rows inserted or changed); rows left alone are looked up by key,
  one indexed lookup per platform and batch.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from storage.models import Author, AuthorFollowers, MetricSnapshot, Post, PostSource
from tracker.posts import NormalisedPost

_SQLITE_MAX_PARAMS = 32_000 if sqlite3.sqlite_version_info >= (3, 32) else 999
_PG_MAX_PARAMS = 65_000
MAX_ROWS_PER_STATEMENT = 1_000
_UTC = dt.timezone.utc


@dataclass(slots=True)
class StoreResult:
    received: int = 0
    """Posts handed in (before de-duplication)."""
    new: int = 0
    updated: int = 0
    """Already known posts seen again (metrics/text refreshed where newer)."""
    ids: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    """(platform, platform_id) -> posts.id of every stored post."""

    def __iadd__(self, other: StoreResult) -> StoreResult:
        self.received += other.received
        self.new += other.new
        self.updated += other.updated
        self.ids.update(other.ids)
        return self


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert_for(dialect: str, table: Table) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"upserts are not implemented for {dialect}")


def _insert(session: Session, table: Table) -> Any:
    """A dialect-specific INSERT (with ON CONFLICT support) for this session's database."""
    return _insert_for(_dialect(session), table)


def chunk_size(session: Session, columns: int) -> int:
    """Rows per statement that stay under the database's bound-parameter limit."""
    limit = _SQLITE_MAX_PARAMS if session.get_bind().dialect.name == "sqlite" else _PG_MAX_PARAMS
    return max(1, min(MAX_ROWS_PER_STATEMENT, limit // max(1, columns)))


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _newest_by_key(posts: Iterable[NormalisedPost]) -> list[NormalisedPost]:
    """One copy per (platform, platform_id): the most recently fetched (later wins a tie)."""
    best: dict[tuple[str, str], NormalisedPost] = {}
    for post in posts:
        key = (post.platform, post.platform_id)
        held = best.get(key)
        if held is None or post.fetched_at >= held.fetched_at:
            best[key] = post
    return list(best.values())


# -- timestamps: what UTCDateTime does, without a type processor per value -------------------------


def _checked_utc(value: Any) -> dt.datetime:
    """The checks of `UTCDateTime.process_bind_param`: aware datetimes only, as UTC."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"refusing to store a naive datetime ({value.isoformat()}); give it a timezone")
    return value.astimezone(_UTC)


def _sqlite_time(value: Any) -> str:
    """SQLite's stored form: UTC text without offset, always with microseconds (sortable)."""
    if value.__class__ is not dt.datetime or value.tzinfo is not _UTC:
        value = _checked_utc(value)
    return value.isoformat(" ", "microseconds")[:26]


def _pg_time(value: Any) -> dt.datetime:
    if value.__class__ is not dt.datetime or value.tzinfo is not _UTC:
        value = _checked_utc(value)
    return value


# -- SQL, written once per dialect -------------------------------------------------------------------

_AUTHOR_COLUMNS = ("platform", "platform_id", "handle", "display_name", "url", "followers", "followers_at",
                   "first_seen_at", "last_seen_at")
_POST_COLUMNS = ("platform", "platform_id", "url", "author_id", "text", "language", "created_at", "kind",
                 "referenced_id", "hashtags", "origin", "source", "source_id", "edited_at", "deleted_at",
                 "first_seen_at", "updated_at", "likes", "reposts", "replies", "quotes", "views", "metrics_at")
_SNAPSHOT_COLUMNS = ("post_id", "fetched_at", "likes", "reposts", "replies", "quotes", "views")
_FOLLOWER_COLUMNS = ("author_id", "observed_at", "followers")
_SOURCE_COLUMNS = ("post_id", "source", "source_id")
_METRICS = ("likes", "reposts", "replies", "quotes", "views")


def _q(column: str) -> str:
    return f'"{column}"'


# The ON CONFLICT rules, as SQL over the stored row (`old`) and the incoming one (`new`: `excluded`
# inside DO UPDATE, the source rows in the PostgreSQL pre-filter below).


def _newer(stamp: str, old: str, new: str) -> str:
    """SQL: the incoming row is at least as new as the stored one (by timestamp column `stamp`)."""
    return f"({old}.{_q(stamp)} IS NULL OR {new}.{_q(stamp)} >= {old}.{_q(stamp)})"


def _latest(column: str, stamp: str, old: str, new: str) -> str:
    """SQL: keep the incoming value when it is newer and not NULL, else the stored one.

    With column == stamp: the newer of the two timestamps, ignoring an incoming NULL."""
    return (f"CASE WHEN {_newer(stamp, old, new)} AND {new}.{_q(column)} IS NOT NULL "
            f"THEN {new}.{_q(column)} ELSE {old}.{_q(column)} END")


def _author_set(old: str, new: str) -> dict[str, str]:
    return {
        "handle": _latest("handle", "last_seen_at", old, new),
        "display_name": _latest("display_name", "last_seen_at", old, new),
        "url": _latest("url", "last_seen_at", old, new),
        "followers": _latest("followers", "followers_at", old, new),
        "followers_at": _latest("followers_at", "followers_at", old, new),
        "last_seen_at": _latest("last_seen_at", "last_seen_at", old, new),
    }


def _post_set(old: str, new: str) -> dict[str, str]:
    newer = _newer("updated_at", old, new)
    return {
        **{c: _latest(c, "updated_at", old, new)
           for c in ("url", "author_id", "text", "language", "kind", "referenced_id", "edited_at")},
        "hashtags": f"CASE WHEN {newer} THEN {new}.hashtags ELSE {old}.hashtags END",
        # seen live again after being marked deleted (restored, or made public again)
        "deleted_at": f"CASE WHEN {newer} THEN NULL ELSE {old}.deleted_at END",
        "updated_at": f"CASE WHEN {newer} THEN {new}.updated_at ELSE {old}.updated_at END",
        **{c: _latest(c, "metrics_at", old, new) for c in _METRICS},
        "metrics_at": _latest("metrics_at", "metrics_at", old, new),
    }


def _pg_type(table: Table, column: str) -> str:
    """The array element type for `unnest`: unbounded (a too-long value still fails on insert)."""
    kind = table.c[column].type
    kind = getattr(kind, "impl", kind)
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, DateTime):
        return "timestamptz"
    if isinstance(kind, (BigInteger, Integer)):
        return "bigint"
    if isinstance(kind, (String, Text)):
        return "text"
    raise NotImplementedError(f"no unnest type for {table.name}.{column}")


@dataclass(frozen=True)
class _Insert:
    """One INSERT .. ON CONFLICT, split around its rows: `head` + rows + `tail`."""

    head: str
    """SQLite: up to `VALUES `; PostgreSQL: the whole source, `unnest(<one array per column>)`."""
    row: str
    """SQLite: the placeholders of one row (repeated once per row); PostgreSQL: unused."""
    tail: str
    """The rest: filters, ON CONFLICT .., RETURNING .."""
    columns: int


@dataclass(frozen=True)
class _Statements:
    upsert_authors: _Insert
    upsert_posts: _Insert
    follower_history: _Insert
    ignore: dict[str, _Insert]
    """table name -> INSERT .. ON CONFLICT DO NOTHING."""


def _statements(dialect: str) -> _Statements:
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"upserts are not implemented for {dialect}")
    pg = dialect == "postgresql"
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"

    def insert(table: Table, columns: Sequence[str], where: str, tail: str) -> _Insert:
        """INSERT of the rows aliased `u` (with their column names), kept where `where` holds."""
        names = ", ".join(_q(c) for c in columns)
        if pg:  # binary arrays: no text quoting and escaping of every value
            arrays = ", ".join(f"%b::{_pg_type(table, c)}[]" for c in columns)
            head = f"INSERT INTO {table.name} ({names}) SELECT u.* FROM unnest({arrays}) AS u({names})"
            return _Insert(head, "", f"{where} {tail}", len(columns))
        if not where:  # plain multi-row VALUES
            return _Insert(f"INSERT INTO {table.name} ({names}) VALUES ", f"({', '.join('?' * len(columns))})",
                           f" {tail}", len(columns))
        # VALUES names its columns column1, column2, ..; the WHERE also settles SQLite's parsing
        # of ON CONFLICT after a SELECT
        picks = ", ".join(f"column{i} AS {_q(c)}" for i, c in enumerate(columns, 1))
        return _Insert(f"INSERT INTO {table.name} ({names}) SELECT * FROM (SELECT {picks} FROM (VALUES ",
                       f"({', '.join('?' * len(columns))})", f")) AS u {where} {tail}", len(columns))

    def changed(table: Table, set_: dict[str, str], old: str) -> str:
        """SQL: applying the SET would change the stored row `old` (NULL-safe comparisons)."""
        def differs(column: str, expr: str) -> str:
            if pg and _pg_type(table, column) == "json":  # json has no equality: compare the text
                return f"({expr})::text {distinct} {old}.{_q(column)}::text"
            return f"({expr}) {distinct} {old}.{_q(column)}"
        return " OR ".join(differs(c, e) for c, e in set_.items())

    def upsert(table: Table, columns: Sequence[str], keys: Sequence[str],
               set_for: Callable[[str, str], dict[str, str]], returning: Sequence[str]) -> _Insert:
        name = table.name
        where = ""
        if pg:
            # A PostgreSQL DO UPDATE locks (writes) the row even when its WHERE then says no:
            # leave out, before the insert, the rows that are stored and would not change.
            probe = (f"SELECT {changed(table, set_for('k', 'u'), 'k')} AS changes FROM {name} AS k WHERE "
                     + " AND ".join(f"k.{c} = u.{c}" for c in keys) + " OFFSET 0")  # a probe per row
            where = f"LEFT JOIN LATERAL ({probe}) AS stored ON true WHERE stored.changes IS NOT FALSE"
        set_ = set_for(name, "excluded")
        tail = (f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                + ", ".join(f"{_q(c)} = {e}" for c, e in set_.items())
                # leave a row that would not change alone: no rewrite, no new row version
                + f" WHERE {changed(table, set_, name)}"
                # only rows inserted or changed come back; the caller looks up the others
                + " RETURNING " + ", ".join(f"{name}.{c}" for c in returning))
        return insert(table, columns, where, tail)

    def ignore(table: Table, columns: Sequence[str], keys: Sequence[str], where: str = "") -> _Insert:
        return insert(table, columns, where, f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")

    authors, posts, history = Author.__table__, Post.__table__, AuthorFollowers.__table__
    return _Statements(
        upsert_authors=upsert(authors, _AUTHOR_COLUMNS, ("platform", "platform_id"), _author_set,
                              ("id", "platform", "platform_id")),
        upsert_posts=upsert(posts, _POST_COLUMNS, ("platform", "platform_id"), _post_set,
                            ("id", "platform", "platform_id", "first_seen_at")),
        # an observation is history only when it differs from the count in effect at its time
        follower_history=ignore(history, _FOLLOWER_COLUMNS, ("author_id", "observed_at"), (
            "WHERE (SELECT h.followers FROM author_followers AS h WHERE h.author_id = u.author_id"
            f" AND h.observed_at <= u.observed_at ORDER BY h.observed_at DESC LIMIT 1) {distinct} u.followers")),
        ignore={
            "metric_snapshots": ignore(MetricSnapshot.__table__, _SNAPSHOT_COLUMNS, ("post_id", "fetched_at")),
            "post_sources": ignore(PostSource.__table__, _SOURCE_COLUMNS, ("post_id", "source")),
        },
    )


_STATEMENTS: dict[str, _Statements] = {}


@functools.lru_cache(maxsize=64)
def _sqlite_text(stmt: _Insert, rows: int) -> str:
    """The multi-row statement for `rows` rows (sqlite3 caches the prepared statement by its text)."""
    return stmt.head + ", ".join([stmt.row] * rows) + stmt.tail


class _Writer:
    """Runs the statements of one dialect on the session's connection (inside its transaction)."""

    def __init__(self, session: Session) -> None:
        self.conn: Connection = session.connection()
        dialect = self.conn.dialect.name
        if dialect not in _STATEMENTS:
            _STATEMENTS[dialect] = _statements(dialect)
        self.sql = _STATEMENTS[dialect]
        self.pg = dialect == "postgresql"
        self.time: Callable[[Any], Any] = _pg_time if self.pg else _sqlite_time
        self._times: dict[dt.datetime, Any] = {}

    def cached_time(self, value: dt.datetime) -> Any:
        """`time(value)` for values that repeat (fetch times: one per page)."""
        held = self._times.get(value)
        if held is None:
            held = self._times[value] = self.time(value)
        return held

    def write(self, stmt: _Insert, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert the rows, a chunk per statement; the rows RETURNING gives back."""
        returned: list[Any] = []
        if self.pg:  # one array per column: the parameter count does not grow with the rows
            sql = f"{stmt.head} {stmt.tail}"
            for part in chunks(rows, MAX_ROWS_PER_STATEMENT):
                result = self.conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*part)))
                if result.returns_rows:
                    returned += result.fetchall()
            return returned
        per_statement = max(1, min(MAX_ROWS_PER_STATEMENT, _SQLITE_MAX_PARAMS // stmt.columns))
        for part in chunks(rows, per_statement):
            result = self.conn.exec_driver_sql(_sqlite_text(stmt, len(part)), tuple(chain.from_iterable(part)))
            if result.returns_rows:
                returned += result.fetchall()
        return returned

    def lookup(self, table: str, keys: Iterable[tuple[str, str]], extra: str = "") -> list[Any]:
        """(id, platform, platform_id[, extra]) of the stored rows with these keys."""
        by_platform: dict[str, list[str]] = {}
        for platform, platform_id in keys:
            by_platform.setdefault(platform, []).append(platform_id)
        columns = "id, platform, platform_id" + (f", {extra}" if extra else "")
        found: list[Any] = []
        for platform, ids in by_platform.items():
            if self.pg:  # one unique-index probe per key, whatever the statistics say
                found += self.conn.exec_driver_sql(
                    f"SELECT t.* FROM unnest(%b::text[]) AS k(platform_id) CROSS JOIN LATERAL "
                    f"(SELECT {columns} FROM {table} WHERE platform = %s AND platform_id = k.platform_id OFFSET 0) AS t",
                    (ids, platform)).fetchall()
                continue
            for part in chunks(ids, min(_SQLITE_MAX_PARAMS - 1, 5_000)):
                marks = ", ".join("?" * len(part))
                found += self.conn.exec_driver_sql(
                    f"SELECT {columns} FROM {table} WHERE platform = ? AND platform_id IN ({marks})",
                    (platform, *part)).fetchall()
        return found


def _upsert_authors(writer: _Writer, posts: Sequence[NormalisedPost]) -> dict[tuple[str, str], int]:
    newest: dict[tuple[str, str], NormalisedPost] = {}
    for post in posts:
        key = (post.platform, post.author.platform_id)
        held = newest.get(key)
        if held is None or post.fetched_at >= held.fetched_at:
            newest[key] = post
    rows = []
    for (platform, author_id), post in newest.items():
        author = post.author
        fetched = writer.cached_time(post.fetched_at)
        rows.append((platform, author_id, author.handle, author.display_name, author.url, author.followers,
                     fetched if author.followers is not None else None, fetched, fetched))
    ids: dict[tuple[str, str], int] = {}
    for row in writer.write(writer.sql.upsert_authors, rows):
        ids[(row[1], row[2])] = row[0]
    missing = [key for key in newest if key not in ids]  # stored and unchanged: not returned
    for row in writer.lookup("authors", missing):
        ids[(row[1], row[2])] = row[0]
    history = [(ids[(r[0], r[1])], r[6], r[5]) for r in rows if r[5] is not None]
    writer.write(writer.sql.follower_history, history)
    return ids


def upsert_authors(session: Session, posts: Sequence[NormalisedPost]) -> dict[tuple[str, str], int]:
    """Insert or refresh the posts' authors; return (platform, author platform_id) -> author id."""
    return _upsert_authors(_Writer(session), posts)


def store_posts(session: Session, posts: Iterable[NormalisedPost], *, origin: str = "api") -> StoreResult:
    """Upsert posts with their authors, sightings and a metric snapshot each. Idempotent.

    Runs inside the caller's transaction: the caller commits (and only then moves a cursor).
    """
    received = list(posts)
    result = StoreResult(received=len(received))
    unique = _newest_by_key(received)
    if not unique:
        return result
    writer = _Writer(session)
    author_ids = _upsert_authors(writer, unique)
    stamp = dt.datetime.now(_UTC)
    stamp_value = writer.time(stamp)
    time, cached_time = writer.time, writer.cached_time
    tags_json: dict[tuple[str, ...], str] = {}
    rows = []
    for p in unique:
        m = p.metrics
        fetched = cached_time(p.fetched_at)
        tags = p.hashtags
        hashtags = tags_json.get(tags)
        if hashtags is None:
            hashtags = tags_json[tags] = json.dumps(list(tags))
        has_metrics = (m.likes is not None or m.reposts is not None or m.replies is not None
                       or m.quotes is not None or m.views is not None)
        rows.append((
            p.platform, p.platform_id, p.url, author_ids[(p.platform, p.author.platform_id)], p.text,
            p.language, time(p.created_at), p.kind.value, p.referenced_id, hashtags, origin, p.source,
            p.source_id, None if p.edited_at is None else time(p.edited_at), None, stamp_value, fetched,
            m.likes, m.reposts, m.replies, m.quotes, m.views, fetched if has_metrics else None,
        ))
    post_ids = result.ids
    seen_at: dict[tuple[str, str], Any] = {}
    for row in writer.write(writer.sql.upsert_posts, rows):
        post_ids[(row[1], row[2])] = row[0]
        seen_at[(row[1], row[2])] = row[3]
    missing = [(r[0], r[1]) for r in rows if (r[0], r[1]) not in post_ids]
    for row in writer.lookup("posts", missing, "first_seen_at"):
        post_ids[(row[1], row[2])] = row[0]
        seen_at[(row[1], row[2])] = row[3]
    new = sum(1 for first_seen in seen_at.values() if first_seen == stamp_value)
    result.new += new
    result.updated += len(seen_at) - new

    snapshots: dict[tuple[int, Any], tuple[Any, ...]] = {}
    sightings: dict[tuple[int, str], tuple[Any, ...]] = {}
    for p in received:
        post_id = post_ids[(p.platform, p.platform_id)]
        m = p.metrics
        if (m.likes is not None or m.reposts is not None or m.replies is not None or m.quotes is not None
                or m.views is not None):
            fetched = cached_time(p.fetched_at)
            snapshots.setdefault((post_id, fetched),
                                 (post_id, fetched, m.likes, m.reposts, m.replies, m.quotes, m.views))
        if p.source and p.source_id:
            sightings.setdefault((post_id, p.source), (post_id, p.source, p.source_id))
    writer.write(writer.sql.ignore["metric_snapshots"], list(snapshots.values()))
    writer.write(writer.sql.ignore["post_sources"], list(sightings.values()))
    return result


def mark_deleted(session: Session, platform: str, platform_ids: Sequence[str], at: dt.datetime) -> int:
    """Mark posts the platform says are gone; returns how many were live until now."""
    count = 0
    for part in chunks(list(dict.fromkeys(platform_ids)), 500):
        result = session.execute(
            Post.__table__.update()
            .where(Post.platform == platform, Post.platform_id.in_(part), Post.deleted_at.is_(None))
            .values(deleted_at=at)
        )
        count += result.rowcount or 0
    return count


def known_platform_ids(session: Session, platform: str, platform_ids: Sequence[str]) -> set[str]:
    """Which of these ids are already stored (for reports and tests)."""
    found: set[str] = set()
    for part in chunks(list(platform_ids), 500):
        found.update(session.scalars(select(Post.platform_id).where(Post.platform == platform,
                                                                    Post.platform_id.in_(part))))
    return found
