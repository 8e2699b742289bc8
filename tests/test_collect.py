"""The collection loop end to end: real clients -> local fake platforms -> tagging -> database.

Covers incremental runs, idle-poll cost, cross-instance de-duplication, rate limits with resume,
failures that record gaps without stopping other platforms, a kill -9 mid-paging, metric refresh
with deletions, and the CLI's one-line summaries.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import Database, open_database
from storage.models import Attribution, CollectionCursor, CollectionRun, Gap, Post, PostSource
from tests.helpers.fake_campaign import (
    BSKY_PASSWORD,
    ENV,
    UTC,
    X_TOKEN,
    Fakes,
    Sleeps,
    hours_ago,
    make_settings,
    seed,
    settings_raw,
    write_settings_file,
    start_fakes,
    tagger_for,
)
from tracker.collect import run_collection, run_refresh
from tracker.platforms.base import Policy
from tracker.platforms.registry import build_adapters, close_adapters
from tracker.settings import parse_settings

HERE = Path(__file__).parent


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


def count(db: Database, model, *where) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_round_then_incremental_then_idle(fakes: Fakes, db_url: str) -> None:
    seed(fakes)
    settings = make_settings(fakes, db_url)
    db = open_database(settings.database_url)
    adapters = build_adapters(settings, policy=Policy(sleep=Sleeps()))
    tagger = tagger_for(settings)
    try:
        first = {r.platform: r for r in run_collection(db, adapters, tagger=tagger)}
        assert {p: r.status for p, r in first.items()} == {"x": "ok", "mastodon": "ok", "bluesky": "ok"}
        assert (first["x"].new, first["x"].pages) == (25, 3)
        assert first["mastodon"].new == 12 and first["bluesky"].new == 15
        assert count(db, Post) == 52
        # the toots federated to m2 are the same posts (uri), seen in two places
        assert count(db, Post, Post.platform == "mastodon") == 12
        assert count(db, PostSource) == 12 + 3
        # tagged on the way in: Tampere -> the visit of today, Rovaniemi -> no stop in window
        with db.read() as s:
            by_stop = dict(s.execute(select(Attribution.stop_id, func.count()).group_by(Attribution.stop_id)).all())
        assert by_stop == {"pirkanmaa": 40, None: 12}
        with db.read() as s:
            runs = s.scalars(select(CollectionRun)).all()
            assert sorted((r.platform, r.status, r.new) for r in runs) == [
                ("bluesky", "ok", 15), ("mastodon", "ok", 12), ("x", "ok", 25)]
            assert s.scalar(select(func.count()).select_from(CollectionCursor)) == 1 + 2 + 1

        # new posts arrive: only they are new
        user = fakes.x.add_user("uusi")
        for i in range(3):
            fakes.x.add_tweet(user, f"Lisää #ihmisensote {i}", created_at=hours_ago(0.5))
        second = {r.platform: r for r in run_collection(db, adapters, tagger=tagger)}
        assert second["x"].new == 3 and second["x"].pages == 1
        assert second["mastodon"].new == 0 and second["bluesky"].new == 0

        # idle poll: exactly one request per stream
        for server in (fakes.x, fakes.m1, fakes.m2, fakes.bsky):
            server.clear_log()
        idle = {r.platform: r for r in run_collection(db, adapters, tagger=tagger)}
        assert {p: r.new for p, r in idle.items()} == {"x": 0, "mastodon": 0, "bluesky": 0}
        assert fakes.x.request_count() == 1
        assert len(fakes.m1.requests()) == 1 and len(fakes.m2.requests()) == 1
        assert fakes.bsky.count() == 1
        assert idle["x"].requests == 1 and idle["mastodon"].requests == 2 and idle["bluesky"].requests == 1
        assert count(db, Post) == 55
    finally:
        close_adapters(adapters)
        db.dispose()


def test_rate_limit_defers_stream_records_gap_and_resumes(fakes: Fakes, tmp_path: Path) -> None:
    seed(fakes, n_m=0, n_b=0)
    settings = make_settings(fakes, f"sqlite:///{tmp_path / 't.db'}")
    db = open_database(settings.database_url)
    now = [dt.datetime.now(UTC)]
    policy = Policy(sleep=Sleeps(), max_rate_limit_wait=60, now=lambda: now[0])
    adapters = build_adapters(settings, only="x", policy=policy)
    try:
        fakes.x.rate_limit_next(reset_in=3600)
        [limited] = run_collection(db, adapters, clock=lambda: now[0])
        assert limited.status == "rate_limited" and limited.new == 0 and limited.gaps == 1
        assert limited.resume_at is not None and limited.resume_at > now[0] + dt.timedelta(minutes=50)
        assert count(db, Gap, Gap.resolved_at.is_(None)) == 1
        # before the reset: the stream is not polled at all
        fakes.x.clear_log()
        now[0] += dt.timedelta(minutes=5)
        [deferred] = run_collection(db, adapters, clock=lambda: now[0])
        assert deferred.status == "rate_limited" and fakes.x.request_count() == 0
        # after it: collected, and the gap is closed
        now[0] = limited.resume_at + dt.timedelta(seconds=1)
        [resumed] = run_collection(db, adapters, clock=lambda: now[0])
        assert resumed.status == "ok" and resumed.new == 25
        assert count(db, Gap, Gap.resolved_at.is_(None)) == 0
        with db.read() as s:
            assert s.scalars(select(CollectionCursor.resume_at)).one() is None
    finally:
        close_adapters(adapters)
        db.dispose()


def test_failing_instance_does_not_stop_others(fakes: Fakes, tmp_path: Path) -> None:
    seed(fakes)
    settings = make_settings(fakes, f"sqlite:///{tmp_path / 't.db'}")
    db = open_database(settings.database_url)
    adapters = build_adapters(settings, policy=Policy(sleep=Sleeps(), max_retries=2))
    try:
        fakes.m2.fail_next(50, 503)
        fakes.x.corrupt_next_page("missing_id")
        results = {r.platform: r for r in run_collection(db, adapters)}
        assert results["mastodon"].status == "partial"
        assert results["mastodon"].gaps == 1 and results["mastodon"].errors[0].startswith(fakes.m2.base_url)
        assert results["x"].status == "ok" and results["x"].skipped == 1 and results["x"].new == 24
        assert results["bluesky"].status == "ok" and results["bluesky"].new == 15
        assert count(db, Post, Post.platform == "mastodon") == 12  # m1 had them all
        with db.read() as s:
            gap = s.scalars(select(Gap)).one()
            assert gap.stream.startswith(fakes.m2.base_url) and gap.start_at is None
            run = s.scalars(select(CollectionRun).where(CollectionRun.platform == "x")).one()
            assert run.skipped == 1
        fakes.m2.clear_faults()
        again = {r.platform: r for r in run_collection(db, adapters)}
        assert again["mastodon"].status == "ok"
        assert count(db, Gap, Gap.resolved_at.is_(None)) == 0
    finally:
        close_adapters(adapters)
        db.dispose()


def test_kill_9_mid_paging_loses_nothing(fakes: Fakes, tmp_path: Path) -> None:
    """A real SIGKILL inside page 3's transaction: pages 1-2 are kept, the cursor is not moved,
    and the next run completes with every post exactly once."""
    seed(fakes, n_m=0, n_b=0)
    db_url = f"sqlite:///{tmp_path / 't.db'}"
    raw = settings_raw(fakes, db_url)
    raw["platforms"]["mastodon"]["enabled"] = raw["platforms"]["bluesky"]["enabled"] = False
    config = tmp_path / "raw.json"
    config.write_text(json.dumps(raw))
    env = {**os.environ, **ENV}
    proc = subprocess.run([sys.executable, str(HERE / "helpers" / "collect_and_die.py"), str(config), "3"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    db = open_database(db_url)
    try:
        assert count(db, Post) == 20  # two committed pages of 10
        with db.read() as s:
            assert s.scalars(select(CollectionCursor.cursor)).all() == []  # X: cursor only after the last page
            run = s.scalars(select(CollectionRun)).one()
            assert run.status == "running" and run.pages == 2
        settings = parse_settings(raw, env=ENV)
        adapters = build_adapters(settings, policy=Policy(sleep=Sleeps()))
        [result] = run_collection(db, adapters)
        close_adapters(adapters)
        assert result.status == "ok" and result.new == 5 and result.updated == 20
        assert count(db, Post) == 25
    finally:
        db.dispose()


def test_refresh_updates_metrics_and_marks_deleted(fakes: Fakes, tmp_path: Path) -> None:
    ids = seed(fakes, n_x=5, n_m=2, n_b=3)
    settings = make_settings(fakes, f"sqlite:///{tmp_path / 't.db'}")
    db = open_database(settings.database_url)
    adapters = build_adapters(settings, policy=Policy(sleep=Sleeps()))
    try:
        run_collection(db, adapters)
        fakes.x.set_metrics(ids["x0"], like_count=99)
        fakes.x.delete_tweet(ids["x1"])
        fakes.bsky.grow(ids["b0"], likes=7)
        fakes.bsky.delete_post(ids["b1"])
        m0 = fakes.m1.local_id_of(ids["m0"])
        fakes.m1.grow(m0, favourites=41)  # the origin instance has the true count
        results = {r.platform: r for r in run_refresh(db, adapters, settings)}
        assert {p: r.status for p, r in results.items()} == {"x": "ok", "mastodon": "ok", "bluesky": "ok"}
        assert results["x"].deleted == 1 and results["bluesky"].deleted == 1 and results["mastodon"].deleted == 0
        with db.read() as s:
            likes = dict(s.execute(select(Post.platform_id, Post.likes)).all())
            deleted = set(s.scalars(select(Post.platform_id).where(Post.deleted_at.is_not(None))))
        assert likes[ids["x0"]] == 99 and likes[ids["b0"]] == 7 and likes[ids["m0"]] == 41
        assert deleted == {ids["x1"], ids["b1"]}
    finally:
        close_adapters(adapters)
        db.dispose()


def _tracker(args: list[str], cwd: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_collect_status_and_import(fakes: Fakes, tmp_path: Path) -> None:
    seed(fakes, n_x=12, n_m=3, n_b=2)
    raw = settings_raw(fakes, "sqlite:///tracker.db")
    write_settings_file(tmp_path / "settings.toml", raw)
    fakes.m2.fail_next(5, 401)  # final at once: no retries, one gap
    result = _tracker(["collect"], tmp_path, ENV)
    assert result.returncode == 1, result.stderr  # one instance failed: exit 1, the rest collected
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "x: ok: fetched 12, new 12, updated 0, pages 2, gaps 0"
    assert lines[1].startswith("mastodon: partial: fetched 3, new 3, updated 0, pages 2, gaps 1;")
    assert lines[2] == "bluesky: ok: fetched 2, new 2, updated 0, pages 1, gaps 0"
    assert X_TOKEN not in result.stdout + result.stderr and BSKY_PASSWORD not in result.stdout + result.stderr

    status = _tracker(["status", "--format", "json"], tmp_path, ENV)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["totals"]["posts"] == 17 and report["totals"]["by_platform"] == {"bluesky": 2, "mastodon": 3, "x": 12}
    assert [g["platform"] for g in report["gaps"]] == ["mastodon"]
    collect_rows = {r["platform"]: r for r in report["platforms"] if r["kind"] == "collect"}
    assert collect_rows["mastodon"]["status"] == "partial" and collect_rows["x"]["next_due"] is not None
    table = _tracker(["status"], tmp_path, ENV)
    assert "Open gaps" in table.stdout and "Posts: 17" in table.stdout

    csv_file = tmp_path / "instagram.csv"
    csv_file.write_text(
        "platform,id,created_at,text,author,followers,likes,comments\n"
        "instagram,IG1,2023-02-09T10:00:00+02:00,Kiertue Tampereella #ihmisensote,soste,5000,120,4\n"
        "instagram,IG2,not a date,Rikki,soste,5000,1,0\n"
        "linkedin,LI1,2023-02-09 12:00,Hyvä tapaaminen Pirkanmaalla,soste,800,30,2\n"
        "linkedin,LI2,2023-02-09T12:00:00Z,,soste,800,many,2\n",
        encoding="utf-8",
    )
    imported = _tracker(["import", str(csv_file)], tmp_path, ENV)
    assert imported.returncode == 1
    # the line and the column, never the cell's value (other people's data)
    assert "line 3: created_at: not an ISO 8601 date and time (e.g. 2023-02-09T10:15:00+02:00)" in imported.stderr
    assert "line 5: likes: expected a whole number (digits only, e.g. 1200)" in imported.stderr
    assert "not a date" not in imported.stderr and "many" not in imported.stderr
    assert "2 posts imported (2 new, 0 updated), 2 rows rejected" in imported.stdout
    again = _tracker(["import", str(csv_file)], tmp_path, ENV)
    assert "2 posts imported (0 new, 2 updated)" in again.stdout
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        with db.read() as s:
            post = s.scalars(select(Post).where(Post.platform_id == "LI1")).one()
            # no offset in the file: campaign local time (UTC+2 in February)
            assert post.created_at == dt.datetime(2023, 2, 9, 10, 0, tzinfo=UTC)
            assert post.origin == "import" and post.likes == 30 and post.replies == 2
    finally:
        db.dispose()
