"""Exports (xlsx, csv), charts, the HTML report and the CLI commands, on the hand-computed dataset.

The dataset and its expected figures come from tests/test_summary.py. Post text, names, handles
and links in it carry injection attempts (formulas, <script>, onerror=, javascript:, CSS).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from storage.db import Database
from tracker.app import App
from tracker.charts import campaign_charts, engagement_per_visit_png, posts_per_day_png, write_charts
from tracker.cli import TrackerGroup
from tracker.cli_summary import COMMANDS, to_period
from tracker.export import ExportError, export, safe_cell
from tracker.report_html import render_report, text_html, write_report
from tracker.settings import Settings

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("summary_dataset", HERE / "test_summary.py")
assert _spec and _spec.loader
data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(data)

NOW = data.NOW
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def campaign(db: Database) -> tuple[Database, Settings]:
    settings = data.make_settings()
    data.build_campaign(db, settings)
    return db, settings


# -- spreadsheet exports ---------------------------------------------------------------------------


@pytest.mark.parametrize("value,safe", [
    ("=1+2", "'=1+2"), ("+358 40", "'+358 40"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("hyvä = hyvä", "hyvä = hyvä"), (-5, -5), (None, None), ("", ""),
])
def test_safe_cell(value: Any, safe: Any) -> None:
    assert safe_cell(value) == safe


def test_xlsx_has_posts_and_summary_sheets(campaign: tuple[Database, Settings], tmp_path: Path) -> None:
    db, settings = campaign
    [path] = export(db, settings, tmp_path / "out" / "kiertue", "xlsx", now=NOW)
    assert path == tmp_path / "out" / "kiertue.xlsx"
    assert not list(path.parent.glob("*.part"))
    book = load_workbook(path)
    assert book.sheetnames == ["posts", "summary"]
    posts = _records(book["posts"])
    assert len(posts) == 8  # the deleted post is not exported; the toot seen twice is one row
    assert [p["platform_id"] for p in posts].count(data.TOOT) == 1
    assert "x-6" not in {p["platform_id"] for p in posts}
    by_id = {p["platform_id"]: p for p in posts}
    eve = by_id["x-7"]
    assert (eve["author_handle"], eve["author_name"]) == ("'=eve", "'@SUM(1+1)")
    assert eve["url"] is None and eve["stop"] is None and eve["method"] is None  # javascript: dropped
    assert by_id["https://m1.example/users/b/statuses/8"]["text"] == "'=HYPERLINK(\"http://evil\")"
    assert by_id["x-9"]["text"] == "'+358 40 123 4567"
    assert by_id["x-9"]["stop"] is None and by_id["x-9"]["attributed_stop"] == "old-stop"
    for row in book["posts"].iter_rows(min_row=2):
        assert all(cell.data_type != "f" for cell in row)  # nothing is a formula
    toot = by_id[data.TOOT]
    assert (toot["areas"], toot["stop"], toot["stop_area"], toot["method"]) == (
        "kanta-hame;pirkanmaa", "pirkanmaa", "pirkanmaa", "area")
    assert toot["confidence"] == pytest.approx(0.9)
    assert (toot["likes"], toot["shares"], toot["reply_count"], toot["quote_count"]) == (4, 1, 2, None)
    assert (toot["impressions"], toot["engagement"]) == (None, 7)
    assert toot["created_at_utc"] == dt.datetime(2023, 2, 8, 12, 0)
    assert by_id["x-2"]["local_date"].date() == dt.date(2023, 2, 10)  # 22:30 UTC: after midnight in Helsinki
    assert by_id["x-1"]["author_followers"] == 140  # latest, not largest
    summary = _records(book["summary"])
    rows = {(r["stop"], r["platform"]): r for r in summary}
    assert [(r["stop"], r["platform"]) for r in summary] == [
        ("pirkanmaa", "all"), ("pirkanmaa", "mastodon"), ("pirkanmaa", "x"), ("lappi", "all"),
        ("lappi", "bluesky"), ("kainuu", "all"), ("no_visit", "all"), ("total", "all")]
    pirkanmaa = rows[("pirkanmaa", "all")]
    assert {k: pirkanmaa[k] for k in data.NUMERIC} == data.PIRKANMAA
    assert (pirkanmaa["engagement_24h"], pirkanmaa["posts_covered_24h"]) == (12, 2)
    assert (pirkanmaa["engagement_7d"], pirkanmaa["posts_covered_7d"], pirkanmaa["rank"]) == (23, 3, 2)
    assert pirkanmaa["share_posts"] == pytest.approx(3 / 8)
    assert {k: rows[("pirkanmaa", "x")][k] for k in data.NUMERIC} == data.PIRKANMAA_X
    assert {k: rows[("no_visit", "all")][k] for k in data.NUMERIC} == data.NO_VISIT
    assert {k: rows[("total", "all")][k] for k in data.NUMERIC} == data.TOTALS
    assert rows[("kainuu", "all")]["impressions"] is None and rows[("no_visit", "all")]["area_name"] == "ei vierailua"


def _records(sheet: Any) -> list[dict[str, Any]]:
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def test_csv_writes_two_files_in_a_folder(campaign: tuple[Database, Settings], tmp_path: Path) -> None:
    db, settings = campaign
    paths = export(db, settings, tmp_path / "csv", "csv", now=NOW)
    assert paths == [tmp_path / "csv" / "posts.csv", tmp_path / "csv" / "summary.csv"]
    raw = paths[0].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    with paths[0].open(encoding="utf-8-sig", newline="") as handle:
        posts = list(csv.DictReader(handle))
    assert len(posts) == 8
    eve = next(p for p in posts if p["platform_id"] == "x-7")
    assert (eve["author_handle"], eve["author_name"], eve["url"]) == ("'=eve", "'@SUM(1+1)", "")
    assert eve["created_at_utc"] == "2023-02-20T12:00:00Z" and eve["impressions"] == "10"
    assert "Tampereella <script>" in next(p["text"] for p in posts if p["platform_id"] == "x-1")
    with paths[1].open(encoding="utf-8-sig", newline="") as handle:
        summary = list(csv.DictReader(handle))
    lappi = next(r for r in summary if r["stop"] == "lappi" and r["platform"] == "all")
    assert (lappi["posts"], lappi["engagement"], lappi["impressions"], lappi["potential_reach"]) == ("2", "36", "", "10")


def test_period_and_platform_filters_reach_the_export(campaign: tuple[Database, Settings], tmp_path: Path) -> None:
    db, settings = campaign
    period = to_period(settings, dt.datetime(2023, 2, 9), dt.datetime(2023, 2, 10))  # local 9th and 10th
    [path] = export(db, settings, tmp_path / "week.xlsx", "xlsx", platform="x", period=period, now=NOW)
    posts = _records(load_workbook(path)["posts"])
    assert [p["platform_id"] for p in posts] == ["x-1", "x-2"]


def test_too_many_rows_for_excel_is_a_clear_error(campaign: tuple[Database, Settings], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db, settings = campaign
    monkeypatch.setattr("tracker.export.EXCEL_MAX_ROWS", 5)
    with pytest.raises(ExportError, match="8 posts do not fit.*--format csv"):
        export(db, settings, tmp_path / "out" / "big.xlsx", "xlsx", now=NOW)
    assert not (tmp_path / "out").exists()  # refused before writing anything


# -- charts ----------------------------------------------------------------------------------------


def test_charts_are_png_and_written(campaign: tuple[Database, Settings], tmp_path: Path) -> None:
    db, settings = campaign
    charts = campaign_charts(db, settings)
    assert set(charts) == {"posts_per_day", "engagement_per_visit"}
    assert all(png.startswith(PNG) and len(png) > 5_000 for png in charts.values())
    paths = write_charts(charts, tmp_path / "charts")
    assert sorted(p.name for p in paths) == ["engagement_per_visit.png", "posts_per_day.png"]
    assert paths[0].read_bytes() == charts[paths[0].stem]


def test_charts_draw_odd_text_and_no_data() -> None:
    days = [{"date": dt.date(2023, 2, 9), "posts": 1, "engagement": 0, "no_visit": 0,
             "by_platform": {"instagram": 1}, "visits": ["a"]}]
    names = {"a": "Costs $5 and $x^2$ <b>", "b": "_under_"}
    assert posts_per_day_png(days, names, "sv").startswith(PNG)
    assert posts_per_day_png([], names, "en").startswith(PNG)
    visits = [{"stop": "a", "by_platform": {}}, {"stop": "b", "by_platform": {"x": {"engagement": 3}}}]
    assert engagement_per_visit_png(visits, names).startswith(PNG)
    assert engagement_per_visit_png([], names).startswith(PNG)


# -- the HTML report ---------------------------------------------------------------------------------


class Inspector(HTMLParser):
    """Collects every tag and attribute as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, text: str) -> None:
        if self._in_style:
            self.styles.append(text)


def test_report_is_self_contained_and_inert(campaign: tuple[Database, Settings], tmp_path: Path) -> None:
    db, _ = campaign
    raw = {**data.SETTINGS, "campaign": {**data.SETTINGS["campaign"], "name": "<b onmouseover=alert(3)>Kiertue</b>"}}
    raw["tour"] = {"stops": [{**raw["tour"]["stops"][0], "city": "</title><script>alert(4)</script>"},
                             *raw["tour"]["stops"][1:]]}
    from tracker.settings import parse_settings

    settings = parse_settings(raw, "test", env={})
    path = write_report(db, settings, tmp_path / "r" / "report.html", now=NOW)
    page = path.read_text(encoding="utf-8")
    parser = Inspector()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "iframe" not in tags and "object" not in tags and "embed" not in tags
    assert "link" not in tags and "base" not in tags and "form" not in tags
    assert tags.count("style") == 1
    for tag, attrs in parser.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert "javascript:" not in (value or "").lower(), (tag, name, value)
        if tag == "a":
            assert attrs["href"] and attrs["href"].startswith(("https://", "http://")), attrs
            assert "noopener" in (attrs.get("rel") or "")
        if tag == "img":
            assert attrs["src"] and attrs["src"].startswith("data:image/png;base64,"), attrs["src"][:40]
        if tag == "meta" and attrs.get("http-equiv"):
            assert attrs["http-equiv"] == "Content-Security-Policy"
            assert "default-src 'none'" in (attrs.get("content") or "")
    style = "".join(parser.styles)
    assert "display:none" not in style.replace(" ", "") and "url(" not in style and "@import" not in style
    # The injected text is there, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '&lt;img src=x onerror="alert(2)"&gt;' in page  # text: quotes need no escaping there
    assert "&lt;/style&gt;&lt;style&gt;body{display:none}&lt;/style&gt;" in page
    assert "&lt;/title&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in page
    assert "&lt;b onmouseover=alert(3)&gt;Kiertue&lt;/b&gt;" in page
    assert "javascript:" not in page.lower()
    hrefs = [a.get("href") for t, a in parser.tags if t == "a"]
    assert "https://x.example/x-1" in hrefs and "https://m1.example/@b/1" in hrefs
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "Vierailut" in page and "Pirkanmaa" in page and "Ei vierailua" in page  # Finnish by default


@pytest.mark.parametrize("language,words", [("sv", ["Besök", "Inget besök", "Birkaland"]),
                                            ("en", ["Visits", "No visit", "Top posts by engagement"])])
def test_report_speaks_the_campaign_language(campaign: tuple[Database, Settings], language: str,
                                              words: list[str]) -> None:
    db, _ = campaign
    page = render_report(db, data.make_settings(language), now=NOW)
    for word in words:
        assert word in page


def test_text_html_keeps_line_breaks_only() -> None:
    assert str(text_html("a\n<b>b</b>\r\nc")) == "a<br>&lt;b&gt;b&lt;/b&gt;<br>c"
    assert str(text_html(None)) == ""
    assert str(text_html("x" * 700)).endswith("…")


def test_report_of_an_empty_database(db: Database) -> None:
    page = render_report(db, data.make_settings("en"), now=NOW)
    assert "No posts." in page and page.count("data:image/png;base64,") == 2


# -- CLI -----------------------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_settings(tmp_path: Path) -> Path:
    """The dataset's settings as TOML, storage in a SQLite file next to it."""
    s = data.SETTINGS
    lines = ["[campaign]", *(f"{k} = {_toml(v)}" for k, v in s["campaign"].items()),
             "[tagging]", *(f"{k} = {_toml(v)}" for k, v in s["tagging"].items()),
             "[storage]", f"url = {_toml('sqlite:///' + str(tmp_path / 'tracker.db'))}"]
    for stop in s["tour"]["stops"]:
        lines += ["[[tour.stops]]", *(f"{k} = {_toml(v)}" for k, v in stop.items())]
    path = tmp_path / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cli_env(tmp_path: Path) -> Path:
    """settings.toml and a filled SQLite file; opened through App first so the tour is recorded."""
    settings_path = write_settings(tmp_path)
    app = App(settings_path=str(settings_path), env={})
    try:
        data.build_campaign(app.database(), app.settings)
    finally:
        app.close()
    return settings_path


@click.group(cls=TrackerGroup)
def summary_cli() -> None:
    """Like tracker's own group (errors as one line), with only these commands."""


for _command in COMMANDS:
    summary_cli.add_command(_command)


def invoke(settings_path: Path, *args: str) -> Any:
    app = App(settings_path=str(settings_path), env={})
    try:
        return CliRunner().invoke(summary_cli, list(args), obj=app, catch_exceptions=False)
    finally:
        app.close()


def test_cli_summary_json_has_exactly_the_documented_keys(cli_env: Path) -> None:
    result = invoke(cli_env, "summary", "--format", "json")
    assert result.exit_code == 0, result.output
    visits = json.loads(result.output)
    assert [v["stop"] for v in visits] == ["pirkanmaa", "lappi", "kainuu"]
    assert all(list(v) == list(data.VISIT_KEYS) for v in visits)
    assert {k: visits[0][k] for k in data.NUMERIC} == data.PIRKANMAA
    assert visits[0]["by_platform"]["x"] == data.PIRKANMAA_X
    assert visits[2]["date"] is None and visits[2]["impressions"] is None
    one = json.loads(invoke(cli_env, "summary", "--stop", "lappi", "--platform", "bluesky", "--format", "json").output)
    assert [v["stop"] for v in one] == ["lappi"] and {k: one[0][k] for k in data.NUMERIC} == data.LAPPI


def test_cli_summary_table_csv_and_errors(cli_env: Path) -> None:
    table = invoke(cli_env, "summary")
    assert table.exit_code == 0
    for text in ("pirkanmaa", "no visit", "total", "Potential reach", "Engagement"):
        assert text in table.output
    per_stop = invoke(cli_env, "summary", "--stop", "pirkanmaa")
    assert "mastodon" in per_stop.output and "2023-02-09 (visit)" in per_stop.output
    rows = list(csv.DictReader(invoke(cli_env, "summary", "--format", "csv").output.splitlines()))
    assert [r["stop"] for r in rows] == ["pirkanmaa", "lappi", "kainuu"]
    assert (rows[0]["engagement"], rows[0]["potential_reach"], rows[1]["impressions"]) == ("23", "180", "")
    week = json.loads(invoke(cli_env, "summary", "--from", "2023-02-09", "--to", "2023-02-09", "--format", "json").output)
    assert week[0]["posts"] == 1  # local 9 February: P1 only (P2 is the 10th in Helsinki)
    bad = invoke(cli_env, "summary", "--stop", "nowhere")
    assert bad.exit_code == 2 and "unknown stop 'nowhere'" in bad.output
    backwards = invoke(cli_env, "summary", "--from", "2023-02-10", "--to", "2023-02-09")
    assert backwards.exit_code == 2


def test_cli_export_and_report(cli_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    result = invoke(cli_env, "export", "--out", str(out / "kiertue.xlsx"))
    assert result.exit_code == 0, result.output
    assert load_workbook(out / "kiertue.xlsx").sheetnames == ["posts", "summary"]
    result = invoke(cli_env, "export", "--format", "csv", "--out", str(out / "csv"))
    assert result.exit_code == 0 and (out / "csv" / "posts.csv").exists() and (out / "csv" / "summary.csv").exists()
    result = invoke(cli_env, "report", "html", "--out", str(out / "report.html"))
    assert result.exit_code == 0, result.output
    assert "&lt;script&gt;" in (out / "report.html").read_text(encoding="utf-8")
    result = invoke(cli_env, "report", "charts", "--out", str(out / "charts"))
    assert result.exit_code == 0 and (out / "charts" / "posts_per_day.png").read_bytes().startswith(PNG)


def test_commands_run_inside_the_real_tracker_cli(cli_env: Path) -> None:
    """End to end in a subprocess: `tracker` with these commands registered as the lead will."""
    script = ("from tracker.cli import cli\nfrom tracker.cli_summary import COMMANDS\n"
              "for c in COMMANDS:\n    c.name in cli.commands or cli.add_command(c)\ncli(prog_name='tracker')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    result = subprocess.run([sys.executable, "-c", script, "--settings", str(cli_env), "summary", "--format", "json"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=cli_env.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[1]["engagement"] == 36
    bad = subprocess.run([sys.executable, "-c", script, "--settings", str(cli_env), "summary", "--stop", "x"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=cli_env.parent)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown stop 'x'") and "Traceback" not in bad.stderr
