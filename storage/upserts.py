"""Bulk, idempotent writes: storing the same posts twice changes nothing but `last seen`.

Batches are de-duplicated before insert (PostgreSQL refuses to touch one key twice in a single
INSERT .. ON CONFLICT) and chunked under each database's bound-parameter limit. Metrics on the
post row follow the newest snapshot: an older fetch arriving late never overwrites a newer one.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Author, AuthorFollowers, Base, MetricSnapshot, Post, PostSource
from tracker.posts import NormalisedPost

_SQLITE_MAX_PARAMS = 32_000 if sqlite3.sqlite_version_info >= (3, 32) else 999
_PG_MAX_PARAMS = 65_000
MAX_ROWS_PER_STATEMENT = 1_000


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


def _newer(table: Table, excluded: Any, stamp: str) -> Any:
    """SQL: the incoming row is at least as new as the stored one (by timestamp column `stamp`)."""
    return or_(table.c[stamp].is_(None), excluded[stamp] >= table.c[stamp])


def _latest(table: Table, excluded: Any, column: str, stamp: str) -> Any:
    """SQL: keep the incoming value when it is newer and not NULL, else the stored one."""
    return case(
        (and_(_newer(table, excluded, stamp), excluded[column].is_not(None)), excluded[column]),
        else_=table.c[column],
    )


def _stamp(table: Table, excluded: Any, stamp: str) -> Any:
    """SQL: the newer of the two timestamps, ignoring an incoming NULL."""
    return case((and_(_newer(table, excluded, stamp), excluded[stamp].is_not(None)), excluded[stamp]),
                else_=table.c[stamp])


# Statements are built once per dialect: compiled once, then run as executemany batches.


@functools.cache
def _author_upsert(dialect: str) -> Any:
    table = Author.__table__
    stmt = _insert_for(dialect, table)
    ex = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["platform", "platform_id"],
        set_={
            "handle": _latest(table, ex, "handle", "last_seen_at"),
            "display_name": _latest(table, ex, "display_name", "last_seen_at"),
            "url": _latest(table, ex, "url", "last_seen_at"),
            "followers": _latest(table, ex, "followers", "followers_at"),
            "followers_at": _stamp(table, ex, "followers_at"),
            "last_seen_at": _stamp(table, ex, "last_seen_at"),
        },
    ).returning(table.c.id, table.c.platform, table.c.platform_id)


@functools.cache
def _post_upsert(dialect: str) -> Any:
    table = Post.__table__
    stmt = _insert_for(dialect, table)
    ex = stmt.excluded
    newer = _newer(table, ex, "updated_at")
    return stmt.on_conflict_do_update(
        index_elements=["platform", "platform_id"],
        set_={
            **{c: _latest(table, ex, c, "updated_at")
               for c in ("url", "author_id", "text", "language", "kind", "referenced_id", "edited_at")},
            "hashtags": case((newer, ex.hashtags), else_=table.c.hashtags),
            # seen live again after being marked deleted (restored, or made public again)
            "deleted_at": case((newer, None), else_=table.c.deleted_at),
            "updated_at": case((newer, ex.updated_at), else_=table.c.updated_at),
            **{c: _latest(table, ex, c, "metrics_at") for c in ("likes", "reposts", "replies", "quotes", "views")},
            "metrics_at": _stamp(table, ex, "metrics_at"),
        },
    ).returning(table.c.id, table.c.platform, table.c.platform_id, table.c.first_seen_at)


@functools.cache
def _ignore_duplicates(dialect: str, table_name: str, keys: tuple[str, ...]) -> Any:
    table = Base.metadata.tables[table_name]
    return _insert_for(dialect, table).on_conflict_do_nothing(index_elements=list(keys))


def upsert_authors(session: Session, posts: Sequence[NormalisedPost]) -> dict[tuple[str, str], int]:
    """Insert or refresh the posts' authors; return (platform, author platform_id) -> author id."""
    newest: dict[tuple[str, str], tuple[dt.datetime, Any]] = {}
    for post in posts:
        key = (post.platform, post.author.platform_id)
        held = newest.get(key)
        if held is None or post.fetched_at >= held[0]:
            newest[key] = (post.fetched_at, post.author)
    rows = [
        {
            "platform": platform,
            "platform_id": author_id,
            "handle": author.handle,
            "display_name": author.display_name,
            "url": author.url,
            "followers": author.followers,
            "followers_at": fetched if author.followers is not None else None,
            "first_seen_at": fetched,
            "last_seen_at": fetched,
        }
        for (platform, author_id), (fetched, author) in newest.items()
    ]
    ids: dict[tuple[str, str], int] = {}
    stmt = _author_upsert(_dialect(session))
    for part in chunks(rows, chunk_size(session, 9)):
        for row in session.execute(stmt, list(part)):
            ids[(row.platform, row.platform_id)] = row.id
    history = [
        {"author_id": ids[(r["platform"], r["platform_id"])], "observed_at": r["followers_at"],
         "followers": r["followers"]}
        for r in rows
        if r["followers"] is not None
    ]
    _insert_ignore(session, AuthorFollowers.__table__, history, ["author_id", "observed_at"])
    return ids


def _insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    stmt = _ignore_duplicates(_dialect(session), table.name, tuple(keys))
    for part in chunks(rows, chunk_size(session, len(rows[0]))):
        session.execute(stmt, list(part))


def store_posts(session: Session, posts: Iterable[NormalisedPost], *, origin: str = "api") -> StoreResult:
    """Upsert posts with their authors, sightings and a metric snapshot each. Idempotent.

    Runs inside the caller's transaction: the caller commits (and only then moves a cursor).
    """
    received = list(posts)
    result = StoreResult(received=len(received))
    unique = _newest_by_key(received)
    if not unique:
        return result
    author_ids = upsert_authors(session, unique)
    stamp = dt.datetime.now(dt.timezone.utc)
    rows = [_post_row(p, author_ids[(p.platform, p.author.platform_id)], stamp, origin) for p in unique]
    post_ids = result.ids
    stmt = _post_upsert(_dialect(session))
    for part in chunks(rows, chunk_size(session, len(rows[0]))):
        for row in session.execute(stmt, list(part)):
            post_ids[(row.platform, row.platform_id)] = row.id
            if row.first_seen_at == stamp:
                result.new += 1
            else:
                result.updated += 1
    snapshots = [
        {"post_id": post_ids[(p.platform, p.platform_id)], "fetched_at": p.fetched_at,
         "likes": p.metrics.likes, "reposts": p.metrics.reposts, "replies": p.metrics.replies,
         "quotes": p.metrics.quotes, "views": p.metrics.views}
        for p in received
        if _has_metrics(p)
    ]
    _insert_ignore(session, MetricSnapshot.__table__, _unique_rows(snapshots, ("post_id", "fetched_at")),
                   ["post_id", "fetched_at"])
    sightings = [
        {"post_id": post_ids[(p.platform, p.platform_id)], "source": p.source, "source_id": p.source_id}
        for p in received
        if p.source and p.source_id
    ]
    _insert_ignore(session, PostSource.__table__, _unique_rows(sightings, ("post_id", "source")),
                   ["post_id", "source"])
    return result


def _unique_rows(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(tuple(row[k] for k in key), row)
    return list(seen.values())


def _has_metrics(post: NormalisedPost) -> bool:
    m = post.metrics
    return any(v is not None for v in (m.likes, m.reposts, m.replies, m.quotes, m.views))


def _post_row(post: NormalisedPost, author_id: int, stamp: dt.datetime, origin: str) -> dict[str, Any]:
    m = post.metrics
    return {
        "platform": post.platform,
        "platform_id": post.platform_id,
        "url": post.url,
        "author_id": author_id,
        "text": post.text,
        "language": post.language,
        "created_at": post.created_at,
        "kind": post.kind.value,
        "referenced_id": post.referenced_id,
        "hashtags": list(post.hashtags),
        "origin": origin,
        "source": post.source,
        "source_id": post.source_id,
        "edited_at": post.edited_at,
        "deleted_at": None,
        "first_seen_at": stamp,
        "updated_at": post.fetched_at,
        "likes": m.likes,
        "reposts": m.reposts,
        "replies": m.replies,
        "quotes": m.quotes,
        "views": m.views,
        "metrics_at": post.fetched_at if _has_metrics(post) else None,
    }


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
