"""SQL for engagement and reach summaries: every figure is computed here, in one pass per summary.

Summaries must stay fast on a million posts (tests/benchmarks/bench_summary.py), so nothing here
returns one row per post except the export stream: counts and sums are GROUP BYs, results are
small DataFrames keyed by visit, platform and/or local day. Unique authors and potential reach
come from the same scan as the post counts: each group's author ids come back as one text
value and numpy counts the distinct ones and adds their latest follower counts
(`group_figures`; a second GROUP BY over (visit, author) pairs cost more than everything else).
Engagement at fixed ages probes the snapshots' primary key once per post and age
(`figures_at_ages`). Every query can run on a slice of the posts by id (`PostFilter.ids`,
`id_slices`), so tracker/summary.py runs one summary on several connections at once.

Rules shared by every query (see docs/figures.md):
- deleted posts (`deleted_at` set) are left out;
- a post's visit is its attribution's stop when that stop is one of the current tour stops;
  no attribution row, a NULL stop, or a stop no longer in the settings all mean "no visit" (NULL);
- a post's metrics are its latest snapshot (the columns on `posts`);
- local days are calendar dates of `created_at` in the campaign timezone.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Date, Select, Text, and_, case, cast, func, literal, literal_column, null, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from storage.models import Attribution, Author, MetricSnapshot, Post, PostArea

Key = Literal["stop", "platform", "day"]
KINDS = ("original", "repost", "reply", "quote")
SLICE_MIN_IDS = 100_000
"""A slice of a summary spans at least this many post ids: smaller databases get one query."""

_p = Post.__table__
_a = Attribution.__table__
_au = Author.__table__
_s = MetricSnapshot.__table__
_pa = PostArea.__table__


@dataclass(frozen=True)
class PostFilter:
    """Which live posts a summary covers. `start`/`end` are UTC; `end` is exclusive."""

    stops: Sequence[str] = ()
    """The current tour's stop ids: attributions to any other stop count as no visit."""
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    """Campaign timezone: local days are dates in it."""
    platform: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    stop: str | None = None
    """Only posts of this visit."""
    no_visit: bool = False
    """Only posts with no visit."""
    ids: tuple[int | None, int | None] = (None, None)
    """Only posts with ids[0] <= id < ids[1] (None: unbounded): one slice of a summary that runs
    on several connections at once (`id_slices`)."""


def id_slices(conn: Connection, parts: int, min_size: int | None = None) -> list[tuple[int | None, int | None]]:
    """Split the posts by id into at most `parts` ranges of at least `min_size` (default
    SLICE_MIN_IDS) ids.

    The first range has no lower bound and the last no upper one, so together they cover every
    post, including any stored meanwhile. The figures of a summary are sums over posts, or
    (authors) unions of id lists, so slices can run on separate connections at the same time and
    be added up (tracker/summary.py).
    """
    lo, hi = conn.execute(select(func.min(_p.c.id), func.max(_p.c.id))).one()
    if lo is None:
        return [(None, None)]
    span = hi - lo + 1
    parts = max(1, min(parts, span // max(min_size or SLICE_MIN_IDS, 1)))
    cuts = [lo + span * n // parts for n in range(1, parts)]
    return list(zip([None, *cuts], [*cuts, None]))


# -- building blocks ----------------------------------------------------------------------------


def _visit(f: PostFilter) -> ColumnElement[Any]:
    """The post's visit id among the current stops, else NULL."""
    return case((_a.c.stop_id.in_(list(f.stops)), _a.c.stop_id), else_=None)


def _where(f: PostFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [_p.c.deleted_at.is_(None)]
    if f.platform is not None:
        where.append(_p.c.platform == f.platform)
    if f.start is not None:
        where.append(_p.c.created_at >= f.start)
    if f.end is not None:
        where.append(_p.c.created_at < f.end)
    if f.stop is not None:
        where.append(_a.c.stop_id == f.stop)
        where.append(_a.c.stop_id.in_(list(f.stops)))
    if f.no_visit:
        where.append(_visit(f).is_(None))
    if f.ids[0] is not None:
        where.append(_p.c.id >= f.ids[0])
    if f.ids[1] is not None:
        where.append(_p.c.id < f.ids[1])
    return where


def _from(f: PostFilter) -> Any:
    on = [_a.c.post_id == _p.c.id]
    # A slice's id range again on the attributions (redundant, but PostgreSQL does not carry a
    # range across a join: without it every slice would hash all attributions).
    if f.ids[0] is not None:
        on.append(_a.c.post_id >= f.ids[0])
    if f.ids[1] is not None:
        on.append(_a.c.post_id < f.ids[1])
    return _p.outerjoin(_a, and_(*on))


def engagement_expr(table: Any = _p) -> ColumnElement[Any]:
    """likes + reposts + replies + quotes of one row, unknown counted as 0."""
    return (func.coalesce(table.c.likes, 0) + func.coalesce(table.c.reposts, 0)
            + func.coalesce(table.c.replies, 0) + func.coalesce(table.c.quotes, 0))


def _sum(expr: Any) -> ColumnElement[Any]:
    """SUM as a plain integer (PostgreSQL's SUM(bigint) is numeric, which arrives as Decimal)."""
    return cast(func.sum(expr), BigInteger)


def _utc_offsets(tz: ZoneInfo, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime | None, int]]:
    """[(until_utc, offset_seconds), ...] covering start..end; the last `until` is None.

    Python knows the timezone rules, SQLite does not: the SQL turns these into a CASE.
    """
    step = dt.timedelta(hours=6)
    t = start - dt.timedelta(days=1)
    stop = end + dt.timedelta(days=1)
    segments: list[tuple[dt.datetime | None, int]] = []
    current = int(t.astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
    while t < stop:
        nxt = t + step
        offset = int(nxt.astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        if offset != current:
            lo, hi = t, nxt  # offset(lo) == current, offset(hi) == offset: find the change
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if int(mid.astimezone(tz).utcoffset().total_seconds()) == current:  # type: ignore[union-attr]
                    lo = mid
                else:
                    hi = mid
            segments.append((hi.replace(microsecond=0), current))
            current = offset
        t = nxt
    segments.append((None, current))
    return segments


def local_day(conn: Connection, f: PostFilter) -> ColumnElement[Any]:
    """SQL for the local calendar date of posts.created_at in the campaign timezone."""
    if conn.dialect.name == "postgresql":
        return cast(func.timezone(f.tz.key, _p.c.created_at), Date)
    span = conn.execute(select(func.min(_p.c.created_at), func.max(_p.c.created_at))).one()
    if span[0] is None:
        return func.date(_p.c.created_at)
    segments = _utc_offsets(f.tz, span[0], span[1])

    def modifier(seconds: int) -> ColumnElement[Any]:
        return literal(f"{seconds:+d} seconds")

    # Whole seconds only: SQLite rounds a time to milliseconds, so 23:59:59.9996 would land on
    # the next day.
    seconds = func.substr(_p.c.created_at, 1, 19)
    if len(segments) == 1:
        return func.date(seconds, modifier(segments[0][1]))
    whens = [(_p.c.created_at < until, modifier(off)) for until, off in segments[:-1]]
    return func.date(seconds, case(*whens, else_=modifier(segments[-1][1])))


def _visit_number(f: PostFilter) -> ColumnElement[Any]:
    """The post's visit as its position in `f.stops`, else NULL: a small integer groups faster
    than the id text (SQLite sorts to group). `_stop_ids` turns it back into the id."""
    if not f.stops:
        return null()
    return case({stop: n for n, stop in enumerate(f.stops)}, value=_a.c.stop_id, else_=null())


def _stop_ids(df: pd.DataFrame, f: PostFilter) -> pd.DataFrame:
    if "stop" in df.columns:
        df["stop"] = pd.Series([None if _key_value(n) is None else f.stops[int(n)] for n in df["stop"]],
                               index=df.index, dtype=object)
    return df


def _keys(conn: Connection, f: PostFilter, by: Sequence[Key]) -> list[ColumnElement[Any]]:
    """The SQL of each grouping key; a "stop" comes back as a number (`_stop_ids`)."""
    cols: list[ColumnElement[Any]] = []
    for key in by:
        if key == "stop":
            cols.append(_visit_number(f).label("stop"))
        elif key == "platform":
            cols.append(_p.c.platform.label("platform"))
        elif key == "day":
            cols.append(local_day(conn, f).label("day"))
        else:
            raise ValueError(f"unknown key {key!r}")
    return cols


def _tune(conn: Connection) -> None:
    """PostgreSQL, for this transaction only: no JIT, and room to group in memory.

    These plans cost enough to trigger JIT compilation with inlining and optimisation, ~0.4 s
    that buys nothing here; and with the default 4 MB `work_mem` the per-visit sort of the ages
    query spills to disk (docs/benchmarks.md).
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def _frame(conn: Connection, stmt: Select[Any]) -> pd.DataFrame:
    return pd.read_sql(stmt, conn)


def _fix_days(df: pd.DataFrame) -> pd.DataFrame:
    """SQLite gives 'YYYY-MM-DD' text, PostgreSQL dates: always Python dates."""
    if "day" in df.columns:
        df["day"] = [dt.date.fromisoformat(d) if isinstance(d, str) else d for d in df["day"]]
    return df


# -- figures -------------------------------------------------------------------------------------


def post_figures(conn: Connection, f: PostFilter, by: Sequence[Key], *, author_ids: bool = False) -> pd.DataFrame:
    """Post counts by kind and metric sums per group (one row per group that has posts).

    Columns: the keys, posts, originals, reposts, replies, quotes, likes, shares, reply_count,
    quote_count, impressions (NULL when no post of the group reports views), with_views; with
    `author_ids` also with_author (posts with an author) and author_ids (their author ids, one per
    post, comma-separated text: see `group_figures`).
    """
    _tune(conn)
    keys = _keys(conn, f, by)
    kinds = [_sum(case((_p.c.kind == kind, 1), else_=0)).label(name)
             for kind, name in zip(KINDS, ("originals", "reposts", "replies", "quotes"))]
    authors: list[ColumnElement[Any]] = []
    if author_ids:
        authors = [func.count(_p.c.author_id).label("with_author"), _id_list(conn, _p.c.author_id).label("author_ids")]
    stmt = (
        select(
            *keys,
            func.count().label("posts"),
            *kinds,
            func.coalesce(_sum(_p.c.likes), 0).label("likes"),
            func.coalesce(_sum(_p.c.reposts), 0).label("shares"),
            func.coalesce(_sum(_p.c.replies), 0).label("reply_count"),
            func.coalesce(_sum(_p.c.quotes), 0).label("quote_count"),
            _sum(_p.c.views).label("impressions"),
            func.count(_p.c.views).label("with_views"),
            *authors,
        )
        .select_from(_from(f))
        .where(*_where(f))
    )
    if keys:
        stmt = stmt.group_by(*keys)
    return _stop_ids(_fix_days(_frame(conn, stmt)), f)


def _id_list(conn: Connection, column: Any) -> ColumnElement[Any]:
    """The group's non-NULL values of an integer (or 'int,int' text) column as 'id,id,..' text
    (NULL when none)."""
    if conn.dialect.name == "postgresql":
        return func.string_agg(cast(column, Text), literal_column("','"))
    return func.group_concat(column)  # SQLite's default separator is ','


def _parse_ids(text: Any, expected: int) -> np.ndarray:
    if not expected or not isinstance(text, str):
        return np.empty(0, dtype=np.int64)
    ids = np.fromstring(text, dtype=np.int64, sep=",")  # C speed; text mode is not deprecated
    if len(ids) != expected:  # never expected: the slow, strict way
        ids = np.array(text.split(","), dtype=np.int64)
    return ids


@dataclass(frozen=True)
class AuthorTable:
    """Every stored author as arrays sorted by id: platform (code into `platforms`), follower
    count (-1: unknown)."""

    ids: np.ndarray
    platform: np.ndarray
    followers: np.ndarray
    platforms: list[str]

    @functools.cached_property
    def _position(self) -> np.ndarray | None:
        """id -> position (-1: no such author) when ids are dense enough for a plain array."""
        if not len(self.ids) or self.ids[0] < 0 or self.ids[-1] > 4 * len(self.ids) + 100_000:
            return None
        position = np.full(int(self.ids[-1]) + 1, -1, dtype=np.int64)
        position[self.ids] = np.arange(len(self.ids))
        return position

    def mark(self, ids: np.ndarray, into: np.ndarray) -> None:
        """Set `into` (a mask over these authors) where the ids name a stored author."""
        if self._position is not None:
            inside = ids[(ids >= 0) & (ids < len(self._position))]
            pos = self._position[inside]
            into[pos[pos >= 0]] = True
            return
        pos = np.searchsorted(self.ids, ids)
        found = pos < len(self.ids)
        found[found] = self.ids[pos[found]] == ids[found]
        into[pos[found]] = True

    def figures(self, chosen: np.ndarray, by_platform: bool) -> list[dict[str, Any]]:
        """unique_authors, potential_reach, with_followers of the authors in the mask `chosen`,
        per platform (with "platform") or all together."""
        masks = ([(name, chosen & (self.platform == code)) for code, name in enumerate(self.platforms)]
                 if by_platform else [(None, chosen)])
        out = []
        for name, mask in masks:
            followers = self.followers[mask]
            known = followers[followers >= 0]
            if by_platform and not len(followers):
                continue
            row: dict[str, Any] = {"platform": name} if by_platform else {}
            row.update(unique_authors=len(followers), potential_reach=int(known.sum()), with_followers=len(known))
            out.append(row)
        return out


def author_table(conn: Connection) -> AuthorTable:
    """The authors' platforms and latest follower counts.

    One 'id,followers,id,followers,..' text per platform, parsed by numpy: ~50 ms for 100 000
    authors, where fetching them as rows takes ~350 ms.
    """
    pair = cast(_au.c.id, Text).op("||")(",").op("||")(cast(func.coalesce(_au.c.followers, -1), Text))
    rows = conn.execute(
        select(_au.c.platform, func.count(), _id_list(conn, pair)).group_by(_au.c.platform).order_by(_au.c.platform)
    ).all()
    platforms, ids, followers, codes = [], [], [], []
    for code, (platform, count, text) in enumerate(rows):
        pairs = _parse_ids(text, 2 * count).reshape(-1, 2)
        platforms.append(platform)
        ids.append(pairs[:, 0])
        followers.append(pairs[:, 1])
        codes.append(np.full(len(pairs), code, dtype=np.int64))
    if not rows:
        return AuthorTable(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), [])
    every_id = np.concatenate(ids)
    order = np.argsort(every_id)
    return AuthorTable(ids=every_id[order], platform=np.concatenate(codes)[order],
                       followers=np.concatenate(followers)[order], platforms=platforms)


def _key_value(value: Any) -> Any:
    """A group key as Python gives it: NULL (None or NaN) is None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _number(value: Any) -> int | None:
    return None if _key_value(value) is None else int(value)


def add_frames(frames: Sequence[pd.DataFrame], keys: Sequence[str], nullable: Sequence[str] = ()) -> pd.DataFrame:
    """Add up the figures of several slices' frames per group (the rows of one frame already are
    one per group). A `nullable` column stays NULL until some slice has a value (impressions)."""
    if len(frames) == 1:
        return frames[0]
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    columns = list(frames[0].columns)
    for frame in frames:
        for rec in frame.to_dict("records"):
            key = tuple(_key_value(rec[k]) for k in keys)
            into = totals.get(key)
            if into is None:
                totals[key] = {c: (_key_value(rec[c]) if c in keys else _number(rec[c])) for c in columns}
                continue
            for c in columns:
                if c in keys:
                    continue
                a, b = into[c], _number(rec[c])
                into[c] = (a if b is None else b if a is None else a + b) if c in nullable else (a or 0) + (b or 0)
    return pd.DataFrame(list(totals.values()), columns=columns)


@dataclass(frozen=True)
class GroupFigures:
    posts: pd.DataFrame
    """`post_figures` per group."""
    authors: pd.DataFrame
    """The keys, unique_authors, potential_reach (0 when no author's count is known), with_followers
    (authors whose count is known); "platform" is the author's. Posts whose author row is gone are
    left out."""
    campaign: pd.DataFrame
    """platform, unique_authors, potential_reach, with_followers over every covered post: each
    author once however many groups they posted in, under the author's platform."""


def combine_figures(parts: Sequence[pd.DataFrame], authors: AuthorTable, by: Sequence[Key]) -> GroupFigures:
    """`GroupFigures` from the `post_figures(..., author_ids=True)` frames of one or more slices."""
    names = [k for k in by if k != "platform"]
    chosen: dict[tuple[Any, ...], np.ndarray] = {}  # group -> mask over the authors
    for part in parts:
        for rec in part[[*names, "with_author", "author_ids"]].itertuples(index=False):
            key = tuple(_key_value(v) for v in rec[:-2])
            if key not in chosen:
                chosen[key] = np.zeros(len(authors.ids), dtype=bool)
            authors.mark(_parse_ids(rec[-1], int(rec[-2])), chosen[key])
    rows = [{**dict(zip(names, key)), **figures}
            for key, mask in chosen.items() for figures in authors.figures(mask, "platform" in by)]
    everyone = np.logical_or.reduce(list(chosen.values())) if chosen else np.zeros(0, dtype=bool)
    columns = ["unique_authors", "potential_reach", "with_followers"]
    return GroupFigures(
        posts=add_frames([p.drop(columns=["with_author", "author_ids"]) for p in parts], by, ("impressions",)),
        authors=pd.DataFrame(rows, columns=[*by, *columns]),
        campaign=pd.DataFrame(authors.figures(everyone, True) if chosen else [], columns=["platform", *columns]),
    )


def group_figures(conn: Connection, f: PostFilter, by: Sequence[Key]) -> GroupFigures:
    """Post figures and author figures (unique authors, potential reach) per group, from one scan.

    Counting each author once per group needs the distinct (group, author) pairs: a second
    GROUP BY over every post, the most expensive part of a summary (SQLite has no hash
    aggregation, so it sorts a million rows). Instead the scan that sums the post figures also
    hands back each group's author ids ('id,id,..' text, ~7 bytes a post), and numpy takes the
    distinct ids per group and adds up the latest follower counts from the authors table. Same
    figures, one pass over the posts, and the campaign-wide authors come with it.
    tracker/summary.py runs the scan in slices on several connections (`id_slices`).
    """
    return combine_figures([post_figures(conn, f, by, author_ids=True)], author_table(conn), by)


def author_figures(conn: Connection, f: PostFilter, by: Sequence[Key]) -> pd.DataFrame:
    """Unique authors and potential reach (their latest follower counts, each author once).

    Columns: the keys, unique_authors, potential_reach (0 when no author's count is known),
    with_followers (authors whose count is known). Posts whose author row is gone are left out.
    """
    return group_figures(conn, f, by).authors


def _plus_seconds(conn: Connection, column: Any, seconds: int) -> ColumnElement[Any]:
    """column + seconds, comparable with stored timestamps of the same dialect."""
    if conn.dialect.name == "postgresql":
        return column + literal(dt.timedelta(seconds=seconds))
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text: shift the whole seconds, keep the fraction
    # (SQLite's date functions round to milliseconds). datetime() costs half of strftime().
    whole = func.datetime(func.substr(column, 1, 19), f"{seconds:+d} seconds")
    return whole.op("||")(func.substr(column, 20))


def figures_at_ages(conn: Connection, f: PostFilter, by: Sequence[Key], ages: Mapping[str, dt.timedelta],
                    now: dt.datetime) -> pd.DataFrame:
    """Engagement of each post as it was at each age after posting, summed per group, in one pass.

    A post's figure at an age is its latest snapshot taken at or before created_at + age. Posts
    younger than the age (at `now`) or without such a snapshot are left out of that age.
    Columns: the keys, posts (all the group's posts, whatever their age), then per age label L:
    covered_L (posts in) and engagement_L.

    Per post and age one probe of the snapshots' primary key (post_id, fetched_at): the last
    entry at or before the moment, engagement read from it. A probe costs the same however many
    snapshots a post has (refreshes add one every few hours for two weeks), unlike joining all
    of them. The posts are walked in storage order (the probes then walk the index in order too),
    each subquery level is fenced with OFFSET 0 so each moment and each probe is computed once
    per post (both databases would otherwise inline the expression into every place that uses
    it), and only then grouped.
    """
    _tune(conn)
    keys = _keys(conn, f, by)
    moments = [case((_p.c.created_at <= now - age, _plus_seconds(conn, _p.c.created_at, int(age.total_seconds()))),
                    else_=None).label(f"at_{label}")
               for label, age in ages.items()]
    posts = (select(*keys, _p.c.id.label("post_id"), *moments).select_from(_from(f)).where(*_where(f))
             .offset(0).subquery("x"))
    probes = []
    for label in ages:
        snap = _s.alias(f"s_{label}")
        probes.append(
            select(engagement_expr(snap))
            .where(snap.c.post_id == posts.c.post_id, snap.c.fetched_at <= posts.c[f"at_{label}"])
            .order_by(snap.c.fetched_at.desc())
            .limit(1)
            .scalar_subquery()
            .label(f"e_{label}")
        )
    per_post = select(*[posts.c[k] for k in by], *probes).offset(0).subquery("y")
    figures: list[ColumnElement[Any]] = [func.count().label("posts")]
    for label in ages:
        value = per_post.c[f"e_{label}"]
        figures += [func.count(value).label(f"covered_{label}"),
                    func.coalesce(_sum(value), 0).label(f"engagement_{label}")]
    outer_keys = [per_post.c[k] for k in by]
    stmt = select(*outer_keys, *figures)
    if outer_keys:
        stmt = stmt.group_by(*outer_keys)
    return _stop_ids(_fix_days(_frame(conn, stmt)), f)


def daily_counts(conn: Connection, f: PostFilter) -> pd.DataFrame:
    """Posts, engagement and posts with no visit per local day and platform."""
    _tune(conn)
    day = local_day(conn, f).label("day")
    stmt = (
        select(
            day, _p.c.platform.label("platform"),
            func.count().label("posts"),
            func.coalesce(_sum(engagement_expr()), 0).label("engagement"),
            _sum(case((_visit(f).is_(None), 1), else_=0)).label("no_visit"),
        )
        .select_from(_from(f))
        .where(*_where(f))
        .group_by(day, _p.c.platform)
    )
    return _fix_days(_frame(conn, stmt))


def count_posts(conn: Connection, f: PostFilter) -> int:
    """How many posts the filter covers."""
    return int(conn.execute(select(func.count()).select_from(_from(f)).where(*_where(f))).scalar_one())


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# -- top lists ----------------------------------------------------------------------------------


def top_posts(conn: Connection, f: PostFilter, n: int) -> pd.DataFrame:
    """The `n` posts with the most engagement (ties: earlier first), with author and visit."""
    _tune(conn)
    engagement = engagement_expr().label("engagement")
    # Pick the n posts first (one scan, a top-n sort), then join author and visit for those only.
    source = _from(f) if f.stop is not None or f.no_visit else _p
    best = (
        select(_p.c.id.label("post_id"), engagement)
        .select_from(source)
        .where(*_where(f))
        .order_by(engagement.desc(), _p.c.created_at, _p.c.id)
        .limit(n)
        .subquery("best")
    )
    stmt = (
        select(
            _p.c.id.label("post_id"), _p.c.platform, _p.c.platform_id, _p.c.url, _p.c.text, _p.c.kind,
            _p.c.created_at, _visit(f).label("stop"),
            _au.c.handle.label("author_handle"), _au.c.display_name.label("author_name"),
            _au.c.url.label("author_url"), _au.c.followers.label("author_followers"),
            _p.c.likes, _p.c.reposts.label("shares"), _p.c.replies.label("reply_count"),
            _p.c.quotes.label("quote_count"), _p.c.views.label("impressions"), best.c.engagement,
        )
        .select_from(best.join(_p, _p.c.id == best.c.post_id).outerjoin(_a, _a.c.post_id == _p.c.id)
                     .outerjoin(_au, _au.c.id == _p.c.author_id))
        .order_by(best.c.engagement.desc(), _p.c.created_at, _p.c.id)
    )
    df = _frame(conn, stmt)
    df["created_at"] = [_utc(v) for v in df["created_at"]]
    return df


def top_authors(conn: Connection, f: PostFilter, n: int, order: Literal["posts", "reach"]) -> pd.DataFrame:
    """Authors with the most posts, or with the largest follower count, among the covered posts."""
    _tune(conn)
    followers = func.coalesce(_au.c.followers, -1)  # unknown counts sort last on both databases
    where = _where(f)
    if order == "reach":
        # The n largest audiences among authors with a covered post (one index probe per author),
        # then only their posts are counted: no need to group every post.
        has_post = select(literal(1)).select_from(_from(f)).where(_p.c.author_id == _au.c.id, *_where(f)).exists()
        chosen = select(_au.c.id).where(has_post).order_by(followers.desc(), _au.c.handle, _au.c.id).limit(n)
        author = _p.c.author_id.label("author_id")
        where = [*where, _p.c.author_id.in_(chosen.scalar_subquery())]
    else:
        author = (_p.c.author_id + 0).label("author_id")  # + 0: sort, don't walk posts by the author index
    grouped = (
        select(
            author,
            func.count().label("posts"),
            func.coalesce(_sum(engagement_expr()), 0).label("engagement"),
        )
        .select_from(_from(f))
        .where(*where)
        .group_by(author)
        .subquery("g")
    )
    ordering = ([grouped.c.posts.desc(), followers.desc()] if order == "posts"
                else [followers.desc(), grouped.c.posts.desc()])
    stmt = (
        select(
            _au.c.id.label("author_id"), _au.c.platform, _au.c.handle, _au.c.display_name, _au.c.url,
            _au.c.followers, grouped.c.posts, grouped.c.engagement,
        )
        .select_from(grouped.join(_au, _au.c.id == grouped.c.author_id))
        .order_by(*ordering, _au.c.handle, _au.c.id)
        .limit(n)
    )
    return _frame(conn, stmt)


# -- export -------------------------------------------------------------------------------------


def _areas_per_post(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        joined = func.string_agg(_pa.c.area, literal_column("';'"))
    else:
        joined = func.group_concat(_pa.c.area, ";")
    return select(_pa.c.post_id, joined.label("areas")).group_by(_pa.c.post_id).subquery("pa")


def export_posts(conn: Connection, f: PostFilter, chunk_rows: int = 50_000) -> Iterator[pd.DataFrame]:
    """Live posts with author, tags and latest metrics, in chunks (oldest first) for streaming."""
    areas = _areas_per_post(conn)
    stmt = (
        select(
            _p.c.id.label("post_id"), _p.c.platform, _p.c.platform_id, _p.c.url, _p.c.created_at,
            local_day(conn, f).label("local_date"), _p.c.kind, _p.c.language,
            _au.c.handle.label("author_handle"), _au.c.display_name.label("author_name"),
            _au.c.followers.label("author_followers"), _p.c.text, areas.c.areas,
            _visit(f).label("stop"), _a.c.stop_id.label("attributed_stop"), _a.c.method,
            _a.c.confidence, _p.c.likes, _p.c.reposts.label("shares"), _p.c.replies.label("reply_count"),
            _p.c.quotes.label("quote_count"), _p.c.views.label("impressions"),
            engagement_expr().label("engagement"), _p.c.metrics_at,
        )
        .select_from(
            _from(f).outerjoin(_au, _au.c.id == _p.c.author_id).outerjoin(areas, areas.c.post_id == _p.c.id)
        )
        .where(*_where(f))
        .order_by(_p.c.created_at, _p.c.id)
    )
    streaming = conn.execution_options(stream_results=True, yield_per=chunk_rows)
    for chunk in pd.read_sql(stmt, streaming, chunksize=chunk_rows):
        for column in ("created_at", "metrics_at"):
            chunk[column] = [_utc(v) for v in chunk[column]]
        yield _fix_days(chunk.rename(columns={"local_date": "day"})).rename(columns={"day": "local_date"})


__all__ = [
    "KINDS", "SLICE_MIN_IDS", "AuthorTable", "GroupFigures", "Key", "PostFilter", "add_frames", "author_figures",
    "author_table", "combine_figures", "count_posts", "daily_counts", "engagement_expr", "export_posts",
    "figures_at_ages", "group_figures", "id_slices", "local_day", "post_figures", "top_authors", "top_posts",
]
