"""Storage on real SQLite files and real PostgreSQL: migrations, idempotent upserts, UTC."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, inspect, select, text

from storage.db import Database, SchemaState, open_database
from storage.models import (
    Attribution,
    Author,
    AuthorFollowers,
    Base,
    MetricSnapshot,
    Post,
    PostArea,
    PostSource,
    Stop,
)
from storage.queries import TagRow, post_totals, posts_per_stop, store_tags, sync_stops
from storage.upserts import mark_deleted, store_posts
from tracker.errors import DatabaseError
from tracker.posts import Author as PostAuthor
from tracker.posts import Metrics, NormalisedPost, PostKind
from tracker.settings import Stop as StopSettings

UTC = dt.timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
T0 = dt.datetime(2023, 2, 9, 8, 15, tzinfo=UTC)


def post(
    n: int,
    *,
    fetched: dt.datetime = T0,
    likes: int | None = 1,
    text: str = "Kiertue Tampereella #ihmisensote",
    author: int | None = None,
    followers: int | None = 100,
    platform: str = "x",
    source: str | None = None,
    source_id: str | None = None,
    created: dt.datetime = T0,
) -> NormalisedPost:
    a = n % 7 if author is None else author
    return NormalisedPost(
        platform=platform,
        platform_id=f"id-{n}",
        author=PostAuthor(platform_id=f"user-{a}", handle=f"user{a}", display_name=f"User {a}",
                          followers=followers),
        text=text,
        created_at=created,
        fetched_at=fetched,
        url=f"https://x.com/user{a}/status/{n}",
        language="fi",
        hashtags=("ihmisensote",),
        kind=PostKind.ORIGINAL,
        metrics=Metrics(likes=likes, reposts=2, replies=0, quotes=None, views=None),
        source=source,
        source_id=source_id,
    )


def count(db: Database, model: type[Base]) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_migrations_from_empty_create_every_table(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert db.schema_state().empty
        state = db.ensure_schema()
        assert state.up_to_date and state.current == state.head
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
        assert db.ensure_schema().current == state.head  # idempotent
        from alembic import command

        command.downgrade(db.alembic_config(), "base")
        with db.engine.connect() as conn:
            assert not set(Base.metadata.tables) & set(inspect(conn).get_table_names())
        assert db.upgrade().up_to_date
    finally:
        db.dispose()


def test_schema_newer_than_code_is_refused(db: Database) -> None:
    with db.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(DatabaseError, match=r"9999_future.*newer\): upgrade the tracker"):
        db.ensure_schema()


def test_tables_without_version_are_refused(db_url: str) -> None:
    db = Database(db_url)
    try:
        Base.metadata.create_all(db.engine)
        with pytest.raises(DatabaseError, match="has tables but no tracker schema version"):
            db.ensure_schema()
    finally:
        db.dispose()


def test_schema_created_by_another_process_meanwhile_is_accepted(db_url: str) -> None:
    """The version read before the migration lock may be stale: decide again under the lock."""
    late = Database(db_url)
    other = Database(db_url)
    try:
        stale = late.schema_state()
        assert stale.empty
        other.ensure_schema()  # the other process wins the race and creates everything
        late.schema_state = lambda: stale  # type: ignore[method-assign]
        assert late.ensure_schema().up_to_date
    finally:
        late.dispose()
        other.dispose()
    fresh = open_database(db_url)
    assert fresh.schema_state() == SchemaState(stale.head, stale.head)
    fresh.dispose()


def test_unreachable_database_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(DatabaseError, match="cannot open database"):
        open_database("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_store_is_idempotent(db: Database) -> None:
    batch = [post(n) for n in range(50)]
    with db.write() as s:
        first = store_posts(s, batch)
    assert (first.received, first.new, first.updated) == (50, 50, 0)
    with db.write() as s:
        again = store_posts(s, batch)
    assert (again.new, again.updated) == (0, 50)
    assert count(db, Post) == 50
    assert count(db, Author) == 7
    assert count(db, MetricSnapshot) == 50
    assert count(db, AuthorFollowers) == 7


def test_batch_with_the_same_post_twice_keeps_the_newest(db: Database) -> None:
    later = T0 + dt.timedelta(hours=2)
    batch = [post(1, likes=5, fetched=later, text="edited"), post(1, likes=3), post(2)]
    with db.write() as s:
        result = store_posts(s, batch)
    assert (result.received, result.new) == (3, 2)
    with db.read() as s:
        row = s.scalars(select(Post).where(Post.platform_id == "id-1")).one()
        assert (row.likes, row.text, row.metrics_at) == (5, "edited", later)
        snapshots = s.scalars(select(MetricSnapshot.likes).where(MetricSnapshot.post_id == row.id)
                              .order_by(MetricSnapshot.fetched_at)).all()
    assert snapshots == [3, 5]  # both observations kept as history


def test_older_snapshot_never_overwrites_newer(db: Database) -> None:
    new, old = T0 + dt.timedelta(days=1), T0
    with db.write() as s:
        store_posts(s, [post(1, likes=40, fetched=new, text="new text", followers=500)])
    with db.write() as s:
        store_posts(s, [post(1, likes=10, fetched=old, text="old text", followers=90)])
    with db.read() as s:
        row = s.scalars(select(Post)).one()
        author = s.scalars(select(Author)).one()
        assert (row.likes, row.text, row.metrics_at) == (40, "new text", new)
        assert (author.followers, author.followers_at) == (500, new)
        assert s.scalar(select(func.count()).select_from(MetricSnapshot)) == 2
        assert s.scalar(select(func.count()).select_from(AuthorFollowers)) == 2


def test_unknown_metrics_stay_null_not_zero(db: Database) -> None:
    with db.write() as s:
        store_posts(s, [post(1, likes=None)])
    with db.read() as s:
        row = s.scalars(select(Post)).one()
        assert row.views is None and row.quotes is None and row.likes is None and row.reposts == 2


def test_large_batches_are_chunked(db: Database) -> None:
    batch = [post(n, author=n) for n in range(2_600)]  # > 1 000 rows and > SQLite's old 999 params
    with db.write() as s:
        result = store_posts(s, batch)
    assert result.new == 2_600
    assert count(db, Post) == 2_600 and count(db, Author) == 2_600


def test_same_toot_from_two_instances_is_one_post(db: Database) -> None:
    uri = "https://a.example/users/u/statuses/1"
    a = post(1, platform="mastodon", source="https://a.example", source_id="1")
    b = post(1, platform="mastodon", source="https://b.example", source_id="777",
             fetched=T0 + dt.timedelta(minutes=1))
    a.platform_id = b.platform_id = uri
    with db.write() as s:
        store_posts(s, [a])
    with db.write() as s:
        store_posts(s, [b])
    assert count(db, Post) == 1
    with db.read() as s:
        sightings = s.execute(select(PostSource.source, PostSource.source_id).order_by(PostSource.source)).all()
        assert [tuple(r) for r in sightings] == [("https://a.example", "1"), ("https://b.example", "777")]
        assert s.scalars(select(Post.source)).one() == "https://a.example"  # first seen


def test_utc_round_trip(db: Database) -> None:
    local = dt.datetime(2023, 3, 26, 4, 30, tzinfo=HELSINKI)  # just after the DST change (UTC+3)
    with db.write() as s:
        store_posts(s, [post(1, created=local, fetched=local + dt.timedelta(minutes=5))])
    with db.read() as s:
        row = s.scalars(select(Post)).one()
    assert row.created_at == local
    assert row.created_at.utcoffset() == dt.timedelta(0)
    assert row.created_at.replace(tzinfo=None) == dt.datetime(2023, 3, 26, 1, 30)
    with db.read() as s:  # the raw stored value is UTC too, not local time with the offset lost
        raw = s.execute(text("SELECT created_at FROM posts")).scalar_one()
    assert str(raw).startswith("2023-03-26 01:30:00")


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        post(1, created=dt.datetime(2023, 2, 9, 10, 0))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="naive datetime"):
        with db.write() as s:
            s.add(Stop(id="x", area="lappi", position=0, synced_at=dt.datetime(2023, 1, 1)))


def test_deleted_posts_are_marked_and_excluded_from_totals(db: Database) -> None:
    with db.write() as s:
        store_posts(s, [post(n) for n in range(3)])
        assert mark_deleted(s, "x", ["id-1", "id-404"], T0) == 1
        assert mark_deleted(s, "x", ["id-1"], T0) == 0
    with db.read() as s:
        assert post_totals(s) == {"x": 2}


def test_stops_sync_and_tags_keep_manual_attributions(db: Database) -> None:
    stops = [StopSettings(area="pirkanmaa", date=dt.date(2023, 2, 9)), StopSettings(area="lappi")]
    with db.write() as s:
        sync_stops(s, stops, T0)
        store_posts(s, [post(n) for n in range(3)])
    with db.read() as s:
        ids = dict(s.execute(select(Post.platform_id, Post.id)).all())
        assert s.scalars(select(Stop.id).order_by(Stop.position)).all() == ["pirkanmaa", "lappi"]
    day = dt.date(2023, 2, 9)
    with db.write() as s:
        store_tags(s, [TagRow(ids["id-0"], ["pirkanmaa"], "pirkanmaa", "area", 1.0, day),
                       TagRow(ids["id-1"], [], None, "none", 0.0, day)], T0)
        s.execute(Attribution.__table__.update().where(Attribution.post_id == ids["id-1"])
                  .values(stop_id="lappi", method="manual", manual=True, confidence=1.0))
    with db.write() as s:  # re-tagging: the manual decision survives, the rest is replaced
        store_tags(s, [TagRow(ids["id-0"], ["pirkanmaa", "lappi"], None, "none", 0.0, day),
                       TagRow(ids["id-1"], ["kainuu"], None, "none", 0.0, day)], T0)
        sync_stops(s, stops[:1], T0)
    with db.read() as s:
        assert posts_per_stop(s) == {None: 1, "lappi": 1}
        assert sorted(s.scalars(select(PostArea.area).where(PostArea.post_id == ids["id-0"]))) == ["lappi", "pirkanmaa"]
        assert s.scalars(select(Stop.id)).all() == ["pirkanmaa"]


def test_schema_behind_is_upgraded_or_refused(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert db.upgrade("0001").current == "0001"
        head = db.schema_state().head
        with pytest.raises(DatabaseError, match=rf"schema is at 0001, this tracker needs {head}: run `tracker db upgrade`"):
            db.ensure_schema(auto_upgrade=False)
        assert db.ensure_schema(auto_upgrade=True).current == head
        with db.engine.connect() as conn:
            assert "tracker_state" in inspect(conn).get_table_names()
    finally:
        db.dispose()


def test_cli_db_upgrade_to_a_revision_and_refusal(tmp_path) -> None:
    import subprocess
    import sys

    settings = tmp_path / "settings.toml"
    settings.write_text('[campaign]\nname = "T"\nhashtags = ["t"]\n[storage]\nauto_upgrade = false\n')

    def tracker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tracker", "--settings", str(settings), *args],
                              capture_output=True, text=True, timeout=60)

    assert tracker("db", "upgrade", "--revision", "0001").returncode == 0
    head = Database("sqlite://").schema_state().head
    refused = tracker("db", "status")
    assert refused.returncode == 3
    assert refused.stderr.strip() == f"error: database schema is at 0001, this tracker needs {head}: run `tracker db upgrade`"
    assert f"0001 -> {head}" in tracker("db", "upgrade").stdout
    assert tracker("db", "status").returncode == 0


def test_migrations_match_the_models(db: Database) -> None:
    """A model change without a migration would show up here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []


# -- store_posts: the fast paths and the coarse `last seen` ---------------------------------------


def author_row(db: Database, platform_id: str = "user-0") -> Author:
    with db.read() as s:
        return s.scalars(select(Author).where(Author.platform_id == platform_id)).one()


def test_last_seen_and_followers_at_move_by_the_step_or_with_a_change(db: Database) -> None:
    from storage.upserts import SEEN_STEP

    assert SEEN_STEP == dt.timedelta(hours=1)
    with db.write() as s:
        store_posts(s, [post(0, author=0)])
    a = author_row(db)
    assert (a.first_seen_at, a.last_seen_at, a.followers_at, a.followers) == (T0, T0, T0, 100)

    # seen again within the step, nothing else new: the row is not written
    soon = T0 + SEEN_STEP - dt.timedelta(microseconds=1)
    with db.write() as s:
        store_posts(s, [post(1, author=0, fetched=soon)])
    a = author_row(db)
    assert (a.last_seen_at, a.followers_at, a.followers) == (T0, T0, 100)

    # a step after the stored time: both move to the sighting
    later = T0 + SEEN_STEP
    with db.write() as s:
        store_posts(s, [post(2, author=0, fetched=later)])
    a = author_row(db)
    assert (a.last_seen_at, a.followers_at) == (later, later)

    # within the step but a new follower count: written, with the exact time
    changed = later + dt.timedelta(minutes=5)
    with db.write() as s:
        store_posts(s, [post(3, author=0, fetched=changed, followers=120)])
    a = author_row(db)
    assert (a.last_seen_at, a.followers_at, a.followers) == (changed, changed, 120)

    # within the step, a new handle (no follower count this time): written, exact last_seen_at;
    # followers_at stays with the count it dates
    renamed = changed + dt.timedelta(minutes=5)
    p = post(4, author=0, fetched=renamed, followers=None)
    p.author = PostAuthor(platform_id="user-0", handle="renamed", display_name="User 0", followers=None)
    with db.write() as s:
        store_posts(s, [p])
    a = author_row(db)
    assert (a.handle, a.last_seen_at, a.followers_at, a.followers) == ("renamed", renamed, changed, 120)
    assert a.first_seen_at == T0
    with db.read() as s:
        history = s.execute(select(AuthorFollowers.observed_at, AuthorFollowers.followers)
                            .order_by(AuthorFollowers.observed_at)).all()
    assert [tuple(h) for h in history] == [(T0, 100), (changed, 120)]  # changes, not repeats


def test_older_author_details_never_overwrite_newer(db: Database) -> None:
    new, old = T0 + dt.timedelta(minutes=10), T0
    p_new = post(1, author=0, fetched=new)
    p_old = post(2, author=0, fetched=old, followers=90)
    p_old.author = PostAuthor(platform_id="user-0", handle="old-handle", display_name="Old", followers=90)
    with db.write() as s:
        store_posts(s, [p_new])
    with db.write() as s:
        store_posts(s, [p_old])
    a = author_row(db)
    assert (a.handle, a.display_name, a.followers, a.followers_at, a.last_seen_at) == ("user0", "User 0", 100, new, new)
    with db.read() as s:  # the older observation is still history: it differed from the count then
        history = s.execute(select(AuthorFollowers.observed_at, AuthorFollowers.followers)
                            .order_by(AuthorFollowers.observed_at)).all()
    assert [tuple(h) for h in history] == [(old, 90), (new, 100)]


def full_post(n: int, fetched: dt.datetime, **changes: object) -> NormalisedPost:
    values: dict[str, object] = dict(
        platform="mastodon", platform_id=f"https://a.example/users/u/statuses/{n}",
        author=PostAuthor(platform_id="https://a.example/users/u", handle="u@a.example", display_name="Ü",
                          url="https://a.example/@u", followers=7),
        text="Kiertue Oulussa 'lainaus' \"x\" \\ ; -- #ihmisensote #sote", created_at=T0 - dt.timedelta(hours=n),
        fetched_at=fetched, url=f"https://a.example/@u/{n}", language="fi", hashtags=("ihmisensote", "sote", "ö"),
        kind=PostKind.QUOTE, referenced_id="https://b.example/s/1", edited_at=T0 - dt.timedelta(minutes=n),
        metrics=Metrics(likes=1, reposts=None, replies=3, quotes=0, views=None),
        source="https://a.example", source_id=str(n))
    values.update(changes)
    return NormalisedPost(**values)  # type: ignore[arg-type]


def stored_post(db: Database, platform_id: str) -> dict[str, object]:
    with db.read() as s:
        row = s.scalars(select(Post).where(Post.platform_id == platform_id)).one()
        return {c: getattr(row, c) for c in Post.__table__.columns.keys()}


def test_every_column_round_trips_on_insert_and_update(db: Database) -> None:
    """New posts go in by a plain INSERT / COPY, known ones by the upsert: both store the same."""
    first = full_post(1, T0)
    with db.write() as s:
        result = store_posts(s, [first, full_post(2, T0)])
    assert (result.new, result.updated) == (2, 0)
    row = stored_post(db, first.platform_id)
    assert row["id"] == result.ids[("mastodon", first.platform_id)]
    expected = {
        "platform": "mastodon", "url": first.url, "text": first.text, "language": "fi",
        "created_at": first.created_at, "kind": "quote", "referenced_id": "https://b.example/s/1",
        "hashtags": ["ihmisensote", "sote", "ö"], "origin": "api", "source": "https://a.example", "source_id": "1",
        "edited_at": first.edited_at, "deleted_at": None, "updated_at": T0, "likes": 1, "reposts": None,
        "replies": 3, "quotes": 0, "views": None, "metrics_at": T0,
    }
    assert {k: row[k] for k in expected} == expected
    with db.read() as s:
        raw = s.execute(text("SELECT hashtags FROM posts WHERE platform_id = :p"),
                        {"p": first.platform_id}).scalar_one()
    assert (raw if isinstance(raw, list) else __import__("json").loads(raw)) == ["ihmisensote", "sote", "ö"]

    later = T0 + dt.timedelta(hours=1)
    newer = full_post(1, later, text="edited", hashtags=(), language=None, kind=PostKind.ORIGINAL, referenced_id=None,
                      metrics=Metrics(likes=5, reposts=2, replies=None, quotes=None, views=None))
    with db.write() as s:
        result = store_posts(s, [newer, full_post(3, later)])
    assert (result.new, result.updated) == (1, 1)
    row = stored_post(db, first.platform_id)
    # newest wins; a value the newer copy does not have (None) keeps the stored one
    assert (row["text"], row["hashtags"], row["language"], row["kind"], row["referenced_id"]) == (
        "edited", [], "fi", "original", "https://b.example/s/1")
    assert (row["likes"], row["reposts"], row["replies"], row["metrics_at"], row["updated_at"]) == (
        5, 2, 3, later, later)
    assert row["first_seen_at"] == stored_post(db, full_post(2, T0).platform_id)["first_seen_at"]
    with db.read() as s:
        snaps = s.execute(select(MetricSnapshot.fetched_at, MetricSnapshot.likes, MetricSnapshot.replies)
                          .where(MetricSnapshot.post_id == row["id"]).order_by(MetricSnapshot.fetched_at)).all()
    assert [tuple(r) for r in snaps] == [(T0, 1, 3), (later, 5, None)]


def test_a_batch_of_known_and_new_posts(db: Database) -> None:
    with db.write() as s:
        first = store_posts(s, [post(n, author=n % 3) for n in range(0, 2_600, 2)])
    assert (first.new, first.updated) == (1_300, 0)
    later = T0 + dt.timedelta(minutes=1)
    batch = [post(n, author=n % 3, fetched=later, likes=n) for n in range(2_600)]
    with db.write() as s:
        again = store_posts(s, batch)
    assert (again.received, again.new, again.updated) == (2_600, 1_300, 1_300)
    assert {k: v for k, v in again.ids.items() if k in first.ids} == first.ids
    with db.read() as s:
        ids = dict(s.execute(select(Post.platform_id, Post.id)).all())
        assert {("x", k): v for k, v in ids.items()} == again.ids
        assert s.scalar(select(func.count()).select_from(MetricSnapshot)) == 1_300 + 2_600
        assert s.scalar(select(func.sum(Post.likes))) == sum(range(2_600))
    assert count(db, Post) == 2_600


def test_a_failure_mid_batch_stores_nothing_of_it(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import upserts

    with db.write() as s:
        store_posts(s, [post(0)])
    real = upserts._Writer.write

    def fail_at_the_last_statement(self, stmt, rows):  # type: ignore[no-untyped-def]
        if stmt is self.sql.ignore["post_sources"]:
            raise RuntimeError("disk gone")
        return real(self, stmt, rows)

    monkeypatch.setattr(upserts._Writer, "write", fail_at_the_last_statement)
    later = T0 + dt.timedelta(hours=3)
    with pytest.raises(RuntimeError, match="disk gone"):
        with db.write() as s:
            store_posts(s, [post(n, fetched=later, followers=555, author=n) for n in range(10)])
    assert count(db, Post) == 1 and count(db, Author) == 1 and count(db, MetricSnapshot) == 1
    assert count(db, AuthorFollowers) == 1
    assert author_row(db).last_seen_at == T0


@pytest.mark.postgres
def test_postgres_new_post_stored_meanwhile_by_another_transaction(pg_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the lookup and the COPY another transaction commits one of the 'new' posts: the
    COPY is undone alone and the batch goes through the upsert, as if it had been seen."""
    from storage import upserts

    db = open_database(pg_url)
    other = open_database(pg_url)
    try:
        with db.write() as s:  # the authors are known: neither transaction writes (locks) them
            store_posts(s, [post(n, fetched=T0 - dt.timedelta(minutes=2)) for n in range(10, 17)])
        real = upserts._Writer.next_ids
        done = []

        def racing(self, table, n):  # type: ignore[no-untyped-def]
            if not done:
                done.append(True)
                with other.write() as s2:
                    store_posts(s2, [post(1, likes=9, fetched=T0 - dt.timedelta(minutes=1))])
            return real(self, table, n)

        monkeypatch.setattr(upserts._Writer, "next_ids", racing)
        with db.write() as s:
            result = store_posts(s, [post(n) for n in range(3)])
        assert done and (result.received, result.new, result.updated) == (3, 2, 1)
        with db.read() as s:
            wanted = select(Post).where(Post.platform_id.in_(["id-0", "id-1", "id-2"]))
            rows = {r.platform_id: r for r in s.scalars(wanted)}
            assert set(rows) == {"id-0", "id-1", "id-2"}
            assert {("x", k): r.id for k, r in rows.items()} == result.ids
            assert rows["id-1"].likes == 1 and rows["id-1"].metrics_at == T0  # the newer fetch won
            assert s.scalar(select(func.count()).select_from(MetricSnapshot)) == 7 + 4
    finally:
        db.dispose()
        other.dispose()


@pytest.mark.postgres
def test_postgres_copy_errors_are_reported_as_sqlalchemy_errors(pg_url: str) -> None:
    """A COPY error is raised as SQLAlchemy's DataError, like any statement's; `store_posts`
    sorts it as a refused value: that post is skipped, named with the kind of error."""
    from sqlalchemy.exc import DataError

    from storage import upserts

    db = open_database(pg_url)
    try:
        with pytest.raises(DataError, match="too long"):
            with db.write() as s:
                upserts._store_page(upserts._Writer(s), [post(1, platform="p" * 40)], "api")
        with db.write() as s:
            result = store_posts(s, [post(1, platform="p" * 40)])
        [(platform, _, why)] = result.refused
        assert platform == "p" * 40 and "StringDataRightTruncation, SQLSTATE 22001" in why
        assert count(db, Post) == 0 and count(db, Author) == 0
    finally:
        db.dispose()


def test_sqlite_errors_are_reported_as_sqlalchemy_errors(tmp_path: Path) -> None:
    """store_posts runs its SQLite statements on the DBAPI connection: a failure still comes
    back as SQLAlchemy's exception (what the callers catch), and the transaction stores nothing."""
    from sqlalchemy.exc import DBAPIError

    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with db.write() as s:
            s.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON metric_snapshots "
                           "BEGIN SELECT RAISE(ABORT, 'snapshot refused by the test'); END"))
        with pytest.raises(DBAPIError, match="snapshot refused by the test"):
            with db.write() as s:
                store_posts(s, [post(1), post(2)])
        assert count(db, Post) == 0 and count(db, Author) == 0
    finally:
        db.dispose()
