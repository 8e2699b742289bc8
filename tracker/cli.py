"""`tracker`: one command group, thin over the library. Errors reach the user as one line."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from tracker import __version__
from tracker.app import App, setup_logging
from tracker.errors import SettingsError, TrackerError
from tracker.output import FORMATS, echo, emit, is_broken_pipe, reader_gone
from tracker.redaction import redact

log = logging.getLogger("tracker")


class TrackerGroup(click.Group):
    """Turns known errors into one line and an exit code; tracebacks only with -vv."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrackerError as exc:
            log.debug("%s", type(exc).__name__, exc_info=True)  # with -vv: where, and the driver's own error
            echo(f"error: {redact(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            echo("interrupted", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: one line, details with -vv
            from storage.db import is_driver_error, short_error, unavailable

            if is_broken_pipe(exc):  # `tracker ... | head`: the reader has what it wanted
                reader_gone()
            log.debug("unexpected error", exc_info=True)
            problem = unavailable(exc, _database_name(ctx))
            if problem is not None:  # a query outside the storage sessions (summaries, exports)
                echo(f"error: {redact(str(problem))}", err=True)
                ctx.exit(problem.exit_code)
            text = short_error(exc) if is_driver_error(exc) else str(exc)  # never the SQL or its parameters
            echo(f"error: unexpected {type(exc).__name__}: {redact(text)} (run with -vv for details)", err=True)
            ctx.exit(1)


def _database_name(ctx: click.Context) -> str:
    """The database as messages name it (password hidden), or 'the database' when unknown."""
    app = ctx.find_object(App)
    try:
        from storage.db import Database

        return Database.display(app.settings.database_url) if app is not None else "the database"
    except Exception:  # noqa: BLE001 - only for a message
        return "the database"


pass_app = click.make_pass_decorator(App)


@click.group(cls=TrackerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--settings", "settings_path", metavar="PATH", envvar="TRACKER_SETTINGS",
              help="Settings file (default: ./settings.toml; env TRACKER_SETTINGS).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(__version__, prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context, settings_path: str | None, verbose: int) -> None:
    """Follow a social media campaign tour: collect posts, tag visits, summarise reach.

    \b
    Examples:
      tracker settings check
      tracker tour
      tracker --settings /etc/tracker/settings.toml db upgrade
    """
    app = App(settings_path=settings_path)
    ctx.obj = app
    ctx.call_on_close(app.close)
    secrets: list[str] = []
    try:
        secrets = app.settings.secrets.values()
    except TrackerError:
        pass  # reported by the command that needs the settings
    setup_logging(verbose, secrets)


# -- settings ----------------------------------------------------------------------------------


@cli.group("settings")
def settings_group() -> None:
    """Inspect and validate the settings."""


@settings_group.command("check")
@pass_app
def settings_check(app: App) -> None:
    """Validate settings.toml and list every problem (exit 2 if any).

    \b
    Example:
      tracker --settings settings.toml settings check
    """
    try:
        settings = app.settings
    except SettingsError as exc:
        for problem in exc.problems:
            echo(f"error: {problem}", err=True)
        sys.exit(exc.exit_code)
    stops = settings.tour.stops
    undated = [s.id for s in stops if s.date is None]
    enabled = [name for name in ("x", "mastodon", "bluesky") if getattr(settings.platforms, name).enabled]
    echo(f"settings: {settings.path}")
    echo(f"campaign: {settings.campaign.name} (#{', #'.join(settings.campaign.hashtags)}), "
               f"timezone {settings.campaign.timezone}, report language {settings.campaign.language}")
    echo(f"tour: {len(stops)} stops, {len(stops) - len(undated)} with a date; "
               f"window {settings.tagging.days_before} days before to {settings.tagging.days_after} after")
    echo(f"platforms enabled: {', '.join(enabled) or 'none'}")
    from storage.db import Database

    echo(f"database: {Database(settings.database_url).display_url}")
    if undated:
        echo(f"warning: {len(undated)} stops have no date yet (fill them in): {', '.join(undated)}")
    for variable in settings.missing_secrets():
        echo(f"warning: environment variable {variable} is not set", err=True)
    echo("settings OK")


# -- database ----------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Database schema and status."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
@pass_app
def db_upgrade(app: App, revision: str) -> None:
    """Create or migrate the database schema.

    \b
    Example:
      TRACKER_DATABASE_URL=postgresql://tracker@db/tracker tracker db upgrade
    """
    from storage.db import Database

    db = Database(app.settings.database_url, sqlite_busy_timeout=app.settings.storage.sqlite_busy_timeout)
    try:
        before = db.schema_state()
        after = db.upgrade(revision)
    finally:
        db.dispose()
    if before.current == after.current:
        echo(f"database {db.display_url} is up to date (schema {after.current})")
    else:
        echo(f"database {db.display_url} upgraded: {before.current or '(empty)'} -> {after.current}")


@db_group.command("status")
@pass_app
def db_status(app: App) -> None:
    """Show the schema version and how many rows each table holds.

    \b
    Example:
      tracker db status
    """
    from storage.queries import row_counts

    db = app.database()
    state = db.schema_state()
    echo(f"database: {db.display_url} ({db.dialect}), schema {state.current} (code needs {state.head})")
    with db.read() as session:
        counts = row_counts(session)
    emit([{"table": k, "rows": v} for k, v in sorted(counts.items())], [("table", "Table"), ("rows", "Rows")])


# -- tour --------------------------------------------------------------------------------------


@cli.command("tour")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def tour(app: App, fmt: str) -> None:
    """The tour schedule: each stop, its window and where it stands today.

    \b
    Example:
      tracker tour --format csv > tour.csv
    """
    from tracker.tour import tour_view

    settings = app.settings
    rows = [view.as_dict() for view in tour_view(settings)]
    columns = [("number", "#"), ("id", "Stop"), ("area_name", "Area"), ("date", "Visit date"),
               ("window_start", "Window from"), ("window_end", "Window to"), ("city", "City"),
               ("venue", "Venue"), ("status", "Status")]
    emit(rows, columns, fmt, title=f"{settings.campaign.name}: {len(rows)} stops")


@cli.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo database and outputs.")
def demo(out_dir: str) -> None:
    """Run the offline demo on its own SQLite file (no accounts, no network).

    \b
    Example:
      tracker demo --out /tmp/demo
    """
    from pathlib import Path

    from tracker.demo.run import run_demo

    run_demo(Path(out_dir))


def _register() -> None:
    from tracker.cli_collect import collect, import_posts, refresh_metrics, run, status

    from tracker.cli_privacy import COMMANDS as privacy_commands
    from tracker.cli_report import weekly
    from tracker.cli_summary import export, report, summary
    from tracker.cli_tag import attribute, tag, tag_file

    report.add_command(weekly)
    for command in (collect, refresh_metrics, status, import_posts, run, tag, tag_file, attribute,
                    summary, export, report, *privacy_commands):
        cli.add_command(command)


_register()


def main() -> None:
    """The `tracker` command. Output to a pipe whose reader went away (`| head`) ends quietly
    with exit code 141 (128 + SIGPIPE), like other commands in a pipeline."""
    try:
        try:
            cli(prog_name="tracker")
        finally:
            sys.stdout.flush()  # here, not at interpreter exit, so a closed pipe is seen below
    except BrokenPipeError:
        reader_gone()


if __name__ == "__main__":  # pragma: no cover
    main()
