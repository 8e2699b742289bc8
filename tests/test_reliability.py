"""Whole-process faults: kill -9 in the middle of sending the weekly email, and the scheduler
writing while CLI commands write the same SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from storage.db import open_database
from storage.models import CollectionRun, Post, SentReport
from tests.helpers.fake_campaign import ENV, Fakes, seed, settings_raw, start_fakes, write_settings_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlowSink:
    """An SMTP server that holds every message for a while before accepting it."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.started = threading.Event()
        self.accepted: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.started.set()
        await asyncio.sleep(self.hold)
        self.accepted.append(envelope.content)
        return "250 OK"


@pytest.fixture
def slow_smtp() -> Iterator[tuple[SlowSink, int]]:
    sink, port = SlowSink(hold=30), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    return {**base, **ENV}


def test_kill_9_while_sending_the_weekly_email_never_sends_twice(tmp_path: Path,
                                                                  slow_smtp: tuple[SlowSink, int]) -> None:
    sink, port = slow_smtp
    (tmp_path / "settings.toml").write_text(f"""
[campaign]
name = "T"
hashtags = ["ihmisensote"]
[[tour.stops]]
area = "pirkanmaa"
date = 2023-02-09
[email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "tracker@example.org"
recipients = ["team@example.org"]
""")
    args = [sys.executable, "-m", "tracker", "report", "weekly", "--week", "2023-W06", "--send"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert sink.started.wait(120), "the email never reached the SMTP server"
    os.kill(proc.pid, signal.SIGKILL)  # mid-DATA: the server has not accepted it yet
    proc.wait(30)
    again = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "may have been sent already" in again.stderr + again.stdout and "--force" in again.stderr + again.stdout
    time.sleep(0.5)
    assert len(sink.accepted) <= 1  # the killed attempt may complete server-side; never a second copy
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        with db.read() as s:
            assert s.scalars(select(SentReport.status)).all() == ["sending"]
    finally:
        db.dispose()


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_scheduler_and_cli_commands_write_one_database(fakes: Fakes, tmp_path: Path, backend: str,
                                                      request: pytest.FixtureRequest) -> None:
    seed(fakes, n_x=60, n_m=20, n_b=20)
    url = "sqlite:///tracker.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    raw = settings_raw(fakes, url)
    write_settings_file(tmp_path / "settings.toml", raw)
    rows = ["platform,id,created_at,text,author,likes"] + [
        f"instagram,ig{i},2023-02-09T10:{i % 60:02d}:00+02:00,Tampereella #ihmisensote {i},user{i % 9},{i}"
        for i in range(400)]
    (tmp_path / "posts.csv").write_text("\n".join(rows) + "\n")
    fakes.x.delay_next(0.3, count=6, path="/2/tweets/search/recent")  # keep the scheduler busy
    scheduler = subprocess.Popen([sys.executable, "-m", "tracker", "run"], cwd=tmp_path, env=env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        commands = [["import", "posts.csv"], ["tag", "--all"], ["refresh-metrics", "--platform", "mastodon"]]
        procs = [subprocess.Popen([sys.executable, "-m", "tracker", *c], cwd=tmp_path, env=env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
        outputs = [p.communicate(timeout=240) for p in procs]
        for command, proc, (out, err) in zip(commands, procs, outputs):
            assert proc.returncode == 0, (command, err)
            assert "locked" not in err.lower(), (command, err)
        deadline = time.monotonic() + 120
        db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}" if backend == "sqlite" else url)
        try:
            while time.monotonic() < deadline:  # the scheduler's first round completes too
                with db.read() as s:
                    done = s.scalar(select(func.count()).select_from(CollectionRun)
                                    .where(CollectionRun.kind == "collect", CollectionRun.status == "ok"))
                if done >= 3:
                    break
                time.sleep(0.5)
            with db.read() as s:
                assert done >= 3
                assert s.scalar(select(func.count()).select_from(Post)) == 400 + 60 + 20 + 20
        finally:
            db.dispose()
    finally:
        scheduler.send_signal(signal.SIGTERM)
        _out, err = scheduler.communicate(timeout=120)
    assert scheduler.returncode == 0, err
    assert "locked" not in err.lower() and "Traceback" not in err


def test_kill_9_of_the_scheduler_mid_collection_then_restart(fakes: Fakes, tmp_path: Path) -> None:
    """The scheduler dies (SIGKILL) after committing some pages; a restart takes over its lock at
    once (same host, process gone) and ends with exactly the server's posts."""
    seed(fakes, n_x=45, n_m=0, n_b=0)
    raw = settings_raw(fakes, "sqlite:///tracker.db")
    (tmp_path / "settings.toml").write_text(
        '[campaign]\nname = "T"\nhashtags = ["ihmisensote"]\n'
        f'[[tour.stops]]\narea = "pirkanmaa"\ndate = {raw["tour"]["stops"][0]["date"]}\n'
        f'[platforms.x]\nenabled = true\nbase_url = "{fakes.x.base_url}"\npage_size = 10\n')
    fakes.x.delay_next(1.0, count=10, path="/2/tweets/search/recent")
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "run"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        deadline = time.monotonic() + 90
        stored = 0
        while time.monotonic() < deadline and stored < 10:
            with db.read() as s:
                stored = s.scalar(select(func.count()).select_from(Post))
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        with db.read() as s:
            assert 10 <= s.scalar(select(func.count()).select_from(Post)) < 45
        again = subprocess.run([sys.executable, "-m", "tracker", "run", "--once"], cwd=tmp_path, env=env(),
                               capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr
        assert "x: ok:" in again.stdout
        with db.read() as s:
            ids = s.scalars(select(Post.platform_id)).all()
        assert len(ids) == len(set(ids)) == 45  # the server's ground truth, no duplicates
        assert set(ids) == {t for t, tweet in fakes.x.tweets.items() if "#ihmisensote" in tweet.text}
    finally:
        if proc.poll() is None:
            proc.kill()
        db.dispose()
