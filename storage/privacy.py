"""The SQL of data protection: erase one author, apply retention, scrub deleted posts, and the
list of forgotten authors (digests only; they are computed in tracker/forgotten.py).

Every function runs inside the caller's transaction (the caller commits), so an erasure or a
retention pass is all or nothing. Rows are deleted explicitly (not left to ON DELETE CASCADE) so
the counts are exact on both databases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    reposts_deleted: int = 0
    """Others' reposts of the erased posts (a copy of the erased text): deleted like the posts."""
    references_cleared: int = 0
    """Others' replies and quotes of the erased posts: kept, their link to the erased post removed."""

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class ErasedPost:
    platform: str
    platform_id: str


def posts_of(session: Session, author_ids: Sequence[int]) -> list[ErasedPost]:
    """The posts of these authors (to remember their ids, keyed, before they are erased)."""
    ids = list(author_ids)
    if not ids:
        return []
    rows = session.execute(select(Post.platform, Post.platform_id).where(Post.author_id.in_(ids)))
    return [ErasedPost(p, pid) for p, pid in rows]


@dataclass(frozen=True, slots=True)
class Dependent:
    """Someone else's post that may copy or point at an erased post (decided by the caller)."""

    id: int
    platform: str
    kind: str
    referenced_id: str | None
    text_start: str | None


def dependents_of(session: Session, platform: str, referenced_ids: Sequence[str], referenced_prefixes: Sequence[str],
                  text_prefixes: Sequence[str]) -> list[Dependent]:
    """Posts on `platform` whose referenced_id is one of `referenced_ids` or starts with one of
    `referenced_prefixes`, or whose text starts with one of `text_prefixes` (prefixes compared
    case-insensitively): candidates, the caller decides."""
    def like(prefix: str) -> str:
        return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    found: dict[int, Dependent] = {}
    # one statement per 500 ids, or per 50 patterns: under every database's parameter limit
    batches: list[list[Any]] = [[Post.referenced_id.in_(list(referenced_ids[start:start + 500]))]
                                for start in range(0, len(referenced_ids), 500)]
    patterns = [func.lower(Post.referenced_id).like(like(p.lower()), escape="\\") for p in referenced_prefixes]
    patterns += [func.lower(func.substr(Post.text, 1, len(p))) == p.lower() for p in text_prefixes]
    batches += [patterns[start:start + 50] for start in range(0, len(patterns), 50)]
    for conditions in batches:
        stmt = (select(Post.id, Post.platform, Post.kind, Post.referenced_id, func.substr(Post.text, 1, 200))
                .where(Post.platform == platform, or_(*conditions)))
        for row in session.execute(stmt):
            found[row[0]] = Dependent(*row)
    return list(found.values())


def _delete_posts(session: Session, post_ids: Sequence[int], counts: ErasureCounts) -> int:
    """Delete posts and everything hanging off them; counts dependants into `counts`."""
    deleted = 0
    for start in range(0, len(post_ids), 500):
        part = list(post_ids[start:start + 500])
        counts.snapshots += _rowcount(session.execute(delete(MetricSnapshot).where(MetricSnapshot.post_id.in_(part))))
        counts.sightings += _rowcount(session.execute(delete(PostSource).where(PostSource.post_id.in_(part))))
        counts.areas += _rowcount(session.execute(delete(PostArea).where(PostArea.post_id.in_(part))))
        counts.attributions += _rowcount(session.execute(delete(Attribution).where(Attribution.post_id.in_(part))))
        deleted += _rowcount(session.execute(delete(Post).where(Post.id.in_(part))))
    return deleted


def erase_authors(session: Session, author_ids: Sequence[int]) -> ErasureCounts:
    """Delete these authors, their posts and everything hanging off those posts.

    Others' posts that depend on the erased ones are handled by `erase_dependents`."""
    counts = ErasureCounts()
    ids = list(author_ids)
    if not ids:
        return counts
    post_ids = list(session.scalars(select(Post.id).where(Post.author_id.in_(ids))))
    counts.posts = _delete_posts(session, post_ids, counts)
    counts.follower_history = _rowcount(session.execute(
        delete(AuthorFollowers).where(AuthorFollowers.author_id.in_(ids))))
    counts.authors = _rowcount(session.execute(delete(Author).where(Author.id.in_(ids))))
    return counts


def erase_dependents(session: Session, reposts: Sequence[int], references: Sequence[int],
                     counts: ErasureCounts) -> None:
    """Others' reposts of erased posts: deleted; their replies and quotes: referenced_id removed."""
    counts.reposts_deleted += _delete_posts(session, reposts, counts)
    for start in range(0, len(references), 500):
        counts.references_cleared += _rowcount(session.execute(
            update(Post).where(Post.id.in_(list(references[start:start + 500]))).values(referenced_id=None)))


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


SCHEME_UNKEYED = "sha256"
"""Digests made before keys (migration 0003): sha256 of "platform:account id"."""
SCHEME_KEYED = "hmac-sha256"


@dataclass(frozen=True, slots=True)
class Trace:
    """One row of the forgotten list: a digest, how it was made and of what."""

    digest: str
    scheme: str
    kind: str


_LIST_LOCK = 0x7472_6B66  # any fixed number: the advisory lock of the forgotten list


def lock_forgotten_list(session: Session, *, exclusive: bool) -> None:
    """Until this transaction ends: `forget` (exclusive) waits for pages being stored (shared)
    and they wait for it, so a page checked against the list before an erasure cannot be
    committed after it. SQLite's write transactions are serial already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        name = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(select(getattr(func, name)(_LIST_LOCK)))


def forgotten_schemes(session: Session) -> set[str]:
    """Which schemes the forgotten list holds (empty: nobody was forgotten). One indexed
    look-up per scheme, however long the list: this runs before every page is stored."""
    from storage.models import ForgottenAuthor

    def present(scheme: str) -> Any:
        return select(ForgottenAuthor.scheme).where(ForgottenAuthor.scheme == scheme).limit(1).scalar_subquery()

    row = session.execute(select(present(SCHEME_UNKEYED), present(SCHEME_KEYED))).one()
    return {s for s in row if s}


def find_forgotten(session: Session, digests: Iterable[str]) -> set[str]:
    """Which of these digests are on the forgotten list."""
    from storage.models import ForgottenAuthor

    wanted = sorted(set(digests))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(session.scalars(select(ForgottenAuthor.author_hash)
                                     .where(ForgottenAuthor.author_hash.in_(wanted[start:start + 500]))))
    return found


def remember_forgotten(session: Session, traces: Iterable[Trace], now: dt.datetime) -> None:
    """Add digests to the forgotten list; idempotent."""
    from storage.models import ForgottenAuthor
    from storage.upserts import _insert

    rows = [{"author_hash": t.digest, "scheme": t.scheme, "kind": t.kind, "forgotten_at": now}
            for t in {t.digest: t for t in traces}.values()]
    for start in range(0, len(rows), 500):
        session.execute(_insert(session, ForgottenAuthor.__table__).values(rows[start:start + 500])
                        .on_conflict_do_nothing(index_elements=["author_hash"]))


def drop_forgotten(session: Session, digests: Iterable[str]) -> int:
    """Remove digests from the list (an unkeyed one once its keyed replacement is stored)."""
    from storage.models import ForgottenAuthor

    wanted = sorted(set(digests))
    removed = 0
    for start in range(0, len(wanted), 500):
        removed += _rowcount(session.execute(delete(ForgottenAuthor)
                                             .where(ForgottenAuthor.author_hash.in_(wanted[start:start + 500]))))
    return removed
