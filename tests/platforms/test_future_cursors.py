"""How the X and Mastodon adapters choose a cursor when some posts are dated ahead of the clock.

Real tweepy / Mastodon.py over HTTP against the fake servers, no database (the collection-loop
scenarios on SQLite and PostgreSQL are in tests/test_future_dates.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tracker.fake_platforms.mastodon_server import MastodonServer
from tracker.fake_platforms.x_server import XServer
from tracker.platforms.base import Page, Policy
from tracker.platforms.mastodon import MastodonAdapter, snowflake_for
from tracker.platforms.x import XAdapter

UTC = timezone.utc
NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = "future-cursor-token-42"
SKEW = timedelta(minutes=5)
"""The default skew allowance (Policy.clock_skew)."""


def frozen_policy(now: datetime = NOW) -> Policy:
    return Policy(sleep=lambda _s: None, now=lambda: now)


def read_all(pages: Iterator[Page]) -> list[Page]:
    return list(pages)


@pytest.fixture
def x_server() -> Iterator[XServer]:
    with XServer(TOKEN, clock=NOW.timestamp) as srv:
        yield srv


def test_x_cursor_is_the_newest_tweet_not_dated_past_the_skew(x_server: XServer) -> None:
    """The first page holds only tweets dated days ahead; the cursor comes from the later page:
    the newest tweet within the skew allowance (2 minutes ahead counts as now), never an id
    minted after the clock plus the allowance."""
    user = x_server.add_user("alice")
    ahead = [x_server.add_tweet(user, f"ahead {i} #tour", created_at=NOW + timedelta(days=1, hours=i))
             for i in range(12)]
    normal = [x_server.add_tweet(user, f"normal {i} #tour", created_at=NOW - timedelta(hours=5 - i))
              for i in range(5)]
    within_skew = x_server.add_tweet(user, "clock of X a little ahead #tour", created_at=NOW + timedelta(minutes=2))
    adapter = XAdapter(base_url=x_server.base_url, bearer_token=TOKEN, hashtags=["tour"], page_size=10,
                       policy=frozen_policy())
    pages = read_all(adapter.fetch("tour", None, None))
    assert len(pages) == 2
    assert sorted(p.platform_id for page in pages for p in page.posts) == sorted([*ahead, *normal, within_skew])
    assert pages[0].cursor is None
    assert pages[-1].cursor == within_skew
    # the future tweets are read again (not lost, not new) until their date has passed
    again = read_all(adapter.fetch("tour", pages[-1].cursor, None))
    assert sorted(p.platform_id for page in again for p in page.posts) == sorted(ahead)
    assert again[-1].cursor is None  # the stored since_id stays; never moved back to the clock's floor


def test_x_only_future_tweets_put_the_cursor_at_the_clock(x_server: XServer) -> None:
    """With nothing but a future-dated tweet to read, the cursor stands just behind the clock, so a
    tweet posted a minute later is still above it."""
    user = x_server.add_user("alice")
    x_server.add_tweet(user, "ahead #tour", created_at=NOW + timedelta(days=2))
    adapter = XAdapter(base_url=x_server.base_url, bearer_token=TOKEN, hashtags=["tour"], policy=frozen_policy())
    [page] = read_all(adapter.fetch("tour", None, None))
    assert page.cursor is not None
    later = x_server.add_tweet(user, "a minute later #tour", created_at=NOW + timedelta(minutes=1))
    assert int(page.cursor) < int(later)


@pytest.fixture
def home() -> Iterator[MastodonServer]:
    with MastodonServer(domain="a.example") as srv:
        yield srv


def test_mastodon_absurd_status_id_never_becomes_the_cursor(home: MastodonServer) -> None:
    """A status whose id is a 30-digit number (a broken or hostile server) is read, but the cursor
    stays a usable snowflake, and the next poll works (the id used to become the cursor and
    every later poll failed converting it to a date)."""
    alice = home.add_account("alice")
    ids = [home.post(alice, f"stop {i} #tour", created_at=NOW - timedelta(minutes=30 - i)) for i in range(3)]
    absurd = {**home.status_json(ids[0]), "id": "9" * 30, "uri": "https://odd.example/users/x/statuses/1"}
    home.malformed_next_page(absurd)
    adapter = MastodonAdapter(instances=[home.base_url], hashtags=["tour"], policy=frozen_policy())
    stream = f"{home.base_url}#tour"
    first = read_all(adapter.fetch(stream, None, None))
    assert "9" * 30 in [p.source_id for page in first for p in page.posts]
    cursor = first[-1].cursor
    assert cursor == str(snowflake_for(NOW - SKEW))  # what the absurd id counts as: the clock's floor
    assert int(cursor) > max(int(i) for i in ids)
    later = home.post(alice, "later #tour", created_at=NOW + timedelta(seconds=1))
    second = read_all(MastodonAdapter(instances=[home.base_url], hashtags=["tour"],
                                      policy=frozen_policy(NOW + timedelta(minutes=1))).fetch(stream, cursor, None))
    assert later in [p.source_id for page in second for p in page.posts]


def test_mastodon_forward_page_of_only_future_posts_stops_the_cursor_at_the_clock(home: MastodonServer) -> None:
    """Polling forward, a post dated ahead moves the cursor no further than the clock minus the
    skew allowance (the post is stored now and read again until its date has passed)."""
    alice = home.add_account("alice")
    first_id = home.post(alice, "stop #tour", created_at=NOW - timedelta(minutes=40))
    adapter = MastodonAdapter(instances=[home.base_url], hashtags=["tour"], policy=frozen_policy())
    stream = f"{home.base_url}#tour"
    ahead = home.post(alice, "ahead #tour", created_at=NOW + timedelta(days=2))
    pages = read_all(adapter.fetch(stream, first_id, None))
    assert ahead in [p.source_id for page in pages for p in page.posts]
    assert pages[-1].cursor == str(snowflake_for(NOW - SKEW))
    later = home.post(alice, "a minute later #tour", created_at=NOW + timedelta(minutes=1))
    again = read_all(adapter.fetch(stream, pages[-1].cursor, None))
    assert later in [p.source_id for page in again for p in page.posts]


def test_x_edit_chain_with_an_absurd_original_id_does_not_fail_the_page(x_server: XServer) -> None:
    """An edit history whose first id is 30 digits encodes a time past Python's dates; the tweet is
    still read (its own creation time kept) and the rest of the page with it."""
    user = x_server.add_user("alice")
    good = [x_server.add_tweet(user, f"good {i} #tour", created_at=NOW - timedelta(hours=i + 1)) for i in range(3)]
    hostile = x_server.add_tweet(user, "edited, they say #tour", created_at=NOW - timedelta(minutes=30))
    absurd = "9" * 30
    x_server.tweets[hostile].edit_history = [absurd, hostile]
    adapter = XAdapter(base_url=x_server.base_url, bearer_token=TOKEN, hashtags=["tour"], policy=frozen_policy())
    posts = [p for page in read_all(adapter.fetch("tour", None, None)) for p in page.posts]
    assert sorted(p.platform_id for p in posts) == sorted([*good, absurd])
    [edited] = [p for p in posts if p.platform_id == absurd]
    assert edited.created_at == NOW - timedelta(minutes=30)
