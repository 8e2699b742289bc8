"""BlueskyAdapter against the fake XRPC server, through the real atproto client over HTTP (no mocks)."""

from __future__ import annotations

import json
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tracker.fake_platforms.bluesky_server import GET_POSTS, REFRESH_SESSION, SEARCH, BlueskyServer, make_jwt
from tracker.platforms.base import AuthFailed, FetchFailed, KnownPost, Page, Policy, RateLimited
from tracker.platforms.bluesky import BlueskyAdapter
from tracker.posts import PostKind

HANDLE = "tracker.test"
PASSWORD = "abcd-efgh-ijkl-mnop"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
GET_PROFILES = "app.bsky.actor.getProfiles"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[BlueskyServer]:
    with BlueskyServer() as srv:
        srv.add_account(HANDLE, PASSWORD, display_name="Tracker")
        srv.add_account("alice.test", "x", display_name="Alice", followers=120)
        srv.add_account("bob.test", "y", followers=7)
        yield srv


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_adapter(server: BlueskyServer, waits: list[float]) -> Callable[..., BlueskyAdapter]:
    def make(**overrides: object) -> BlueskyAdapter:
        settings: dict = dict(
            base_url=server.base_url,
            handle=HANDLE,
            app_password=PASSWORD,
            hashtags=["heat"],
            policy=Policy(max_retries=3, sleep=waits.append),
            timeout=5,
        )
        settings.update(overrides)
        return BlueskyAdapter(**settings)

    return make


def run(
    adapter: BlueskyAdapter, stream: str = "heat", cursor: str | None = None, since: datetime | None = None
) -> list[Page]:
    return list(adapter.fetch(stream, cursor, since))


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def texts(pages: list[Page]) -> list[str]:
    return [p.text for page in pages for p in page.posts]


# -- sessions ----------------------------------------------------------------------------------


def test_logs_in_once_and_an_idle_poll_costs_one_request(server, make_adapter):
    server.add_post("alice.test", "first #heat", created_at=ago(10))
    adapter = make_adapter()
    first = run(adapter)
    assert texts(first) == ["first #heat"]
    assert server.create_session_calls == 1

    before = server.count()
    idle = run(adapter, cursor=first[-1].cursor)
    assert server.count() - before == 1  # no login, no profiles: one search
    assert [p.requests for p in idle] == [1]
    assert server.create_session_calls == 1


def test_saved_session_is_reused_without_create_session(server, make_adapter):
    first = make_adapter()
    run(first)
    saved = first.export_session()
    assert saved and PASSWORD not in saved

    second = make_adapter(session_string=saved)
    run(second)
    assert server.create_session_calls == 1
    assert second.export_session() == saved


def test_unknown_saved_session_falls_back_to_the_password(server, make_adapter):
    """A session the server no longer knows (restart, revocation): refresh fails, then createSession."""
    did = server.account(HANDLE).did
    fake = [make_jwt({"sub": did, "exp": int(NOW.timestamp()) + 7200}) for _ in range(2)]
    session = ":::".join([HANDLE, did, *fake, f"{server.base_url}/xrpc"])
    server.add_post("alice.test", "still found #heat", created_at=ago(5))
    adapter = make_adapter(session_string=session)
    assert texts(run(adapter)) == ["still found #heat"]
    assert server.count(REFRESH_SESSION) == 1
    assert server.create_session_calls == 1


def test_unreadable_saved_session_falls_back_to_the_password(server, make_adapter):
    run(make_adapter(session_string="not a session"))
    assert server.create_session_calls == 1


def test_session_of_another_account_is_ignored(server, make_adapter):
    alice = make_adapter(handle="alice.test", app_password="x")
    run(alice)
    adapter = make_adapter(session_string=alice.export_session())
    run(adapter)
    assert server.create_session_calls == 2
    assert adapter.export_session().startswith(HANDLE)


def test_rejected_token_is_refreshed_not_relogged(server, make_adapter):
    server.add_post("alice.test", "a #heat", created_at=ago(5))
    adapter = make_adapter()
    run(adapter)
    server.expire_access_tokens()  # the server says ExpiredToken though the JWT looks valid
    assert texts(run(adapter)) == ["a #heat"]
    assert server.count(REFRESH_SESSION) == 1
    assert server.create_session_calls == 1


def test_token_near_expiry_is_refreshed_by_the_client(server, make_adapter):
    server.issue_expired_access_tokens(1)
    server.add_post("alice.test", "a #heat", created_at=ago(5))
    assert texts(run(make_adapter())) == ["a #heat"]
    assert server.count(REFRESH_SESSION) == 1
    assert server.create_session_calls == 1


def test_revoked_refresh_token_falls_back_to_password_login(server, make_adapter):
    adapter = make_adapter()
    run(adapter)
    server.expire_access_tokens()
    server.fail_next(400, nsid=REFRESH_SESSION, error="ExpiredToken", message="Token has expired")
    run(adapter)
    assert server.create_session_calls == 2


def test_wrong_password_is_auth_failed_without_secrets(server, make_adapter):
    adapter = make_adapter(app_password="wrong-pass-1234")
    with pytest.raises(AuthFailed) as caught:
        run(adapter)
    everything = "".join(traceback.format_exception(caught.value))
    assert "wrong-pass-1234" not in everything
    assert "wrong-pass-1234" not in repr(adapter)
    assert "401" in str(caught.value)
    assert server.create_session_calls == 1  # no retries on bad credentials


# -- searching ---------------------------------------------------------------------------------


def test_pages_follow_the_cursor_and_only_the_last_carries_ours(server, make_adapter):
    for minute in range(7):
        server.add_post("alice.test", f"post {minute} #heat", created_at=ago(60 - minute))
    pages = run(make_adapter(page_size=3))
    assert [len(p.posts) for p in pages] == [3, 3, 1]
    assert [p.cursor is None for p in pages] == [True, True, False]
    assert texts(pages) == [f"post {m} #heat" for m in range(6, -1, -1)]  # newest first
    assert pages[-1].cursor == (ago(54)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert pages[0].newest == ago(54) and pages[0].oldest == ago(56)
    assert [p.requests for p in pages] == [3, 1, 1]  # login + search + profiles, then searches


def test_incremental_run_returns_only_new_posts_beyond_the_overlap(server, make_adapter):
    for minute in (300, 200, 100):
        server.add_post("alice.test", f"old {minute} #heat", created_at=ago(minute))
    adapter = make_adapter()
    cursor = run(adapter)[-1].cursor
    server.add_post("bob.test", "new #heat", created_at=ago(1))
    server.add_post("bob.test", "late #heat", created_at=ago(95))  # federated late, below our cursor
    pages = run(adapter, cursor=cursor)
    # The overlap catches the late post and repeats "old 100" (the store de-duplicates); older ones stay out.
    assert texts(pages) == ["new #heat", "late #heat", "old 100 #heat"]
    search = [r for r in server.requests if r.nsid == SEARCH][-1]
    assert search.params["since"] == [(ago(100) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")]
    assert pages[-1].cursor == ago(1).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_first_run_uses_since(server, make_adapter):
    server.add_post("alice.test", "too old #heat", created_at=ago(600))
    server.add_post("alice.test", "recent #heat", created_at=ago(60))
    assert texts(run(make_adapter(), since=ago(120))) == ["recent #heat"]


def test_future_dated_post_cannot_push_the_cursor_ahead(server, make_adapter):
    server.add_post("alice.test", "from the future #heat", created_at=NOW + timedelta(days=2), indexed_at=ago(1))
    cursor = run(make_adapter())[-1].cursor
    assert cursor == ago(1).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_stream_matches_tag_case_insensitively_and_only_that_tag(server, make_adapter):
    server.add_post("alice.test", "Loud #HEAT", created_at=ago(3))
    server.add_post("alice.test", "only #cold", created_at=ago(2))
    server.add_post("alice.test", "word heat without tag", created_at=ago(1))
    adapter = make_adapter(hashtags=["#Heat", "cold"])
    assert adapter.streams() == ["heat", "cold"]
    assert texts(run(adapter, "heat")) == ["Loud #HEAT"]
    assert texts(run(adapter, "#Cold")) == ["only #cold"]


def test_server_tag_filter_is_and(server, make_adapter):
    server.add_post("alice.test", "#heat only", created_at=ago(3))
    server.add_post("alice.test", "#heat and #wave", created_at=ago(2))
    adapter = make_adapter()
    run(adapter)
    token = adapter.export_session().split(":::")[2]
    url = f"{server.base_url}/xrpc/{SEARCH}?q=*&tag=HEAT&tag=wave"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("application/json")
        assert int(answer.headers["ratelimit-remaining"]) < int(answer.headers["ratelimit-limit"])
        body = json.loads(answer.read())
    assert [p["record"]["text"] for p in body["posts"]] == ["#heat and #wave"]
    assert body["hitsTotal"] == 1 and "cursor" not in body


def test_search_without_a_token_is_refused(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.base_url}/xrpc/{SEARCH}?q=x", timeout=5)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error"] == "AuthenticationRequired"


def test_normalises_replies_quotes_and_fields(server, make_adapter):
    root = server.add_post("alice.test", "Root #heat #Wave", created_at=ago(10), langs=["fr", "en"], likes=4, reposts=2)
    server.add_post("bob.test", "A reply #heat", created_at=ago(9), reply_to=root)
    server.add_post("bob.test", "A quote #heat", created_at=ago(8), quote=root, outline_tags=["Summer"])
    server.add_post("alice.test", "bare #heat", created_at=ago(7), omit_counts=True, langs=None)
    posts = {p.text: p for page in run(make_adapter()) for p in page.posts}

    original = posts["Root #heat #Wave"]
    assert original.platform == "bluesky" and original.platform_id == root
    assert original.url == f"https://bsky.app/profile/alice.test/post/{root.rsplit('/', 1)[1]}"
    assert original.kind is PostKind.ORIGINAL and original.referenced_id is None
    assert original.language == "fr"
    assert original.hashtags == ("heat", "wave")
    assert original.created_at == ago(10)
    metrics = original.metrics
    assert (metrics.likes, metrics.reposts, metrics.replies, metrics.quotes) == (4, 2, 1, 1)
    assert original.metrics.views is None
    assert original.author.platform_id == server.account("alice.test").did
    author = original.author
    assert (author.handle, author.display_name, author.followers) == ("alice.test", "Alice", 120)

    reply = posts["A reply #heat"]
    assert reply.kind is PostKind.REPLY and reply.referenced_id == root
    assert reply.author.display_name is None and reply.author.followers == 7
    quote = posts["A quote #heat"]
    assert quote.kind is PostKind.QUOTE and quote.referenced_id == root
    assert quote.hashtags == ("heat", "summer")
    bare = posts["bare #heat"]
    assert bare.metrics.likes is None and bare.metrics.quotes is None and bare.language is None


def test_tolerates_loose_timestamps(server, make_adapter):
    naive = {"createdAt": "2024-03-01T10:00:00"}
    server.add_post("alice.test", "no zone #heat", created_at=ago(5), record_overrides=naive)
    server.add_post("alice.test", "no date #heat", created_at=ago(4), record_overrides={"createdAt": None})
    posts = {p.text: p for page in run(make_adapter()) for p in page.posts}
    assert posts["no zone #heat"].created_at == datetime(2024, 3, 1, 10, tzinfo=timezone.utc)
    assert posts["no date #heat"].created_at == ago(4)  # indexedAt


def test_follower_counts_are_batched_and_cached(server, make_adapter):
    for n in range(30):
        server.add_account(f"user{n}.test", followers=n)
        server.add_post(f"user{n}.test", f"p{n} #heat", created_at=ago(60 - n))
    adapter = make_adapter()
    posts = [p for page in run(adapter) for p in page.posts]
    assert {p.author.handle: p.author.followers for p in posts}["user29.test"] == 29
    assert server.count(GET_PROFILES) == 2  # 25 + 5
    run(adapter, cursor=None)
    assert server.count(GET_PROFILES) == 2  # cached


def test_follower_lookup_failure_keeps_the_page(server, make_adapter):
    server.add_post("alice.test", "a #heat", created_at=ago(5))
    server.fail_next(500, count=10, nsid=GET_PROFILES)
    pages = run(make_adapter())
    assert texts(pages) == ["a #heat"]
    assert pages[0].posts[0].author.followers is None


# -- failures ----------------------------------------------------------------------------------


def test_429_then_success_waits_once(server, make_adapter, waits):
    server.add_post("alice.test", "a #heat", created_at=ago(5))
    server.fail_next(429, nsid=SEARCH, reset_in=5)
    pages = run(make_adapter())
    assert texts(pages) == ["a #heat"]
    assert len(waits) == 1 and 4 <= waits[0] <= 8
    assert pages[0].requests == 4  # login, 429, search, profiles


def test_429_without_reset_uses_the_default_wait(server, make_adapter, waits):
    server.fail_next(429, nsid=SEARCH)
    run(make_adapter())
    assert waits == [pytest.approx(61, abs=1)]


def test_far_reset_raises_rate_limited(server, make_adapter, waits):
    server.fail_next(429, nsid=SEARCH, reset_in=3600)
    with pytest.raises(RateLimited) as caught:
        run(make_adapter())
    assert caught.value.resume_at > NOW + timedelta(minutes=50)
    assert waits == []


def test_exhausted_budget_answers_429_with_headers(server, make_adapter):
    server.set_rate_limit(2, window=3600)  # createSession has a budget of its own
    adapter = make_adapter()
    run(adapter)
    run(adapter)
    with pytest.raises(RateLimited) as caught:
        run(adapter)
    assert server.requests[-1].status == 429
    assert caught.value.resume_at > NOW + timedelta(minutes=50)


def test_5xx_storm_gives_up_with_fetch_failed(server, make_adapter, waits):
    make = make_adapter()
    run(make)
    server.fail_next(503, count=10, nsid=SEARCH)
    server.clear_log()
    with pytest.raises(FetchFailed):
        run(make)
    assert server.count(SEARCH) == 4  # 1 + max_retries
    assert len(waits) == 3


@pytest.mark.parametrize("fault", ["500", "502", "invalid_json", "drop", "delay"])
def test_transient_faults_are_retried(server, make_adapter, waits, fault):
    server.add_post("alice.test", "a #heat", created_at=ago(5))
    if fault == "invalid_json":
        server.invalid_json_next(nsid=SEARCH)
    elif fault == "drop":
        server.drop_next(nsid=SEARCH)
    elif fault == "delay":
        server.delay_next(1.0, nsid=SEARCH)
    else:
        server.fail_next(int(fault), nsid=SEARCH)
    adapter = make_adapter(timeout=0.3) if fault == "delay" else make_adapter()
    assert texts(run(adapter)) == ["a #heat"]
    assert len(waits) == 1


def test_malformed_post_is_skipped_and_the_rest_kept(server, make_adapter):
    for minute in range(3):
        server.add_post("alice.test", f"p{minute} #heat", created_at=ago(10 - minute))
    server.malformed_next()
    pages = run(make_adapter())
    assert texts(pages) == ["p2 #heat", "p1 #heat", "p0 #heat"]
    assert pages[0].skipped == 1


# -- refresh -----------------------------------------------------------------------------------


def test_refresh_reports_grown_metrics_and_deletions(server, make_adapter):
    uris = [server.add_post("alice.test", f"p{n} #heat", created_at=ago(100 - n)) for n in range(30)]
    server.grow(uris[0], likes=10, reposts=3)
    server.delete_post(uris[1])
    server.delete_post(uris[29])
    server.set_followers("alice.test", 500)
    adapter = make_adapter()
    known = [KnownPost(platform_id=u) for u in uris] + [KnownPost(platform_id="https://not-bluesky")]
    results = list(adapter.refresh(known))

    assert server.count(GET_POSTS) == 2
    assert [len(r.posts) for r in results[:2]] == [24, 4]
    assert [r.deleted for r in results[:2]] == [[uris[1]], [uris[29]]]
    fresh = {p.platform_id: p for r in results for p in r.posts}
    assert fresh[uris[0]].metrics.likes == 10 and fresh[uris[0]].metrics.reposts == 3
    assert fresh[uris[0]].author.followers == 500
    assert results[-1].skipped == 1 and results[-1].requests == 0
    assert results[0].requests == 3  # login, getPosts, getProfiles


def test_refresh_keeps_malformed_posts_out_of_deleted(server, make_adapter):
    uri = server.add_post("alice.test", "p #heat", created_at=ago(5))
    broken = {"uri": "at://did:plc:x/app.bsky.feed.post/zzz", "record": None}
    server.malformed_next(nsid=GET_POSTS, item=broken)
    [result] = make_adapter().refresh([KnownPost(uri), KnownPost("at://did:plc:x/app.bsky.feed.post/zzz")])
    assert [p.platform_id for p in result.posts] == [uri]
    assert result.deleted == [] and result.skipped == 1
