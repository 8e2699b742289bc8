"""Data protection: erase an author, apply retention, pseudonymise authors, minimise at ingest.

- `forget_author(db, handle, platform)`: the right to erasure, in one transaction; what keeps the
  person from coming back is in tracker/forgotten.py.
- `run_retention(db, settings)`: what `tracker retention` and the scheduler's daily job call.
- `Pseudonymiser`: author -> `hmac-sha256(TRACKER_PSEUDONYM_KEY, "platform:author_id")`, truncated,
  post id likewise; stable across exports as long as the key is the same.
- `minimise(post, privacy)`: the copy of a post that is stored when `[privacy]` says not to store
  texts or author names (the pipeline tags the full post first).
See docs/privacy.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from storage import privacy as sql
from storage.db import Database
from tracker.errors import TrackerError
from tracker.posts import Author, NormalisedPost
from tracker.settings import ENV_PSEUDONYM_KEY, Privacy, Settings

log = logging.getLogger(__name__)

PSEUDONYM_LENGTH = 16
"""Hex characters kept of the HMAC (64 bits: no collisions in practice for a campaign's authors)."""
ORPHAN_GRACE = dt.timedelta(days=1)


class PrivacyError(TrackerError):
    """An erasure or pseudonymisation cannot be done as asked (unknown author, no key)."""

    exit_code = 1


# -- erasure ------------------------------------------------------------------------------------


@dataclass
class ForgetResult:
    authors: list[sql.AuthorMatch]
    counts: sql.ErasureCounts

    def lines(self) -> list[str]:
        who = ", ".join(f"{a.platform}:{a.handle}" for a in self.authors)
        c = self.counts
        return [
            f"forgot {who}",
            f"deleted: {c.posts} posts, {c.snapshots} metric snapshots, {c.attributions} visit tags, "
            f"{c.areas} area tags, {c.sightings} sightings, {c.authors} author rows, "
            f"{c.follower_history} follower counts",
            f"deleted {c.reposts_deleted} reposts of their posts by others; unlinked {c.references_cleared} "
            "replies and quotes by others (kept, like posts that mention the handle)",
        ]


def forget_author(db: Database, handle: str, platform: str | None = None, *, key: str | None = None) -> ForgetResult:
    """Erase an author's posts (with snapshots, tags, sightings), details, and others' reposts of
    their posts, all or nothing; keep keyed digests so that none of it is stored again.

    `key`: TRACKER_PRIVACY_KEY (None: read from the environment). Raises ForgetKeyError when it
    is missing, too short or not the key of the existing list, and PrivacyError (one line) when
    the handle is unknown, or known on several platforms and no platform is given; nothing is
    erased then.
    """
    from tracker import forgotten

    key = key if key is not None else forgotten.key_from_environment()
    if not key:
        raise forgotten.ForgetKeyError(
            f"forget needs a key: set the environment variable {forgotten.ENV_PRIVACY_KEY} (at least "
            f"{forgotten.MIN_KEY_LENGTH} random characters, kept the same for the life of the database; "
            "nothing erased)")
    shown = handle.strip() or repr(handle)
    now = dt.datetime.now(dt.timezone.utc)
    with db.write() as session:
        sql.lock_forgotten_list(session, exclusive=True)  # pages being stored finish first
        forget_key = forgotten.require_key(session, key, doing="forget", nothing="nothing erased")
        assert forget_key is not None
        matches = sql.find_authors(session, handle, platform)
        if not matches:
            where = f" on {platform}" if platform else ""
            raise PrivacyError(f"no author with handle '{shown}'{where} is stored (nothing erased)")
        platforms = sorted({m.platform for m in matches})
        if len(platforms) > 1:
            raise PrivacyError(f"handle '{shown}' is stored on several platforms ({', '.join(platforms)}): "
                               "give --platform (nothing erased)")
        exact = [m for m in matches if (m.handle or "").lower() == handle.strip().lstrip("@").lower()]
        if len(matches) > 1 and not exact:
            names = ", ".join(sorted(m.handle or "?" for m in matches))
            raise PrivacyError(f"handle '{shown}' matches several authors ({names}): give the full handle "
                               "(nothing erased)")
        chosen = exact or matches
        who = [(m.platform, m.platform_id, m.handle) for m in chosen]
        erased_posts = sql.posts_of(session, [m.id for m in chosen])
        counts = sql.erase_authors(session, [m.id for m in chosen])
        traces = forgotten.erasure_traces(forget_key, who, erased_posts)
        # only digests are kept, so that nothing of theirs is stored again (tracker/forgotten.py)
        sql.remember_forgotten(session, traces, now)
        known = {t.digest for t in traces}
        ids_by_platform: dict[str, list[str]] = {}
        for p in erased_posts:
            ids_by_platform.setdefault(p.platform, []).append(p.platform_id)
        patterns = forgotten.dependent_patterns(who)
        for name in sorted(set(ids_by_platform) | set(patterns)):
            prefixes, texts = patterns.get(name, ([], []))
            candidates = sql.dependents_of(session, name, ids_by_platform.get(name, []), prefixes, texts)
            reposts, unlink = forgotten.split_dependents(forget_key, known, candidates)
            sql.erase_dependents(session, reposts, unlink, counts)
    log.info("erased %d author(s), %d posts and %d reposts of them", counts.authors, counts.posts,
             counts.reposts_deleted)
    return ForgetResult(chosen, counts)


# -- retention ----------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    cutoff: dt.datetime | None
    counts: sql.RetentionCounts = field(default_factory=sql.RetentionCounts)

    def line(self) -> str:
        c = self.counts
        head = (f"retention: posts before {self.cutoff:%Y-%m-%d %H:%M} UTC" if self.cutoff
                else "retention: no retention_days set (old posts kept)")
        return (f"{head}; minimised {c.posts_minimised} posts, blanked {c.authors_blanked} authors; "
                f"deleted on the platform: scrubbed {c.deleted_posts_scrubbed} posts, "
                f"removed {c.orphan_authors_removed} authors left without posts")


def run_retention(db: Database, settings: Settings, now: dt.datetime | None = None) -> RetentionResult:
    """Apply `[privacy]` retention and scrub posts deleted on their platform; one transaction.

    For the scheduler (e.g. daily) and `tracker retention`. Idempotent: a second run changes nothing.
    - posts created before now - retention_days: text, url, language removed;
    - authors with no post since then: handle, display name, profile URL removed (row and
      follower counts kept, so reach figures of old visits do not change);
    - always: posts marked deleted (gone or made private on the platform) lose text, url and
      author link; authors then left without any post are removed with their follower history.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    days = settings.privacy.retention_days
    cutoff = now - dt.timedelta(days=days) if days else None
    result = RetentionResult(cutoff)
    c = result.counts
    with db.write() as session:
        if cutoff is not None:
            c.posts_minimised = sql.minimise_old_posts(session, cutoff)
        c.deleted_posts_scrubbed = sql.scrub_deleted_posts(session)
        c.orphan_authors_removed = sql.remove_orphan_authors(session, now - ORPHAN_GRACE)
        if cutoff is not None:
            c.authors_blanked = sql.blank_inactive_authors(session, cutoff)
    if days and days < settings.schedule.refresh_max_age_days:
        log.warning("[privacy] retention_days (%d) is shorter than [schedule] refresh_max_age_days (%d): "
                    "a metrics refresh can bring back texts of posts between them", days,
                    settings.schedule.refresh_max_age_days)
    log.info("%s", result.line())
    return result


# -- pseudonymisation ---------------------------------------------------------------------------


def pseudonym(key: str, platform: str, author_platform_id: str, length: int = PSEUDONYM_LENGTH) -> str:
    """hmac-sha256(key, "platform:author_platform_id"), hex, truncated: stable for a given key."""
    digest = hmac.new(key.encode("utf-8"), f"{platform}:{author_platform_id}".encode("utf-8"),
                      hashlib.sha256).hexdigest()
    return "a_" + digest[:length]


def post_pseudonym(key: str, platform: str, post_platform_id: str, length: int = PSEUDONYM_LENGTH) -> str:
    """hmac-sha256(key, "post:platform:platform_id"), hex, truncated: replaces the post's id in
    exports (a Mastodon status URI holds the username, a Bluesky AT-URI the DID, and any id can
    be looked up on the platform)."""
    digest = hmac.new(key.encode("utf-8"), f"post:{platform}:{post_platform_id}".encode("utf-8", "surrogatepass"),
                      hashlib.sha256).hexdigest()
    return "p_" + digest[:length]


_DID = re.compile(r"\bdid:(?:plc|web):[A-Za-z0-9._:%-]*[A-Za-z0-9]")
_URL = re.compile(r"\bhttps?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]", re.IGNORECASE)
_PROFILE_HOSTS = {"x.com", "twitter.com", "mobile.twitter.com", "bsky.app", "staging.bsky.app"}
_PROFILE_PATH = re.compile(r"/(?:@[^/]+|users/[^/]+|profile/[^/]+)(?:/|$)", re.IGNORECASE)
LINK_REMOVED = "[link]"
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?(?:@[A-Za-z0-9.\-]+[A-Za-z0-9])?)")


class Pseudonymiser:
    """Replaces stored authors' handles (also as @mentions in texts) by their pseudonyms."""

    def __init__(self, key: str, identities: Mapping[tuple[str, str], str]) -> None:
        self._key = key
        self._ids = dict(identities)
        # a mention in a text names a handle, maybe on another platform; a Mastodon user@domain
        # handle is often mentioned as @user: map that only when it is unambiguous
        # (an exact handle wins over a Mastodon user part; a name two authors share maps to none)
        self._mentions: dict[str, str | None] = {}
        self._local_parts: dict[str, str | None] = {}
        self._names = {handle for _, handle in self._ids} | {h.split("@", 1)[0] for _, h in self._ids}
        for (platform, handle), platform_id in self._ids.items():
            token = pseudonym(key, platform, platform_id)
            held = self._mentions.get(handle, token)
            self._mentions[handle] = token if held == token else None
            if platform == "mastodon" and "@" in handle:
                local = handle.split("@", 1)[0]
                held = self._local_parts.get(local, token)
                self._local_parts[local] = token if held == token else None

    @classmethod
    def from_database(cls, db: Database, settings: Settings) -> Pseudonymiser:
        key = settings.secrets.pseudonym_key
        if key is None:
            raise PrivacyError(f"--pseudonymise needs a key: set the environment variable {ENV_PSEUDONYM_KEY} "
                               "(keep it the same between exports so pseudonyms stay stable)")
        with db.read() as session:
            identities = sql.author_identities(session)
        return cls(key.get_secret_value(), identities)

    def author(self, platform: str, handle: str | None) -> str | None:
        if not handle:
            return None
        platform_id = self._ids.get((platform, handle.lower()))
        # an author not in the table (should not happen): still never show the handle
        return pseudonym(self._key, platform, platform_id if platform_id is not None else f"handle:{handle.lower()}")

    def text(self, text: str | None) -> str | None:
        if not text:
            return text

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).lower()
            if name in self._mentions:
                token = self._mentions[name]
            elif "@" not in name:
                token = self._local_parts.get(name)
            else:
                token = None
            return "@" + token if token else match.group(0)

        text = _URL.sub(self._link, text)
        text = _DID.sub(lambda m: pseudonym(self._key, "bluesky", m.group(0)), text)
        return _MENTION.sub(replace, text)

    def _link(self, match: re.Match[str]) -> str:
        """A link that names an account (a profile or a post on X, Bluesky, a Mastodon-like
        server, or any link with a stored handle or a DID in it) is removed; other links stay."""
        url = match.group(0)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().removeprefix("www.")
        path = unquote(parts.path)
        segments = {seg.lstrip("@").lower() for seg in path.split("/") if seg}
        if (host in _PROFILE_HOSTS and path.strip("/")) or _PROFILE_PATH.search(path) or _DID.search(unquote(url)) \
                or segments & self._names:
            return LINK_REMOVED
        return url

    def row(self, row: dict[str, object]) -> dict[str, object]:
        """An export row that names nobody: author handle and post id -> pseudonyms, author name
        and post URL removed (they contain the handle, username or DID), mentions of stored
        authors and DIDs in the text -> pseudonyms, links to profiles and posts -> "[link]".
        """
        platform = str(row.get("platform") or "")
        out = dict(row)
        if row.get("platform_id") is not None:
            out["platform_id"] = post_pseudonym(self._key, platform, str(row["platform_id"]))
        out["author_handle"] = self.author(platform, row.get("author_handle"))  # type: ignore[arg-type]
        out["author_name"] = None
        out["url"] = None
        out["text"] = self.text(row.get("text"))  # type: ignore[arg-type]
        return out

    def __repr__(self) -> str:
        return f"Pseudonymiser(<key hidden>, {len(self._ids)} authors)"


# -- minimisation at ingest ---------------------------------------------------------------------


def minimise(post: NormalisedPost, privacy: Privacy) -> NormalisedPost:
    """The copy to store: without text and/or author names, as `[privacy]` says."""
    if privacy.store_author_names and privacy.store_post_text:
        return post
    changes: dict[str, object] = {}
    if not privacy.store_post_text:
        changes["text"] = None
    if not privacy.store_author_names:
        a = post.author
        changes["author"] = Author(platform_id=a.platform_id, handle=None, display_name=None,  # type: ignore[arg-type]
                                   url=None, followers=a.followers)
        changes["url"] = None
    return dataclasses.replace(post, **changes)  # type: ignore[arg-type]
