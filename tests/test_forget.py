"""`tracker forget` holds everywhere: metrics refresh, re-collection, import, and others' reposts
of the forgotten author's posts; the forgotten list is keyed; behaviour without the key; a
database from before keys (0003) upgraded. Real clients against the fake platforms, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select

from storage.db import Database, open_database
from storage.models import Author as AuthorRow
from storage.models import CollectionCursor, ForgottenAuthor, Post
from tests.helpers.fake_campaign import ENV, Fakes, Sleeps, hours_ago, settings_raw, start_fakes, tagger_for
from tracker.collect import run_collection, run_refresh
from tracker.forgotten import ForgetKeyError, screen
from tracker.pipeline import ingest
from tracker.platforms.base import Policy
from tracker.platforms.registry import build_adapters, close_adapters
from tracker.posts import Author, Metrics, NormalisedPost, PostKind
from tracker.privacy import forget_author
from tracker.settings import Settings, parse_settings

UTC = dt.timezone.utc
PRIVACY_KEY = "forget-test-key-0123456789abcdef"
PSEUDONYM_KEY = "export-test-key-0123456789"


@pytest.fixture(autouse=True)
def _privacy_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_PRIVACY_KEY", PRIVACY_KEY)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


def count(db: Database, model: Any, *where: Any) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


# -- a campaign where one person is also reposted, quoted and replied to ----------------------


class People:
    """Aino is the person who asks to be forgotten; Bertta and Celia repost, quote and reply."""

    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes
        fakes.m1.reblogs_in_tag_timelines = True  # so that the collection sees reblogs at all
        x, m, b = fakes.x, fakes.m1, fakes.bsky
        self.aino_x, self.bertta_x, self.celia_x = (x.add_user(n, followers=f) for n, f in
                                                    (("aino_k", 300), ("bertta", 40), ("celia", 20)))
        self.aino_m, self.bertta_m = m.add_account("ainok", followers=30), m.add_account("bertta")
        self.aino_b = b.add_account("ainok.bsky.social", followers=70)
        b.add_account("celia.bsky.social")
        self.aino_did = self.aino_b.did
        self.aino_posts: list[str] = []
        self.tweet = x.add_tweet(self.aino_x, "Ainon oma kuulumiset Tampereella #ihmisensote",
                                 created_at=hours_ago(6), lang="fi")
        self.toot = m.post(self.aino_m, "Ainon oma tuuttaus Tampereella #ihmisensote", created_at=hours_ago(6))
        self.skeet = b.add_post("ainok.bsky.social", "Ainon oma skeet Tampereella #ihmisensote",
                                created_at=hours_ago(6))
        self.retweet = x.add_retweet(self.bertta_x, self.tweet, created_at=hours_ago(5))
        self.quote = x.add_tweet(self.celia_x, "Toisen lainaus Tampereella #ihmisensote", quote_of=self.tweet,
                                 created_at=hours_ago(5))
        self.reply = x.add_tweet(self.celia_x, "Toisen vastaus Tampereella #ihmisensote", reply_to=self.tweet,
                                 created_at=hours_ago(5))
        self.reblog = m.reblog(self.bertta_m, self.toot, created_at=hours_ago(5))
        self.bsky_quote = b.add_post("celia.bsky.social", "Toisen skeet-lainaus Tampereella #ihmisensote",
                                     quote=self.skeet, created_at=hours_ago(5))
        x.add_tweet(self.bertta_x, "Bertan oma Tampereella #ihmisensote", created_at=hours_ago(4))
        m.post(self.bertta_m, "Bertan tuuttaus Tampereella #ihmisensote", created_at=hours_ago(4))

    def more(self) -> None:
        """After the erasure: Aino posts again, and others repost, quote and reply."""
        x, m, b = self.fakes.x, self.fakes.m1, self.fakes.bsky
        tweet = x.add_tweet(self.aino_x, "Ainon uusi Tampereella #ihmisensote", created_at=hours_ago(2), lang="fi")
        x.add_retweet(self.bertta_x, tweet, created_at=hours_ago(1))
        toot = m.post(self.aino_m, "Ainon uusi tuuttaus Tampereella #ihmisensote", created_at=hours_ago(2))
        m.reblog(self.bertta_m, toot, created_at=hours_ago(1))
        skeet = b.add_post("ainok.bsky.social", "Ainon uusi skeet Tampereella #ihmisensote", created_at=hours_ago(2))
        b.add_post("celia.bsky.social", "Toisen toinen lainaus Tampereella #ihmisensote", quote=skeet,
                   created_at=hours_ago(1))
        x.add_tweet(self.celia_x, "Toisen uusi oma Tampereella #ihmisensote", created_at=hours_ago(1))

    def forget(self, db: Database, key: str | None = None) -> None:
        for handle, platform in (("aino_k", "x"), ("ainok@m1.example", "mastodon"), ("ainok.bsky.social", "bluesky")):
            forget_author(db, handle, platform, **({"key": key} if key else {}))


def settings_for(fakes: Fakes, db_url: str) -> Settings:
    raw = settings_raw(fakes, db_url)
    raw["platforms"]["x"]["include_retweets"] = True
    return parse_settings(raw, env={**ENV, "TRACKER_PSEUDONYM_KEY": PSEUDONYM_KEY})


def collect(db: Database, settings: Settings) -> list[Any]:
    adapters = build_adapters(settings, policy=Policy(sleep=Sleeps()))
    try:
        return run_collection(db, adapters, tagger=tagger_for(settings), privacy=settings.privacy)
    finally:
        close_adapters(adapters)


def refresh(db: Database, settings: Settings) -> list[Any]:
    adapters = build_adapters(settings, policy=Policy(sleep=Sleeps()))
    try:
        return run_refresh(db, adapters, settings, tagger=tagger_for(settings))
    finally:
        close_adapters(adapters)


def traces_of_aino(db: Database, people: People) -> list[str]:
    """Everything stored that is Aino's or names her: her posts, their copies, links to them."""
    found = []
    with db.read() as s:
        for post in s.scalars(select(Post)):
            author = s.get(AuthorRow, post.author_id) if post.author_id else None
            fields = [post.text, post.url, post.referenced_id, post.platform_id,
                      author.handle if author else None, author.platform_id if author else None]
            blob = " ".join(f for f in fields if f).lower()
            if "ainon" in blob or "aino" in blob or people.aino_did in blob or (
                    post.platform == "x" and post.referenced_id == people.tweet):
                found.append(f"{post.platform}:{post.kind}:{post.text!r}")
        for author in s.scalars(select(AuthorRow)):
            if "aino" in (author.handle or "").lower() or author.platform_id in (people.aino_x, people.aino_did):
                found.append(f"author {author.platform}")
    return found


def test_forget_holds_through_refresh_recollection_and_import(fakes: Fakes, db_url: str, tmp_path: Path) -> None:
    people = People(fakes)
    settings = settings_for(fakes, db_url)
    db = open_database(db_url)
    try:
        collect(db, settings)
        with db.read() as s:
            kinds = {(p.platform, p.kind) for p in s.scalars(select(Post))}
        # the reposts were collected: an X retweet and a Mastodon reblog (Bluesky search has none)
        assert {("x", "repost"), ("mastodon", "repost"), ("x", "quote"), ("x", "reply"), ("bluesky", "quote")} <= kinds
        assert len(traces_of_aino(db, people)) >= 8

        people.forget(db)
        assert traces_of_aino(db, people) == []
        with db.read() as s:
            # others' quotes and replies are kept, without the link to her post
            kept = {p.text: p.referenced_id for p in s.scalars(select(Post).where(Post.kind.in_(["quote", "reply"])))}
        assert kept == {"Toisen lainaus Tampereella #ihmisensote": None, "Toisen vastaus Tampereella #ihmisensote": None,
                        "Toisen skeet-lainaus Tampereella #ihmisensote": None}
        before = count(db, Post)

        # the metrics refresh re-reads every stored post: nothing of hers comes back
        results = refresh(db, settings)
        assert all(r.status == "ok" for r in results), [(r.platform, r.errors) for r in results]
        assert traces_of_aino(db, people) == []
        assert count(db, Post) == before

        # she posts again and is reposted again; everything is read again from the start
        people.more()
        with db.write() as s:
            s.execute(delete(CollectionCursor))
        results = collect(db, settings)
        assert all(r.status == "ok" for r in results), [(r.platform, r.errors) for r in results]
        assert traces_of_aino(db, people) == []
        with db.read() as s:
            texts = set(s.scalars(select(Post.text)))
            second_quote = s.scalars(select(Post).where(Post.text == "Toisen toinen lainaus Tampereella #ihmisensote")).one()
        assert "Toisen uusi oma Tampereella #ihmisensote" in texts  # others are still collected
        assert second_quote.kind == "quote" and second_quote.referenced_id is None
        assert count(db, Post) == before + 2

        # and an import of her posts or of copies of them stores nothing of hers
        rows = [
            {"platform": "x", "id": people.tweet, "created_at": "2023-02-09T10:00:00+02:00", "author": "aino_k",
             "text": "Ainon oma kuulumiset Tampereella #ihmisensote"},
            {"platform": "x", "id": "1", "created_at": "2023-02-09T10:00:00+02:00", "author": "daniel",
             "text": "RT @Aino_K: Ainon oma kuulumiset Tampereella #ihmisensote", "kind": "repost"},
            {"platform": "mastodon", "id": "https://m9.example/users/x/statuses/1", "author": "ainok@m1.example",
             "created_at": "2023-02-09T10:00:00+02:00", "text": "Ainon tuuttaus #ihmisensote"},
            {"platform": "x", "id": "2", "created_at": "2023-02-09T10:00:00+02:00", "author": "daniel",
             "text": "Danielin oma Tampereella #ihmisensote"},
        ]
        (tmp_path / "again.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        result = tracker_cli(["import", "again.jsonl"], tmp_path, db_url, {"TRACKER_PRIVACY_KEY": PRIVACY_KEY})
        assert result.returncode == 0, result.stderr
        assert traces_of_aino(db, people) == []
        assert count(db, Post) == before + 3
    finally:
        db.dispose()


def tracker_cli(args: list[str], cwd: Path, db_url: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (cwd / "settings.toml").write_text(
        f'[campaign]\nname = "T"\nhashtags = ["ihmisensote"]\n[storage]\nurl = {json.dumps(db_url)}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_pseudonymised_export_names_nobody(fakes: Fakes, db_url: str, tmp_path: Path) -> None:
    """Handles, usernames, DIDs, account URLs and post ids appear nowhere in the export."""
    from openpyxl import load_workbook

    from tracker.export import export

    People(fakes)
    settings = settings_for(fakes, db_url)
    db = open_database(db_url)
    try:
        collect(db, settings)
        with db.read() as s:
            authors = s.execute(select(AuthorRow.handle, AuthorRow.platform_id, AuthorRow.url)).all()
            posts = s.execute(select(Post.platform_id, Post.url, Post.referenced_id)).all()
        names: set[str] = set()
        for handle, platform_id, url in authors:
            names |= {handle.lower(), handle.split("@")[0].lower(), platform_id.lower()} | ({url.lower()} if url else set())
        for platform_id, url, referenced in posts:
            names |= {v.lower() for v in (platform_id, url, referenced) if v}
        names |= {n.split("@")[0] for n in names if n.startswith("did:")}
        assert {"aino_k", "ainok", "bertta", "celia"} <= names and any(n.startswith("did:plc:") for n in names)
        export(db, settings, tmp_path / "csv", "csv", pseudonymise=True)
        export(db, settings, tmp_path / "book.xlsx", "xlsx", pseudonymise=True)
        written = [(tmp_path / "csv" / n).read_text(encoding="utf-8-sig") for n in ("posts.csv", "summary.csv")]
        book = load_workbook(tmp_path / "book.xlsx", read_only=True)
        written += [" ".join(str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None)
                    for sheet in book.worksheets]
        whole = "\n".join(written).lower()
        assert "ainon oma" in whole and "#ihmisensote" in whole  # the texts are there
        leaks = sorted(n for n in names if n in whole)
        assert leaks == []
        assert PSEUDONYM_KEY.lower() not in whole and PRIVACY_KEY.lower() not in whole
    finally:
        db.dispose()


# -- rules at ingest, one post at a time -------------------------------------------------------

T0 = dt.datetime(2023, 2, 9, 8, tzinfo=UTC)


def post(platform: str, pid: str, handle: str, text: str, *, account: str | None = None,
         kind: PostKind = PostKind.ORIGINAL, ref: str | None = None) -> NormalisedPost:
    return NormalisedPost(platform=platform, platform_id=pid,
                          author=Author(platform_id=account or f"id-{handle}", handle=handle, followers=10),
                          text=text, created_at=T0, fetched_at=T0, hashtags=("ihmisensote",), kind=kind,
                          referenced_id=ref, metrics=Metrics(likes=1))


def stored_ids(db: Database) -> set[str]:
    with db.read() as s:
        return set(s.scalars(select(Post.platform_id)))


def store(db: Database, *posts: NormalisedPost) -> None:
    with db.write() as s:
        ingest(s, posts, None)


AINO_DID = "did:plc:ainoainoainoainoainoaino"


def seed_aino(db: Database) -> None:
    store(db,
          post("x", "a1", "aino", "Ainon teksti #ihmisensote"),
          post("mastodon", "https://m.example/users/aino/statuses/1", "aino@m.example", "Tuuttaus #ihmisensote",
               account="https://m.example/@aino"),
          post("bluesky", f"at://{AINO_DID}/app.bsky.feed.post/1", "aino.bsky.social", "Skeet #ihmisensote",
               account=AINO_DID),
          post("x", "b1", "bertta", "Bertan oma #ihmisensote"))
    for handle, platform in (("aino", "x"), ("aino@m.example", "mastodon"), ("aino.bsky.social", "bluesky")):
        forget_author(db, handle, platform)


def test_reposts_of_forgotten_posts_are_dropped_replies_unlinked(db: Database) -> None:
    seed_aino(db)
    assert stored_ids(db) == {"b1"}
    store(db,
          # a retweet of her erased post, arriving after the erasure
          post("x", "r1", "bertta", "RT @aino: Ainon teksti #ihmisensote", kind=PostKind.REPOST, ref="a1"),
          # a retweet whose original we never stored: the "RT @handle:" prefix names her
          post("x", "r2", "bertta", "RT @AINO: jotain muuta #ihmisensote", kind=PostKind.REPOST, ref="a77"),
          # the same as an imported row: no kind, no referenced id
          post("x", "r3", "daniel", "RT @aino: jotain #ihmisensote"),
          # a Mastodon reblog of a post of hers never stored: her username is in the status URI
          post("mastodon", "https://m.example/users/bertta/statuses/9/activity", "bertta@m.example", "Tuuttaus #ihmisensote",
               kind=PostKind.REPOST, ref="https://m.example/users/Aino/statuses/77"),
          # a Bluesky quote and an X reply of hers: kept without the link
          post("bluesky", "at://did:plc:celia/app.bsky.feed.post/2", "celia.bsky.social", "Lainaan #ihmisensote",
               account="did:plc:celia", kind=PostKind.QUOTE, ref=f"at://{AINO_DID}/app.bsky.feed.post/99"),
          post("x", "q1", "celia", "Vastaan #ihmisensote", kind=PostKind.REPLY, ref="a1"),
          # someone else's reblog on Mastodon and a reply to someone else: untouched
          post("mastodon", "https://m.example/users/celia/statuses/5/activity", "celia@m.example", "Muu #ihmisensote",
               kind=PostKind.REPOST, ref="https://m.example/users/bertta/statuses/3"),
          post("x", "q2", "celia", "Vastaan Bertalle #ihmisensote", kind=PostKind.REPLY, ref="b1"))
    with db.read() as s:
        rows = {p.platform_id: p.referenced_id for p in s.scalars(select(Post))}
    assert rows == {"b1": None, "at://did:plc:celia/app.bsky.feed.post/2": None, "q1": None,
                    "https://m.example/users/celia/statuses/5/activity": "https://m.example/users/bertta/statuses/3",
                    "q2": "b1"}
    # a new post of hers and a repost of it, in separate batches: the new post's id is
    # remembered (keyed) when it is dropped, so the later repost is recognised
    store(db, post("x", "a2", "aino", "Uusi #ihmisensote"))
    store(db, post("x", "r4", "bertta", "uudelleen #ihmisensote", kind=PostKind.REPOST, ref="a2"))
    # her account under a new handle, and a new account that took over her handle
    store(db, post("x", "a3", "aino_uusi", "Uusi nimi #ihmisensote", account="id-aino"),
          post("x", "a4", "aino", "Sama nimi #ihmisensote", account="id-someone-else"))
    assert stored_ids(db) == set(rows)


# -- the list is keyed ------------------------------------------------------------------------


def test_forgotten_list_holds_no_testable_hash(db: Database) -> None:
    seed_aino(db)
    with db.read() as s:
        digests = set(s.scalars(select(ForgottenAuthor.author_hash)))
    # what anyone with the database could test: a plain SHA-256 of a known account, handle or post
    known = ["id-aino", "aino", "https://m.example/@aino", "aino@m.example", AINO_DID, "aino.bsky.social", "a1",
             "https://m.example/users/aino/statuses/1", f"at://{AINO_DID}/app.bsky.feed.post/1"]
    guesses = {hashlib.sha256(f"{p}:{v}".encode()).hexdigest() for p in ("x", "mastodon", "bluesky") for v in known}
    guesses |= {hashlib.sha256(v.encode()).hexdigest() for v in known}
    assert not guesses & digests
    assert len(digests) == 10
    assert not any(v in d for d in digests for v in known)
    with db.read() as s:
        rows = s.execute(select(ForgottenAuthor.scheme, ForgottenAuthor.kind)).all()
    assert {r.scheme for r in rows} == {"hmac-sha256"}
    # per platform her account, her handle and her post; one key check
    assert sorted(r.kind for r in rows) == ["account"] * 3 + ["handle"] * 3 + ["key-check"] + ["post"] * 3


# -- without the key ---------------------------------------------------------------------------


def test_without_the_key_forget_refuses_and_nothing_comes_back(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store(db, post("x", "a1", "aino", "Ainon teksti #ihmisensote"))
    monkeypatch.delenv("TRACKER_PRIVACY_KEY")
    with pytest.raises(ForgetKeyError, match="forget needs a key: set the environment variable TRACKER_PRIVACY_KEY"):
        forget_author(db, "aino", "x")
    assert stored_ids(db) == {"a1"} and count(db, ForgottenAuthor) == 0
    with pytest.raises(ForgetKeyError, match="TRACKER_PRIVACY_KEY is too short"):
        forget_author(db, "aino", "x", key="short")
    assert stored_ids(db) == {"a1"}

    forget_author(db, "aino", "x", key=PRIVACY_KEY)
    # collection or import without the key: refused, nothing stored (people would come back)
    with pytest.raises(ForgetKeyError, match="set the environment variable TRACKER_PRIVACY_KEY .*nothing stored"):
        store(db, post("x", "a1", "aino", "Ainon teksti #ihmisensote"), post("x", "c1", "celia", "Oma #ihmisensote"))
    # another key than the list was made with: refused too
    monkeypatch.setenv("TRACKER_PRIVACY_KEY", "another-key-0123456789abcdef")
    with pytest.raises(ForgetKeyError, match="TRACKER_PRIVACY_KEY is not the key the list of forgotten authors"):
        store(db, post("x", "c1", "celia", "Oma #ihmisensote"))
    with pytest.raises(ForgetKeyError, match=r"is not the key .*\(nothing erased\)"):
        forget_author(db, "celia", "x")
    assert stored_ids(db) == set()
    monkeypatch.setenv("TRACKER_PRIVACY_KEY", PRIVACY_KEY)
    store(db, post("x", "a1", "aino", "Ainon teksti #ihmisensote"), post("x", "c1", "celia", "Oma #ihmisensote"))
    assert stored_ids(db) == {"c1"}


def test_without_the_key_cli_and_collection_refuse(fakes: Fakes, db_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    people = People(fakes)
    settings = settings_for(fakes, db_url)
    db = open_database(db_url)
    try:
        collect(db, settings)
        result = tracker_cli(["forget", "--author", "aino_k", "--platform", "x"], tmp_path, db_url, {})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "error: forget needs a key: set the environment variable TRACKER_PRIVACY_KEY (at least 16 random "
            "characters, kept the same for the life of the database; nothing erased)"]
        assert traces_of_aino(db, people)
        result = tracker_cli(["-vv", "forget", "--author", "aino_k", "--platform", "x"], tmp_path, db_url,
                             {"TRACKER_PRIVACY_KEY": PRIVACY_KEY})
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "forgot x:aino_k"
        assert "deleted 1 reposts of their posts by others; unlinked 2 replies and quotes" in result.stdout
        assert PRIVACY_KEY not in result.stdout + result.stderr  # not in the debug log either
        if db_url.startswith("sqlite:///"):  # nor in the database
            db.dispose()
            assert PRIVACY_KEY.encode() not in Path(db_url.removeprefix("sqlite:///")).read_bytes()

        monkeypatch.delenv("TRACKER_PRIVACY_KEY")
        before = count(db, Post)
        people.more()
        results = collect(db, settings)
        # every stream with posts to store failed (the second Mastodon instance has none: partial)
        assert {r.platform: r.status for r in results} == {"x": "failed", "mastodon": "partial", "bluesky": "failed"}
        assert all("TRACKER_PRIVACY_KEY" in "; ".join(r.errors) for r in results)
        results = refresh(db, settings)
        assert {r.status for r in results} == {"failed"}
        (tmp_path / "p.jsonl").write_text(json.dumps({"platform": "x", "id": people.tweet, "author": "aino_k",
                                                      "created_at": "2023-02-09T10:00:00Z", "text": "x"}) + "\n")
        result = tracker_cli(["import", "p.jsonl"], tmp_path, db_url, {})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "error: storing posts: the database lists forgotten authors by a keyed hash: set the environment "
            "variable TRACKER_PRIVACY_KEY to the key used by `tracker forget` (nothing stored)"]
        assert count(db, Post) == before
        # status says why nothing is collected, before anyone reads the failed runs
        result = tracker_cli(["status"], tmp_path, db_url, {})
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines()[0] == (
            "warning: collection, refresh and import refuse to store: the database lists forgotten authors by a "
            "keyed hash: set the environment variable TRACKER_PRIVACY_KEY to the key used by `tracker forget` "
            "(nothing is stored until then)")
        result = tracker_cli(["status", "--format", "json"], tmp_path, db_url, {"TRACKER_PRIVACY_KEY": PRIVACY_KEY})
        assert json.loads(result.stdout)["warnings"] == []
    finally:
        db.dispose()


# -- a database from before keys --------------------------------------------------------------


def test_unkeyed_list_from_0003_still_holds_and_is_rekeyed(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(db_url)
    try:
        db.upgrade("0003")
        legacy = hashlib.sha256(b"x:id-aino").hexdigest()  # what 0003's `forget` kept
        with db.write() as s:
            s.execute(insert(ForgottenAuthor.__table__).values(author_hash=legacy, forgotten_at=T0))
        db.upgrade()
        with db.read() as s:
            assert s.execute(select(ForgottenAuthor.scheme, ForgottenAuthor.kind)).all() == [("sha256", "account")]
        # without a key (none needed yet): the unkeyed digest still keeps her out
        monkeypatch.delenv("TRACKER_PRIVACY_KEY")
        store(db, post("x", "a1", "aino", "Ainon teksti #ihmisensote"), post("x", "c1", "celia", "Oma #ihmisensote"))
        assert stored_ids(db) == {"c1"}
        # with the key: she stays out, and her unkeyed digest is replaced by keyed ones
        monkeypatch.setenv("TRACKER_PRIVACY_KEY", PRIVACY_KEY)
        store(db, post("x", "a2", "aino", "Uusi #ihmisensote"))
        store(db, post("x", "r2", "bertta", "RT jotain #ihmisensote", kind=PostKind.REPOST, ref="a2"))
        assert stored_ids(db) == {"c1"}
        with db.read() as s:
            rows = s.execute(select(ForgottenAuthor.author_hash, ForgottenAuthor.scheme)).all()
        assert legacy not in {r.author_hash for r in rows} and {r.scheme for r in rows} == {"hmac-sha256"}
        with db.write() as s:
            assert screen(s, [post("x", "a3", "aino", "x #ihmisensote")]).posts == []
    finally:
        db.dispose()


# -- an erasure while a page is being stored ---------------------------------------------------


def test_forget_waits_for_a_page_being_stored(db: Database) -> None:
    """A page checked against the list just before the erasure is committed before it, and so
    erased with the rest (PostgreSQL: an advisory lock; SQLite: serial write transactions)."""
    import threading

    store(db, post("x", "a1", "aino", "Ainon teksti #ihmisensote"))
    done: list[object] = []
    with db.write() as s:
        ingest(s, [post("x", "a2", "aino", "Toinen #ihmisensote")], None)  # checked: nobody forgotten yet
        worker = threading.Thread(target=lambda: done.append(forget_author(db, "aino", "x")))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not done  # the erasure waits for this page
    worker.join(30)
    assert done and done[0].counts.posts == 2  # type: ignore[attr-defined]
    assert stored_ids(db) == set()
