"""CLI: collect, refresh-metrics, status, import."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from tracker.app import App
from tracker.collect import PlatformResult, collect_platform, refresh_platform
from tracker.errors import DatabaseError
from tracker.output import echo, emit, json_text, safe
from tracker.platforms.base import Adapter
from tracker.platforms.registry import PLATFORMS, build_adapters, close_adapters

pass_app = click.make_pass_decorator(App)
Progress = Callable[[str, PlatformResult], None]


def _run_with_progress(adapters: list[Adapter], kind: str,
                       one: Callable[[Adapter, Progress], PlatformResult], failing: tuple[str, ...]) -> None:
    """Run `one(adapter, progress)` per platform with a live status line on a terminal (nothing
    when piped), close the adapters, print one line per platform, exit 1 if any platform's
    status is in `failing`.

    When the database fails (locked, unreachable, disk full) the platform's line says so, the
    platforms after it are not tried (each would wait for the same database), every line is
    still printed, and the database error follows as one line with exit code 3."""
    console = Console(stderr=True)
    status = console.status("collecting") if console.is_terminal else None

    latest: dict[str, PlatformResult] = {}  # what each platform stored so far (from its progress)

    def update(stream: str, result: PlatformResult) -> None:
        latest[result.platform] = result
        if status is not None:
            status.update(Text(safe(f"{result.platform} {stream}: {result.pages} pages, {result.fetched} posts, "
                                    f"{result.new} new")))

    lines: list[str] = []
    failed = False
    database_error: DatabaseError | None = None
    if status is not None:
        status.start()
    try:
        for adapter in adapters:
            if database_error is not None:
                lines.append(_not_run(adapter.platform))
                continue
            try:
                result = one(adapter, update)
            except DatabaseError as exc:
                database_error = exc
                result = latest.get(adapter.platform) or PlatformResult(adapter.platform, kind)
                result.status = "failed"
                result.errors.insert(0, "the database failed: posts fetched after the last stored page were "
                                        "not stored (the next run fetches them again)")
            lines.append(result.line())
            failed = failed or result.status in failing
    finally:
        if status is not None:
            status.stop()
        close_adapters(adapters)
    for line in lines:
        echo(line)
    if database_error is not None:
        raise database_error
    if failed:
        sys.exit(1)


def _not_run(platform: str) -> str:
    return f"{platform}: not run: the database is unavailable"


def _open_database(app: App, adapters: list[Adapter]):  # type: ignore[no-untyped-def]
    """The database, or a 'not run' line per platform before its one-line error (exit 3)."""
    try:
        return app.database()
    except DatabaseError:
        close_adapters(adapters)
        for adapter in adapters:
            echo(_not_run(adapter.platform))
        raise


def _local_day_start(day: dt.date, app: App) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=app.settings.campaign.tz).astimezone(dt.timezone.utc)


@click.command("collect")
@click.option("--platform", type=click.Choice(PLATFORMS), help="Only this platform (must be enabled).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]),
              help="On a first run, go back to this local date (X allows 7 days).")
@pass_app
def collect(app: App, platform: str | None, since: dt.datetime | None) -> None:
    """Run one collection round: new posts of the campaign hashtags on each enabled platform.

    Prints one line per platform: fetched, new, updated, pages, gaps. Exit code 1 when a
    platform failed (the others are still collected).

    \b
    Example:
      tracker collect --platform mastodon --since 2023-02-01
    """
    settings = app.settings
    adapters = build_adapters(settings, platform)
    if not adapters:
        click.echo("no platform is enabled: set [platforms.x|mastodon|bluesky] enabled = true", err=True)
        sys.exit(2)
    db = _open_database(app, adapters)
    start = _local_day_start(since.date(), app) if since else None
    _run_with_progress(adapters, "collect", lambda adapter, update: collect_platform(
        db, adapter, tagger=app.tagger(), since=start, progress=update, privacy=settings.privacy),
        failing=("failed", "partial"))


@click.command("refresh-metrics")
@click.option("--platform", type=click.Choice(PLATFORMS), help="Only this platform (must be enabled).")
@pass_app
def refresh_metrics(app: App, platform: str | None) -> None:
    """Re-read likes, reposts, replies and views of recent posts; mark deleted ones.

    Posts younger than [schedule] refresh_max_age_days are refreshed.

    \b
    Example:
      tracker refresh-metrics --platform x
    """
    settings = app.settings
    adapters = build_adapters(settings, platform)
    db = _open_database(app, adapters)
    max_age = dt.timedelta(days=settings.schedule.refresh_max_age_days)
    _run_with_progress(adapters, "refresh", lambda adapter, update: refresh_platform(
        db, adapter, max_age=max_age, tagger=app.tagger(), progress=update, privacy=settings.privacy),
        failing=("failed",))


def _when(moment: dt.datetime | None, tz) -> str | None:  # type: ignore[no-untyped-def]
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else None


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def status(app: App, fmt: str) -> None:
    """Collection health: last run per platform, next due, open gaps, totals.

    Times are in the campaign's timezone.

    \b
    Example:
      tracker status
    """
    from tracker.health import collection_status

    report = collection_status(app.database(), app.settings)
    if fmt == "json":
        click.echo(json_text(report))
        return
    for warning in report["warnings"]:
        echo(f"warning: {warning}", err=True)
    tz = app.settings.campaign.tz
    emit([{**r, "started": _when(r["started"], tz),
           "next_due": (_when(r["next_due"], tz) or "now") if r["enabled"] else "disabled"}
          for r in report["platforms"]],
         [("platform", "Platform"), ("enabled", "Enabled"), ("kind", "Run"), ("started", "Last started"),
          ("status", "Status"), ("fetched", "Fetched"), ("new", "New"), ("next_due", "Next due"),
          ("error", "Error")], title="Collection")
    if report["gaps"]:
        emit([{**g, "start": _when(g["start"], tz) or "(first run)", "end": _when(g["end"], tz),
               "recorded": _when(g["recorded"], tz)} for g in report["gaps"]],
             [("platform", "Platform"), ("stream", "Stream"), ("start", "Missing from"), ("end", "To"),
              ("recorded", "Recorded"), ("reason", "Why")], title="Open gaps")
    else:
        echo("No open gaps.")
    totals = report["totals"]
    echo(f"Posts: {totals['posts']} ({', '.join(f'{k} {v}' for k, v in totals['by_platform'].items()) or 'none'}); "
               f"with a visit {totals['with_visit']}, without {totals['without_visit']}")


SHOWN_REJECTIONS = 50
"""Rejected rows listed on the terminal; the rest are counted (all go to --errors FILE)."""


class _Rejections:
    """The rejected rows of one import: the first ones on stderr, every one in the --errors file."""

    def __init__(self, file: Path, errors_path: Path | None) -> None:
        self.file, self.count = file, 0
        self.out = errors_path.open("w", encoding="utf-8", newline="\n") if errors_path else None
        self.errors_path = errors_path

    def add(self, message: str) -> None:
        self.count += 1
        if self.count <= SHOWN_REJECTIONS:
            echo(f"{self.file}: {message}", err=True)
        if self.out is not None:
            self.out.write(f"{message}\n")

    def close(self) -> None:
        hidden = self.count - SHOWN_REJECTIONS
        if self.out is not None:
            self.out.close()
            self.out = None
            if self.count:
                echo(f"{self.file}: all {self.count} rejected rows are listed in {self.errors_path}", err=True)
        elif hidden > 0:
            echo(f"{self.file}: ... and {hidden} more rejected rows (--errors FILE lists them all)", err=True)


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the file name.")
@click.option("--strict", is_flag=True, help="Refuse the whole file if any row is bad (nothing is stored).")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help=f"Write every rejected row's line and problem to this text file (the terminal shows "
                   f"the first {SHOWN_REJECTIONS}).")
@pass_app
def import_posts(app: App, file: Path, fmt: str | None, strict: bool, errors_path: Path | None) -> None:
    """Import posts from platforms without an API (CSV or JSON Lines; columns in the README).

    Bad rows are reported by line number (the header is line 1) and skipped; good rows are kept.
    Exit code 0 when every row was imported, 1 when some rows were rejected, 2 when the file
    was refused (not UTF-8, bad header; or with --strict, any bad row: then nothing is stored).

    \b
    Examples:
      tracker import instagram-2023-02.csv
      tracker import --strict linkedin.jsonl
    """
    from functools import partial

    from tracker.importer import read_import_file, store_import
    from tracker.pipeline import ingest

    settings = app.settings
    report = read_import_file(file, settings.campaign.tz, fmt, campaign_hashtags=settings.campaign.hashtags)
    rejections = _Rejections(file, errors_path)
    for error in report.errors:
        rejections.add(error)
    if strict and report.errors:
        rejections.close()
        echo(f"{file}: nothing imported (--strict): {len(report.errors)} of {report.lines} rows rejected",
                   err=True)
        sys.exit(2)
    outcome = store_import(app.database(), report.posts, report.post_lines,
                           partial(ingest, tagger=app.tagger(), origin="import", privacy=settings.privacy),
                           keep=not strict)
    for line, problem in outcome.refused:
        rejections.add(f"line {line}: {problem}")
    rejections.close()
    if strict and outcome.batch_refused:
        echo(f"{file}: nothing imported (--strict): the database refused {len(outcome.refused)} rows", err=True)
        sys.exit(2)
    rejected = len(report.errors) + len(outcome.refused)
    imported, forgotten = outcome.count(report.posts)
    line = (f"{file}: {imported} posts imported ({outcome.new} new, {outcome.updated} updated), "
            f"{rejected} rows rejected")
    if forgotten:
        line += f", {forgotten} rows not stored (their accounts asked to be forgotten)"
    if report.blank:
        line += f", {report.blank} blank rows"
    echo(line)
    if report.without_campaign_tag:
        shown = ", ".join(map(str, report.without_campaign_tag[:20]))
        more = ", ..." if len(report.without_campaign_tag) > 20 else ""
        tags = " ".join(f"#{t}" for t in settings.campaign.hashtags)
        echo(f"{file}: note: {len(report.without_campaign_tag)} imported rows carry none of the campaign's "
                   f"hashtags ({tags}): lines {shown}{more}", err=True)
    if rejected:
        sys.exit(1)


@click.command("run")
@click.option("--once", is_flag=True, help="Run every due job once and exit (for cron and tests).")
@pass_app
def run(app: App, once: bool) -> None:
    """Start the scheduler: collect, refresh metrics and tag on their intervals.

    Polls every [schedule] visit_collect_every_minutes on a visit day and the day after,
    every collect_every_minutes otherwise. Only one scheduler may run per database. Stop it
    with Ctrl-C or SIGTERM: running jobs finish the page they are storing first.

    \b
    Examples:
      tracker run
      tracker run --once      # from cron
    """
    from jobs.scheduler import run_forever, run_once

    from tracker.platforms.registry import enabled_platforms

    if not enabled_platforms(app.settings):
        echo("warning: no platform is enabled; nothing will be collected", err=True)
    if once:
        results = run_once(app)
        for result in results:
            echo(result.line())
        if not results:
            echo("nothing was due")
        return
    echo(f"scheduler running against {app.database().display_url}; Ctrl-C to stop", err=True)
    run_forever(app)
    echo("scheduler stopped", err=True)
