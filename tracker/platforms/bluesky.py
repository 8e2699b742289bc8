"""Bluesky adapter: hashtag search through the real atproto client, normalised to NormalisedPost.

Responses are read as raw JSON (`Client.invoke_query`) rather than through atproto's models: the
models validate a whole page at once, so one malformed post would lose the page. Sessions are
reused (`session_string` / `export_session`) because createSession is heavily rate-limited.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import httpx
from atproto import Client, Request, models
from atproto_client.exceptions import (
    BadRequestError,
    LoginRequiredError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
    UnauthorizedError,
)
from atproto_core.exceptions import AtProtocolError
from atproto_server.exceptions import InvalidTokenError

from tracker.platforms.base import (
    AuthFailed,
    FetchFailed,
    KnownPost,
    Page,
    PlatformError,
    Policy,
    RefreshResult,
    Retry,
    WaitRateLimit,
    call_with_policy,
)
from tracker.platforms.json_transport import SurrogateSafeTransport
from tracker.posts import Author, Metrics, NormalisedPost, PostKind

log = logging.getLogger(__name__)
T = TypeVar("T")

PLATFORM = "bluesky"
BATCH = 25
"""getPosts / getProfiles accept at most 25 items."""
SEARCH = "app.bsky.feed.searchPosts"
GET_POSTS = "app.bsky.feed.getPosts"
GET_PROFILES = "app.bsky.actor.getProfiles"
_TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
_AUTH_ERRORS = _TOKEN_ERRORS | {"AuthenticationRequired", "AccountTakedown", "AuthFactorTokenRequired"}
_TAG_TYPE = "app.bsky.richtext.facet#tag"
_TEXT_TAG = re.compile(r"(?<![\w#])[#\uff03](\w+)")


class _BadResponse(Exception):
    """A 2xx answer that is not a JSON object (truncated body, proxy error page): worth a retry."""


class _Malformed(ValueError):
    """One PostView that cannot be normalised; the rest of the page is kept."""


@dataclass(frozen=True, slots=True)
class _Item:
    post: NormalisedPost
    sort_at: datetime
    """min(createdAt, indexedAt), capped at fetch time: what search's since/until filter on."""


class BlueskyAdapter:
    """Bluesky behind the `Adapter` protocol: one stream per hashtag."""

    platform = PLATFORM

    def __init__(
        self,
        *,
        base_url: str = "https://bsky.social",
        handle: str,
        app_password: str,
        hashtags: Sequence[str],
        page_size: int = 100,
        overlap: timedelta = timedelta(minutes=30),
        policy: Policy | None = None,
        timeout: float = 30,
        session_string: str | None = None,
        profile_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1..100, got {page_size}")
        self.base_url = base_url.rstrip("/")
        self.handle = handle.strip().lstrip("@")
        self._app_password = app_password
        self.hashtags = _unique(_clean_tag(t) for t in hashtags if _clean_tag(t))
        self.page_size = page_size
        self.overlap = overlap
        self.policy = policy or Policy()
        self.profile_ttl = profile_ttl
        self._session_string = session_string
        self._requests = 0
        self._profiles: dict[str, tuple[datetime, int | None]] = {}
        request = Request(timeout=timeout, event_hooks={"request": [self._count_request]},
                          transport=SurrogateSafeTransport())  # one hostile string must not fail a page
        self._client = Client(base_url=self.base_url, request=request)

    def __repr__(self) -> str:  # never show credentials
        return f"BlueskyAdapter(base_url={self.base_url!r}, handle={self.handle!r}, hashtags={self.hashtags!r})"

    # -- Adapter protocol ------------------------------------------------------------------

    def streams(self) -> list[str]:
        return list(self.hashtags)

    def fetch(self, stream: str, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Search `#stream` newest→oldest down to (cursor − overlap) or `since`.

        The new cursor (newest time seen) rides only on the last page, so an interrupted run
        restarts from the old cursor; the store de-duplicates the overlap. Times are capped at
        the fetch time, so a post dated in the future never moves the cursor past the posts that
        come after it; a stored cursor ahead of the clock (`CursorClamp`) is not trusted: the
        stream re-reads from `since` (or the recovery window).
        """
        tag = _clean_tag(stream)
        previous = _parse_time(cursor) if cursor else None
        if cursor and previous is None:
            log.warning("bluesky #%s: unreadable cursor %r ignored", tag, cursor)
        clamp = self.policy.clamp()
        if previous is not None and clamp.ahead(previous):
            start = clamp.recovery_start(_as_utc(since))
            log.warning("bluesky #%s: stored cursor %s is ahead of the clock; re-reading from %s",
                        tag, cursor, start.isoformat())
            lower, newest = start, clamp.floor
        else:
            lower = previous - self.overlap if previous else _as_utc(since)
            newest = previous
        page_cursor: str | None = None
        while True:
            start = self._requests
            params = models.AppBskyFeedSearchPosts.Params(
                q=f"#{tag}",
                tag=[tag],
                sort="latest",
                limit=self.page_size,
                since=_format_time(lower) if lower else None,
                cursor=page_cursor,
            )
            body = self._query(SEARCH, params, f"bluesky search #{tag}")
            items, skipped = self._normalise_all(_list(body, "posts"), f"search #{tag}")
            posts = self._with_followers([i.post for i in items])
            newest = _latest(newest, *(i.sort_at for i in items))
            next_cursor = body.get("cursor") if isinstance(body.get("cursor"), str) else None
            done = not next_cursor or not body.get("posts") or next_cursor == page_cursor
            yield Page(
                posts=posts,
                cursor=_format_time(newest) if done and newest else None,
                skipped=skipped,
                requests=self._requests - start,
                oldest=min((p.created_at for p in posts), default=None),
                newest=max((p.created_at for p in posts), default=None),
            )
            if done:
                return
            page_cursor = next_cursor

    def refresh(self, posts: Sequence[KnownPost]) -> Iterator[RefreshResult]:
        """Current metrics via getPosts (25 a request); URIs missing from an answer are deleted."""
        uris = _unique(p.platform_id for p in posts)
        valid = [u for u in uris if u.startswith("at://")]
        for start in range(0, len(valid), BATCH):
            yield self._refresh_batch(valid[start : start + BATCH])
        if len(valid) < len(uris):
            log.warning("bluesky refresh: %d ids are not AT-URIs, skipped", len(uris) - len(valid))
            yield RefreshResult(requests=0, skipped=len(uris) - len(valid))

    # -- sessions --------------------------------------------------------------------------

    def export_session(self) -> str | None:
        """The current session (JWTs included: store it like a password) to pass back as `session_string`."""
        try:
            return self._client.export_session_string()
        except LoginRequiredError:
            return self._session_string

    def close(self) -> None:
        self._client.request.close()

    def _has_session(self) -> bool:
        return self._client._session is not None  # noqa: SLF001 - atproto has no public check

    def _ensure_session(self) -> bool:
        """Log in lazily: reuse the saved session when it is ours, else createSession. True: fresh login."""
        if self._has_session():
            return False
        if self._session_string and self._import_session(self._session_string):
            return False
        self._password_login()
        return True

    def _import_session(self, session_string: str) -> bool:
        try:
            self._client.login(session_string=session_string, fetch_bsky_profile=False)
        except (ValueError, AtProtocolError):
            log.warning("bluesky: saved session is unreadable; logging in with the app password")
            return False
        session = self._client._session  # noqa: SLF001
        if session is None or self.handle.lower() not in (session.handle.lower(), session.did.lower()):
            if "@" not in self.handle:  # an e-mail identifier cannot be compared
                log.warning("bluesky: saved session belongs to another account; logging in again")
                self._client._session_dispatcher.set_session(None)  # noqa: SLF001
                return False
        log.debug("bluesky: reusing saved session")
        return True

    def _password_login(self) -> None:
        if not self.handle or not self._app_password:
            raise AuthFailed("bluesky: no handle or app password configured")
        self._client.update_base_url(self.base_url)  # a stale imported session may point elsewhere
        self._client.login(self.handle, self._app_password, fetch_bsky_profile=False)
        log.info("bluesky: logged in as %s", self.handle)

    def _renew_session(self) -> None:
        """The server rejected our token: rotate it with refreshSession, else log in again."""
        session = self._client._session  # noqa: SLF001
        if session is not None and not _jwt_expired(session):
            try:
                self._client._refresh_and_set_session()  # noqa: SLF001 - the client's own refresh
                return
            except AtProtocolError as exc:
                if not _is_session_problem(exc):
                    raise
        self._password_login()

    # -- requests --------------------------------------------------------------------------

    def _count_request(self, _request: httpx.Request) -> None:
        self._requests += 1

    def _query(self, nsid: str, params: Any, what: str) -> dict[str, Any]:
        """One XRPC query under the politeness policy; the raw JSON object."""
        body, _attempts = call_with_policy(
            lambda: self._invoke(nsid, params), lambda exc: self._classify(exc, what), self.policy, what
        )
        return body

    def _invoke(self, nsid: str, params: Any) -> dict[str, Any]:
        try:
            fresh = self._ensure_session()
            try:
                return self._raw_query(nsid, params)
            except AtProtocolError as exc:
                if fresh or not _is_session_problem(exc):
                    raise
                log.info("bluesky: session rejected (%s); renewing", _describe(exc))
            self._renew_session()
            return self._raw_query(nsid, params)
        except ValueError as exc:  # pydantic_core.from_json on a broken JSON body
            raise _BadResponse(f"{nsid}: invalid JSON") from exc

    def _raw_query(self, nsid: str, params: Any) -> dict[str, Any]:
        response = self._client.invoke_query(nsid, params=params)
        if not isinstance(response.content, dict):
            raise _BadResponse(f"{nsid}: expected a JSON object")
        return response.content

    def _classify(self, exc: BaseException, what: str) -> BaseException:
        """Map atproto/httpx errors onto the policy's verdicts; messages carry no secrets."""
        if isinstance(exc, PlatformError):
            return exc
        if isinstance(exc, RateLimitExceededError):
            return WaitRateLimit(_reset_at(exc, self.policy.now()))
        status = _status(exc)
        if isinstance(exc, (NetworkError, httpx.TransportError, _BadResponse)) or (status or 0) >= 500:
            return Retry(self._redact(_describe(exc)))
        if status == 429:
            return WaitRateLimit(None)
        if isinstance(exc, (UnauthorizedError, LoginRequiredError, InvalidTokenError)) or (
            isinstance(exc, BadRequestError) and _error_name(exc) in _AUTH_ERRORS
        ):
            return AuthFailed(f"{what}: authentication failed as {self.handle} ({self._redact(_describe(exc))})")
        if isinstance(exc, (AtProtocolError, httpx.HTTPError)):
            return FetchFailed(f"{what}: {self._redact(_describe(exc))}")
        return exc  # not the client's: a bug, raise it as it is

    def _redact(self, text: str) -> str:
        secrets = [self._app_password, self._session_string]
        session = self._client._session  # noqa: SLF001
        if session is not None:
            secrets += [session.access_jwt, session.refresh_jwt]
        for secret in filter(None, secrets):
            text = text.replace(secret, "***")
        return text

    # -- normalising -----------------------------------------------------------------------

    def _normalise_all(self, raw: list[Any], what: str) -> tuple[list[_Item], int]:
        fetched_at = self.policy.now()
        items, skipped = [], 0
        for entry in raw:
            try:
                items.append(_normalise(entry, fetched_at))
            except _Malformed as exc:
                skipped += 1
                uri = entry.get("uri") if isinstance(entry, dict) else None
                log.warning("bluesky %s: skipped malformed post %s: %s", what, uri or "?", exc)
        return items, skipped

    def _refresh_batch(self, uris: list[str]) -> RefreshResult:
        start = self._requests
        body = self._query(GET_POSTS, models.AppBskyFeedGetPosts.Params(uris=uris), "bluesky getPosts")
        raw = _list(body, "posts")
        items, skipped = self._normalise_all(raw, "getPosts")
        present = {e.get("uri") for e in raw if isinstance(e, dict)}
        return RefreshResult(
            posts=self._with_followers([i.post for i in items]),
            deleted=[u for u in uris if u not in present],
            requests=self._requests - start,
            skipped=skipped,
        )

    def _with_followers(self, posts: list[NormalisedPost]) -> list[NormalisedPost]:
        """Fill author follower counts from getProfiles; a failed lookup leaves None, never fails the page."""
        followers = self._followers({p.author.platform_id for p in posts})
        return [
            replace(p, author=replace(p.author, followers=followers.get(p.author.platform_id))) for p in posts
        ]

    def _followers(self, dids: set[str]) -> dict[str, int | None]:
        now = self.policy.now()
        fresh = {d for d in dids if d in self._profiles and now - self._profiles[d][0] < self.profile_ttl}
        missing = sorted(dids - fresh)
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            params = models.AppBskyActorGetProfiles.Params(actors=batch)
            try:
                profiles = _list(self._query(GET_PROFILES, params, "bluesky getProfiles"), "profiles")
            except PlatformError as exc:
                log.warning("bluesky: follower counts unavailable for %d authors: %s", len(batch), exc)
                continue
            counts = {p.get("did"): _count(p, "followersCount") for p in profiles if isinstance(p, dict)}
            for did in batch:
                self._profiles[did] = (now, counts.get(did))
        return {d: self._profiles[d][1] for d in dids if d in self._profiles}


# -- pure helpers ------------------------------------------------------------------------------


def _normalise(entry: Any, fetched_at: datetime) -> _Item:
    """One PostView (raw JSON) as a NormalisedPost; raises _Malformed."""
    if not isinstance(entry, dict):
        raise _Malformed("not an object")
    uri = entry.get("uri")
    author = entry.get("author")
    record = entry.get("record")
    if not isinstance(uri, str) or not uri.startswith("at://"):
        raise _Malformed("no AT-URI")
    if not isinstance(author, dict) or not all(isinstance(author.get(k), str) for k in ("did", "handle")):
        raise _Malformed("no author did/handle")
    if not isinstance(record, dict):
        raise _Malformed("no record")
    text = record.get("text", "")
    if not isinstance(text, str):
        raise _Malformed("text is not a string")
    indexed = _parse_time(entry.get("indexedAt"))
    created = _parse_time(record.get("createdAt")) or indexed
    if created is None:
        raise _Malformed("no readable createdAt or indexedAt")
    kind, referenced = _kind(record)
    post = NormalisedPost(
        platform=PLATFORM,
        platform_id=uri,
        author=_author(author),
        text=text,
        created_at=created,
        fetched_at=fetched_at,
        url=_post_url(uri, author),
        language=_language(record.get("langs")),
        hashtags=_hashtags(record, text),
        kind=kind,
        referenced_id=referenced,
        metrics=Metrics(
            likes=_count(entry, "likeCount"),
            reposts=_count(entry, "repostCount"),
            replies=_count(entry, "replyCount"),
            quotes=_count(entry, "quoteCount"),
        ),
    )
    sort_at = min(created, indexed) if indexed else created
    return _Item(post, min(sort_at, fetched_at))


def _author(view: Mapping[str, Any]) -> Author:
    handle = view["handle"]
    name = view.get("displayName")
    return Author(
        platform_id=view["did"],
        handle=handle,
        display_name=(name.strip() or None) if isinstance(name, str) else None,
        url=f"https://bsky.app/profile/{_profile_ref(handle, view['did'])}",
    )


def _profile_ref(handle: str, did: str) -> str:
    """bsky.app links by handle; an unverified handle ('handle.invalid') only works by DID."""
    return did if not handle or handle == "handle.invalid" else handle


def _post_url(uri: str, author: Mapping[str, Any]) -> str:
    rkey = uri.rstrip("/").rsplit("/", 1)[-1]
    return f"https://bsky.app/profile/{_profile_ref(author['handle'], author['did'])}/post/{rkey}"


def _kind(record: Mapping[str, Any]) -> tuple[PostKind, str | None]:
    """Reply (parent URI) before quote (quoted post URI); reposts never reach search."""
    reply = record.get("reply")
    if isinstance(reply, dict):
        parent = reply.get("parent")
        if isinstance(parent, dict) and isinstance(parent.get("uri"), str):
            return PostKind.REPLY, parent["uri"]
    quoted = _quoted_uri(record.get("embed"))
    if quoted:
        return PostKind.QUOTE, quoted
    return PostKind.ORIGINAL, None


def _quoted_uri(embed: Any) -> str | None:
    if not isinstance(embed, dict):
        return None
    ref = embed.get("record")
    if embed.get("$type") == "app.bsky.embed.recordWithMedia" and isinstance(ref, dict):
        ref = ref.get("record")
    if embed.get("$type") not in ("app.bsky.embed.record", "app.bsky.embed.recordWithMedia"):
        return None
    uri = ref.get("uri") if isinstance(ref, dict) else None
    # Embedded feeds/lists/starter packs are not quotes of posts.
    return uri if isinstance(uri, str) and "/app.bsky.feed.post/" in uri else None


def _hashtags(record: Mapping[str, Any], text: str) -> tuple[str, ...]:
    """Facet tags, outline tags, then #words in the text; lower-case, no '#', first-seen order."""
    found: list[str] = []
    for facet in _as_list(record.get("facets")):
        for feature in _as_list(facet.get("features") if isinstance(facet, dict) else None):
            if isinstance(feature, dict) and feature.get("$type") == _TAG_TYPE and isinstance(feature.get("tag"), str):
                found.append(feature["tag"])
    found += [t for t in _as_list(record.get("tags")) if isinstance(t, str)]
    found += [m.group(1) for m in _TEXT_TAG.finditer(text) if not m.group(1).isdigit()]
    return tuple(_unique(_clean_tag(t) for t in found if _clean_tag(t)))


def _language(langs: Any) -> str | None:
    first = next((lang for lang in _as_list(langs) if isinstance(lang, str) and lang.strip()), None)
    return first.strip() if first else None


def _count(view: Mapping[str, Any], key: str) -> int | None:
    value = view.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _parse_time(value: Any) -> datetime | None:
    """ISO 8601 as Bluesky clients write it: 'Z' or offset or none (UTC), any fraction."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _as_utc(parsed)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _format_time(value: datetime) -> str:
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _latest(*values: datetime | None) -> datetime | None:
    return max((v for v in values if v is not None), default=None)


def _clean_tag(tag: str) -> str:
    return tag.strip().lstrip("#\uff03").lower()


def _unique(values: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(values))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    """The answer's list; a missing one means an empty answer, a wrong type a broken server."""
    value = body.get(key, [])
    if not isinstance(value, list):
        raise FetchFailed(f"bluesky: '{key}' in the answer is not a list")
    return value


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None) if isinstance(exc, RequestErrorBase) else None
    return response.status_code if response is not None else None


def _error_name(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    content = getattr(response, "content", None)
    return getattr(content, "error", None)


def _describe(exc: BaseException) -> str:
    """Status and XRPC error name/message; for transport errors the exception type."""
    status = _status(exc)
    if status is None:
        detail = str(exc)
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    content = exc.response.content  # type: ignore[attr-defined]
    error, message = getattr(content, "error", None), getattr(content, "message", None)
    text = " ".join(str(p) for p in (status, error) if p)
    return f"{text}: {str(message)[:200]}" if message else text


def _is_session_problem(exc: BaseException) -> bool:
    """Our token was refused or is undecodable: renewing the session may help."""
    if isinstance(exc, (LoginRequiredError, InvalidTokenError)):
        return True
    if isinstance(exc, (BadRequestError, UnauthorizedError)):
        return _error_name(exc) in _TOKEN_ERRORS or isinstance(exc, UnauthorizedError)
    return False


def _jwt_expired(session: Any) -> bool:
    """Is the refresh token past its `exp` (or unreadable)? Then only a password login helps."""
    try:
        exp = session.refresh_jwt_payload.exp
    except (AtProtocolError, ValueError):
        return True
    return exp is not None and datetime.fromtimestamp(exp, timezone.utc) <= datetime.now(timezone.utc)


def _reset_at(exc: RateLimitExceededError, now: datetime) -> datetime | None:
    if exc.reset_at is not None:
        return exc.reset_at
    retry_after = exc.retry_after
    return now + timedelta(seconds=retry_after) if retry_after is not None else None


__all__ = ["BlueskyAdapter"]
