"""Collection bookkeeping: runs, cursors, gaps, and the posts a metrics refresh should visit."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import CollectionCursor, CollectionRun, Gap, Post
from storage.upserts import _insert

STALE_RUN = dt.timedelta(hours=6)
"""A 'running' run with no recorded process (made before schema 0005) is dead after this."""
STALE_ELSEWHERE = dt.timedelta(hours=1)
"""A 'running' run of another host that stored no page for this long is taken as dead (pages
take seconds; the longest waits a run makes, for a rate limit or retries, take minutes)."""
INTERRUPTED = "the process stopped before the run finished"


def this_process() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def run_is_dead(run: CollectionRun, now: dt.datetime, host: str | None = None) -> bool:
    """True for a 'running' run whose process is gone: on this host its pid no longer exists;
    elsewhere (or after a pid was reused) it stored nothing for STALE_ELSEWHERE; a run from
    before processes were recorded, STALE_RUN after it started."""
    if run.status != "running":
        return False
    host = host or socket.gethostname()
    if run.host is None or run.pid is None:
        return run.started_at < now - STALE_RUN
    if run.host == host and not process_exists(run.pid):
        return True
    return (run.progress_at or run.started_at) < now - STALE_ELSEWHERE


def mark_interrupted(session: Session, now: dt.datetime) -> int:
    """Record 'running' runs whose process is gone as 'interrupted'; how many."""
    running = session.scalars(select(CollectionRun).where(CollectionRun.status == "running")).all()
    dead = [run.id for run in running if run_is_dead(run, now)]
    if dead:
        session.execute(update(CollectionRun).where(CollectionRun.id.in_(dead),
                                                    CollectionRun.status == "running")
                        .values(status="interrupted", error=INTERRUPTED))
    return len(dead)


def start_run(session: Session, platform: str, kind: str, now: dt.datetime) -> int:
    """Record a run as 'running' by this process; runs whose process is gone (a crash or
    kill -9) are marked 'interrupted' first."""
    mark_interrupted(session, now)
    host, pid = this_process()
    run = CollectionRun(platform=platform, kind=kind, started_at=now, status="running", host=host[:255],
                        pid=pid, progress_at=now)
    session.add(run)
    session.flush()
    return run.id


def add_to_run(session: Session, run_id: int, now: dt.datetime | None = None, **counts: int) -> None:
    """Add page counts to a run (in the page's own transaction, so counts match what is stored);
    `now` records the progress (see STALE_ELSEWHERE)."""
    values: dict[str, Any] = {name: getattr(CollectionRun, name) + value for name, value in counts.items() if value}
    values["progress_at"] = now or dt.datetime.now(dt.timezone.utc)
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
