"""SQL for engagement and reach summaries: every figure is aggregated here, in the database.

Summaries must stay fast on a million posts, so nothing here returns one row per post except
the export stream: counts and sums are GROUP BYs, unique authors come from a GROUP BY (visit,
author) subquery, and results are small DataFrames keyed by visit, platform and/or local day.

Rules shared by every query (see docs/figures.md):
- deleted posts (`deleted_at` set) are left out;
- a post's visit is its attribution's stop when that stop is one of the current tour stops;
  no attribution row, a NULL stop, or a stop no longer in the settings all mean "no visit" (NULL);
- a post's metrics are its latest snapshot (the columns on `posts`);
- local days are calendar dates of `created_at` in the campaign timezone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import BigInteger, Date, Select, and_, case, cast, func, literal, literal_column, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from storage.models import Attribution, Author, MetricSnapshot, Post, PostArea

Key = Literal["stop", "platform", "day"]
KINDS = ("original", "repost", "reply", "quote")

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
    return where


def _from() -> Any:
    return _p.outerjoin(_a, _a.c.post_id == _p.c.id)


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

    if len(segments) == 1:
        return func.date(_p.c.created_at, modifier(segments[0][1]))
    whens = [(_p.c.created_at < until, modifier(off)) for until, off in segments[:-1]]
    return func.date(_p.c.created_at, case(*whens, else_=modifier(segments[-1][1])))


def _keys(conn: Connection, f: PostFilter, by: Sequence[Key]) -> list[ColumnElement[Any]]:
    cols: list[ColumnElement[Any]] = []
    for key in by:
        if key == "stop":
            cols.append(_visit(f).label("stop"))
        elif key == "platform":
            cols.append(_p.c.platform.label("platform"))
        elif key == "day":
            cols.append(local_day(conn, f).label("day"))
        else:
            raise ValueError(f"unknown key {key!r}")
    return cols


def _frame(conn: Connection, stmt: Select[Any]) -> pd.DataFrame:
    return pd.read_sql(stmt, conn)


def _fix_days(df: pd.DataFrame) -> pd.DataFrame:
    """SQLite gives 'YYYY-MM-DD' text, PostgreSQL dates: always Python dates."""
    if "day" in df.columns:
        df["day"] = [dt.date.fromisoformat(d) if isinstance(d, str) else d for d in df["day"]]
    return df


# -- figures -------------------------------------------------------------------------------------


def post_figures(conn: Connection, f: PostFilter, by: Sequence[Key]) -> pd.DataFrame:
    """Post counts by kind and metric sums per group (one row per group that has posts).

    Columns: the keys, posts, originals, reposts, replies, quotes, likes, shares, reply_count,
    quote_count, impressions (NULL when no post of the group reports views), with_views.
    """
    keys = _keys(conn, f, by)
    kinds = [_sum(case((_p.c.kind == kind, 1), else_=0)).label(name)
             for kind, name in zip(KINDS, ("originals", "reposts", "replies", "quotes"))]
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
        )
        .select_from(_from())
        .where(*_where(f))
    )
    if keys:
        stmt = stmt.group_by(*keys)
    return _fix_days(_frame(conn, stmt))


def author_figures(conn: Connection, f: PostFilter, by: Sequence[Key]) -> pd.DataFrame:
    """Unique authors and potential reach (their latest follower counts, each author once).

    Columns: the keys, unique_authors, potential_reach (0 when no author's count is known),
    with_followers (authors whose count is known). Posts whose author row is gone are left out.
    """
    if "stop" not in by and "day" not in by:
        return _authors_by_platform(conn, f, by)
    keys = _keys(conn, f, by)
    # No `author_id IS NOT NULL` here: SQLite would then walk posts through the author index
    # (random reads, several times slower than a scan). The join to authors drops NULLs anyway.
    pairs = (
        select(*[k for k in keys if k.name != "platform"], _p.c.author_id.label("author_id"))
        .select_from(_from())
        .where(*_where(f))
        .group_by(*[k for k in keys if k.name != "platform"], _p.c.author_id)
        .subquery("d")
    )
    # An author belongs to one platform, the platform of all its posts (authors are stored per
    # platform), so (visit, author) pairs are grouped by the author's platform.
    outer_keys = [pairs.c[k] if k != "platform" else _au.c.platform.label("platform") for k in by]
    stmt = (
        select(
            *outer_keys,
            func.count().label("unique_authors"),
            func.coalesce(_sum(_au.c.followers), 0).label("potential_reach"),
            func.count(_au.c.followers).label("with_followers"),
        )
        .select_from(pairs.join(_au, _au.c.id == pairs.c.author_id))
        .group_by(*outer_keys)
    )
    return _fix_days(_frame(conn, stmt))


def _authors_by_platform(conn: Connection, f: PostFilter, by: Sequence[Key]) -> pd.DataFrame:
    """Campaign-wide authors: each author with at least one covered post (an index probe each)."""
    has_post = (
        select(literal(1))
        .select_from(_from())
        .where(_p.c.author_id == _au.c.id, *_where(f))
        .exists()
    )
    keys = [_au.c.platform.label("platform")] if "platform" in by else []
    stmt = select(
        *keys,
        func.count().label("unique_authors"),
        func.coalesce(_sum(_au.c.followers), 0).label("potential_reach"),
        func.count(_au.c.followers).label("with_followers"),
    ).where(has_post)
    if keys:
        stmt = stmt.group_by(*keys)
    return _frame(conn, stmt)


def _plus_seconds(conn: Connection, column: Any, seconds: int) -> ColumnElement[Any]:
    """column + seconds, comparable with stored timestamps of the same dialect."""
    if conn.dialect.name == "postgresql":
        return column + literal(dt.timedelta(seconds=seconds))
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text: shift the whole seconds, keep the fraction.
    whole = func.strftime("%Y-%m-%d %H:%M:%S", func.substr(column, 1, 19), f"{seconds:+d} seconds")
    return whole.op("||")(func.substr(column, 20))


def figures_at_ages(conn: Connection, f: PostFilter, by: Sequence[Key], ages: Mapping[str, dt.timedelta],
                    now: dt.datetime) -> pd.DataFrame:
    """Engagement of each post as it was at each age after posting, summed per group, in one pass.

    A post's figure at an age is its latest snapshot taken at or before created_at + age. Posts
    younger than the age (at `now`) or without such a snapshot are left out of that age.
    Columns: the keys, then per age label L: covered_L (posts in) and engagement_L.
    """
    keys = _keys(conn, f, by)
    youngest = min(ages.values())
    where = [*_where(f), _p.c.created_at <= now - youngest]
    if conn.dialect.name == "postgresql":
        return _fix_days(_frame(conn, _at_ages_lateral(f, keys, ages, now, where, conn)))
    # SQLite: per post and age one probe of the snapshots' primary key (post_id, fetched_at) for
    # the moment, then one exact lookup; cheaper than ranking every snapshot.
    moments = []
    for label, age in ages.items():
        s2 = _s.alias(f"m_{label}")
        latest = (
            select(func.max(s2.c.fetched_at))
            .where(s2.c.post_id == _p.c.id,
                   s2.c.fetched_at <= _plus_seconds(conn, _p.c.created_at, int(age.total_seconds())))
            .scalar_subquery()
        )
        moments.append(case((_p.c.created_at <= now - age, latest), else_=None).label(f"at_{label}"))
    posts = select(*keys, _p.c.id.label("post_id"), *moments).select_from(_from()).where(*where).subquery("x")
    joined: Any = posts
    figures = []
    for label in ages:
        snap = _s.alias(f"s_{label}")
        joined = joined.outerjoin(snap, and_(snap.c.post_id == posts.c.post_id,
                                             snap.c.fetched_at == posts.c[f"at_{label}"]))
        figures += [func.count(snap.c.post_id).label(f"covered_{label}"),
                    func.coalesce(_sum(engagement_expr(snap)), 0).label(f"engagement_{label}")]
    outer_keys = [posts.c[k] for k in by]
    stmt = select(*outer_keys, *figures).select_from(joined)
    if outer_keys:
        stmt = stmt.group_by(*outer_keys)
    return _fix_days(_frame(conn, stmt))


def _at_ages_lateral(f: PostFilter, keys: list[ColumnElement[Any]], ages: Mapping[str, dt.timedelta],
                     now: dt.datetime, where: list[ColumnElement[bool]], conn: Connection) -> Select[Any]:
    """PostgreSQL: one LATERAL top-1 index probe per post and age."""
    joined: Any = _from()
    figures = []
    for label, age in ages.items():
        snap = _s.alias(f"s_{label}")
        top = (
            select(engagement_expr(snap).label("e"))
            .where(snap.c.post_id == _p.c.id,
                   snap.c.fetched_at <= _plus_seconds(conn, _p.c.created_at, int(age.total_seconds())),
                   _p.c.created_at <= now - age)
            .order_by(snap.c.fetched_at.desc())
            .limit(1)
            .lateral(f"l_{label}")
        )
        joined = joined.outerjoin(top, literal(True))
        figures += [func.count(top.c.e).label(f"covered_{label}"),
                    func.coalesce(_sum(top.c.e), 0).label(f"engagement_{label}")]
    stmt = select(*keys, *figures).select_from(joined).where(*where)
    return stmt.group_by(*keys) if keys else stmt


def daily_counts(conn: Connection, f: PostFilter) -> pd.DataFrame:
    """Posts, engagement and posts with no visit per local day and platform."""
    day = local_day(conn, f).label("day")
    stmt = (
        select(
            day, _p.c.platform.label("platform"),
            func.count().label("posts"),
            func.coalesce(_sum(engagement_expr()), 0).label("engagement"),
            _sum(case((_visit(f).is_(None), 1), else_=0)).label("no_visit"),
        )
        .select_from(_from())
        .where(*_where(f))
        .group_by(day, _p.c.platform)
    )
    return _fix_days(_frame(conn, stmt))


def count_posts(conn: Connection, f: PostFilter) -> int:
    """How many posts the filter covers."""
    return int(conn.execute(select(func.count()).select_from(_from()).where(*_where(f))).scalar_one())


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# -- top lists ----------------------------------------------------------------------------------


def top_posts(conn: Connection, f: PostFilter, n: int) -> pd.DataFrame:
    """The `n` posts with the most engagement (ties: earlier first), with author and visit."""
    engagement = engagement_expr().label("engagement")
    # Pick the n posts first (one scan, a top-n sort), then join author and visit for those only.
    source = _from() if f.stop is not None or f.no_visit else _p
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
    followers = func.coalesce(_au.c.followers, -1)  # unknown counts sort last on both databases
    where = _where(f)
    if order == "reach":
        # The n largest audiences among authors with a covered post (one index probe per author),
        # then only their posts are counted: no need to group every post.
        has_post = select(literal(1)).select_from(_from()).where(_p.c.author_id == _au.c.id, *_where(f)).exists()
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
        .select_from(_from())
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
            _from().outerjoin(_au, _au.c.id == _p.c.author_id).outerjoin(areas, areas.c.post_id == _p.c.id)
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
    "KINDS", "Key", "PostFilter", "author_figures", "count_posts", "daily_counts", "engagement_expr", "export_posts",
    "figures_at_ages", "local_day", "post_figures", "top_authors", "top_posts",
]
