"""CLI: tag, tag-file, attribute."""

from __future__ import annotations

import sys

import click

from tracker.app import App
from tracker.errors import TrackerError
from tracker.output import SafeStream, echo

pass_app = click.make_pass_decorator(App)


@click.command("tag")
@click.option("--all", "everything", is_flag=True, help="Re-tag every post, not only untagged ones.")
@pass_app
def tag(app: App, everything: bool) -> None:
    """Tag stored posts with the areas they name and the visit they belong to.

    Posts are tagged as they are collected; use --all after changing the tour by hand if you
    want it done now (any command re-tags automatically when it sees the tour changed).
    Manual attributions (tracker attribute) are kept.

    \b
    Example:
      tracker tag --all
    """
    from tracker.retag import retag

    count = retag(app.database(), app.tagger(), only_untagged=not everything)
    echo(f"tagged {count} posts")


@click.command("tag-file")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_app
def tag_file(app: App, file) -> None:  # type: ignore[no-untyped-def]
    """Tag posts from a JSON Lines file with the current tour; write JSON Lines to stdout.

    Input lines: {"id", "platform", "created_at" (ISO 8601 with offset), "text"}.
    Output lines: {"id", "stop", "areas", "method", "confidence"}. A bad line is reported on
    stderr with its line number; the others are still tagged (exit 1 if any was bad).

    \b
    Example:
      tracker tag-file posts.jsonl > tagged.jsonl
    """
    from tracker.tagging import tag_jsonl

    _ok, errors = tag_jsonl(file, app.tagger(), SafeStream(sys.stdout, json=True), SafeStream(sys.stderr))  # type: ignore[arg-type]
    if errors:
        sys.exit(1)


@click.command("attribute")
@click.argument("post_ref")
@click.argument("stop")
@pass_app
def attribute(app: App, post_ref: str, stop: str) -> None:
    """Decide a post's visit by hand: a stop id, `none`, or `auto` to undo.

    POST_REF is the post's URL, `platform:id` (e.g. x:1623456789), or its platform id.
    The decision survives re-tagging.

    \b
    Examples:
      tracker attribute https://x.com/soste/status/1623456789 pirkanmaa
      tracker attribute mastodon:https://some.fi/users/a/statuses/1 none
    """
    import datetime as dt

    from storage.queries import PostToTag, clear_manual_attribution, find_post, set_manual_attribution, store_tags
    from tracker.retag import tag_rows

    settings = app.settings
    if stop not in ("none", "auto"):
        try:
            settings.tour.get(stop)
        except KeyError:
            raise TrackerError(f"unknown stop '{stop}' (stops: {', '.join(s.id for s in settings.tour.stops)}, "
                               "or none / auto)") from None
    db = app.database()
    now = dt.datetime.now(dt.timezone.utc)
    with db.write() as session:
        post = find_post(session, post_ref)
        if post is None:
            raise TrackerError(f"no post matches '{post_ref}' (give its URL, platform:id or database id)")
        if stop == "auto":
            clear_manual_attribution(session, post.id)
            [row] = tag_rows(app.tagger(), [PostToTag(post.id, post.text, list(post.hashtags or []), post.created_at)])
            store_tags(session, [row], now)
            echo(f"post {post.id}: automatic again: {row.stop_id or 'no visit'} ({row.method})")
            return
        local = post.created_at.astimezone(settings.campaign.tz).date()
        set_manual_attribution(session, post.id, None if stop == "none" else stop, local, now)
        echo(f"post {post.id}: attributed to {stop} by hand")
