"""Click command `weekly` (attached as `tracker report weekly` by tracker/cli.py).

Thin over tracker.weekly: preview the email (default), save it as .eml (--out) or send it once
to the configured recipients (--send). Messages to the user are English, like the other commands;
the email itself is in the campaign language.
"""

from __future__ import annotations

import datetime as dt
import sys

import click

from tracker.app import App
from tracker.errors import TrackerError
from tracker.output import echo

pass_app = click.make_pass_decorator(App)


def _week(_ctx: click.Context, _param: click.Parameter, value: str | None):  # type: ignore[no-untyped-def]
    from tracker.weekly import Week

    if value is None:
        return None
    try:
        return Week.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("weekly")
@click.option("--week", callback=_week, metavar="YYYY-Www",
              help="ISO week in the campaign timezone, e.g. 2023-W06 (default: the last complete week).")
@click.option("--send", is_flag=True, help="Email it to [email] recipients (once per week and recipient list).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the email as DIR/weekly-<week>.eml instead of sending it (records nothing).")
@click.option("--force", is_flag=True,
              help="With --send: send even if this week was already sent, or a run stopped while sending.")
@pass_app
def weekly(app: App, week, send: bool, out_dir: str | None, force: bool) -> None:  # type: ignore[no-untyped-def]
    """The weekly summary email: the week's visits, figures, top posts, upcoming visits, health.

    Without --send or --out, prints the plain-text version (a preview; nothing is sent). The
    email is multipart (text and HTML with inline charts) with the week's posts as CSV, in the
    campaign language. --send records it in the database and never sends the same week twice to
    the same recipients; a failed send is retried by the next --send (or the scheduler).

    \b
    Examples:
      tracker report weekly                      # preview last week
      tracker report weekly --week 2023-W06 --out mail/
      tracker report weekly --send
    """
    from tracker.weekly import Week, build_message, report_state, send_moment, send_weekly, write_eml

    if send and out_dir:
        raise click.UsageError("give --send or --out, not both")
    if force and not send:
        raise click.UsageError("--force only applies to --send")
    settings = app.settings
    now = dt.datetime.now(dt.timezone.utc)
    week = week or Week.last_complete(now, settings.campaign.tz)
    _, end = week.period(settings.campaign.tz)
    unfinished = end > now
    db = app.database()
    if out_dir:
        path = write_eml(build_message(db, settings, week, now), out_dir, week)
        echo(f"wrote {path}")
    elif send:
        if unfinished and not force:
            raise TrackerError(f"week {week.label} is not over yet (it ends {end.astimezone(settings.campaign.tz):%Y-%m-%d %H:%M}); "
                               "preview it without --send, or use --force to send it anyway")
        outcome = send_weekly(db, settings, week, now=now, force=force)
        if outcome.status == "in-progress":
            echo(f"error: {outcome.text}", err=True)
            sys.exit(1)
        echo(outcome.text)
    else:
        message = build_message(db, settings, week, now)
        echo(f"Subject: {message['Subject']}")
        echo(f"To: {message['To']}")
        echo()
        echo(message.get_body(("plain",)).get_content(), nl=False, multiline=True)  # type: ignore[union-attr]
        state = report_state(db, settings, week) if settings.email.recipients else None
        status = f"already {state.status}" if state else "not sent yet"
        note = " (the week is not over yet)" if unfinished else ""
        due = send_moment(settings, week.next()).astimezone(settings.campaign.tz)
        echo(f"preview of {week.label}{note}: {status} to these recipients; the scheduler sends it "
                   f"from {due:%Y-%m-%d %H:%M} on; --send emails it now, --out DIR saves it", err=True)
