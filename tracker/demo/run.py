"""`tracker demo`: the whole tracker, offline, on an embedded SQLite file under the output folder.

It starts the local fake platforms (X, two Mastodon instances, Bluesky), plays a simulated
campaign into them on an accelerated clock, and runs the scheduler's own jobs (collect, refresh
metrics, tag) against them; then writes the weekly emails, the HTML report, the charts and the
Excel export, and prints the summary. Nothing touches the network or the user's own database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from jobs.worker import Worker
from tracker.app import App
from tracker.demo.world import build_world, plan_campaign
from tracker.fake_platforms.bluesky_server import BlueskyServer
from tracker.fake_platforms.mastodon_server import MastodonServer
from tracker.fake_platforms.x_server import XServer
from tracker.output import emit
from tracker.platforms.base import Policy
from tracker.settings import Settings, parse_settings

DEMO_TOKEN = "demo-x-bearer-token"
DEMO_HANDLE = "tracker-demo.bsky.social"
DEMO_PASSWORD = "demo-app-password"
STEP = dt.timedelta(hours=2)


def demo_raw() -> dict[str, Any]:
    return tomllib.loads(resources.files("tracker.demo").joinpath("settings.toml").read_text("utf-8"))


def demo_settings(out_dir: Path, servers: dict[str, str] | None = None) -> Settings:
    """The bundled illustrative tour, stored in `out_dir`, pointed at the local fake servers."""
    raw = demo_raw()
    raw.setdefault("storage", {})["url"] = f"sqlite:///{(out_dir / 'tracker.db').resolve()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    if servers:
        raw["platforms"] = {
            "x": {"enabled": True, "base_url": servers["x"]},
            "mastodon": {"enabled": True, "instances": [servers["m1"], servers["m2"]]},
            "bluesky": {"enabled": True, "base_url": servers["bluesky"], "handle": DEMO_HANDLE},
        }
        env.update({"TRACKER_X_BEARER_TOKEN": DEMO_TOKEN, "TRACKER_BLUESKY_APP_PASSWORD": DEMO_PASSWORD})
    return parse_settings(raw, "demo settings", env=env)


class SimClock:
    """The demo's accelerated time, shared by the fake X server, the policy and the jobs."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def timestamp(self) -> float:
        return self.now.timestamp()


@contextlib.contextmanager
def fake_platforms(clock: SimClock) -> Iterator[tuple[XServer, MastodonServer, MastodonServer, BlueskyServer]]:
    # Real-time rate-limit windows would not fit an accelerated clock: generous budgets here, and
    # the world injects one X rate limit in simulated time instead.
    with XServer(DEMO_TOKEN, clock=clock.timestamp) as x, \
            MastodonServer("sosiaali.example", rate_limit=1_000_000) as m1, \
            MastodonServer("some.example", rate_limit=1_000_000) as m2, \
            BlueskyServer(rate_limit=1_000_000, session_rate_limit=1_000) as bsky:
        bsky.add_account(DEMO_HANDLE, DEMO_PASSWORD)
        yield x, m1, m2, bsky


def _fresh(out_dir: Path) -> None:
    """A new database each run, and a settings file for exploring it afterwards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tracker.db", "tracker.db-wal", "tracker.db-shm"):
        (out_dir / name).unlink(missing_ok=True)
    text = resources.files("tracker.demo").joinpath("settings.toml").read_text("utf-8")
    (out_dir / "settings.toml").write_text(text + '\n[storage]\nurl = "sqlite:///tracker.db"\n', encoding="utf-8")


def simulate(out_dir: Path, console: Console) -> tuple[Settings, App, dt.datetime]:
    """Play the campaign and run the scheduler's jobs on the accelerated clock."""
    _fresh(out_dir)
    tour = demo_settings(out_dir)
    dated = [(s.area, s.date) for s in tour.tour.stops if s.date]
    start = min(d for _, d in dated) - dt.timedelta(days=6)
    end = max(d for _, d in dated) + dt.timedelta(days=10)
    clock = SimClock(dt.datetime.combine(start, dt.time(6), tzinfo=dt.timezone.utc))
    finish = dt.datetime.combine(end, dt.time(6), tzinfo=dt.timezone.utc)
    with fake_platforms(clock) as (x, m1, m2, bsky):
        settings = demo_settings(out_dir, {"x": x.base_url, "m1": m1.base_url, "m2": m2.base_url,
                                           "bluesky": bsky.base_url})
        world = build_world(x, m1, m2, bsky, plan_campaign(dated, start, end))
        world.rate_limit_at = dt.datetime.combine(dated[1][1], dt.time(9), tzinfo=dt.timezone.utc)
        app = App.from_settings(settings)
        worker = Worker(app, clock=clock, policy=Policy(sleep=lambda _s: None, now=clock, max_retries=2))
        steps = int((finish - clock.now) / STEP)
        logging.getLogger("tracker.collect").setLevel(logging.ERROR)  # the simulated 429 is expected
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=not console.is_terminal) as progress:
            task = progress.add_task("Simulating the tour", total=steps, info="")
            for _ in range(steps):
                clock.now += STEP
                world.advance(clock.now, STEP.total_seconds() / 3600)
                worker.run_due()
                local = clock.now.astimezone(settings.campaign.tz)
                progress.update(task, advance=1,
                                info=f"{local:%d.%m.%Y %H:%M}  published {world.published}/{len(world.plan)}")
        worker.close()
    return settings, app, clock.now


def write_outputs(app: App, now: dt.datetime, out_dir: Path) -> list[Path]:
    """Weekly emails (.eml), the HTML report, the charts and the Excel export."""
    from tracker.charts import campaign_charts, write_charts
    from tracker.export import export
    from tracker.report_html import write_report

    db, settings = app.database(), app.settings
    files: list[Path] = []
    files += write_weekly_emails(app, now, out_dir / "emails")
    files.append(write_report(db, settings, out_dir / "report.html", now=now))
    files += write_charts(campaign_charts(db, settings), out_dir / "charts")
    files += export(db, settings, out_dir / "export.xlsx", "xlsx", now=now)
    return files


def write_weekly_emails(app: App, now: dt.datetime, folder: Path) -> list[Path]:
    """One .eml per week of the tour, each as it would have been sent on its Monday morning."""
    from tracker.weekly import Week, build_message, send_moment, write_eml

    settings = app.settings
    dates = [s.date for s in settings.tour.stops if s.date]
    week, last = Week.of(min(dates)), Week.last_complete(now, settings.campaign.tz)
    files = []
    while week <= last:
        sent_at = min(send_moment(settings, week.next()), now)
        files.append(write_eml(build_message(app.database(), settings, week, now=sent_at), folder, week))
        week = week.next()
    return files


def run_demo(out_dir: Path, console: Console | None = None) -> Path:
    console = console or Console()
    console.print(f"[bold]Campaign tracker demo[/] – everything offline, stored in {out_dir}/")
    settings, app, now = simulate(out_dir, console)
    try:
        from tracker.summary import visit_summaries

        with console.status("Writing the weekly emails, report, charts and export"):
            files = write_outputs(app, now, out_dir)
        rows = visit_summaries(app.database(), settings)
        emit(rows, [("stop", "Stop"), ("date", "Visit date"), ("posts", "Posts"), ("unique_authors", "Authors"),
                    ("engagement", "Engagement"), ("impressions", "Impressions"), ("potential_reach", "Reach")],
             title=f"{settings.campaign.name}: summary per visit")
        from storage.runs import all_gaps
        from tracker.health import collection_status

        health = collection_status(app.database(), settings, now)
        with app.database().read() as session:
            gaps = all_gaps(session)
        for gap in gaps:
            state = "closed by a later run" if gap.resolved_at else "still open"
            console.print(f"{gap.platform} refused a poll ({gap.reason.split(': ')[-1]}); "
                          f"recorded as a gap, {state}.")
        console.print(f"Posts stored: {health['totals']['posts']} "
                      f"({', '.join(f'{k} {v}' for k, v in health['totals']['by_platform'].items())}); "
                      f"without a visit: {health['totals']['without_visit']}")
        console.print("Files:")
        for path in files:
            console.print(f"  {path}")
        console.print(f"Try: tracker --settings {out_dir / 'settings.toml'} summary")
    finally:
        app.close()
    return out_dir
