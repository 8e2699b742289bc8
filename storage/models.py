"""The database schema (SQLAlchemy 2.x typed models). Changes go through Alembic migrations.

Every timestamp is stored in UTC (`UTCDateTime` refuses naive values, so an offset can never be
dropped silently, and hands back aware UTC datetimes on SQLite too).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Integer on SQLite keeps ROWID aliasing (fast autoincrement); BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive input is a bug and raises."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store a naive datetime ({value.isoformat()}); give it a timezone")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":  # stored as UTC text without offset: sortable, comparable
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime()}


class Author(Base):
    """An account on a platform, with its latest known follower count."""

    __tablename__ = "authors"
    __table_args__ = (UniqueConstraint("platform", "platform_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_id: Mapped[str] = mapped_column(String(512))
    handle: Mapped[str | None] = mapped_column(String(256))
    display_name: Mapped[str | None] = mapped_column(String(512))
    url: Mapped[str | None] = mapped_column(Text)
    followers: Mapped[int | None] = mapped_column(BigInteger)
    followers_at: Mapped[dt.datetime | None]
    """When `followers` was observed; moves in steps of an hour while nothing changes
    (storage.upserts.SEEN_STEP)."""
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    """Within an hour of the latest sighting (storage.upserts.SEEN_STEP): a page that brings
    nothing new does not rewrite the author row."""


class AuthorFollowers(Base):
    """Follower counts over time (one row per author per observation)."""

    __tablename__ = "author_followers"

    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id", ondelete="CASCADE"), primary_key=True)
    observed_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    followers: Mapped[int] = mapped_column(BigInteger)


class Post(Base):
    """A post, unique per platform + platform id (for Mastodon the ActivityPub `uri`).

    The latest metrics are kept on the row (for fast summaries); the history is in
    `metric_snapshots`.
    """

    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("platform", "platform_id"),
        Index("ix_posts_created_at", "created_at"),
        Index("ix_posts_author_id", "author_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_id: Mapped[str] = mapped_column(String(512))
    url: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("authors.id", ondelete="SET NULL"))
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(16), default="original")
    referenced_id: Mapped[str | None] = mapped_column(String(512))
    hashtags: Mapped[list[str]] = mapped_column(JSON, default=list)
    origin: Mapped[str] = mapped_column(String(16), default="api")
    """'api' (collected) or 'import' (a manual import file)."""
    source: Mapped[str | None] = mapped_column(String(512))
    """Where first seen (a Mastodon instance base URL); all sightings are in post_sources."""
    source_id: Mapped[str | None] = mapped_column(String(128))
    edited_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]
    first_seen_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    """fetched_at of the copy whose text/author details are stored."""
    likes: Mapped[int | None] = mapped_column(BigInteger)
    reposts: Mapped[int | None] = mapped_column(BigInteger)
    replies: Mapped[int | None] = mapped_column(BigInteger)
    quotes: Mapped[int | None] = mapped_column(BigInteger)
    views: Mapped[int | None] = mapped_column(BigInteger)
    metrics_at: Mapped[dt.datetime | None]


class PostSource(Base):
    """Each place a post was seen (Mastodon: instance + its local status id)."""

    __tablename__ = "post_sources"

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(512), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(128))


class MetricSnapshot(Base):
    """Engagement counts of one post at one moment; engagement curves come from these."""

    __tablename__ = "metric_snapshots"

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    fetched_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    likes: Mapped[int | None] = mapped_column(BigInteger)
    reposts: Mapped[int | None] = mapped_column(BigInteger)
    replies: Mapped[int | None] = mapped_column(BigInteger)
    quotes: Mapped[int | None] = mapped_column(BigInteger)
    views: Mapped[int | None] = mapped_column(BigInteger)


class Stop(Base):
    """A tour stop as last synced from the settings (settings are the source of truth)."""

    __tablename__ = "stops"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    area: Mapped[str] = mapped_column(String(32))
    date: Mapped[dt.date | None] = mapped_column(Date)
    city: Mapped[str | None] = mapped_column(String(256))
    venue: Mapped[str | None] = mapped_column(String(512))
    notes: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[dt.datetime]


class PostArea(Base):
    """An area a post names."""

    __tablename__ = "post_areas"
    __table_args__ = (Index("ix_post_areas_area", "area"),)

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    area: Mapped[str] = mapped_column(String(32), primary_key=True)


class Attribution(Base):
    """Which visit a post belongs to (stop_id None: none), how it was decided, how sure."""

    __tablename__ = "attributions"
    __table_args__ = (Index("ix_attributions_stop_id", "stop_id"),)

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    stop_id: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    """'area', 'date', 'none', or 'manual' (a person decided; survives re-tagging)."""
    confidence: Mapped[float] = mapped_column(Float)
    local_date: Mapped[dt.date] = mapped_column(Date)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    tagged_at: Mapped[dt.datetime]


class CollectionRun(Base):
    """One collection (or metrics refresh) of one platform."""

    __tablename__ = "collection_runs"
    __table_args__ = (Index("ix_collection_runs_platform_started_at", "platform", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="collect")
    """'collect' or 'refresh'."""
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    """'running', 'ok', 'partial' (some streams failed), 'rate_limited', 'failed', 'stopped',
    'interrupted' (its process ended without finishing it)."""
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    resume_at: Mapped[dt.datetime | None]
    host: Mapped[str | None] = mapped_column(String(255))
    """Host name and process id of the process running it: a 'running' run whose process is
    gone was interrupted (kill -9, power cut)."""
    pid: Mapped[int | None] = mapped_column(Integer)
    progress_at: Mapped[dt.datetime | None]
    """Start, then each stored page: a run elsewhere that stopped progressing long ago is stale."""


class CollectionCursor(Base):
    """Where the next poll of one stream starts. Advanced only after its posts are committed."""

    __tablename__ = "collection_cursors"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(512), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime]
    resume_at: Mapped[dt.datetime | None]
    """Not before this (a rate limit told us to wait)."""


class Gap(Base):
    """A time range of a stream known to be missed (could not be fetched)."""

    __tablename__ = "gaps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    stream: Mapped[str] = mapped_column(String(512))
    start_at: Mapped[dt.datetime | None]
    end_at: Mapped[dt.datetime | None]
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("collection_runs.id", ondelete="SET NULL"))
    recorded_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]


class SentReport(Base):
    """A report sent (or being sent) to one recipient list; recorded before sending."""

    __tablename__ = "sent_reports"
    __table_args__ = (UniqueConstraint("kind", "period", "recipients_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(32))
    recipients_key: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    """'sending', 'sent', 'failed'."""
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(256))
    error: Mapped[str | None] = mapped_column(Text)


class SchedulerLock(Base):
    """Only one scheduler per database: the holder refreshes its heartbeat."""

    __tablename__ = "scheduler_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[dt.datetime]
    heartbeat_at: Mapped[dt.datetime]


class TrackerState(Base):
    """Small facts the tracker keeps about itself (e.g. the fingerprint of the tour last tagged)."""

    __tablename__ = "tracker_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime]


class ForgottenAuthor(Base):
    """Traces of authors erased on request, so that nothing of theirs is stored again: digests
    only, never a handle, id or text (see storage/privacy.py and docs/privacy.md).

    `scheme` 'hmac-sha256': keyed with TRACKER_PRIVACY_KEY (the key is never stored);
    'sha256': an unkeyed digest of "platform:account id" made before keys (migration 0003).
    `kind`: what was digested: 'account', 'handle', 'post', or the 'key-check' row that tells
    whether the key in the environment is the one the list was made with."""

    __tablename__ = "forgotten_authors"

    author_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    forgotten_at: Mapped[dt.datetime]
    scheme: Mapped[str] = mapped_column(String(16), server_default="sha256", index=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="account")
