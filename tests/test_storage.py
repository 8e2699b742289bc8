"""Storage on real SQLite files and real PostgreSQL: migrations, idempotent upserts, UTC."""

from __future__ import annotations

import datetime as dt
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
        with pytest.raises(DatabaseError, match=r"schema is at 0001, this tracker needs 0003: run `tracker db upgrade`"):
            db.ensure_schema(auto_upgrade=False)
        assert db.ensure_schema(auto_upgrade=True).current == "0003"
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
    refused = tracker("db", "status")
    assert refused.returncode == 3
    assert refused.stderr.strip() == "error: database schema is at 0001, this tracker needs 0003: run `tracker db upgrade`"
    assert "0001 -> 0003" in tracker("db", "upgrade").stdout
    assert tracker("db", "status").returncode == 0


def test_migrations_match_the_models(db: Database) -> None:
    """A model change without a migration would show up here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
