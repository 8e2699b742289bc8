"""The CLI end to end in a subprocess: help, tour, db upgrade/status, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SETTINGS = """
[campaign]
name = "Testikiertue"
hashtags = ["ihmisensote"]

[tagging]
days_before = 2
days_after = 5

[[tour.stops]]
area = "pirkanmaa"
date = 2023-02-09
city = "Tampere"
venue = "Tampere-talo"

[[tour.stops]]
area = "lappi"

[[tour.stops]]
area = "pirkanmaa"
id = "pirkanmaa-2"
date = 2099-10-01
"""


def tracker(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def write_settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS, encoding="utf-8")
    return path


def test_help_lists_commands_with_examples(tmp_path: Path) -> None:
    result = tracker("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("db", "settings", "tour"):
        assert command in result.stdout
    assert "Example" in tracker("tour", "--help", cwd=tmp_path).stdout
    assert "Example" in tracker("db", "upgrade", "--help", cwd=tmp_path).stdout


def test_tour_json_and_csv(tmp_path: Path) -> None:
    write_settings(tmp_path)
    result = tracker("tour", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stops = json.loads(result.stdout)
    assert [s["id"] for s in stops] == ["pirkanmaa", "lappi", "pirkanmaa-2"]
    first = stops[0]
    assert (first["date"], first["window_start"], first["window_end"]) == ("2023-02-09", "2023-02-07", "2023-02-14")
    assert first["status"] == "done" and first["area_name"] == "Pirkanmaa" and first["venue"] == "Tampere-talo"
    assert stops[1]["status"] == "date missing" and stops[1]["window_start"] is None
    assert stops[2]["status"] == "upcoming"
    rows = list(csv.DictReader(io.StringIO(tracker("tour", "--format", "csv", cwd=tmp_path).stdout)))
    assert [r["id"] for r in rows] == ["pirkanmaa", "lappi", "pirkanmaa-2"]
    table = tracker("tour", cwd=tmp_path).stdout
    assert "Tampere-talo" in table and "date missing" in table


def test_tour_names_areas_in_the_campaign_language(tmp_path: Path) -> None:
    write_settings(tmp_path)
    result = tracker("tour", "--format", "json", cwd=tmp_path, env={"TRACKER__CAMPAIGN__LANGUAGE": "sv"})
    assert [s["area_name"] for s in json.loads(result.stdout)] == ["Birkaland", "Lappland", "Birkaland"]


def test_db_upgrade_then_status(tmp_path: Path) -> None:
    write_settings(tmp_path)
    first = tracker("db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    from storage.db import Database

    head = Database("sqlite://").schema_state().head
    assert f"upgraded: (empty) -> {head}" in first.stdout
    assert (tmp_path / "tracker.db").exists()
    again = tracker("db", "upgrade", cwd=tmp_path)
    assert f"is up to date (schema {head})" in again.stdout
    status = tracker("db", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"schema {head} (code needs {head})" in status.stdout
    assert "stops" in status.stdout and "posts" in status.stdout


def test_database_url_from_environment_and_hidden_password(tmp_path: Path) -> None:
    write_settings(tmp_path)
    other = tmp_path / "elsewhere" / "t.db"
    result = tracker("db", "upgrade", cwd=tmp_path, env={"TRACKER_DATABASE_URL": f"sqlite:///{other}"})
    assert result.returncode == 0, result.stderr
    assert other.exists() and not (tmp_path / "tracker.db").exists()
    bad = tracker("db", "status", cwd=tmp_path,
                  env={"TRACKER_DATABASE_URL": "postgresql://u:topsecret@127.0.0.1:1/none"})
    assert bad.returncode == 3
    assert "topsecret" not in bad.stderr and "***" in bad.stderr
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_missing_settings_file_is_one_line(tmp_path: Path) -> None:
    result = tracker("tour", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: settings.toml: settings file not found (give --settings PATH or set TRACKER_SETTINGS)\n"
