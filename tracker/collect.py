"""One collection round and one metrics refresh, across the enabled platforms.

The loop that makes collection safe: each page is stored (posts, tags, run counts) and its
cursor saved in ONE transaction, so a crash or kill between pages never moves a cursor past
unstored posts; the next run resumes from the last committed cursor and the idempotent store
absorbs any re-read. A stream that fails or is rate limited records a gap and does not stop the
other streams or platforms.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from storage.db import Database
from storage.runs import (
    add_to_run,
    finish_run,
    get_cursor,
    posts_to_refresh,
    record_gap,
    resolve_gaps,
    save_cursor,
    start_run,
)
from storage.privacy import scrub_deleted_posts
from storage.upserts import mark_deleted
from tracker.errors import TrackerError
from tracker.pipeline import TaggerLike, ingest
from tracker.platforms.base import Adapter, AuthFailed, KnownPost, PlatformError, RateLimited
from tracker.redaction import redact
from tracker.schedule import is_transient
from tracker.settings import Privacy, Settings

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]
Progress = Callable[[str, "PlatformResult"], None]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class PlatformResult:
    """What one platform's run did; `line()` is the one-line summary the CLI prints."""

    platform: str
    kind: str = "collect"
    run_id: int | None = None
    status: str = "running"
    fetched: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    pages: int = 0
    requests: int = 0
    skipped: int = 0
    gaps: int = 0
    deferred: int = 0
    """Streams not polled because a rate limit told us to wait."""
    errors: list[str] = field(default_factory=list)
    resume_at: dt.datetime | None = None
    transient: bool = False
    """A failure here may pass (database locked, platform 5xx): the scheduler retries soon."""

    def line(self) -> str:
        parts = [f"fetched {self.fetched}", f"new {self.new}", f"updated {self.updated}"]
        if self.kind == "refresh":
            parts.append(f"deleted {self.deleted}")
        parts += [f"pages {self.pages}", f"gaps {self.gaps}"]
        if self.skipped:
            parts.append(f"skipped {self.skipped} malformed")
        text = f"{self.platform}: {self.status}: " + ", ".join(parts)
        if self.resume_at:
            text += f"; resumes after {self.resume_at:%Y-%m-%d %H:%M} UTC"
        if self.errors:
            text += f"; {self.errors[0]}"
        return text


def _status(ok: int, failed: int, limited: int) -> str:
    if failed and not ok and not limited:
        return "failed"
    if failed:
        return "partial"
    if limited:
        return "rate_limited"
    return "ok"


def collect_platform(
    db: Database,
    adapter: Adapter,
    *,
    tagger: TaggerLike | None = None,
    since: dt.datetime | None = None,
    clock: Clock = utcnow,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    privacy: Privacy | None = None,
) -> PlatformResult:
    """Poll every stream of one platform from its cursor; store page by page.

    `stop` (set by a SIGTERM handler) ends the run cleanly after the page being stored: the
    cursor is where the committed pages put it, so the next run continues from there.
    """
    platform = adapter.platform
    result = PlatformResult(platform)
    with db.write() as session:
        result.run_id = start_run(session, platform, "collect", clock())
    ok = failed = limited = 0
    stopped = False
    try:
        for stream in adapter.streams():
            if stop is not None and stop.is_set():
                stopped = True
                break
            outcome = _collect_stream(db, adapter, stream, result, tagger, since, clock, progress, stop,
                                      privacy)
            ok += outcome == "ok"
            failed += outcome == "failed"
            limited += outcome == "rate_limited"
            stopped = stopped or outcome == "stopped"
    except BaseException as exc:  # interrupted (Ctrl-C, SIGTERM): record it, then stop
        with db.write() as session:
            finish_run(session, result.run_id, "interrupted", clock(), error=type(exc).__name__)
        raise
    result.status = "stopped" if stopped else _status(ok, failed, limited)
    with db.write() as session:
        finish_run(session, result.run_id, result.status, clock(),
                   error="; ".join(result.errors)[:2000] or None, resume_at=result.resume_at)
    if progress:
        progress("done", result)
    return result


def _collect_stream(
    db: Database, adapter: Adapter, stream: str, result: PlatformResult,
    tagger: TaggerLike | None, since: dt.datetime | None, clock: Clock, progress: Progress | None,
    stop: threading.Event | None = None,
    privacy: Privacy | None = None,
) -> str:
    platform = adapter.platform
    assert result.run_id is not None
    with db.read() as session:
        stored = get_cursor(session, platform, stream)
        cursor = stored.cursor if stored else None
        resume_at = stored.resume_at if stored else None
        completed_at = stored.updated_at if stored and stored.cursor else None
    now = clock()
    if resume_at is not None and resume_at > now:
        log.info("%s %s: rate limited until %s, not polled", platform, stream, resume_at.isoformat())
        result.deferred += 1
        result.resume_at = max(filter(None, (result.resume_at, resume_at)))
        return "rate_limited"
    oldest_stored: dt.datetime | None = None
    try:
        for page in adapter.fetch(stream, cursor, since):
            with db.write() as session:
                stored_page = ingest(session, page.posts, tagger, privacy=privacy)
                add_to_run(session, result.run_id, fetched=len(page.posts), new=stored_page.new,
                           updated=stored_page.updated, pages=1, requests=page.requests,
                           skipped=page.skipped + stored_page.skipped)
                if page.cursor is not None:
                    save_cursor(session, platform, stream, cursor=page.cursor, now=clock())
            result.fetched += len(page.posts)
            result.new += stored_page.new
            result.updated += stored_page.updated
            result.pages += 1
            result.requests += page.requests
            result.skipped += page.skipped + stored_page.skipped
            if page.oldest and (oldest_stored is None or page.oldest < oldest_stored):
                oldest_stored = page.oldest
            if progress:
                progress(stream, result)
            if stop is not None and stop.is_set():
                log.info("%s %s: stopping after a committed page", platform, stream)
                return "stopped"
    except RateLimited as exc:
        _stream_failed(db, platform, stream, result, exc, clock, completed_at, oldest_stored)
        with db.write() as session:
            save_cursor(session, platform, stream, resume_at=exc.resume_at, now=clock(),
                        cursor=cursor, keep_cursor=True)
        result.resume_at = max(filter(None, (result.resume_at, exc.resume_at)))
        return "rate_limited"
    except (PlatformError, TrackerError) as exc:
        _stream_failed(db, platform, stream, result, exc, clock, completed_at, oldest_stored)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a bug or surprise in one stream must not stop the rest
        log.exception("%s %s: unexpected error while collecting", platform, stream)
        _stream_failed(db, platform, stream, result, exc, clock, completed_at, oldest_stored)
        return "failed"
    with db.write() as session:
        resolve_gaps(session, platform, stream, clock())
        if resume_at is not None:
            save_cursor(session, platform, stream, resume_at=None, now=clock(), keep_cursor=True)
    return "ok"


def _stream_failed(
    db: Database, platform: str, stream: str, result: PlatformResult, exc: BaseException,
    clock: Clock, completed_at: dt.datetime | None, oldest_stored: dt.datetime | None,
) -> None:
    """Record the range this stream could not confirm as fetched: from its last completed poll
    (unknown on a first run) to now, or to the oldest post this run did store."""
    message = str(exc) if isinstance(exc, (PlatformError, TrackerError)) else f"{type(exc).__name__}: {exc}"
    message = redact(f"{stream}: {message}")  # a server may quote a secret back, in any encoding
    log.warning("%s: %s", platform, message)
    result.errors.append(message)
    result.transient = result.transient or is_transient(exc)
    result.gaps += 1
    now = clock()
    end = oldest_stored if oldest_stored and (completed_at is None or oldest_stored > completed_at) else now
    with db.write() as session:
        record_gap(session, platform, stream, start_at=completed_at, end_at=end,
                   reason=message[:2000], run_id=result.run_id, now=now)


def refresh_platform(
    db: Database,
    adapter: Adapter,
    *,
    max_age: dt.timedelta,
    tagger: TaggerLike | None = None,
    clock: Clock = utcnow,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    privacy: Privacy | None = None,
) -> PlatformResult:
    """Re-read the metrics of posts younger than `max_age`; mark the ones that are gone."""
    platform = adapter.platform
    result = PlatformResult(platform, kind="refresh")
    now = clock()
    with db.write() as session:
        result.run_id = start_run(session, platform, "refresh", now)
    status = "ok"
    try:
        with db.read() as session:
            batches = list(posts_to_refresh(session, platform, now - max_age))
        known = [KnownPost(*row) for batch in batches for row in batch]
        for refreshed in adapter.refresh(known) if known else ():
            with db.write() as session:
                stored = ingest(session, refreshed.posts, tagger, privacy=privacy)
                gone = mark_deleted(session, platform, refreshed.deleted, clock())
                if gone:
                    scrub_deleted_posts(session)  # gone from the platform: keep no text or author
                add_to_run(session, result.run_id, fetched=len(refreshed.posts), updated=stored.updated,
                           new=stored.new, pages=1, requests=refreshed.requests,
                           skipped=refreshed.skipped + stored.skipped)
            result.fetched += len(refreshed.posts)
            result.updated += stored.updated
            result.new += stored.new
            result.deleted += gone
            result.pages += 1
            result.requests += refreshed.requests
            result.skipped += refreshed.skipped + stored.skipped
            if progress:
                progress("refresh", result)
            if stop is not None and stop.is_set():
                status = "stopped"
                break
    except RateLimited as exc:
        status, result.resume_at = "rate_limited", exc.resume_at
        result.errors.append(redact(str(exc)))
    except (PlatformError, TrackerError) as exc:
        status = "failed"
        result.errors.append(redact(str(exc)))
        result.transient = is_transient(exc)
    except Exception as exc:  # noqa: BLE001
        log.exception("%s: unexpected error while refreshing metrics", platform)
        status = "failed"
        result.errors.append(redact(f"{type(exc).__name__}: {exc}"))
    except BaseException as exc:
        with db.write() as session:
            finish_run(session, result.run_id, "interrupted", clock(), error=type(exc).__name__)
        raise
    result.status = status
    with db.write() as session:
        finish_run(session, result.run_id, status, clock(), error="; ".join(result.errors)[:2000] or None,
                   resume_at=result.resume_at)
    if progress:
        progress("done", result)
    return result


def run_collection(
    db: Database,
    adapters: Sequence[Adapter],
    *,
    tagger: TaggerLike | None = None,
    since: dt.datetime | None = None,
    clock: Clock = utcnow,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    privacy: Privacy | None = None,
) -> list[PlatformResult]:
    """One round over the platforms; one failing platform never stops the others."""
    return [collect_platform(db, a, tagger=tagger, since=since, clock=clock, progress=progress, stop=stop,
                             privacy=privacy)
            for a in adapters]


def run_refresh(
    db: Database,
    adapters: Sequence[Adapter],
    settings: Settings,
    *,
    tagger: TaggerLike | None = None,
    clock: Clock = utcnow,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> list[PlatformResult]:
    max_age = dt.timedelta(days=settings.schedule.refresh_max_age_days)
    return [refresh_platform(db, a, max_age=max_age, tagger=tagger, clock=clock, progress=progress, stop=stop,
                             privacy=settings.privacy)
            for a in adapters]


__all__ = ["AuthFailed", "PlatformResult", "collect_platform", "refresh_platform", "run_collection",
           "run_refresh"]
