"""The SQL of data protection: erase one author, apply retention, scrub deleted posts.

Every function runs inside the caller's transaction (the caller commits), so an erasure or a
retention pass is all or nothing. Rows are deleted explicitly (not left to ON DELETE CASCADE) so
the counts are exact on both databases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from storage.models import (
    Attribution,
    Author,
    AuthorFollowers,
    MetricSnapshot,
    Post,
    PostArea,
    PostSource,
)


@dataclass(frozen=True, slots=True)
class AuthorMatch:
    id: int
    platform: str
    platform_id: str
    handle: str | None


def find_authors(session: Session, handle: str, platform: str | None = None) -> list[AuthorMatch]:
    """Authors whose handle is `handle` (case-insensitive, a leading '@' ignored).

    A Mastodon handle is stored as user@domain; `user` alone also matches it.
    """
    wanted = handle.strip().lstrip("@").lower()
    if not wanted:
        return []
    condition = func.lower(Author.handle) == wanted
    if "@" not in wanted:
        condition = or_(condition, and_(Author.platform == "mastodon",
                                        func.lower(Author.handle).like(wanted.replace("%", r"\%")
                                                                       .replace("_", r"\_") + "@%",
                                                                       escape="\\")))
    stmt = select(Author.id, Author.platform, Author.platform_id, Author.handle).where(condition)
    if platform:
        stmt = stmt.where(Author.platform == platform.lower())
    return [AuthorMatch(*row) for row in session.execute(stmt.order_by(Author.platform, Author.id))]


@dataclass(slots=True)
class ErasureCounts:
    authors: int = 0
    posts: int = 0
    snapshots: int = 0
    sightings: int = 0
    areas: int = 0
    attributions: int = 0
    follower_history: int = 0
    reposts_blanked: int = 0
    """Others' reposts of the erased posts: their copied text removed (row and metrics kept)."""

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def erase_authors(session: Session, author_ids: Sequence[int]) -> ErasureCounts:
    """Delete these authors, their posts and everything hanging off those posts."""
    counts = ErasureCounts()
    ids = list(author_ids)
    if not ids:
        return counts
    posts = select(Post.id).where(Post.author_id.in_(ids)).scalar_subquery()
    erased = select(Post.platform, Post.platform_id).where(Post.author_id.in_(ids))
    refs = [(p, pid) for p, pid in session.execute(erased)]
    counts.snapshots = _rowcount(session.execute(delete(MetricSnapshot).where(MetricSnapshot.post_id.in_(posts))))
    counts.sightings = _rowcount(session.execute(delete(PostSource).where(PostSource.post_id.in_(posts))))
    counts.areas = _rowcount(session.execute(delete(PostArea).where(PostArea.post_id.in_(posts))))
    counts.attributions = _rowcount(session.execute(delete(Attribution).where(Attribution.post_id.in_(posts))))
    counts.posts = _rowcount(session.execute(delete(Post).where(Post.author_id.in_(ids))))
    # A repost (retweet) by someone else carries a copy of the erased text ("RT @handle: ...").
    by_platform: dict[str, list[str]] = {}
    for platform, platform_id in refs:
        by_platform.setdefault(platform, []).append(platform_id)
    for platform, platform_ids in by_platform.items():
        for start in range(0, len(platform_ids), 500):
            part = platform_ids[start:start + 500]
            counts.reposts_blanked += _rowcount(session.execute(
                update(Post)
                .where(Post.platform == platform, Post.kind == "repost", Post.referenced_id.in_(part),
                       Post.text.is_not(None))
                .values(text=None)))
    counts.follower_history = _rowcount(session.execute(
        delete(AuthorFollowers).where(AuthorFollowers.author_id.in_(ids))))
    counts.authors = _rowcount(session.execute(delete(Author).where(Author.id.in_(ids))))
    return counts


@dataclass(slots=True)
class RetentionCounts:
    posts_minimised: int = 0
    """Posts older than the cutoff whose text, url and language were removed."""
    authors_blanked: int = 0
    """Authors without a recent post whose handle, name and profile URL were removed."""
    deleted_posts_scrubbed: int = 0
    """Posts deleted or made private on the platform: text, url and author link removed."""
    orphan_authors_removed: int = 0
    """Authors left with no post at all (only ever seen in deleted posts): removed entirely."""
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"posts_minimised": self.posts_minimised, "authors_blanked": self.authors_blanked,
                "deleted_posts_scrubbed": self.deleted_posts_scrubbed,
                "orphan_authors_removed": self.orphan_authors_removed}


def minimise_old_posts(session: Session, cutoff: dt.datetime) -> int:
    """Posts created before `cutoff`: text, url and language to NULL (ids, dates, tags, metrics stay)."""
    return _rowcount(session.execute(
        update(Post)
        .where(Post.created_at < cutoff,
               or_(Post.text.is_not(None), Post.url.is_not(None), Post.language.is_not(None)))
        .values(text=None, url=None, language=None)))


def blank_inactive_authors(session: Session, cutoff: dt.datetime) -> int:
    """Authors with no post created since `cutoff`: handle, display name and URL to NULL.

    The row, its id and follower counts stay, so unique authors and potential reach of old
    visits are unchanged.
    """
    recent = exists().where(Post.author_id == Author.id, Post.created_at >= cutoff)
    return _rowcount(session.execute(
        update(Author)
        .where(~recent, or_(Author.handle.is_not(None), Author.display_name.is_not(None),
                            Author.url.is_not(None)))
        .values(handle=None, display_name=None, url=None)
        .execution_options(synchronize_session=False)))


def scrub_deleted_posts(session: Session) -> int:
    """Posts marked deleted (gone or private on the platform): text, url, language, author link
    to NULL. Summaries already leave deleted posts out, so no figure changes. Seen live again, a
    post gets everything back from the newer fetch (the upsert keeps newer non-NULL values)."""
    return _rowcount(session.execute(
        update(Post)
        .where(Post.deleted_at.is_not(None),
               or_(Post.text.is_not(None), Post.url.is_not(None), Post.author_id.is_not(None),
                   Post.language.is_not(None)))
        .values(text=None, url=None, language=None, author_id=None)))


def remove_orphan_authors(session: Session, seen_before: dt.datetime) -> int:
    """Authors no post points to any more and not seen since `seen_before`: deleted with their
    follower history. (`seen_before` keeps clear of an ingest in progress in another transaction.)"""
    orphan = ~exists().where(Post.author_id == Author.id)
    ids = list(session.scalars(select(Author.id).where(orphan, Author.last_seen_at < seen_before)))
    if not ids:
        return 0
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        session.execute(delete(AuthorFollowers).where(AuthorFollowers.author_id.in_(part)))
        session.execute(delete(Author).where(Author.id.in_(part)))
    return len(ids)


def author_identities(session: Session) -> dict[tuple[str, str], str]:
    """(platform, lower-case handle) -> the author's stable platform id, for pseudonymising."""
    rows = session.execute(select(Author.platform, Author.handle, Author.platform_id)
                           .where(Author.handle.is_not(None)))
    return {(platform, handle.lower()): platform_id for platform, handle, platform_id in rows}


def author_hash(platform: str, author_platform_id: str) -> str:
    """The only trace kept of an erased account: sha256 of platform and account id."""
    return hashlib.sha256(f"{platform}:{author_platform_id}".encode()).hexdigest()


def remember_forgotten(session: Session, authors: Sequence[tuple[str, str]], now: dt.datetime) -> None:
    """Record (platform, account id) pairs as erased; idempotent."""
    from storage.models import ForgottenAuthor
    from storage.upserts import _insert

    rows = [{"author_hash": author_hash(p, a), "forgotten_at": now} for p, a in authors]
    if rows:
        session.execute(_insert(session, ForgottenAuthor.__table__).values(rows)
                        .on_conflict_do_nothing(index_elements=["author_hash"]))


def forgotten_among(session: Session, authors: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (platform, account id) pairs were erased on request."""
    from storage.models import ForgottenAuthor

    hashes = {author_hash(p, a): (p, a) for p, a in set(authors)}
    if not hashes:
        return set()
    found = session.scalars(select(ForgottenAuthor.author_hash)
                            .where(ForgottenAuthor.author_hash.in_(list(hashes))))
    return {hashes[h] for h in found}
