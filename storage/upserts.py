"""Bulk, idempotent writes: storing the same posts twice changes nothing.

Batches are de-duplicated before insert (PostgreSQL refuses to touch one key twice in a single
INSERT .. ON CONFLICT) and chunked under each database's bound-parameter limit. Metrics on the
post row follow the newest snapshot: an older fetch arriving late never overwrites a newer one.
An author's follower count goes into `author_followers` when it differs from the count in effect
at that moment (the latest earlier observation): the history keeps every change, not every repeat.
`authors.last_seen_at` / `followers_at` are kept to within SEEN_STEP (an hour) of the latest
sighting, not rewritten on every page (see SEEN_STEP).

How it stays close to what the database itself costs (tests/benchmarks/bench_ingest.py measures
it against plain driver INSERTs / COPY of the same rows):
- Statements are SQL text written once per dialect and run on the session's connection (SQLite:
  straight on its DBAPI connection, rows read back as plain tuples; PostgreSQL: through
  `exec_driver_sql`); rows are plain tuples built once per post, timestamps converted here (the
  same checks and the same stored form as `UTCDateTime`), no per-value type processors.
- Posts are looked up by key first. Those not stored yet, and their metric snapshots, go in
  without conflict handling or RETURNING: SQLite plain INSERTs with the ids SQLite would give
  them (the transaction holds the write lock: nobody else stores them meanwhile); PostgreSQL a
  binary COPY with ids from the table's sequence, in a savepoint, and should another transaction
  have stored one of them meanwhile, undone and upserted instead.
- Known posts, and authors, are upserted. SQLite: multi-row VALUES (up to 1 000 rows a
  statement, under the parameter limit). PostgreSQL: one binary array per column
  (`.. FROM unnest(..)`): one round trip and one short statement text whatever the batch size.
- An upsert that would leave a row exactly as it is writes nothing (`DO UPDATE .. WHERE` a value
  differs; PostgreSQL also leaves such rows out before the insert, as its DO UPDATE locks (writes)
  a row even when the WHERE then says no, and returns them as stored). On SQLite the authors of a
  page are read first and only those that are new or may change are upserted.
- Each page is stored inside a savepoint. Should the database (or its driver) refuse a value
  (too long, out of range, not encodable), the page is undone and stored in halves, each in a
  savepoint, a refused half halved again: only the refused posts are skipped
  (`StoreResult.refused`). Clean pages pay two statements for this (SAVEPOINT, RELEASE).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import operator
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Table, Text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.orm import Session

from storage.models import Author, AuthorFollowers, Base, MetricSnapshot, Post, PostSource
from tracker.posts import NormalisedPost

log = logging.getLogger(__name__)

_SQLITE_MAX_PARAMS = 32_000 if sqlite3.sqlite_version_info >= (3, 32) else 999
SEEN_STEP = dt.timedelta(hours=1)
"""How far `authors.last_seen_at` and `authors.followers_at` may lag the latest sighting.

A sighting that brings nothing new (same handle, name, url and follower count) moves them only
once they are SEEN_STEP or more behind it; when the row is written anyway (something changed)
they move to the sighting's exact time. So they are always times of real sightings, less than
SEEN_STEP before the latest one, and a page of known authors seen minutes ago writes no author
row. What reads them: `storage.privacy.remove_orphan_authors` (authors not seen for a day of
grace), to which an hour is coarse enough; and these upserts, to order sightings: a page fetched
earlier but stored later than another counts as newer if it is newer than the stored time, which
can differ only when a value changed and changed back within SEEN_STEP."""
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
    refused: list[tuple[str, str, str]] = field(default_factory=list, repr=False)
    """(platform, platform_id, why) of each post not stored: refused by the database (see
    `store_posts`), or by the checks before it (tracker.textsafe, through `ingest`)."""

    @property
    def skipped(self) -> int:
        """Posts handed in but not stored (the run's `skipped` counts them)."""
        return len(self.refused)

    def __iadd__(self, other: StoreResult) -> StoreResult:
        self.received += other.received
        self.new += other.new
        self.updated += other.updated
        self.ids.update(other.ids)
        self.refused += other.refused
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


def _brings(columns: Sequence[str], stamp: str, old: str, new: str, distinct: str) -> str:
    """SQL: `_latest` would change one of these columns (all ordered by `stamp`): the incoming
    row is newer and has a value, not NULL, that differs from the stored one."""
    values = " OR ".join(f"({new}.{_q(c)} IS NOT NULL AND {new}.{_q(c)} {distinct} {old}.{_q(c)})" for c in columns)
    return f"({_newer(stamp, old, new)} AND ({values}))"


def _step_later(dialect: str, old: str, new: str) -> str:
    """SQL: timestamp `new` is at least SEEN_STEP after timestamp `old` (both not NULL)."""
    if dialect == "postgresql":
        return f"{new} >= {old} + interval '{int(SEEN_STEP.total_seconds())} seconds'"
    # UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': shift the whole seconds, keep the fraction (exact)
    return (f"{new} >= datetime(substr({old}, 1, 19), '+{int(SEEN_STEP.total_seconds())} seconds')"
            f" || substr({old}, 20)")


_CHANGES = "-changes"
"""A key of a SET dict that is no column: SQL that holds exactly when the SET changes the row
(shorter to evaluate than comparing every SET expression with the stored value)."""


def _author_set(old: str, new: str, dialect: str) -> dict[str, str]:
    """The author columns after an upsert. Handle, name, url and follower count: the newest
    non-NULL value wins (as for posts). `last_seen_at` and `followers_at` move to the incoming
    (newer) time when the row is written anyway (one of those values changes), or on their own
    when they move forward by at least SEEN_STEP; a sighting that only says "still there, same
    count" a few minutes after the stored one writes nothing."""
    distinct = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    values = {
        "handle": _latest("handle", "last_seen_at", old, new),
        "display_name": _latest("display_name", "last_seen_at", old, new),
        "url": _latest("url", "last_seen_at", old, new),
        "followers": _latest("followers", "followers_at", old, new),
    }
    rewritten = (f"{_brings(('handle', 'display_name', 'url'), 'last_seen_at', old, new, distinct)}"
                 f" OR {_brings(('followers',), 'followers_at', old, new, distinct)}")

    def ahead(stamp: str) -> str:
        o, n = f"{old}.{_q(stamp)}", f"{new}.{_q(stamp)}"
        return f"{n} IS NOT NULL AND ({o} IS NULL OR {_step_later(dialect, o, n)})"

    def moved(stamp: str) -> str:
        o, n = f"{old}.{_q(stamp)}", f"{new}.{_q(stamp)}"
        return f"CASE WHEN ({ahead(stamp)}) OR ({n} > {o} AND ({rewritten})) THEN {n} ELSE {o} END"

    return {**values, "followers_at": moved("followers_at"), "last_seen_at": moved("last_seen_at"),
            # not a column: the SET changes the row exactly when this holds (short to evaluate)
            _CHANGES: f"({rewritten}) OR ({ahead('followers_at')}) OR ({ahead('last_seen_at')})"}


_POST_DETAILS = ("url", "author_id", "text", "language", "kind", "referenced_id", "edited_at")


def _post_set(old: str, new: str, dialect: str) -> dict[str, str]:
    """The post columns after an upsert: details (text, hashtags, ..) from the newest copy by
    `updated_at`, each metric the newest known by `metrics_at`; a NULL never replaces a value."""
    pg = dialect == "postgresql"
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    newer = _newer("updated_at", old, new)
    tags = (f"{new}.hashtags::text {distinct} {old}.hashtags::text" if pg  # json has no equality
            else f"{new}.hashtags {distinct} {old}.hashtags")
    return {
        **{c: _latest(c, "updated_at", old, new) for c in _POST_DETAILS},
        "hashtags": f"CASE WHEN {newer} THEN {new}.hashtags ELSE {old}.hashtags END",
        # seen live again after being marked deleted (restored, or made public again)
        "deleted_at": f"CASE WHEN {newer} THEN NULL ELSE {old}.deleted_at END",
        "updated_at": f"CASE WHEN {newer} THEN {new}.updated_at ELSE {old}.updated_at END",
        **{c: _latest(c, "metrics_at", old, new) for c in _METRICS},
        "metrics_at": _latest("metrics_at", "metrics_at", old, new),
        # the SET changes the row exactly when: each CASE above differs from the stored value
        # when its condition holds and its value differs (one test of each condition)
        _CHANGES: (f"{_brings(_POST_DETAILS, 'updated_at', old, new, distinct)}"
                   f" OR ({newer} AND ({tags} OR {old}.deleted_at IS NOT NULL"
                   f" OR {new}.updated_at {distinct} {old}.updated_at))"
                   f" OR {_brings((*_METRICS, 'metrics_at'), 'metrics_at', old, new, distinct)}"),
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
    """SQLite: up to `VALUES `; PostgreSQL: up to the source rows, `unnest(<one array per column>)`."""
    row: str
    """SQLite: the placeholders of one row (repeated once per row); PostgreSQL: unused."""
    tail: str
    """The rest: filters, ON CONFLICT .., RETURNING .. (PostgreSQL upserts: and the stored rows
    left alone)."""
    columns: int


@dataclass(frozen=True)
class _Statements:
    upsert_authors: _Insert
    upsert_posts: _Insert
    follower_history: _Insert
    ignore: dict[str, _Insert]
    """table name -> INSERT .. ON CONFLICT DO NOTHING."""
    fresh: dict[str, _Fresh]
    """table name -> plain INSERT (SQLite) / COPY (PostgreSQL), for rows that cannot conflict."""


@dataclass(frozen=True)
class _Fresh:
    """Rows known not to be stored: no conflict handling, nothing returned."""

    table: str
    columns: tuple[str, ...]

    @functools.cached_property
    def sqlite(self) -> str:
        return (f"INSERT INTO {self.table} ({', '.join(_q(c) for c in self.columns)}) "
                f"VALUES ({', '.join('?' * len(self.columns))})")

    @functools.cached_property
    def copy(self) -> str:
        return f"COPY {self.table} ({', '.join(_q(c) for c in self.columns)}) FROM STDIN (FORMAT BINARY)"

    @functools.cached_property
    def types(self) -> list[str]:
        """Binary COPY types. json: sent as text (the binary form of json is its text; psycopg
        would JSON-encode a str once more)."""
        table = Base.metadata.tables[self.table]
        types = ["bigint" if c == "id" else _pg_type(table, c) for c in self.columns]
        return ["text" if t == "json" else t for t in types]


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
        if _CHANGES in set_:
            return set_[_CHANGES]

        def differs(column: str, expr: str) -> str:
            if pg and _pg_type(table, column) == "json":  # json has no equality: compare the text
                return f"({expr})::text {distinct} {old}.{_q(column)}::text"
            return f"({expr}) {distinct} {old}.{_q(column)}"
        return " OR ".join(differs(c, e) for c, e in set_.items())

    def upsert(table: Table, columns: Sequence[str], keys: Sequence[str],
               set_for: Callable[[str, str], dict[str, str]], returning: Sequence[str]) -> _Insert:
        name = table.name
        set_ = set_for(name, "excluded")
        tail = (f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                + ", ".join(f"{_q(c)} = {e}" for c, e in set_.items() if c != _CHANGES)
                # leave a row that would not change alone: no rewrite, no new row version
                + f" WHERE {changed(table, set_, name)}"
                + " RETURNING " + ", ".join(f"{name}.{c}" for c in returning))
        if not pg:  # only rows inserted or changed come back; the caller looks up the others
            return insert(table, columns, "", tail)
        # A PostgreSQL DO UPDATE locks (writes) the row even when its WHERE then says no: probe
        # the unique index first (once per row), leave the rows that would not change out of the
        # insert, and return them as they are stored: every row comes back.
        names = ", ".join(_q(c) for c in columns)
        arrays = ", ".join(f"%b::{_pg_type(table, c)}[]" for c in columns)
        probe = (f"SELECT {', '.join(f'k.{c} AS k_{c}' for c in returning)}, "
                 f"{changed(table, set_for('k', 'u'), 'k')} AS k_changes FROM {name} AS k WHERE "
                 + " AND ".join(f"k.{c} = u.{c}" for c in keys) + " OFFSET 0")
        head = (f"WITH s AS (SELECT * FROM unnest({arrays}) AS u({names}) LEFT JOIN LATERAL ({probe}) AS k ON true), "
                f"ins AS (INSERT INTO {name} ({names}) SELECT {names} FROM s WHERE k_changes IS NOT FALSE")
        return _Insert(head, "", f"{tail}) SELECT * FROM ins UNION ALL SELECT "
                       f"{', '.join(f'k_{c}' for c in returning)} FROM s WHERE k_changes IS FALSE", len(columns))

    def ignore(table: Table, columns: Sequence[str], keys: Sequence[str], where: str = "") -> _Insert:
        return insert(table, columns, where, f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")

    authors, posts, history = Author.__table__, Post.__table__, AuthorFollowers.__table__
    return _Statements(
        upsert_authors=upsert(authors, _AUTHOR_COLUMNS, ("platform", "platform_id"),
                              functools.partial(_author_set, dialect=dialect),
                              ("id", "platform", "platform_id")),
        upsert_posts=upsert(posts, _POST_COLUMNS, ("platform", "platform_id"),
                            functools.partial(_post_set, dialect=dialect),
                            ("id", "platform", "platform_id", "first_seen_at")),
        # an observation is history only when it differs from the count in effect at its time
        follower_history=ignore(history, _FOLLOWER_COLUMNS, ("author_id", "observed_at"), (
            "WHERE (SELECT h.followers FROM author_followers AS h WHERE h.author_id = u.author_id"
            f" AND h.observed_at <= u.observed_at ORDER BY h.observed_at DESC LIMIT 1) {distinct} u.followers")),
        ignore={
            "metric_snapshots": ignore(MetricSnapshot.__table__, _SNAPSHOT_COLUMNS, ("post_id", "fetched_at")),
            "post_sources": ignore(PostSource.__table__, _SOURCE_COLUMNS, ("post_id", "source")),
        },
        fresh={
            "posts": _Fresh(posts.name, ("id", *_POST_COLUMNS)),
            "metric_snapshots": _Fresh(MetricSnapshot.__tablename__, _SNAPSHOT_COLUMNS),
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
        self.raw: Any = self.conn.connection.driver_connection
        """The DBAPI connection under the session's (same transaction)."""
        self.time: Callable[[Any], Any] = _pg_time if self.pg else _sqlite_time
        self._times: dict[dt.datetime, Any] = {}
        """datetime -> `time(datetime)` of the fetch times seen (they repeat: one per page)."""
        self._steps: dict[Any, Any] = {}

    def cached_time(self, value: dt.datetime) -> Any:
        """`time(value)` for values that repeat (fetch times), remembered."""
        held = self._times.get(value)
        if held is None:
            held = self._times[value] = self.time(value)
        return held

    def step_after(self, stored: Any) -> Any:
        """A stored timestamp plus SEEN_STEP, comparable with `time()` values (None: unreadable)."""
        held = self._steps.get(stored, False)
        if held is False:
            try:
                if self.pg:
                    held = stored + SEEN_STEP
                else:  # UTC text, as `_sqlite_time` writes it
                    held = _sqlite_time((dt.datetime.fromisoformat(stored) + SEEN_STEP).replace(tzinfo=_UTC))
            except (TypeError, ValueError):
                held = None
            self._steps[stored] = held
        return held

    def unchanged(self, stored: Sequence[Any], row: Sequence[Any]) -> bool:
        """The author upsert would leave `stored` (id, platform, platform_id, *_AUTHOR_STORED)
        as it is (the rules of `_author_set`, in Python): every incoming value missing, equal, or
        older than the stored one, and neither timestamp a SEEN_STEP ahead. Errs towards False
        (the upsert then decides)."""
        _, _, handle, display_name, url, followers, followers_at, _, last_seen = row
        _, _, _, old_handle, old_name, old_url, old_followers, old_followers_at, old_seen = stored
        if old_seen is None or last_seen >= old_seen:  # the incoming details would win
            if ((handle is not None and handle != old_handle) or (display_name is not None and display_name != old_name)
                    or (url is not None and url != old_url)):
                return False
        if followers_at is not None:  # followers is not None either
            if old_followers_at is None:
                return False
            if followers_at >= old_followers_at:
                if followers != old_followers:
                    return False
                limit = self.step_after(old_followers_at)
                if limit is None or followers_at >= limit:
                    return False
        if old_seen is None:
            return False
        limit = self.step_after(old_seen)
        return limit is not None and last_seen < limit

    def sqlite(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> list[Any]:
        """Run one statement on SQLite's DBAPI connection (inside the session's transaction) and
        return its rows as plain tuples: no Result and Row objects for the ~1 000 rows a page reads
        back. Errors are raised as SQLAlchemy's exceptions, as for statements it runs."""
        try:
            cursor = self.raw.executemany(sql, params) if many else self.raw.execute(sql, params)
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc

    def _plain(self, sql: str) -> None:
        """A statement without parameters or rows, on the DBAPI connection."""
        if not self.pg:
            self.sqlite(sql)
            return
        try:
            self.raw.execute(sql)
        except self.raw.Error as exc:
            raise DBAPIError.instance(sql, None, exc, self.raw.Error) from exc

    def savepoint(self, name: str) -> None:
        self._plain(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        """Undo everything since the savepoint, and drop it."""
        self._plain(f"ROLLBACK TO SAVEPOINT {name}")
        self._plain(f"RELEASE SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self._plain(f"RELEASE SAVEPOINT {name}")

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
        if not rows:
            return returned
        per_statement = max(1, min(MAX_ROWS_PER_STATEMENT, _SQLITE_MAX_PARAMS // stmt.columns))
        for part in chunks(rows, per_statement):
            returned += self.sqlite(_sqlite_text(stmt, len(part)), tuple(chain.from_iterable(part)))
        return returned

    def next_ids(self, table: str, count: int) -> list[int]:
        """Ids for `count` new rows, as the table's default would give them."""
        if self.pg:
            return self.conn.exec_driver_sql(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, %s)",
                (count,)).scalars().all()
        # SQLite (a rowid table without AUTOINCREMENT): max(id) + 1, .. under the write lock
        first = self.sqlite(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")[0][0]
        return list(range(first, first + count))

    def insert_fresh(self, fresh: _Fresh, rows: Sequence[tuple[Any, ...]], *, may_conflict: bool = False) -> bool:
        """Insert rows known not to be stored: SQLite plain INSERTs, PostgreSQL a COPY.

        With `may_conflict` (PostgreSQL: another transaction may have stored one of them since
        this one looked), a unique violation undoes the COPY alone and returns False."""
        if not rows:
            return True
        if not self.pg:
            self.sqlite(fresh.sqlite, rows, many=True)
            return True
        raw = self.raw
        sql = fresh.copy
        try:
            with raw.cursor() as cursor:
                if may_conflict:
                    cursor.execute("SAVEPOINT tracker_fresh")
                try:
                    with cursor.copy(sql) as copy:  # binary rows, formatted by psycopg's C code
                        copy.set_types(fresh.types)
                        write_row = copy.write_row
                        for row in rows:
                            write_row(row)
                except raw.IntegrityError as exc:
                    if not may_conflict or getattr(exc, "sqlstate", None) != "23505":
                        raise
                    sql = "ROLLBACK TO SAVEPOINT tracker_fresh"
                    cursor.execute(sql)
                    return False
                if may_conflict:
                    sql = "RELEASE SAVEPOINT tracker_fresh"
                    cursor.execute(sql)
        except raw.Error as exc:  # as SQLAlchemy reports errors of the statements it runs
            raise DBAPIError.instance(sql, None, exc, raw.Error) from exc
        return True

    def lookup(self, table: str, keys: Iterable[tuple[str, str]], extra: str = "") -> list[Any]:
        """(id, platform, platform_id[, extra]) of the stored rows with these keys."""
        columns = "id, platform, platform_id" + (f", {extra}" if extra else "")
        pairs = list(keys)
        if not pairs:
            return []
        if self.pg:  # one unique-index probe per key, whatever the statistics say
            return self.conn.exec_driver_sql(
                f"SELECT t.* FROM unnest(%b::text[], %b::text[]) AS k(platform, platform_id) CROSS JOIN LATERAL "
                f"(SELECT {columns} FROM {table} WHERE platform = k.platform AND platform_id = k.platform_id"
                " OFFSET 0) AS t",
                ([k[0] for k in pairs], [k[1] for k in pairs])).fetchall()
        by_platform: dict[str, list[str]] = {}
        for platform, platform_id in pairs:
            by_platform.setdefault(platform, []).append(platform_id)
        found: list[Any] = []
        for platform, ids in by_platform.items():
            for part in chunks(ids, min(_SQLITE_MAX_PARAMS - 1, 5_000)):
                marks = ", ".join("?" * len(part))
                found += self.sqlite(f"SELECT {columns} FROM {table} WHERE platform = ? AND platform_id IN ({marks})",
                                     (platform, *part))
        return found


_AUTHOR_STORED = "handle, display_name, url, followers, followers_at, last_seen_at"
"""The stored author columns `_Writer.unchanged` compares (after id, platform, platform_id)."""


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
    if writer.pg:  # one statement: it leaves out, and returns as stored, the rows it would not change
        for row in writer.write(writer.sql.upsert_authors, rows):
            ids[(row[1], row[2])] = row[0]
    else:
        # SQLite: most authors of a page are stored already and unchanged: read them first (one
        # indexed lookup per platform) and upsert only those that are new or may change.
        stored = {(row[1], row[2]): row for row in writer.lookup("authors", newest, _AUTHOR_STORED)}
        changing = []
        for row in rows:
            held = stored.get((row[0], row[1]))
            if held is not None and writer.unchanged(held, row):
                ids[(row[0], row[1])] = held[0]
            else:
                changing.append(row)
        for row in writer.write(writer.sql.upsert_authors, changing):
            ids[(row[1], row[2])] = row[0]
        for key, held in stored.items():  # sent, but the upsert found nothing to change after all
            ids.setdefault(key, held[0])
    missing = [key for key in newest if key not in ids]  # stored meanwhile by another transaction
    for row in writer.lookup("authors", missing):
        ids[(row[1], row[2])] = row[0]
    history = [(ids[(r[0], r[1])], r[6], r[5]) for r in rows if r[5] is not None]
    writer.write(writer.sql.follower_history, history)
    return ids


def upsert_authors(session: Session, posts: Sequence[NormalisedPost]) -> dict[tuple[str, str], int]:
    """Insert or refresh the posts' authors; return (platform, author platform_id) -> author id."""
    return _upsert_authors(_Writer(session), posts)


@functools.lru_cache(maxsize=4096)
def _tags_json(tags: tuple[str, ...]) -> str:
    """The stored JSON of a post's hashtags (the same few combinations recur page after page)."""
    return json.dumps(list(tags))


_POST_STORED = ("url, author_id, text, language, kind, referenced_id, hashtags, edited_at, deleted_at, updated_at, "
                "likes, reposts, replies, quotes, views, metrics_at")
"""The columns an upsert of a post may change, as stored (after id, platform, platform_id)."""
_POST_STORED_PG = _POST_STORED.replace("hashtags", "hashtags::text")  # json as stored: its text
_post_compared = operator.itemgetter(2, 3, 4, 5, 7, 8, 9, 13, 14, 16, 17, 18, 19, 20, 21, 22)
"""The same columns of a row built by `store_posts`."""


def store_posts(session: Session, posts: Iterable[NormalisedPost], *, origin: str = "api") -> StoreResult:
    """Upsert posts with their authors, sightings and a metric snapshot each. Idempotent.

    Runs inside the caller's transaction: the caller commits (and only then moves a cursor).
    Should the database refuse a value of the page (`_refused_value`: a value too long, out of
    range, not encodable), the page is undone (a savepoint) and stored in parts, each in a
    savepoint of its own, down to the single posts refused: those are skipped, logged with platform, id and the kind
    of error (never the values: other people's names and texts), and listed in
    `StoreResult.refused`; the rest of the page is stored. Any other error (the database gone,
    locked, a full disk) is raised as it was: nothing is skipped for it.
    """
    received = list(posts)
    if not received:
        return StoreResult()
    writer = _Writer(session)
    writer.savepoint("tracker_page")
    try:
        result = _store_page(writer, received, origin)
    except Exception as exc:
        if _refused_value(exc) is None:
            raise
        writer.rollback_to("tracker_page")
        return _store_in_parts(writer, received, origin)
    writer.release("tracker_page")
    return result


def _refused_value(exc: BaseException) -> str | None:
    """The kind of error when `exc` is the database (or its driver) refusing a value of a row
    (PostgreSQL's data exceptions, class 22; an int or text the driver cannot encode), else None.
    Only the class name and SQLSTATE: the error's text may quote the value."""
    orig = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    if isinstance(exc, DataError) or isinstance(orig, (OverflowError, UnicodeError)):
        sqlstate = getattr(orig, "sqlstate", None)
        return type(orig).__name__ + (f", SQLSTATE {sqlstate}" if sqlstate else "")
    return None


def _store_in_parts(writer: _Writer, received: Sequence[NormalisedPost], origin: str) -> StoreResult:
    """The page stored in halves, each in a savepoint, a refused half halved again down to the
    single posts refused (with their copies): those are skipped. A few refused posts in a page of
    1 000 cost some 20 attempts, not 1 000 (nor 1 000 subtransactions on PostgreSQL)."""
    result = StoreResult(received=len(received))
    by_key: dict[tuple[str, str], list[NormalisedPost]] = {}
    for post in received:
        by_key.setdefault((post.platform, post.platform_id), []).append(post)
    groups = list(by_key.values())
    pending = [groups[len(groups) // 2:], groups[: len(groups) // 2]] if len(groups) > 1 else [groups]
    while pending:  # a stack: first halves first
        part = pending.pop()
        if not part:
            continue
        writer.savepoint("tracker_part")
        try:
            stored = _store_page(writer, [p for copies in part for p in copies], origin)
        except Exception as exc:
            kind = _refused_value(exc)
            if kind is None:
                raise
            writer.rollback_to("tracker_part")
            if len(part) > 1:
                pending += [part[len(part) // 2:], part[: len(part) // 2]]
                continue
            platform, platform_id = part[0][0].platform, part[0][0].platform_id
            log.warning("%s post %s skipped: the database refused a value of it (%s)",
                        ascii(platform[:32])[1:-1], ascii(platform_id[:120]), kind)
            result.refused.append((platform, platform_id, f"the database refused a value of it ({kind})"))
            continue
        writer.release("tracker_part")
        result.new += stored.new
        result.updated += stored.updated
        result.ids.update(stored.ids)
    return result


def _store_page(writer: _Writer, received: Sequence[NormalisedPost], origin: str) -> StoreResult:
    """`store_posts` without the fallback: the page as a whole, or an error."""
    result = StoreResult(received=len(received))
    unique = _newest_by_key(received)
    if not unique:
        return result
    author_ids = _upsert_authors(writer, unique)
    stamp_value = writer.time(dt.datetime.now(_UTC))
    time, cached_time = writer.time, writer.cached_time
    rows = []
    append = rows.append
    for p in unique:
        m = p.metrics
        fetched = cached_time(p.fetched_at)
        tags = p.hashtags
        hashtags = _tags_json(tags)
        platform = p.platform
        edited = p.edited_at
        append((
            platform, p.platform_id, p.url, author_ids[(platform, p.author.platform_id)], p.text, p.language,
            time(p.created_at), p.kind._value_, p.referenced_id, hashtags, origin, p.source, p.source_id,
            None if edited is None else time(edited), None, stamp_value, fetched,
            m.likes, m.reposts, m.replies, m.quotes, m.views,
            fetched if (m.likes is not None or m.reposts is not None or m.replies is not None
                        or m.quotes is not None or m.views is not None) else None,
        ))
    # Posts not stored yet (looked up first) go in without conflict handling: SQLite as plain
    # INSERTs with the ids SQLite would give them (this transaction holds the write lock, so
    # nobody stores them meanwhile); PostgreSQL by COPY with ids from the table's sequence, undone
    # (and upserted like the others) should another transaction have stored one meanwhile.
    # Known posts whose every updatable column already holds the incoming value (the same copy
    # stored again) are left alone; the others are upserted.
    post_ids = result.ids
    fresh_ids: set[int] = set()
    stored = writer.lookup("posts", [(r[0], r[1]) for r in rows],
                           _POST_STORED_PG if writer.pg else _POST_STORED)
    known = {(row[1], row[2]): row for row in stored}
    fresh, upsert = [], []
    for r in rows:
        held = known.get((r[0], r[1]))
        if held is None:
            fresh.append(r)
        else:
            post_ids[(r[0], r[1])] = held[0]
            if held[3:] != _post_compared(r):
                upsert.append(r)
    result.updated += len(known)
    if fresh:
        ids = writer.next_ids("posts", len(fresh))
        if writer.insert_fresh(writer.sql.fresh["posts"], [(i, *r) for i, r in zip(ids, fresh)], may_conflict=True):
            post_ids.update(((r[0], r[1]), i) for i, r in zip(ids, fresh))
            result.new += len(fresh)
            fresh_ids = set(ids)
        else:
            upsert += fresh
    # The rest: upserted (newest metrics and texts win); ids of rows left alone come from the
    # lookup above or, for rows another transaction stored meanwhile, from RETURNING / a lookup.
    seen_at: dict[tuple[str, str], Any] = {}
    for row in writer.write(writer.sql.upsert_posts, upsert):
        key = (row[1], row[2])
        if key not in known:
            post_ids[key] = row[0]
            seen_at[key] = row[3]
    missing = [(r[0], r[1]) for r in upsert if (r[0], r[1]) not in post_ids]
    for row in writer.lookup("posts", missing, "first_seen_at"):
        post_ids[(row[1], row[2])] = row[0]
        seen_at[(row[1], row[2])] = row[3]
    new = sum(1 for first_seen in seen_at.values() if first_seen == stamp_value)
    result.new += new
    result.updated += len(seen_at) - new

    if len(unique) == len(received):  # no copies: one snapshot and sighting per row built above
        snapshot_rows, sighting_rows = [], []
        for r in rows:
            post_id = post_ids[(r[0], r[1])]
            if r[22] is not None:  # metrics_at: some metric known
                snapshot_rows.append((post_id, r[16], r[17], r[18], r[19], r[20], r[21]))
            if r[11] and r[12]:
                sighting_rows.append((post_id, r[11], r[12]))
        _store_snapshots(writer, snapshot_rows, sighting_rows, fresh_ids)
        return result
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
    _store_snapshots(writer, list(snapshots.values()), list(sightings.values()), fresh_ids)
    return result


def _store_snapshots(writer: _Writer, snapshots: list[tuple[Any, ...]], sightings: list[tuple[Any, ...]],
                     fresh_ids: set[int]) -> None:
    # snapshots of posts inserted just now cannot be stored yet (nobody else sees those posts)
    writer.insert_fresh(writer.sql.fresh["metric_snapshots"], [s for s in snapshots if s[0] in fresh_ids])
    writer.write(writer.sql.ignore["metric_snapshots"], [s for s in snapshots if s[0] not in fresh_ids])
    writer.write(writer.sql.ignore["post_sources"], sightings)


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
