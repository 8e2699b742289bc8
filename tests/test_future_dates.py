"""A post dated in the future must never hide the posts that arrive after it.

X ids and Mastodon ids are snowflakes of the creation time (on Mastodon a federated post gets a
local id from the created_at its author's server claims), and Bluesky's cursor is a time. A post
dated two days ahead used to become the cursor, and every later post (with a smaller id or an
earlier time) fell below it: on Mastodon and X the next runs stored nothing new.

Each test drives the real client library against the local fake server through the real
collection loop (`collect_platform`: fetch -> store -> cursor in one transaction) on SQLite and
PostgreSQL, with one fake clock shared by the server, the adapter's policy and the loop:
- every later post is collected, none twice, and the future-dated post itself is stored;
- no cursor is ever ahead of the clock plus the skew allowance;
- a cursor that an earlier version (or a clock that ran fast) left in the future is repaired:
  the stream re-reads the recovery window and then polls normally (one request when idle).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import CollectionCursor, Post
from storage.runs import save_cursor
from tracker.collect import collect_platform
from tracker.fake_platforms.bluesky_server import SEARCH, BlueskyServer
from tracker.fake_platforms.mastodon_server import MastodonServer
from tracker.fake_platforms.x_server import SEARCH_PATH, XServer
from tracker.platforms.base import Adapter, Policy
from tracker.platforms.bluesky import BlueskyAdapter
from tracker.platforms.mastodon import MastodonAdapter
from tracker.platforms.x import XAdapter

UTC = timezone.utc
SKEW = timedelta(minutes=5)
"""The skew allowance the adapters grant by default (Policy.clock_skew)."""
AHEAD = timedelta(days=2)
X_TOKEN = "future-x-token-123456"
BSKY_HANDLE = "tracker.test"
BSKY_PASSWORD = "abcd-efgh-ijkl-mnop"
X_EPOCH_MS = 1288834974657


class Clock:
    """Fake time shared by a fake server, the adapter's Policy and the collection loop."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC).replace(microsecond=0).timestamp()

    def time(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=UTC)

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def advance(self, delta: timedelta) -> None:
        self.t += delta.total_seconds()


@dataclass
class Harness:
    """One platform behind the same small interface, so the scenarios are written once."""

    platform: str
    stream: str
    adapter: Adapter
    post: Callable[[datetime, str], str]
    """Publish a post created at the given time; returns the platform_id it is stored under."""
    cursor_time: Callable[[str], datetime]
    """The moment a stored cursor stands for."""
    cursor_at: Callable[[datetime], str]
    """A cursor standing at the given moment (what a fast clock would have stored)."""
    requests: Callable[[], int]
    """Timeline/search requests the server has answered so far."""


@contextlib.contextmanager
def x_harness(clock: Clock) -> Iterator[Harness]:
    with XServer(X_TOKEN, clock=clock.time) as srv:
        user = srv.add_user("alice", followers=10)
        adapter = XAdapter(base_url=srv.base_url, bearer_token=X_TOKEN, hashtags=["tour"], page_size=10,
                           policy=Policy(sleep=clock.sleep, now=clock.now))

        def post(when: datetime, text: str) -> str:
            return srv.add_tweet(user, f"{text} #tour", created_at=when)

        yield Harness(
            "x", "tour", adapter, post,
            cursor_time=lambda c: datetime.fromtimestamp(((int(c) >> 22) + X_EPOCH_MS) / 1000, UTC),
            cursor_at=lambda t: str((int(t.timestamp() * 1000) - X_EPOCH_MS) << 22),
            requests=lambda: srv.request_count(SEARCH_PATH),
        )


@contextlib.contextmanager
def mastodon_harness(clock: Clock) -> Iterator[Harness]:
    """The future-dated posts come from another instance, as on the fediverse: the local id is
    minted from the created_at the remote server claims."""
    with MastodonServer(domain="a.example") as home, MastodonServer(domain="far.example") as far:
        local = home.add_account("alice", followers=10)
        remote = far.add_account("bob", followers=3)
        adapter = MastodonAdapter(instances=[home.base_url], hashtags=["tour"], page_size=10,
                                  policy=Policy(sleep=clock.sleep, now=clock.now))

        def post(when: datetime, text: str) -> str:
            if when > clock.now() + SKEW:
                local_id = far.federate(far.post(remote, f"{text} #tour", created_at=when), home)
            else:
                local_id = home.post(local, f"{text} #tour", created_at=when)
            return home.uri_of(local_id)

        yield Harness(
            "mastodon", f"{home.base_url}#tour", adapter, post,
            cursor_time=lambda c: datetime.fromtimestamp((int(c) >> 16) / 1000, UTC),
            cursor_at=lambda t: str(int(t.timestamp() * 1000) << 16),
            requests=lambda: len(home.requests("/api/v1/timelines/tag/")),
        )


@contextlib.contextmanager
def bluesky_harness(clock: Clock) -> Iterator[Harness]:
    with BlueskyServer() as srv:
        srv.add_account(BSKY_HANDLE, BSKY_PASSWORD)
        srv.add_account("alice.test", "pw", followers=10)
        adapter = BlueskyAdapter(base_url=srv.base_url, handle=BSKY_HANDLE, app_password=BSKY_PASSWORD,
                                 hashtags=["tour"], page_size=10, timeout=5,
                                 policy=Policy(sleep=clock.sleep, now=clock.now))

        def post(when: datetime, text: str) -> str:
            return srv.add_post("alice.test", f"{text} #tour", created_at=when)  # indexed at the same time

        try:
            yield Harness(
                "bluesky", "tour", adapter, post,
                cursor_time=lambda c: datetime.fromisoformat(c.replace("Z", "+00:00")),
                cursor_at=lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                requests=lambda: srv.count(SEARCH),
            )
        finally:
            adapter.close()


HARNESSES = {"x": x_harness, "mastodon": mastodon_harness, "bluesky": bluesky_harness}


def stored_ids(db: Database, platform: str) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(Post.platform_id).where(Post.platform == platform)))


def stored_cursor(db: Database, h: Harness) -> str | None:
    with db.read() as s:
        row = s.get(CollectionCursor, (h.platform, h.stream))
        return row.cursor if row else None


def assert_cursor_not_ahead(db: Database, h: Harness, clock: Clock) -> None:
    cursor = stored_cursor(db, h)
    assert cursor is not None
    assert h.cursor_time(cursor) <= clock.now() + SKEW, (cursor, h.cursor_time(cursor), clock.now())


def collect(db: Database, h: Harness, clock: Clock):  # type: ignore[no-untyped-def]
    result = collect_platform(db, h.adapter, clock=clock.now)
    assert result.status == "ok", result.line()
    return result


# --------------------------------------------------------------------------- scenarios


@pytest.mark.parametrize("platform", list(HARNESSES))
@pytest.mark.parametrize("first_seen", ["first run", "incremental run"])
def test_future_dated_post_does_not_hide_later_posts(db: Database, platform: str, first_seen: str) -> None:
    """A post dated two days ahead is stored; the 40 posts that arrive after it are all collected."""
    clock = Clock()
    with HARNESSES[platform](clock) as h:
        t0 = clock.now()
        expected = [h.post(t0 - timedelta(hours=5 - i), f"earlier {i}") for i in range(5)]
        if first_seen == "incremental run":  # the future post arrives once the stream has a cursor
            assert collect(db, h, clock).new == 5
            clock.advance(timedelta(minutes=10))
        expected.append(h.post(clock.now() + AHEAD, "dated two days ahead"))
        expected.append(h.post(clock.now() - timedelta(minutes=1), "just before the run"))
        run = collect(db, h, clock)
        assert run.new == (7 if first_seen == "first run" else 2)
        assert_cursor_not_ahead(db, h, clock)

        later: list[str] = []
        for i in range(40):  # created between now and the future post's date
            clock.advance(timedelta(minutes=3))
            later.append(h.post(clock.now() - timedelta(seconds=30), f"later {i}"))
        after = collect(db, h, clock)
        assert after.new == 40, after.line()
        assert_cursor_not_ahead(db, h, clock)

        clock.advance(timedelta(minutes=10))  # idle: nothing new, nothing counted twice
        assert collect(db, h, clock).new == 0

        ids = stored_ids(db, platform)
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(expected + later)


@pytest.mark.parametrize("platform", list(HARNESSES))
def test_cursor_left_in_the_future_is_repaired(db: Database, platform: str) -> None:
    """A cursor stored two days ahead (an earlier version, or a clock that ran fast and was set
    right) is not trusted: the stream re-reads the recovery window, stores the posts it had
    been hiding, puts the cursor back at the clock, and then polls as usual."""
    clock = Clock()
    with HARNESSES[platform](clock) as h:
        hidden = [h.post(clock.now() - timedelta(hours=30 - i), f"hidden {i}") for i in range(25)]
        with db.write() as s:
            save_cursor(s, h.platform, h.stream, cursor=h.cursor_at(clock.now() + AHEAD),
                        now=clock.now() - timedelta(days=1))
        repaired = collect(db, h, clock)
        assert repaired.new == 25, repaired.line()
        assert sorted(stored_ids(db, platform)) == sorted(hidden)
        assert_cursor_not_ahead(db, h, clock)

        clock.advance(timedelta(minutes=15))
        newer = h.post(clock.now() - timedelta(minutes=1), "after the repair")
        assert collect(db, h, clock).new == 1
        clock.advance(timedelta(minutes=15))
        before = h.requests()
        idle = collect(db, h, clock)
        assert idle.new == 0
        assert h.requests() - before == 1  # the repair is done once, not on every run
        assert sorted(stored_ids(db, platform)) == sorted([*hidden, newer])
