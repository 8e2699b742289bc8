"""The normalised post: the one shape every platform adapter returns.

Everything downstream of the adapters (tagging, storage, summaries, reports) sees only these
types, never a client library's objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone


class PostKind(str, enum.Enum):
    """What a post is relative to other posts."""

    ORIGINAL = "original"
    REPOST = "repost"
    REPLY = "reply"
    QUOTE = "quote"


@dataclass(frozen=True, slots=True)
class Author:
    """An account as seen when the post was fetched."""

    platform_id: str
    """Stable id on the platform (X user id, Mastodon account URL, Bluesky DID)."""
    handle: str
    display_name: str | None = None
    url: str | None = None
    followers: int | None = None
    """Follower count at fetch time; None when the platform did not say."""


@dataclass(frozen=True, slots=True)
class Metrics:
    """Public engagement counts at fetch time; None means 'not reported', never 0."""

    likes: int | None = None
    reposts: int | None = None
    replies: int | None = None
    quotes: int | None = None
    views: int | None = None


@dataclass(slots=True)
class NormalisedPost:
    """One post from any platform, in UTC, with plain (already sanitised) text."""

    platform: str
    """'x', 'mastodon', 'bluesky', or an import platform such as 'instagram'."""
    platform_id: str
    """Unique per platform: X tweet id, Mastodon ActivityPub `uri`, Bluesky AT-URI."""
    author: Author
    text: str
    created_at: datetime
    """Timezone-aware, UTC."""
    fetched_at: datetime
    """When these metrics and author details were read (timezone-aware, UTC)."""
    url: str | None = None
    language: str | None = None
    hashtags: tuple[str, ...] = ()
    """Lower-case, without '#'."""
    kind: PostKind = PostKind.ORIGINAL
    referenced_id: str | None = None
    """platform_id of the reposted / replied-to / quoted post."""
    metrics: Metrics = field(default_factory=Metrics)
    edited_at: datetime | None = None
    source: str | None = None
    """Where it was read: for Mastodon the instance base URL; None elsewhere."""
    source_id: str | None = None
    """The post's id at `source` (Mastodon's instance-local status id)."""

    def __post_init__(self) -> None:
        for name in ("created_at", "fetched_at", "edited_at"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
            setattr(self, name, value.astimezone(timezone.utc))
