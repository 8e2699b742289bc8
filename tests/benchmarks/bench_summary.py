"""Benchmark: per-visit summaries over 1 000 000 posts and 3 000 000 snapshots, 22 stops.

    .venv/bin/python tests/benchmarks/bench_summary.py [--posts N] [--keep DIR] [--no-postgres] [--strict]
                                                       [--slices N]

Builds a SQLite file (bulk executemany straight through the driver, not the ORM), then times
every summary the report uses against one hand-written `GROUP BY` of posts and likes per stop
(the floor: one scan of posts joined to attributions). Goal: all per-visit summaries < 3 s
(every visit's figures, engagement at 24 h and 7 d of every visit, one visit's days). A summary
runs in slices on up to one connection per CPU (tracker/summary.py `in_slices`); `--slices 1`
times it on one connection, like the floor.
PostgreSQL runs too when reachable (TRACKER_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test), in a schema of its own that is dropped.

The per-visit posts and likes are checked against the floor's GROUP BY: a difference is a bug
and exits 1. A missed goal exits 0 (a slow or busy machine is not a failure) unless --strict.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage.db import Database, open_database
from storage.queries import sync_stops
from tracker.areas import AREAS
import tracker.summary as summary_module
from tracker.settings import Settings, parse_settings
from tracker.summary import (
    engagement_at_ages,
    posts_per_day,
    top_authors,
    top_posts,
    visit_days,
    visit_summaries,
)

PG_URL = os.environ.get("TRACKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_SECONDS = 3.0
START = np.datetime64("2023-02-01T00:00:00", "us")
NOW = dt.datetime(2023, 8, 1, tzinfo=dt.timezone.utc)


def bench_settings(url: str) -> Settings:
    """The 22 areas as stops, one every 5 days from 2023-02-09."""
    first = dt.date(2023, 2, 9)
    stops = [{"area": area, "date": (first + dt.timedelta(days=5 * n)).isoformat()}
             for n, area in enumerate(list(AREAS)[:22])]
    raw = {"campaign": {"name": "Benchmark", "hashtags": ["ihmisensote"]},
           "tour": {"stops": stops}, "storage": {"url": url}}
    return parse_settings(raw, "bench settings", env={})


# -- synthetic data --------------------------------------------------------------------------------


def _stamps(micros: np.ndarray, pg: bool) -> list[str]:
    values = np.datetime_as_string(START + micros.astype("timedelta64[us]"), unit="us")
    text_values = np.char.replace(values, "T", " ")
    return [v + "+00" for v in text_values.tolist()] if pg else text_values.tolist()


def _nullable(values: np.ndarray, missing: np.ndarray) -> list[int | None]:
    out: list[int | None] = values.tolist()
    for i in np.flatnonzero(missing).tolist():
        out[i] = None
    return out


def generate(n_posts: int, settings: Settings, pg: bool, seed: int = 7) -> dict[str, Any]:
    """Column lists for authors, posts, snapshots, attributions (vectorised: seconds, not minutes)."""
    rng = np.random.default_rng(seed)
    n_authors = max(10, n_posts // 10)
    platforms = np.array(["x", "mastodon", "bluesky"])
    author_platform = rng.integers(0, 3, n_authors)
    followers = rng.lognormal(5, 2, n_authors).astype(np.int64)
    seen = _stamps(np.zeros(n_authors, dtype=np.int64), pg)
    authors = list(zip(range(1, n_authors + 1), platforms[author_platform].tolist(),
                       [f"user-{i}" for i in range(n_authors)], [f"user{i}" for i in range(n_authors)],
                       _nullable(followers, rng.random(n_authors) < 0.02), seen, seen, seen))

    span_us = 150 * 86_400 * 1_000_000
    created = np.sort(rng.integers(0, span_us, n_posts))
    author = rng.integers(0, n_authors, n_posts)
    kinds = np.array(["original", "repost", "reply", "quote"])[rng.choice(4, n_posts, p=[.55, .25, .15, .05])]
    deleted = rng.random(n_posts) < 0.01
    created_s = _stamps(created, pg)
    deleted_s = [s if d else None for s, d in zip(_stamps(created + 3_600_000_000, pg), deleted.tolist())]

    offsets = np.array([3_600, 72_000, 5 * 86_400], dtype=np.int64) * 1_000_000  # +1 h, +20 h, +5 d
    growth = np.array([0.2, 0.6, 1.0])
    base = {m: rng.poisson(lam, n_posts) for m, lam in
            (("likes", 8), ("reposts", 2), ("replies", 1), ("quotes", 0.3), ("views", 400))}
    is_x = author_platform[author] == 0
    snapshots = []
    snap_times = [_stamps(created + off, pg) for off in offsets]
    for k in range(3):
        cols = {m: (base[m] * growth[k]).astype(np.int64) for m in base}
        snapshots.append((snap_times[k], cols))
    last_times, last = snapshots[-1]
    post_rows = list(zip(
        range(1, n_posts + 1), platforms[author_platform[author]].tolist(),
        [f"p{i}" for i in range(n_posts)], [f"https://example.org/p/{i}" for i in range(n_posts)],
        (author + 1).tolist(), ["Kiertue #ihmisensote"] * n_posts, created_s, kinds.tolist(),
        ["[]"] * n_posts, ["api"] * n_posts, deleted_s, created_s, last_times,
        last["likes"].tolist(), last["reposts"].tolist(), last["replies"].tolist(),
        _nullable(last["quotes"], ~is_x), _nullable(last["views"], ~is_x), last_times,
    ))
    snap_rows: list[tuple[Any, ...]] = []
    for i in range(n_posts):  # PK order (post_id, fetched_at): the fast way into the index
        for times, cols in snapshots:
            snap_rows.append((i + 1, times[i], int(cols["likes"][i]), int(cols["reposts"][i]),
                              int(cols["replies"][i]), int(cols["quotes"][i]) if is_x[i] else None,
                              int(cols["views"][i]) if is_x[i] else None))
    stop_ids = [s.id for s in settings.tour.stops]
    which = rng.integers(0, len(stop_ids), n_posts)
    fate = rng.random(n_posts)  # < .85 a stop, < .95 no stop, else no attribution row
    tagged = _stamps(np.zeros(1, dtype=np.int64), pg)[0]
    attributions = [
        (i + 1, stop_ids[which[i]] if fate[i] < 0.85 else None, "area" if fate[i] < 0.85 else "none",
         0.9, "2023-02-09", False, tagged)
        for i in range(n_posts) if fate[i] < 0.95
    ]
    return {"authors": authors, "posts": post_rows, "snapshots": snap_rows, "attributions": attributions}


COLUMNS = {
    "authors": "id, platform, platform_id, handle, followers, followers_at, first_seen_at, last_seen_at",
    "posts": ("id, platform, platform_id, url, author_id, text, created_at, kind, hashtags, origin, deleted_at, "
              "first_seen_at, updated_at, likes, reposts, replies, quotes, views, metrics_at"),
    "metric_snapshots": "post_id, fetched_at, likes, reposts, replies, quotes, views",
    "attributions": "post_id, stop_id, method, confidence, local_date, manual, tagged_at",
}
TABLES = (("authors", "authors"), ("posts", "posts"), ("snapshots", "metric_snapshots"),
          ("attributions", "attributions"))


def load_sqlite(db: Database, data: dict[str, Any]) -> None:
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        for key, table in TABLES:
            cols = COLUMNS[table]
            marks = ", ".join("?" * len(cols.split(",")))
            cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", data[key])
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
    finally:
        raw.close()


def load_postgres(db: Database, data: dict[str, Any]) -> None:
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        for key, table in TABLES:
            with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                for row in data[key]:
                    copy.write_row(row)
        cur.execute("SELECT setval(pg_get_serial_sequence('posts', 'id'), (SELECT max(id) FROM posts))")
        raw.commit()
        raw.driver_connection.autocommit = True  # VACUUM cannot run in a transaction
        raw.driver_connection.execute("VACUUM ANALYZE")  # as autovacuum soon would after a bulk load
    finally:
        raw.close()


# -- timing ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best wall time of `repeat` runs after one warm-up (file caches warm, as in daily use).

    The best run is the one least disturbed by other work on the machine; the ratio to the
    GROUP BY measured the same way is the steadier number to compare across machines."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


BASELINE = text(
    "SELECT a.stop_id, COUNT(*), SUM(p.likes) FROM posts p "
    "LEFT JOIN attributions a ON a.post_id = p.id WHERE p.deleted_at IS NULL GROUP BY a.stop_id"
)


class Broken(Exception):
    """The summaries disagree with the hand-written GROUP BY."""


def check(db: Database, settings: Settings) -> None:
    """Every visit's posts and likes equal the floor's GROUP BY (stops in the tour)."""
    with db.engine.connect() as conn:
        floor = {stop: (int(posts), int(likes or 0)) for stop, posts, likes in conn.execute(BASELINE)}
    for visit in visit_summaries(db, settings):
        expected = floor.get(visit["stop"], (0, 0))
        if (visit["posts"], visit["likes"]) != expected:
            raise Broken(f"{visit['stop']}: posts, likes {visit['posts']}, {visit['likes']}; GROUP BY says {expected}")


def run(label: str, db: Database, settings: Settings) -> bool:
    def baseline() -> None:
        with db.engine.connect() as conn:
            conn.execute(BASELINE).all()

    first_stop = settings.tour.stops[0].id
    per_visit = {"visit_summaries (all stops)", "engagement_at_ages 24h + 7d", "visit_days (one stop)"}
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("visit_summaries (all stops)", lambda: visit_summaries(db, settings)),
        ("engagement_at_ages 24h + 7d", lambda: engagement_at_ages(db, settings, now=NOW)),
        ("visit_days (one stop)", lambda: visit_days(db, settings, first_stop)),
        ("posts_per_day", lambda: posts_per_day(db, settings)),
        ("top_posts 10", lambda: top_posts(db, settings)),
        ("top_authors by posts", lambda: top_authors(db, settings, by="posts")),
        ("top_authors by reach", lambda: top_authors(db, settings, by="reach")),
    ]
    check(db, settings)
    floor = timed(baseline)
    print(f"\n[{label}] best of 3; hand-written GROUP BY of posts and likes per stop: {floor:.3f} s "
          f"(load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs; summaries on "
          f"up to {min(summary_module._cpus(), summary_module.MAX_SLICES)} connections)")
    ok = True
    for name, fn in cases:
        seconds = timed(fn)
        mark = ""
        if name in per_visit:
            ok = ok and seconds < GOAL_SECONDS
            mark = f"  goal < {GOAL_SECONDS:.0f} s: {'OK' if seconds < GOAL_SECONDS else 'MISSED'}"
        print(f"  {name:<30} {seconds:7.3f} s   x{seconds / floor:5.1f} the GROUP BY{mark}")
    print(f"  per-visit figures equal the GROUP BY; all per-visit summaries under {GOAL_SECONDS:.0f} s: "
          f"{'yes' if ok else 'no'}")
    return ok


def build(db: Database, settings: Settings, n_posts: int, pg: bool) -> None:
    with db.write() as session:
        sync_stops(session, settings.tour.stops, dt.datetime.now(dt.timezone.utc))
    t0 = time.perf_counter()
    data = generate(n_posts, settings, pg)
    t1 = time.perf_counter()
    (load_postgres if pg else load_sqlite)(db, data)
    t2 = time.perf_counter()
    print(f"  generated {len(data['posts']):,} posts, {len(data['snapshots']):,} snapshots, "
          f"{len(data['authors']):,} authors, {len(data['attributions']):,} attributions in {t1 - t0:.1f} s; "
          f"loaded in {t2 - t1:.1f} s")


def bench_sqlite(n_posts: int, keep: Path | None) -> bool:
    folder = keep or Path(tempfile.mkdtemp(prefix="bench-summary-"))
    path = folder / f"bench-{n_posts}.db"
    url = f"sqlite:///{path}"
    settings = bench_settings(url)
    fresh = not path.exists()
    db = open_database(url)
    try:
        if fresh:
            print(f"SQLite: building {path}")
            build(db, settings, n_posts, pg=False)
        else:
            print(f"SQLite: reusing {path}")
        return run("SQLite", db, settings)
    finally:
        db.dispose()
        if keep is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            folder.rmdir()


def bench_postgres(n_posts: int) -> bool | None:
    try:
        admin = create_engine(PG_URL, connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        print(f"\nPostgreSQL skipped: {make_url(PG_URL).render_as_string(hide_password=True)} unreachable ({exc})")
        return None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    settings = bench_settings(url)
    try:
        db = open_database(url)
        try:
            print(f"\nPostgreSQL: building schema {schema}")
            build(db, settings, n_posts, pg=True)
            return run("PostgreSQL", db, settings)
        finally:
            db.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the SQLite file in this folder")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--slices", type=int, help="at most this many connections per summary (default: one per "
                        f"CPU, at most {summary_module.MAX_SLICES}); 1 compares like for like with the GROUP BY")
    args = parser.parse_args(argv)
    if args.slices:
        summary_module.MAX_SLICES = args.slices
    try:
        ok = bench_sqlite(args.posts, args.keep)
        if not args.no_postgres:
            ok = (bench_postgres(args.posts) is not False) and ok
    except Broken as exc:
        print(f"BROKEN: {exc}")
        return 1
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
