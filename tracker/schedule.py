"""When work is due: polling is denser around visits; rate limits push the next poll back;
a job that failed for a passing reason is tried again soon, backing off."""

from __future__ import annotations

import datetime as dt

from tracker.errors import DatabaseUnavailable
from tracker.platforms.base import FetchFailed
from tracker.settings import Settings

RETRY_FIRST = dt.timedelta(minutes=1)
RETRY_MAX = dt.timedelta(hours=1)


def visit_days(settings: Settings) -> set[dt.date]:
    """Local dates with dense polling: each visit day and the day after."""
    days: set[dt.date] = set()
    for stop in settings.tour.stops:
        if stop.date is not None:
            days.update({stop.date, stop.date + dt.timedelta(days=1)})
    return days


def collect_interval(settings: Settings, now: dt.datetime) -> dt.timedelta:
    today = now.astimezone(settings.campaign.tz).date()
    minutes = (settings.schedule.visit_collect_every_minutes if today in visit_days(settings)
               else settings.schedule.collect_every_minutes)
    return dt.timedelta(minutes=minutes)


def next_due(
    last_started: dt.datetime | None, interval: dt.timedelta, resume_at: dt.datetime | None = None
) -> dt.datetime | None:
    """None means 'now' (never run). A rate limit's resume time wins when it is later."""
    due = None if last_started is None else last_started + interval
    if resume_at is not None and (due is None or resume_at > due):
        return resume_at
    return due


def is_transient(exc: BaseException) -> bool:
    """True for a failure that waiting may cure: the database locked, unreachable or full, or a
    platform that kept answering 5xx / timing out until the retries ran out. Bad credentials,
    a read-only database or a bug are not (they wait for their normal interval)."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.transient
    return isinstance(exc, FetchFailed) and exc.transient


def retry_delay(failures: int, interval: dt.timedelta, first: dt.timedelta = RETRY_FIRST) -> dt.timedelta:
    """Wait before retry number `failures` (1, 2, ...) of a job that runs every `interval`:
    1, 2, 4, 8 ... minutes (`first`, doubling), capped at half the interval and at an hour, so
    a retry always comes well before the next regular run."""
    cap = max(first, min(RETRY_MAX, interval / 2))
    return min(cap, first * 2 ** max(0, min(failures - 1, 20)))
