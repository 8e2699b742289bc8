"""`tracker demo` end to end: the newcomer's first command works offline and its outputs agree
with `tracker summary` on the demo database."""

from __future__ import annotations

import csv
import email
import io
import json
import os
import re
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from openpyxl import load_workbook

from tracker.weekly import Week

pytestmark = pytest.mark.slow


def tracker(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def plain(text: str) -> str:
    return re.sub(r"[\u00a0\u202f]", " ", text)


def fi_number(n: int) -> str:
    return f"{n:,}".replace(",", " ")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("demo")
    result = tracker("demo", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return cwd / "demo-output"


def test_demo_writes_every_output(demo: Path) -> None:
    emails = sorted((demo / "emails").glob("weekly-*.eml"))
    assert len(emails) >= 5
    assert (demo / "report.html").stat().st_size > 10_000
    html = (demo / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "http://" not in html.split("<body", 1)[0]
    for chart in ("posts_per_day.png", "engagement_per_visit.png"):
        assert (demo / "charts" / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    book = load_workbook(demo / "export.xlsx", read_only=True)
    assert len(book.sheetnames) == 2
    assert (demo / "tracker.db").exists() and (demo / "settings.toml").exists()


def test_demo_collected_a_realistic_campaign(demo: Path) -> None:
    status = json.loads(tracker("--settings", str(demo / "settings.toml"), "status", "--format", "json",
                                cwd=demo).stdout)
    totals = status["totals"]
    assert totals["posts"] >= 300
    assert set(totals["by_platform"]) == {"x", "mastodon", "bluesky"}
    assert totals["without_visit"] > 0 and totals["with_visit"] > totals["without_visit"]
    summary = json.loads(tracker("--settings", str(demo / "settings.toml"), "summary", "--format", "json",
                                 cwd=demo).stdout)
    assert len(summary) == 6 and all(v["posts"] > 20 for v in summary)
    assert all(v["engagement"] > 0 and v["potential_reach"] > 0 for v in summary)
    assert all(set(v["by_platform"]) == {"x", "mastodon", "bluesky"} for v in summary)


def test_weekly_emails_match_the_summary(demo: Path) -> None:
    settings = str(demo / "settings.toml")
    for path in sorted((demo / "emails").glob("weekly-*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = plain(message.get_body(("plain",)).get_content())
        html = message.get_body(("html",)).get_content()
        assert "<script" not in html.lower()
        week = Week.parse(path.stem.removeprefix("weekly-"))
        result = tracker("--settings", settings, "summary", "--format", "json", "--from", week.monday.isoformat(),
                         "--to", week.sunday.isoformat(), cwd=demo)
        assert result.returncode == 0, result.stderr
        visits = [v for v in json.loads(result.stdout) if v["posts"]]
        for v in visits:
            line = (f"Julkaisut {fi_number(v['posts'])} · Kirjoittajat {fi_number(v['unique_authors'])} · "
                    f"Sitoutuminen {fi_number(v['engagement'])}")
            assert line in text, (path.name, v["stop"], line)
        week_posts = int(re.search(r"^Julkaisut: ([\d ]+)", text, re.M).group(1).replace(" ", ""))
        assert week_posts >= sum(v["posts"] for v in visits)
        [attachment] = [p for p in message.iter_attachments() if p.get_content_type() == "text/csv"]
        rows = list(csv.DictReader(io.StringIO(attachment.get_content().lstrip("\ufeff"))))
        assert len(rows) == week_posts
