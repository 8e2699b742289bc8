"""Database trouble: one line and exit code 3 instead of tracebacks, per-platform lines still
printed, the scheduler retrying soon with backoff, and runs of a killed process shown as
interrupted. Real SQLite files (locked by another connection) and real PostgreSQL (reached
through a relay that is taken down)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from jobs.scheduler import build_scheduler
from jobs.worker import Worker
from storage.db import Database, open_database
from storage.models import CollectionRun, Post
from tests.helpers.db_outage import Outage
from tests.helpers.fake_campaign import ENV, Fakes, seed, settings_raw, start_fakes, write_settings_file
from tracker.app import App
from tracker.errors import DatabaseUnavailable

HERE = Path(__file__).parent


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


@pytest.fixture
def outage(db_url: str) -> Iterator[Outage]:
    open_database(db_url).dispose()  # the schema exists before anything is made unavailable
    made = Outage(db_url)
    try:
        yield made
    finally:
        made.close()


def write_settings(tmp_path: Path, fakes: Fakes, url: str, *, platforms: tuple[str, ...] = ("x", "mastodon", "bluesky"),
                   schedule: dict[str, int] | None = None) -> Path:
    return write_settings_file(tmp_path / "settings.toml", settings_raw(fakes, url), platforms=platforms,
                               schedule=schedule, storage={"sqlite_busy_timeout": 0.5})


def env() -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    full.update(ENV)
    return full


def tracker(settings: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tracker", "--settings", str(settings), *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_posts(db: Database, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read() as s:
            if s.scalar(select(func.count()).select_from(Post)) >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} posts stored")


def assert_one_clean_error(err: str) -> str:
    assert "Traceback" not in err, err
    assert "[SQL" not in err and "BEGIN IMMEDIATE" not in err and "sqlalche.me" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_collect_during_a_database_outage_prints_each_platform_and_one_error(
        fakes: Fakes, tmp_path: Path, outage: Outage) -> None:
    """The database goes away after the run started (locked past the busy timeout / the
    server gone): each platform gets its line, then one error line, exit code 3. Afterwards the
    run that could not be finished shows as interrupted, and a collection succeeds again."""
    seed(fakes, n_x=15, n_m=3, n_b=2)
    settings = write_settings(tmp_path, fakes, outage.url)
    direct = open_database(outage.direct_url)
    fakes.x.delay_next(0.0, count=1, path="/2/tweets/search/recent")  # the first page at once,
    fakes.x.delay_next(3.0, count=1, path="/2/tweets/search/recent")  # the second one slowly
    proc = tracker(settings, "collect")
    try:
        wait_for_posts(direct, 10)
        outage.begin()
        out, err = proc.communicate(timeout=120)
        outage.end()
        assert proc.returncode == 3, (out, err)
        lines = out.splitlines()
        assert [line.split(":")[0] for line in lines] == ["x", "mastodon", "bluesky"], out
        assert lines[0].startswith("x: failed: fetched 10, new 10, updated 0, pages 1, gaps 1; the database failed")
        assert lines[1:] == ["mastodon: not run: the database is unavailable",
                             "bluesky: not run: the database is unavailable"], out
        error = assert_one_clean_error(err)
        if outage.sqlite:
            assert "is locked by another process" in error and "sqlite_busy_timeout" in error
        else:
            assert "cannot open database" in error and "check that the server is running" in error
        assert "try again" in error

        status = subprocess.run([sys.executable, "-m", "tracker", "--settings", str(settings), "status",
                                 "--format", "json"], env=env(), capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        x_collect = next(p for p in json.loads(status.stdout)["platforms"]
                         if (p["platform"], p["kind"]) == ("x", "collect"))
        assert x_collect["status"] == "interrupted"  # was 'running' for ever

        again = tracker(settings, "collect")
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        with direct.read() as s:
            statuses = s.scalars(select(CollectionRun.status).where(CollectionRun.platform == "x")
                                 .order_by(CollectionRun.id)).all()
        assert statuses == ["interrupted", "ok"]  # recorded by the next run
    finally:
        if proc.poll() is None:
            proc.kill()
        direct.dispose()


def test_unreachable_database_before_collecting_is_one_line(fakes: Fakes, tmp_path: Path, outage: Outage) -> None:
    outage.begin()
    settings = write_settings(tmp_path, fakes, outage.url)
    for args in (["collect"], ["summary", "--format", "json"], ["status"]):
        proc = tracker(settings, *args)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, (args, out, err)
        error = assert_one_clean_error(err)
        assert "database" in error and ("locked" in error or "cannot open database" in error), error
        if args == ["collect"]:
            assert [line.split(":")[:2] for line in out.splitlines()] == [
                ["x", " not run"], ["mastodon", " not run"], ["bluesky", " not run"]]
        else:
            assert out == ""


def test_full_disk_and_read_only_file_are_named(tmp_path: Path) -> None:
    """SQLite's own errors, produced for real: a database that may not grow (as on a full disk)
    and one opened read-only. The message names the problem and what to do; no SQL."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    open_database(url).dispose()
    full = Database(url)
    event.listen(full.engine, "connect", lambda conn, _rec: conn.execute("PRAGMA max_page_count = 1"))
    try:
        with pytest.raises(DatabaseUnavailable, match="the disk is full: free some space") as info:
            with full.write() as s:
                s.add(CollectionRun(platform="x", started_at=dt.datetime.now(dt.timezone.utc), error="x" * 50_000))
        assert "INSERT" not in str(info.value) and "xxxx" not in str(info.value)
        assert info.value.exit_code == 3 and info.value.transient
    finally:
        full.dispose()
    read_only = Database(f"sqlite:///file:{tmp_path / 't.db'}?mode=ro&uri=true")
    try:
        with pytest.raises(DatabaseUnavailable, match="is read-only: give the tracker's user write access") as info:
            with read_only.write() as s:
                s.add(CollectionRun(platform="x", started_at=dt.datetime.now(dt.timezone.utc)))
        assert not info.value.transient
    finally:
        read_only.dispose()


def test_scheduler_retries_a_job_soon_with_backoff_after_a_database_outage(
        fakes: Fakes, tmp_path: Path, outage: Outage) -> None:
    """The real APScheduler: the metrics refresh (every 180 min) fails while the database is
    unavailable and is tried again after 1, 2, 4 ... (here seconds), not after 180 minutes; once
    the database is back it succeeds and returns to its interval."""
    seed(fakes, n_x=0, n_m=3, n_b=0)
    settings = write_settings(tmp_path, fakes, outage.url, platforms=("mastodon",),
                              schedule={"refresh_every_minutes": 180})
    app = App(settings_path=str(settings), env=dict(ENV))
    app.database()
    worker = Worker(app, retry_first=dt.timedelta(seconds=1))
    sched = build_scheduler(worker, "test:1")
    for job in sched.get_jobs():
        if job.id != "refresh-metrics":
            sched.remove_job(job.id)
    sched.modify_job("refresh-metrics", next_run_time=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    attempts: list[float] = []
    real_refresh = worker.refresh

    def refresh(platform: str, *, force: bool = False):  # type: ignore[no-untyped-def]
        attempts.append(time.monotonic())
        if len(attempts) == 4:
            outage.end()  # back before the fourth attempt
        return real_refresh(platform, force=force)

    worker.refresh = refresh  # type: ignore[method-assign]
    direct = open_database(outage.direct_url)
    outage.begin()
    thread = threading.Thread(target=sched.start, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        ok = 0
        while time.monotonic() < deadline and not ok:
            time.sleep(0.2)
            with direct.read() as s:
                ok = s.scalar(select(func.count()).select_from(CollectionRun)
                              .where(CollectionRun.kind == "refresh", CollectionRun.status == "ok"))
        assert ok == 1 and len(attempts) == 4, attempts
        gaps = [b - a for a, b in zip(attempts, attempts[1:4])]
        for gap, expected in zip(gaps, (1, 2, 4)):
            assert expected - 0.3 <= gap <= expected + 2.0, gaps
        assert worker.retry_at("mastodon", "refresh") is None  # no retry pending after success
        next_run = sched.get_job("refresh-metrics").next_run_time
        assert next_run - dt.datetime.now(next_run.tzinfo) > dt.timedelta(minutes=170)  # its interval again
    finally:
        worker.stop.set()
        sched.shutdown(wait=True)
        thread.join(10)
        worker.close()
        app.close()
        direct.dispose()


def test_run_killed_with_sigkill_shows_as_interrupted(fakes: Fakes, tmp_path: Path, db_url: str) -> None:
    """A real kill -9 in the middle of a page: `tracker status` says interrupted at once (this
    host, process gone), not 'running' for ever; the next run records it so."""
    seed(fakes, n_x=25, n_m=0, n_b=0)
    raw = settings_raw(fakes, db_url)
    raw["platforms"]["mastodon"]["enabled"] = raw["platforms"]["bluesky"]["enabled"] = False
    (tmp_path / "settings.json").write_text(json.dumps(raw))
    open_database(db_url).dispose()
    killed = subprocess.run([sys.executable, str(HERE / "helpers" / "collect_and_die.py"),
                             str(tmp_path / "settings.json"), "2"], env=env(), cwd=HERE.parent,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    settings = write_settings(tmp_path, fakes, db_url, platforms=("x",))
    status = subprocess.run([sys.executable, "-m", "tracker", "--settings", str(settings), "status"],
                            env=env(), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    x_row = next(line for line in status.stdout.splitlines() if "│ x " in line and "collect" in line)
    assert "interrupted" in x_row and "running" not in x_row
    db = open_database(db_url)
    try:
        with db.read() as s:
            run = s.scalars(select(CollectionRun)).one()
        assert run.status == "running" and run.pid is not None  # status itself writes nothing
        again = tracker(settings, "collect")
        _out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        with db.read() as s:
            first = s.get(CollectionRun, run.id, populate_existing=True)
            assert first is not None and first.status == "interrupted" and first.error
    finally:
        db.dispose()


def test_a_running_run_of_another_host_is_interrupted_only_when_stale(db: Database) -> None:
    from storage.runs import mark_interrupted, start_run

    now = dt.datetime.now(dt.timezone.utc)
    with db.write() as s:
        s.add_all([
            CollectionRun(platform="x", started_at=now - dt.timedelta(hours=3), status="running",
                          host="elsewhere", pid=1, progress_at=now - dt.timedelta(minutes=5)),
            CollectionRun(platform="mastodon", started_at=now - dt.timedelta(hours=3), status="running",
                          host="elsewhere", pid=1, progress_at=now - dt.timedelta(hours=2)),
        ])
    with db.write() as s:
        own = start_run(s, "bluesky", "collect", now)
        assert mark_interrupted(s, now) == 0  # our own run is alive
    with db.read() as s:
        rows = {r.platform: r.status for r in s.scalars(select(CollectionRun))}
    assert rows == {"x": "running", "mastodon": "interrupted", "bluesky": "running"}
    assert own


def test_sqlite_lock_held_by_another_connection_is_transient(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    open_database(url).dispose()
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    db = Database(url, sqlite_busy_timeout=0.2)
    try:
        with pytest.raises(DatabaseUnavailable, match="locked by another process") as info:
            with db.write() as s:
                s.add(CollectionRun(platform="x", started_at=dt.datetime.now(dt.timezone.utc)))
        assert info.value.transient
    finally:
        holder.rollback()
        db.dispose()


def test_platform_5xx_storm_is_retried_soon_but_bad_credentials_wait(fakes: Fakes, tmp_path: Path) -> None:
    """X answers 503 until the adapter's retries run out: the collect job is due again after
    1 minute, then 2, not after its 60-minute interval; a platform whose token is missing is not
    retried early."""
    from tests.helpers.fake_campaign import Sleeps
    from tracker.platforms.base import Policy

    seed(fakes, n_x=3, n_m=0, n_b=0)
    settings = write_settings(tmp_path, fakes, f"sqlite:///{tmp_path / 'tracker.db'}", platforms=("x", "bluesky"),
                              schedule={"collect_every_minutes": 60, "visit_collect_every_minutes": 60})
    app = App(settings_path=str(settings), env={"TRACKER_X_BEARER_TOKEN": ENV["TRACKER_X_BEARER_TOKEN"]})
    now = [dt.datetime.now(dt.timezone.utc)]
    policy = Policy(sleep=Sleeps(), now=lambda: now[0])
    worker = Worker(app, clock=lambda: now[0], policy=policy)
    try:
        fakes.x.fail_next(503, count=2 * (policy.max_retries + 1), path="/2/tweets/search/recent")
        first = worker.collect("x")
        assert first is not None and first.status == "failed" and first.transient
        assert worker.retry_at("x", "collect") == now[0] + dt.timedelta(minutes=1)
        assert worker.collect("bluesky") is None  # no app password: fails, not a passing reason
        assert worker.retry_at("bluesky", "collect") is None

        now[0] += dt.timedelta(seconds=30)
        assert worker.collect("x") is None  # not yet
        now[0] += dt.timedelta(seconds=31)
        second = worker.collect("x")  # still 503: the next wait doubles
        assert second is not None and second.status == "failed"
        assert worker.retry_at("x", "collect") == now[0] + dt.timedelta(minutes=2)
        now[0] += dt.timedelta(minutes=2, seconds=1)
        third = worker.collect("x")  # the server is well again
        assert third is not None and third.status == "ok" and third.new == 3
        assert worker.retry_at("x", "collect") is None
        now[0] += dt.timedelta(minutes=5)
        assert worker.collect("x") is None  # back to its 60-minute interval
    finally:
        worker.close()
        app.close()


def test_daily_retention_job_is_retried_soon_after_a_database_outage(tmp_path: Path, outage: Outage) -> None:
    """The retention job runs once a day: failing on an unavailable database it asks the
    scheduler to run it again after 1 minute, then 2, not the next day."""
    (tmp_path / "settings.toml").write_text(
        f'[campaign]\nname = "T"\nhashtags = ["ihmisensote"]\n[storage]\nurl = {json.dumps(outage.url)}\n'
        'sqlite_busy_timeout = 0.3\n[privacy]\nretention_days = 30\n', encoding="utf-8")
    app = App(settings_path=str(tmp_path / "settings.toml"), env={})
    app.database()
    now = dt.datetime.now(dt.timezone.utc)
    worker = Worker(app, clock=lambda: now)
    asked: list[tuple[str, dt.datetime]] = []
    worker.on_retry = lambda job_id, at: asked.append((job_id, at))
    try:
        outage.begin()
        worker.retention()
        worker.retention()
        assert asked == [("retention", now + dt.timedelta(minutes=1)), ("retention", now + dt.timedelta(minutes=2))]
        outage.end()
        worker.retention()
        assert len(asked) == 2  # done: no further retry
    finally:
        outage.end()
        worker.close()
        app.close()
