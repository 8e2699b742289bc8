"""A local fake of Bluesky's XRPC API, close enough for the real atproto client.

It serves the handful of methods the tracker uses (sessions, profiles, post search, post
lookup) on 127.0.0.1 with Bluesky's rate-limit headers and error bodies, and it can inject the
failures the adapter must survive (429s, 5xx storms, malformed posts, broken JSON, slow or
dropped connections, expired tokens). Tests and the offline demo use it; it never touches the
network.

    with BlueskyServer() as srv:
        srv.add_account("alice.test", "app-pass", followers=10)
        srv.add_post("alice.test", "Hello #heatwave")
        ... BlueskyAdapter(base_url=srv.base_url, handle="alice.test", app_password="app-pass", ...)
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracker.fake_platforms.serving import LocalServer

JSON_TYPE = "application/json; charset=utf-8"
SEARCH = "app.bsky.feed.searchPosts"
GET_POSTS = "app.bsky.feed.getPosts"
CREATE_SESSION = "com.atproto.server.createSession"
REFRESH_SESSION = "com.atproto.server.refreshSession"
MAX_BATCH = 25
_TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"
_TAG_IN_TEXT = re.compile(r"(?<![\w#])[#\uff03](\w+)")
_ERROR_NAMES = {
    400: "InvalidRequest",
    401: "AuthenticationRequired",
    403: "Forbidden",
    404: "NotFound",
    429: "RateLimitExceeded",
    500: "InternalServerError",
    502: "UpstreamFailure",
    503: "NotEnoughResources",
    504: "UpstreamTimeout",
}


class XrpcFailure(Exception):
    """An XRPC error answer: `{"error", "message"}` with an HTTP status."""

    def __init__(self, status: int, error: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class FakeAccount:
    did: str
    handle: str
    app_password: str
    display_name: str | None = None
    followers: int = 0
    follows: int = 0


@dataclass
class FakePost:
    uri: str
    cid: str
    did: str
    record: dict[str, Any]
    created_at: datetime
    indexed_at: datetime
    likes: int = 0
    reposts: int = 0
    replies: int = 0
    quotes: int = 0
    omit_counts: bool = False
    deleted: bool = False

    @property
    def sort_at(self) -> datetime:
        """Bluesky orders and filters search by min(createdAt, indexedAt): future dates can't jump the queue."""
        return min(self.created_at, self.indexed_at)

    def tags(self) -> set[str]:
        """Tags the `tag` filter matches: facet tags and the record's outline tags."""
        found = {str(t).lower() for t in self.record.get("tags") or () if isinstance(t, str)}
        for facet in self.record.get("facets") or ():
            for feature in facet.get("features", ()) if isinstance(facet, dict) else ():
                if isinstance(feature, dict) and feature.get("$type") == "app.bsky.richtext.facet#tag":
                    found.add(str(feature.get("tag", "")).lower())
        return found


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it (never the credentials themselves)."""

    method: str
    nsid: str
    params: dict[str, list[str]]
    status: int
    """HTTP status answered; 0 when the connection was dropped without an answer."""
    authenticated: bool
    at: float


@dataclass
class _Token:
    did: str
    kind: str  # "access" | "refresh"
    exp: int
    revoked: bool = False


@dataclass
class _Fault:
    kind: str  # status | invalid_json | delay | drop | malformed
    nsid: str | None = None
    status: int = 500
    reset_in: float | None = None
    error: str | None = None
    message: str | None = None
    seconds: float = 0.0
    item: dict[str, Any] | None = None

    def matches(self, nsid: str) -> bool:
        return self.nsid is None or self.nsid == nsid


@dataclass
class _Limiter:
    """A fixed-window budget, reported the way Bluesky does (`ratelimit-*` headers)."""

    limit: int
    window: int
    used: int = 0
    start: float = field(default_factory=time.time)

    def take(self) -> tuple[bool, dict[str, str]]:
        now = time.time()
        if now >= self.start + self.window:
            self.start, self.used = now, 0
        allowed = self.used < self.limit
        if allowed:
            self.used += 1
        headers = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(max(0, self.limit - self.used)),
            "ratelimit-reset": str(int(self.start + self.window)),
            "ratelimit-policy": f"{self.limit};w={self.window}",
        }
        return allowed, headers


def iso(dt: datetime) -> str:
    """Bluesky's datetime format: UTC, milliseconds, 'Z'."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_datetime(value: str) -> datetime:
    """ISO datetime or date; naive means UTC. Raises ValueError."""
    text = value.strip()
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(payload: Mapping[str, Any]) -> str:
    """A well-formed JWT (the client decodes `exp`; nobody checks the signature)."""
    header = _b64url(json.dumps({"typ": "at+jwt", "alg": "ES256K"}).encode())
    body = _b64url(json.dumps(dict(payload), separators=(",", ":")).encode())
    return f"{header}.{body}.{_b64url(secrets.token_bytes(32))}"


def _tag_facets(text: str, tags: Iterable[str] | None) -> list[dict[str, Any]]:
    """Tag facets as the official app writes them (byte offsets into UTF-8 text; a hostile
    post's lone surrogate counts as the 3 bytes a lenient encoder writes)."""
    facets = []
    encoded = text.encode("utf-8", "surrogatepass")
    wanted = None if tags is None else [t.lstrip("#") for t in tags]
    found: list[str] = []
    for match in _TAG_IN_TEXT.finditer(text):
        tag = match.group(1)
        if tag.isdigit() or (wanted is not None and tag.lower() not in {w.lower() for w in wanted}):
            continue
        start = len(text[: match.start()].encode("utf-8", "surrogatepass"))
        facets.append(_facet(start, start + len(match.group(0).encode("utf-8", "surrogatepass")), tag))
        found.append(tag.lower())
    for tag in wanted or ():
        if tag.lower() not in found:  # tag not in the text: a facet anyway (clients may do this)
            facets.append(_facet(len(encoded), len(encoded), tag))
    return facets


def _facet(start: int, end: int, tag: str) -> dict[str, Any]:
    return {
        "$type": "app.bsky.richtext.facet",
        "index": {"byteStart": start, "byteEnd": end},
        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
    }


class BlueskyServer(LocalServer):
    """Fake Bluesky XRPC server in a background thread on 127.0.0.1 (a free port)."""

    def __init__(
        self,
        *,
        rate_limit: int = 3000,
        rate_window: int = 300,
        session_rate_limit: int = 30,
        session_rate_window: int = 300,
        access_ttl: float = 2 * 3600,
        refresh_ttl: float = 60 * 86400,
    ) -> None:
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._lock = threading.RLock()
        self._limiter = _Limiter(rate_limit, rate_window)
        self._session_limiter = _Limiter(session_rate_limit, session_rate_window)
        self._accounts: dict[str, FakeAccount] = {}
        self._posts: dict[str, FakePost] = {}
        self._tokens: dict[str, _Token] = {}
        self._faults: list[_Fault] = []
        self._expired_to_issue = 0
        self._log: list[LoggedRequest] = []
        self._rkeys = itertools.count()

    # -- lifecycle -------------------------------------------------------------------------

    thread_name = "fake-bluesky"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    # -- accounts and posts ----------------------------------------------------------------

    def add_account(
        self,
        handle: str,
        app_password: str = "app-password",
        *,
        did: str | None = None,
        display_name: str | None = None,
        followers: int = 0,
    ) -> FakeAccount:
        did = did or "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]
        account = FakeAccount(did, handle, app_password, display_name, followers)
        with self._lock:
            self._accounts[did] = account
        return account

    def account(self, actor: str) -> FakeAccount | None:
        """By DID or handle (case-insensitive)."""
        with self._lock:
            if actor in self._accounts:
                return self._accounts[actor]
            return next((a for a in self._accounts.values() if a.handle.lower() == actor.lower()), None)

    def set_followers(self, actor: str, followers: int) -> None:
        self._need_account(actor).followers = followers

    def add_post(
        self,
        author: str,
        text: str,
        *,
        created_at: datetime | None = None,
        indexed_at: datetime | None = None,
        langs: Sequence[str] | None = ("en",),
        tags: Sequence[str] | None = None,
        outline_tags: Sequence[str] = (),
        reply_to: str | None = None,
        quote: str | None = None,
        likes: int = 0,
        reposts: int = 0,
        replies: int = 0,
        quotes: int = 0,
        omit_counts: bool = False,
        record_overrides: Mapping[str, Any] | None = None,
    ) -> str:
        """Add a post and return its AT-URI.

        `tags=None` makes facets for every `#word` in the text; a list limits/extends them.
        `record_overrides` replaces record fields verbatim (a value of None removes the field),
        for malformed-but-plausible records such as a createdAt without a timezone.
        """
        account = self._need_account(author)
        created = created_at or datetime.now(timezone.utc)
        with self._lock:
            rkey = self._rkey(created)
            uri = f"at://{account.did}/app.bsky.feed.post/{rkey}"
            record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(created)}
            if langs:
                record["langs"] = list(langs)
            facets = _tag_facets(text, tags)
            if facets:
                record["facets"] = facets
            if outline_tags:
                record["tags"] = list(outline_tags)
            if reply_to:
                record["reply"] = self._reply_ref(reply_to)
            if quote:
                record["embed"] = {"$type": "app.bsky.embed.record", "record": self._strong_ref(quote)}
                if quote in self._posts:
                    self._posts[quote].quotes += 1
            for key, value in (record_overrides or {}).items():
                if value is None:
                    record.pop(key, None)
                else:
                    record[key] = value
            self._posts[uri] = FakePost(
                uri=uri,
                cid=self._cid(uri, text),
                did=account.did,
                record=record,
                created_at=created,
                indexed_at=indexed_at or created,
                likes=likes,
                reposts=reposts,
                replies=replies,
                quotes=quotes,
                omit_counts=omit_counts,
            )
        return uri

    def grow(self, uri: str, *, likes: int = 0, reposts: int = 0, replies: int = 0, quotes: int = 0) -> None:
        """Add to a post's engagement counts (Bluesky has no edits: text never changes)."""
        with self._lock:
            post = self._posts[uri]
            post.likes += likes
            post.reposts += reposts
            post.replies += replies
            post.quotes += quotes

    def delete_post(self, uri: str) -> None:
        with self._lock:
            self._posts[uri].deleted = True

    def post(self, uri: str) -> FakePost:
        return self._posts[uri]

    # -- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        nsid: str | None = None,
        reset_in: float | None = None,
        error: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status`.

        For 429, `reset_in` seconds sets `ratelimit-reset`; None sends no rate-limit headers.
        """
        self._queue(count, _Fault("status", nsid, status=status, reset_in=reset_in, error=error, message=message))

    def malformed_next(self, nsid: str = SEARCH, item: dict[str, Any] | None = None) -> None:
        """Put a broken PostView into the next search/getPosts answer (the rest stays valid)."""
        self._queue(1, _Fault("malformed", nsid, item=item))

    def invalid_json_next(self, count: int = 1, *, nsid: str | None = None) -> None:
        """A 200 with Content-Type application/json but a truncated body."""
        self._queue(count, _Fault("invalid_json", nsid))

    def delay_next(self, seconds: float, count: int = 1, *, nsid: str | None = None) -> None:
        self._queue(count, _Fault("delay", nsid, seconds=seconds))

    def drop_next(self, count: int = 1, *, nsid: str | None = None) -> None:
        """Close the connection without answering."""
        self._queue(count, _Fault("drop", nsid))

    def expire_access_tokens(self) -> None:
        """Reject every access token issued so far with 400 ExpiredToken (the JWTs still look valid)."""
        with self._lock:
            for token in self._tokens.values():
                if token.kind == "access":
                    token.exp = min(token.exp, int(time.time()) - 1)

    def issue_expired_access_tokens(self, count: int = 1) -> None:
        """The next `count` access tokens carry an `exp` in the past, so the client refreshes first."""
        with self._lock:
            self._expired_to_issue += count

    def set_rate_limit(self, limit: int, window: int = 300) -> None:
        with self._lock:
            self._limiter = _Limiter(limit, window)

    def _queue(self, count: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend(_Fault(**vars(fault)) for _ in range(count))

    def _take_fault(self, nsid: str) -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(nsid):
                    return self._faults.pop(index)
        return None

    # -- request log -----------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, nsid: str | None = None) -> int:
        """Requests received (for `nsid`, or all), faults and errors included."""
        with self._lock:
            return sum(1 for r in self._log if nsid is None or r.nsid == nsid)

    @property
    def create_session_calls(self) -> int:
        return self.count(CREATE_SESSION)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, method: str, nsid: str, params: dict[str, list[str]], status: int, auth: bool) -> None:
        with self._lock:
            self._log.append(LoggedRequest(method, nsid, params, status, auth, time.time()))

    # -- helpers ---------------------------------------------------------------------------

    def _need_account(self, actor: str) -> FakeAccount:
        account = self.account(actor)
        if account is None:
            raise KeyError(f"no such account: {actor}")
        return account

    def _rkey(self, created: datetime) -> str:
        """A TID-like record key: sortable by time, unique."""
        value = (int(created.timestamp() * 1_000_000) << 10) | (next(self._rkeys) & 0x3FF)
        chars = []
        for _ in range(13):
            chars.append(_TID_CHARS[value & 31])
            value >>= 5
        return "".join(reversed(chars))

    @staticmethod
    def _cid(uri: str, text: str) -> str:
        digest = base64.b32encode(hashlib.sha256(f"{uri}\n{text}".encode("utf-8", "surrogatepass")).digest()).decode().lower().rstrip("=")
        return "bafyrei" + digest[:52]

    def _strong_ref(self, uri: str) -> dict[str, str]:
        post = self._posts.get(uri)
        return {"uri": uri, "cid": post.cid if post else self._cid(uri, "")}

    def _reply_ref(self, parent_uri: str) -> dict[str, Any]:
        parent = self._posts.get(parent_uri)
        root = self._strong_ref(parent_uri)
        if parent is not None:
            parent.replies += 1
            parent_reply = parent.record.get("reply")
            if isinstance(parent_reply, dict) and "root" in parent_reply:
                root = parent_reply["root"]
        return {"root": root, "parent": self._strong_ref(parent_uri)}

    def _issue_session(self, account: FakeAccount) -> dict[str, Any]:
        now = int(time.time())
        with self._lock:
            access_exp = now + int(self.access_ttl)
            if self._expired_to_issue:
                self._expired_to_issue -= 1
                access_exp = now - 60
            access = make_jwt({"scope": "com.atproto.access", "sub": account.did, "iat": now, "exp": access_exp})
            refresh = make_jwt(
                {
                    "scope": "com.atproto.refresh",
                    "sub": account.did,
                    "iat": now,
                    "exp": now + int(self.refresh_ttl),
                    "jti": secrets.token_hex(16),
                }
            )
            self._tokens[access] = _Token(account.did, "access", access_exp)
            self._tokens[refresh] = _Token(account.did, "refresh", now + int(self.refresh_ttl))
        # No didDoc: the real client would switch to the PDS it names and leave this server.
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "did": account.did,
            "handle": account.handle,
            "active": True,
        }

    def _check_token(self, authorization: str | None, kind: str) -> _Token:
        if not authorization or not authorization.startswith("Bearer "):
            raise XrpcFailure(401, "AuthenticationRequired", "Authentication Required")
        with self._lock:
            token = self._tokens.get(authorization[len("Bearer ") :].strip())
        if token is None or token.revoked or token.kind != kind:
            raise XrpcFailure(400, "InvalidToken", "Token could not be verified")
        if token.exp <= time.time():
            raise XrpcFailure(400, "ExpiredToken", "Token has expired")
        return token

    # -- views -----------------------------------------------------------------------------

    def _author_view(self, did: str) -> dict[str, Any]:
        account = self._accounts.get(did)
        view: dict[str, Any] = {"did": did, "handle": account.handle if account else "handle.invalid", "labels": []}
        if account and account.display_name:
            view["displayName"] = account.display_name
        return view

    def _profile_view(self, account: FakeAccount) -> dict[str, Any]:
        view = self._author_view(account.did)
        view.update(
            followersCount=account.followers,
            followsCount=account.follows,
            postsCount=sum(1 for p in self._posts.values() if p.did == account.did and not p.deleted),
            indexedAt=iso(datetime.now(timezone.utc)),
        )
        return view

    def _embed_view(self, embed: Any) -> dict[str, Any] | None:
        if not isinstance(embed, dict) or embed.get("$type") != "app.bsky.embed.record":
            return None
        uri = (embed.get("record") or {}).get("uri", "")
        quoted = self._posts.get(uri)
        if quoted is None or quoted.deleted:
            inner = {"$type": "app.bsky.embed.record#viewNotFound", "uri": uri, "notFound": True}
        else:
            inner = {
                "$type": "app.bsky.embed.record#viewRecord",
                "uri": quoted.uri,
                "cid": quoted.cid,
                "author": self._author_view(quoted.did),
                "value": quoted.record,
                "indexedAt": iso(quoted.indexed_at),
            }
        return {"$type": "app.bsky.embed.record#view", "record": inner}

    def _post_view(self, post: FakePost) -> dict[str, Any]:
        view: dict[str, Any] = {
            "uri": post.uri,
            "cid": post.cid,
            "author": self._author_view(post.did),
            "record": post.record,
            "indexedAt": iso(post.indexed_at),
            "labels": [],
        }
        embed = self._embed_view(post.record.get("embed"))
        if embed:
            view["embed"] = embed
        if not post.omit_counts:
            view.update(
                likeCount=post.likes, repostCount=post.reposts, replyCount=post.replies, quoteCount=post.quotes
            )
        return view

    # -- endpoints -------------------------------------------------------------------------

    def handle(
        self, method: str, nsid: str, params: dict[str, list[str]], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one XRPC call: (status, JSON body, extra headers). Faults are applied by the handler."""
        limiter = self._session_limiter if nsid == CREATE_SESSION else self._limiter
        with self._lock:
            allowed, rate_headers = limiter.take()
        if not allowed:
            raise XrpcFailure(429, "RateLimitExceeded", "Rate Limit Exceeded", rate_headers)
        routes = {
            ("POST", CREATE_SESSION): lambda: self._create_session(body),
            ("POST", REFRESH_SESSION): lambda: self._refresh_session(headers),
            ("GET", "app.bsky.actor.getProfile"): lambda: self._get_profile(params),
            ("GET", "app.bsky.actor.getProfiles"): lambda: self._get_profiles(params),
            ("GET", SEARCH): lambda: self._search(params),
            ("GET", GET_POSTS): lambda: self._get_posts(params),
        }
        route = routes.get((method, nsid))
        if route is None:
            raise XrpcFailure(501, "MethodNotImplemented", f"Method Not Implemented: {nsid}", rate_headers)
        if nsid.startswith("app.bsky."):
            self._check_token(headers.get("authorization"), "access")
        try:
            return 200, route(), rate_headers
        except XrpcFailure as failure:
            failure.headers = {**rate_headers, **failure.headers}
            raise

    def _create_session(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
            identifier, password = str(data["identifier"]), str(data["password"])
        except (ValueError, KeyError, TypeError):
            raise XrpcFailure(400, "InvalidRequest", "Input must have the properties identifier and password") from None
        account = self.account(identifier)
        if account is None or not secrets.compare_digest(account.app_password, password):
            raise XrpcFailure(401, "AuthenticationRequired", "Invalid identifier or password")
        return self._issue_session(account)

    def _refresh_session(self, headers: Mapping[str, str]) -> dict[str, Any]:
        token = self._check_token(headers.get("authorization"), "refresh")
        with self._lock:
            token.revoked = True  # refresh tokens rotate
        return self._issue_session(self._accounts[token.did])

    def _get_profile(self, params: dict[str, list[str]]) -> dict[str, Any]:
        actor = _one(params, "actor", required=True)
        account = self.account(actor)
        if account is None:
            raise XrpcFailure(400, "InvalidRequest", "Profile not found")
        return self._profile_view(account)

    def _get_profiles(self, params: dict[str, list[str]]) -> dict[str, Any]:
        actors = _many(params, "actors", required=True)
        found = (self.account(actor) for actor in actors)
        return {"profiles": [self._profile_view(a) for a in found if a is not None]}

    def _get_posts(self, params: dict[str, list[str]]) -> dict[str, Any]:
        uris = _many(params, "uris", required=True)
        with self._lock:
            views = [self._post_view(self._posts[u]) for u in uris if u in self._posts and not self._posts[u].deleted]
        return {"posts": views}

    def _search(self, params: dict[str, list[str]]) -> dict[str, Any]:
        query = _parse_search(params)
        with self._lock:
            hits = [p for p in self._posts.values() if not p.deleted and query.matches(p)]
            if query.sort == "top":
                hits.sort(key=lambda p: (p.likes + p.reposts, p.sort_at, p.uri), reverse=True)
            else:
                hits.sort(key=lambda p: (p.sort_at, p.uri), reverse=True)
            start = query.start(hits)
            page = hits[start : start + query.limit]
            answer: dict[str, Any] = {"posts": [self._post_view(p) for p in page], "hitsTotal": len(hits)}
        if start + query.limit < len(hits) and page:
            answer["cursor"] = query.next_cursor(page[-1], start + len(page))
        return answer


@dataclass
class _SearchQuery:
    terms: list[str]
    tags: list[str]
    since: datetime | None
    until: datetime | None
    sort: str
    limit: int
    lang: str | None
    cursor: dict[str, Any] | None

    def matches(self, post: FakePost) -> bool:
        tags = post.tags()
        text = str(post.record.get("text", ""))
        text_tags = {m.group(1).lower() for m in _TAG_IN_TEXT.finditer(text)}
        if any(tag not in tags for tag in self.tags):
            return False
        for term in self.terms:
            if term == "*":
                continue
            if term.startswith("#"):
                if term[1:].lower() not in tags | text_tags:
                    return False
            elif term.lower() not in text.lower():
                return False
        if self.since and post.sort_at < self.since:
            return False
        if self.until and post.sort_at >= self.until:
            return False
        langs = post.record.get("langs") or []
        return not self.lang or any(str(lang).lower().startswith(self.lang.lower()) for lang in langs)

    def start(self, hits: list[FakePost]) -> int:
        """Where the page begins: after the cursor's post (latest) or at its offset (top)."""
        if not self.cursor:
            return 0
        if "offset" in self.cursor:
            return int(self.cursor["offset"])
        after = (parse_datetime(self.cursor["sortAt"]), self.cursor["uri"])
        return next((i for i, p in enumerate(hits) if (p.sort_at, p.uri) < after), len(hits))

    def next_cursor(self, last: FakePost, offset: int) -> str:
        state = {"offset": offset} if self.sort == "top" else {"sortAt": last.sort_at.isoformat(), "uri": last.uri}
        return _b64url(json.dumps(state).encode())


def _parse_search(params: dict[str, list[str]]) -> _SearchQuery:
    q = _one(params, "q", required=True)
    sort = _one(params, "sort") or "latest"
    if sort not in ("latest", "top"):
        raise XrpcFailure(400, "InvalidRequest", "sort must be one of latest, top")
    raw_limit = _one(params, "limit") or "25"
    try:
        limit = int(raw_limit)
    except ValueError:
        raise XrpcFailure(400, "InvalidRequest", "limit must be an integer") from None
    if not 1 <= limit <= 100:
        raise XrpcFailure(400, "InvalidRequest", "limit can not be greater than 100 or less than 1")
    return _SearchQuery(
        terms=q.split(),
        tags=[t.lstrip("#").lower() for t in params.get("tag", [])],
        since=_time_param(params, "since"),
        until=_time_param(params, "until"),
        sort=sort,
        limit=limit,
        lang=_one(params, "lang"),
        cursor=_decode_cursor(_one(params, "cursor")),
    )


def _time_param(params: dict[str, list[str]], name: str) -> datetime | None:
    value = _one(params, name)
    if not value:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        raise XrpcFailure(400, "InvalidRequest", f"{name} must be a datetime or date") from None


def _decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        state = json.loads(_b64url_decode(cursor))
        if not isinstance(state, dict):
            raise ValueError(cursor)
        return state
    except ValueError:
        raise XrpcFailure(400, "InvalidRequest", "malformed cursor") from None


def _one(params: dict[str, list[str]], name: str, *, required: bool = False) -> str | None:
    values = params.get(name)
    if not values:
        if required:
            raise XrpcFailure(400, "InvalidRequest", f'Error: Params must have the property "{name}"')
        return None
    return values[0]


def _many(params: dict[str, list[str]], name: str, *, required: bool = False) -> list[str]:
    values = params.get(name, [])
    if required and not values:
        raise XrpcFailure(400, "InvalidRequest", f'Error: Params must have the property "{name}"')
    if len(values) > MAX_BATCH:
        raise XrpcFailure(400, "InvalidRequest", f"Error: {name} must not have more than {MAX_BATCH} elements")
    return values


_DEFAULT_MALFORMED = {
    "uri": "at://did:plc:broken/app.bsky.feed.post/3broken",
    "cid": "bafyreibroken",
    "author": {"did": "did:plc:broken"},
    "record": "this should be an object",
    "indexedAt": "not a date",
}


class _Handler(BaseHTTPRequestHandler):
    """Routes /xrpc/<nsid> to the owning BlueskyServer and applies queued faults."""

    fake: BlueskyServer
    server_version = "FakeBluesky/1.0"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        nsid = parts.path.removeprefix("/xrpc/").strip("/")
        params = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        authenticated = bool(self.headers.get("Authorization"))
        fault = self.fake._take_fault(nsid)
        if fault and fault.kind == "delay":
            time.sleep(fault.seconds)
            fault = None
        if fault and fault.kind == "drop":
            self.fake._record(method, nsid, params, 0, authenticated)
            self.close_connection = True
            return
        status, payload, headers = self._answer(method, nsid, params, body, fault)
        self.fake._record(method, nsid, params, status, authenticated)
        if fault and fault.kind == "invalid_json":
            self._send(200, b'{"posts": [{"uri": "at://trunc', headers)
            return
        self._send(status, json.dumps(payload).encode(), headers)

    def _answer(
        self, method: str, nsid: str, params: dict[str, list[str]], body: bytes, fault: _Fault | None
    ) -> tuple[int, Any, dict[str, str]]:
        if fault and fault.kind == "status":
            return self._fault_answer(fault)
        try:
            status, payload, headers = self.fake.handle(method, nsid, params, body, self.headers)
        except XrpcFailure as failure:
            return failure.status, {"error": failure.error, "message": failure.message}, failure.headers
        if fault and fault.kind == "malformed" and isinstance(payload.get("posts"), list):
            posts = payload["posts"]
            posts.insert(min(1, len(posts)), dict(fault.item or _DEFAULT_MALFORMED))
        return status, payload, headers

    @staticmethod
    def _fault_answer(fault: _Fault) -> tuple[int, Any, dict[str, str]]:
        error = fault.error or _ERROR_NAMES.get(fault.status, "InternalServerError")
        headers: dict[str, str] = {}
        if fault.status == 429 and fault.reset_in is not None:
            headers = {
                "ratelimit-limit": "3000",
                "ratelimit-remaining": "0",
                "ratelimit-reset": str(int(time.time() + fault.reset_in)),
                "ratelimit-policy": "3000;w=300",
            }
        return fault.status, {"error": error, "message": fault.message or error}, headers

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":  # pragma: no cover - manual exploration
    with BlueskyServer() as srv:
        srv.add_account("demo.test", "app-password", followers=42)
        srv.add_post("demo.test", "Hello #campaign", created_at=datetime.now(timezone.utc) - timedelta(minutes=5))
        print(f"Fake Bluesky at {srv.base_url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
