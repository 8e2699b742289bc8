"""Mastodon adapter: hashtag timelines of several instances through Mastodon.py.

Why it looks the way it does:
- Every instance only shows what has federated to it, so each (instance, hashtag) is its own
  stream with its own cursor; the status `uri` is the cross-instance dedup key.
- Polling pages *forward* with `min_id` (no gap after a burst larger than a page) and starts an
  `overlap` before the cursor, because remote posts get ids from their (older) created_at and can
  land below a cursor after it was saved. For the same reason a post dated in the future gets an
  id above everything that arrives after it: such ids never become the cursor (`CursorClamp`).
- Mastodon.py's parsed objects hide malformed items, so the raw JSON of each response is read
  (through a recording requests adapter on the client's session) and validated item by item.
- Counts on a remote copy are stale; `refresh` asks the post's home instance when configured.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)
from requests.adapters import HTTPAdapter

from tracker import __version__
from tracker.platforms.base import (
    AuthFailed,
    CursorClamp,
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
from tracker.platforms.html_text import html_to_text, plain_text
from tracker.posts import Author, Metrics, NormalisedPost, PostKind

log = logging.getLogger(__name__)

PLATFORM = "mastodon"
MAX_PAGE_SIZE = 40
"""Mastodon caps timeline `limit` at 40."""
REFRESH_BATCH = 40
_URI_CACHE_SIZE = 50_000
_MASTODON_URI = re.compile(r"^/users/[^/]+/statuses/(\d+)$")


class _Malformed(ValueError):
    """A status item that cannot be normalised (logged and counted, never fatal)."""


class _FinalError(FetchFailed):
    """A non-retryable API error (4xx other than auth/404): one item can be skipped."""


def snowflake_for(moment: datetime) -> int:
    """The smallest Mastodon id an item created at `moment` can have."""
    return int(moment.timestamp() * 1000) << 16


def snowflake_time(status_id: str) -> datetime | None:
    """When a Mastodon snowflake id was minted; None for ids of other server software."""
    if not status_id.isdigit():
        return None
    return datetime.fromtimestamp((int(status_id) >> 16) / 1000, timezone.utc)


def _id_key(status_id: str) -> tuple[int, str]:
    """Order ids numerically when they are numbers (Mastodon), else as strings."""
    return (len(status_id), status_id) if status_id.isdigit() else (0, status_id)


def _max_id(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=_id_key)


def _bounded_max(ids: Sequence[str], clamp: CursorClamp) -> str | None:
    """The highest id a cursor may take from `ids`: one minted past the clock counts as the
    clock's floor (ids of other server software carry no time and count as they are)."""
    floor = str(snowflake_for(clamp.floor))
    bounded = [floor if _minted_after(status_id, clamp.horizon) else status_id for status_id in ids]
    return max(bounded, key=_id_key, default=None)


def _minted_after(status_id: str, moment: datetime) -> bool:
    """Is this a snowflake minted after `moment`? Compared as integers: no date overflow."""
    return status_id.isdigit() and int(status_id) > snowflake_for(moment) | 0xFFFF


def origin_of(uri: str) -> tuple[str, str] | None:
    """(`https://host`, origin-local id) from a Mastodon-style status uri; None otherwise."""
    parts = urlsplit(uri)
    match = _MASTODON_URI.match(parts.path)
    if not parts.scheme or not parts.netloc or not match:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower(), match.group(1)


# --------------------------------------------------------------------------- HTTP plumbing


class _Recorder(HTTPAdapter):
    """requests transport that remembers, per thread, the last response and the request count.

    Mastodon.py turns responses into casted objects and exceptions without the headers we need
    (raw items for validation, X-RateLimit-Reset on a 429); this keeps them within reach.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self._local.count = self.count + 1
        self._local.last = None
        response = super().send(request, **kwargs)
        self._local.last = response
        return response

    @property
    def count(self) -> int:
        return getattr(self._local, "count", 0)

    @property
    def last(self) -> requests.Response | None:
        return getattr(self._local, "last", None)


@dataclass
class _Instance:
    """One configured instance: its Mastodon.py client and the transport that watches it."""

    base_url: str
    api: Mastodon
    recorder: _Recorder
    session: requests.Session
    host: str
    """host[:port] of the base URL."""
    domain_known: bool = False
    """Instance info was asked for (see MastodonAdapter._learn_domains)."""


# --------------------------------------------------------------------------- adapter


class MastodonAdapter:
    """Hashtag streams on one or more Mastodon instances (see module docstring)."""

    platform = PLATFORM

    def __init__(
        self,
        *,
        instances: Sequence[str],
        hashtags: Sequence[str],
        tokens: Mapping[str, str] | None = None,
        page_size: int = MAX_PAGE_SIZE,
        overlap: timedelta = timedelta(minutes=30),
        policy: Policy | None = None,
        timeout: float = 30,
    ) -> None:
        if not instances:
            raise ValueError("at least one Mastodon instance is needed")
        self.hashtags = list(dict.fromkeys(h.strip().lstrip("#").lower() for h in hashtags if h.strip().lstrip("#")))
        if not self.hashtags:
            raise ValueError("at least one hashtag is needed")
        self.page_size = max(1, min(MAX_PAGE_SIZE, page_size))
        self.overlap = overlap
        self.policy = policy or Policy()
        tokens = {_normalise_base(k): v for k, v in (tokens or {}).items() if v}
        self._secrets = [t for t in tokens.values() if t]
        self._instances: dict[str, _Instance] = {}
        for raw in instances:
            base = _normalise_base(raw)
            if base not in self._instances:
                self._instances[base] = _make_instance(base, tokens.get(base), timeout)
        self._domains: dict[str, str] = {}
        """uri host -> configured base URL (from instance info or local posts read)."""
        self._uris: OrderedDict[tuple[str, str], str] = OrderedDict()
        """(base URL, local id) -> uri, to resolve in_reply_to_id / quoted_status_id."""
        self._cache_lock = threading.Lock()
        """Streams may be fetched from several threads; the caches are shared."""

    # ------------------------------------------------------------------ Adapter API

    def streams(self) -> list[str]:
        """One stream per instance x hashtag: `<base_url>#<hashtag>`."""
        return [f"{base}#{tag}" for base in self._instances for tag in self.hashtags]

    def fetch(self, stream: str, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Backfill (no cursor) newest->older down to `since`; else page forward from the cursor.

        A remote post's local id is minted from the created_at its server claims, so a post
        dated in the future has an id above every post that arrives after it: ids dated past
        the clock never become the cursor (`CursorClamp`). A stored cursor already ahead of the
        clock is not trusted: the stream is read again as on a first run, down to `since` (or
        the recovery window), and the store de-duplicates.
        """
        instance, tag = self._parse_stream(stream)
        clamp = self.policy.clamp()
        if cursor and _minted_after(cursor, clamp.horizon):
            start = clamp.recovery_start(since)
            log.warning("mastodon %s #%s: stored cursor %s is dated ahead of the clock; re-reading from %s",
                        instance.base_url, tag, cursor, start.isoformat())
            return self._backfill(instance, tag, start, clamp, floor=str(snowflake_for(clamp.floor)))
        if cursor:
            return self._forward(instance, tag, cursor, clamp)
        return self._backfill(instance, tag, since, clamp)

    def refresh(self, posts: Sequence[KnownPost]) -> Iterator[RefreshResult]:
        """Fresh counts and text, one GET /api/v1/statuses/:id per post, in batches of 40."""
        for start in range(0, len(posts), REFRESH_BATCH):
            yield from self._refresh_batch(posts[start : start + REFRESH_BATCH])

    def close(self) -> None:
        """Close the HTTP sessions (optional; the collection loop may just drop the adapter)."""
        for instance in self._instances.values():
            instance.session.close()

    # ------------------------------------------------------------------ fetching

    def _backfill(
        self, instance: _Instance, tag: str, since: datetime | None, clamp: CursorClamp, floor: str | None = None,
    ) -> Iterator[Page]:
        """Page backwards (max_id) from the newest; the cursor rides only on the last page.

        An interrupted backfill therefore leaves no cursor and simply starts again. `floor`:
        the least cursor to leave (replacing a distrusted one even when nothing is found).
        """
        newest: str | None = floor
        max_id: str | None = None
        while True:
            before = self._request_count()
            got = self._timeline(instance, tag, max_id=max_id)
            posts, skipped, ids = self._normalise_page(instance, got.raw)
            newest = _max_id(newest, _bounded_max(ids, clamp))
            reached = since is not None and any(p.created_at < since for p in posts)
            if since is not None:
                posts = [p for p in posts if p.created_at >= since]
            next_max = got.next_max or min(ids, key=_id_key, default=None)
            last = (
                not got.raw
                or reached
                or next_max is None
                or (max_id is not None and _id_key(next_max) >= _id_key(max_id))
            )
            yield _page(posts, newest if last else None, skipped, self._request_count() - before)
            if last:
                return
            max_id = next_max

    def _forward(self, instance: _Instance, tag: str, cursor: str, clamp: CursorClamp) -> Iterator[Page]:
        """Page forward (min_id) from (cursor time - overlap); each page's cursor = max id so far.

        Pages go oldest -> newest, so persisting each page's cursor never skips anything. A short
        page that reached the cursor is the newest there is, so an idle poll costs one request.
        A short page that did not reach it (a server capping `limit` lower, items filtered out
        server-side) is followed up, or a busy overlap window could stall the stream for good.
        """
        min_id = self._overlap_start(cursor)
        best: str | None = cursor
        while True:
            before = self._request_count()
            got = self._timeline(instance, tag, min_id=min_id)
            posts, skipped, ids = self._normalise_page(instance, got.raw)
            top = max(ids, key=_id_key, default=None)
            best = _max_id(best, _bounded_max(ids, clamp))
            yield _page(posts, best, skipped, self._request_count() - before)
            if not got.raw:
                return
            reached_cursor = top is not None and _id_key(top) >= _id_key(cursor)
            if len(got.raw) < self.page_size and reached_cursor:
                return
            next_min = got.prev_min or top
            if next_min is None or _id_key(next_min) <= _id_key(min_id):
                return
            min_id = next_min

    def _overlap_start(self, cursor: str) -> str:
        """min_id for a poll: the snowflake of the cursor's time minus the overlap."""
        minted = snowflake_time(cursor)
        if minted is None:
            return cursor  # not a snowflake (other server software): page from the cursor itself
        return str(max(0, snowflake_for(minted - self.overlap)))

    def _timeline(self, instance: _Instance, tag: str, *, max_id: str | None = None, min_id: str | None = None) -> _Fetched:
        """One hashtag-timeline request under the policy, with its raw items and Link cursors."""

        def attempt() -> _Fetched:
            try:
                instance.api.timeline_hashtag(tag, max_id=max_id, min_id=min_id, limit=self.page_size)
            except MastodonNotFoundError:
                log.info("mastodon %s: no timeline for #%s (404): treated as empty", instance.base_url, tag)
                return _Fetched([])  # some versions 404 an unknown tag: nothing to read
            response = instance.recorder.last
            return _Fetched(
                _raw_list(response, instance.base_url),
                next_max=_link_param(response, "next", "max_id"),
                prev_min=_link_param(response, "prev", "min_id"),
            )

        what = f"mastodon {instance.base_url} #{tag}"
        fetched, _ = call_with_policy(attempt, lambda exc: self._classify(exc, instance), self.policy, what)
        return fetched

    def _request_count(self) -> int:
        """HTTP requests made so far by this thread (retries and Mastodon.py's own included)."""
        return sum(instance.recorder.count for instance in self._instances.values())

    # ------------------------------------------------------------------ refresh

    def _refresh_batch(self, batch: Sequence[KnownPost]) -> Iterator[RefreshResult]:
        result = RefreshResult(requests=0)
        before = self._request_count()
        try:
            for known in batch:
                self._refresh_one(known, result)
        except Exception:
            result.requests = self._request_count() - before
            if result.posts or result.deleted:
                yield result  # keep what this batch already learned, then stop
            raise
        result.requests = self._request_count() - before
        yield result

    def _refresh_one(self, known: KnownPost, result: RefreshResult) -> None:
        target = self._refresh_target(known)
        if target is None:
            log.warning("mastodon refresh: no configured instance can look up %s", known.platform_id)
            result.skipped += 1
            return
        instance, local_id = target
        try:
            raw = self._status(instance, local_id)
        except _FinalError as exc:
            log.warning("%s", exc)
            result.skipped += 1
            return
        if raw is None:
            result.deleted.append(known.platform_id)
            return
        try:
            post = self._normalise(instance, raw, {})
        except _Malformed as exc:
            log.warning("mastodon %s: malformed status %s skipped: %s", instance.base_url, local_id, exc)
            result.skipped += 1
            return
        if post.platform_id != known.platform_id:
            log.warning("mastodon %s: status %s is %s, not %s", instance.base_url, local_id, post.platform_id, known.platform_id)
            result.skipped += 1
            return
        result.posts.append(post)

    def _status(self, instance: _Instance, local_id: str) -> Any:
        """Raw JSON of one status; None when the instance says it is gone (404/410)."""

        def attempt() -> Any:
            try:
                instance.api.status(local_id)
            except MastodonNotFoundError:
                return None
            except MastodonAPIError as exc:
                if _status_code(exc) == 410:
                    return None
                raise
            return _raw_json(instance.recorder.last, instance.base_url)

        what = f"mastodon {instance.base_url} status {local_id}"
        raw, _ = call_with_policy(attempt, lambda exc: self._classify(exc, instance), self.policy, what)
        return raw

    def _refresh_target(self, known: KnownPost) -> tuple[_Instance, str] | None:
        """The post's home instance when configured (it has the true counts), else where it was seen."""
        origin = origin_of(known.platform_id)
        if origin is not None:
            instance = self._instance_for_host(urlsplit(origin[0]).netloc)
            if instance is not None:
                return instance, origin[1]
        if known.source and known.source_id:
            instance = self._instances.get(_normalise_base(known.source))
            if instance is not None:
                return instance, known.source_id
        return None

    def _instance_for_host(self, host: str) -> _Instance | None:
        """Configured instance whose statuses have uris on `host` (its base URL host or domain)."""
        for instance in self._instances.values():
            if instance.host == host:
                return instance
        if host not in self._domains:
            self._learn_domains()
        base = self._domains.get(host)
        return self._instances[base] if base else None

    def _learn_domains(self) -> None:
        """Ask each instance not asked yet for its domain (uris may use it, not the API host)."""
        for instance in self._instances.values():
            if instance.domain_known:
                continue
            instance.domain_known = True
            try:
                info, _ = call_with_policy(
                    lambda: instance.api.instance_v2(),
                    lambda exc: self._classify(exc, instance),
                    self.policy,
                    f"mastodon {instance.base_url} instance info",
                )
                domain = info.get("domain") if isinstance(info, dict) else None
            except (PlatformError, MastodonError) as exc:
                log.warning("mastodon %s: cannot read instance info: %s", instance.base_url, exc)
                continue
            if isinstance(domain, str) and domain:
                with self._cache_lock:
                    self._domains.setdefault(domain.lower(), instance.base_url)

    # ------------------------------------------------------------------ normalising

    def _normalise_page(self, instance: _Instance, raw: list[Any]) -> tuple[list[NormalisedPost], int, list[str]]:
        """(posts, skipped, ids of the valid items); malformed items are logged and dropped."""
        page_uris = {str(item["id"]): item["uri"] for item in raw if _has_id_and_uri(item)}
        posts: list[NormalisedPost] = []
        skipped = 0
        for item in raw:
            try:
                posts.append(self._normalise(instance, item, page_uris))
            except _Malformed as exc:
                skipped += 1
                log.warning("mastodon %s: malformed status skipped: %s", instance.base_url, exc)
        return posts, skipped, [p.source_id for p in posts if p.source_id]

    def _normalise(self, instance: _Instance, item: Any, page_uris: Mapping[str, str]) -> NormalisedPost:
        """One raw status -> NormalisedPost; raises _Malformed when a required field is unusable."""
        if not isinstance(item, dict):
            raise _Malformed(f"item is {type(item).__name__}, not an object")
        local_id = _required_id(item)
        uri = _required_str(item, "uri")
        created_at = _required_time(item, "created_at")
        author, is_local = _author(instance, item.get("account"))
        self._remember(instance, local_id, uri, is_local)
        reblog = item.get("reblog") if isinstance(item.get("reblog"), dict) else None
        quote = item.get("quote") if isinstance(item.get("quote"), dict) else None
        for nested in (reblog, quote.get("quoted_status") if quote else None):
            if isinstance(nested, dict) and _has_id_and_uri(nested):
                self._remember(instance, str(nested["id"]), nested["uri"], False)
        body = reblog if reblog is not None and not _text_of(item) else item
        kind, referenced = self._kind(instance, item, reblog, quote, page_uris)
        return NormalisedPost(
            platform=PLATFORM,
            platform_id=uri,
            author=author,
            text=_text_of(body),
            created_at=created_at,
            fetched_at=self.policy.now(),
            url=_opt_str(item.get("url")) or (_opt_str(reblog.get("url")) if reblog else None) or uri,
            language=_opt_str(item.get("language")) or _opt_str(body.get("language")),
            hashtags=_hashtags(body.get("tags")),
            kind=kind,
            referenced_id=referenced,
            metrics=Metrics(
                likes=_opt_int(item.get("favourites_count")),
                reposts=_opt_int(item.get("reblogs_count")),
                replies=_opt_int(item.get("replies_count")),
                quotes=_opt_int(item.get("quotes_count")),
                views=None,
            ),
            edited_at=_opt_time(item.get("edited_at")),
            source=instance.base_url,
            source_id=local_id,
        )

    def _kind(
        self,
        instance: _Instance,
        item: dict[str, Any],
        reblog: dict[str, Any] | None,
        quote: dict[str, Any] | None,
        page_uris: Mapping[str, str],
    ) -> tuple[PostKind, str | None]:
        """Repost > quote > reply; referenced_id is a uri, or None when it cannot be resolved."""
        if reblog is not None:
            return PostKind.REPOST, _opt_str(reblog.get("uri"))
        if quote is not None:
            quoted = quote.get("quoted_status")
            if isinstance(quoted, dict) and _opt_str(quoted.get("uri")):
                return PostKind.QUOTE, quoted["uri"]
            return PostKind.QUOTE, self._resolve(instance, quote.get("quoted_status_id"), page_uris)
        if item.get("in_reply_to_id") is not None:
            return PostKind.REPLY, self._resolve(instance, item.get("in_reply_to_id"), page_uris)
        return PostKind.ORIGINAL, None

    def _resolve(self, instance: _Instance, local_id: Any, page_uris: Mapping[str, str]) -> str | None:
        """uri of an instance-local id, from this page or statuses read before (no extra request)."""
        if isinstance(local_id, bool) or not isinstance(local_id, (str, int)):
            return None
        key = str(local_id)
        if key in page_uris:
            return page_uris[key]
        with self._cache_lock:
            return self._uris.get((instance.base_url, key))

    def _remember(self, instance: _Instance, local_id: str, uri: str, is_local: bool) -> None:
        """Cache id -> uri (bounded); a local author's status tells us the instance's uri host."""
        key = (instance.base_url, local_id)
        origin = origin_of(uri) if is_local else None
        with self._cache_lock:
            self._uris[key] = uri
            self._uris.move_to_end(key)
            while len(self._uris) > _URI_CACHE_SIZE:
                self._uris.popitem(last=False)
            if origin is not None:
                self._domains.setdefault(urlsplit(origin[0]).netloc, instance.base_url)

    # ------------------------------------------------------------------ errors

    def _classify(self, exc: BaseException, instance: _Instance) -> BaseException:
        """Mastodon.py exception -> Retry / WaitRateLimit / final error (messages carry no token)."""
        where = instance.base_url
        if isinstance(exc, PlatformError):
            return exc
        if isinstance(exc, MastodonRatelimitError):
            return WaitRateLimit(_reset_at(instance.recorder.last))
        if isinstance(exc, MastodonNetworkError):
            return Retry(self._redact(f"network error talking to {where}: {_short(exc)}"))
        if isinstance(exc, MastodonUnauthorizedError):
            return AuthFailed(f"{where} refused the request (401): access token missing or invalid")
        if isinstance(exc, MastodonNotFoundError):
            return exc
        status = _status_code(exc)
        if isinstance(exc, MastodonServerError) or (status is not None and (status >= 500 or status == 408)):
            return Retry(f"{where} answered HTTP {status}")
        if status == 403:
            return AuthFailed(f"{where} refused the request (403): not allowed with these credentials")
        if status == 410:
            return exc
        if isinstance(exc, MastodonAPIError) and status is None:
            return Retry(self._redact(f"{where} sent an unreadable response: {_short(exc)}"))
        if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
            return Retry(self._redact(f"network error talking to {where}: {_short(exc)}"))
        detail = f"HTTP {status}" if status else _short(exc)
        return _FinalError(self._redact(f"{where} failed: {detail}"))

    def _redact(self, text: str) -> str:
        """Belt and braces: no configured token may appear in a message."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _parse_stream(self, stream: str) -> tuple[_Instance, str]:
        base, sep, tag = stream.rpartition("#")
        instance = self._instances.get(_normalise_base(base)) if sep else None
        if instance is None or not tag:
            raise ValueError(f"unknown Mastodon stream {stream!r}")
        return instance, tag.lower()


# --------------------------------------------------------------------------- helpers


@dataclass(slots=True)
class _Fetched:
    raw: list[Any]
    next_max: str | None = None
    prev_min: str | None = None


def _normalise_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "https://" + url
    return url


def _make_instance(base_url: str, token: str | None, timeout: float) -> _Instance:
    """A Mastodon.py client that makes no call at start-up, throws on 429, never waits itself."""
    session = requests.Session()
    recorder = _Recorder()
    session.mount("http://", recorder)
    session.mount("https://", recorder)
    api = Mastodon(
        api_base_url=base_url,
        access_token=token,
        ratelimit_method="throw",
        request_timeout=timeout,
        version_check_mode="none",
        session=session,
        user_agent=f"campaign-tracker/{__version__}",
    )
    return _Instance(base_url, api, recorder, session, urlsplit(base_url).netloc.lower())


def _page(posts: list[NormalisedPost], cursor: str | None, skipped: int, requests_made: int) -> Page:
    times = [p.created_at for p in posts]
    return Page(
        posts=posts,
        cursor=cursor,
        skipped=skipped,
        requests=requests_made,
        oldest=min(times) if times else None,
        newest=max(times) if times else None,
    )


def _raw_json(response: requests.Response | None, where: str) -> Any:
    """The JSON body Mastodon.py just parsed (it parsed fine, or it would have raised)."""
    if response is None:
        raise FetchFailed(f"{where}: no response recorded")
    try:
        return response.json()
    except ValueError as exc:
        raise _FinalError(f"{where}: response is not JSON") from exc


def _raw_list(response: requests.Response | None, where: str) -> list[Any]:
    body = _raw_json(response, where)
    if not isinstance(body, list):
        raise _FinalError(f"{where}: expected a list of statuses, got {type(body).__name__}")
    return body


def _link_param(response: requests.Response | None, rel: str, name: str) -> str | None:
    """A paging parameter from the Link header (`rel="next"` max_id, `rel="prev"` min_id)."""
    if response is None:
        return None
    link = response.links.get(rel)
    if not link:
        return None
    values = parse_qs(urlsplit(link.get("url", "")).query).get(name)
    return values[0] if values and values[0] else None


def _reset_at(response: requests.Response | None) -> datetime | None:
    """X-RateLimit-Reset of the 429 just received: ISO 8601 (Mastodon) or epoch seconds."""
    value = response.headers.get("X-RateLimit-Reset") if response is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        return datetime.fromtimestamp(float(value), timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    return _parse_time(value)


def _status_code(exc: BaseException) -> int | None:
    """HTTP status from a MastodonAPIError's args ('...', status, reason, message)."""
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], int) and not isinstance(args[1], bool):
        return args[1]
    return None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _has_id_and_uri(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("id"), (str, int))
        and not isinstance(item.get("id"), bool)
        and isinstance(item.get("uri"), str)
    )


def _required_id(item: dict[str, Any]) -> str:
    value = item.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise _Malformed(f"bad or missing id: {value!r}"[:120])
    return str(value).strip()


def _required_str(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Malformed(f"bad or missing {name} in status {item.get('id')!r}"[:160])
    return value.strip()


def _required_time(item: dict[str, Any], name: str) -> datetime:
    moment = _parse_time(item.get(name))
    if moment is None:
        raise _Malformed(f"bad or missing {name} in status {item.get('id')!r}"[:160])
    return moment


def _opt_time(value: Any) -> datetime | None:
    return _parse_time(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_int(value: Any) -> int | None:
    """Counts: ints (or digit strings) only; anything else is 'not reported' (None), never 0."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text_of(status: dict[str, Any]) -> str:
    """Plain text: the content warning (spoiler_text) first, then the content."""
    content = status.get("content")
    text = html_to_text(content if isinstance(content, str) else "")
    spoiler = plain_text(status.get("spoiler_text") if isinstance(status.get("spoiler_text"), str) else "")
    if spoiler and text:
        return f"{spoiler}\n\n{text}"
    return spoiler or text


def _hashtags(tags: Any) -> tuple[str, ...]:
    if not isinstance(tags, list):
        return ()
    names = (t.get("name") for t in tags if isinstance(t, dict))
    cleaned = (n.strip().lstrip("#").lower() for n in names if isinstance(n, str) and n.strip().lstrip("#"))
    return tuple(dict.fromkeys(cleaned))


def _author(instance: _Instance, account: Any) -> tuple[Author, bool]:
    """Author with a global handle (user@domain); also whether the account is local to `instance`."""
    if not isinstance(account, dict):
        raise _Malformed("account missing or not an object")
    acct = account.get("acct") if isinstance(account.get("acct"), str) else account.get("username")
    if not isinstance(acct, str) or not acct.strip().lstrip("@"):
        raise _Malformed("account without acct/username")
    url = _opt_str(account.get("url"))
    handle = acct.strip().lstrip("@")
    is_local = "@" not in handle
    if is_local:
        domain = (urlsplit(url).hostname if url else None) or urlsplit(instance.base_url).hostname or instance.host
        handle = f"{handle}@{domain}"
    return (
        Author(
            platform_id=url or f"acct:{handle}",
            handle=handle,
            display_name=_opt_str(account.get("display_name")),
            url=url,
            followers=_opt_int(account.get("followers_count")),
        ),
        is_local,
    )
