"""Read queries and small bookkeeping writes (stops, tags) used by the CLI and jobs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.models import Attribution, CollectionRun, Gap, Post, PostArea, Stop
from storage.upserts import _insert, chunk_size, chunks


class StopLike(Protocol):
    id: str
    area: str
    date: dt.date | None
    city: str | None
    venue: str | None
    notes: str | None


def sync_stops(session: Session, stops: Sequence[StopLike], now: dt.datetime) -> None:
    """Make the stops table equal to the settings' tour (settings are the source of truth)."""
    rows = [
        {"id": s.id, "area": s.area, "date": s.date, "city": s.city, "venue": s.venue,
         "notes": s.notes, "position": n, "synced_at": now}
        for n, s in enumerate(stops)
    ]
    table = Stop.__table__
    if rows:
        stmt = _insert(session, table).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={c: stmt.excluded[c] for c in ("area", "date", "city", "venue", "notes", "position", "synced_at")},
        )
        session.execute(stmt)
    session.execute(delete(Stop).where(Stop.id.not_in([s.id for s in stops] or [""])))


@dataclass(frozen=True, slots=True)
class TagRow:
    post_id: int
    areas: Sequence[str]
    stop_id: str | None
    method: str
    confidence: float
    local_date: dt.date


def store_tags(session: Session, rows: Iterable[TagRow], now: dt.datetime) -> int:
    """Replace the area tags and attributions of these posts; manual attributions are kept."""
    # One row per post, in post id order: two writers tagging the same posts (a re-tag and a
    # metric refresh at once) then take their row locks in the same order and cannot deadlock.
    rows = sorted({r.post_id: r for r in rows}.values(), key=lambda r: r.post_id)
    if not rows:
        return 0
    ids = [r.post_id for r in rows]
    for part in chunks(ids, 500):
        session.execute(delete(PostArea).where(PostArea.post_id.in_(part)))
    areas = [{"post_id": r.post_id, "area": a} for r in rows for a in dict.fromkeys(r.areas)]
    for part in chunks(areas, chunk_size(session, 2)):
        # A concurrent writer may have inserted the same tags since our delete (PostgreSQL:
        # its rows were not there to lock): they are the same facts, keep them.
        stmt = _insert(session, PostArea.__table__).values(list(part))
        session.execute(stmt.on_conflict_do_nothing(index_elements=["post_id", "area"]))
    table = Attribution.__table__
    values = [
        {"post_id": r.post_id, "stop_id": r.stop_id, "method": r.method, "confidence": r.confidence,
         "local_date": r.local_date, "manual": False, "tagged_at": now}
        for r in rows
    ]
    for part in chunks(values, chunk_size(session, 7)):
        stmt = _insert(session, table).values(list(part))
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["post_id"],
            set_={c: ex[c] for c in ("stop_id", "method", "confidence", "local_date", "tagged_at")},
            where=table.c.manual.is_(False),
        )
        session.execute(stmt)
    return len(rows)


def posts_per_stop(session: Session) -> dict[str | None, int]:
    """Live posts attributed to each stop (None: no visit)."""
    stmt = (
        select(Attribution.stop_id, func.count())
        .join(Post, Post.id == Attribution.post_id)
        .where(Post.deleted_at.is_(None))
        .group_by(Attribution.stop_id)
    )
    return {stop: count for stop, count in session.execute(stmt)}


def post_totals(session: Session) -> dict[str, int]:
    """Live posts per platform."""
    stmt = select(Post.platform, func.count()).where(Post.deleted_at.is_(None)).group_by(Post.platform)
    return {platform: count for platform, count in session.execute(stmt)}


def last_runs(session: Session) -> list[CollectionRun]:
    """The latest run of each platform and kind."""
    latest = (
        select(CollectionRun.platform, CollectionRun.kind, func.max(CollectionRun.id).label("id"))
        .group_by(CollectionRun.platform, CollectionRun.kind)
        .subquery()
    )
    stmt = select(CollectionRun).join(latest, CollectionRun.id == latest.c.id).order_by(CollectionRun.platform)
    return list(session.scalars(stmt))


def open_gaps(session: Session) -> list[Gap]:
    return list(session.scalars(select(Gap).where(Gap.resolved_at.is_(None)).order_by(Gap.recorded_at)))


def row_counts(session: Session) -> dict[str, Any]:
    from storage.models import Base

    return {name: session.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()}


def get_state(session: Session, key: str) -> str | None:
    from storage.models import TrackerState

    row = session.get(TrackerState, key)
    return row.value if row else None


def set_state(session: Session, key: str, value: str, now: dt.datetime) -> None:
    from storage.models import TrackerState

    stmt = _insert(session, TrackerState.__table__).values(key=key, value=value, updated_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["key"],
                                               set_={"value": stmt.excluded.value, "updated_at": now}))


@dataclass(frozen=True, slots=True)
class PostToTag:
    id: int
    text: str | None
    hashtags: list[str]
    created_at: dt.datetime


def posts_to_tag(session: Session, *, after_id: int, only_untagged: bool, limit: int = 5000) -> list[PostToTag]:
    """The next batch of posts after `after_id` (keyset paging: each batch is its own query)."""
    stmt = (select(Post.id, Post.text, Post.hashtags, Post.created_at)
            .where(Post.id > after_id).order_by(Post.id).limit(limit))
    if only_untagged:
        stmt = stmt.outerjoin(Attribution, Attribution.post_id == Post.id).where(Attribution.post_id.is_(None))
    return [PostToTag(r.id, r.text, list(r.hashtags or []), r.created_at) for r in session.execute(stmt)]


def find_post(session: Session, ref: str) -> Post | None:
    """A post by database id, `platform:platform_id`, platform id alone, or its URL."""
    if ref.isdigit():
        post = session.get(Post, int(ref))
        if post is not None:
            return post
    platform, sep, rest = ref.partition(":")
    if sep and not ref.startswith(("http://", "https://", "at://")):
        post = session.scalars(select(Post).where(Post.platform == platform, Post.platform_id == rest)).first()
        if post is not None:
            return post
    matches = session.scalars(select(Post).where((Post.platform_id == ref) | (Post.url == ref)).limit(2)).all()
    return matches[0] if len(matches) == 1 else None


def set_manual_attribution(session: Session, post_id: int, stop_id: str | None, local_date: dt.date,
                           now: dt.datetime) -> None:
    """A person's decision: kept by every re-tagging until cleared."""
    table = Attribution.__table__
    values = {"post_id": post_id, "stop_id": stop_id, "method": "manual", "confidence": 1.0,
              "local_date": local_date, "manual": True, "tagged_at": now}
    stmt = _insert(session, table).values(values)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["post_id"], set_={k: stmt.excluded[k] for k in values if k != "post_id"}))


def clear_manual_attribution(session: Session, post_id: int) -> None:
    session.execute(Attribution.__table__.update().where(Attribution.post_id == post_id).values(manual=False))
