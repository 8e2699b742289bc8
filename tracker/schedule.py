"""When work is due: polling is denser around visits; rate limits push the next poll back."""

from __future__ import annotations

import datetime as dt

from tracker.settings import Settings


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
