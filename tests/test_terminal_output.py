"""What reaches a terminal: text from servers and settings is never read as Rich markup and its
control characters are shown, not obeyed; `| head` ends quietly; SIGTERM/SIGINT stop
`tracker run` cleanly however they arrive. All through the real CLI in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storage.db import open_database
from storage.models import CollectionRun, Gap

HOSTILE = "HTTP 500: [/bold] [red]x \x1b]0;owned\x07\x1b[2J\rover\x9b31m \u202edesrever\x00end"
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e", "\x00")


def env(**extra: str) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    full.update(extra)
    return full


def tracker(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker", "--settings", str(tmp_path / "settings.toml"), *args],
                          env=env(**extra), capture_output=True, text=True, timeout=120)


def write_settings(tmp_path: Path, url: str, *, stops: str | None = None, name: str = "Testi") -> None:
    stops = stops or ('[[tour.stops]]\narea = "pirkanmaa"\ndate = 2023-02-09\ncity = "[iso sali]"\n'
                      'venue = "Sali [/i] 2"\n')
    (tmp_path / "settings.toml").write_text(
        f'[campaign]\nname = {json.dumps(name)}\nhashtags = ["ihmisensote"]\n'
        f"[storage]\nurl = {json.dumps(url)}\n{stops}", encoding="utf-8")


def test_markup_in_settings_is_shown_as_written(tmp_path: Path) -> None:
    """`venue = "Sali [/i] 2"` crashed `tracker tour` (MarkupError); `[iso sali]` vanished."""
    write_settings(tmp_path, f"sqlite:///{tmp_path / 't.db'}", name="[bold]Kampanja[/bold] :smile:")
    result = tracker(tmp_path, "tour")
    assert result.returncode == 0, result.stderr
    assert "Sali [/i] 2" in result.stdout and "[iso sali]" in result.stdout
    assert "[bold]Kampanja[/bold] :smile:" in result.stdout  # the title: no markup, no emoji codes


def test_server_error_text_in_status_is_shown_not_obeyed(tmp_path: Path, db_url: str) -> None:
    """A run's error and a gap's reason hold markup and escape sequences (title change, screen
    clear, CSI, carriage return, bidi override): the table shows them escaped; the JSON keeps
    the text (as JSON escapes)."""
    write_settings(tmp_path, db_url)
    db = open_database(db_url)
    now = dt.datetime.now(dt.timezone.utc)
    stored = HOSTILE.replace("\x00", "")  # as the tracker stores it (NUL never reaches a database)
    try:
        with db.write() as s:
            s.add(CollectionRun(platform="x", kind="collect", started_at=now, finished_at=now, status="failed",
                                error=stored))
            s.add(Gap(platform="x", stream="[b]tag\x1b[2J", start_at=now, end_at=now, reason=stored,
                      recorded_at=now))
    finally:
        db.dispose()
    for attempt in range(2):  # crashed every time for as long as the run was listed
        table = tracker(tmp_path, "status")
        assert table.returncode == 0, table.stderr
        for raw in RAW:
            assert raw not in table.stdout, repr(raw)
        assert "[/bold] [red]x" in table.stdout and "\\x1b]0;owned\\x07" in table.stdout
        assert "\\u202edesrever" in table.stdout and "\\x9b31m" in table.stdout
    as_json = tracker(tmp_path, "status", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    for raw in RAW:
        assert raw not in as_json.stdout, repr(raw)
    report = json.loads(as_json.stdout)
    assert report["gaps"][0]["reason"] == stored
    assert any(p["error"] == stored for p in report["platforms"])


def _many_stops(count: int) -> str:
    areas = ["pirkanmaa", "lappi", "kainuu", "keski-suomi"]
    return "".join(f'[[tour.stops]]\narea = "{areas[i % 4]}"\nid = "stop-{i}"\n'
                   f'date = {dt.date(2023, 1, 1) + dt.timedelta(days=i % 300)}\nvenue = "Venue {i} with a longer name"\n'
                   for i in range(count))


@pytest.mark.parametrize("args", [["tour", "--format", "csv"], ["tour", "--format", "json"], ["tour"],
                                  ["summary", "--format", "json"]])
def test_output_to_a_pipe_closed_early_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """`tracker tour --format csv | head -1`: the reader goes away after one line; the command
    exits with 141 (128 + SIGPIPE) and prints nothing (was: 'error: unexpected BrokenPipeError'
    and 'Exception ignored ... BrokenPipeError')."""
    write_settings(tmp_path, f"sqlite:///{tmp_path / 't.db'}", stops=_many_stops(6000))  # more than a pipe holds (up to 1 MB)
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "--settings", str(tmp_path / "settings.toml"), *args],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    err = proc.stderr.read().decode()
    proc.wait(120)
    assert first
    assert proc.returncode == 141, err
    assert err == ""


def _run_scheduler(tmp_path: Path) -> tuple[subprocess.Popen[str], list[str], threading.Event]:
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "-v", "--settings", str(tmp_path / "settings.toml"),
                             "run"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "scheduler started" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, lines, started


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1])  # the old code hung at 0 and raised at 0.02
def test_sigterm_and_sigint_together_stop_the_scheduler_once(tmp_path: Path, delay: float) -> None:
    """Two signals in quick succession (systemd's SIGTERM and a Ctrl-C, or two SIGTERMs), right
    at start-up or later: the scheduler stops once, exit code 0, no SchedulerNotRunningError in
    a thread, no traceback. Repeated, as the race did not show every time."""
    write_settings(tmp_path, f"sqlite:///{tmp_path / 't.db'}")
    for _ in range(3):
        proc, lines, started = _run_scheduler(tmp_path)
        try:
            assert started.wait(60), "".join(lines)
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            time.sleep(0.2)  # the reader thread takes the last lines
            err = "".join(lines)
            assert proc.returncode == 0, err
            assert "SchedulerNotRunningError" not in err and "Traceback" not in err and "Exception in thread" not in err
            assert "scheduler stopped" in err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
