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
