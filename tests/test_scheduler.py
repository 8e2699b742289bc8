"""The scheduler: due work from the database's records, catch-up, the single-instance lock,
a failing job, and a clean stop (SIGTERM) in the middle of a collection."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobs.scheduler import SchedulerBusy, run_once, take_lock
from jobs.worker import Worker
from storage import locks
from storage.db import open_database
from storage.models import CollectionRun, Post, SchedulerLock
from tests.helpers.fake_campaign import ENV, UTC, Fakes, Sleeps, seed, settings_raw, start_fakes, write_settings_file
from tracker.app import App
from tracker.platforms.base import Policy

HERE = Path(__file__).parent


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


def write_settings(tmp_path: Path, fakes: Fakes, **schedule: int) -> Path:
    raw = settings_raw(fakes, f"sqlite:///{tmp_path / 'tracker.db'}")
    return write_settings_file(tmp_path / "settings.toml", raw, schedule=schedule)


def app_for(path: Path) -> App:
    return App(settings_path=str(path), env={**ENV})


def runs(app: App) -> list[tuple[str, str, str]]:
    with app.database().read() as s:
        return [(r.platform, r.kind, r.status) for r in s.scalars(select(CollectionRun).order_by(CollectionRun.id))]


def test_run_once_does_due_work_then_nothing_then_catches_up(fakes: Fakes, tmp_path: Path) -> None:
    seed(fakes, n_x=5, n_m=3, n_b=2)
    app = app_for(write_settings(tmp_path, fakes, collect_every_minutes=60, visit_collect_every_minutes=60,
                                 refresh_every_minutes=120))
    now = [dt.datetime.now(UTC)]
    policy = Policy(sleep=Sleeps(), now=lambda: now[0])
    try:
        first = run_once(app, clock=lambda: now[0], policy=policy)
        assert sorted((r.platform, r.kind, r.status) for r in first) == [
            ("bluesky", "collect", "ok"), ("bluesky", "refresh", "ok"), ("mastodon", "collect", "ok"),
            ("mastodon", "refresh", "ok"), ("x", "collect", "ok"), ("x", "refresh", "ok")]
        with app.database().read() as s:
            assert s.scalar(select(func.count()).select_from(Post)) == 10
            assert s.scalar(select(func.count()).select_from(SchedulerLock)) == 0  # released
        now[0] += dt.timedelta(minutes=30)
        assert run_once(app, clock=lambda: now[0], policy=policy) == []  # nothing due yet
        now[0] += dt.timedelta(minutes=31)  # collection due (60 min), refresh not (120 min)
        assert sorted(r.platform for r in run_once(app, clock=lambda: now[0], policy=policy)) == [
            "bluesky", "mastodon", "x"]
        now[0] += dt.timedelta(days=3)  # downtime: everything is due at the first start
        assert len(run_once(app, clock=lambda: now[0], policy=policy)) == 6
    finally:
        app.close()


def test_denser_polling_on_visit_days(fakes: Fakes, tmp_path: Path) -> None:
    app = app_for(write_settings(tmp_path, fakes, collect_every_minutes=60, visit_collect_every_minutes=10))
    visit_day = dt.datetime.now(UTC)  # the test tour visits pirkanmaa today
    worker = Worker(app, clock=lambda: visit_day, policy=Policy(sleep=Sleeps()))
    try:
        assert worker.collect("x") is not None
        worker.clock = lambda: visit_day + dt.timedelta(minutes=11)
        assert worker.collect_due("x")
        worker.clock = lambda: visit_day + dt.timedelta(days=10)  # no visit around: hourly
        with app.database().write() as s:
            started = visit_day + dt.timedelta(days=10, minutes=-11)
            s.add(CollectionRun(platform="x", started_at=started, finished_at=started, status="ok"))
        assert not worker.collect_due("x")
    finally:
        worker.close()
        app.close()


def test_single_instance_lock(fakes: Fakes, tmp_path: Path) -> None:
    app = app_for(write_settings(tmp_path, fakes))
    now = dt.datetime.now(UTC)
    try:
        take_lock(app, "other-host:123", now)
        with pytest.raises(SchedulerBusy, match=r"another scheduler \(other-host:123\) is running"):
            run_once(app)
        # a lock whose heartbeat stopped (kill -9) is taken over after it goes stale
        with app.database().write() as s:
            s.execute(SchedulerLock.__table__.update().values(heartbeat_at=now - dt.timedelta(minutes=10)))
        run_once(app, policy=Policy(sleep=Sleeps()))
        with app.database().write() as s:
            assert locks.acquire(s, "scheduler", "third:1", now, dt.timedelta(minutes=3)).acquired
    finally:
        app.close()


def test_failing_job_is_recorded_and_others_continue(fakes: Fakes, tmp_path: Path) -> None:
    seed(fakes, n_x=3, n_m=2, n_b=2)
    path = write_settings(tmp_path, fakes)
    app = App(settings_path=str(path), env={})  # no secrets: X and Bluesky cannot start
    try:
        results = run_once(app, policy=Policy(sleep=Sleeps()))
        assert [(r.platform, r.kind, r.status) for r in results] == [
            ("mastodon", "collect", "ok"), ("mastodon", "refresh", "ok")]
        recorded = runs(app)
        assert ("x", "collect", "failed") in recorded and ("bluesky", "collect", "failed") in recorded
        with app.database().read() as s:
            errors = s.scalars(select(CollectionRun.error).where(CollectionRun.platform == "x")).all()
        assert any("TRACKER_X_BEARER_TOKEN is not set" in (e or "") for e in errors)
    finally:
        app.close()


def test_sigterm_during_collection_stops_cleanly(fakes: Fakes, tmp_path: Path) -> None:
    seed(fakes, n_x=40, n_m=0, n_b=0)
    path = write_settings(tmp_path, fakes)
    text = path.read_text().replace("[platforms.mastodon]\nenabled = true", "[platforms.mastodon]\nenabled = false")
    text = text.replace("[platforms.bluesky]\nenabled = true", "[platforms.bluesky]\nenabled = false")
    path.write_text(text)
    fakes.x.delay_next(1.5, count=10, path="/2/tweets/search/recent")  # every page is slow
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env.update(ENV)
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "--settings", str(path), "run"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline:  # wait until the first page is committed
            with db.read() as s:
                stored = s.scalar(select(func.count()).select_from(Post))
            if stored:
                break
            time.sleep(0.1)
        assert stored == 10
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "scheduler stopped" in err and "Traceback" not in err
        with db.read() as s:
            run = s.scalars(select(CollectionRun).where(CollectionRun.platform == "x")).one()
            count = s.scalar(select(func.count()).select_from(Post))
            assert s.scalar(select(func.count()).select_from(SchedulerLock)) == 0
        assert run.status == "stopped" and run.finished_at is not None
        assert count == run.new and count % 10 == 0 and count < 40  # whole pages only
    finally:
        if proc.poll() is None:
            proc.kill()
        db.dispose()


# -- the weekly email --------------------------------------------------------------------------------


class MailSink:
    """aiosmtpd handler: keeps the Subject of every message it accepts."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        from email import message_from_bytes, policy

        message = message_from_bytes(envelope.original_content, policy=policy.default)  # type: ignore[attr-defined]
        self.subjects.append(str(message["Subject"]))
        return "250 OK"


@pytest.fixture
def mail_sink() -> Iterator[tuple[MailSink, int]]:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def weekly_app(tmp_path: Path, port: int, recipients: str = '["tiimi@example.fi"]') -> App:
    """No platform enabled: run_due has only the weekly email to do."""
    path = tmp_path / "weekly.toml"
    path.write_text(f"""[campaign]
name = "Kiertue"
hashtags = ["ihmisensote"]

[[tour.stops]]
area = "pirkanmaa"
date = 2023-02-09

[storage]
url = "sqlite:///{tmp_path / 'weekly.db'}"

[email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "seuranta@example.fi"
recipients = {recipients}

[schedule]
weekly_report_day = "mon"
weekly_report_time = "08:00"
""", encoding="utf-8")
    return App(settings_path=str(path), env={})


def sent(app: App) -> list[tuple[str, str]]:
    from storage.models import SentReport

    with app.database().read() as s:
        return [(r.period, r.status) for r in s.scalars(select(SentReport).order_by(SentReport.id))]


def test_weekly_email_catches_up_once(mail_sink: tuple[MailSink, int], tmp_path: Path) -> None:
    sink, port = mail_sink
    app = weekly_app(tmp_path, port)
    now = [dt.datetime(2023, 2, 13, 5, 30, tzinfo=UTC)]  # Monday 07:30 in Helsinki: not yet due
    worker = Worker(app, clock=lambda: now[0])
    try:
        assert worker.run_due() == [] and sink.subjects == []
        now[0] = dt.datetime(2023, 2, 14, 10, 0, tzinfo=UTC)  # down over Monday 08:00: catch up
        worker.run_due()
        worker.run_due()  # two consecutive runs send once
        assert sink.subjects == ["Viikkokatsaus 6.–12.2.2023: Kiertue"] and sent(app) == [("2023-W06", "sent")]
        # down for two weeks, back on Monday 27.2. after 08:00: only the latest week, not W07 too
        now[0] = dt.datetime(2023, 2, 27, 6, 30, tzinfo=UTC)
        worker.run_due()
        worker.run_due()
        assert sink.subjects[1:] == ["Viikkokatsaus 20.–26.2.2023: Kiertue"]
        assert sent(app) == [("2023-W06", "sent"), ("2023-W08", "sent")]
    finally:
        worker.close()
        app.close()


def test_weekly_email_never_resends_an_interrupted_send(mail_sink: tuple[MailSink, int], tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from storage.reports import claim_report

    sink, port = mail_sink
    app = weekly_app(tmp_path, port)
    now = dt.datetime(2023, 2, 14, 10, 0, tzinfo=UTC)
    with app.database().write() as s:  # a previous process claimed W06 and died while sending
        claim_report(s, "weekly", "2023-W06", app.settings.email.recipients, now)
    worker = Worker(app, clock=lambda: now)
    try:
        with caplog.at_level("WARNING", logger="jobs.worker"):
            worker.run_due()
            worker.run_due()
        assert sink.subjects == [] and sent(app) == [("2023-W06", "sending")]
        warnings = [r.getMessage() for r in caplog.records if "may have been sent already" in r.getMessage()]
        assert len(warnings) == 1  # said once, not at every tick
    finally:
        worker.close()
        app.close()


def test_weekly_email_without_recipients_does_nothing(mail_sink: tuple[MailSink, int], tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    sink, port = mail_sink
    app = weekly_app(tmp_path, port, recipients="[]")
    worker = Worker(app, clock=lambda: dt.datetime(2023, 2, 14, 10, 0, tzinfo=UTC))
    try:
        with caplog.at_level("INFO", logger="jobs.worker"):
            assert worker.weekly() is None and worker.weekly() is None
        assert sink.subjects == [] and sent(app) == []
        assert [r.getMessage() for r in caplog.records].count(
            "weekly email: no [email] recipients configured, not sending it") == 1
    finally:
        worker.close()
        app.close()


def test_weekly_job_in_the_scheduler(tmp_path: Path) -> None:
    from apscheduler.triggers.cron import CronTrigger

    from jobs.scheduler import build_scheduler

    app = weekly_app(tmp_path, 25)
    start = dt.datetime(2023, 2, 14, 10, 0, tzinfo=UTC)
    worker = Worker(app, clock=lambda: start)
    try:
        job = build_scheduler(worker, "test:1").get_job("weekly-report")
        assert isinstance(job.trigger, CronTrigger) and job.misfire_grace_time == 30 * 60
        assert job.next_run_time == start + dt.timedelta(seconds=60)  # catch-up shortly after start
        hourly = [job.trigger.get_next_fire_time(None, start + dt.timedelta(hours=h)) for h in range(2)]
        assert [t.astimezone(UTC).minute for t in hourly] == [0, 0]  # at the configured minute, every hour
    finally:
        worker.close()
        app.close()


def test_tag_job_tags_posts_stored_without_tags(fakes: Fakes, tmp_path: Path) -> None:
    from storage.models import Attribution
    from storage.upserts import store_posts
    from tracker.posts import Author, NormalisedPost

    app = app_for(write_settings(tmp_path, fakes))
    now = dt.datetime.now(UTC)
    try:
        with app.database().write() as s:  # stored without tagging (e.g. by an older version)
            store_posts(s, [NormalisedPost(platform="instagram", platform_id="p1", author=Author("a", "a"),
                                           text="Tänään Tampereella #ihmisensote", created_at=now, fetched_at=now)])
        worker = Worker(app, policy=Policy(sleep=Sleeps()))
        assert worker.tag_untagged() == 1
        assert worker.tag_untagged() == 0
        with app.database().read() as s:
            assert s.scalars(select(Attribution.stop_id)).one() == "pirkanmaa"
    finally:
        app.close()
