"""The tour schedule as people read it: each stop's window and where it stands today."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.areas import AREAS
from tracker.settings import Settings, Stop


@dataclass(frozen=True, slots=True)
class StopView:
    number: int
    id: str
    area: str
    area_name: str
    date: dt.date | None
    window_start: dt.date | None
    window_end: dt.date | None
    city: str | None
    venue: str | None
    status: str
    """'date missing', 'upcoming', 'in window', 'visit day', 'done'."""

    def as_dict(self) -> dict[str, object]:
        return {
            "number": self.number, "id": self.id, "area": self.area, "area_name": self.area_name,
            "date": _iso(self.date), "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end), "city": self.city, "venue": self.venue,
            "status": self.status,
        }


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def window(stop: Stop, days_before: int, days_after: int) -> tuple[dt.date, dt.date] | None:
    """The local dates (inclusive) whose posts can belong to this visit; None if no date yet."""
    if stop.date is None:
        return None
    return stop.date - dt.timedelta(days=days_before), stop.date + dt.timedelta(days=days_after)


def status(stop: Stop, today: dt.date, days_before: int, days_after: int) -> str:
    span = window(stop, days_before, days_after)
    if span is None or stop.date is None:
        return "date missing"
    if today == stop.date:
        return "visit day"
    if today < span[0]:
        return "upcoming"
    if today > span[1]:
        return "done"
    return "in window"


def local_today(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(settings.campaign.tz).date()


def tour_view(settings: Settings, today: dt.date | None = None) -> list[StopView]:
    """Stops in settings order with windows and status (today in the campaign's timezone)."""
    today = today or local_today(settings)
    before, after = settings.tagging.days_before, settings.tagging.days_after
    views = []
    for number, stop in enumerate(settings.tour.stops, start=1):
        span = window(stop, before, after)
        views.append(
            StopView(
                number=number, id=stop.id, area=stop.area,
                area_name=AREAS[stop.area].name(settings.campaign.language),
                date=stop.date, window_start=span[0] if span else None,
                window_end=span[1] if span else None, city=stop.city, venue=stop.venue,
                status=status(stop, today, before, after),
            )
        )
    return views
