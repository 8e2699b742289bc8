"""A separate process that writes batches to one database (used by the concurrency tests).

Usage: python sqlite_writer.py URL WORKER BATCHES PER_BATCH; prints 'ok' or the error.
"""

from __future__ import annotations

import datetime as dt
import sys

from sqlalchemy import func, select

from storage.db import open_database
from storage.models import CollectionRun, MetricSnapshot, Post
from storage.upserts import store_posts
from tracker.posts import Author, Metrics, NormalisedPost

UTC = dt.timezone.utc


def main(url: str, worker: int, batches: int, per_batch: int) -> None:
    db = open_database(url)
    base = dt.datetime(2023, 2, 9, tzinfo=UTC)
    for batch in range(batches):
        now = base + dt.timedelta(seconds=batch)
        posts = [
            NormalisedPost(
                platform="x", platform_id=f"{worker}-{batch}-{n}",
                author=Author(platform_id=f"shared-{n % 5}", handle="h", followers=batch),
                text="#ihmisensote", created_at=base, fetched_at=now, metrics=Metrics(likes=n),
            )
            for n in range(per_batch)
        ]
        # read, then write in the same transaction: the pattern that fails with a plain deferred
        # BEGIN when another process takes the write lock in between
        with db.write() as session:
            session.scalar(select(func.count()).select_from(Post))
            store_posts(session, posts)
            session.add(CollectionRun(platform="x", started_at=now, status="ok"))
        with db.read() as session:
            session.scalar(select(func.count()).select_from(MetricSnapshot))
    db.dispose()


if __name__ == "__main__":
    try:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        print("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent test
        print(f"{type(exc).__name__}: {exc}")
        sys.exit(1)
