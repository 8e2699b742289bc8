"""Collection health for `tracker status` and the weekly email: runs, next due, gaps, totals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from storage.db import Database
from storage.queries import last_runs, open_gaps, post_totals, posts_per_stop
from storage.runs import INTERRUPTED, cursors, run_is_dead
from tracker.errors import TrackerError
from tracker.forgotten import key_from_environment, require_key
from tracker.platforms.registry import PLATFORMS
from tracker.schedule import collect_interval, next_due
from tracker.settings import Settings


def collection_status(db: Database, settings: Settings, now: dt.datetime | None = None) -> dict[str, Any]:
    """A run still 'running' whose process is gone (kill -9) shows as 'interrupted' (the next
    run records it so)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with db.read() as session:
        runs = {(r.platform, r.kind): r for r in last_runs(session)}
        resume: dict[str, dt.datetime] = {}
        for c in cursors(session):
            if c.resume_at and c.resume_at > now:
                resume[c.platform] = max(resume.get(c.platform, c.resume_at), c.resume_at)
        gaps = open_gaps(session)
        by_platform = post_totals(session)
        per_stop = posts_per_stop(session)
        warnings = []
        try:  # a list of forgotten people that cannot be read stops every collection: say so here
            require_key(session, key_from_environment(), doing="collection, refresh and import refuse to store",
                        nothing="nothing is stored until then")
        except TrackerError as exc:
            warnings.append(str(exc))
    intervals = {"collect": collect_interval(settings, now),
                 "refresh": dt.timedelta(minutes=settings.schedule.refresh_every_minutes)}
    platforms = []
    for platform in PLATFORMS:
        enabled = getattr(settings.platforms, platform).enabled
        for kind in ("collect", "refresh"):
            run = runs.get((platform, kind))
            dead = run is not None and run_is_dead(run, now)
            if run is None and not enabled:
                continue
            platforms.append({
                "platform": platform, "enabled": enabled, "kind": kind,
                "started": run.started_at if run else None,
                "finished": run.finished_at if run else None,
                "status": ("interrupted" if dead else run.status) if run else "never run",
                "fetched": run.fetched if run else 0, "new": run.new if run else 0,
                "pages": run.pages if run else 0, "error": (INTERRUPTED if dead else run.error) if run else None,
                "next_due": next_due(run.started_at if run else None, intervals[kind], resume.get(platform))
                if enabled else None,
            })
    total = sum(by_platform.values())
    with_visit = sum(count for stop, count in per_stop.items() if stop is not None)
    return {
        "warnings": warnings,
        "platforms": platforms,
        "gaps": [{"platform": g.platform, "stream": g.stream, "start": g.start_at, "end": g.end_at,
                  "recorded": g.recorded_at, "reason": g.reason} for g in gaps],
        "totals": {"posts": total, "by_platform": by_platform,
                   "with_visit": with_visit, "without_visit": total - with_visit},
    }
