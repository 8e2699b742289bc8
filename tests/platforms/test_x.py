"""XAdapter driving the real tweepy over HTTP against the fake X server (no mocks of tweepy).

A fake clock is shared by the server (rate-limit resets, created_at, the 7-day window) and the
Policy (`now`, and a `sleep` that records waits and advances time instead of sleeping).
"""

from __future__ import annotations

import json
import logging
import math
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tracker.fake_platforms.x_server import LOOKUP_PATH, SEARCH_PATH, XServer
from tracker.platforms.base import AuthFailed, FetchFailed, KnownPost, Page, Policy, RateLimited
from tracker.platforms.x import XAdapter
from tracker.posts import PostKind

TOKEN = "s3cret-bearer-token-XYZ"
START = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    """Fake time: `sleep` records the wait and moves time on."""

    def __init__(self, start: datetime) -> None:
        self.t = start.timestamp()
        self.waits: list[float] = []

    def time(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=timezone.utc)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def server(clock: Clock) -> Iterator[XServer]:
    with XServer(TOKEN, clock=clock.time) as srv:
        yield srv


@pytest.fixture
def policy(clock: Clock) -> Policy:
    return Policy(max_retries=2, backoff_base=0.5, max_rate_limit_wait=120, sleep=clock.sleep, now=clock.now)


@pytest.fixture
def alice(server: XServer) -> str:
    return server.add_user("alice", name="Alice A", followers=120)


def adapter(server: XServer, policy: Policy, **kwargs) -> XAdapter:
    kwargs.setdefault("hashtags", ["#Tour"])
    kwargs.setdefault("timeout", 2)
    return XAdapter(base_url=server.base_url, bearer_token=kwargs.pop("token", TOKEN), policy=policy, **kwargs)


def add_posts(server: XServer, author: str, n: int, *, clock: Clock, text: str = "day {i} of the #Tour") -> list[str]:
    """n tweets, one a minute, ending a minute before the clock's now."""
    now = clock.now()
    return [
        server.add_tweet(author, text.format(i=i), created_at=now - timedelta(minutes=n - i))
        for i in range(n)
    ]


def run(x: XAdapter, cursor: str | None = None, since: datetime | None = None) -> list[Page]:
    return list(x.fetch("tour", cursor, since))


# --------------------------------------------------------------------------- paging and cursors


def test_paging_costs_one_request_per_page_and_cursor_rides_on_last_page(server, policy, alice, clock):
    ids = add_posts(server, alice, 25, clock=clock)
    pages = run(adapter(server, policy, page_size=10))

    assert server.request_count(SEARCH_PATH) == math.ceil(25 / 10) == len(pages)
    assert [len(p.posts) for p in pages] == [10, 10, 5]
    got = [post.platform_id for page in pages for post in page.posts]
    assert got == list(reversed(ids))  # newest first, nothing lost or repeated
    assert [p.cursor for p in pages] == [None, None, ids[-1]]
    assert all(p.requests == 1 and p.skipped == 0 for p in pages)
    assert pages[0].newest > pages[0].oldest > pages[1].newest
    tokens = [r.query.get("next_token") for r in server.requests]
    assert tokens[0] is None and all(tokens[1:])


def test_incremental_run_reads_only_new_tweets_and_keeps_since_id_while_paging(server, policy, alice, clock):
    old = add_posts(server, alice, 4, clock=clock)
    x = adapter(server, policy, page_size=10)
    cursor = run(x)[-1].cursor
    assert cursor == old[-1]
    clock.t += 3600
    new = add_posts(server, alice, 12, clock=clock)
    server.clear_log()

    pages = run(x, cursor)

    assert [p.platform_id for page in pages for p in page.posts] == list(reversed(new))
    assert server.request_count() == 2
    assert all(r.query["since_id"] == cursor for r in server.requests)
    assert pages[-1].cursor == new[-1]


def test_idle_poll_is_exactly_one_request_and_keeps_the_cursor(server, policy, alice, clock):
    ids = add_posts(server, alice, 3, clock=clock)
    server.clear_log()
    pages = run(adapter(server, policy), ids[-1])
    assert server.request_count() == 1
    assert len(pages) == 1 and pages[0].posts == [] and pages[0].cursor is None
    assert pages[0].oldest is None and pages[0].requests == 1


def test_since_is_clamped_to_the_recent_search_window(server, policy, alice, clock):
    add_posts(server, alice, 2, clock=clock)
    pages = run(adapter(server, policy), since=clock.now() - timedelta(days=30))
    assert len(pages[0].posts) == 2
    start = datetime.fromisoformat(server.requests[0].query["start_time"].replace("Z", "+00:00"))
    assert clock.now() - timedelta(days=7) < start < clock.now() - timedelta(days=6, hours=23)


def test_no_results_answer_is_only_meta(server, alice):
    status, body, headers = raw_get(server, SEARCH_PATH + "?query=%23nothing")
    assert (status, body) == (200, {"meta": {"result_count": 0}})
    assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= set(headers)


# --------------------------------------------------------------------------- normalisation


def test_retweets_excluded_by_default_and_included_on_request(server, policy, alice, clock):
    bob = server.add_user("bob", followers=5)
    original = server.add_tweet(alice, "Great day on the #Tour", created_at=clock.now() - timedelta(minutes=5))
    retweet = server.add_retweet(bob, original, created_at=clock.now() - timedelta(minutes=1))

    without = run(adapter(server, policy))
    assert [p.platform_id for p in without[0].posts] == [original]
    assert "-is:retweet" in server.requests[0].query["query"]

    with_rts = run(adapter(server, policy, include_retweets=True))
    posts = {p.platform_id: p for p in with_rts[0].posts}
    assert set(posts) == {original, retweet}
    rt = posts[retweet]
    assert rt.kind is PostKind.REPOST and rt.referenced_id == original
    assert rt.text.startswith("RT @alice: ") and rt.author.handle == "bob"


def test_kinds_authors_metrics_and_text(server, policy, alice, clock):
    bob = server.add_user("bob", name="Bob B", followers=5)
    t0 = clock.now() - timedelta(minutes=10)
    root = server.add_tweet(alice, "Stop 1 of the #TOUR & more <3 #Visits", created_at=t0, lang="en",
                            metrics={"like_count": 7, "retweet_count": 2, "reply_count": 1,
                                     "quote_count": 3, "impression_count": 900})
    reply = server.add_tweet(bob, "@alice see you at the #tour", reply_to=root, created_at=t0 + timedelta(minutes=1))
    quote = server.add_tweet(bob, "Look #tour", quote_of=root, created_at=t0 + timedelta(minutes=2), lang="und")

    posts = {p.platform_id: p for p in run(adapter(server, policy))[0].posts}

    r = posts[root]
    assert r.kind is PostKind.ORIGINAL and r.referenced_id is None
    assert r.text == "Stop 1 of the #TOUR & more <3 #Visits"  # &amp; / &lt; unescaped
    assert r.hashtags == ("tour", "visits")
    assert r.language == "en"
    assert r.created_at == t0.replace(microsecond=0) and r.created_at.tzinfo is timezone.utc
    assert r.fetched_at == clock.now()
    assert r.url == f"https://x.com/alice/status/{root}"
    assert (r.metrics.likes, r.metrics.reposts, r.metrics.replies, r.metrics.quotes, r.metrics.views) == (7, 2, 1, 3, 900)
    assert r.author.platform_id == alice and r.author.followers == 120 and r.author.display_name == "Alice A"
    assert (posts[reply].kind, posts[reply].referenced_id) == (PostKind.REPLY, root)
    assert (posts[quote].kind, posts[quote].referenced_id) == (PostKind.QUOTE, root)
    assert posts[quote].language is None
    assert posts[quote].author.followers == 5 and posts[quote].author.platform_id == bob


def test_malformed_items_are_skipped_and_logged_without_text(server, policy, alice, clock, caplog):
    add_posts(server, alice, 5, clock=clock, text="private words {i} #tour")
    server.corrupt_next_page("missing_id", index=1)
    caplog.set_level(logging.WARNING, logger="tracker.platforms.x")
    pages = run(adapter(server, policy))
    assert len(pages[0].posts) == 4 and pages[0].skipped == 1
    assert "missing id" in caplog.text and "private words" not in caplog.text

    for kind in ("wrong_types", "missing_author", "missing_created_at", "not_object"):
        server.corrupt_next_page(kind)
        page = run(adapter(server, policy))[0]
        assert (len(page.posts), page.skipped) == (4, 1), kind
    assert "private words" not in caplog.text


# --------------------------------------------------------------------------- rate limits


def test_429_waits_until_reset_then_succeeds(server, policy, alice, clock):
    add_posts(server, alice, 3, clock=clock)
    server.rate_limit_next(reset_in=30)
    pages = run(adapter(server, policy))
    assert len(pages[0].posts) == 3 and pages[0].requests == 2
    assert clock.waits == [pytest.approx(31, abs=1)]


def test_429_without_reset_header_waits_the_default(server, policy, alice, clock):
    add_posts(server, alice, 1, clock=clock)
    server.rate_limit_next(reset_in=None)
    run(adapter(server, policy))
    assert clock.waits == [pytest.approx(policy.default_rate_limit_wait + 1)]


def test_429_with_reset_far_away_raises_rate_limited(server, policy, alice, clock):
    add_posts(server, alice, 1, clock=clock)
    server.rate_limit_next(reset_in=3600)
    with pytest.raises(RateLimited) as info:
        run(adapter(server, policy))
    assert info.value.resume_at == datetime.fromtimestamp(int(clock.time() + 3600), tz=timezone.utc)
    assert clock.waits == [] and server.request_count() == 1


def test_exhausted_budget_waits_before_next_page_without_spending_a_request(server, policy, alice, clock):
    server.window = 60
    add_posts(server, alice, 20, clock=clock)
    server.set_remaining(1)  # the first page spends the last request of the window
    reset = server._budget(SEARCH_PATH)[0]
    x = adapter(server, policy, page_size=10)
    pages = run(x)
    assert len(pages) == 2 and server.request_count() == 2  # no 429 was provoked
    assert clock.waits == [pytest.approx(reset - START.timestamp() + 1)]


def test_exhausted_budget_far_from_reset_raises_without_a_request(server, policy, alice, clock):
    server.window = 3600
    add_posts(server, alice, 20, clock=clock)
    server.set_remaining(1)
    it = adapter(server, policy, page_size=10).fetch("tour", None, None)
    first = next(it)
    assert first.cursor is None
    with pytest.raises(RateLimited):
        next(it)
    assert server.request_count() == 1 and clock.waits == []


def test_server_answers_429_when_budget_is_spent(server):
    server.set_remaining(0)
    status, body, headers = raw_get(server, SEARCH_PATH + "?query=%23tour")
    assert status == 429 and body["title"] == "Too Many Requests"
    assert headers["x-rate-limit-remaining"] == "0"


# --------------------------------------------------------------------------- failures


def test_5xx_storm_gives_up_after_max_retries_plus_one(server, policy, alice, clock):
    server.fail_next(503, count=10)
    with pytest.raises(FetchFailed) as info:
        run(adapter(server, policy))
    assert server.request_count() == policy.max_retries + 1
    assert "503" in str(info.value)


def test_one_503_then_success(server, policy, alice, clock):
    add_posts(server, alice, 2, clock=clock)
    server.fail_next(503)
    pages = run(adapter(server, policy))
    assert len(pages[0].posts) == 2 and pages[0].requests == 2 and len(clock.waits) == 1


def test_invalid_json_is_retried_then_fails(server, policy, alice, clock):
    add_posts(server, alice, 2, clock=clock)
    server.invalid_json_next(1)
    assert run(adapter(server, policy))[0].requests == 2

    server.clear_log()
    server.invalid_json_next(10, truncated=False)
    with pytest.raises(FetchFailed, match="invalid JSON"):
        run(adapter(server, policy))
    assert server.request_count() == policy.max_retries + 1


def test_timeout_and_dropped_connection_are_retried(server, policy, alice, clock):
    add_posts(server, alice, 2, clock=clock)
    server.delay_next(1.0)
    server.drop_next()
    pages = run(adapter(server, policy, timeout=0.2))
    assert len(pages[0].posts) == 2 and pages[0].requests == 3


def test_proxy_settings_for_api_twitter_com_do_not_hijack_the_rewritten_url(server, policy, alice, clock, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    add_posts(server, alice, 1, clock=clock)
    assert len(run(adapter(server, policy))[0].posts) == 1


def test_other_4xx_is_final_with_a_short_message(server, policy, alice):
    server.fail_next(404)
    with pytest.raises(FetchFailed, match="HTTP 404") as info:
        run(adapter(server, policy))
    assert server.request_count() == 1 and len(str(info.value)) < 200


def test_bad_token_is_auth_failed_and_never_shows_the_token(server, policy, alice, clock, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-123456"
    x = adapter(server, policy, token=wrong)
    with pytest.raises(AuthFailed) as info:
        run(x)
    with pytest.raises(AuthFailed):
        list(x.refresh([KnownPost("1")]))
    assert server.request_count() == 2  # final: not retried
    assert "Bearer [redacted]" in caplog.text  # tweepy's DEBUG header log was captured, redacted
    shown = str(info.value) + "".join(traceback.format_exception(info.value)) + caplog.text
    assert wrong not in shown and TOKEN not in shown


# --------------------------------------------------------------------------- refresh


def test_refresh_updates_metrics_followers_and_reports_deleted(server, policy, alice, clock):
    ids = add_posts(server, alice, 150, clock=clock)
    server.set_metrics(ids[0], like_count=42, impression_count=5000)
    server.set_followers(alice, 999)
    server.delete_tweet(ids[1])
    server.delete_tweet(ids[120])

    results = list(adapter(server, policy).refresh([KnownPost(i) for i in ids] + [KnownPost("99")]))

    assert len(results) == 2 and server.request_count(LOOKUP_PATH) == 2
    assert [len(r.posts) for r in results] == [99, 49]
    assert results[0].deleted == [ids[1]] and sorted(results[1].deleted) == sorted([ids[120], "99"])
    first = next(p for p in results[0].posts if p.platform_id == ids[0])
    assert (first.metrics.likes, first.metrics.views) == (42, 5000)
    assert first.author.followers == 999
    assert all(r.skipped == 0 and r.requests == 1 for r in results)


def test_refresh_returns_edited_text_under_the_original_id(server, policy, alice, clock):
    original = server.add_tweet(alice, "Frist stop #tour", created_at=clock.now() - timedelta(hours=1))
    untouched = server.add_tweet(alice, "Second #tour", created_at=clock.now() - timedelta(minutes=50))
    edited_at = clock.now() - timedelta(minutes=30)
    server.edit_tweet(original, "First stop #tour", at=edited_at)

    [result] = adapter(server, policy).refresh([KnownPost(original), KnownPost(untouched)])

    posts = {p.platform_id: p for p in result.posts}
    assert set(posts) == {original, untouched}
    assert posts[original].text == "First stop #tour"
    assert posts[original].edited_at == edited_at.replace(microsecond=0)
    assert posts[original].created_at == clock.now() - timedelta(hours=1)
    assert posts[untouched].edited_at is None
    assert result.requests == 2  # one extra lookup for the latest versions


def test_search_finds_latest_version_of_an_edit_under_the_original_id(server, policy, alice, clock):
    original = server.add_tweet(alice, "typo #tour", created_at=clock.now() - timedelta(minutes=9))
    server.edit_tweet(original, "fixed #tour", at=clock.now() - timedelta(minutes=2))
    [post] = run(adapter(server, policy))[0].posts
    assert (post.platform_id, post.text) == (original, "fixed #tour")
    assert post.edited_at is not None and post.created_at < post.edited_at


# --------------------------------------------------------------------------- the fake itself


def raw_get(server: XServer, path: str, token: str | None = TOKEN) -> tuple[int, dict, dict[str, str]]:
    request = urllib.request.Request(server.base_url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), {k.lower(): v for k, v in err.headers.items()}


def test_fake_rejects_bad_requests_with_problem_json(server, alice, clock):
    add_posts(server, alice, 1, clock=clock)
    assert raw_get(server, SEARCH_PATH + "?query=%23tour", token=None)[0] == 401
    status, body, _ = raw_get(server, SEARCH_PATH + "?query=%23tour&max_results=5")
    assert status == 400 and body["title"] == "Invalid Request"
    assert raw_get(server, SEARCH_PATH + "?query=%23tour&max_results=101")[0] == 400
    assert raw_get(server, SEARCH_PATH + "?query=%23tour&next_token=zzz")[0] == 400
    assert raw_get(server, LOOKUP_PATH + "?ids=")[0] == 400


def test_fake_returns_fields_only_when_asked(server, alice, clock):
    tid = add_posts(server, alice, 1, clock=clock)[0]
    _, bare, _ = raw_get(server, SEARCH_PATH + "?query=%23TOUR")
    assert set(bare["data"][0]) == {"id", "text", "edit_history_tweet_ids"} and "includes" not in bare
    _, full, _ = raw_get(server, SEARCH_PATH + "?query=(%23nope%20OR%20%23tour)%20-is:retweet"
                         "&tweet.fields=created_at,public_metrics&expansions=author_id&user.fields=public_metrics")
    item = full["data"][0]
    assert item["created_at"].endswith(".000Z") and set(item["public_metrics"]) == {
        "retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count"}
    assert full["includes"]["users"][0]["public_metrics"]["followers_count"] == 120
    assert full["meta"] == {"newest_id": tid, "oldest_id": tid, "result_count": 1}
    _, looked, _ = raw_get(server, LOOKUP_PATH + f"?ids={tid},42")
    assert [t["id"] for t in looked["data"]] == [tid]
    assert looked["errors"][0]["resource_id"] == "42" and looked["errors"][0]["title"] == "Not Found Error"
