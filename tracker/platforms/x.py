"""X (Twitter API v2) adapter: recent search per hashtag, and tweet lookup for metric refreshes.

It drives the real `tweepy.Client` so tweepy's error mapping is kept, but asks for raw
`requests.Response` objects and parses the JSON itself: one malformed tweet must cost that
tweet, not the page. Retries and rate-limit waits go through `call_with_policy` only.

Tweet ids are snowflakes of the creation time, so the since_id cursor never takes the id of a
tweet dated ahead of the clock (`CursorClamp`): every tweet posted after it would fall below.

tweepy's host is fixed at https://api.twitter.com; a requests transport adapter mounted on
the client's session rewrites that prefix to `base_url` (the fake server in tests and demos)
and applies the timeout, which tweepy itself never sets.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
import tweepy
from requests.adapters import HTTPAdapter

from tracker.platforms.base import (
    AuthFailed,
    FetchFailed,
    KnownPost,
    Page,
    Policy,
    RefreshResult,
    Retry,
    WaitRateLimit,
    call_with_policy,
)
from tracker.posts import Author, Metrics, NormalisedPost, PostKind

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"
SEARCH = "search"
LOOKUP = "lookup"
LOOKUP_BATCH = 100
RECENT_WINDOW = timedelta(days=7)
WINDOW_MARGIN = timedelta(minutes=1)
"""Keep start_time safely inside the 7 days recent search allows, despite clock skew."""
SNOWFLAKE_EPOCH_MS = 1288834974657
TWEET_FIELDS = [
    "created_at", "author_id", "lang", "public_metrics", "referenced_tweets", "entities",
    "edit_history_tweet_ids",
]
USER_FIELDS = ["name", "username", "public_metrics"]
EXPANSIONS = ["author_id"]
KIND_PRIORITY = (("retweeted", PostKind.REPOST), ("quoted", PostKind.QUOTE), ("replied_to", PostKind.REPLY))
HASHTAG_RE = re.compile(r"(?<![\w&#])[#＃](\w+)")
TAG_RE = re.compile(r"^\w+$")
NOT_FOUND_TYPE = "https://api.twitter.com/2/problems/resource-not-found"


class _RedactBearer(logging.Filter):
    """tweepy logs request headers at DEBUG, bearer token included: redact it."""

    PATTERN = re.compile(r"Bearer\s+[^'\"\s,}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "Bearer" in record.msg:
            record.msg = self.PATTERN.sub("Bearer [redacted]", record.msg)
        return True


logging.getLogger("tweepy.client").addFilter(_RedactBearer())


class _Malformed(ValueError):
    """One item of a response is unusable; the reason never quotes the item's content."""


class _BadPayload(Exception):
    """The whole body is unusable (invalid JSON, not an object): retried like a 5xx."""


class _KnownExhausted(Exception):
    """The last response said no requests are left in this window: a 429 we did not send."""

    def __init__(self, reset_at: datetime) -> None:
        super().__init__("rate limit exhausted")
        self.reset_at = reset_at


class _Rebase(HTTPAdapter):
    """Send tweepy's https://api.twitter.com/... requests to `base_url`, with a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        url = request.url or ""
        if self.base_url != TWEEPY_HOST and url.startswith(TWEEPY_HOST + "/"):
            request.url = self.base_url + url[len(TWEEPY_HOST):]
            # The session chose proxies for api.twitter.com; choose again for the real target.
            proxies = requests.utils.get_environ_proxies(request.url)
        return super().send(request, stream=stream, timeout=timeout if timeout is not None else self.timeout,
                            verify=verify, cert=cert, proxies=proxies)


class XAdapter:
    """X API v2 through tweepy: one stream per hashtag, cursored by `since_id`."""

    platform = "x"

    def __init__(
        self,
        *,
        base_url: str = TWEEPY_HOST,
        bearer_token: str,
        hashtags: Sequence[str],
        include_retweets: bool = False,
        page_size: int = 100,
        policy: Policy | None = None,
        timeout: float = 30,
    ) -> None:
        if not bearer_token:
            raise AuthFailed("x: no bearer token configured")
        self._tags = _normalise_tags(hashtags)
        self.include_retweets = include_retweets
        self.page_size = max(10, min(100, page_size))
        self.policy = policy or Policy()
        self._client = tweepy.Client(bearer_token=bearer_token, return_type=requests.Response,
                                     wait_on_rate_limit=False)
        self._client.session.mount(TWEEPY_HOST + "/", _Rebase(base_url, timeout))
        self._limits: dict[str, tuple[int, datetime]] = {}
        """endpoint -> (x-rate-limit-remaining, reset) from the last response."""

    def streams(self) -> list[str]:
        return list(self._tags)

    # ----------------------------------------------------------------- fetch

    def fetch(self, stream: str, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Pages newest first; the new cursor rides on the last page only (see module docs).

        A run stopped mid-paging leaves the stored since_id untouched, so the next run reads
        the gap again and the store de-duplicates. Tweet ids follow creation time, so the new
        since_id is the newest id of a tweet not dated ahead of the clock (`CursorClamp`): a
        tweet dated in the future would otherwise put every later tweet below the cursor. A
        stored since_id already ahead of the clock is not trusted: the stream re-reads from
        `since` (or as far back as recent search reaches).
        """
        clamp = self.policy.clamp()
        horizon, floor = _snowflake_id(clamp.horizon), _snowflake_id(clamp.floor)
        newest: int | None = None
        if cursor and cursor.isdigit() and int(cursor) > horizon:
            log.warning("x: #%s: stored cursor %s is dated ahead of the clock; re-reading from %s",
                        stream, cursor, clamp.recovery_start(since).isoformat())
            cursor, since, newest = None, clamp.recovery_start(since), floor
        params = self._search_params(stream, cursor, since)
        token: str | None = None
        while True:
            page_params = dict(params, next_token=token) if token else params
            body, sent = self._call(SEARCH, f"x: search #{stream}",
                                    lambda: self._client.search_recent_tweets(**page_params))
            page = self._page(body, sent, stream)
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            for tweet_id in _ids_seen(body, meta):
                bounded = tweet_id if tweet_id <= horizon else floor
                newest = bounded if newest is None else max(newest, bounded)
            next_token = meta.get("next_token")
            if not isinstance(next_token, str) or not next_token or next_token == token:
                moved = newest is not None and (not cursor or not cursor.isdigit() or newest > int(cursor))
                page.cursor = str(newest) if moved else None  # never back: that would only re-read
                yield page
                return
            token = next_token
            yield page

    def _search_params(self, stream: str, cursor: str | None, since: datetime | None) -> dict[str, Any]:
        if not TAG_RE.match(stream):
            raise ValueError(f"x: not a hashtag stream: {stream!r}")
        query = f"#{stream}" if self.include_retweets else f"#{stream} -is:retweet"
        params: dict[str, Any] = {
            "query": query,
            "max_results": self.page_size,
            "tweet_fields": TWEET_FIELDS,
            "user_fields": USER_FIELDS,
            "expansions": EXPANSIONS,
        }
        if cursor:
            params["since_id"] = cursor
        elif since is not None:
            params["start_time"] = self._clamp_since(since)
        return params

    def _clamp_since(self, since: datetime) -> datetime:
        """Recent search only reaches back 7 days; asking for more is a 400."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        now = self.policy.now()
        return min(max(since, now - RECENT_WINDOW + WINDOW_MARGIN), now)

    def _page(self, body: dict[str, Any], sent: int, stream: str) -> Page:
        users = _users_by_id(body)
        posts, skipped = self._normalise_all(body.get("data"), users, f"#{stream}")
        times = [p.created_at for p in posts]
        return Page(posts=posts, skipped=skipped, requests=sent,
                    oldest=min(times, default=None), newest=max(times, default=None))

    # ----------------------------------------------------------------- refresh

    def refresh(self, posts: Sequence[KnownPost]) -> Iterator[RefreshResult]:
        """Batches of 100 ids; ids X reports not-found are `deleted`.

        An edited tweet's lookup returns the version asked for; the latest text lives under
        the last id of `edit_history_tweet_ids`, fetched in one extra lookup per batch.
        """
        ids = list(dict.fromkeys(p.platform_id for p in posts))
        for start in range(0, len(ids), LOOKUP_BATCH):
            yield self._refresh_batch(ids[start:start + LOOKUP_BATCH])

    def _refresh_batch(self, ids: list[str]) -> RefreshResult:
        body, sent = self._lookup(ids)
        result = RefreshResult(requests=sent, deleted=_not_found_ids(body, set(ids)))
        items = body.get("data") if isinstance(body.get("data"), list) else []
        latest = _latest_versions(items)
        if latest:
            newer, more = self._lookup(sorted(set(latest.values())))
            result.requests += more
            items = _swap_in_latest(items, latest, newer)
            body = _merge_users(body, newer)
        result.posts, result.skipped = self._normalise_all(items, _users_by_id(body), "lookup")
        return result

    def _lookup(self, ids: list[str]) -> tuple[dict[str, Any], int]:
        return self._call(LOOKUP, f"x: lookup of {len(ids)} tweets", lambda: self._client.get_tweets(
            ids, tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS, expansions=EXPANSIONS))

    # ----------------------------------------------------------------- shared

    def _call(self, endpoint: str, what: str, request: Callable[[], requests.Response]) -> tuple[dict[str, Any], int]:
        """One API call under the policy; returns (JSON object, HTTP requests actually sent)."""
        sent = 0

        def attempt() -> dict[str, Any]:
            nonlocal sent
            self._check_known_limit(endpoint)
            sent += 1
            try:
                response = request()
            except tweepy.HTTPException as exc:
                self._note_limit(endpoint, exc.response)
                raise
            self._note_limit(endpoint, response)
            return _decode(response)

        body, _ = call_with_policy(attempt, _classify, self.policy, what)
        return body, sent

    def _check_known_limit(self, endpoint: str) -> None:
        """Don't spend a request the last response said we don't have; forget it once acted on."""
        known = self._limits.get(endpoint)
        if known is None:
            return
        remaining, reset_at = known
        if remaining <= 0 and reset_at > self.policy.now():
            del self._limits[endpoint]
            raise _KnownExhausted(reset_at)

    def _note_limit(self, endpoint: str, response: requests.Response | None) -> None:
        headers = getattr(response, "headers", None) or {}
        remaining = _int_header(headers, "x-rate-limit-remaining")
        reset = _int_header(headers, "x-rate-limit-reset")
        if remaining is not None and reset is not None:
            self._limits[endpoint] = (remaining, datetime.fromtimestamp(reset, tz=timezone.utc))

    def _normalise_all(self, items: Any, users: dict[str, dict[str, Any]], where: str) -> tuple[list[NormalisedPost], int]:
        """Normalise what can be; log (without content) and count what cannot."""
        if items is None:
            return [], 0
        if not isinstance(items, list):
            log.warning("x: %s: 'data' is not a list; page skipped", where)
            return [], 1
        fetched_at = self.policy.now()
        posts: list[NormalisedPost] = []
        skipped = 0
        for item in items:
            try:
                posts.append(_normalise(item, users, fetched_at))
            except _Malformed as exc:
                skipped += 1
                tweet_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else "?"
                log.warning("x: %s: skipped malformed tweet %s: %s", where, tweet_id, exc)
        return posts, skipped


# --------------------------------------------------------------------------- errors


def _classify(exc: BaseException) -> BaseException:
    """Map tweepy / requests failures onto the policy's verdicts; messages never carry secrets."""
    if isinstance(exc, _KnownExhausted):
        return WaitRateLimit(exc.reset_at)
    if isinstance(exc, tweepy.TooManyRequests):
        reset = exc.reset_time
        return WaitRateLimit(datetime.fromtimestamp(reset, tz=timezone.utc) if reset is not None else None)
    if isinstance(exc, tweepy.TwitterServerError):
        return Retry(f"HTTP {_status(exc)}")
    if isinstance(exc, (tweepy.Unauthorized, tweepy.Forbidden)):
        return AuthFailed(f"x: credentials rejected (HTTP {_status(exc)}); check the bearer token and access level")
    if isinstance(exc, tweepy.HTTPException):
        detail = "; ".join(m for m in exc.api_messages if isinstance(m, str))[:200]
        return FetchFailed(f"x: HTTP {_status(exc)}" + (f": {detail}" if detail else ""))
    if isinstance(exc, requests.Timeout):
        return Retry("timeout")
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return Retry(f"connection error ({type(exc).__name__})")
    if isinstance(exc, _BadPayload):
        return Retry(str(exc))
    return exc


def _status(exc: tweepy.HTTPException) -> int | str:
    return getattr(exc.response, "status_code", "?")


def _decode(response: requests.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise _BadPayload("invalid JSON in response") from None
    if not isinstance(body, dict):
        raise _BadPayload("response is not a JSON object")
    return body


def _int_header(headers: Any, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- normalisation


def _normalise_tags(hashtags: Sequence[str]) -> list[str]:
    tags: list[str] = []
    for raw in hashtags:
        tag = raw.strip().lstrip("#").lower()
        if not TAG_RE.match(tag):
            raise ValueError(f"x: not a valid hashtag: {raw!r}")
        if tag not in tags:
            tags.append(tag)
    return tags


def _users_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    includes = body.get("includes")
    users = includes.get("users") if isinstance(includes, dict) else None
    if not isinstance(users, list):
        return {}
    return {u["id"]: u for u in users if isinstance(u, dict) and isinstance(u.get("id"), str)}


def _normalise(item: Any, users: dict[str, dict[str, Any]], fetched_at: datetime) -> NormalisedPost:
    if not isinstance(item, dict):
        raise _Malformed("not an object")
    tweet_id = _require_str(item, "id")
    if not tweet_id.isdigit():
        raise _Malformed("id is not numeric")
    text = _require_str(item, "text")
    created = _parse_time(_require_str(item, "created_at"))
    author = _author(_require_str(item, "author_id"), users)
    platform_id, created_at, edited_at = _identity(item, tweet_id, created)
    kind, referenced_id = _kind(item.get("referenced_tweets"))
    lang = item.get("lang")
    return NormalisedPost(
        platform="x",
        platform_id=platform_id,
        author=author,
        text=html.unescape(text),
        created_at=created_at,
        fetched_at=fetched_at,
        url=f"https://x.com/{author.handle}/status/{platform_id}",
        language=lang if isinstance(lang, str) and lang and lang != "und" else None,
        hashtags=_hashtags(item, text),
        kind=kind,
        referenced_id=referenced_id,
        metrics=_metrics(item.get("public_metrics")),
        edited_at=edited_at,
    )


def _require_str(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        raise _Malformed(f"missing {key}")
    if not isinstance(value, str) or not value:
        raise _Malformed(f"{key} is not a non-empty string")
    return value


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Malformed("created_at is not a timestamp") from None
    if parsed.tzinfo is None:
        raise _Malformed("created_at has no time zone")
    return parsed.astimezone(timezone.utc)


def _author(author_id: str, users: dict[str, dict[str, Any]]) -> Author:
    user = users.get(author_id)
    if user is None:
        raise _Malformed("author not in includes.users")
    handle = user.get("username")
    if not isinstance(handle, str) or not handle:
        raise _Malformed("author has no username")
    name = user.get("name")
    metrics = user.get("public_metrics")
    followers = _count(metrics.get("followers_count")) if isinstance(metrics, dict) else None
    return Author(
        platform_id=author_id,
        handle=handle,
        display_name=name if isinstance(name, str) else None,
        url=f"https://x.com/{handle}",
        followers=followers,
    )


def _identity(item: dict[str, Any], tweet_id: str, created: datetime) -> tuple[str, datetime, datetime | None]:
    """(platform_id, created_at, edited_at): every version of an edited tweet maps to the original.

    X gives each edit a new id; the first id of `edit_history_tweet_ids` is the original, whose
    creation time its snowflake id encodes.
    """
    chain = item.get("edit_history_tweet_ids")
    if not isinstance(chain, list) or not chain or not all(isinstance(i, str) and i.isdigit() for i in chain):
        return tweet_id, created, None
    original = chain[0]
    if original == tweet_id:
        return tweet_id, created, None
    return original, _snowflake_time(original) or created, created


def _snowflake_time(tweet_id: str) -> datetime | None:
    """The creation time a tweet id encodes; None for an id that encodes no real time (0, or
    one so large that it lies past Python's dates: hostile, it must not fail the page)."""
    stamp = int(tweet_id) >> 22
    if stamp == 0:
        return None
    try:
        return datetime.fromtimestamp((stamp + SNOWFLAKE_EPOCH_MS) / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _kind(refs: Any) -> tuple[PostKind, str | None]:
    if not isinstance(refs, list):
        return PostKind.ORIGINAL, None
    by_type = {r.get("type"): r.get("id") for r in refs if isinstance(r, dict) and isinstance(r.get("id"), str)}
    for ref_type, kind in KIND_PRIORITY:
        if ref_type in by_type:
            return kind, by_type[ref_type]
    return PostKind.ORIGINAL, None


def _hashtags(item: dict[str, Any], text: str) -> tuple[str, ...]:
    entities = item.get("entities")
    tags = entities.get("hashtags") if isinstance(entities, dict) else None
    if isinstance(tags, list):
        found = [t["tag"] for t in tags if isinstance(t, dict) and isinstance(t.get("tag"), str)]
    else:
        found = HASHTAG_RE.findall(html.unescape(text))
    return tuple(dict.fromkeys(t.lower() for t in found))


def _metrics(raw: Any) -> Metrics:
    if not isinstance(raw, dict):
        return Metrics()
    return Metrics(
        likes=_count(raw.get("like_count")),
        reposts=_count(raw.get("retweet_count", raw.get("repost_count"))),
        replies=_count(raw.get("reply_count")),
        quotes=_count(raw.get("quote_count")),
        views=_count(raw.get("impression_count")),
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _snowflake_id(moment: datetime) -> int:
    """The smallest tweet id X can mint at `moment` (ids are snowflakes of creation time)."""
    return max(0, int(moment.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22


def _ids_seen(body: dict[str, Any], meta: dict[str, Any]) -> Iterator[int]:
    """Every tweet id a search page answered with, malformed tweets' included (they are skipped
    for good, so the cursor may pass them)."""
    newest = meta.get("newest_id")
    if isinstance(newest, str) and newest.isdigit():
        yield int(newest)
    data = body.get("data")
    for item in data if isinstance(data, list) else ():
        tweet_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(tweet_id, str) and tweet_id.isdigit():
            yield int(tweet_id)


# --------------------------------------------------------------------------- refresh helpers


def _not_found_ids(body: dict[str, Any], asked: set[str]) -> list[str]:
    errors = body.get("errors")
    if not isinstance(errors, list):
        return []
    gone: list[str] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        rid = error.get("resource_id")
        not_found = error.get("type") == NOT_FOUND_TYPE or error.get("title") == "Not Found Error"
        if not_found and isinstance(rid, str) and rid in asked:
            gone.append(rid)
        elif isinstance(rid, str):
            log.info("x: lookup: %s not readable (%s)", rid, error.get("title"))
    return gone


def _latest_versions(items: list[Any]) -> dict[str, str]:
    """asked id -> latest version id, for tweets edited since."""
    latest: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        chain = item.get("edit_history_tweet_ids")
        tweet_id = item.get("id")
        if isinstance(chain, list) and chain and isinstance(chain[-1], str) and chain[-1] != tweet_id:
            if isinstance(tweet_id, str):
                latest[tweet_id] = chain[-1]
    return latest


def _swap_in_latest(items: list[Any], latest: dict[str, str], newer: dict[str, Any]) -> list[Any]:
    """Replace edited tweets by their latest version where the second lookup found it."""
    data = newer.get("data")
    found = {t["id"]: t for t in data if isinstance(t, dict) and isinstance(t.get("id"), str)} if isinstance(data, list) else {}
    out = []
    for item in items:
        tweet_id = item.get("id") if isinstance(item, dict) else None
        out.append(found.get(latest.get(tweet_id, ""), item) if isinstance(tweet_id, str) else item)
    return out


def _merge_users(body: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    users = list(_users_by_id(body).values()) + list(_users_by_id(other).values())
    return {**body, "includes": {"users": users}}
