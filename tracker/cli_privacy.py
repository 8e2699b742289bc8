"""Click commands `forget` and `retention`; registered by tracker/cli.py (see COMMANDS)."""

from __future__ import annotations

import click

from tracker.app import App

pass_app = click.make_pass_decorator(App)


@click.command("forget")
@click.option("--author", "handle", required=True, metavar="HANDLE",
              help="The author's handle (with or without '@'; Mastodon: user@domain).")
@click.option("--platform", metavar="P", help="Only on this platform (x, mastodon, bluesky, ...).")
@pass_app
def forget(app: App, handle: str, platform: str | None) -> None:
    """Erase an author: their posts (with metrics, tags, sightings) and their details everywhere.

    One transaction: all or nothing. Others' reposts of the erased posts (copies of them) are
    deleted too; others' replies and quotes are kept without the link to the erased post, and
    posts that merely mention the handle are kept as written. Needs TRACKER_PRIVACY_KEY: only
    keyed hashes are kept, so that nothing of theirs (new posts, reposts of their posts,
    re-imports) is stored again. An unknown handle erases nothing (exit 1).

    \b
    Examples:
      tracker forget --author @someone --platform x
      tracker forget --author someone@mastodon.social
    """
    from tracker.privacy import forget_author

    key = app.settings.secrets.privacy_key
    result = forget_author(app.database(), handle, platform, key=key.get_secret_value() if key else "")
    for line in result.lines():
        click.echo(line)


@click.command("retention")
@pass_app
def retention(app: App) -> None:
    """Apply the [privacy] retention now (the scheduler does it daily).

    Posts older than retention_days keep only ids, dates, tags and metrics; authors without a
    recent post lose handle, name and profile URL (follower counts stay, so figures do not change).
    Posts deleted or made private on their platform lose their text and author link.

    \b
    Example:
      tracker retention
    """
    from tracker.privacy import run_retention

    click.echo(run_retention(app.database(), app.settings).line())


COMMANDS = (forget, retention)
"""For tracker/cli.py: `for command in COMMANDS: cli.add_command(command)`."""
