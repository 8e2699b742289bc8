"""Summaries checked figure by figure against a small dataset computed by hand (SQLite and PG).

The dataset (`build_campaign`) is also used by tests/test_export_report.py. Hand-computed values
are in the comments next to each post; docs/figures.md defines every figure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text

from storage.db import Database
from storage.queries import TagRow, store_tags, sync_stops
from storage.upserts import mark_deleted, store_posts
from tracker.posts import Author, Metrics, NormalisedPost, PostKind
from tracker.settings import Settings, parse_settings
from tracker.summary import (
    NUMERIC,
    VISIT_KEYS,
    UnknownStopError,
    campaign_totals,
    engagement_at_age,
    engagement_at_ages,
    posts_per_day,
    safe_url,
    summarise,
    top_authors,
    top_posts,
    visit_days,
    visit_ranking,
    visit_rows,
    visit_summaries,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2023, 6, 1, tzinfo=UTC)


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


SETTINGS = {
    "campaign": {"name": "Testikiertue", "hashtags": ["ihmisensote"], "timezone": "Europe/Helsinki"},
    "tagging": {"days_before": 3, "days_after": 7},
    "tour": {"stops": [
        {"area": "pirkanmaa", "date": "2023-02-09", "city": "Tampere"},
        {"area": "lappi", "date": "2023-03-27", "city": "Rovaniemi"},
        {"area": "kainuu"},
    ]},
}


def make_settings(language: str = "fi", url: str | None = None) -> Settings:
    raw: dict[str, Any] = {**SETTINGS, "campaign": {**SETTINGS["campaign"], "language": language}}
    if url:
        raw["storage"] = {"url": url}
    return parse_settings(raw, "test settings", env={})


AUTHORS = {
    "A": ("x", "a-1", "alice"),          # followers 100 -> 150 -> 130 -> 140 (latest, by time)
    "B": ("mastodon", "https://m1.example/users/b", "bob@m1.example"),   # 40
    "C": ("bluesky", "did:plc:carol", "carol.bsky.social"),  # 10
    "D": ("x", "d-1", "dave"),           # 1000, only a deleted post
    "E": ("x", "e-1", "=eve"),           # 5, handle that looks like a formula
}


def post(key: str, who: str, followers: int | None, *, kind: PostKind = PostKind.ORIGINAL, created: str,
         fetched: str, likes: int | None, reposts: int | None, replies: int | None, quotes: int | None,
         views: int | None = None, text: str = "Hyvää #ihmisensote", url: str | None = None,
         source: str | None = None, source_id: str | None = None, platform_id: str | None = None,
         display_name: str | None = None) -> NormalisedPost:
    platform, author_id, handle = AUTHORS[who]
    return NormalisedPost(
        platform=platform, platform_id=platform_id or key,
        author=Author(platform_id=author_id, handle=handle, display_name=display_name or who,
                      url=f"https://{platform}.example/{handle}", followers=followers),
        text=text, created_at=t(created), fetched_at=t(fetched),
        url=url if url is not None else f"https://{platform}.example/{key}",
        hashtags=("ihmisensote",), kind=kind,
        metrics=Metrics(likes=likes, reposts=reposts, replies=replies, quotes=quotes, views=views),
        source=source, source_id=source_id,
    )


TOOT = "https://m1.example/users/b/statuses/1"

# Each inner list is one collection batch, stored in this (not chronological) order.
BATCHES: list[list[NormalisedPost]] = [
    [  # P1 pirkanmaa, x, A: latest 10/3/1/1 views 500 -> engagement 15; at 24 h (T+20h) 8; at 7 d 15
        post("x-1", "A", 100, created="2023-02-09 08:00", fetched="2023-02-09 09:00",
             likes=2, reposts=1, replies=0, quotes=0, views=100,
             text="Hieno päivä Tampereella <script>alert(1)</script> #ihmisensote"),
        post("x-1", "A", 100, created="2023-02-09 08:00", fetched="2023-02-10 04:00",
             likes=5, reposts=2, replies=1, quotes=0, views=300,
             text="Hieno päivä Tampereella <script>alert(1)</script> #ihmisensote"),
    ],
    [
        post("x-1", "A", 150, created="2023-02-09 08:00", fetched="2023-02-12 08:00",
             likes=10, reposts=3, replies=1, quotes=1, views=500,
             text="Hieno päivä Tampereella <script>alert(1)</script> #ihmisensote"),
        # P6 pirkanmaa, x, D: deleted later -> excluded everywhere
        post("x-6", "D", 1000, created="2023-02-09 09:00", fetched="2023-02-09 10:00",
             likes=100, reposts=50, replies=10, quotes=5, views=9000),
    ],
    [  # P2 pirkanmaa, x, A, reply at 00:30 local on 2023-02-10: 1/0/?/0 views 50 -> 1; first snapshot 35.5 h
        post("x-2", "A", 130, kind=PostKind.REPLY, created="2023-02-09 22:30", fetched="2023-02-11 10:00",
             likes=1, reposts=0, replies=None, quotes=0, views=50),
    ],
    [  # P3 pirkanmaa, the same toot seen on two instances: one post. Latest 4/1/2/? -> 7; at 24 h 4
        post("m-3a", "B", 40, kind=PostKind.QUOTE, created="2023-02-08 12:00", fetched="2023-02-08 13:00",
             likes=3, reposts=1, replies=0, quotes=None, platform_id=TOOT,
             source="https://m1.example", source_id="1", url="https://m1.example/@b/1"),
    ],
    [
        post("m-3b", "B", 40, kind=PostKind.QUOTE, created="2023-02-08 12:00", fetched="2023-02-12 12:00",
             likes=4, reposts=1, replies=2, quotes=None, platform_id=TOOT,
             source="https://m2.example", source_id="999", url="https://m1.example/@b/1"),
        # P4 lappi, bluesky, C, repost at 00:30 local on 2023-03-27 (after the DST change): 0
        post("b-4", "C", 10, kind=PostKind.REPOST, created="2023-03-26 21:30", fetched="2023-03-26 22:30",
             likes=0, reposts=0, replies=0, quotes=0),
        # P5 lappi, bluesky, C: at 24 h 30, at 7 d 30, latest 25/6/3/2 -> 36
        post("b-5", "C", 10, created="2023-03-28 10:00", fetched="2023-03-28 12:00",
             likes=20, reposts=5, replies=3, quotes=2),
    ],
    [
        post("b-5", "C", 10, created="2023-03-28 10:00", fetched="2023-04-06 10:00",
             likes=25, reposts=6, replies=3, quotes=2),
        # P7 no attribution row at all: no visit. x, E: 1/0/0/0 views 10 -> 1
        post("x-7", "E", 5, created="2023-02-20 12:00", fetched="2023-02-20 13:00",
             likes=1, reposts=0, replies=0, quotes=0, views=10,
             text='<img src=x onerror="alert(2)"> </style><style>body{display:none}</style>',
             url="javascript:alert(document.cookie)", display_name="@SUM(1+1)"),
        # P8 attributed to no stop (stop_id NULL): mastodon, B: 2/?/?/? -> 2
        post("m-8", "B", 40, created="2023-03-01 12:00", fetched="2023-03-01 13:00",
             likes=2, reposts=None, replies=None, quotes=None, text="=HYPERLINK(\"http://evil\")",
             source="https://m1.example", source_id="8", platform_id="https://m1.example/users/b/statuses/8"),
        # P9 attributed to a stop no longer in the tour: counts as no visit. x, A: all 0, views 0
        post("x-9", "A", 140, created="2023-02-25 12:00", fetched="2023-02-26 12:00",
             likes=0, reposts=0, replies=0, quotes=0, views=0, text="+358 40 123 4567"),
    ],
]

TAGS = {  # platform_id -> (stop_id, areas, method); x-7 has no attribution row
    "x-1": ("pirkanmaa", ["pirkanmaa"], "area"),
    "x-2": ("pirkanmaa", [], "date"),
    TOOT: ("pirkanmaa", ["pirkanmaa", "kanta-hame"], "area"),
    "x-6": ("pirkanmaa", ["pirkanmaa"], "area"),
    "b-4": ("lappi", ["lappi"], "area"),
    "b-5": ("lappi", ["lappi"], "date"),
    "https://m1.example/users/b/statuses/8": (None, [], "none"),
    "x-9": ("old-stop", ["satakunta"], "area"),
}


def build_campaign(db: Database, settings: Settings) -> dict[str, int]:
    """Store the dataset, tag it, delete P6; returns platform_id -> post id."""
    from sqlalchemy import select

    from storage.models import Post

    for batch in BATCHES:
        with db.write() as s:
            store_posts(s, batch)
    with db.write() as s:
        ids = {pid: i for i, pid in s.execute(select(Post.id, Post.platform_id))}
        rows = [TagRow(post_id=ids[pid], areas=areas, stop_id=stop, method=method,
                       confidence=0.9 if stop else 0.0, local_date=dt.date(2023, 2, 9))
                for pid, (stop, areas, method) in TAGS.items()]
        store_tags(s, rows, NOW)
        sync_stops(s, settings.tour.stops, NOW)
        mark_deleted(s, "x", ["x-6"], t("2023-02-15 00:00"))
    return ids


@pytest.fixture
def campaign(db: Database) -> tuple[Database, Settings]:
    settings = make_settings()
    build_campaign(db, settings)
    return db, settings


def figures(**values: int | None) -> dict[str, int | None]:
    out: dict[str, int | None] = dict.fromkeys(NUMERIC, 0)
    out["impressions"] = None
    out.update(values)
    return out


PIRKANMAA_X = figures(posts=2, originals=1, replies=1, unique_authors=1, likes=11, shares=3, reply_count=1,
                      quote_count=1, engagement=16, impressions=550, potential_reach=140)
PIRKANMAA_MASTODON = figures(posts=1, quotes=1, unique_authors=1, likes=4, shares=1, reply_count=2,
                             engagement=7, potential_reach=40)
PIRKANMAA = figures(posts=3, originals=1, replies=1, quotes=1, unique_authors=2, likes=15, shares=4,
                    reply_count=3, quote_count=1, engagement=23, impressions=550, potential_reach=180)
LAPPI = figures(posts=2, originals=1, reposts=1, unique_authors=1, likes=25, shares=6, reply_count=3,
                quote_count=2, engagement=36, potential_reach=10)
NO_VISIT = figures(posts=3, originals=3, unique_authors=3, likes=3, engagement=3, impressions=10,
                   potential_reach=185)
TOTALS = figures(posts=8, originals=5, reposts=1, replies=1, quotes=1, unique_authors=4, likes=43, shares=10,
                 reply_count=6, quote_count=3, engagement=62, impressions=560, potential_reach=195)


def numeric(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in NUMERIC}


def test_visit_summaries_match_hand_computed_figures(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    visits = visit_summaries(db, settings)
    assert [v["stop"] for v in visits] == ["pirkanmaa", "lappi", "kainuu"]  # tour order, all stops
    assert all(list(v) == list(VISIT_KEYS) for v in visits)
    pirkanmaa, lappi, kainuu = visits
    assert (pirkanmaa["area"], pirkanmaa["date"]) == ("pirkanmaa", "2023-02-09")
    assert numeric(pirkanmaa) == PIRKANMAA
    assert pirkanmaa["by_platform"] == {"mastodon": PIRKANMAA_MASTODON, "x": PIRKANMAA_X}
    assert numeric(lappi) == LAPPI
    assert list(lappi["by_platform"]) == ["bluesky"] and lappi["by_platform"]["bluesky"] == LAPPI
    assert numeric(kainuu) == figures() and kainuu["date"] is None and kainuu["by_platform"] == {}
    assert kainuu["impressions"] is None  # unknown, not 0


def test_filters_by_stop_platform_and_period(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    only = visit_summaries(db, settings, stop="pirkanmaa", platform="x")
    assert len(only) == 1 and numeric(only[0]) == PIRKANMAA_X
    assert only[0]["by_platform"] == {"x": PIRKANMAA_X}
    # Feb 9 00:00 to Feb 10 00:00 UTC: only P1 (P2 is 22:30 UTC on the 9th too)
    day = (t("2023-02-09 00:00"), t("2023-02-10 00:00"))
    week = visit_summaries(db, settings, period=day)
    assert week[0]["posts"] == 2 and week[0]["engagement"] == 16 and week[1]["posts"] == 0
    helsinki = dt.timezone(dt.timedelta(hours=2))  # aware but not UTC: same instants
    local = (dt.datetime(2023, 2, 9, 2, tzinfo=helsinki), dt.datetime(2023, 2, 10, 2, tzinfo=helsinki))
    assert visit_summaries(db, settings, period=local) == week
    with pytest.raises(UnknownStopError, match="unknown stop 'nowhere'.*pirkanmaa, lappi, kainuu"):
        visit_summaries(db, settings, stop="nowhere")
    with pytest.raises(ValueError, match="timezone-aware"):
        visit_summaries(db, settings, period=(dt.datetime(2023, 1, 1), None))


def test_campaign_totals_and_no_visit(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    totals = campaign_totals(db, settings)
    assert numeric(totals) == TOTALS
    assert numeric(totals["no_visit"]) == NO_VISIT
    assert (totals["visits"], totals["visits_with_posts"]) == (3, 2)
    x = totals["by_platform"]["x"]
    # x: P1, P2 (A), P7 (E), P9 (A): authors A and E once each
    assert numeric(x) == figures(posts=4, originals=3, replies=1, unique_authors=2, likes=12, shares=3,
                                 reply_count=1, quote_count=1, engagement=17, impressions=560,
                                 potential_reach=145)
    assert totals["by_platform"]["bluesky"]["impressions"] is None
    assert list(totals["by_platform"]) == ["bluesky", "mastodon", "x"]


def test_campaign_sums_match_the_parts(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    summary = summarise(db, settings)
    for key in ("posts", "originals", "reposts", "replies", "quotes", "likes", "shares", "engagement"):
        assert sum(v[key] for v in summary.visits) + summary.no_visit[key] == summary.totals[key]


def test_shares_ranking_and_rows(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    ranking = visit_ranking(db, settings)
    assert [(r["rank"], r["stop"]) for r in ranking] == [(1, "lappi"), (2, "pirkanmaa"), (3, "kainuu")]
    assert ranking[0]["share_posts"] == pytest.approx(2 / 8)
    assert ranking[0]["share_engagement"] == pytest.approx(36 / 62)
    assert ranking[2]["engagement_per_post"] is None
    by_posts = visit_ranking(db, settings, by="posts")
    assert [r["stop"] for r in by_posts] == ["pirkanmaa", "lappi", "kainuu"]
    rows = visit_rows(summarise(db, settings), settings, engagement_at_ages(db, settings, now=NOW))
    assert rows[0]["area_name"] == "Pirkanmaa" and rows[0]["engagement_per_post"] == pytest.approx(23 / 3)
    assert rows[0]["share_posts"] == pytest.approx(3 / 8) and rows[0]["rank"] == 2
    assert (rows[0]["engagement_24h"], rows[0]["posts_covered_24h"]) == (12, 2)
    assert (rows[1]["engagement_7d"], rows[1]["posts_covered_7d"], rows[1]["engagement_per_post_7d"]) == (30, 2, 15)
    assert rows[2]["share_engagement"] == 0


def test_engagement_at_fixed_ages(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    day = {r["stop"]: r for r in engagement_at_age(db, settings, "24h", now=NOW)}
    # P1 at T+20h: 5+2+1+0 = 8; P2's first snapshot is 35.5 h old: not covered; P3 at 1 h: 3+1+0 = 4
    assert (day["pirkanmaa"]["posts"], day["pirkanmaa"]["covered"], day["pirkanmaa"]["engagement"]) == (3, 2, 12)
    assert day["pirkanmaa"]["engagement_per_post"] == 6
    assert (day["lappi"]["covered"], day["lappi"]["engagement"]) == (2, 30)
    assert (day["kainuu"]["covered"], day["kainuu"]["engagement"], day["kainuu"]["engagement_per_post"]) == (0, 0, None)
    week = {r["stop"]: r for r in engagement_at_age(db, settings, dt.timedelta(days=7), now=NOW)}
    assert (week["pirkanmaa"]["covered"], week["pirkanmaa"]["engagement"]) == (3, 15 + 1 + 7)
    assert (week["lappi"]["covered"], week["lappi"]["engagement"]) == (2, 30)  # P5's 36 came on day 9
    assert week["lappi"]["age_hours"] == 168
    # P5 (2023-03-28 10:00) is only 10 hours old on the 28th at 20:00: not covered yet
    early = engagement_at_age(db, settings, "24h", stop="lappi", now=t("2023-03-28 20:00"))
    assert [(r["stop"], r["covered"], r["engagement"]) for r in early] == [("lappi", 1, 0)]
    both = engagement_at_ages(db, settings, now=t("2023-03-28 20:00"))  # one pass, both ages
    assert [(r["covered"], r["engagement"]) for r in both["24h"]] == [(2, 12), (1, 0), (0, 0)]
    assert [(r["covered"], r["engagement"]) for r in both["7d"]] == [(3, 23), (0, 0), (0, 0)]
    custom = engagement_at_age(db, settings, dt.timedelta(hours=2), now=NOW)
    assert [(r["covered"], r["engagement"]) for r in custom] == [(2, 3 + 4), (2, 0 + 30), (0, 0)]  # P5 at exactly 2 h


def test_snapshot_exactly_at_the_age_counts(db: Database) -> None:
    settings = make_settings()
    created = "2023-02-09 08:00:00.250000"
    with db.write() as s:
        store_posts(s, [post("x-1", "A", 1, created=created, fetched="2023-02-10 08:00:00.250000",
                             likes=7, reposts=0, replies=0, quotes=0),
                        post("x-1", "A", 1, created=created, fetched="2023-02-10 08:00:00.250001",
                             likes=9, reposts=0, replies=0, quotes=0)])
    with db.write() as s:
        (post_id,) = s.execute(text("SELECT id FROM posts")).one()
        store_tags(s, [TagRow(post_id, [], "pirkanmaa", "area", 1.0, dt.date(2023, 2, 9))], NOW)
    row = engagement_at_age(db, settings, "24h", stop="pirkanmaa", now=NOW)[0]
    assert (row["covered"], row["engagement"]) == (1, 7)


def test_posts_per_day_in_local_time_with_visit_days(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    days = posts_per_day(db, settings)
    assert days[0]["date"] == dt.date(2023, 2, 8) and days[-1]["date"] == dt.date(2023, 3, 28)
    assert len(days) == 49  # zeros filled in
    by_date = {d["date"]: d for d in days}
    assert by_date[dt.date(2023, 2, 9)] == {"date": dt.date(2023, 2, 9), "posts": 1, "engagement": 15,
                                            "no_visit": 0, "by_platform": {"x": 1}, "visits": ["pirkanmaa"]}
    assert by_date[dt.date(2023, 2, 10)]["posts"] == 1  # P2: 22:30 UTC is 00:30 in Helsinki
    assert by_date[dt.date(2023, 3, 26)]["posts"] == 0  # P4: 21:30 UTC is 00:30 on the 27th (summer time)
    assert by_date[dt.date(2023, 3, 27)]["posts"] == 1 and by_date[dt.date(2023, 3, 27)]["visits"] == ["lappi"]
    assert by_date[dt.date(2023, 2, 20)]["no_visit"] == 1 and by_date[dt.date(2023, 2, 21)]["posts"] == 0
    assert sum(d["posts"] for d in days) == 8 and sum(d["engagement"] for d in days) == 62
    assert sum(d["no_visit"] for d in days) == 3
    week = posts_per_day(db, settings, period=(t("2023-02-05 22:00"), t("2023-02-12 22:00")))
    assert [d["date"] for d in week] == [dt.date(2023, 2, 6) + dt.timedelta(days=n) for n in range(7)]
    assert [d["posts"] for d in week] == [0, 0, 1, 1, 1, 0, 0]


def test_visit_days_cover_the_window(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    days = visit_days(db, settings, "pirkanmaa")
    assert [d["date"] for d in days] == [dt.date(2023, 2, 6) + dt.timedelta(days=n) for n in range(11)]
    by_date = {d["date"]: d for d in days}
    assert numeric(by_date[dt.date(2023, 2, 8)]) == PIRKANMAA_MASTODON
    assert by_date[dt.date(2023, 2, 9)]["visit_day"] and not by_date[dt.date(2023, 2, 10)]["visit_day"]
    assert numeric(by_date[dt.date(2023, 2, 10)]) == figures(
        posts=1, replies=1, unique_authors=1, likes=1, engagement=1, impressions=50, potential_reach=140)
    assert numeric(by_date[dt.date(2023, 2, 6)]) == figures()
    assert visit_days(db, settings, "kainuu") == []  # no date, no posts


def test_top_posts_and_authors(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    top = top_posts(db, settings, n=10)
    assert [(p["platform"], p["engagement"]) for p in top] == [
        ("bluesky", 36), ("x", 15), ("mastodon", 7), ("mastodon", 2), ("x", 1), ("x", 1), ("x", 0), ("bluesky", 0)]
    assert [p["rank"] for p in top] == list(range(1, 9))  # the deleted post (engagement 165) is not there
    assert top[1]["url"] == "https://x.example/x-1" and top[1]["stop"] == "pirkanmaa"
    assert top[2]["url"] == "https://m1.example/@b/1" and top[2]["stop"] == "pirkanmaa"
    assert top[5]["url"] is None  # javascript: link dropped
    assert top[5]["stop"] is None and top[4]["kind"] == "reply"
    assert top[1]["created_at"] == t("2023-02-09 08:00")
    assert [p["engagement"] for p in top_posts(db, settings, n=2, stop="lappi")] == [36, 0]
    by_posts = top_authors(db, settings, by="posts")
    assert [(a["handle"], a["posts"], a["followers"]) for a in by_posts] == [
        ("alice", 3, 140), ("bob@m1.example", 2, 40), ("carol.bsky.social", 2, 10), ("=eve", 1, 5)]
    assert by_posts[0]["engagement"] == 16
    by_reach = top_authors(db, settings, by="reach", n=2)
    assert [a["handle"] for a in by_reach] == ["alice", "bob@m1.example"]
    assert [a["handle"] for a in top_authors(db, settings, stop="lappi")] == ["carol.bsky.social"]


def test_empty_database_gives_zero_rows(db: Database) -> None:
    settings = make_settings()
    visits = visit_summaries(db, settings)
    assert [numeric(v) for v in visits] == [figures()] * 3
    assert posts_per_day(db, settings) == []
    assert top_posts(db, settings) == [] and top_authors(db, settings) == []
    assert numeric(campaign_totals(db, settings)) == figures()


@pytest.mark.parametrize("url,safe", [
    ("https://example.org/a?b=1", "https://example.org/a?b=1"),
    ("HTTP://example.org", "HTTP://example.org"),
    ("javascript:alert(1)", None),
    (" JavaScript:alert(1)", None),
    ("data:text/html,<script>", None),
    ("//example.org/x", None),
    ("https://exa mple.org", None),
    ("https://example.org/\nx", None),
    (None, None),
])
def test_safe_url(url: str | None, safe: str | None) -> None:
    assert safe_url(url) == safe


def test_utc_offsets_find_the_dst_changes() -> None:
    from zoneinfo import ZoneInfo

    from storage.summary_queries import _utc_offsets

    segments = _utc_offsets(ZoneInfo("Europe/Helsinki"), t("2023-02-01 00:00"), t("2023-12-01 00:00"))
    assert segments == [(t("2023-03-26 01:00"), 7200), (t("2023-10-29 01:00"), 10800), (None, 7200)]
    assert _utc_offsets(ZoneInfo("Asia/Kolkata"), t("2023-02-01 00:00"), t("2023-03-01 00:00")) == [(None, 19800)]


def test_summaries_in_slices_add_up_to_the_whole(campaign: tuple[Database, Settings],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Large databases are summarised in id slices on several connections; same figures."""
    import tracker.summary as summary_module
    from storage import summary_queries

    db, settings = campaign
    week = (t("2023-02-05 22:00"), t("2023-02-12 22:00"))

    def everything() -> list[Any]:
        return [summarise(db, settings), summarise(db, settings, platform="x"), summarise(db, settings, period=week),
                engagement_at_ages(db, settings, now=NOW), engagement_at_ages(db, settings, stop="lappi", now=NOW),
                visit_days(db, settings, "pirkanmaa"), posts_per_day(db, settings),
                posts_per_day(db, settings, period=week)]

    whole = everything()
    used: list[int] = []
    slices = summary_queries.id_slices

    def spy(conn: Any, parts: int, min_size: int | None = None) -> list[tuple[int | None, int | None]]:
        ranges = slices(conn, parts, min_size)
        used.append(len(ranges))
        return ranges

    monkeypatch.setattr(summary_queries, "SLICE_MIN_IDS", 2)  # 9 stored posts (ids 1-9): up to 4 slices
    monkeypatch.setattr(summary_module, "_cpus", lambda: 3)
    monkeypatch.setattr(summary_queries, "id_slices", spy)
    sliced = everything()
    assert used and all(n == 3 for n in used)
    assert sliced == whole
    visits = sliced[0].visits
    assert numeric(visits[0]) == PIRKANMAA and visits[0]["by_platform"] == {"mastodon": PIRKANMAA_MASTODON,
                                                                             "x": PIRKANMAA_X}
    assert numeric(sliced[0].totals) == TOTALS and numeric(sliced[0].no_visit) == NO_VISIT
    assert [(r["covered"], r["engagement"]) for r in sliced[3]["24h"]] == [(2, 12), (2, 30), (0, 0)]


def test_id_slices_cover_every_post_once(campaign: tuple[Database, Settings]) -> None:
    from sqlalchemy import select

    from storage.models import Post
    from storage.summary_queries import id_slices

    db, _ = campaign
    with db.engine.connect() as conn:
        ids = sorted(conn.execute(select(Post.id)).scalars())
        assert id_slices(conn, 4) == [(None, None)]  # small: one plain query
        for parts in (1, 2, 3, 4, 9):
            ranges = id_slices(conn, parts, min_size=1)
            assert 1 <= len(ranges) <= parts and ranges[0][0] is None and ranges[-1][1] is None
            inside = [[i for i in ids if (lo is None or i >= lo) and (hi is None or i < hi)] for lo, hi in ranges]
            assert sorted(sum(inside, [])) == ids  # each post in exactly one slice (ids may have gaps)


def test_local_day_of_the_last_instant_of_a_day(db: Database) -> None:
    """23:59:59.9999 in Helsinki is still that day (SQLite's date functions round to ms)."""
    settings = make_settings()
    with db.write() as s:
        store_posts(s, [post("x-1", "A", 1, created="2023-02-09 21:59:59.999900", fetched="2023-02-10 08:00",
                             likes=1, reposts=0, replies=0, quotes=0)])
    with db.write() as s:
        (post_id,) = s.execute(text("SELECT id FROM posts")).one()
        store_tags(s, [TagRow(post_id, [], "pirkanmaa", "area", 1.0, dt.date(2023, 2, 9))], NOW)
    assert [(d["date"], d["posts"]) for d in posts_per_day(db, settings)] == [(dt.date(2023, 2, 9), 1)]
    days = {d["date"]: d["posts"] for d in visit_days(db, settings, "pirkanmaa")}
    assert days[dt.date(2023, 2, 9)] == 1 and days[dt.date(2023, 2, 10)] == 0


@pytest.mark.parametrize("ids", [[1, 2, 5, 9], [3, 10**12, 10**12 + 7, 4 * 10**12]])  # dense / sparse ids
def test_author_table_counts_each_known_author_once(ids: list[int]) -> None:
    import numpy as np

    from storage.summary_queries import AuthorTable

    table = AuthorTable(ids=np.array(ids), platform=np.array([0, 1, 0, 0]), followers=np.array([10, 20, -1, 5]),
                        platforms=["mastodon", "x"])
    chosen = np.zeros(4, dtype=bool)
    table.mark(np.array([ids[0], ids[0], ids[2], ids[1], 6, ids[3] + 1, -1]), chosen)  # 6 etc.: no such author
    assert chosen.tolist() == [True, True, True, False]
    assert table.figures(chosen, by_platform=False) == [
        {"unique_authors": 3, "potential_reach": 30, "with_followers": 2}]
    assert table.figures(chosen, by_platform=True) == [
        {"platform": "mastodon", "unique_authors": 2, "potential_reach": 10, "with_followers": 1},
        {"platform": "x", "unique_authors": 1, "potential_reach": 20, "with_followers": 1}]


def test_engagement_at_ages_counts_posts_too_young_for_the_age(campaign: tuple[Database, Settings]) -> None:
    db, settings = campaign
    early = engagement_at_ages(db, settings, now=t("2023-03-28 20:00"))  # P5 is 10 hours old
    assert [(r["stop"], r["posts"], r["covered"]) for r in early["24h"]] == [
        ("pirkanmaa", 3, 2), ("lappi", 2, 1), ("kainuu", 0, 0)]
    assert [(r["posts"], r["covered"]) for r in early["7d"]] == [(3, 3), (2, 0), (0, 0)]
    before = engagement_at_ages(db, settings, now=t("2023-02-01 00:00"))  # before every post
    assert [(r["posts"], r["covered"], r["engagement"]) for r in before["24h"]] == [(3, 0, 0), (2, 0, 0), (0, 0, 0)]
