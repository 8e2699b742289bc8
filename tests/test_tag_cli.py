"""Tagging through the CLI: tag-file, automatic re-tagging when the tour moves, manual overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from storage.db import open_database
from storage.models import Attribution, Post


def tracker(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    return subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def settings(tmp_path: Path, pirkanmaa_date: str) -> None:
    (tmp_path / "settings.toml").write_text(f"""
[campaign]
name = "T"
hashtags = ["ihmisensote"]

[[tour.stops]]
area = "pirkanmaa"
date = {pirkanmaa_date}

[[tour.stops]]
area = "lappi"
date = 2023-03-09
""")


def attributions(tmp_path: Path) -> dict[str, tuple[str | None, str]]:
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        with db.read() as s:
            rows = s.execute(select(Post.platform_id, Attribution.stop_id, Attribution.method)
                             .join(Attribution, Attribution.post_id == Post.id)).all()
        return {r.platform_id: (r.stop_id, r.method) for r in rows}
    finally:
        db.dispose()


def test_tag_file(tmp_path: Path) -> None:
    settings(tmp_path, "2023-02-09")
    lines = [
        {"id": "1", "platform": "x", "created_at": "2023-02-09T12:00:00+02:00", "text": "Tänään Tampereella #ihmisensote"},
        "not json",
        {"id": "3", "platform": "x", "created_at": "2023-02-09T12:00:00", "text": "no offset"},
        {"id": "4", "platform": "mastodon", "created_at": "2023-03-08T22:30:00Z", "text": "Kiitos Rovaniemi!"},
        {"id": "5", "platform": "x", "created_at": "2023-02-09T08:00:00Z", "text": "#ihmisensote kiertue jatkuu"},
    ]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    result = tracker("tag-file", "-", cwd=tmp_path, stdin=text)
    assert result.returncode == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["1", "4", "5"]
    assert (out[0]["stop"], out[0]["areas"], out[0]["method"]) == ("pirkanmaa", ["pirkanmaa"], "area")
    assert (out[1]["stop"], out[1]["method"]) == ("lappi", "area")  # 00:30 local on 9 March
    assert (out[2]["stop"], out[2]["method"], out[2]["areas"]) == ("pirkanmaa", "date", [])
    errors = result.stderr.splitlines()
    assert errors[0].startswith("line 2: ") and errors[1].startswith("line 3: ")


def test_tour_change_retags_and_manual_overrides_survive(tmp_path: Path) -> None:
    settings(tmp_path, "2023-02-09")
    (tmp_path / "posts.jsonl").write_text("\n".join(json.dumps(p) for p in [
        {"platform": "instagram", "id": "A", "created_at": "2023-02-09T12:00:00+02:00", "author": "s",
         "text": "Pirhan johdon kanssa tänään #ihmisensote"},
        {"platform": "instagram", "id": "B", "created_at": "2023-02-09T15:00:00+02:00", "author": "s",
         "text": "Hyvä keskustelu #ihmisensote"},
        {"platform": "instagram", "id": "C", "created_at": "2023-04-20T15:00:00+03:00", "author": "s",
         "text": "Tampere again"},
    ]) + "\n")
    assert tracker("import", "posts.jsonl", cwd=tmp_path).returncode == 0
    assert attributions(tmp_path) == {"A": ("pirkanmaa", "area"), "B": ("pirkanmaa", "date"), "C": (None, "none")}

    manual = tracker("attribute", "instagram:B", "lappi", cwd=tmp_path)
    assert manual.returncode == 0, manual.stderr
    # the stop moves to April: the next command re-tags everything except the manual decision
    settings(tmp_path, "2023-04-20")
    status = tracker("tag", "--all", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "the tour changed: re-tagged 3 posts" in status.stderr
    assert attributions(tmp_path) == {"A": (None, "none"), "B": ("lappi", "manual"), "C": ("pirkanmaa", "area")}

    back = tracker("attribute", "B", "auto", cwd=tmp_path)
    assert back.returncode == 0 and "automatic again: no visit (none)" in back.stdout
    assert attributions(tmp_path)["B"] == (None, "none")

    bad = tracker("attribute", "instagram:B", "kuopio", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown stop 'kuopio'" in bad.stderr
    missing = tracker("attribute", "nope", "none", cwd=tmp_path)
    assert missing.returncode == 1 and "no post matches 'nope'" in missing.stderr
