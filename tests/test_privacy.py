"""Data protection: erasure (`forget`), retention, deleted posts, minimisation at ingest, and
pseudonymised exports. SQLite and PostgreSQL (fixture `db`)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from storage.db import Database, open_database
from storage.models import (
    Attribution,
    Author as AuthorRow,
    AuthorFollowers,
    MetricSnapshot,
    Post,
    PostArea,
    PostSource,
)
from storage.upserts import mark_deleted, store_posts
from tests import test_summary as data
from tracker.app import App
from tracker.cli import TrackerGroup
from tracker.cli_privacy import COMMANDS
from tracker.errors import SettingsError
from tracker.export import export
from tracker.pipeline import ingest
from tracker.posts import Author, Metrics, NormalisedPost, PostKind
from tracker.privacy import (
    Pseudonymiser,
    PrivacyError,
    forget_author,
    post_pseudonym,
    pseudonym,
    run_retention,
)
from tracker.settings import Settings, load_settings, parse_settings
from tracker.summary import summarise, top_authors, visit_summaries
from tracker.tagging import Tagger

UTC = dt.timezone.utc
T0 = dt.datetime(2023, 2, 9, 8, tzinfo=UTC)
KEY = "pseudonym-test-key-0123456789"
PRIVACY_KEY = "privacy-test-key-9876543210"


@pytest.fixture(autouse=True)
def _privacy_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """`forget` and the forgotten list need TRACKER_PRIVACY_KEY (tests without it unset it)."""
    monkeypatch.setenv("TRACKER_PRIVACY_KEY", PRIVACY_KEY)


def settings_for(url: str | None = None, **privacy: Any) -> Settings:
    raw: dict[str, Any] = dict(data.SETTINGS)
    if url:
        raw["storage"] = {"url": url}
    if privacy:
        raw["privacy"] = privacy
    return parse_settings(raw, "test", env={"TRACKER_PSEUDONYM_KEY": KEY, "TRACKER_PRIVACY_KEY": PRIVACY_KEY})


def tweet(pid: str, handle: str, text: str, *, kind: PostKind = PostKind.ORIGINAL, ref: str | None = None,
          hours: float = 0, followers: int = 100, platform: str = "x", fetched_hours: float = 1) -> NormalisedPost:
    return NormalisedPost(
        platform=platform, platform_id=pid,
        author=Author(platform_id=f"id-{handle}", handle=handle, display_name=f"Name {handle}",
                      url=f"https://x.com/{handle}", followers=followers),
        text=text, created_at=T0 + dt.timedelta(hours=hours), fetched_at=T0 + dt.timedelta(hours=fetched_hours),
        url=f"https://x.com/{handle}/status/{pid}", language="fi", hashtags=("ihmisensote",), kind=kind,
        referenced_id=ref, metrics=Metrics(likes=3, reposts=1, replies=0, quotes=0, views=10),
        source="src" if platform == "mastodon" else None, source_id=pid if platform == "mastodon" else None,
    )


def count(db: Database, model: Any, *where: Any) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def tagger(settings: Settings) -> Tagger:
    return Tagger(settings.tour.stops, settings.campaign.timezone, 3, 7)


TAGGER = None


def seed_people(db: Database, settings: Settings) -> None:
    global TAGGER
    TAGGER = TAGGER or tagger(settings)
    posts = [
        tweet("a1", "alice", "Tampereella tänään #ihmisensote"),
        tweet("a2", "alice", "Toinen päivä Tampereella #ihmisensote", hours=2),
        tweet("b1", "bob", "Hieno puhe @alice Tampereella #ihmisensote", hours=3, followers=50),
        tweet("b2", "bob", "RT @alice: Tampereella tänään #ihmisensote", kind=PostKind.REPOST, ref="a1", hours=4,
              followers=50),
        tweet("m1", "alice@m.example", "Sama nimi mastodonissa #ihmisensote", platform="mastodon", hours=5),
    ]
    later = [tweet("a2", "alice", "Toinen päivä Tampereella #ihmisensote", hours=2, fetched_hours=5, followers=120)]
    for batch in (posts, later):  # the follower history is one count per author per collection
        with db.write() as s:
            ingest(s, batch, TAGGER)


# -- forget -------------------------------------------------------------------------------------


def test_forget_erases_author_everywhere_and_keeps_others(db: Database) -> None:
    settings = settings_for()
    seed_people(db, settings)
    with db.read() as s:
        alice = s.scalar(select(AuthorRow.id).where(AuthorRow.handle == "alice"))
        a_posts = list(s.scalars(select(Post.id).where(Post.author_id == alice)))
    assert len(a_posts) == 2 and count(db, AuthorFollowers, AuthorFollowers.author_id == alice) == 2
    assert count(db, MetricSnapshot, MetricSnapshot.post_id.in_(a_posts)) == 3

    with db.read() as s:
        repost = s.scalar(select(Post.id).where(Post.platform_id == "b2"))
    result = forget_author(db, "@Alice", "x")
    c = result.counts
    # alice's 2 posts with 3 snapshots, 2 visit tags, 2 area tags; bob's retweet of a1 (a copy of
    # her text) deleted with its snapshot, visit tag and area tag
    assert (c.authors, c.posts, c.snapshots, c.attributions, c.follower_history, c.reposts_deleted) == (1, 2, 4, 3, 2, 1)
    assert (c.areas, c.references_cleared) == (3, 0)
    assert any("2 posts" in line for line in result.lines())
    assert count(db, AuthorRow, AuthorRow.id == alice) == 0
    for model in (MetricSnapshot, Attribution, PostArea, PostSource):
        assert count(db, model, model.post_id.in_([*a_posts, repost])) == 0
    assert count(db, AuthorFollowers, AuthorFollowers.author_id == alice) == 0
    with db.read() as s:
        kept = {p.platform_id: p.text for p in s.scalars(select(Post))}
    # others' posts are kept: a mention stays as written; a retweet (a copy of hers) is deleted
    assert kept == {"b1": "Hieno puhe @alice Tampereella #ihmisensote",
                    "m1": "Sama nimi mastodonissa #ihmisensote"}
    # the Mastodon account with the same user name is someone else and untouched
    assert count(db, AuthorRow, AuthorRow.handle == "alice@m.example") == 1


def test_forgotten_author_is_not_collected_again(db: Database) -> None:
    from storage.models import ForgottenAuthor

    settings = settings_for()
    seed_people(db, settings)
    forget_author(db, "alice", "x")
    with db.read() as s:
        kept = s.scalars(select(ForgottenAuthor.author_hash)).all()
    # account, handle, her 2 posts, the key check: only keyed digests, never the handle
    assert len(kept) == 5 and not any("alice" in k for k in kept)
    again = [tweet("a9", "alice", "Taas Tampereella #ihmisensote"), tweet("c9", "carol", "Tampereella #ihmisensote")]
    with db.write() as s:
        result = ingest(s, again, TAGGER)
    assert result.new == 1
    with db.read() as s:
        assert set(s.scalars(select(Post.platform_id).where(Post.platform_id.in_(["a9", "c9"])))) == {"c9"}
        assert s.scalar(select(func.count()).select_from(AuthorRow).where(AuthorRow.handle == "alice")) == 0


def test_forget_unknown_or_ambiguous_erases_nothing(db: Database) -> None:
    settings = settings_for()
    seed_people(db, settings)
    before = count(db, Post)
    with pytest.raises(PrivacyError, match="no author with handle 'nobody'"):
        forget_author(db, "nobody")
    # "alice" is alice on X and alice@m.example on Mastodon: the operator must choose
    with pytest.raises(PrivacyError, match=r"several platforms \(mastodon, x\): give --platform"):
        forget_author(db, "alice")
    assert count(db, Post) == before
    result = forget_author(db, "alice", "mastodon")
    assert result.counts.posts == 1 and result.authors[0].handle == "alice@m.example"


def cli_for(settings: Settings) -> click.Group:
    @click.group(cls=TrackerGroup)
    @click.pass_context
    def group(ctx: click.Context) -> None:
        app = App.from_settings(settings)
        ctx.obj = app
        ctx.call_on_close(app.close)

    for command in COMMANDS:
        group.add_command(command)
    return group


def test_forget_and_retention_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    settings = settings_for(url, retention_days=30)
    app = App.from_settings(settings)
    seed_people(app.database(), settings)
    app.close()
    cli = cli_for(settings)
    runner = CliRunner()
    out = runner.invoke(cli, ["forget", "--author", "ghost"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == ["error: no author with handle 'ghost' is stored (nothing erased)"]
    out = runner.invoke(cli, ["forget", "--author", "bob", "--platform", "x"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("forgot x:bob\ndeleted: 2 posts, ")
    assert "deleted 0 reposts of their posts by others" in out.output
    out = runner.invoke(cli, ["retention"])
    assert out.exit_code == 0, out.output
    # all posts are from 2023: older than 30 days
    assert "minimised 3 posts" in out.output and "blanked 2 authors" in out.output


# -- retention ----------------------------------------------------------------------------------


def figures_snapshot(db: Database, settings: Settings) -> Any:
    s = summarise(db, settings)
    return visit_summaries(db, settings), s.no_visit, s.totals


def test_retention_keeps_figures_and_removes_texts_and_names(db: Database) -> None:
    settings = settings_for(retention_days=40)
    ids = data.build_campaign(db, settings)
    now = dt.datetime(2023, 5, 1, tzinfo=UTC)  # cutoff 2023-03-22: only the two Lappi posts are recent
    before = figures_snapshot(db, settings)
    result = run_retention(db, settings, now=now)
    c = result.counts
    assert result.cutoff == dt.datetime(2023, 3, 22, tzinfo=UTC)
    # old live posts x-1, x-2, toot, x-7, m-8, x-9 minimised; the deleted x-6 scrubbed too
    assert c.posts_minimised == 7 and c.deleted_posts_scrubbed == 1
    assert c.authors_blanked == 3  # alice, bob, =eve; carol posted recently; dave's only post was deleted
    assert c.orphan_authors_removed == 1
    assert figures_snapshot(db, settings) == before
    with db.read() as s:
        posts = {p.platform_id: p for p in s.scalars(select(Post))}
        authors = {a.platform_id: a for a in s.scalars(select(AuthorRow))}
    old = posts["x-1"]
    assert (old.text, old.url, old.language) == (None, None, None)
    assert old.likes == 10 and old.created_at == data.t("2023-02-09 08:00") and old.hashtags == ["ihmisensote"]
    assert count(db, MetricSnapshot, MetricSnapshot.post_id == ids["x-1"]) == 3
    assert count(db, Attribution, Attribution.post_id == ids["x-1"]) == 1
    assert posts["b-5"].text is not None and posts["b-5"].url is not None
    assert (authors["a-1"].handle, authors["a-1"].display_name, authors["a-1"].url) == (None, None, None)
    assert authors["a-1"].followers == 140  # reach stays correct
    assert authors["did:plc:carol"].handle == "carol.bsky.social"
    assert "d-1" not in authors  # only seen in a deleted post
    deleted = posts["x-6"]
    assert (deleted.text, deleted.author_id) == (None, None)
    # top authors still rank by reach, without names
    assert [a["followers"] for a in top_authors(db, settings, by="reach", n=3)][:1] == [140]
    # the weekly email still renders (texts and names gone); the HTML report: see below
    from tracker.weekly import Week, build_message

    mail = build_message(db, settings, Week(2023, 6), now=now).as_string()
    assert "Hieno p" not in mail and "alice" not in mail
    # idempotent
    again = run_retention(db, settings, now=now).counts
    assert again.as_dict() == dict.fromkeys(again.as_dict(), 0)


def test_deleted_posts_lose_text_and_author_until_seen_again(db: Database) -> None:
    settings = settings_for()  # no retention_days: only deleted posts are scrubbed
    p = tweet("z1", "zed", "Poistettu Tampereella #ihmisensote")
    keep = tweet("z2", "zed", "Jää Tampereella #ihmisensote", hours=1)
    with db.write() as s:
        store_posts(s, [p, keep])
    with db.write() as s:
        assert mark_deleted(s, "x", ["z1"], T0 + dt.timedelta(days=1)) == 1
    before = figures_snapshot(db, settings)
    result = run_retention(db, settings, now=T0 + dt.timedelta(days=3))
    assert result.cutoff is None and result.counts.deleted_posts_scrubbed == 1
    assert result.counts.posts_minimised == 0 and result.counts.orphan_authors_removed == 0
    assert figures_snapshot(db, settings) == before
    with db.read() as s:
        gone = s.scalars(select(Post).where(Post.platform_id == "z1")).one()
        assert (gone.text, gone.url, gone.author_id) == (None, None, None)
        assert s.scalar(select(Post.text).where(Post.platform_id == "z2")) is not None
    # made public again: a newer fetch brings text and author back
    with db.write() as s:
        store_posts(s, [dataclasses.replace(p, fetched_at=T0 + dt.timedelta(days=4))])
    with db.read() as s:
        back = s.scalars(select(Post).where(Post.platform_id == "z1")).one()
        assert back.deleted_at is None and back.text and back.author_id is not None


# -- minimisation at ingest ---------------------------------------------------------------------


def test_minimisation_stores_no_text_or_names_but_tags(db: Database) -> None:
    settings = settings_for(store_post_text=False, store_author_names=False)
    with db.write() as s:
        ingest(s, [tweet("q1", "quiet", "Tampereella #ihmisensote")], tagger(settings), privacy=settings.privacy)
    with db.read() as s:
        post = s.scalars(select(Post)).one()
        author = s.scalars(select(AuthorRow)).one()
        stop = s.scalar(select(Attribution.stop_id))
    assert (post.text, post.url, author.handle, author.display_name, author.url) == (None, None, None, None, None)
    assert author.followers == 100 and post.likes == 3 and stop == "pirkanmaa"


def test_import_command_applies_minimisation(tmp_path: Path) -> None:
    """The settings' [privacy] reach the CLI's ingest: no text stored, author name kept."""
    import subprocess
    import sys

    (tmp_path / "settings.toml").write_text(
        '[campaign]\nname = "T"\nhashtags = ["ihmisensote"]\n[privacy]\nstore_post_text = false\n'
        '[[tour.stops]]\narea = "pirkanmaa"\ndate = 2023-02-09\n')
    (tmp_path / "p.jsonl").write_text('{"platform": "instagram", "id": "q2", "created_at": "2023-02-09T10:00:00+02:00", '
                                      '"author": "someone", "text": "Tampereella #ihmisensote"}\n')
    result = subprocess.run([sys.executable, "-m", "tracker", "import", "p.jsonl"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        with db.read() as s:
            assert s.scalar(select(Post.text)) is None
            assert s.scalar(select(AuthorRow.handle)) == "someone"
            assert s.scalar(select(Attribution.stop_id)) == "pirkanmaa"  # tagged from the full text
    finally:
        db.dispose()


# -- pseudonymised export -----------------------------------------------------------------------


def read_posts_csv(folder: Path) -> list[dict[str, str]]:
    with (folder / "posts.csv").open(encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def test_pseudonymised_export(db: Database, tmp_path: Path) -> None:
    settings = settings_for()
    seed_people(db, settings)
    export(db, settings, tmp_path / "a", "csv", pseudonymise=True)
    export(db, settings, tmp_path / "b", "csv", pseudonymise=True)
    first, second = read_posts_csv(tmp_path / "a"), read_posts_csv(tmp_path / "b")
    assert first == second  # stable across exports
    alice = pseudonym(KEY, "x", "id-alice")
    by_id = {r["platform_id"]: r for r in first}  # post ids are pseudonyms too
    assert set(by_id) == {post_pseudonym(KEY, p, i) for p, i in
                          (("x", "a1"), ("x", "a2"), ("x", "b1"), ("x", "b2"), ("mastodon", "m1"))}
    a1, b1, m1 = (by_id[post_pseudonym(KEY, p, i)] for p, i in (("x", "a1"), ("x", "b1"), ("mastodon", "m1")))
    assert a1["author_handle"] == alice and len(alice) == 18
    assert b1["text"] == f"Hieno puhe @{alice} Tampereella #ihmisensote"
    assert m1["author_handle"] == pseudonym(KEY, "mastodon", "id-alice@m.example")
    for name in ("posts.csv", "summary.csv"):
        raw = (tmp_path / "a" / name).read_text(encoding="utf-8-sig")
        for secret in ("alice", "bob", "Name ", "x.com", KEY):
            assert secret not in raw, (name, secret)
    # another key, other pseudonyms; the plain export still has the handles
    assert pseudonym("other", "x", "id-alice") != alice
    export(db, settings, tmp_path / "plain", "csv")
    assert {r["author_handle"] for r in read_posts_csv(tmp_path / "plain")} == {"alice", "bob", "alice@m.example"}


def test_pseudonymise_without_key_is_one_clear_error(db: Database, tmp_path: Path) -> None:
    settings = parse_settings(data.SETTINGS, "test", env={})
    with pytest.raises(PrivacyError, match="set the environment variable TRACKER_PSEUDONYM_KEY"):
        export(db, settings, tmp_path / "x.xlsx", "xlsx", pseudonymise=True)
    assert not (tmp_path / "x.xlsx").exists()
    assert "key hidden" in repr(Pseudonymiser(KEY, {}))


def test_pseudonymiser_mentions() -> None:
    p = Pseudonymiser(KEY, {("x", "alice"): "1", ("mastodon", "bob@m.example"): "u/bob",
                            ("mastodon", "bob@n.example"): "u/bob2", ("mastodon", "cat@m.example"): "u/cat"})
    a, b, b2, c = (pseudonym(KEY, "x", "1"), pseudonym(KEY, "mastodon", "u/bob"),
                   pseudonym(KEY, "mastodon", "u/bob2"), pseudonym(KEY, "mastodon", "u/cat"))
    text = "@Alice ja @bob@m.example, @bob@n.example, @bob, @cat sekä @unknown; mail alice@x.fi"
    assert p.text(text) == f"@{a} ja @{b}, @{b2}, @bob, @{c} sekä @unknown; mail alice@x.fi"
    # links that name an account (profiles, posts) and DIDs go; other links stay
    did = "did:plc:abcdefghijklmnopqrstuvwx"
    linked = (f"Katso https://x.com/someone/status/1 ja https://bsky.app/profile/{did}/post/3 sekä "
              "https://m.example/@cat/12, https://n.example/users/zed/statuses/4 ja https://example.fi/alice/kuva "
              f"(tili {did}); lisää https://soste.fi/kiertue?paikka=tampere")
    assert p.text(linked) == (f"Katso [link] ja [link] sekä [link], [link] ja [link] (tili {pseudonym(KEY, 'bluesky', did)}); "
                              "lisää https://soste.fi/kiertue?paikka=tampere")
    row = p.row({"platform": "mastodon", "platform_id": "https://m.example/users/bob/statuses/1",
                 "url": "https://m.example/@bob/1", "author_handle": "bob@m.example", "author_name": "Bob", "text": None})
    assert (row["platform_id"], row["url"], row["author_name"]) == (
        post_pseudonym(KEY, "mastodon", "https://m.example/users/bob/statuses/1"), None, None)


# -- settings -----------------------------------------------------------------------------------


def test_privacy_settings(tmp_path: Path) -> None:
    s = settings_for(retention_days=365, store_post_text=False)
    assert (s.privacy.retention_days, s.privacy.store_post_text, s.privacy.store_author_names) == (365, False, True)
    assert parse_settings(data.SETTINGS, env={}).privacy.retention_days is None
    with pytest.raises(SettingsError, match="privacy.retention_days"):
        settings_for(retention_days=0)
    with pytest.raises(SettingsError, match="privacy.keep: unknown key"):
        settings_for(keep=True)
    assert KEY in s.secrets.values()
    path = tmp_path / "settings.toml"
    path.write_text('[campaign]\nname = "x"\nhashtags = ["a"]\n[privacy]\npseudonym_key = "abc"\n')
    with pytest.raises(SettingsError, match="set the environment variable TRACKER_PSEUDONYM_KEY instead"):
        load_settings(path, env={})


def test_forget_is_all_or_nothing(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the rows are deleted (inside the transaction) leaves everything in place."""
    import storage.privacy as sql

    settings = settings_for()
    seed_people(db, settings)
    before = {m.__tablename__: count(db, m) for m in (Post, AuthorRow, AuthorFollowers, MetricSnapshot, Attribution)}
    real = sql.erase_authors

    def erase_then_fail(session: Any, ids: Any) -> Any:
        real(session, ids)
        raise RuntimeError("disk full")

    monkeypatch.setattr(sql, "erase_authors", erase_then_fail)
    with pytest.raises(RuntimeError):
        forget_author(db, "alice", "x")
    assert {m.__tablename__: count(db, m) for m in (Post, AuthorRow, AuthorFollowers, MetricSnapshot,
                                                     Attribution)} == before


def test_html_report_renders_after_retention(tmp_path: Path) -> None:
    from tracker.report_html import render_report

    settings = settings_for(retention_days=40)
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    try:
        db.upgrade()
        data.build_campaign(db, settings)
        run_retention(db, settings, now=dt.datetime(2023, 5, 1, tzinfo=UTC))
        page = render_report(db, settings, now=dt.datetime(2023, 5, 1, tzinfo=UTC))
        assert "Hieno p" not in page and ">None<" not in page
    finally:
        db.dispose()
