"""Hostile text for tests, and the one comparison "what is stored is what tracker.textsafe made".

Shared by the hostile-input tests of collection and of import: a test builds or imports posts
with these characters, then checks each stored row with `stored_post(...) == stored_as(safe)`,
where `safe = tracker.textsafe.safe_post(post)` (a str there means: not stored).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Author as AuthorRow
from storage.models import Post
from tracker.posts import NormalisedPost

HOSTILE_CHARS = ("\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\u202e", "\u202d", "\u2066", "\u200f", "\x1b",
                 "\x07", "\r", "\n", "\t", "\x7f", "\x85", "\ufeff", "\ufffd", "…", "\U0001f600", "ä", "'", '"',
                 "\\", "%", "[", "]", "<", ">", "&")
"""NUL, lone surrogates (high and low), bidirectional overrides and isolates, terminal escapes,
line breaks, a BOM, and characters that quoting and markup treat specially."""


def stored_as(post: NormalisedPost) -> dict[str, Any]:
    """The stored form of a post (already passed through tracker.textsafe.safe_post): the
    columns `stored_post` reads."""
    a, m = post.author, post.metrics
    return {
        "platform": post.platform, "platform_id": post.platform_id, "url": post.url, "text": post.text,
        "language": post.language, "created_at": post.created_at, "kind": post.kind.value,
        "referenced_id": post.referenced_id, "hashtags": list(post.hashtags), "source": post.source,
        "source_id": post.source_id, "edited_at": post.edited_at, "likes": m.likes, "reposts": m.reposts,
        "replies": m.replies, "quotes": m.quotes, "views": m.views,
        "author": {"platform_id": a.platform_id, "handle": a.handle, "display_name": a.display_name, "url": a.url,
                   "followers": a.followers},
    }


def stored_post(session: Session, platform: str, platform_id: str) -> dict[str, Any] | None:
    """The stored post (and its author) in the shape of `stored_as`, or None."""
    post = session.scalars(select(Post).where(Post.platform == platform, Post.platform_id == platform_id)).one_or_none()
    if post is None:
        return None
    author = session.get(AuthorRow, post.author_id) if post.author_id is not None else None
    row = {c: getattr(post, c) for c in ("platform", "platform_id", "url", "text", "language", "created_at", "kind",
                                         "referenced_id", "hashtags", "source", "source_id", "edited_at", "likes",
                                         "reposts", "replies", "quotes", "views")}
    row["author"] = None if author is None else {
        c: getattr(author, c) for c in ("platform_id", "handle", "display_name", "url", "followers")}
    return row
