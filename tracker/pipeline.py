"""Normalised posts -> tags -> storage, in the caller's transaction (one way, no shortcuts)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from storage.queries import TagRow, store_tags
from storage.upserts import StoreResult, store_posts
from tracker.posts import NormalisedPost
from tracker.settings import Privacy
from tracker.textsafe import safe_posts


class TaggerLike(Protocol):
    def tag(self, text: str, hashtags: Any, created_at: dt.datetime) -> Any: ...


def ingest(
    session: Session, posts: Sequence[NormalisedPost], tagger: TaggerLike | None, *, origin: str = "api",
    privacy: Privacy | None = None,
) -> StoreResult:
    """Store posts and (with a tagger) their areas and visit; the caller commits.

    `privacy` (the settings' `[privacy]` section) may say not to store texts or author names:
    the stored copies are minimised, tagging still reads the full posts.
    Every post is first made storable on both databases (tracker/textsafe.py); one that cannot
    be, or that the database still refuses, is skipped, logged and listed in `result.refused`.
    """
    from tracker.forgotten import screen
    from tracker.privacy import minimise

    checked = safe_posts(posts)  # hostile text made storable; impossible posts skipped (logged)
    posts = checked.posts
    posts = screen(session, posts).posts  # forgotten people and reposts of their posts stay out
    stored = [minimise(p, privacy) for p in posts] if privacy is not None else posts
    result = store_posts(session, stored, origin=origin)
    result.refused[:0] = [(r.platform, r.platform_id, r.reason) for r in checked.refused]
    if tagger is not None and result.ids:
        newest: dict[tuple[str, str], NormalisedPost] = {}
        for post in posts:  # tag the copy that was stored: the most recently fetched
            key = (post.platform, post.platform_id)
            if key not in newest or post.fetched_at >= newest[key].fetched_at:
                newest[key] = post
        tag_rows = []
        for key, post in newest.items():
            if key not in result.ids:  # refused by the database
                continue
            tagged = tagger.tag(post.text, post.hashtags, post.created_at)
            a = tagged.attribution
            tag_rows.append(TagRow(result.ids[key], tagged.areas, a.stop_id, a.method, a.confidence,
                                   tagged.local_date))
        store_tags(session, tag_rows, dt.datetime.now(dt.timezone.utc))
    return result
