"""MastodonAdapter against MastodonServer over real HTTP with the real Mastodon.py (no mocks)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from mastodon import Mastodon

from tracker.fake_platforms.mastodon_server import Fault, MastodonServer, snowflake_id
from tracker.platforms.base import AuthFailed, FetchFailed, KnownPost, Page, Policy, RateLimited
from tracker.platforms.mastodon import MastodonAdapter, origin_of, snowflake_for, snowflake_time
from tracker.posts import NormalisedPost, PostKind

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
TOKEN = "s3cr3t-t0ken-value"


# --------------------------------------------------------------------------- fixtures


def make_policy(**kwargs: object) -> tuple[Policy, list[float]]:
    """A Policy whose sleeps are recorded, never slept."""
    waits: list[float] = []
    policy = Policy(backoff_base=0.01, backoff_max=0.05, sleep=waits.append, **kwargs)  # type: ignore[arg-type]
    return policy, waits


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[MastodonServer]:
    with MastodonServer(domain="a.example") as srv:
        yield srv


@pytest.fixture
def server_b() -> Iterator[MastodonServer]:
    with MastodonServer(domain="b.example") as srv:
        yield srv


def adapter_for(*servers: MastodonServer, hashtags: tuple[str, ...] = ("tour",), **kwargs: object) -> tuple[MastodonAdapter, list[float]]:
    policy, waits = make_policy()
    kwargs.setdefault("policy", policy)
    adapter = MastodonAdapter(instances=[s.base_url for s in servers], hashtags=list(hashtags), **kwargs)  # type: ignore[arg-type]
    return adapter, waits


def stream(srv: MastodonServer, tag: str = "tour") -> str:
    return f"{srv.base_url}#{tag}"


def seed(srv: MastodonServer, count: int, *, start: datetime = T0, user: str = "alice", step: timedelta = timedelta(minutes=1)) -> list[str]:
    account = srv.add_account(user, followers=42)
    return [srv.post(account, f"Stop {i} of the #Tour", created_at=start + i * step) for i in range(count)]


def posts_of(pages: list[Page]) -> list[NormalisedPost]:
    return [p for page in pages for p in page.posts]


def timeline_requests(srv: MastodonServer) -> int:
    return len(srv.requests("/api/v1/timelines/tag/"))


# --------------------------------------------------------------------------- server sanity


def test_server_speaks_mastodon_py_paging(server: MastodonServer) -> None:
    seed(server, 5)
    api = Mastodon(api_base_url=server.base_url, ratelimit_method="throw", version_check_mode="none")
    first = api.timeline_hashtag("TOUR", limit=2)
    assert len(first) == 2 and first[0].created_at > first[1].created_at
    older = api.fetch_next(first)
    assert [s.id for s in older] == sorted((s.id for s in older), reverse=True)
    assert max(s.id for s in older) < min(s.id for s in first)
    newer = api.fetch_previous(older)
    assert [s.id for s in newer] == [s.id for s in first]
    assert api.timeline_hashtag("unknown") == []
    assert server.requests("/api/v2/instance/")  # Mastodon.py's availability check was served


def test_min_id_returns_the_items_immediately_above(server: MastodonServer) -> None:
    ids = [int(i) for i in seed(server, 10)]
    api = Mastodon(api_base_url=server.base_url, ratelimit_method="throw", version_check_mode="none")
    page = api.timeline_hashtag("tour", min_id=ids[2], limit=3)
    assert [int(s.id) for s in page] == [ids[5], ids[4], ids[3]]
    page = api.timeline_hashtag("tour", since_id=ids[2], limit=3)
    assert [int(s.id) for s in page] == [ids[9], ids[8], ids[7]]  # since_id: newest first, gap below


def test_snowflake_helpers_agree_with_the_server() -> None:
    moment = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert snowflake_for(moment) == snowflake_id(moment)
    assert snowflake_time(str(snowflake_id(moment, 7))) == moment
    assert snowflake_time("abc") is None
    assert origin_of("https://A.example/users/bob/statuses/123") == ("https://a.example", "123")
    assert origin_of("https://a.example/users/bob/statuses/123/activity") is None
    assert origin_of("https://a.example/notes/9x") is None


# --------------------------------------------------------------------------- fetch: backfill and polling


def test_streams_are_instance_times_hashtag(server: MastodonServer, server_b: MastodonServer) -> None:
    adapter, _ = adapter_for(server, server_b, hashtags=("#Tour", "gigs", "tour"))
    assert adapter.platform == "mastodon"
    assert adapter.streams() == [stream(server), stream(server, "gigs"), stream(server_b), stream(server_b, "gigs")]
    with pytest.raises(ValueError):
        adapter.fetch("http://elsewhere.example#tour", None, None)


def test_backfill_pages_backwards_and_puts_the_cursor_only_on_the_last_page(server: MastodonServer) -> None:
    ids = seed(server, 95)
    adapter, _ = adapter_for(server)
    pages = list(adapter.fetch(stream(server), None, None))
    assert [len(p.posts) for p in pages] == [40, 40, 15, 0]
    assert [p.cursor for p in pages] == [None, None, None, ids[-1]]
    got = posts_of(pages)
    assert len({p.platform_id for p in got}) == 95
    assert [p.requests for p in pages] == [2, 1, 1, 1]  # first page also paid Mastodon.py's instance check
    assert pages[0].newest == T0 + timedelta(minutes=94) and pages[0].oldest == T0 + timedelta(minutes=55)
    max_ids = [r.query.get("max_id") for r in server.requests("/api/v1/timelines/tag/")]
    assert max_ids[0] is None and all(m is not None for m in max_ids[1:])


def test_backfill_stops_at_since(server: MastodonServer) -> None:
    ids = seed(server, 95)
    adapter, _ = adapter_for(server)
    since = T0 + timedelta(minutes=50)
    pages = list(adapter.fetch(stream(server), None, since))
    assert len(pages) == 2 and pages[-1].cursor == ids[-1] and pages[0].cursor is None
    got = posts_of(pages)
    assert len(got) == 45 and min(p.created_at for p in got) == since
    assert timeline_requests(server) == 2


def test_burst_larger_than_a_page_is_fetched_forward_without_gap(server: MastodonServer) -> None:
    seed(server, 5)
    adapter, _ = adapter_for(server)
    cursor = list(adapter.fetch(stream(server), None, None))[-1].cursor
    assert cursor is not None
    burst = seed(server, 100, start=T0 + timedelta(minutes=10), step=timedelta(seconds=10), user="bob")
    server.clear_log()
    pages = list(adapter.fetch(stream(server), cursor, None))
    got = {p.source_id for p in posts_of(pages)}
    assert set(burst) <= got
    queries = [r.query for r in server.requests("/api/v1/timelines/tag/")]
    assert all("min_id" in q and "max_id" not in q and "since_id" not in q for q in queries)
    cursors = [p.cursor for p in pages]
    assert cursors == sorted(cursors, key=int) and cursors[-1] == burst[-1]
    assert len(pages) == 3  # 105 items from the overlap point: 40 + 40 + 25


def test_interrupted_poll_resumes_from_a_page_cursor_without_gap(server: MastodonServer) -> None:
    seed(server, 3)
    adapter, _ = adapter_for(server, page_size=10)
    cursor = list(adapter.fetch(stream(server), None, None))[-1].cursor
    burst = seed(server, 35, start=T0 + timedelta(hours=1), step=timedelta(seconds=5), user="bob")
    first = next(iter(adapter.fetch(stream(server), cursor, None)))  # crash after one page
    rest = list(adapter.fetch(stream(server), first.cursor, None))
    assert set(burst) <= {p.source_id for p in first.posts + posts_of(rest)}


def test_idle_poll_costs_exactly_one_request_per_stream(server: MastodonServer, server_b: MastodonServer) -> None:
    for srv in (server, server_b):
        account = srv.add_account("alice")
        for i in range(6):
            srv.post(account, f"#tour #gigs night {i}", created_at=T0 + timedelta(minutes=i))
    adapter, _ = adapter_for(server, server_b, hashtags=("tour", "gigs"))
    cursors = {s: list(adapter.fetch(s, None, None))[-1].cursor for s in adapter.streams()}
    server.clear_log()
    server_b.clear_log()
    for s, cursor in cursors.items():
        pages = list(adapter.fetch(s, cursor, None))
        assert len(pages) == 1 and pages[0].requests == 1
        assert pages[0].cursor == cursor  # nothing new: the cursor stays
        assert len(pages[0].posts) == 6  # the overlap window comes back; the store de-duplicates
    assert len(server.requests()) == 2 and len(server_b.requests()) == 2


def test_poll_keeps_going_when_the_server_caps_limit_below_page_size(server: MastodonServer) -> None:
    """25 posts inside the overlap window and a server that serves 10 a page: no stall."""
    server.max_limit = 10
    seed(server, 25, step=timedelta(seconds=30))
    adapter, _ = adapter_for(server, page_size=40)
    pages = list(adapter.fetch(stream(server), None, None))
    cursor = pages[-1].cursor
    assert cursor is not None and len(posts_of(pages)) == 25
    fresh = seed(server, 3, start=T0 + timedelta(minutes=20), user="bob")
    pages = list(adapter.fetch(stream(server), cursor, None))
    assert set(fresh) <= {p.source_id for p in posts_of(pages)}
    assert pages[-1].cursor == fresh[-1]


def test_unknown_tag_gives_an_empty_page_and_no_cursor(server: MastodonServer) -> None:
    adapter, _ = adapter_for(server, hashtags=("nothing",))
    pages = list(adapter.fetch(stream(server, "nothing"), None, None))
    assert len(pages) == 1 and pages[0].posts == [] and pages[0].cursor is None


def test_same_toot_on_two_instances_has_one_platform_id(server: MastodonServer, server_b: MastodonServer) -> None:
    account = server.add_account("alice", followers=12)
    origin_id = server.post(account, "Tonight in Leeds #tour", created_at=T0)
    copy_id = server.federate(origin_id, server_b)
    adapter, _ = adapter_for(server, server_b)
    (on_a,) = posts_of(list(adapter.fetch(stream(server), None, None)))
    (on_b,) = posts_of(list(adapter.fetch(stream(server_b), None, None)))
    assert on_a.platform_id == on_b.platform_id == server.uri_of(origin_id)
    assert (on_a.source, on_a.source_id) == (server.base_url, origin_id)
    assert (on_b.source, on_b.source_id) == (server_b.base_url, copy_id)
    assert on_a.source_id != on_b.source_id
    assert on_a.author.handle == on_b.author.handle == "alice@a.example"
    assert on_a.author.platform_id == on_b.author.platform_id == "https://a.example/@alice"


def test_late_federated_post_below_the_cursor_is_caught_by_the_overlap(server: MastodonServer, server_b: MastodonServer) -> None:
    seed(server_b, 4, user="carol")  # b's own posts, minutes 0..3
    adapter, _ = adapter_for(server_b, overlap=timedelta(minutes=30))
    cursor = list(adapter.fetch(stream(server_b), None, None))[-1].cursor
    assert cursor is not None
    remote = server.add_account("alice")
    late = server.post(remote, "Late but here #tour", created_at=T0 + timedelta(minutes=1, seconds=30))
    local_copy = server.federate(late, server_b)
    assert int(local_copy) < int(cursor)  # lands below the cursor
    got = posts_of(list(adapter.fetch(stream(server_b), cursor, None)))
    assert server.uri_of(late) in {p.platform_id for p in got}

    no_overlap, _ = adapter_for(server_b, overlap=timedelta(0))
    assert server.uri_of(late) not in {p.platform_id for p in posts_of(list(no_overlap.fetch(stream(server_b), cursor, None)))}


# --------------------------------------------------------------------------- normalisation


def test_normalised_fields(server: MastodonServer, server_b: MastodonServer) -> None:
    remote_account = server.add_account("alice", display_name="Alice A.", followers=321)
    sid = server.post(
        remote_account,
        "Hello #Tour and #Gigs",
        created_at=T0,
        language="de",
        favourites=5,
        reblogs=3,
        replies=2,
        quotes=1,
        spoiler_text="Tour news",
    )
    server.edit(sid, "Hello #Tour and #Gigs (edited)", edited_at=T0 + timedelta(hours=1))
    server.federate(sid, server_b)
    local = server_b.add_account("dave")
    server_b.post(local, "Local #tour post", created_at=T0 + timedelta(minutes=5))
    adapter, _ = adapter_for(server_b)
    by_author = {p.author.handle: p for p in posts_of(list(adapter.fetch(stream(server_b), None, None)))}
    remote, home = by_author["alice@a.example"], by_author["dave@b.example"]
    assert remote.platform == "mastodon"
    assert remote.text == "Tour news\n\nHello #Tour and #Gigs (edited)"
    assert remote.hashtags == ("tour", "gigs")
    assert remote.language == "de"
    assert remote.created_at == T0 and remote.edited_at == T0 + timedelta(hours=1)
    assert (remote.metrics.likes, remote.metrics.reposts, remote.metrics.replies, remote.metrics.quotes) == (5, 3, 2, 1)
    assert remote.metrics.views is None
    assert remote.author.display_name == "Alice A." and remote.author.followers == 321
    assert remote.url == f"https://a.example/@alice/{sid}"
    assert remote.kind is PostKind.ORIGINAL and remote.referenced_id is None
    assert home.author.url == "https://b.example/@dave"
    assert remote.fetched_at.tzinfo is not None


def test_quotes_count_absent_on_older_servers_is_none(server: MastodonServer) -> None:
    server.quotes_supported = False
    seed(server, 1)
    adapter, _ = adapter_for(server)
    (post,) = posts_of(list(adapter.fetch(stream(server), None, None)))
    assert post.metrics.quotes is None and post.metrics.likes == 0


def test_reblogs_replies_and_quotes(server: MastodonServer) -> None:
    server.reblogs_in_tag_timelines = True
    alice, bob = server.add_account("alice"), server.add_account("bob")
    original = server.post(alice, "Opening night #tour", created_at=T0)
    untagged_parent = server.post(alice, "no tag here", created_at=T0 + timedelta(minutes=1))
    reply = server.post(bob, "See you there #tour", in_reply_to=original, created_at=T0 + timedelta(minutes=2))
    orphan_reply = server.post(bob, "Replying #tour", in_reply_to=untagged_parent, created_at=T0 + timedelta(minutes=3))
    quote = server.post(bob, "Don't miss it #tour", quote_of=original, created_at=T0 + timedelta(minutes=4))
    boost = server.reblog(bob, original, created_at=T0 + timedelta(minutes=5))
    adapter, _ = adapter_for(server)
    by_id = {p.source_id: p for p in posts_of(list(adapter.fetch(stream(server), None, None)))}
    origin_uri = server.uri_of(original)
    assert by_id[original].kind is PostKind.ORIGINAL
    assert (by_id[reply].kind, by_id[reply].referenced_id) == (PostKind.REPLY, origin_uri)
    assert (by_id[orphan_reply].kind, by_id[orphan_reply].referenced_id) == (PostKind.REPLY, None)
    assert (by_id[quote].kind, by_id[quote].referenced_id) == (PostKind.QUOTE, origin_uri)
    repost = by_id[boost]
    assert (repost.kind, repost.referenced_id) == (PostKind.REPOST, origin_uri)
    assert repost.platform_id == server.uri_of(boost) != origin_uri
    assert repost.author.handle == "bob@a.example"
    assert repost.text == "Opening night #tour" and repost.hashtags == ("tour",)


def test_hostile_html_becomes_clean_text(server: MastodonServer) -> None:
    account = server.add_account("mallory")
    server.post(
        account,
        content=(
            "<p>Hi &amp; welcome<br>line two</p><script>alert('x')</script>"
            '<p><a href="javascript:alert(1)">click</a> &lt;b&gt;bold?&lt;/b&gt; '
            '<a href="https://a.example/tags/tour" class="mention hashtag" rel="tag">#<span>tour</span></a></p>'
        ),
        tags=["tour"],
        created_at=T0,
    )
    adapter, _ = adapter_for(server)
    (post,) = posts_of(list(adapter.fetch(stream(server), None, None)))
    assert post.text == "Hi & welcome\nline two\n\nclick <b>bold?</b> #tour"


def test_malformed_items_are_skipped_and_the_rest_kept(server: MastodonServer, caplog: pytest.LogCaptureFixture) -> None:
    ids = seed(server, 3)
    server.malformed_next_page(
        {"id": "7", "content": "<p>no uri</p>"},
        "just a string",
        {"id": "8", "uri": "https://x.example/users/u/statuses/8", "created_at": "not a date", "account": {"acct": "u"}},
        {"id": "9", "uri": "https://x.example/users/u/statuses/9", "created_at": "2025-01-01T00:00:00.000Z", "account": "nope"},
        {"id": True, "uri": "https://x.example/users/u/statuses/10", "created_at": "2025-01-01T00:00:00.000Z"},
        {
            "id": "11",
            "uri": "https://x.example/users/u/statuses/11",
            "created_at": "2025-01-01T00:00:00.000Z",
            "account": {"acct": "u@x.example", "url": "https://x.example/@u"},
            "favourites_count": "lots",
            "tags": "not-a-list",
            "content": 12,
        },
    )
    adapter, _ = adapter_for(server)
    with caplog.at_level(logging.WARNING, logger="tracker.platforms.mastodon"):
        pages = list(adapter.fetch(stream(server), None, None))
    assert pages[0].skipped == 5
    got = {p.source_id: p for p in posts_of(pages)}
    assert set(ids) <= set(got)
    odd = got["11"]  # wrong-typed optional fields: kept, treated as not reported
    assert odd.metrics.likes is None and odd.hashtags == () and odd.text == ""
    assert "malformed" in caplog.text


# --------------------------------------------------------------------------- errors and politeness


def test_429_then_success_waits_once(server: MastodonServer) -> None:
    seed(server, 3)
    adapter, waits = adapter_for(server)
    server.rate_limit_next(reset_in=2.0)
    pages = list(adapter.fetch(stream(server), None, None))
    assert len(posts_of(pages)) == 3
    assert len(waits) == 1 and 1.0 < waits[0] <= 3.5
    assert pages[0].requests == 3  # instance check + 429 + retry


def test_429_with_epoch_reset_is_understood(server: MastodonServer) -> None:
    seed(server, 1)
    adapter, waits = adapter_for(server)
    server.rate_limit_next(reset_in=5.0, reset_format="epoch")
    assert len(posts_of(list(adapter.fetch(stream(server), None, None)))) == 1
    assert len(waits) == 1 and 3.0 < waits[0] <= 7.0


def test_429_without_reset_waits_the_policy_default(server: MastodonServer) -> None:
    seed(server, 1)
    adapter, waits = adapter_for(server)
    server.rate_limit_next(reset_in=None)
    assert len(posts_of(list(adapter.fetch(stream(server), None, None)))) == 1
    assert waits == [pytest.approx(61.0, abs=1.0)]


def test_429_with_far_reset_raises_rate_limited(server: MastodonServer) -> None:
    seed(server, 1)
    adapter, waits = adapter_for(server)
    server.rate_limit_next(reset_in=3600)
    with pytest.raises(RateLimited) as info:
        list(adapter.fetch(stream(server), None, None))
    expected = datetime.now(timezone.utc) + timedelta(hours=1)
    assert abs((info.value.resume_at - expected).total_seconds()) < 10
    assert waits == []


def test_exhausted_budget_raises_rate_limited_at_the_window_reset(server: MastodonServer) -> None:
    seed(server, 50)
    server.reset_rate_limit(limit=2)  # instance check + first page, then 429 until the window ends
    adapter, _ = adapter_for(server)
    pages = adapter.fetch(stream(server), None, None)
    assert len(next(pages).posts) == 40
    with pytest.raises(RateLimited) as info:
        next(pages)
    assert 200 < (info.value.resume_at - datetime.now(timezone.utc)).total_seconds() <= 301


def test_5xx_storm_ends_in_fetch_failed_after_bounded_retries(server: MastodonServer) -> None:
    seed(server, 1)
    adapter, waits = adapter_for(server)
    server.fail_next(3, 500)
    server.fail_next(3, 502)
    server.fail_next(10, 503)
    with pytest.raises(FetchFailed) as info:
        list(adapter.fetch(stream(server), None, None))
    assert "5 attempts" in str(info.value)
    assert len(waits) == 4 and timeline_requests(server) == 5


def test_transient_failures_are_retried(server: MastodonServer) -> None:
    seed(server, 2)
    adapter, waits = adapter_for(server, timeout=0.5)
    server.fail_next(1, 502)
    server.drop_next(1)
    server.invalid_json_next()
    server.delay_next(1.5)  # longer than the client's timeout
    pages = list(adapter.fetch(stream(server), None, None))
    assert len(posts_of(pages)) == 2
    assert len(waits) == 4


@pytest.mark.filterwarnings("ignore::mastodon.errors.MastodonWarning")  # Mastodon.py's own feed-locked notice
def test_locked_hashtag_feed_without_token_is_auth_failed(server: MastodonServer) -> None:
    server.hashtag_feeds_require_auth = True
    server.tokens = {TOKEN}
    seed(server, 2)
    adapter, _ = adapter_for(server)
    with pytest.raises(AuthFailed):
        list(adapter.fetch(stream(server), None, None))
    with_token, _ = adapter_for(server, tokens={server.base_url + "/": TOKEN})
    assert len(posts_of(list(with_token.fetch(stream(server), None, None)))) == 2
    assert server.requests("/api/v1/timelines/tag/")[-1].authorized


def test_token_never_appears_in_messages_or_logs(server: MastodonServer, caplog: pytest.LogCaptureFixture) -> None:
    seed(server, 1)
    server.tokens = {"another-token"}
    adapter, _ = adapter_for(server, tokens={server.base_url: TOKEN})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthFailed) as auth:
            list(adapter.fetch(stream(server), None, None))
        server.tokens = {TOKEN}
        server.fail_next(10, 503)
        with pytest.raises(FetchFailed) as failed:
            list(adapter.fetch(stream(server), None, None))
    for exc in (auth.value, failed.value):
        chain: BaseException | None = exc
        while chain is not None:
            assert TOKEN not in str(chain) and TOKEN not in repr(chain.args)
            chain = chain.__cause__ or chain.__context__
    assert TOKEN not in caplog.text


# --------------------------------------------------------------------------- refresh


def _known(post: NormalisedPost) -> KnownPost:
    return KnownPost(platform_id=post.platform_id, source=post.source, source_id=post.source_id, url=post.url)


def test_refresh_reads_counts_from_the_origin_instance(server: MastodonServer, server_b: MastodonServer) -> None:
    account = server.add_account("alice", followers=10)
    sid = server.post(account, "Counting #tour", created_at=T0, favourites=1)
    server.federate(sid, server_b)  # b keeps favourites=1 from now on
    server.grow(sid, favourites=41, reblogs=7, replies=3, quotes=2)
    server.set_followers(account, 99)
    fetcher, _ = adapter_for(server_b)
    (seen,) = posts_of(list(fetcher.fetch(stream(server_b), None, None)))
    assert seen.metrics.likes == 1  # stale remote copy

    # A fresh adapter (new process): learns instance domains, then asks the origin.
    adapter, _ = adapter_for(server, server_b)
    server.clear_log()
    server_b.clear_log()
    (result,) = list(adapter.refresh([_known(seen)]))
    (fresh,) = result.posts
    assert (fresh.metrics.likes, fresh.metrics.reposts, fresh.metrics.replies, fresh.metrics.quotes) == (42, 7, 3, 2)
    assert fresh.author.followers == 99
    assert fresh.platform_id == seen.platform_id and fresh.source == server.base_url and fresh.source_id == sid
    assert [r.path for r in server.requests("/api/v1/statuses/")] == [f"/api/v1/statuses/{sid}"]
    assert server_b.requests("/api/v1/statuses/") == []
    assert result.requests == 1 + len(server.requests("/api/v2/instance")) + len(server_b.requests("/api/v2/instance"))


def test_refresh_falls_back_to_the_instance_it_was_seen_on(server: MastodonServer, server_b: MastodonServer) -> None:
    account = server.add_account("alice")
    sid = server.post(account, "Only b is configured #tour", created_at=T0, favourites=2)
    server.federate(sid, server_b)
    adapter, _ = adapter_for(server_b)
    (seen,) = posts_of(list(adapter.fetch(stream(server_b), None, None)))
    (result,) = list(adapter.refresh([_known(seen)]))
    assert result.posts[0].metrics.likes == 2 and result.posts[0].source == server_b.base_url


def test_refresh_reports_deleted_and_edited_posts(server: MastodonServer) -> None:
    account = server.add_account("alice")
    kept, gone_404, gone_410 = (server.post(account, f"Post {i} #tour", created_at=T0 + timedelta(minutes=i)) for i in range(3))
    adapter, _ = adapter_for(server)
    seen = {p.source_id: p for p in posts_of(list(adapter.fetch(stream(server), None, None)))}
    server.edit(kept, "Post 0, now with details #tour #gigs", edited_at=T0 + timedelta(hours=2))
    server.delete(gone_404)
    server.delete(gone_410, gone=True)
    (result,) = list(adapter.refresh([_known(seen[i]) for i in (kept, gone_404, gone_410)]))
    assert sorted(result.deleted) == sorted([server.uri_of(gone_404), server.uri_of(gone_410)])
    (edited,) = result.posts
    assert edited.text == "Post 0, now with details #tour #gigs"
    assert edited.hashtags == ("tour", "gigs") and edited.edited_at == T0 + timedelta(hours=2)
    assert result.requests == 3


def test_refresh_batches_of_forty_and_skips_unreachable_posts(server: MastodonServer) -> None:
    ids = seed(server, 45)
    adapter, _ = adapter_for(server)
    known = [_known(p) for p in posts_of(list(adapter.fetch(stream(server), None, None)))]
    known.append(KnownPost(platform_id="https://elsewhere.example/users/x/statuses/1", source="https://elsewhere.example", source_id="1"))
    results = list(adapter.refresh(known))
    assert [len(r.posts) for r in results] == [40, 5]
    assert [r.skipped for r in results] == [0, 1]
    assert {p.source_id for r in results for p in r.posts} == set(ids)


def test_refresh_rate_limit_keeps_what_the_batch_learned(server: MastodonServer) -> None:
    seed(server, 3)
    adapter, _ = adapter_for(server)
    known = [_known(p) for p in posts_of(list(adapter.fetch(stream(server), None, None)))]
    lookups = "/api/v1/statuses/"
    server.inject(Fault(path=lookups), Fault(path=lookups), Fault(status=429, reset_in=3600, path=lookups))
    results = adapter.refresh(known)
    partial = next(results)  # two lookups succeeded before the far rate limit
    assert len(partial.posts) == 2 and partial.requests == 3
    with pytest.raises(RateLimited):
        next(results)
