"""Re-tagging stored posts: after the tour changed (a stop moved, a window widened), or for
posts stored before they could be tagged. Manual attributions survive."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from storage.db import Database
from storage.queries import PostToTag, TagRow, get_state, posts_to_tag, set_state, store_tags
from tracker.pipeline import TaggerLike
from tracker.settings import Settings

TOUR_KEY = "tour_fingerprint"


def tour_fingerprint(settings: Settings) -> str:
    """Everything attributions depend on: stops, aliases, windows, timezone."""
    data = {
        "tz": settings.campaign.timezone,
        "window": [settings.tagging.days_before, settings.tagging.days_after],
        "stops": [[s.id, s.area, s.date.isoformat() if s.date else None, list(s.aliases)]
                  for s in settings.tour.stops],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def tag_rows(tagger: TaggerLike, posts: list[PostToTag]) -> list[TagRow]:
    rows = []
    for post in posts:
        tagged = tagger.tag(post.text or "", post.hashtags, post.created_at)
        a = tagged.attribution
        rows.append(TagRow(post.id, tagged.areas, a.stop_id, a.method, a.confidence, tagged.local_date))
    return rows


def retag(db: Database, tagger: TaggerLike, *, only_untagged: bool = False, batch: int = 5000) -> int:
    """Tag stored posts in batches, one transaction per batch; returns how many were tagged."""
    done = last = 0
    while True:
        with db.read() as session:
            posts = posts_to_tag(session, after_id=last, only_untagged=only_untagged, limit=batch)
        if not posts:
            return done
        last = posts[-1].id
        with db.write() as session:
            done += store_tags(session, tag_rows(tagger, posts), dt.datetime.now(dt.timezone.utc))


def retag_if_tour_changed(db: Database, settings: Settings, tagger: TaggerLike) -> int | None:
    """Re-tag everything when the tour differs from the one the tags were computed with.
    Returns the number re-tagged, or None when nothing changed."""
    fingerprint = tour_fingerprint(settings)
    with db.read() as session:
        previous = get_state(session, TOUR_KEY)
    if previous == fingerprint:
        return None
    count = retag(db, tagger) if previous is not None else retag(db, tagger, only_untagged=True)
    with db.write() as session:
        set_state(session, TOUR_KEY, fingerprint, dt.datetime.now(dt.timezone.utc))
    return count
