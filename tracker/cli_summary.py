"""Click commands `summary`, `export` and `report html|charts`; registered by tracker/cli.py.

Thin over tracker.summary, tracker.export and tracker.report_html. Tables and headings on the
terminal are English like the other commands; the HTML report and charts use the campaign
language. `--from`/`--to` are local dates in the campaign timezone (both inclusive).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tracker.app import App
from tracker.output import FORMATS, echo, emit
from tracker.settings import Settings

pass_app = click.make_pass_decorator(App)
F = TypeVar("F", bound=Callable[..., Any])

SUMMARY_COLUMNS = [
    ("stop", "Stop"), ("area_name", "Area"), ("date", "Date"), ("posts", "Posts"), ("originals", "Orig."),
    ("reposts", "Reposts"), ("replies", "Replies"), ("quotes", "Quotes"), ("unique_authors", "Authors"),
    ("likes", "Likes"), ("shares", "Shares"), ("reply_count", "Replies rec."), ("quote_count", "Quotes rec."),
    ("engagement", "Engagement"), ("impressions", "Impressions"), ("potential_reach", "Potential reach"),
    ("engagement_per_post", "Eng./post"), ("share_posts_pct", "% posts"), ("share_engagement_pct", "% eng."),
]
CSV_COLUMNS = [(k, k) for k in ("stop", "area", "date", "posts", "originals", "reposts", "replies", "quotes",
                                "unique_authors", "likes", "shares", "reply_count", "quote_count", "engagement",
                                "impressions", "potential_reach")]


def period_options(fn: F) -> F:
    """--from / --to: local campaign dates, inclusive."""
    fn = click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
                      help="Only posts made on or before this local date.")(fn)
    fn = click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
                      help="Only posts made on or after this local date (campaign timezone).")(fn)
    return fn


def to_period(settings: Settings, date_from: dt.datetime | None,
              date_to: dt.datetime | None) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    """Local dates -> a UTC (start, end) with end exclusive; None when neither is given."""
    if date_from is None and date_to is None:
        return None
    tz = settings.campaign.tz
    start = dt.datetime.combine(date_from.date(), dt.time(), tz) if date_from else None
    end = dt.datetime.combine(date_to.date() + dt.timedelta(days=1), dt.time(), tz) if date_to else None
    if start and end and end <= start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    return (start.astimezone(dt.timezone.utc) if start else None,
            end.astimezone(dt.timezone.utc) if end else None)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


@click.command("summary")
@click.option("--stop", "stop_id", metavar="ID", help="Only this visit (a stop id from the settings).")
@click.option("--platform", metavar="P", help="Only this platform (x, mastodon, bluesky, ...).")
@period_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def summary(app: App, stop_id: str | None, platform: str | None, date_from: dt.datetime | None,
            date_to: dt.datetime | None, fmt: str) -> None:
    """Engagement and reach per visit: posts, authors, likes, shares, replies, impressions, reach.

    JSON lists every stop in tour order with its figures and a `by_platform` breakdown; the table
    adds engagement per post, shares of the campaign, and rows for posts with no visit and the
    total. With --stop the table shows the visit per platform and per day of its window.
    See docs/figures.md for the definitions.

    \b
    Examples:
      tracker summary
      tracker summary --stop pirkanmaa
      tracker summary --platform mastodon --format json
      tracker summary --from 2023-02-06 --to 2023-02-12 --format csv > week.csv
    """
    from tracker.summary import check_stop, derived_figures, summarise, visit_days, visit_rows

    settings = app.settings
    if stop_id is not None:
        check_stop(settings, stop_id)
    period = to_period(settings, date_from, date_to)
    result = summarise(app.database(), settings, platform, period)
    visits = [v for v in result.visits if stop_id is None or v["stop"] == stop_id]
    if fmt == "json":
        emit(visits, [], "json")
        return
    if fmt == "csv":
        emit(visits, CSV_COLUMNS, "csv")
        return
    rows = [_table_row(r) for r in visit_rows(result, settings) if stop_id is None or r["stop"] == stop_id]
    title = f"{settings.campaign.name}: engagement and reach per visit"
    if platform:
        title += f" ({platform})"
    if stop_id is None:
        for label, fig in (("no visit", result.no_visit), ("total", result.totals)):
            rows.append(_table_row({"stop": label, "area_name": "", "date": None, **fig,
                                    **derived_figures(fig, result.totals)}))
        emit(rows, SUMMARY_COLUMNS, "table", title=title)
        return
    visit = visits[0]
    parts = [_table_row({"stop": stop_id, "area_name": name, "date": visit["date"], **fig,
                         **derived_figures(fig, result.totals)}) for name, fig in visit["by_platform"].items()]
    emit(rows + parts, [("stop", "Stop"), ("area_name", "Area / platform"), *SUMMARY_COLUMNS[2:]], "table",
         title=title)
    days = [{**d, "date": d["date"].isoformat() + (" (visit)" if d["visit_day"] else "")}
            for d in visit_days(app.database(), settings, stop_id, platform, period)]
    emit(days, [("date", "Day"), *SUMMARY_COLUMNS[3:16]], "table", title=f"{stop_id} per day")


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["share_posts_pct"] = _pct(row.get("share_posts"))
    out["share_engagement_pct"] = _pct(row.get("share_engagement"))
    return out


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "csv"]), default="xlsx", show_default=True)
@click.option("--out", "out", required=True, type=click.Path(), metavar="PATH",
              help="xlsx: the file (.xlsx added if missing); csv: a folder for posts.csv and summary.csv.")
@click.option("--platform", metavar="P", help="Only this platform.")
@period_options
@click.option("--pseudonymise", is_flag=True,
              help="Replace authors by a keyed hash (env TRACKER_PSEUDONYM_KEY), stable across exports; "
                   "drop author names and post URLs; replace @mentions of stored authors.")
@pass_app
def export(app: App, fmt: str, out: str, platform: str | None, date_from: dt.datetime | None,
           date_to: dt.datetime | None, pseudonymise: bool) -> None:
    """Posts (with tags and latest metrics) and the per-visit summary, for Excel or other tools.

    xlsx writes one workbook with the sheets `posts` and `summary`. csv writes posts.csv and
    summary.csv (UTF-8 with BOM) into the folder PATH. Text that a spreadsheet would run as a
    formula (starting with = + - @) gets a leading apostrophe.

    \b
    Examples:
      tracker export --out kiertue.xlsx
      tracker export --format csv --out export/
      TRACKER_PSEUDONYM_KEY=... tracker export --pseudonymise --out research.xlsx
    """
    from tracker.export import export as write_export

    settings = app.settings
    paths = write_export(app.database(), settings, out, fmt,  # type: ignore[arg-type]
                         platform=platform, period=to_period(settings, date_from, date_to),
                         pseudonymise=pseudonymise)
    for path in paths:
        echo(f"wrote {path}")


@click.group("report")
def report() -> None:
    """Reports to share: a self-contained HTML page, PNG charts (and the weekly email)."""


@report.command("html")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--platform", metavar="P", help="Only this platform.")
@click.option("--top", "top_n", default=10, show_default=True, type=click.IntRange(1, 100),
              help="How many top posts and authors to list.")
@period_options
@pass_app
def report_html(app: App, out: str, platform: str | None, top_n: int, date_from: dt.datetime | None,
                date_to: dt.datetime | None) -> None:
    """One HTML file with the summary table, charts and top posts (no external resources).

    \b
    Example:
      tracker report html --out raportti.html
    """
    from tracker.report_html import write_report

    settings = app.settings
    path = write_report(app.database(), settings, out, platform=platform,
                        period=to_period(settings, date_from, date_to), top_n=top_n)
    echo(f"wrote {path}")


@report.command("charts")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR")
@click.option("--platform", metavar="P", help="Only this platform.")
@period_options
@pass_app
def report_charts(app: App, out_dir: str, platform: str | None, date_from: dt.datetime | None,
                  date_to: dt.datetime | None) -> None:
    """PNG charts: posts per day with visit days marked, and engagement per visit.

    \b
    Example:
      tracker report charts --out charts/
    """
    from tracker.charts import campaign_charts, write_charts

    settings = app.settings
    charts = campaign_charts(app.database(), settings, platform, to_period(settings, date_from, date_to))
    for path in write_charts(charts, out_dir):
        echo(f"wrote {path}")


COMMANDS = (summary, export, report)
"""For tracker/cli.py: `for command in COMMANDS: cli.add_command(command)`."""
