"""Faults during collection (real clients against the local fake platforms) and bad input.

After every fault: no duplicate rows, exactly one gap per failed stream, and after a clean
follow-up run the database holds exactly the server's ground truth (nothing lost).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import Database, open_database
from storage.models import Gap, MetricSnapshot, Post, PostSource, SentReport
from tests.helpers.fake_campaign import (
    BSKY_PASSWORD,
    X_TOKEN,
    Fakes,
    hours_ago,
    make_settings,
    seed,
    start_fakes,
)
from tracker.collect import run_collection
from tracker.errors import SettingsError, TrackerError
from tracker.fake_platforms.x_server import XServer
from tracker.importer import read_import_file
from tracker.mailer import MailError
from tracker.pipeline import ingest
from tracker.platforms.base import Adapter, Policy
from tracker.platforms.bluesky import BlueskyAdapter
from tracker.platforms.mastodon import MastodonAdapter
from tracker.platforms.registry import build_adapters, close_adapters
from tracker.platforms.x import XAdapter
from tracker.settings import parse_settings
from tracker.weekly import Week, send_weekly

UTC = dt.timezone.utc
TIMEOUT = 0.5


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Sleeping moves this clock on; nothing really waits."""
        self.now += dt.timedelta(seconds=seconds)


def adapters_for(fakes: Fakes, clock: Clock, retries: int = 2) -> dict[str, Adapter]:
    """The real adapters with a short timeout and no real sleeping."""
    policy = Policy(sleep=clock.sleep, max_retries=retries, max_rate_limit_wait=120, default_rate_limit_wait=60,
                    now=clock)
    tags = ["ihmisensote"]
    return {
        "x": XAdapter(base_url=fakes.x.base_url, bearer_token=X_TOKEN, hashtags=tags, page_size=10, policy=policy,
                      timeout=TIMEOUT),
        "mastodon": MastodonAdapter(instances=[fakes.m1.base_url, fakes.m2.base_url], hashtags=tags, page_size=5,
                                    policy=policy, timeout=TIMEOUT),
        "bluesky": BlueskyAdapter(base_url=fakes.bsky.base_url, handle="tracker.bsky.social",
                                  app_password=BSKY_PASSWORD, hashtags=tags, page_size=10, policy=policy,
                                  timeout=TIMEOUT),
    }


def count(db: Database, model: type, *where: object) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))  # type: ignore[arg-type]


def stored(db: Database, platform: str) -> list[str]:
    with db.read() as s:
        return sorted(s.scalars(select(Post.platform_id).where(Post.platform == platform)))


def check_no_duplicates(db: Database) -> None:
    with db.read() as s:
        keys = s.execute(select(Post.platform, Post.platform_id)).all()
        assert len(keys) == len(set(keys))
        sources = s.execute(select(PostSource.post_id, PostSource.source)).all()
        assert len(sources) == len(set(sources))
        snaps = s.execute(select(MetricSnapshot.post_id, MetricSnapshot.fetched_at)).all()
        assert len(snaps) == len(set(snaps))


Inject = Callable[[Fakes], None]

# fault -> (platform, what the first run ends as, gaps it records)
SCENARIOS: dict[str, tuple[str, Inject, str, int]] = {
    "429 reset soon": ("x", lambda f: f.x.rate_limit_next(reset_in=5), "ok", 0),
    "429 no reset header": ("x", lambda f: f.x.rate_limit_next(reset_in=None), "ok", 0),
    "429 reset far away": ("x", lambda f: f.x.rate_limit_next(reset_in=6 * 3600), "rate_limited", 1),
    "5xx storm": ("x", lambda f: f.x.fail_next(503, count=3), "failed", 1),
    "one 502": ("x", lambda f: f.x.fail_next(502, count=1), "ok", 0),
    "timeouts": ("x", lambda f: f.x.delay_next(TIMEOUT * 4, count=3), "failed", 1),
    "dropped connections": ("x", lambda f: f.x.drop_next(count=3), "failed", 1),
    "truncated json": ("x", lambda f: f.x.invalid_json_next(count=3), "failed", 1),
    "html error page": ("x", lambda f: f.x.invalid_json_next(count=3, truncated=False), "failed", 1),
    "mastodon 5xx storm on one instance": ("mastodon", lambda f: f.m2.fail_next(3, 503), "partial", 1),
    "mastodon 429 far away": ("mastodon", lambda f: f.m1.rate_limit_next(reset_in=6 * 3600), "rate_limited", 1),
    "mastodon dropped": ("mastodon", lambda f: f.m1.drop_next(3), "partial", 1),
    "mastodon invalid json": ("mastodon", lambda f: f.m1.invalid_json_next(), "ok", 0),
    "bluesky 5xx storm": ("bluesky", lambda f: f.bsky.fail_next(503, count=3, nsid="app.bsky.feed.searchPosts"),
                          "failed", 1),
    "bluesky 429 without headers": ("bluesky", lambda f: f.bsky.fail_next(429, nsid="app.bsky.feed.searchPosts"),
                                    "ok", 0),
    "bluesky truncated json": ("bluesky", lambda f: f.bsky.invalid_json_next(3, nsid="app.bsky.feed.searchPosts"),
                               "failed", 1),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault_then_clean_run_loses_nothing(name: str, fakes: Fakes, tmp_path: Path) -> None:
    platform, inject, status, gaps = SCENARIOS[name]
    truth = seed(fakes, n_x=25, n_m=12, n_b=15)
    expected = sorted(v for k, v in truth.items() if k[0] == platform[0])
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    clock = Clock()
    adapters = adapters_for(fakes, clock)
    adapter = adapters[platform]
    try:
        inject(fakes)
        [first] = run_collection(db, [adapter], clock=clock)
        assert (first.status, first.gaps) == (status, gaps), first.line()
        assert count(db, Gap) == gaps
        check_no_duplicates(db)
        if status == "ok":
            assert stored(db, platform) == expected
        clock.now += dt.timedelta(hours=7)  # past any rate-limit reset
        [second] = run_collection(db, [adapter], clock=clock)
        assert second.status == "ok", second.line()
        assert stored(db, platform) == expected  # the server's ground truth, each post once
        check_no_duplicates(db)
        assert count(db, Gap) == gaps and count(db, Gap, Gap.resolved_at.is_(None)) == 0
    finally:
        close_adapters(list(adapters.values()))
        db.dispose()


def test_page_repeating_ids_stores_each_post_once(fakes: Fakes, tmp_path: Path) -> None:
    truth = seed(fakes, n_x=0, n_m=12, n_b=0)
    first_local = fakes.m1.local_id_of(truth["m3"])
    fakes.m1.malformed_next_page(fakes.m1.status_json(first_local), fakes.m1.status_json(first_local))
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    clock = Clock()
    adapters = adapters_for(fakes, clock)
    try:
        [result] = run_collection(db, [adapters["mastodon"]], clock=clock)
        assert result.status == "ok" and result.new == 12, result.line()
        assert stored(db, "mastodon") == sorted(v for k, v in truth.items() if k.startswith("m"))
        check_no_duplicates(db)
        assert count(db, PostSource) == 12 + 3  # three toots federated to m2
    finally:
        close_adapters(list(adapters.values()))
        db.dispose()


@pytest.mark.parametrize("skew_minutes", [-15, 15])
def test_server_clock_skew(skew_minutes: int, tmp_path: Path) -> None:
    """The fake X server's clock is minutes off ours: its rate-limit resets are in its time."""
    skew = skew_minutes * 60
    with XServer(X_TOKEN, clock=lambda: time.time() + skew) as server:
        user = server.add_user("sote_fi")
        server_now = server.now()
        ids = sorted(server.add_tweet(user, f"Tampereella {i} #ihmisensote",
                                      created_at=server_now - dt.timedelta(minutes=5 * (i + 1)))
                     for i in range(15))
        db = open_database(f"sqlite:///{tmp_path / 't.db'}")
        clock = Clock()
        policy = Policy(sleep=clock.sleep, max_retries=2, max_rate_limit_wait=120, now=clock)
        adapter = XAdapter(base_url=server.base_url, bearer_token=X_TOKEN, hashtags=["ihmisensote"], page_size=10,
                           policy=policy, timeout=TIMEOUT)
        try:
            server.rate_limit_next(reset_in=30)
            [first] = run_collection(db, [adapter], clock=clock)
            # ahead: the reset looks 15.5 minutes away -> deferred with one gap; behind: already
            # passed -> retried at once
            assert first.gaps == (1 if skew > 0 else 0), first.line()
            clock.now += dt.timedelta(minutes=40)
            new = server.add_tweet(user, "Vielä yksi #ihmisensote", created_at=server.now())
            [second] = run_collection(db, [adapter], clock=clock)
            assert second.status == "ok", second.line()
            assert stored(db, "x") == sorted([*ids, new])
            check_no_duplicates(db)
            assert count(db, Gap, Gap.resolved_at.is_(None)) == 0
        finally:
            adapter.close() if hasattr(adapter, "close") else None
            db.dispose()


# -- bad input ----------------------------------------------------------------------------------


def test_broken_import_files_reject_rows_and_keep_the_rest(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Helsinki")
    broken_csv = tmp_path / "broken.csv"
    broken_csv.write_text('platform,id,created_at,text,author\n'
                          'instagram,I1,2023-02-09T10:00:00Z,"Tampere #ihmisensote",a\n'
                          'instagram,I2,2023-02-09T10:00:00Z,"unterminated quote,a\n'
                          'instagram,I3\n', encoding="utf-8")
    report = read_import_file(broken_csv, tz)
    assert [p.platform_id for p in report.posts] == ["I1"]
    assert report.errors and all(e.startswith("line ") for e in report.errors)
    jsonl = tmp_path / "broken.jsonl"
    jsonl.write_text('{"platform": "instagram", "id": "J1", "created_at": "2023-02-09T10:00:00Z", "author": "a", '
                     '"text": "x"}\n{"platform": "instagram", "id": "J2", \n[1, 2]\n\x00\x01garbage\n',
                     encoding="utf-8")
    report = read_import_file(jsonl, tz)
    assert [p.platform_id for p in report.posts] == ["J1"]
    assert len(report.errors) == 3 and report.errors[0].startswith("line 2: invalid JSON")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x00garbage\x80\x81")
    with pytest.raises(TrackerError, match="not UTF-8 text"):
        read_import_file(binary, tz)
    with pytest.raises(TrackerError, match="no such file"):
        read_import_file(tmp_path / "missing.csv", tz)


def test_missing_token_is_one_clear_error(fakes: Fakes, tmp_path: Path) -> None:
    settings = make_settings(fakes, f"sqlite:///{tmp_path / 't.db'}")
    raw = settings.model_dump(mode="json")
    no_tokens = parse_settings(raw, env={})
    with pytest.raises(SettingsError, match="^platforms.x is enabled but TRACKER_X_BEARER_TOKEN is not set$"):
        build_adapters(no_tokens, only="x")
    with pytest.raises(SettingsError, match="TRACKER_BLUESKY_APP_PASSWORD is not set"):
        build_adapters(no_tokens, only="bluesky")
    assert "TRACKER_X_BEARER_TOKEN" in no_tokens.missing_secrets()


def test_unreachable_smtp_server_is_one_error_and_the_report_is_retried(tmp_path: Path) -> None:
    import socket

    from tests import test_summary as data

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = {**data.SETTINGS, "storage": {"url": f"sqlite:///{tmp_path / 't.db'}"},
           "email": {"host": "127.0.0.1", "port": port, "security": "none", "sender": "t@example.fi",
                     "recipients": ["team@example.fi"]}}
    settings = parse_settings(raw, env={})
    db = open_database(settings.database_url)
    try:
        data.build_campaign(db, settings)
        posts_before = count(db, Post)
        with pytest.raises(MailError) as caught:
            send_weekly(db, settings, Week(2023, 6), now=dt.datetime(2023, 2, 13, 7, tzinfo=UTC), timeout=2)
        assert "\n" not in str(caught.value) and str(port) in str(caught.value)
        with db.read() as s:
            report = s.scalars(select(SentReport)).one()
        assert report.status == "failed" and report.error
        assert count(db, Post) == posts_before
    finally:
        db.dispose()


def test_ingest_of_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    """A failure inside the transaction (here: a naive datetime sneaking in) stores nothing."""
    from tracker.posts import Author, NormalisedPost

    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    good = NormalisedPost(platform="x", platform_id="g1", author=Author("1", "a"), text="t",
                          created_at=hours_ago(1), fetched_at=hours_ago(0))
    bad = NormalisedPost(platform="x", platform_id="g2", author=Author("1", "a"), text="t",
                         created_at=hours_ago(1), fetched_at=hours_ago(0))
    bad.edited_at = dt.datetime(2023, 1, 1)  # naive, bypassing the constructor's check
    try:
        from sqlalchemy.exc import StatementError

        with pytest.raises((ValueError, StatementError), match="naive"):  # raw, or wrapped by the driver layer
            with db.write() as s:
                ingest(s, [good, bad], None)
        assert count(db, Post) == 0
    finally:
        db.dispose()
