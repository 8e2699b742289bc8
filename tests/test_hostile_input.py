"""Hostile posts never stop collection (issue 15, item 1), on SQLite and PostgreSQL.

A lone surrogate, a NUL, a 600-character display name, a count of 10**30, a year-2 date used to
fail the whole page (and the same page on every later run: a gap for ever, the good posts behind
it never stored). Now each hostile post is stored as tracker.textsafe makes it, or skipped and
logged when its identifier itself cannot be stored; the rest of the page is stored.
Through the real client libraries against the fake platforms, and as a property over `ingest`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.db import Database
from storage.models import Attribution, Gap, Post, PostSource
from storage.models import Author as AuthorRow
from storage.upserts import store_posts
from tests.helpers.fake_campaign import Fakes, hours_ago, start_fakes
from tests.helpers.hostile import HOSTILE_CHARS, stored_as, stored_post
from tests.test_faults import Clock, adapters_for, check_no_duplicates, count
from tracker.collect import run_collection
from tracker.pipeline import ingest
from tracker.platforms.registry import close_adapters
from tracker.posts import Author, Metrics, NormalisedPost, PostKind
from tracker.tagging import Tagger
from tracker.textsafe import NAME_LENGTH, Refused, safe_post, safe_posts

UTC = dt.timezone.utc
TAG = "#ihmisensote"
SURROGATE_TEXT = f"Kiertue \ud800 Tampereella {TAG}"
NUL_TEXT = f"Kiertue\x00 Oulussa {TAG}"
LONG_NAME = "Ä" * 590 + "\u202e" + "n" * 9  # 600 characters, a right-to-left override inside
HOSTILE_NAME = "Mal\x00lory \udfff"


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


@dataclass
class Seeded:
    good: list[str] = field(default_factory=list)
    hostile: dict[str, str] = field(default_factory=dict)
    """platform_id -> what its text is stored as."""
    impossible: list[str] = field(default_factory=list)
    """platform_ids that cannot be stored (the author's id is too long): skipped and logged."""


def _seed_x(fakes: Fakes) -> Seeded:
    s = Seeded()
    x = fakes.x
    user = x.add_user("sote_fi", followers=1200)
    long_named = x.add_user("pitka", name=LONG_NAME)
    hostile = x.add_user("mallory", name=HOSTILE_NAME, followers=3)
    too_long = x.add_user("outsider", user_id="9" * 600)
    for i in range(6):
        s.good.append(x.add_tweet(user, f"Hyvä {i} {TAG}", created_at=hours_ago(30 - i)))
    s.hostile[x.add_tweet(hostile, SURROGATE_TEXT, created_at=hours_ago(20))] = "Kiertue \ufffd Tampereella"
    s.hostile[x.add_tweet(hostile, NUL_TEXT, created_at=hours_ago(19))] = "Kiertue Oulussa"
    s.hostile[x.add_tweet(long_named, f"Pitkä nimi {TAG}", created_at=hours_ago(18))] = "Pitkä nimi"
    s.impossible.append(x.add_tweet(too_long, f"Tuntematon {TAG}", created_at=hours_ago(17)))
    for i in range(6, 12):
        s.good.append(x.add_tweet(user, f"Hyvä {i} {TAG}", created_at=hours_ago(16 - i)))
    return s


def _seed_mastodon(fakes: Fakes) -> Seeded:
    s = Seeded()
    m = fakes.m1
    alice = m.add_account("alice", followers=300)
    long_named = m.add_account("pitka", display_name=LONG_NAME)
    hostile = m.add_account("mallory", display_name=HOSTILE_NAME)
    too_long = m.add_account("o" * 600)
    for i in range(4):
        s.good.append(m.uri_of(m.post(alice, f"Hyvä {i} {TAG}", created_at=hours_ago(30 - i))))
    s.hostile[m.uri_of(m.post(hostile, SURROGATE_TEXT, created_at=hours_ago(20)))] = "Kiertue \ufffd Tampereella"
    s.hostile[m.uri_of(m.post(hostile, NUL_TEXT, created_at=hours_ago(19)))] = "Kiertue"
    s.hostile[m.uri_of(m.post(long_named, f"Pitkä nimi {TAG}", created_at=hours_ago(18)))] = "Pitkä nimi"
    s.impossible.append(m.uri_of(m.post(too_long, f"Tuntematon {TAG}", created_at=hours_ago(17))))
    for i in range(4, 9):
        s.good.append(m.uri_of(m.post(alice, f"Hyvä {i} {TAG}", created_at=hours_ago(16 - i))))
    return s


def _seed_bluesky(fakes: Fakes) -> Seeded:
    """The atproto client parses JSON with pydantic_core, which refuses a whole body holding a
    lone-surrogate escape: the adapter's transport repairs such a body first."""
    s = Seeded()
    b = fakes.bsky
    bob = b.add_account("bob.bsky.social", followers=55)
    long_named = b.add_account("pitka.bsky.social", display_name=LONG_NAME)
    hostile = b.add_account("mallory.bsky.social", display_name=HOSTILE_NAME)
    b.add_account("outsider.bsky.social", did="did:plc:" + "z" * 600)
    for i in range(5):
        s.good.append(b.add_post(bob.handle, f"Hyvä {i} {TAG}", created_at=hours_ago(30 - i)))
    s.hostile[b.add_post(hostile.handle, SURROGATE_TEXT, created_at=hours_ago(21))] = "Kiertue \ufffd Tampereella"
    s.hostile[b.add_post(hostile.handle, f"Kiertue \x1b[2J\u202e Tampereella {TAG}",
                         created_at=hours_ago(20))] = "Kiertue \x1b[2J\u202e Tampereella"
    s.hostile[b.add_post(hostile.handle, NUL_TEXT, created_at=hours_ago(19))] = "Kiertue Oulussa"
    s.hostile[b.add_post(long_named.handle, f"Pitkä nimi {TAG}", created_at=hours_ago(18))] = "Pitkä nimi"
    s.impossible.append(b.add_post("outsider.bsky.social", f"Tuntematon {TAG}", created_at=hours_ago(17)))
    for i in range(5, 11):
        s.good.append(b.add_post(bob.handle, f"Hyvä {i} {TAG}", created_at=hours_ago(16 - i)))
    return s


SEEDERS = {"x": _seed_x, "mastodon": _seed_mastodon, "bluesky": _seed_bluesky}


def _author(db: Database, platform: str, handle: str) -> AuthorRow:
    """The one stored author of `platform` whose handle starts with `handle`."""
    with db.read() as s:
        [row] = s.scalars(select(AuthorRow).where(AuthorRow.platform == platform,
                                                  AuthorRow.handle.startswith(handle))).all()
        return row


def _texts(db: Database, platform: str) -> dict[str, str | None]:
    with db.read() as s:
        return dict(s.execute(select(Post.platform_id, Post.text).where(Post.platform == platform)).all())


@pytest.mark.parametrize("platform", list(SEEDERS))
def test_hostile_posts_are_stored_sanitised_and_never_stop_collection(
        platform: str, fakes: Fakes, db: Database, caplog: pytest.LogCaptureFixture) -> None:
    seeded = SEEDERS[platform](fakes)
    clock = Clock()
    adapters = adapters_for(fakes, clock)
    caplog.set_level(logging.WARNING)
    try:
        [first] = run_collection(db, [adapters[platform]], clock=clock)
        assert (first.status, first.gaps) == ("ok", 0), first.line()
        assert count(db, Gap) == 0
        texts = _texts(db, platform)
        assert set(seeded.good) <= set(texts), "a good post was not stored"
        for platform_id, expected in seeded.hostile.items():
            stored = texts[platform_id]
            assert stored is not None and expected in stored
            assert "\x00" not in stored and not any("\ud800" <= ch <= "\udfff" for ch in stored)
        assert not set(seeded.impossible) & set(texts)
        assert set(texts) == set(seeded.good) | set(seeded.hostile)
        assert first.skipped >= len(seeded.impossible)
        skipped_lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert skipped_lines and all(platform in line for line in skipped_lines)
        assert all("ÄÄÄ" not in line and "Mal" not in line for line in caplog.messages)

        long_named = _author(db, platform, "pitka")
        assert len(long_named.display_name) == NAME_LENGTH and long_named.display_name.endswith("…")
        assert long_named.display_name.startswith("Ä" * 500)
        hostile = _author(db, platform, "mallory")
        assert hostile.display_name is not None and "\x00" not in hostile.display_name
        assert hostile.display_name.startswith("Mallory") and "\ufffd" in hostile.display_name
        with db.read() as s:  # tagged like any post: the areas read from the sanitised text
            tagged = s.scalar(select(func.count()).select_from(Attribution))
        assert tagged == 0 or tagged == len(texts)

        before = {k: v for k, v in texts.items()}
        clock.now += dt.timedelta(hours=1)
        [second] = run_collection(db, [adapters[platform]], clock=clock)
        assert (second.status, second.gaps) == ("ok", 0), second.line()
        assert _texts(db, platform) == before
        check_no_duplicates(db)
        assert count(db, Gap) == 0
    finally:
        close_adapters(list(adapters.values()))


# -- the database refusing a value: that post skipped, the page stored ----------------------------


def _post(i: int, **changes: object) -> NormalisedPost:
    values: dict[str, object] = dict(platform="x", platform_id=f"p{i}", author=Author(f"a{i}", f"h{i}"),
                                     text=f"hyvä {i}", created_at=hours_ago(5), fetched_at=hours_ago(1),
                                     metrics=Metrics(likes=i))
    values.update(changes)
    return NormalisedPost(**values)  # type: ignore[arg-type]


def test_store_posts_skips_a_refused_post_and_stores_the_rest(db: Database,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Values that reach storage unsanitised (store_posts called directly): each database refuses
    some (PostgreSQL more than SQLite); those posts are skipped, named in the log without their
    values, and every other post of the page is stored."""
    secret_name = "Salainen Nimi " * 50
    hostile = [_post(1, text="a\ud800b"), _post(2, metrics=Metrics(likes=10**30)),
               _post(3, author=Author("a3", "h3", followers=10**30)),
               _post(4, author=Author("a4", "h4", display_name=secret_name)), _post(5, text="nul\x00")]
    good = [_post(i) for i in range(10, 20)]
    page = [*good[:5], *hostile, *good[5:], good[0]]  # and one post twice
    caplog.set_level(logging.WARNING)
    with db.write() as s:
        result = store_posts(s, page)
    refused = {platform_id for _, platform_id, _ in result.refused}
    assert {"p1", "p2", "p3"} <= refused  # refused by both databases' drivers
    with db.read() as s:
        stored = set(s.scalars(select(Post.platform_id)))
    assert {p.platform_id for p in good} <= stored
    assert stored.isdisjoint(refused) and stored | refused == {p.platform_id for p in page}
    assert result.new == len(stored) and result.skipped == len(refused)
    assert set(result.ids) == {("x", i) for i in stored}
    for platform_id in refused:
        assert any(f"'{platform_id}'" in m and m.startswith("x post") for m in caplog.messages)
    assert all("Salainen" not in m and "INSERT" not in m and "COPY" not in m for m in caplog.messages)
    check_no_duplicates(db)
    with db.write() as s:  # again: the same posts refused, nothing changed
        again = store_posts(s, page)
    assert {i for _, i, _ in again.refused} == refused and again.new == 0


def test_store_posts_does_not_skip_posts_when_the_database_itself_fails(db: Database) -> None:
    """Only a refused value skips a post: any other error (here: a naive time, a bug) still
    fails the page, so collection records a gap instead of moving on without the posts."""
    bad = _post(2)
    bad.edited_at = dt.datetime(2023, 1, 1)  # naive, bypassing the constructor's check
    with pytest.raises(Exception, match="naive"):
        with db.write() as s:
            store_posts(s, [_post(1), bad])
    assert count(db, Post) == 0


def test_refused_posts_count_as_skipped_in_the_run(db: Database, fakes: Fakes) -> None:
    seeded = _seed_x(fakes)
    clock = Clock()
    adapters = adapters_for(fakes, clock)
    try:
        [result] = run_collection(db, [adapters["x"]], clock=clock)
    finally:
        close_adapters(list(adapters.values()))
    from storage.models import CollectionRun

    with db.read() as s:
        run = s.scalars(select(CollectionRun)).one()
    assert run.skipped == result.skipped == len(seeded.impossible)
    assert "skipped 1" in result.line()


# -- the property: arbitrary Unicode and sizes through ingest, into both databases ---------------


_ids = itertools.count()
_chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from(HOSTILE_CHARS))
_short = st.text(_chars, max_size=20)
_sized = st.one_of(_short, st.text(_chars, min_size=250, max_size=700))
_counts = st.one_of(st.none(), st.integers(0, 10**6), st.integers(-(10**30), 10**30))
_times = st.one_of(
    st.just(hours_ago(3)),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)))


@st.composite
def hostile_posts(draw: st.DrawFn) -> NormalisedPost:
    n = next(_ids)  # ids unique across examples: the database outlives them
    long_id = draw(st.booleans()) and draw(st.booleans())
    tail = draw(st.text(_chars, min_size=500, max_size=600) if long_id else _short)
    return NormalisedPost(
        platform=draw(st.sampled_from(["x", "mastodon", "bluesky", "instagram"])),
        platform_id=f"{n}-{tail}",
        author=Author(platform_id=f"a{n}-{draw(_short)}", handle=draw(_sized),
                      display_name=draw(st.one_of(st.none(), _sized)), url=draw(st.one_of(st.none(), _short)),
                      followers=draw(_counts)),
        text=draw(st.one_of(_sized, st.text(_chars, max_size=3000))),
        created_at=draw(_times), fetched_at=draw(_times),
        url=draw(st.one_of(st.none(), _short)), language=draw(st.one_of(st.none(), _short)),
        hashtags=tuple(draw(st.lists(_short, max_size=4))),
        kind=draw(st.sampled_from(list(PostKind))),
        referenced_id=draw(st.one_of(st.none(), _sized)),
        metrics=Metrics(likes=draw(_counts), reposts=draw(_counts), replies=draw(_counts), quotes=draw(_counts),
                        views=draw(_counts)),
        edited_at=draw(st.one_of(st.none(), _times)),
        source=draw(st.one_of(st.none(), _short)), source_id=draw(st.one_of(st.none(), _short)),
    )


TAGGER = Tagger([], "Europe/Helsinki", 1, 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(page=st.lists(hostile_posts(), min_size=1, max_size=3))
def test_any_post_is_stored_as_sanitised_or_skipped(db: Database, page: list[NormalisedPost]) -> None:
    with db.write() as s:
        result = ingest(s, page, TAGGER)  # never raises
    expected = {(p.platform, p.platform_id): safe_post(p) for p in page}
    refused = {(platform, platform_id) for platform, platform_id, _ in result.refused}
    assert refused == {key for key, safe in expected.items() if isinstance(safe, str)}
    for key, safe in expected.items():
        if isinstance(safe, str):  # its id may not even be a query parameter: look for its prefix
            prefix = key[1][: key[1].index("-") + 1]
            with db.read() as s:
                assert s.scalar(select(func.count()).select_from(Post).where(Post.platform_id.startswith(prefix))) == 0
            continue
        with db.read() as s:
            row = stored_post(s, *key)
        assert row == stored_as(safe)
        with db.read() as s:
            sources = s.scalar(select(func.count()).select_from(PostSource).join(Post).where(
                Post.platform == key[0], Post.platform_id == key[1]))
        assert sources == (1 if safe.source and safe.source_id else 0)


def test_safe_post_rules() -> None:
    """The rules, one by one (what the property test compares against)."""
    clean = _post(1)
    assert safe_post(clean) is clean
    cases = {
        "text": (_post(1, text="a\x00b\ud800c"), lambda p: p.text == "ab\ufffdc"),
        "handle": (_post(1, author=Author("a", "h" * 300)), lambda p: p.author.handle == "h" * 255 + "…"),
        "name": (_post(1, author=Author("a", "h", display_name="n" * 513)),
                 lambda p: p.author.display_name == "n" * 511 + "…"),
        "counts": (_post(1, author=Author("a", "h", followers=-1), metrics=Metrics(likes=10**30, views=2**63 - 1)),
                   lambda p: (p.author.followers, p.metrics.likes, p.metrics.views) == (None, None, 2**63 - 1)),
        "language": (_post(1, language="x" * 17), lambda p: p.language is None),
        "hashtags": (_post(1, hashtags=("a\x00", "\x00", "b\udc00")), lambda p: p.hashtags == ("a", "b\ufffd")),
        "edited": (_post(1, edited_at=dt.datetime(1, 1, 1, tzinfo=UTC)), lambda p: p.edited_at is None),
        "pair": (_post(1, text="\ud83d\ude00"), lambda p: p.text == "\U0001f600"),
    }
    for name, (post, check) in cases.items():
        safe = safe_post(post)
        assert not isinstance(safe, str) and check(safe), name
    for post in (_post(1, platform_id="9" * 513), _post(1, platform_id="a\x00"), _post(1, referenced_id="\ud800"),
                 _post(1, source_id="s" * 129), _post(1, author=Author("a" * 513, "h")),
                 _post(1, created_at=dt.datetime(9999, 12, 31, 12, tzinfo=UTC))):
        assert isinstance(safe_post(post), str)
    out = safe_posts([_post(1), _post(2, platform_id="x" * 600)])
    assert [p.platform_id for p in out.posts] == ["p1"]
    assert out.refused == [Refused("x", "x" * 600, "id has 600 characters, at most 512 fit")]


def test_json_with_a_lone_surrogate_is_repaired_for_the_bluesky_client() -> None:
    """What the Bluesky adapter's transport hands the atproto client (which parses with
    pydantic_core, refusing a lone-surrogate escape): valid JSON, values otherwise the same."""
    import json

    import pydantic_core

    from tracker.platforms.json_transport import repaired_json

    hostile = json.dumps({"posts": [{"text": "a\ud800b", "\udc00key": ["\ud83d\ude00", "c\\ud800"]}], "n": 1.5})
    with pytest.raises(ValueError):
        pydantic_core.from_json(hostile.encode())
    fixed = repaired_json(hostile.encode())
    assert fixed is not None
    assert pydantic_core.from_json(fixed) == {"posts": [{"text": "a\ufffdb", "\ufffdkey": ["\U0001f600", "c\\ud800"]}],
                                              "n": 1.5}
    assert repaired_json(json.dumps({"text": "Hyvä \x00"}).encode()) is None  # nothing to repair: untouched
    assert repaired_json(b'{"text": "\\ud800", broken') is None  # not JSON: the client reports it
