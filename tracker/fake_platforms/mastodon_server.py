"""A fake Mastodon instance on 127.0.0.1, close enough to the real API for Mastodon.py.

Why a fake: the adapter's hard parts (min_id paging without gaps, late federation, stale remote
counts, rate limits, malformed items) only show up against a server that behaves like Mastodon.
Several instances can run at once and "federate" statuses: each status has a global `uri` and
an instance-local snowflake id ((unix_ms << 16) | seq) derived from its created_at, so a
late-federated post can land below a client's cursor, as on the real fediverse.

    with MastodonServer(domain="a.example") as a, MastodonServer(domain="b.example") as b:
        alice = a.add_account("alice", followers=10)
        sid = a.post(alice, "Hello #Tour")
        a.federate(sid, b)          # b gets its own id; counts are a snapshot (go stale)
        a.grow(sid, favourites=5)   # only the origin sees the new likes
        Mastodon(api_base_url=a.base_url, ...)

Only the read endpoints the tracker uses are served: instance info (v1, v2), the hashtag
timeline and single statuses. Everything else answers 404 `{"error": "Record not found"}`.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tracker.fake_platforms.serving import LocalServer

__all__ = ["Fault", "LoggedRequest", "MastodonServer", "snowflake_id"]

_TAG_IN_TEXT = re.compile(r"(?<![\w&])#(\w+)", re.UNICODE)
_INSTANCE_PATHS = ("/api/v1/instance", "/api/v2/instance")
_COUNT_FIELDS = ("replies", "reblogs", "favourites", "quotes")
DEFAULT_MALFORMED_ITEM: dict[str, Any] = {"id": "1", "content": "<p>broken: no uri, account or date</p>"}


def snowflake_id(created_at: datetime, seq: int = 0) -> int:
    """Mastodon's id layout: milliseconds since the epoch, shifted, plus a 16-bit sequence."""
    millis = int(created_at.timestamp() * 1000)
    return (millis << 16) | (seq & 0xFFFF)


def _iso(moment: datetime | None) -> str | None:
    """Mastodon's timestamp format: UTC with milliseconds and 'Z'."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(timezone.utc)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def render_content(text: str, domain: str) -> str:
    """Plain text -> Mastodon-style HTML: paragraphs, <br>, hashtags as links to /tags/<tag>."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()] or [""]
    rendered = []
    for paragraph in paragraphs:
        escaped = html.escape(paragraph, quote=False).replace("\n", "<br />")
        linked = _TAG_IN_TEXT.sub(
            lambda m: (
                f'<a href="https://{domain}/tags/{m.group(1).lower()}" class="mention hashtag" '
                f'rel="tag">#<span>{m.group(1)}</span></a>'
            ),
            escaped,
        )
        rendered.append(f"<p>{linked}</p>")
    return "".join(rendered)


@dataclass
class _Account:
    local_id: str
    username: str
    domain: str
    display_name: str
    followers: int
    following: int
    statuses: int
    bot: bool
    created_at: datetime
    note: str = ""


@dataclass
class _Status:
    local_id: int
    uri: str
    url: str | None
    account: _Account
    created_at: datetime
    content: str
    tags: list[str]
    language: str | None = "en"
    visibility: str = "public"
    spoiler_text: str = ""
    edited_at: datetime | None = None
    reblog_id: int | None = None
    in_reply_to_id: int | None = None
    in_reply_to_account_id: str | None = None
    quote_id: int | None = None
    quote_state: str = "accepted"
    mentions: list[dict[str, Any]] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNT_FIELDS, 0))
    deleted: bool = False
    gone: bool = False
    """When deleted, answer 410 Gone instead of 404."""


@dataclass
class Fault:
    """One injected response, consumed by the next request whose path starts with `path`.

    `path=None` matches any endpoint except instance info (which Mastodon.py fetches on its own
    before the first timeline call, and which would otherwise swallow the fault).
    """

    status: int | None = None
    """Answer with this status and `{"error": ...}` (429 adds rate-limit headers)."""
    reset_in: float | None = None
    """For 429: seconds until X-RateLimit-Reset; None omits the header."""
    reset_format: str = "iso"
    malformed: list[Any] | None = None
    """Insert these raw items at the front of the next (successful) list response."""
    invalid_json: bool = False
    delay: float = 0.0
    """Sleep this long before answering (then answer normally unless other fields say otherwise)."""
    drop: bool = False
    """Close the connection without any response."""
    path: str | None = None

    def applies_to(self, path: str) -> bool:
        if self.path is None:
            return not path.startswith(_INSTANCE_PATHS)
        return path.startswith(self.path)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    authorized: bool
    """An Authorization header was sent (its value is never logged)."""
    status: int


class MastodonServer(LocalServer):
    """A fake Mastodon instance: Python API to shape data, HTTP API for the client under test."""

    def __init__(
        self,
        domain: str = "mastodon.example",
        *,
        tokens: set[str] | None = None,
        hashtag_feeds_require_auth: bool = False,
        rate_limit: int = 300,
        rate_window: float = 300.0,
        reset_format: str = "iso",
        quotes_supported: bool = True,
        reblogs_in_tag_timelines: bool = False,
        version: str = "4.5.0",
        max_limit: int = 40,
    ) -> None:
        self.domain = domain
        self.tokens = set(tokens or ())
        """Valid bearer tokens; a request with any other token gets 401."""
        self.hashtag_feeds_require_auth = hashtag_feeds_require_auth
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.reset_format = reset_format
        self.quotes_supported = quotes_supported
        """False: act like Mastodon < 4.5 (no `quotes_count`, no `quote`)."""
        self.reblogs_in_tag_timelines = reblogs_in_tag_timelines
        """Real Mastodon leaves reblogs out of tag timelines; True lets tests see them there."""
        self.version = version
        self.max_limit = max_limit
        """Cap on `limit` (Mastodon: 40); lower it to act like a stingier server."""
        self._lock = threading.RLock()
        self._accounts: dict[str, _Account] = {}
        self._accounts_by_key: dict[tuple[str, str], _Account] = {}
        self._statuses: dict[int, _Status] = {}
        self._by_uri: dict[str, int] = {}
        # Like Mastodon's per-instance hashed low bits: the same post gets different ids per instance.
        self._seq = itertools.count(zlib.crc32(domain.encode()) & 0x7FFF)
        self._account_ids = itertools.count(100)
        self._faults: deque[Fault] = deque()
        self._log: list[LoggedRequest] = []
        self._window_start = time.time()
        self._used = 0

    # ----------------------------------------------------------------- lifecycle

    thread_name = "fake-mastodon"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    # ----------------------------------------------------------------- data API

    def add_account(
        self,
        username: str,
        *,
        domain: str | None = None,
        display_name: str | None = None,
        followers: int = 0,
        following: int = 0,
        statuses: int = 0,
        bot: bool = False,
        created_at: datetime | None = None,
    ) -> str:
        """Create (or return) an account; `domain` other than ours makes it a remote account."""
        domain = domain or self.domain
        with self._lock:
            existing = self._accounts_by_key.get((username.lower(), domain))
            if existing is not None:
                return existing.local_id
            account = _Account(
                local_id=str(next(self._account_ids)),
                username=username,
                domain=domain,
                display_name=display_name if display_name is not None else username.title(),
                followers=followers,
                following=following,
                statuses=statuses,
                bot=bot,
                created_at=_utc(created_at or datetime(2022, 11, 1, tzinfo=timezone.utc)),
            )
            self._accounts[account.local_id] = account
            self._accounts_by_key[(username.lower(), domain)] = account
            return account.local_id

    def set_followers(self, account_id: str, followers: int) -> None:
        with self._lock:
            self._accounts[account_id].followers = followers

    def post(
        self,
        account_id: str,
        text: str = "",
        *,
        content: str | None = None,
        tags: list[str] | None = None,
        created_at: datetime | None = None,
        language: str | None = "en",
        visibility: str = "public",
        spoiler_text: str = "",
        in_reply_to: int | str | None = None,
        quote_of: int | str | None = None,
        quote_state: str = "accepted",
        replies: int = 0,
        reblogs: int = 0,
        favourites: int = 0,
        quotes: int = 0,
        media: int = 0,
        mentions: list[str] | None = None,
    ) -> str:
        """Publish a status from a (usually local) account; returns its local id.

        `text` is rendered like Mastodon would (hashtags become links, tags are taken from it);
        pass `content` to serve raw HTML as is, with `tags` given explicitly.
        """
        with self._lock:
            account = self._accounts[account_id]
            created = _utc(created_at)
            local_id = self._new_id(created)
            if content is None:
                content = render_content(text, account.domain)
                found = [t.lower() for t in _TAG_IN_TEXT.findall(text)]
                tags = tags if tags is not None else list(dict.fromkeys(found))
            status = _Status(
                local_id=local_id,
                uri=f"https://{account.domain}/users/{account.username}/statuses/{local_id}",
                url=f"https://{account.domain}/@{account.username}/{local_id}",
                account=account,
                created_at=created,
                content=content,
                tags=[t.lower().lstrip("#") for t in (tags or [])],
                language=language,
                visibility=visibility,
                spoiler_text=spoiler_text,
                mentions=[self._mention(handle) for handle in (mentions or [])],
                media=[self._media(local_id, n) for n in range(media)],
                counts={"replies": replies, "reblogs": reblogs, "favourites": favourites, "quotes": quotes},
            )
            if in_reply_to is not None:
                parent = self._statuses[int(in_reply_to)]
                status.in_reply_to_id = parent.local_id
                status.in_reply_to_account_id = parent.account.local_id
            if quote_of is not None:
                status.quote_id = int(quote_of)
                status.quote_state = quote_state
            self._store(status)
            return str(local_id)

    def reblog(self, account_id: str, status_id: int | str, *, created_at: datetime | None = None) -> str:
        """Boost a status present on this instance; returns the reblog's local id."""
        with self._lock:
            account = self._accounts[account_id]
            target = self._statuses[int(status_id)]
            created = _utc(created_at)
            local_id = self._new_id(created)
            status = _Status(
                local_id=local_id,
                uri=f"https://{account.domain}/users/{account.username}/statuses/{local_id}/activity",
                url=None,
                account=account,
                created_at=created,
                content="",
                tags=[],
                language=None,
                reblog_id=target.local_id,
            )
            target.counts["reblogs"] += 1
            self._store(status)
            return str(local_id)

    def federate(
        self,
        status_id: int | str,
        other: MastodonServer,
        *,
        counts: dict[str, int] | None = None,
    ) -> str:
        """Copy a status to another instance (its own local id there); returns that id.

        The copy's counts are a snapshot of ours (or `counts`) and do not follow later `grow()`
        calls: remote counts go stale, as on the real fediverse. Referenced statuses (boosted,
        quoted) are federated along; a reply's parent is linked only if `other` already has it.
        """
        with self._lock:
            status = self._statuses[int(status_id)]
            existing = other.local_id_of(status.uri)
            if existing is not None:
                return existing
            snapshot = {
                "uri": status.uri,
                "url": status.url,
                "account": status.account,
                "created_at": status.created_at,
                "content": status.content,
                "tags": list(status.tags),
                "language": status.language,
                "visibility": status.visibility,
                "spoiler_text": status.spoiler_text,
                "edited_at": status.edited_at,
                "quote_state": status.quote_state,
                "mentions": [dict(m) for m in status.mentions],
                "media": [dict(m) for m in status.media],
                "counts": dict(counts) if counts is not None else dict(status.counts),
            }
            reblog_uri = self._statuses[status.reblog_id].uri if status.reblog_id is not None else None
            if status.reblog_id is not None:
                self.federate(status.reblog_id, other)
            quote_uri = self._statuses[status.quote_id].uri if status.quote_id is not None else None
            if status.quote_id is not None and status.quote_id in self._statuses:
                self.federate(status.quote_id, other)
            parent_uri = self._statuses[status.in_reply_to_id].uri if status.in_reply_to_id is not None else None
        return other._receive(snapshot, reblog_uri=reblog_uri, quote_uri=quote_uri, parent_uri=parent_uri)

    def grow(
        self,
        status_id: int | str,
        *,
        replies: int = 0,
        reblogs: int = 0,
        favourites: int = 0,
        quotes: int = 0,
    ) -> None:
        """Add to a status's counts (here only; other instances keep their stale copies)."""
        with self._lock:
            counts = self._statuses[int(status_id)].counts
            for name, delta in (("replies", replies), ("reblogs", reblogs), ("favourites", favourites), ("quotes", quotes)):
                counts[name] += delta

    def edit(
        self,
        status_id: int | str,
        text: str | None = None,
        *,
        content: str | None = None,
        tags: list[str] | None = None,
        edited_at: datetime | None = None,
    ) -> None:
        """Edit a status here (edits federate: call `edit` on other instances to mirror)."""
        with self._lock:
            status = self._statuses[int(status_id)]
            if content is None:
                content = render_content(text or "", status.account.domain)
                if tags is None:
                    tags = list(dict.fromkeys(t.lower() for t in _TAG_IN_TEXT.findall(text or "")))
            status.content = content
            if tags is not None:
                status.tags = [t.lower().lstrip("#") for t in tags]
            status.edited_at = _utc(edited_at)

    def delete(self, status_id: int | str, *, gone: bool = False) -> None:
        """Delete a status: it disappears from timelines and 404s (410 with `gone=True`)."""
        with self._lock:
            status = self._statuses[int(status_id)]
            status.deleted = True
            status.gone = gone

    def local_id_of(self, uri: str) -> str | None:
        with self._lock:
            local_id = self._by_uri.get(uri)
            return str(local_id) if local_id is not None else None

    def uri_of(self, status_id: int | str) -> str:
        with self._lock:
            return self._statuses[int(status_id)].uri

    def status_json(self, status_id: int | str) -> dict[str, Any]:
        """The JSON the API would serve for this status (for assertions)."""
        with self._lock:
            return self._serialise(self._statuses[int(status_id)])

    # ----------------------------------------------------------------- faults & log

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is consumed by the next request it applies to, in order."""
        with self._lock:
            self._faults.extend(faults)

    def fail_next(self, count: int, status: int = 503, *, path: str | None = None) -> None:
        self.inject(*(Fault(status=status, path=path) for _ in range(count)))

    def rate_limit_next(self, *, reset_in: float | None = 1.0, count: int = 1, reset_format: str = "iso") -> None:
        self.inject(*(Fault(status=429, reset_in=reset_in, reset_format=reset_format) for _ in range(count)))

    def malformed_next_page(self, *items: Any) -> None:
        self.inject(Fault(malformed=list(items) if items else [dict(DEFAULT_MALFORMED_ITEM)], path="/api/v1/timelines/"))

    def invalid_json_next(self, *, path: str | None = None) -> None:
        self.inject(Fault(invalid_json=True, path=path))

    def delay_next(self, seconds: float, *, path: str | None = None) -> None:
        self.inject(Fault(delay=seconds, path=path))

    def drop_next(self, count: int = 1, *, path: str | None = None) -> None:
        self.inject(*(Fault(drop=True, path=path) for _ in range(count)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests(self, path_prefix: str = "") -> list[LoggedRequest]:
        """Requests received so far (optionally only those under `path_prefix`)."""
        with self._lock:
            return [r for r in self._log if r.path.startswith(path_prefix)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def reset_rate_limit(self, *, limit: int | None = None) -> None:
        """Start a fresh rate-limit window (optionally with a new budget)."""
        with self._lock:
            if limit is not None:
                self.rate_limit = limit
            self._window_start = time.time()
            self._used = 0

    # ----------------------------------------------------------------- internals: data

    def _new_id(self, created_at: datetime) -> int:
        """A unique snowflake for created_at (bump the sequence on the rare collision)."""
        while True:
            candidate = snowflake_id(created_at, next(self._seq))
            if candidate not in self._statuses:
                return candidate

    def _store(self, status: _Status) -> None:
        self._statuses[status.local_id] = status
        self._by_uri[status.uri] = status.local_id

    def _mention(self, handle: str) -> dict[str, Any]:
        username, _, domain = handle.lstrip("@").partition("@")
        account = self._accounts_by_key.get((username.lower(), domain or self.domain))
        if account is None:
            account = self._accounts[self.add_account(username, domain=domain or None)]
        return {
            "id": account.local_id,
            "username": account.username,
            "url": self._account_url(account),
            "acct": self._acct(account),
        }

    def _media(self, status_id: int, n: int) -> dict[str, Any]:
        media_id = str(status_id + n + 1)
        url = f"https://{self.domain}/system/media_attachments/{media_id}/original.jpg"
        return {
            "id": media_id,
            "type": "image",
            "url": url,
            "preview_url": url.replace("original", "small"),
            "remote_url": None,
            "preview_remote_url": None,
            "text_url": None,
            "meta": {"original": {"width": 640, "height": 480}},
            "description": f"image {n + 1}",
            "blurhash": "UeKUpFxuo~R%0nW;WCnhF6RjaJt757oJodS$",
        }

    def _receive(self, snap: dict[str, Any], *, reblog_uri: str | None, quote_uri: str | None, parent_uri: str | None) -> str:
        """Store a federated copy: remote account, local id from created_at, linked references."""
        with self._lock:
            origin: _Account = snap["account"]
            account = self._accounts[
                self.add_account(
                    origin.username,
                    domain=origin.domain,
                    display_name=origin.display_name,
                    followers=origin.followers,
                    following=origin.following,
                    statuses=origin.statuses,
                    bot=origin.bot,
                    created_at=origin.created_at,
                )
            ]
            local_id = self._new_id(snap["created_at"])
            status = _Status(
                local_id=local_id,
                uri=snap["uri"],
                url=snap["url"],
                account=account,
                created_at=snap["created_at"],
                content=snap["content"],
                tags=snap["tags"],
                language=snap["language"],
                visibility=snap["visibility"],
                spoiler_text=snap["spoiler_text"],
                edited_at=snap["edited_at"],
                quote_state=snap["quote_state"],
                mentions=snap["mentions"],
                media=snap["media"],
                counts=snap["counts"],
            )
            if reblog_uri is not None:
                status.reblog_id = self._by_uri.get(reblog_uri)
            if quote_uri is not None:
                status.quote_id = self._by_uri.get(quote_uri)
                if status.quote_id is None:
                    status.quote_state = "deleted"
            if parent_uri is not None and parent_uri in self._by_uri:
                parent = self._statuses[self._by_uri[parent_uri]]
                status.in_reply_to_id = parent.local_id
                status.in_reply_to_account_id = parent.account.local_id
            self._store(status)
            return str(local_id)

    def _acct(self, account: _Account) -> str:
        return account.username if account.domain == self.domain else f"{account.username}@{account.domain}"

    @staticmethod
    def _account_url(account: _Account) -> str:
        return f"https://{account.domain}/@{account.username}"

    def _serialise_account(self, account: _Account) -> dict[str, Any]:
        url = self._account_url(account)
        avatar = f"https://{self.domain}/avatars/original/missing.png"
        return {
            "id": account.local_id,
            "username": account.username,
            "acct": self._acct(account),
            "url": url,
            "uri": f"https://{account.domain}/users/{account.username}",
            "display_name": account.display_name,
            "note": account.note,
            "avatar": avatar,
            "avatar_static": avatar,
            "header": avatar,
            "header_static": avatar,
            "locked": False,
            "bot": account.bot,
            "group": False,
            "discoverable": True,
            "indexable": True,
            "created_at": _iso(account.created_at.replace(hour=0, minute=0, second=0, microsecond=0)),
            "last_status_at": None,
            "followers_count": account.followers,
            "following_count": account.following,
            "statuses_count": account.statuses,
            "emojis": [],
            "fields": [],
        }

    def _serialise(self, status: _Status, *, depth: int = 0) -> dict[str, Any]:
        """Status entity with Mastodon's documented field set."""
        reblog = self._statuses.get(status.reblog_id) if status.reblog_id is not None else None
        data: dict[str, Any] = {
            "id": str(status.local_id),
            "uri": status.uri,
            "url": status.url,
            "created_at": _iso(status.created_at),
            "edited_at": _iso(status.edited_at),
            "account": self._serialise_account(status.account),
            "content": status.content,
            "text": None,
            "visibility": status.visibility,
            "sensitive": bool(status.spoiler_text),
            "spoiler_text": status.spoiler_text,
            "language": status.language,
            "media_attachments": [dict(m) for m in status.media],
            "application": None if status.account.domain != self.domain else {"name": "Web", "website": None},
            "mentions": [dict(m) for m in status.mentions],
            "tags": [{"name": t, "url": f"https://{self.domain}/tags/{quote(t)}"} for t in status.tags],
            "emojis": [],
            "reblogs_count": status.counts["reblogs"],
            "favourites_count": status.counts["favourites"],
            "replies_count": status.counts["replies"],
            "in_reply_to_id": str(status.in_reply_to_id) if status.in_reply_to_id is not None else None,
            "in_reply_to_account_id": status.in_reply_to_account_id,
            "reblog": self._serialise(reblog, depth=depth + 1) if reblog is not None else None,
            "poll": None,
            "card": None,
            "filtered": [],
        }
        if self.quotes_supported:
            data["quotes_count"] = status.counts["quotes"]
            data["quote"] = self._serialise_quote(status, depth)
        return data

    def _serialise_quote(self, status: _Status, depth: int) -> dict[str, Any] | None:
        """Quote (top level: the full quoted status) or ShallowQuote (nested: just its id)."""
        if status.quote_id is None and status.quote_state == "accepted":
            return None
        quoted = self._statuses.get(status.quote_id) if status.quote_id is not None else None
        state = status.quote_state if quoted is not None and not quoted.deleted else "deleted"
        if depth > 0:
            return {"state": state, "quoted_status_id": str(quoted.local_id) if quoted and state == "accepted" else None}
        body = self._serialise(quoted, depth=depth + 1) if quoted is not None and state == "accepted" else None
        return {"state": state, "quoted_status": body}

    # ----------------------------------------------------------------- internals: HTTP

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.applies_to(path):
                    self._faults.remove(fault)
                    return fault
        return None

    def _charge(self) -> tuple[bool, dict[str, str]]:
        """Spend one request of the budget; return (allowed, rate-limit headers)."""
        with self._lock:
            now = time.time()
            if now >= self._window_start + self.rate_window:
                self._window_start, self._used = now, 0
            allowed = self._used < self.rate_limit
            if allowed:
                self._used += 1
            reset = self._window_start + self.rate_window
            headers = {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - self._used)),
                "X-RateLimit-Reset": _reset_header(reset, self.reset_format),
            }
            return allowed, headers

    def _record(self, method: str, path: str, query: dict[str, list[str]], authorized: bool, status: int) -> None:
        with self._lock:
            self._log.append(LoggedRequest(method, path, query, authorized, status))

    def _instance(self, v2: bool) -> dict[str, Any]:
        feeds = "authenticated" if self.hashtag_feeds_require_auth else "public"
        common: dict[str, Any] = {
            "title": f"Fake Mastodon ({self.domain})",
            "version": self.version,
            "description": "A local stand-in for tests and the offline demo.",
            "languages": ["en"],
            "rules": [],
        }
        if not v2:
            return common | {
                "uri": self.domain,
                "short_description": "Fake instance",
                "email": f"admin@{self.domain}",
                "urls": {"streaming_api": f"wss://{self.domain}"},
                "stats": {"user_count": len(self._accounts), "status_count": len(self._statuses), "domain_count": 1},
                "registrations": False,
                "approval_required": False,
                "invites_enabled": False,
            }
        return common | {
            "domain": self.domain,
            "source_url": "https://github.com/mastodon/mastodon",
            "api_versions": {"mastodon": 7},
            "usage": {"users": {"active_month": len(self._accounts)}},
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": f"admin@{self.domain}", "account": None},
            "configuration": {
                "urls": {"streaming": f"wss://{self.domain}", "status": None},
                "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
                "statuses": {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23},
                "timelines_access": {
                    "live_feeds": {"local": "public", "remote": "public"},
                    "hashtag_feeds": {"local": feeds, "remote": feeds},
                    "trending_link_feeds": {"local": "public", "remote": "public"},
                },
            },
        }

    def _tag_timeline(self, tag: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        """Hashtag timeline with Mastodon's paging semantics; returns (status, body, headers)."""
        try:
            limit = min(self.max_limit, max(1, int(_first(query, "limit") or 20)))
            max_id = _int_or_none(_first(query, "max_id"))
            since_id = _int_or_none(_first(query, "since_id"))
            min_id = _int_or_none(_first(query, "min_id"))
        except ValueError:
            return 400, {"error": "Invalid pagination parameter"}, {}
        only_local = _truthy(_first(query, "local"))
        only_remote = _truthy(_first(query, "remote"))
        tag = tag.lower()
        with self._lock:
            ids = [
                s.local_id
                for s in self._statuses.values()
                if self._in_tag_timeline(s, tag)
                and (not only_local or s.account.domain == self.domain)
                and (not only_remote or s.account.domain != self.domain)
                and (max_id is None or s.local_id < max_id)
                and (since_id is None or s.local_id > since_id)
                and (min_id is None or s.local_id > min_id)
            ]
            if min_id is not None:
                chosen = sorted(ids)[:limit]  # the items immediately above min_id
            else:
                chosen = sorted(ids, reverse=True)[:limit]
            chosen.sort(reverse=True)
            body = [self._serialise(self._statuses[i]) for i in chosen]
        headers = {}
        if chosen:
            base = f"{self.base_url}/api/v1/timelines/tag/{quote(tag)}"
            extra = f"limit={limit}&" if _first(query, "limit") else ""
            headers["Link"] = (
                f'<{base}?{extra}max_id={chosen[-1]}>; rel="next", <{base}?{extra}min_id={chosen[0]}>; rel="prev"'
            )
        return 200, body, headers

    def _in_tag_timeline(self, status: _Status, tag: str) -> bool:
        if status.deleted or status.visibility != "public":
            return False
        if status.reblog_id is not None:
            target = self._statuses.get(status.reblog_id)
            return self.reblogs_in_tag_timelines and target is not None and not target.deleted and tag in target.tags
        return tag in status.tags

    def _single_status(self, raw_id: str) -> tuple[int, Any]:
        with self._lock:
            status = self._statuses.get(_int_or_none(raw_id) or -1) if raw_id.isdigit() else None
            if status is None:
                return 404, {"error": "Record not found"}
            if status.deleted:
                return (410, {"error": "Gone"}) if status.gone else (404, {"error": "Record not found"})
            return 200, self._serialise(status)

    def _route(self, path: str, query: dict[str, list[str]], authorized: bool) -> tuple[int, Any, dict[str, str]]:
        """Dispatch a GET to (status, JSON body, extra headers)."""
        trimmed = path.rstrip("/")
        if trimmed in _INSTANCE_PATHS:
            with self._lock:
                return 200, self._instance(v2=trimmed.startswith("/api/v2")), {}
        if trimmed.startswith("/api/v1/timelines/tag/"):
            if self.hashtag_feeds_require_auth and not authorized:
                return 401, {"error": "This API requires an authenticated user"}, {}
            return self._tag_timeline(unquote(trimmed[len("/api/v1/timelines/tag/"):]), query)
        match = re.fullmatch(r"/api/v1/statuses/([^/]+)", trimmed)
        if match:
            status, body = self._single_status(match.group(1))
            return status, body, {}
        return 404, {"error": "Record not found"}, {}


def _reset_header(epoch: float, fmt: str) -> str:
    """X-RateLimit-Reset as Mastodon sends it (ISO 8601 with microseconds) or as epoch seconds."""
    if fmt == "epoch":
        return str(int(epoch))
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name) or query.get(f"{name}[]")
    return values[0] if values else None


def _int_or_none(value: str | None) -> int | None:
    return None if value in (None, "") else int(value)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class _Handler(BaseHTTPRequestHandler):
    """Per-request glue: auth, rate limit, faults, then the router; logs every request."""

    fake: MastodonServer  # set on the subclass made in MastodonServer.start
    server_version = "FakeMastodon/1.0"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests read `MastodonServer.requests()` instead of stderr."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        auth = self.headers.get("Authorization")
        fake = self.fake
        token = auth[7:].strip() if auth and auth.lower().startswith("bearer ") else None
        if auth is not None and token not in fake.tokens:
            fake._record("GET", path, query, True, 401)
            return self._send(401, {"error": "The access token is invalid"}, {})
        fault = fake._next_fault(path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            fake._record("GET", path, query, auth is not None, 0)
            self.close_connection = True
            return None
        allowed, limit_headers = fake._charge()
        if fault is not None and fault.status == 429:
            headers = dict(limit_headers, **{"X-RateLimit-Remaining": "0"})
            headers.pop("X-RateLimit-Reset")
            if fault.reset_in is not None:
                headers["X-RateLimit-Reset"] = _reset_header(time.time() + fault.reset_in, fault.reset_format)
            fake._record("GET", path, query, auth is not None, 429)
            return self._send(429, {"error": "Too many requests"}, headers)
        if not allowed:
            fake._record("GET", path, query, auth is not None, 429)
            return self._send(429, {"error": "Too many requests"}, limit_headers)
        if fault is not None and fault.status is not None:
            fake._record("GET", path, query, auth is not None, fault.status)
            return self._send(fault.status, {"error": f"Injected error {fault.status}"}, limit_headers)
        status, body, headers = fake._route(path, query, authorized=token is not None)
        if fault is not None and fault.malformed and status == 200 and isinstance(body, list):
            body = list(fault.malformed) + body
        fake._record("GET", path, query, auth is not None, status)
        if fault is not None and fault.invalid_json:
            return self._send_raw(status, b'[{"id": "1", "uri": ', dict(limit_headers, **headers))
        return self._send(status, body, dict(limit_headers, **headers))

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self._send_raw(status, json.dumps(body).encode(), headers)

    def _send_raw(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out during a delay)
