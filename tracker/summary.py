"""Engagement and reach per visit: the public API behind `tracker summary`, exports and reports.

The database does the heavy lifting (storage/summary_queries.py returns small grouped frames);
this module turns them into the shapes people and the weekly email use. Every figure is defined
in docs/figures.md. `period` is an optional (start, end) pair of aware datetimes (end exclusive)
selecting posts by creation time, e.g. one week for a weekly email.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import pandas as pd
from sqlalchemy.engine import Connection

from storage import summary_queries as q
from storage.db import Database
from tracker.areas import AREAS
from tracker.errors import TrackerError
from tracker.settings import Settings

Period = tuple[dt.datetime | None, dt.datetime | None]
T = TypeVar("T")

NUMERIC = ("posts", "originals", "reposts", "replies", "quotes", "unique_authors", "likes", "shares",
           "reply_count", "quote_count", "engagement", "impressions", "potential_reach")
"""The figures of a visit, of each platform within it, of a day and of the campaign."""
VISIT_KEYS = ("stop", "area", "date", *NUMERIC, "by_platform")
"""Exactly the keys of one `visit_summaries` item (and of `tracker summary --format json`)."""
AGES: dict[str, dt.timedelta] = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}
"""The fixed ages at which engagement is compared between visits."""


class UnknownStopError(TrackerError):
    """A stop id that is not in the settings' tour."""

    exit_code = 2


# -- helpers ------------------------------------------------------------------------------------


def post_filter(settings: Settings, platform: str | None = None, period: Period | None = None,
                stop: str | None = None, no_visit: bool = False) -> q.PostFilter:
    """The storage filter for these settings (current stops, timezone) and options."""
    start, end = period or (None, None)
    for name, value in (("start", start), ("end", end)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"period {name} must be timezone-aware")
    if stop is not None:
        check_stop(settings, stop)
    return q.PostFilter(
        stops=tuple(s.id for s in settings.tour.stops), tz=settings.campaign.tz, platform=platform,
        start=start.astimezone(dt.timezone.utc) if start else None,
        end=end.astimezone(dt.timezone.utc) if end else None,
        stop=stop, no_visit=no_visit,
    )


def check_stop(settings: Settings, stop: str) -> None:
    """Raise UnknownStopError naming the known ids when `stop` is not a tour stop."""
    ids = [s.id for s in settings.tour.stops]
    if stop not in ids:
        raise UnknownStopError(f"unknown stop '{stop}' (tour stops: {', '.join(ids) or 'none'})")


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return int(value)


def empty_figures() -> dict[str, int | None]:
    """The figures of a group with no posts: zeros, and no impressions (unknown, not 0)."""
    figures: dict[str, int | None] = dict.fromkeys(NUMERIC, 0)
    figures["impressions"] = None
    return figures


def _add(into: dict[str, int | None], other: Mapping[str, int | None]) -> None:
    """Add figures; impressions stay None until some part reports them."""
    for key in NUMERIC:
        a, b = into.get(key), other.get(key)
        into[key] = a if b is None else b if a is None else a + b


def _rows(posts: pd.DataFrame, authors: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], dict[str, int | None]]:
    """Join post and author frames into {key tuple: figures}."""
    out: dict[tuple[Any, ...], dict[str, int | None]] = {}
    for rec in posts.to_dict("records"):
        fig = empty_figures()
        for name in ("posts", "originals", "reposts", "replies", "quotes", "likes", "shares",
                     "reply_count", "quote_count"):
            fig[name] = _int(rec[name]) or 0
        fig["engagement"] = sum(fig[k] or 0 for k in ("likes", "shares", "reply_count", "quote_count"))
        fig["impressions"] = _int(rec["impressions"])
        out[tuple(_key(rec[k]) for k in keys)] = fig
    for rec in authors.to_dict("records"):
        fig = out.setdefault(tuple(_key(rec[k]) for k in keys), empty_figures())
        fig["unique_authors"] = _int(rec["unique_authors"]) or 0
        fig["potential_reach"] = _int(rec["potential_reach"]) or 0
    return out


def _key(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _ordered(fig: Mapping[str, int | None]) -> dict[str, int | None]:
    return {k: fig[k] for k in NUMERIC}


def run_queries(db: Database, *jobs: Callable[[Connection], T]) -> list[T]:
    """Run independent read queries at once, each on its own connection, and wait for all.

    Each query is one full scan of the posts; the database (and SQLite's C code, which releases
    the GIL) runs them in parallel, so a summary takes about as long as its slowest query.
    Queries on separate connections may see a collection commit that landed in between; a
    summary can then be off by the posts of that one commit. An in-memory SQLite database (one
    per connection) runs them one after the other.
    """
    if len(jobs) <= 1 or db.engine.url.database in (None, "", ":memory:"):
        with db.engine.connect() as conn:
            return [job(conn) for job in jobs]

    def run(job: Callable[[Connection], T]) -> T:
        with db.engine.connect() as conn:
            return job(conn)

    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="summary") as pool:
        return list(pool.map(run, jobs))


MAX_SLICES = 4


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def in_slices(db: Database, f: q.PostFilter, job: Callable[[Connection, q.PostFilter], T],
              slices: int | None = None) -> list[T]:
    """`job` over slices of the posts (by id, `q.id_slices`), at once on separate connections.

    Every figure is a sum over posts (or a union of author ids), so the slices' results add up
    to the whole (`q.add_frames`, `q.combine_figures`). One slice per CPU (at most MAX_SLICES),
    none below `q.SLICE_MIN_IDS` posts: on a small database this is one plain query. Slices
    may see a commit landing between them, as `run_queries` says.
    """
    with db.engine.connect() as conn:
        ranges = q.id_slices(conn, slices or min(_cpus(), MAX_SLICES))
    return run_queries(db, *[lambda conn, part=replace(f, ids=ids): job(conn, part) for ids in ranges])


def safe_url(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) link, else None (javascript:, data: etc. are dropped)."""
    if not url or not isinstance(url, str):
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    return url


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, None when undefined."""
    if part is None or not whole:
        return None
    return part / whole


# -- the campaign summary -------------------------------------------------------------------------


def _group_figures(db: Database, f: q.PostFilter, by: list[q.Key]) -> q.GroupFigures:
    """`q.group_figures` with the scan in slices. The authors are read after every slice, so
    each author a slice saw is there (an author is stored before their posts)."""
    parts = in_slices(db, f, lambda conn, g: q.post_figures(conn, g, by, author_ids=True))
    with db.engine.connect() as conn:
        authors = q.author_table(conn)
    return q.combine_figures(parts, authors, by)


@dataclass
class CampaignSummary:
    """Every visit's figures plus the campaign totals and the posts with no visit, from one scan."""

    visits: list[dict[str, Any]]
    """In tour order, every stop in the settings; the shape of `VISIT_KEYS`."""
    no_visit: dict[str, Any]
    totals: dict[str, Any]
    """Whole campaign (visits and no visit); an author counted once however many visits."""


def summarise(db: Database, settings: Settings, platform: str | None = None,
              period: Period | None = None) -> CampaignSummary:
    """Compute every visit's figures (with per-platform parts), the no-visit posts and totals."""
    f = post_filter(settings, platform, period)
    found = _group_figures(db, f, ["stop", "platform"])
    by_visit = _rows(found.posts, found.authors, ["stop", "platform"])
    groups: dict[Any, dict[str, Any]] = {}
    for (stop, plat), fig in sorted(by_visit.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        group = groups.setdefault(stop, {**empty_figures(), "by_platform": {}})
        group["by_platform"][plat] = _ordered(fig)
        _add(group, fig)
    visits = []
    for stop in settings.tour.stops:
        group = groups.get(stop.id, {**empty_figures(), "by_platform": {}})
        visits.append({"stop": stop.id, "area": stop.area, "date": stop.date.isoformat() if stop.date else None,
                       **_ordered(group), "by_platform": group["by_platform"]})
    no_visit = groups.get(None, {**empty_figures(), "by_platform": {}})
    no_visit = {**_ordered(no_visit), "by_platform": no_visit["by_platform"]}
    totals: dict[str, Any] = {**empty_figures(), "by_platform": {}}
    for group in [*visits, no_visit]:
        for plat, fig in group["by_platform"].items():
            _add(totals["by_platform"].setdefault(plat, empty_figures()), fig)
    reach = {r["platform"]: r for r in found.campaign.to_dict("records")}
    for plat, fig in totals["by_platform"].items():
        fig["unique_authors"] = _int(reach.get(plat, {}).get("unique_authors")) or 0
        fig["potential_reach"] = _int(reach.get(plat, {}).get("potential_reach")) or 0
        _add(totals, fig)
    totals["by_platform"] = {p: _ordered(totals["by_platform"][p]) for p in sorted(totals["by_platform"])}
    totals = {**_ordered(totals), "by_platform": totals["by_platform"]}
    return CampaignSummary(visits=visits, no_visit=no_visit, totals=totals)


def visit_summaries(db: Database, settings: Settings, stop: str | None = None, platform: str | None = None,
                    period: Period | None = None) -> list[dict[str, Any]]:
    """One dict per tour stop (tour order, stops without posts included) with `VISIT_KEYS`."""
    if stop is not None:
        check_stop(settings, stop)
    visits = summarise(db, settings, platform, period).visits
    return [v for v in visits if stop is None or v["stop"] == stop]


def campaign_totals(db: Database, settings: Settings, platform: str | None = None,
                    period: Period | None = None) -> dict[str, Any]:
    """Campaign figures, with `by_platform`, `no_visit` (same figures) and visit counts."""
    summary = summarise(db, settings, platform, period)
    return {**summary.totals, "no_visit": summary.no_visit, "visits": len(summary.visits),
            "visits_with_posts": sum(1 for v in summary.visits if v["posts"])}


def visit_rows(summary: CampaignSummary, settings: Settings,
               at_age: Mapping[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Flat rows for tables and spreadsheets: the visit figures plus derived ones.

    Adds area_name (campaign language), engagement_per_post, share_posts, share_engagement
    (of the campaign totals, no-visit posts included), rank (by engagement) and, when given,
    engagement at each age with the number of posts it covers.
    """
    totals = summary.totals
    ranks = {r["stop"]: r["rank"] for r in _ranking(summary.visits, "engagement")}
    ages = {label: {r["stop"]: r for r in rows} for label, rows in (at_age or {}).items()}
    rows = []
    for v in summary.visits:
        row = {k: v[k] for k in VISIT_KEYS if k != "by_platform"}
        row["area_name"] = AREAS[v["area"]].name(settings.campaign.language)
        row.update(derived_figures(v, totals))
        row["rank"] = ranks[v["stop"]]
        for label, by_stop in ages.items():
            age = by_stop.get(v["stop"], {})
            row[f"engagement_{label}"] = age.get("engagement")
            row[f"posts_covered_{label}"] = age.get("covered", 0)
            row[f"engagement_per_post_{label}"] = age.get("engagement_per_post")
        rows.append(row)
    return rows


def derived_figures(fig: Mapping[str, Any], totals: Mapping[str, Any]) -> dict[str, float | None]:
    """Engagement per post and the shares of the campaign's posts and engagement."""
    return {"engagement_per_post": ratio(fig["engagement"], fig["posts"]),
            "share_posts": ratio(fig["posts"], totals["posts"]),
            "share_engagement": ratio(fig["engagement"], totals["engagement"])}


def _ranking(visits: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Visits best first by `by` (ties: more posts, then tour order); equal values share a rank."""
    order = sorted(range(len(visits)), key=lambda i: (-(visits[i][by] or 0), -visits[i]["posts"], i))
    ranked, previous, rank = [], None, 0
    for position, i in enumerate(order, start=1):
        value = visits[i][by] or 0
        if value != previous:
            rank, previous = position, value
        ranked.append({"rank": rank, **visits[i]})
    return ranked


def visit_ranking(db: Database, settings: Settings, by: str = "engagement", platform: str | None = None,
                  period: Period | None = None) -> list[dict[str, Any]]:
    """Every visit ranked by one figure (default engagement), with its shares of the campaign."""
    if by not in NUMERIC:
        raise ValueError(f"cannot rank by {by!r} (one of {', '.join(NUMERIC)})")
    summary = summarise(db, settings, platform, period)
    return [{**r, **derived_figures(r, summary.totals)} for r in _ranking(summary.visits, by)]


# -- engagement at a fixed age -------------------------------------------------------------------


def engagement_at_ages(db: Database, settings: Settings,
                       ages: Iterable[str] | Mapping[str, dt.timedelta] = tuple(AGES), stop: str | None = None,
                       platform: str | None = None, period: Period | None = None,
                       now: dt.datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per age label, per visit: engagement as it stood that long after each post was made.

    Lets an early and a late visit be compared fairly. `covered` counts the posts with a
    snapshot at or before that age (posts younger than the age are not covered yet); `posts` is
    all the visit's posts. Stops in tour order. All ages come from one pass over the posts.
    """
    spans = dict(ages) if isinstance(ages, Mapping) else {label: AGES[label] for label in ages}
    now = now or dt.datetime.now(dt.timezone.utc)
    f = post_filter(settings, platform, period, stop)
    frame = q.add_frames(in_slices(db, f, lambda conn, g: q.figures_at_ages(conn, g, ["stop"], spans, now)), ["stop"])
    by_stop = {_key(r["stop"]): r for r in frame.to_dict("records")}
    counts = {stop_id: _int(r["posts"]) or 0 for stop_id, r in by_stop.items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for label, span in spans.items():
        rows = []
        for s in settings.tour.stops:
            if stop is not None and s.id != stop:
                continue
            rec = by_stop.get(s.id, {})
            covered = _int(rec.get(f"covered_{label}")) or 0
            engagement = _int(rec.get(f"engagement_{label}")) or 0
            rows.append({"stop": s.id, "area": s.area, "age_hours": span.total_seconds() / 3600,
                         "posts": counts.get(s.id, 0), "covered": covered, "engagement": engagement,
                         "engagement_per_post": ratio(engagement, covered)})
        out[label] = rows
    return out


def engagement_at_age(db: Database, settings: Settings, age: dt.timedelta | str = "24h",
                      stop: str | None = None, platform: str | None = None, period: Period | None = None,
                      now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """`engagement_at_ages` for one age ("24h", "7d" or any timedelta)."""
    label = age if isinstance(age, str) else f"{age.total_seconds() / 3600:g}h"
    span = AGES[age] if isinstance(age, str) else age
    return engagement_at_ages(db, settings, {label: span}, stop, platform, period, now)[label]


# -- days ----------------------------------------------------------------------------------------


def _date_range(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def _period_days(settings: Settings, period: Period | None) -> tuple[dt.date | None, dt.date | None]:
    start, end = period or (None, None)
    tz = settings.campaign.tz
    first = start.astimezone(tz).date() if start else None
    last = (end - dt.timedelta(microseconds=1)).astimezone(tz).date() if end else None
    return first, last


def posts_per_day(db: Database, settings: Settings, platform: str | None = None,
                  period: Period | None = None) -> list[dict[str, Any]]:
    """Posts and engagement per local day over the tour, with the visits of each day marked.

    Days run from the first to the last day with posts (or the period's days), zeros filled in.
    `visits` lists the stop ids whose visit date is that day; `no_visit` counts that day's posts
    not attributed to any visit.
    """
    f = post_filter(settings, platform, period)
    frame = q.add_frames(in_slices(db, f, q.daily_counts), ["day", "platform"])
    days: dict[dt.date, dict[str, Any]] = {}
    for rec in frame.to_dict("records"):
        day = days.setdefault(rec["day"], {"posts": 0, "engagement": 0, "no_visit": 0, "by_platform": {}})
        posts = _int(rec["posts"]) or 0
        day["posts"] += posts
        day["engagement"] += _int(rec["engagement"]) or 0
        day["no_visit"] += _int(rec["no_visit"]) or 0
        day["by_platform"][rec["platform"]] = posts
    first, last = _period_days(settings, period)
    first = first or (min(days) if days else None)
    last = last or (max(days) if days else None)
    if first is None or last is None:
        return []
    visit_days: dict[dt.date, list[str]] = {}
    for s in settings.tour.stops:
        if s.date is not None:
            visit_days.setdefault(s.date, []).append(s.id)
    return [
        {"date": d, **days.get(d, {"posts": 0, "engagement": 0, "no_visit": 0, "by_platform": {}}),
         "visits": visit_days.get(d, [])}
        for d in _date_range(first, last)
    ]


def visit_days(db: Database, settings: Settings, stop: str, platform: str | None = None,
               period: Period | None = None) -> list[dict[str, Any]]:
    """A visit's figures per local day: every day of its window, plus any other day it has posts."""
    f = post_filter(settings, platform, period, stop)
    found = _group_figures(db, f, ["day"])
    figures = _rows(found.posts, found.authors, ["day"])
    s = settings.tour.get(stop)
    days = set(d for (d,) in figures)
    if s.date is not None:
        days.update(_date_range(s.date - dt.timedelta(days=settings.tagging.days_before),
                                s.date + dt.timedelta(days=settings.tagging.days_after)))
    return [{"date": d, "visit_day": d == s.date, **_ordered(figures.get((d,), empty_figures()))}
            for d in sorted(days)]


# -- top lists ----------------------------------------------------------------------------------


def _stop_area(settings: Settings) -> dict[str | None, str | None]:
    return {s.id: s.area for s in settings.tour.stops}


def top_posts(db: Database, settings: Settings, n: int = 10, stop: str | None = None,
              platform: str | None = None, period: Period | None = None) -> list[dict[str, Any]]:
    """The most engaging posts (likes + reposts + replies + quotes), with links (http(s) only)."""
    f = post_filter(settings, platform, period, stop)
    with db.engine.connect() as conn:
        frame = q.top_posts(conn, f, n)
    areas = _stop_area(settings)
    rows = []
    for rank, rec in enumerate(frame.to_dict("records"), start=1):
        stop_id = _key(rec["stop"])
        rows.append({
            "rank": rank, "post_id": int(rec["post_id"]), "platform": rec["platform"],
            "url": safe_url(rec["url"]), "created_at": rec["created_at"], "kind": rec["kind"],
            "text": _key(rec["text"]) or "", "stop": stop_id, "area": areas.get(stop_id),
            "author_handle": _key(rec["author_handle"]), "author_name": _key(rec["author_name"]),
            "author_url": safe_url(_key(rec["author_url"])), "author_followers": _int(rec["author_followers"]),
            **{k: _int(rec[k]) for k in ("likes", "shares", "reply_count", "quote_count", "impressions")},
            "engagement": _int(rec["engagement"]) or 0,
        })
    return rows


def top_authors(db: Database, settings: Settings, by: Literal["posts", "reach"] = "posts", n: int = 10,
                stop: str | None = None, platform: str | None = None,
                period: Period | None = None) -> list[dict[str, Any]]:
    """Authors with the most posts (`by="posts"`) or the most followers (`by="reach"`)."""
    if by not in ("posts", "reach"):
        raise ValueError(f"top authors by 'posts' or 'reach', not {by!r}")
    f = post_filter(settings, platform, period, stop)
    with db.engine.connect() as conn:
        frame = q.top_authors(conn, f, n, by)
    return [
        {"rank": rank, "platform": rec["platform"], "handle": _key(rec["handle"]),
         "display_name": _key(rec["display_name"]), "url": safe_url(_key(rec["url"])),
         "followers": _int(rec["followers"]), "posts": _int(rec["posts"]) or 0,
         "engagement": _int(rec["engagement"]) or 0}
        for rank, rec in enumerate(frame.to_dict("records"), start=1)
    ]
