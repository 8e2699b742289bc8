"""Posts made storable on both databases at the edge: `ingest` passes every post through here.

Posts come from the public (three platforms and import files), and one value a database refuses
used to fail a whole page, and the same page again on every later run. PostgreSQL and SQLite
also disagree: SQLite keeps a 600-character name or a NUL that PostgreSQL refuses. So every post
is brought to one form both accept, field by field, before it reaches storage:

- Text, names, links, hashtags: a lone surrogate (no UTF-8 form exists: both drivers refuse it)
  becomes U+FFFD, a NUL is removed (PostgreSQL refuses it). Other control, format and
  right-to-left characters are stored as received; what shows text cleans it
  (tracker/display_text.py).
- Names whose column has a length (handle 256, display name 512 characters, from
  storage/models.py): a longer one is cut to the limit, its last character '…'.
- Language (16): a longer value is no language code: None (unknown).
- Identifiers (platform, post id, author id, referenced id, source, source id) are stored exactly
  or not at all. One that is too long for its column, or holds a NUL or a lone surrogate, cannot
  be stored faithfully (changed, it would name another post or merge two), so the post is
  skipped and logged with its platform, a shortened id and the reason.
- Counts (followers, likes, reposts, replies, quotes, views) are BIGINT: a value that is not a
  whole number from 0 to 2**63-1 (10**30, -5, a float) becomes None, "not reported": never a
  made-up number such as a clamped maximum.
- Times: `created_at` and `fetched_at` must lie within the years 2..9998 (UTC), so that every
  timezone conversion and time step after storage stays within Python's dates; a post outside is
  skipped and logged. An `edited_at` outside becomes None. (Naive datetimes are a bug in the
  caller, not hostile input: storage still refuses them.)

Clean posts (nearly all) cost one pass over their text and a few comparisons: `safe_post` hands
back the same object. `safe_post` is what other tests reuse: what a post must be stored as.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.models import Author as AuthorRow
from storage.models import Post as PostRow
from storage.models import PostSource as SourceRow
from tracker.display_text import ELLIPSIS, storable_text
from tracker.posts import Author, Metrics, NormalisedPost

log = logging.getLogger(__name__)

_UTC = dt.timezone.utc


def _length(column: object) -> int:
    return int(column.type.length)  # type: ignore[attr-defined]


PLATFORM_LENGTH = _length(PostRow.__table__.c.platform)
ID_LENGTH = _length(PostRow.__table__.c.platform_id)
AUTHOR_ID_LENGTH = _length(AuthorRow.__table__.c.platform_id)
REFERENCED_ID_LENGTH = _length(PostRow.__table__.c.referenced_id)
SOURCE_LENGTH = _length(SourceRow.__table__.c.source)
SOURCE_ID_LENGTH = _length(SourceRow.__table__.c.source_id)
HANDLE_LENGTH = _length(AuthorRow.__table__.c.handle)
NAME_LENGTH = _length(AuthorRow.__table__.c.display_name)
LANGUAGE_LENGTH = _length(PostRow.__table__.c.language)
MAX_COUNT = 2**63 - 1
"""BIGINT on PostgreSQL, INTEGER on SQLite."""
EARLIEST = dt.datetime(2, 1, 1, tzinfo=_UTC)
LATEST = dt.datetime(9998, 12, 31, tzinfo=_UTC)
"""Times outside cannot be moved by a day (a timezone, a week's step) without leaving Python's dates."""


def storable(value: str) -> bool:
    """True when both databases store `value` as it is: no NUL, no lone surrogate.

    (`isascii` reads a flag; UTF-8 encoding refuses exactly the lone surrogates and runs in C,
    several times faster than a regular expression over non-ASCII text.)"""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: str) -> str:
    """NUL removed, lone surrogates as U+FFFD; `value` itself when nothing needs doing."""
    return value if storable(value) else storable_text(value)


def shorten(value: str, limit: int) -> str:
    """At most `limit` characters: a longer value cut, its last character '…'."""
    if len(value) <= limit:
        return value
    return value[: limit - 1] + ELLIPSIS


def _count(value: object) -> int | None:
    """A count both databases store (BIGINT), or None (unknown)."""
    if value.__class__ is int and 0 <= value <= MAX_COUNT:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    return None


def _time_ok(value: object) -> bool:
    """An aware time within EARLIEST..LATEST (naive times pass: storage refuses them loudly)."""
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        return True
    return EARLIEST <= value <= LATEST


def _clean(p: NormalisedPost) -> bool:
    """The fast check: True when the post is stored as it is (every rule above already holds).

    Written out for speed (it runs on every post collected): one scan of the post's text, the
    rest comparisons."""
    a, m = p.author, p.metrics
    handle, name, language, ref, source, source_id = (a.handle, a.display_name, p.language, p.referenced_id,
                                                      p.source, p.source_id)
    if (len(p.platform) > PLATFORM_LENGTH or len(p.platform_id) > ID_LENGTH or len(a.platform_id) > AUTHOR_ID_LENGTH
            or (handle is not None and len(handle) > HANDLE_LENGTH)
            or (name is not None and len(name) > NAME_LENGTH)
            or (language is not None and len(language) > LANGUAGE_LENGTH)
            or (ref is not None and len(ref) > REFERENCED_ID_LENGTH)
            or (source is not None and len(source) > SOURCE_LENGTH)
            or (source_id is not None and len(source_id) > SOURCE_ID_LENGTH)):
        return False
    for count in (a.followers, m.likes, m.reposts, m.replies, m.quotes, m.views):
        if count is not None and (count.__class__ is not int or count < 0 or count > MAX_COUNT):
            return False
    for t in (p.created_at, p.fetched_at, p.edited_at):
        if t is not None and (t.__class__ is not dt.datetime or t.tzinfo is not _UTC or not EARLIEST <= t <= LATEST):
            return False
    return storable("".join((p.platform, p.platform_id, p.text or "", a.platform_id, handle or "", name or "",
                             a.url or "", p.url or "", language or "", ref or "", source or "", source_id or "",
                             *p.hashtags)))


def _refusal(p: NormalisedPost) -> str | None:
    """Why the post cannot be stored faithfully, or None."""
    identifiers = (("platform", p.platform, PLATFORM_LENGTH), ("id", p.platform_id, ID_LENGTH),
                   ("author id", p.author.platform_id, AUTHOR_ID_LENGTH),
                   ("referenced id", p.referenced_id, REFERENCED_ID_LENGTH),
                   ("source", p.source, SOURCE_LENGTH), ("source id", p.source_id, SOURCE_ID_LENGTH))
    for name, value, limit in identifiers:
        if value is None:
            continue
        if not isinstance(value, str):
            return f"{name} is not text"
        if len(value) > limit:
            return f"{name} has {len(value)} characters, at most {limit} fit"
        if not storable(value):
            return f"{name} holds a NUL or invalid Unicode"
    for name in ("created_at", "fetched_at"):
        if not _time_ok(getattr(p, name)):
            return f"{name} is outside the years {EARLIEST.year}..{LATEST.year}"
    return None


def _optional_text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def _repaired(p: NormalisedPost) -> NormalisedPost:
    """The post with every rule applied (its identifiers and times known to be fine)."""
    a, m = p.author, p.metrics
    handle = None if a.handle is None else shorten(clean_text(a.handle), HANDLE_LENGTH)
    name = None if a.display_name is None else shorten(clean_text(a.display_name), NAME_LENGTH)
    author = Author(platform_id=a.platform_id, handle=handle,  # type: ignore[arg-type]
                    display_name=name, url=_optional_text(a.url), followers=_count(a.followers))
    metrics = Metrics(likes=_count(m.likes), reposts=_count(m.reposts), replies=_count(m.replies),
                      quotes=_count(m.quotes), views=_count(m.views))
    language = _optional_text(p.language)
    if language is not None and len(language) > LANGUAGE_LENGTH:
        language = None
    hashtags = tuple(t for t in (clean_text(tag) for tag in p.hashtags) if t)
    text = _optional_text(p.text)
    return dataclasses.replace(
        p, author=author, metrics=metrics, text=text, url=_optional_text(p.url),  # type: ignore[arg-type]
        language=language, hashtags=hashtags, edited_at=p.edited_at if _time_ok(p.edited_at) else None)


def safe_post(post: NormalisedPost) -> NormalisedPost | str:
    """The post as both databases store it (the same object when it needs nothing), or the
    reason it cannot be stored faithfully (an impossible identifier or time)."""
    if _clean(post):
        return post
    reason = _refusal(post)
    if reason is not None:
        return reason
    return _repaired(post)


def shown_id(value: object, limit: int = 80) -> str:
    """An id for a log line: escaped (no control characters reach a terminal), shortened."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        return f"{ascii(text[:limit])[:-1]}…' ({len(text)} characters)"
    return ascii(text)


@dataclass(frozen=True, slots=True)
class Refused:
    """A post that was not stored, and why (no value of the post but its platform and id)."""

    platform: str
    platform_id: str
    reason: str


@dataclass(slots=True)
class SafePosts:
    posts: list[NormalisedPost] = field(default_factory=list)
    """The posts to store, each as `safe_post` made it."""
    refused: list[Refused] = field(default_factory=list)


def safe_posts(posts: Iterable[NormalisedPost]) -> SafePosts:
    """Every post made storable; those that cannot be are left out, each logged once."""
    out = SafePosts()
    keep, refuse = out.posts.append, out.refused.append
    for post in posts:
        safe = post if _clean(post) else safe_post(post)
        if isinstance(safe, str):
            platform = str(post.platform)
            log.warning("%s post %s skipped: %s", shown_id(platform, 32)[1:-1], shown_id(post.platform_id), safe)
            refuse(Refused(platform, str(post.platform_id), safe))
        else:
            keep(safe)
    return out
