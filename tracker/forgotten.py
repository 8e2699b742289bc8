"""The forgotten list: what keeps an erased author from coming back, without naming them.

`tracker forget` erases an author and records keyed digests (HMAC-SHA256 with the key in
TRACKER_PRIVACY_KEY, never stored) of
- the account (platform + stable account id) and its handle,
- every erased post's id,
plus one 'key-check' digest that tells later runs whether they hold the same key.

`screen(session, posts)` runs first in every ingest (collection, metrics refresh, import) and
- drops posts by a forgotten account or handle, and posts whose id was erased;
- drops reposts of a forgotten post or account: an X retweet ("RT @handle: ..."), a Mastodon
  reblog, a Bluesky repost (erase deletes the stored ones, so both ways agree);
- keeps others' replies and quotes of a forgotten post (their own words) without the link to it;
- remembers the ids of posts it drops, so a later repost of one is recognised too.

Without the key, a database whose list holds keyed digests refuses to store anything (one line
naming the variable) rather than let people back. Digests from before keys (unkeyed SHA-256 of
"platform:account id", migration 0003) are still checked, and replaced by keyed ones when the
account shows up again while the key is set. See docs/privacy.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from storage import privacy as sql
from storage.privacy import SCHEME_KEYED, SCHEME_UNKEYED, Trace
from tracker.errors import TrackerError
from tracker.posts import NormalisedPost, PostKind
from tracker.settings import ENV_PRIVACY_KEY

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16
ACCOUNT, HANDLE, POST, KEY_CHECK = "account", "handle", "post", "key-check"
_RT = re.compile(r"^\s*RT @([A-Za-z0-9_]{1,50}):", re.IGNORECASE)
_BLUESKY_URI = re.compile(r"^at://(did:[a-z0-9]+:[A-Za-z0-9._:%-]+)/")
_MASTODON_STATUS = re.compile(r"^/users/([A-Za-z0-9_.-]+)/statuses/")


class ForgetKeyError(TrackerError):
    """The forgotten list cannot be used: no key, a too short key, or another key than before."""

    exit_code = 1


def key_from_environment(env: Mapping[str, str] | None = None) -> str | None:
    """TRACKER_PRIVACY_KEY from the environment (None when unset or blank)."""
    value = (os.environ if env is None else env).get(ENV_PRIVACY_KEY, "").strip()
    return value or None


class ForgetKey:
    """HMAC-SHA256 digests of what was forgotten. The key itself is never stored or shown."""

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ForgetKeyError(f"{ENV_PRIVACY_KEY} is too short ({len(key)} characters): use at least "
                                 f"{MIN_KEY_LENGTH} random characters, e.g. the output of `openssl rand -hex 32`")
        self._key = key.encode("utf-8")

    def digest(self, kind: str, platform: str, value: str) -> str:
        message = "\x1f".join((kind, platform.lower(), value)).encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, message, "sha256").hex()

    def trace(self, kind: str, platform: str, value: str) -> Trace:
        return Trace(self.digest(kind, platform, value), SCHEME_KEYED, kind)

    @property
    def check(self) -> Trace:
        return self.trace(KEY_CHECK, "", "tracker forgotten list")

    def __repr__(self) -> str:
        return "ForgetKey(<hidden>)"


def unkeyed_digest(platform: str, account_id: str) -> str:
    """The digest migration 0003 kept: sha256 of "platform:account id" (testable by anyone)."""
    return hashlib.sha256(f"{platform}:{account_id}".encode("utf-8", "surrogatepass")).hexdigest()


def handle_value(handle: str) -> str:
    return handle.strip().lstrip("@").lower()


def require_key(session: Session, key: str | None, *, doing: str, nothing: str = "nothing stored",
                schemes: set[str] | None = None) -> ForgetKey | None:
    """The key for this database's forgotten list, or None when the list needs none.

    Raises ForgetKeyError when the list holds keyed digests and the key is missing or another
    one than they were made with (people would silently come back otherwise)."""
    schemes = sql.forgotten_schemes(session) if schemes is None else schemes
    if SCHEME_KEYED not in schemes:
        return ForgetKey(key) if key else None
    if not key:
        raise ForgetKeyError(f"{doing}: the database lists forgotten authors by a keyed hash: set the environment "
                             f"variable {ENV_PRIVACY_KEY} to the key used by `tracker forget` ({nothing})")
    forget_key = ForgetKey(key)
    if not sql.find_forgotten(session, [forget_key.check.digest]):
        raise ForgetKeyError(f"{doing}: {ENV_PRIVACY_KEY} is not the key the list of forgotten authors was made "
                             f"with: set the original key ({nothing})")
    return forget_key


# -- what a post reveals about whom it belongs to -------------------------------------------------


def referenced_account(platform: str, referenced_id: str | None) -> tuple[str, str] | None:
    """(kind, value) of the author named in a referenced post id, where the id says it:
    a Bluesky AT-URI holds the DID; a Mastodon status URI https://host/users/name/statuses/..
    the handle name@host."""
    if not referenced_id:
        return None
    if platform == "bluesky":
        match = _BLUESKY_URI.match(referenced_id)
        return (ACCOUNT, match.group(1)) if match else None
    if platform == "mastodon":
        parts = urlsplit(referenced_id)
        match = _MASTODON_STATUS.match(parts.path)
        if parts.hostname and match:
            return HANDLE, f"{match.group(1).lower()}@{parts.hostname.lower()}"
    return None


def retweeted_handle(text: str | None) -> str | None:
    """The handle in a retweet's "RT @handle: ..." prefix."""
    match = _RT.match(text or "")
    return match.group(1).lower() if match else None


@dataclass(frozen=True, slots=True)
class Lookups:
    """The digests of one post's traces, by role."""

    own: tuple[str, ...]
    """The author (account, handle) and the post itself: any match drops the post."""
    points_at: tuple[str, ...]
    """The referenced post and its author, the handle of an "RT @handle:" prefix: a match drops
    a repost (a copy) and unlinks a reply or quote."""
    own_unkeyed: str
    ref_unkeyed: str | None


def lookups(post: NormalisedPost, key: ForgetKey | None, unkeyed: bool = True) -> Lookups:
    """`unkeyed`: also the unkeyed digests (only when the list still holds some)."""
    platform = post.platform
    ref_account = referenced_account(platform, post.referenced_id)
    ref_unkeyed = (unkeyed_digest(platform, ref_account[1])
                   if unkeyed and ref_account and ref_account[0] == ACCOUNT else None)
    own_unkeyed = unkeyed_digest(platform, post.author.platform_id) if unkeyed else ""
    if key is None:
        return Lookups((), (), own_unkeyed, ref_unkeyed)
    own = [key.digest(ACCOUNT, platform, post.author.platform_id), key.digest(POST, platform, post.platform_id)]
    if post.author.handle:
        own.append(key.digest(HANDLE, platform, handle_value(post.author.handle)))
    points_at: list[str] = []
    if post.referenced_id:
        points_at.append(key.digest(POST, platform, post.referenced_id))
    if ref_account:
        points_at.append(key.digest(ref_account[0], platform, ref_account[1]))
    rt = retweeted_handle(post.text)
    if rt:
        points_at.append(key.digest(HANDLE, platform, rt))
    return Lookups(tuple(own), tuple(points_at), own_unkeyed, ref_unkeyed)


# -- at ingest ----------------------------------------------------------------------------------


@dataclass
class Screened:
    posts: list[NormalisedPost]
    dropped: int = 0
    """Posts of forgotten authors and reposts of them: not stored."""
    unlinked: int = 0
    """Replies and quotes of forgotten posts: stored without referenced_id."""


def screen(session: Session, posts: Sequence[NormalisedPost], key: str | None = None,
           now: dt.datetime | None = None) -> Screened:
    """The posts that may be stored (see the module docstring); raises ForgetKeyError.

    `key`: TRACKER_PRIVACY_KEY (None: read from the environment)."""
    if not posts:
        return Screened(list(posts))
    sql.lock_forgotten_list(session, exclusive=False)
    schemes = sql.forgotten_schemes(session)
    if not schemes:  # nobody forgotten: nothing to check (the common case, one tiny query)
        return Screened(list(posts))
    key = key if key is not None else key_from_environment()
    forget_key = require_key(session, key, doing="storing posts", schemes=schemes)
    unkeyed = SCHEME_UNKEYED in schemes
    table = [lookups(p, forget_key, unkeyed) for p in posts]
    wanted = {d for t in table for d in (*t.own, *t.points_at)}
    if unkeyed:
        wanted |= {d for t in table for d in (t.own_unkeyed, t.ref_unkeyed) if d}
    found = sql.find_forgotten(session, wanted)
    if not found:
        return Screened(list(posts))
    result = Screened([])
    learned: list[Trace] = []
    rekeyed: set[str] = set()
    # first the posts by forgotten people: their ids are remembered (keyed), so that reposts of
    # them, in this batch or later, are recognised too
    gone: set[tuple[str, str]] = set()
    for post, t in zip(posts, table):
        legacy = bool(t.own_unkeyed) and t.own_unkeyed in found
        if legacy or any(d in found for d in t.own):
            gone.add((post.platform, post.platform_id))
            if forget_key is not None:
                learned += [forget_key.trace(POST, post.platform, post.platform_id),
                            forget_key.trace(ACCOUNT, post.platform, post.author.platform_id)]
                if post.author.handle:
                    learned.append(forget_key.trace(HANDLE, post.platform, handle_value(post.author.handle)))
                if legacy:
                    rekeyed.add(t.own_unkeyed)
    for post, t in zip(posts, table):
        if (post.platform, post.platform_id) in gone:
            result.dropped += 1
            continue
        points = (any(d in found for d in t.points_at) or (t.ref_unkeyed is not None and t.ref_unkeyed in found)
                  or (post.referenced_id is not None and (post.platform, post.referenced_id) in gone))
        if points and (post.kind is PostKind.REPOST or retweeted_handle(post.text)):
            result.dropped += 1
            continue
        if points and post.referenced_id is not None:
            post = dataclasses.replace(post, referenced_id=None)
            result.unlinked += 1
        result.posts.append(post)
    if result.dropped or result.unlinked:  # counts only: nothing that names anyone
        log.info("forgotten authors: %d posts not stored, %d replies/quotes unlinked", result.dropped, result.unlinked)
    if learned and forget_key is not None:
        sql.remember_forgotten(session, [*learned, forget_key.check], now or dt.datetime.now(dt.timezone.utc))
        if rekeyed:  # the unkeyed digest is replaced by the keyed one: nobody can test it any more
            sql.drop_forgotten(session, rekeyed)
    return result


# -- at erasure ---------------------------------------------------------------------------------


def erasure_traces(key: ForgetKey, authors: Iterable[tuple[str, str, str | None]],
                   posts: Iterable[sql.ErasedPost]) -> list[Trace]:
    """The digests `tracker forget` keeps: accounts, handles, erased post ids, the key check."""
    traces = [key.check]
    for platform, account_id, handle in authors:
        traces.append(key.trace(ACCOUNT, platform, account_id))
        if handle:
            traces.append(key.trace(HANDLE, platform, handle_value(handle)))
    traces += [key.trace(POST, p.platform, p.platform_id) for p in posts]
    return traces


def split_dependents(key: ForgetKey, forgotten: set[str], dependents: Iterable[sql.Dependent]) -> tuple[list[int], list[int]]:
    """(reposts to delete, replies/quotes to unlink) among others' posts, by the same rules as
    `screen` applies at ingest."""
    reposts: list[int] = []
    unlink: list[int] = []
    for d in dependents:
        digests: list[str] = []
        if d.referenced_id:
            digests.append(key.digest(POST, d.platform, d.referenced_id))
        ref_account = referenced_account(d.platform, d.referenced_id)
        if ref_account:
            digests.append(key.digest(ref_account[0], d.platform, ref_account[1]))
        rt = retweeted_handle(d.text_start)
        rt_hit = rt is not None and key.digest(HANDLE, d.platform, rt) in forgotten
        hit = rt_hit or any(x in forgotten for x in digests)
        if not hit:
            continue
        if d.kind == PostKind.REPOST.value or rt_hit:
            reposts.append(d.id)
        elif d.referenced_id is not None:
            unlink.append(d.id)
    return reposts, unlink


def dependent_patterns(authors: Iterable[tuple[str, str, str | None]]) -> dict[str, tuple[list[str], list[str]]]:
    """platform -> (referenced_id prefixes, text prefixes) that may point at these authors."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for platform, account_id, handle in authors:
        prefixes, texts = out.setdefault(platform, ([], []))
        if platform == "bluesky":
            prefixes.append(f"at://{account_id}/")
        if handle:
            h = handle_value(handle)
            if platform == "mastodon" and "@" in h:
                name, host = h.split("@", 1)
                prefixes.append(f"https://{host}/users/{name}/statuses/")
            texts.append(f"RT @{h}:")
    return out
