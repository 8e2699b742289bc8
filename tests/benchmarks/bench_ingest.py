"""Benchmark: bulk ingest through `store_posts` against the physical floor, on SQLite and PostgreSQL.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--posts N] [--authors N] [--batch N] [--page-seconds S]
                                                      [--no-postgres] [--strict]

Builds N normalised posts in memory (default 200 000 by 20 000 authors, one metric snapshot
each, follower counts on every author), then stores them as collection does: `store_posts` in
batches of 1 000, one write transaction per batch, each batch a page fetched at its own moment
(pages 1 s apart unless --page-seconds says otherwise).

The figures that hold on a noisy machine are ratios to floors measured in the same run, the
floors and store_posts taking turns batch by batch (a busy spell hits all of them alike): the same
rows written straight through the driver, plain INSERTs with no conflict handling, one
transaction per batch of 1 000 posts with that batch's new authors (each author written once)
and the follower history store_posts ends up with (each author's first count and its changes).
- floor B (the goal's floor: "tables of the same shape"): the tracker's own tables, with their
  secondary indexes and foreign keys, i.e. what any writer of these rows into this schema pays;
- floor A (for reference): bare tables with the same columns, primary keys and unique indexes
  and nothing else, i.e. a cheaper schema than the tracker's.
SQLite: `sqlite3` executemany on files with the tracker's pragmas (WAL, synchronous=NORMAL);
PostgreSQL: `COPY ... FROM STDIN` (psycopg `cursor.copy`). Goal: store_posts >= 0.5 x floor B.
On SQLite all the work happens in this process, so CPU seconds are printed too.

Then the same N posts are stored again (all duplicates): no row may be added (asserted), and
the time is compared with the first ingest (goal: no slower). PostgreSQL runs when reachable
(TRACKER_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test) in
schemas of its own that are dropped afterwards; otherwise it is skipped with the reason.
Exit code 0 unless something is wrong (--strict: 1 when a goal is missed too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from storage.db import Database, open_database
from storage.sqlite_tuning import memory_statistics_off
from storage.models import Author, AuthorFollowers, MetricSnapshot, Post, PostSource
from storage.upserts import StoreResult, store_posts
from tracker.posts import Author as PostAuthor
from tracker.posts import Metrics, NormalisedPost, PostKind

PG_URL = os.environ.get("TRACKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_RATIO = 0.5
UTC = dt.timezone.utc
FETCH_START = dt.datetime(2023, 4, 1, 6, 0, tzinfo=UTC)
CREATED_START = dt.datetime(2023, 2, 1, tzinfo=UTC)
WORDS = """kiertue hyvinvointialue tänään tapasimme järjestöjä ja asukkaita keskustelu sote palvelut
yhdessä kiitos kaikille mukana olleille Tampereella Oulussa Rovaniemellä Vaasassa Kuopiossa hej tack
välfärdsområdet great discussion today with the team about services""".split()
TAGS = ("ihmisensote", "sote", "hyvinvointialueet", "pirkanmaa", "oulu", "lappi")


# -- synthetic posts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    batches: list[list[NormalisedPost]]
    authors: list[PostAuthor]
    author_platform: list[str]
    author_of: dict[tuple[str, str], int]
    """(platform, post platform_id) -> author index."""

    @property
    def posts(self) -> int:
        return sum(len(b) for b in self.batches)


def generate(n_posts: int, n_authors: int, batch: int, seed: int = 2023, page_seconds: float = 1.0) -> Data:
    """Posts of three platforms by `n_authors` accounts, in pages as a collector sees them.

    Each batch is one page fetched at one moment: the pages follow each other in time (newest
    first within a page), while the authors are drawn at random, so every page mentions hundreds
    of authors already stored. An author's follower count moves on one page in ten (a new
    observation for the follower history); otherwise it is the count stored last time."""
    rng = random.Random(seed)
    platforms = ("x", "bluesky", "mastodon")
    author_platform = [platforms[i % 3] for i in range(n_authors)]
    authors = [
        PostAuthor(platform_id=f"acct-{i}", handle=f"user{i}", display_name=f"User {i}",
                   url=f"https://example.org/@user{i}", followers=rng.randrange(20, 50_000))
        for i in range(n_authors)
    ]
    last_page = [-1] * n_authors
    span = 150 * 86_400
    created = sorted(rng.randrange(span) for _ in range(n_posts))
    author_of: dict[tuple[str, str], int] = {}
    batches: list[list[NormalisedPost]] = []
    for first in range(0, n_posts, batch):
        fetched = FETCH_START + dt.timedelta(seconds=len(batches) * page_seconds)
        page: list[NormalisedPost] = []
        for n in range(first, min(first + batch, n_posts)):
            a = rng.randrange(n_authors)
            platform = author_platform[a]
            if last_page[a] != len(batches):
                if last_page[a] >= 0 and rng.random() < 0.1:
                    old = authors[a]
                    authors[a] = PostAuthor(old.platform_id, old.handle, old.display_name, old.url,
                                            max(0, (old.followers or 0) + rng.randint(-20, 60)))
                last_page[a] = len(batches)
            kind = rng.choices((PostKind.ORIGINAL, PostKind.REPOST, PostKind.REPLY, PostKind.QUOTE),
                               (55, 25, 15, 5))[0]
            tags = tuple(rng.sample(TAGS, rng.randint(1, 3)))
            platform_id = f"{platform}-{n}"
            author_of[(platform, platform_id)] = a
            page.append(NormalisedPost(
                platform=platform,
                platform_id=platform_id,
                author=authors[a],
                text=" ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + " " + " ".join("#" + t for t in tags),
                created_at=CREATED_START + dt.timedelta(seconds=created[n]),
                fetched_at=fetched,
                url=f"https://example.org/{platform}/{n}",
                language=rng.choice(("fi", "fi", "fi", "sv", "en")),
                hashtags=tags,
                kind=kind,
                referenced_id=None if kind is PostKind.ORIGINAL else f"{platform}-ref-{rng.randrange(10**9)}",
                metrics=Metrics(likes=rng.randrange(200), reposts=rng.randrange(40), replies=rng.randrange(20),
                                quotes=rng.randrange(5) if platform != "mastodon" else None,
                                views=rng.randrange(10_000) if platform == "x" else None),
            ))
        page.reverse()  # an API page: newest first
        batches.append(page)
    return Data(batches, authors, author_platform, author_of)


# -- the floor: the same rows straight through the driver -----------------------------------------

FLOOR_DDL = """
CREATE TABLE {p}authors (
    id INTEGER PRIMARY KEY, platform VARCHAR(32) NOT NULL, platform_id VARCHAR(512) NOT NULL,
    handle VARCHAR(256), display_name VARCHAR(512), url TEXT, followers BIGINT,
    followers_at {ts}, first_seen_at {ts} NOT NULL, last_seen_at {ts} NOT NULL,
    UNIQUE (platform, platform_id));
CREATE TABLE {p}posts (
    id INTEGER PRIMARY KEY, platform VARCHAR(32) NOT NULL, platform_id VARCHAR(512) NOT NULL, url TEXT,
    author_id INTEGER, text TEXT, language VARCHAR(16), created_at {ts} NOT NULL, kind VARCHAR(16) NOT NULL,
    referenced_id VARCHAR(512), hashtags {json} NOT NULL, origin VARCHAR(16) NOT NULL, source VARCHAR(512),
    source_id VARCHAR(128), edited_at {ts}, deleted_at {ts}, first_seen_at {ts} NOT NULL,
    updated_at {ts} NOT NULL, likes BIGINT, reposts BIGINT, replies BIGINT, quotes BIGINT, views BIGINT,
    metrics_at {ts},
    UNIQUE (platform, platform_id));
CREATE TABLE {p}metric_snapshots (
    post_id INTEGER NOT NULL, fetched_at {ts} NOT NULL, likes BIGINT, reposts BIGINT, replies BIGINT,
    quotes BIGINT, views BIGINT,
    PRIMARY KEY (post_id, fetched_at));
CREATE TABLE {p}author_followers (
    author_id INTEGER NOT NULL, observed_at {ts} NOT NULL, followers BIGINT NOT NULL,
    PRIMARY KEY (author_id, observed_at));
"""
AUTHOR_COLS = ("id, platform, platform_id, handle, display_name, url, followers, followers_at, "
               "first_seen_at, last_seen_at")
POST_COLS = ("id, platform, platform_id, url, author_id, text, language, created_at, kind, referenced_id, "
             "hashtags, origin, source, source_id, edited_at, deleted_at, first_seen_at, updated_at, likes, "
             "reposts, replies, quotes, views, metrics_at")
SNAPSHOT_COLS = "post_id, fetched_at, likes, reposts, replies, quotes, views"
HISTORY_COLS = "author_id, observed_at, followers"
TABLES = (("authors", AUTHOR_COLS), ("posts", POST_COLS), ("metric_snapshots", SNAPSHOT_COLS),
          ("author_followers", HISTORY_COLS))


def _sqlite_ts(value: dt.datetime | None) -> str | None:
    """The text SQLAlchemy stores for a UTC datetime on SQLite."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(tags: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{t}"' for t in tags) + "]"


FloorBatch = tuple[list[tuple[Any, ...]], ...]


def floor_rows(data: Data, pg: bool) -> list[FloorBatch]:
    """Per batch: (new authors, posts, snapshots, follower history) as plain tuples, ready for
    the driver (not timed). The history rows are those `store_posts` stores: an author's first
    count and every later change (pages come in time order, so nothing is decided by probing)."""
    ts: Callable[[dt.datetime | None], Any] = (lambda v: v) if pg else _sqlite_ts
    seen: set[int] = set()
    counts: dict[int, int | None] = {}
    out: list[FloorBatch] = []
    stamp = ts(dt.datetime.now(UTC))
    post_id = 0
    for batch in data.batches:
        authors, posts, snaps, history = [], [], [], []
        for p in batch:
            a = data.author_of[(p.platform, p.platform_id)]
            fetched = ts(p.fetched_at)
            au = p.author
            if a not in seen:
                seen.add(a)
                authors.append((a + 1, p.platform, au.platform_id, au.handle, au.display_name, au.url,
                                au.followers, fetched, fetched, fetched))
            if au.followers is not None and counts.get(a) != au.followers:
                counts[a] = au.followers
                history.append((a + 1, fetched, au.followers))
            post_id += 1
            m = p.metrics
            posts.append((post_id, p.platform, p.platform_id, p.url, a + 1, p.text, p.language, ts(p.created_at),
                          p.kind.value, p.referenced_id, _json(p.hashtags), "api", p.source, p.source_id,
                          ts(p.edited_at), None, stamp, fetched, m.likes, m.reposts, m.replies, m.quotes, m.views,
                          fetched))
            snaps.append((post_id, fetched, m.likes, m.reposts, m.replies, m.quotes, m.views))
        out.append((authors, posts, snaps, history))
    return out


class Clock:
    """Wall and CPU seconds of one contestant, summed over its batches."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def time(self, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn()
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


def sqlite_floor_writer(conn: sqlite3.Connection) -> Callable[[FloorBatch], None]:
    inserts = [f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(cols.split(',')))})"
               for table, cols in TABLES]

    def write(batch: FloorBatch) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for sql, rows in zip(inserts, batch):
            conn.executemany(sql, rows)
        conn.execute("COMMIT")

    return write


def pg_floor_writer(raw: Any, prefix: str) -> Callable[[FloorBatch], None]:
    cur = raw.cursor()

    def write(batch: FloorBatch) -> None:
        for (table, cols), rows in zip(TABLES, batch):
            if rows:
                with cur.copy(f"COPY {prefix}{table} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        raw.commit()

    return write


# -- the tracker's path -----------------------------------------------------------------------------


def store_batch(db: Database, batch: list[NormalisedPost], total: StoreResult) -> None:
    with db.write() as session:
        total += store_posts(session, batch)


def counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Author, Post, MetricSnapshot, AuthorFollowers, PostSource)}


def line(label: str, n: int, clock: Clock, cpu: bool) -> str:
    text = f"  {label:<48} {n:,} posts in {clock.wall:6.2f} s = {n / clock.wall:8,.0f} posts/s"
    return text + (f"  (CPU {clock.cpu:6.2f} s)" if cpu else "")


def compare(db: Database, data: Data, floors: dict[str, Callable[[FloorBatch], None]],
            rows: list[FloorBatch], cpu: bool) -> bool:
    """The floors and store_posts take turns batch by batch, so a busy spell hits them alike."""
    n = data.posts
    clocks = {name: Clock() for name in floors}
    first_clock, first = Clock(), StoreResult()
    gc.collect()
    for batch, floor_batch in zip(data.batches, rows):
        for name, write in floors.items():
            clocks[name].time(lambda: write(floor_batch))  # noqa: B023 - called at once
        first_clock.time(lambda: store_batch(db, batch, first))  # noqa: B023
    after_first = counts(db)
    assert (first.new, first.updated) == (n, 0), (first.new, first.updated)
    assert after_first["posts"] == n and after_first["metric_snapshots"] == n
    assert after_first["authors"] == len(set(data.author_of.values()))
    assert after_first["author_followers"] == sum(len(r[3]) for r in rows)  # the floors wrote the same history
    assert len(first.ids) == n
    strict = GOAL_FLOOR
    ok = True
    for name, clock in clocks.items():
        print(line(name, n, clock, cpu))
    print(line("store_posts, first ingest", n, first_clock, cpu))
    for name, clock in clocks.items():
        ratio = clock.wall / first_clock.wall
        goal = f"   goal >= {GOAL_RATIO}: {'OK' if ratio >= GOAL_RATIO else 'MISSED'}" if name == strict else ""
        cpu_ratio = f" (CPU {clock.cpu / first_clock.cpu:.3f})" if cpu else ""
        print(f"    store_posts / {name.split(':')[0]}: {ratio:.3f}{cpu_ratio}{goal}")
        if name == strict:
            ok = ratio >= GOAL_RATIO
    again_clock, again = Clock(), StoreResult()
    gc.collect()
    for batch in data.batches:
        again_clock.time(lambda: store_batch(db, batch, again))  # noqa: B023
    after_again = counts(db)
    assert after_again == after_first, (after_first, after_again)
    assert (again.new, again.updated) == (0, n), (again.new, again.updated)
    print(line("store_posts, the same posts again", n, again_clock, cpu))
    factor = again_clock.wall / first_clock.wall
    cpu_factor = f" (CPU x{again_clock.cpu / first_clock.cpu:.2f})" if cpu else ""
    print(f"    no rows added; x{factor:.2f} the first ingest{cpu_factor}   goal <= x1.00: "
          f"{'OK' if factor <= 1 else 'MISSED'}")
    print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in after_first.items()))
    return ok and factor <= 1


FLOOR_A = "floor A: unique indexes only"
FLOOR_B = "floor B: the tracker's tables (+ indexes, FKs)"
GOAL_FLOOR = FLOOR_B


def bench_sqlite(data: Data) -> bool:
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    memory_statistics_off()  # as the tracker does before its first connection; process-wide, floors too
    plain = sqlite3.connect(folder / "floor-a.db", isolation_level=None)
    schema_db = open_database(f"sqlite:///{folder / 'floor-b.db'}")
    schema_raw = schema_db.engine.raw_connection()  # the tracker's pragmas: WAL, synchronous=NORMAL, FKs
    db = open_database(f"sqlite:///{folder / 'tracker.db'}")
    try:
        plain.execute("PRAGMA journal_mode=WAL")
        plain.execute("PRAGMA synchronous=NORMAL")
        plain.executescript(FLOOR_DDL.format(p="", ts="DATETIME", json="JSON"))
        floors = {FLOOR_A: sqlite_floor_writer(plain),
                  FLOOR_B: sqlite_floor_writer(schema_raw.driver_connection)}
        print(f"\n[SQLite {sqlite3.sqlite_version}] floors: sqlite3 executemany of plain INSERTs; "
              "WAL, synchronous=NORMAL")
        return compare(db, data, floors, floor_rows(data, pg=False), cpu=True)
    finally:
        plain.close()
        schema_raw.close()
        schema_db.dispose()
        db.dispose()
        for path in sorted(folder.iterdir()):
            path.unlink()
        folder.rmdir()


def bench_postgres(data: Data) -> bool | None:
    try:
        admin = create_engine(PG_URL, connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"\nPostgreSQL skipped: {make_url(PG_URL).render_as_string(hide_password=True)} unreachable ({reason})")
        return None
    schema = f"bench_ingest_{uuid.uuid4().hex[:10]}"
    schemas = (schema, f"{schema}_floor")
    with admin.begin() as conn:
        for name in schemas:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))

    def url(name: str) -> str:
        return make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(False)

    try:
        db = open_database(url(schema))
        schema_db = open_database(url(schemas[1]))
        plain_raw, schema_raw = db.engine.raw_connection(), schema_db.engine.raw_connection()
        try:
            plain_raw.cursor().execute(
                FLOOR_DDL.format(p="floor_", ts="TIMESTAMPTZ", json="JSON").replace("INTEGER", "BIGINT"))
            plain_raw.commit()
            floors = {FLOOR_A: pg_floor_writer(plain_raw, "floor_"), FLOOR_B: pg_floor_writer(schema_raw, "")}
            print(f"\n[PostgreSQL {version}] floors: COPY FROM STDIN (psycopg cursor.copy); schemas "
                  f"{', '.join(schemas)}")
            return compare(db, data, floors, floor_rows(data, pg=True), cpu=False)
        finally:
            plain_raw.close()
            schema_raw.close()
            schema_db.dispose()
            db.dispose()
    finally:
        with admin.begin() as conn:
            for name in schemas:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--authors", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--page-seconds", type=float, default=1.0,
                        help="time between the pages' fetches (default 1: the whole run within minutes, so an "
                             "author's last_seen_at moves at most once; more spreads the pages over hours)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    data = generate(args.posts, args.authors, args.batch, page_seconds=args.page_seconds)
    print(f"generated {data.posts:,} posts by {len(data.authors):,} authors in {len(data.batches)} batches "
          f"of {args.batch:,}, {args.page_seconds:g} s apart ({time.perf_counter() - t0:.1f} s; not timed)")
    ok = bench_sqlite(data)
    if not args.no_postgres:
        ok = (bench_postgres(data) is not False) and ok
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
