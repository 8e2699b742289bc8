"""`tracker demo`: everything on an embedded SQLite file under the output folder."""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from importlib import resources
from pathlib import Path

from rich.console import Console

from storage.db import open_database
from storage.queries import row_counts, sync_stops
from tracker.output import emit
from tracker.settings import Settings, parse_settings
from tracker.tour import tour_view


def demo_settings(out_dir: Path) -> Settings:
    """The bundled illustrative tour, stored in `out_dir` (never the user's own database)."""
    raw = tomllib.loads(resources.files("tracker.demo").joinpath("settings.toml").read_text("utf-8"))
    raw.setdefault("storage", {})["url"] = f"sqlite:///{(out_dir / 'tracker.db').resolve()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    return parse_settings(raw, "demo settings", env=env)


def run_demo(out_dir: Path, console: Console | None = None) -> Path:
    console = console or Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(out_dir)
    with console.status("Preparing the demo database"):
        db = open_database(settings.database_url)
        with db.write() as session:
            sync_stops(session, settings.tour.stops, dt.datetime.now(dt.timezone.utc))
    rows = [v.as_dict() for v in tour_view(settings)]
    emit(rows, [("id", "Stop"), ("area_name", "Area"), ("date", "Visit date"),
                ("window_start", "Window from"), ("window_end", "Window to"), ("city", "City")],
         title=settings.campaign.name)
    with db.read() as session:
        counts = row_counts(session)
    db.dispose()
    console.print(f"Demo database: {out_dir / 'tracker.db'} ({counts['stops']} stops)")
    return out_dir
