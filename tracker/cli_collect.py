"""CLI: collect, refresh-metrics, status, import."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
import sys
from pathlib import Path

import click
from rich.console import Console

from tracker.app import App
from tracker.collect import PlatformResult, run_collection, run_refresh
from tracker.output import emit
from tracker.platforms.registry import PLATFORMS, build_adapters, close_adapters

pass_app = click.make_pass_decorator(App)


def _run_with_progress(adapters: list, work: Callable[[Callable | None], list[PlatformResult]],  # type: ignore[type-arg]
                       failing: tuple[str, ...]) -> None:
    """Run `work(progress)` with a live status line on a terminal (nothing when piped), close the
    adapters, print one line per platform, exit 1 if any platform's status is in `failing`."""
    console = Console(stderr=True)
    status = console.status("collecting") if console.is_terminal else None

    def update(stream: str, result: PlatformResult) -> None:
        if status is not None:
            status.update(f"{result.platform} {stream}: {result.pages} pages, {result.fetched} posts, "
                          f"{result.new} new")

    if status is not None:
        status.start()
    try:
        results = work(update)
    finally:
        if status is not None:
            status.stop()
        close_adapters(adapters)
    for result in results:
        click.echo(result.line())
    if any(r.status in failing for r in results):
        sys.exit(1)


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
    db = app.database()
    start = _local_day_start(since.date(), app) if since else None
    _run_with_progress(adapters, lambda update: run_collection(
        db, adapters, tagger=app.tagger(), since=start, progress=update, privacy=settings.privacy),
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
    adapters = build_adapters(app.settings, platform)
    db = app.database()
    _run_with_progress(adapters, lambda update: run_refresh(db, adapters, app.settings, tagger=app.tagger(),
                                                            progress=update), failing=("failed",))


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
        import json

        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        return
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
        click.echo("No open gaps.")
    totals = report["totals"]
    click.echo(f"Posts: {totals['posts']} ({', '.join(f'{k} {v}' for k, v in totals['by_platform'].items()) or 'none'}); "
               f"with a visit {totals['with_visit']}, without {totals['without_visit']}")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the file name.")
@pass_app
def import_posts(app: App, file: Path, fmt: str | None) -> None:
    """Import posts from platforms without an API (CSV or JSON Lines; columns in the README).

    Bad rows are reported by line number and skipped; good rows are kept. Exit code 1 when
    some rows were rejected.

    \b
    Example:
      tracker import instagram-2023-02.csv
    """
    from tracker.importer import read_import_file
    from tracker.pipeline import ingest

    report = read_import_file(file, app.settings.campaign.tz, fmt)
    for error in report.errors:
        click.echo(f"{file}: {error}", err=True)
    stored_new = stored_updated = 0
    if report.posts:
        db = app.database()
        with db.write() as session:
            result = ingest(session, report.posts, app.tagger(), origin="import", privacy=app.settings.privacy)
        stored_new, stored_updated = result.new, result.updated
    click.echo(f"{file}: {len(report.posts)} posts imported ({stored_new} new, {stored_updated} updated), "
               f"{len(report.errors)} rows rejected")
    if report.errors:
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
        click.echo("warning: no platform is enabled; nothing will be collected", err=True)
    if once:
        results = run_once(app)
        for result in results:
            click.echo(result.line())
        if not results:
            click.echo("nothing was due")
        return
    click.echo(f"scheduler running against {app.database().display_url}; Ctrl-C to stop", err=True)
    run_forever(app)
    click.echo("scheduler stopped", err=True)
