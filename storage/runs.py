"""Collection bookkeeping: runs, cursors, gaps, and the posts a metrics refresh should visit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import CollectionCursor, CollectionRun, Gap, Post
from storage.upserts import _insert

STALE_RUN = dt.timedelta(hours=6)


def start_run(session: Session, platform: str, kind: str, now: dt.datetime) -> int:
    """Record a run as 'running'; runs of this platform still 'running' after STALE_RUN were
    killed (a crash or kill -9) and are marked 'interrupted'."""
    session.execute(
        update(CollectionRun)
        .where(CollectionRun.platform == platform, CollectionRun.kind == kind,
               CollectionRun.status == "running", CollectionRun.started_at < now - STALE_RUN)
        .values(status="interrupted", error="the process stopped before the run finished")
    )
    run = CollectionRun(platform=platform, kind=kind, started_at=now, status="running")
    session.add(run)
    session.flush()
    return run.id


def add_to_run(session: Session, run_id: int, **counts: int) -> None:
    """Add page counts to a run (in the page's own transaction, so counts match what is stored)."""
    values = {name: getattr(CollectionRun, name) + value for name, value in counts.items() if value}
    if values:
        session.execute(update(CollectionRun).where(CollectionRun.id == run_id).values(**values))


def finish_run(
    session: Session, run_id: int, status: str, now: dt.datetime,
    error: str | None = None, resume_at: dt.datetime | None = None,
) -> CollectionRun:
    run = session.get(CollectionRun, run_id)
    assert run is not None
    run.status, run.finished_at, run.error, run.resume_at = status, now, error, resume_at
    return run


def get_cursor(session: Session, platform: str, stream: str) -> CollectionCursor | None:
    return session.get(CollectionCursor, (platform, stream))


def save_cursor(
    session: Session, platform: str, stream: str, *, now: dt.datetime,
    cursor: str | None = None, resume_at: dt.datetime | None = None, keep_cursor: bool = False,
) -> None:
    """Upsert a stream's cursor (or only its resume time when keep_cursor)."""
    table = CollectionCursor.__table__
    row: dict[str, Any] = {"platform": platform, "stream": stream, "cursor": cursor,
                           "updated_at": now, "resume_at": resume_at}
    stmt = _insert(session, table).values(row)
    changes: dict[str, Any] = {"resume_at": stmt.excluded.resume_at}
    if not keep_cursor:
        changes.update(cursor=stmt.excluded.cursor, updated_at=stmt.excluded.updated_at)
    session.execute(stmt.on_conflict_do_update(index_elements=["platform", "stream"], set_=changes))


def record_gap(
    session: Session, platform: str, stream: str, *, start_at: dt.datetime | None,
    end_at: dt.datetime | None, reason: str, run_id: int | None, now: dt.datetime,
) -> None:
    session.add(Gap(platform=platform, stream=stream, start_at=start_at, end_at=end_at,
                    reason=reason, run_id=run_id, recorded_at=now))


def resolve_gaps(session: Session, platform: str, stream: str, now: dt.datetime) -> int:
    """A stream that completed a run from its cursor has re-read everything after it."""
    result = session.execute(
        update(Gap)
        .where(Gap.platform == platform, Gap.stream == stream, Gap.resolved_at.is_(None),
               Gap.recorded_at <= now)
        .values(resolved_at=now)
    )
    return result.rowcount or 0


def cursors(session: Session, platform: str | None = None) -> list[CollectionCursor]:
    stmt = select(CollectionCursor).order_by(CollectionCursor.platform, CollectionCursor.stream)
    if platform:
        stmt = stmt.where(CollectionCursor.platform == platform)
    return list(session.scalars(stmt))


def last_run_started(session: Session, platform: str, kind: str) -> dt.datetime | None:
    """Start of the latest run that finished (whatever its status): a run killed midway does not
    count, so a restarted scheduler collects at once instead of waiting a whole interval."""
    return session.scalar(
        select(CollectionRun.started_at)
        .where(CollectionRun.platform == platform, CollectionRun.kind == kind,
               CollectionRun.finished_at.is_not(None))
        .order_by(CollectionRun.id.desc()).limit(1)
    )


def posts_to_refresh(
    session: Session, platform: str, created_after: dt.datetime, batch: int = 1000
) -> Iterator[list[tuple[str, str | None, str | None, str | None]]]:
    """Live posts of a platform created after a time, newest first, in batches of
    (platform_id, source, source_id, url). Keyset-paged: no long-held cursor on the database."""
    last_id: int | None = None
    while True:
        stmt = (
            select(Post.id, Post.platform_id, Post.source, Post.source_id, Post.url)
            .where(Post.platform == platform, Post.deleted_at.is_(None), Post.created_at >= created_after)
            .order_by(Post.id.desc()).limit(batch)
        )
        if last_id is not None:
            stmt = stmt.where(Post.id < last_id)
        rows = session.execute(stmt).all()
        if not rows:
            return
        last_id = rows[-1].id
        yield [(r.platform_id, r.source, r.source_id, r.url) for r in rows]


def all_gaps(session: Session) -> list[Gap]:
    return list(session.scalars(select(Gap).order_by(Gap.recorded_at)))
