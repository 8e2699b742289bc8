"""SQLite's memory statistics are turned off before the first connection, and only then.

Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the statistics are only turned off on Linux")

PRELUDE = """
import json, sqlite3, threading
from storage import sqlite_tuning
from storage.db import open_database
from storage.models import Post
from sqlalchemy import func, select, text
lib = sqlite_tuning._library()
out = {}
"""


def run(script: str, tmp_path: Path) -> dict:
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "DB": str(tmp_path / "t.db")})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_statistics_are_off_once_the_tracker_opens_a_database(tmp_path: Path) -> None:
    out = run("""
        import os
        out["before"] = lib.sqlite3_memory_used()
        plain = sqlite3.connect(":memory:")
        out["counted_before"] = lib.sqlite3_memory_used() > 0  # statistics on: SQLite's default
        plain.close()
        db = open_database("sqlite:///" + os.environ["DB"])
        with db.read() as session:
            out["posts"] = session.scalar(select(func.count()).select_from(Post))
            out["counted_after"] = lib.sqlite3_memory_used()  # a connection is open: 0 = not counting
        out["state"] = sqlite_tuning.memory_statistics_off()

        # queries on two threads still give right answers
        results = []
        def query(n):
            with db.read() as session:
                results.append(session.execute(text(f"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "
                                                   f"SELECT i + 1 FROM c WHERE i < {n}) SELECT sum(i) FROM c")).scalar())
        threads = [threading.Thread(target=query, args=(n,)) for n in (1000, 2000)]
        [t.start() for t in threads]; [t.join() for t in threads]
        out["sums"] = sorted(results)
        db.dispose()
    """, tmp_path)
    assert out["before"] == 0 and out["counted_before"] is True
    assert out["posts"] == 0
    assert out["counted_after"] == 0
    assert out["state"] is True
    assert out["sums"] == [500500, 2001000]


def test_left_alone_for_good_while_a_connection_is_open(tmp_path: Path) -> None:
    out = run("""
        import os
        held = sqlite3.connect(":memory:")
        held.execute("CREATE TABLE t (x)"); held.execute("INSERT INTO t VALUES (42)")
        db = open_database("sqlite:///" + os.environ["DB"])  # must not shut SQLite down under `held`
        out["first"] = sqlite_tuning.memory_statistics_off()
        with db.read() as session:
            out["counting"] = lib.sqlite3_memory_used() > 0
            out["posts"] = session.scalar(select(func.count()).select_from(Post))
        out["held"] = held.execute("SELECT x FROM t").fetchone()[0]
        held.close()
        db.dispose()
        again = open_database("sqlite:///" + os.environ["DB"])  # not tried again: one attempt per process
        with again.read() as session:
            session.scalar(select(func.count()).select_from(Post))
            out["still_counting"] = lib.sqlite3_memory_used() > 0
        again.dispose()
    """, tmp_path)
    assert out["first"] is False
    assert out["counting"] is True and out["posts"] == 0 and out["held"] == 42
    assert out["still_counting"] is True


def test_left_alone_while_another_thread_runs(tmp_path: Path) -> None:
    out = run("""
        import os
        release = threading.Event()
        other = threading.Thread(target=release.wait)
        other.start()
        db = open_database("sqlite:///" + os.environ["DB"])
        release.set(); other.join()
        with db.read() as session:
            session.scalar(select(func.count()).select_from(Post))
            out["counting"] = lib.sqlite3_memory_used() > 0
        out["state"] = sqlite_tuning.memory_statistics_off()
        db.dispose()
    """, tmp_path)
    assert out["counting"] is True and out["state"] is False
