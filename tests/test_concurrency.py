"""Several processes writing one database at once: nobody sees "database is locked"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from storage.db import open_database
from storage.models import CollectionRun, Post

WRITER = Path(__file__).parent / "helpers" / "sqlite_writer.py"
BATCHES, PER_BATCH = 25, 20


def run_writers(url: str, count: int) -> list[str]:
    procs = [
        subprocess.Popen([sys.executable, str(WRITER), url, str(w), str(BATCHES), str(PER_BATCH)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for w in range(count)
    ]
    return [p.communicate(timeout=180)[0].strip().splitlines()[-1] for p in procs]


def assert_counts(url: str, writers: int) -> None:
    db = open_database(url)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Post)) == writers * BATCHES * PER_BATCH
        assert s.scalar(select(func.count()).select_from(CollectionRun)) == writers * BATCHES
    db.dispose()


def test_concurrent_writers_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    open_database(url).dispose()
    assert run_writers(url, 4) == ["ok"] * 4
    assert_counts(url, 4)


def test_concurrent_first_start_creates_schema_once(tmp_path: Path) -> None:
    """Three commands started at once on a fresh file all find a ready schema."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert run_writers(url, 3) == ["ok"] * 3
    assert_counts(url, 3)


def test_concurrent_writers_on_postgresql(pg_url: str) -> None:
    assert run_writers(pg_url, 3) == ["ok"] * 3
    assert_counts(pg_url, 3)


def test_two_writers_tagging_the_same_new_posts_on_postgresql(pg_url: str) -> None:
    """A re-tag and a refresh tag the same untagged posts at once: the second waits, then keeps
    the first one's identical tags instead of failing on the primary key (or deadlocking)."""
    import datetime as dt
    import threading

    from storage.models import PostArea
    from storage.queries import TagRow, store_tags
    from storage.upserts import store_posts
    from tests.test_storage import post

    db = open_database(pg_url)
    now = dt.datetime(2023, 2, 9, 12, tzinfo=dt.timezone.utc)
    with db.write() as s:
        ids = sorted(store_posts(s, [post(n) for n in range(3)]).ids.values())
    rows = [TagRow(i, ["pirkanmaa"], None, "none", 0.0, now.date()) for i in ids]
    errors: list[BaseException] = []
    first_holds = threading.Event()
    release = threading.Event()

    def first() -> None:
        with db.write() as s:
            store_tags(s, rows, now)
            first_holds.set()
            release.wait(10)

    def second() -> None:
        try:
            with db.write() as s:
                store_tags(s, list(reversed(rows)), now)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    assert first_holds.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(1.0)  # blocked on the first writer's uncommitted rows
    release.set()
    t1.join(10)
    t2.join(10)
    assert errors == []
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(PostArea)) == 3
    db.dispose()
