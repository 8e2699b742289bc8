"""A local fake of the X API v2 (recent search and tweet lookup) for tests and the offline demo.

It answers the real tweepy client over HTTP on 127.0.0.1 with the documented response shapes
(fields only when requested, ids as strings, `created_at` with milliseconds, problem JSON
errors, rate-limit headers) and can inject the faults a collector must survive. Tests and the
demo fill it through the Python API below; nothing here touches the network.

    with XServer(bearer_token="t") as srv:
        alice = srv.add_user("alice", followers=120)
        srv.add_tweet(alice, "Hello #Tour")
        # point XAdapter(base_url=srv.base_url, bearer_token="t", ...) at it

Simplifications (real X behaves at least this strictly):
- Editing makes a new version with a new id, as X does; search returns only the latest
  version of each edit chain, lookup returns whichever version was asked for.
- Ids are snowflakes derived from `created_at`, so id order is time order.
- A rate-limit budget is kept per endpoint path (one "app"), reset every `window` seconds.
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracker.fake_platforms.serving import LocalServer, QuietHTTPServer

SNOWFLAKE_EPOCH_MS = 1288834974657
"""Twitter's snowflake epoch (2010-11-04T01:42:54.657Z)."""
SEARCH_PATH = "/2/tweets/search/recent"
LOOKUP_PATH = "/2/tweets"
RECENT_WINDOW = timedelta(days=7)
PROBLEMS = "https://api.twitter.com/2/problems/"

TWEET_FIELDS = frozenset(
    "article attachments author_id card_uri community_id context_annotations conversation_id "
    "created_at display_text_range edit_controls edit_history_tweet_ids entities geo id "
    "in_reply_to_user_id lang media_metadata non_public_metrics note_tweet organic_metrics "
    "possibly_sensitive promoted_metrics public_metrics referenced_tweets reply_settings scopes "
    "source text withheld".split()
)
USER_FIELDS = frozenset(
    "affiliation connection_status created_at description entities id location "
    "most_recent_tweet_id name pinned_tweet_id profile_banner_url profile_image_url protected "
    "public_metrics receives_your_dm subscription_type url username verified verified_type "
    "withheld".split()
)
EXPANSIONS = frozenset(
    "attachments.poll_ids attachments.media_keys author_id edit_history_tweet_ids "
    "entities.mentions.username geo.place_id in_reply_to_user_id referenced_tweets.id "
    "referenced_tweets.id.author_id article.cover_media article.media_entities".split()
)
SEARCH_PARAMS = frozenset(
    "query start_time end_time since_id until_id max_results next_token pagination_token "
    "sort_order expansions tweet.fields user.fields media.fields place.fields poll.fields".split()
)
LOOKUP_PARAMS = frozenset(
    "ids expansions tweet.fields user.fields media.fields place.fields poll.fields".split()
)
HASHTAG_RE = re.compile(r"(?<![\w&#])[#＃](\w+)")
MENTION_RE = re.compile(r"(?<!\w)@(\w{1,15})")
MALFORMED_KINDS = ("missing_id", "missing_created_at", "missing_author", "wrong_types", "not_object")


def format_time(value: datetime) -> str:
    """X's timestamp format: UTC with milliseconds (tweepy's parser requires the fraction)."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def snowflake_time(tweet_id: str) -> datetime:
    """The creation time encoded in a snowflake id."""
    ms = (int(tweet_id) >> 22) + SNOWFLAKE_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass(slots=True)
class FakeUser:
    id: str
    username: str
    name: str
    followers: int = 0
    following: int = 0
    tweet_count: int = 0
    listed_count: int = 0


@dataclass(slots=True)
class FakeTweet:
    id: str
    author_id: str
    text: str
    """Plain text; served HTML-escaped (&amp; &lt; &gt;) as X does."""
    created_at: datetime
    lang: str | None = "en"
    referenced: list[tuple[str, str]] = field(default_factory=list)
    """(type, id) with type retweeted | quoted | replied_to."""
    metrics: dict[str, int] = field(default_factory=dict)
    edit_history: list[str] = field(default_factory=list)
    conversation_id: str | None = None
    in_reply_to_user_id: str | None = None
    deleted: bool = False

    @property
    def hashtags(self) -> list[str]:
        return [m.group(1).lower() for m in HASHTAG_RE.finditer(self.text)]

    @property
    def is_latest(self) -> bool:
        return self.edit_history[-1] == self.id

    def kind(self, ref_type: str) -> bool:
        return any(t == ref_type for t, _ in self.referenced)


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the server saw it (the Authorization header is deliberately not kept)."""

    method: str
    path: str
    query: dict[str, str]


@dataclass(slots=True)
class _Fault:
    kind: str
    """status | invalid_json | delay | drop"""
    path: str | None = None
    status: int = 503
    reset_in: float | None = None
    rate_headers: bool = True
    delay: float = 0.0
    truncated: bool = False


class _Problem(Exception):
    """An error answer: status plus a problem-JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _invalid(param: str, value: str, message: str) -> _Problem:
    return _Problem(
        400,
        {
            "errors": [{"parameters": {param: [value]}, "message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": PROBLEMS + "invalid-request",
        },
    )


def _plain_problem(status: int, title: str) -> dict[str, Any]:
    return {"title": title, "detail": title, "type": "about:blank", "status": status}


STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# --------------------------------------------------------------------------- search queries


Predicate = Callable[[FakeTweet], bool]


class _QueryParser:
    """A small subset of X's search syntax: terms, `-` negation, `OR`, parentheses.

    Terms: `#tag`, `is:retweet|reply|quote`, `from:user`, `lang:xx`, `"phrase"`, bare words.
    Unknown `operator:` terms are rejected (400), as X rejects them.
    """

    TOKEN_RE = re.compile(r'\(|\)|"[^"]*"|-(?=\S)|[^\s()"]+')

    def __init__(self, query: str, usernames: Callable[[str], str | None]) -> None:
        self.tokens = self.TOKEN_RE.findall(query)
        self.pos = 0
        self.username_of = usernames

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ValueError("empty query")
        pred = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos]!r}")
        return pred

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self) -> Predicate:
        options = [self._and()]
        while self._peek() == "OR":
            self.pos += 1
            options.append(self._and())
        return options[0] if len(options) == 1 else (lambda t: any(p(t) for p in options))

    def _and(self) -> Predicate:
        parts: list[Predicate] = []
        while self._peek() not in (None, ")", "OR"):
            parts.append(self._unary())
        if not parts:
            raise ValueError("empty clause")
        return parts[0] if len(parts) == 1 else (lambda t: all(p(t) for p in parts))

    def _unary(self) -> Predicate:
        if self._peek() == "-":
            self.pos += 1
            inner = self._atom()
            return lambda t: not inner(t)
        return self._atom()

    def _atom(self) -> Predicate:
        token = self._peek()
        if token is None:
            raise ValueError("query ends early")
        self.pos += 1
        if token == "(":
            inner = self._or()
            if self._peek() != ")":
                raise ValueError("missing ')'")
            self.pos += 1
            return inner
        return self._term(token)

    def _term(self, token: str) -> Predicate:
        if token.startswith(("#", "＃")) and len(token) > 1:
            tag = token[1:].lower()
            return lambda t: tag in t.hashtags
        if token.startswith('"'):
            phrase = token.strip('"').lower()
            return lambda t: phrase in t.text.lower()
        if ":" in token:
            op, _, value = token.partition(":")
            return self._operator(op.lower(), value)
        word = token.lower()
        return lambda t: word in t.text.lower()

    def _operator(self, op: str, value: str) -> Predicate:
        if op == "is" and value in ("retweet", "reply", "quote"):
            ref = {"retweet": "retweeted", "reply": "replied_to", "quote": "quoted"}[value]
            return lambda t: t.kind(ref)
        if op == "lang":
            return lambda t: (t.lang or "") == value
        if op == "from":
            name = value.lower()
            return lambda t: (self.username_of(t.author_id) or "").lower() == name
        raise ValueError(f"unsupported operator {op}:{value}")


# --------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    server: QuietHTTPServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests read the request log instead."""


class XServer(LocalServer):
    """The fake X API v2. Use as a context manager; data and faults are set from Python."""

    def __init__(
        self,
        bearer_token: str = "test-bearer-token",
        *,
        rate_limit: int = 450,
        window: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bearer_token = bearer_token
        self.rate_limit = rate_limit
        self.window = window
        self.clock = clock
        self.users: dict[str, FakeUser] = {}
        self.tweets: dict[str, FakeTweet] = {}
        self.requests: list[LoggedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._corruptions: deque[tuple[str, int]] = deque()
        self._budgets: dict[str, tuple[float, int]] = {}
        """path -> (window reset unix time, remaining)."""
        self._seq = itertools.count(1)
        self._lock = threading.RLock()
        self._stopping = threading.Event()

    # ----------------------------------------------------------------- lifecycle

    thread_name = "fake-x"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def stop(self) -> None:
        self._stopping.set()  # faults that delay an answer give up at once
        super().stop()

    # ----------------------------------------------------------------- data API

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def add_user(
        self,
        username: str,
        *,
        name: str | None = None,
        followers: int = 0,
        following: int = 0,
        user_id: str | None = None,
    ) -> str:
        """Add an account; returns its id."""
        with self._lock:
            uid = user_id or str(10_000 + next(self._seq))
            self.users[uid] = FakeUser(uid, username, name or username.title(), followers, following)
            return uid

    def set_followers(self, user_id: str, followers: int) -> None:
        with self._lock:
            self.users[user_id].followers = followers

    def add_tweet(
        self,
        author: str,
        text: str,
        *,
        created_at: datetime | None = None,
        lang: str | None = "en",
        reply_to: str | None = None,
        quote_of: str | None = None,
        metrics: dict[str, int] | None = None,
    ) -> str:
        """Add a tweet by `author` (user id or username); returns the new id."""
        with self._lock:
            user = self._user(author)
            refs: list[tuple[str, str]] = []
            conversation_id = in_reply_to = None
            if reply_to is not None:
                parent = self.tweets[reply_to]
                refs.append(("replied_to", reply_to))
                conversation_id = parent.conversation_id or parent.id
                in_reply_to = parent.author_id
            if quote_of is not None:
                refs.append(("quoted", quote_of))
            tweet = self._new_tweet(user.id, text, created_at, lang, refs, metrics)
            tweet.conversation_id = conversation_id or tweet.id
            tweet.in_reply_to_user_id = in_reply_to
            return tweet.id

    def add_retweet(self, author: str, tweet_id: str, *, created_at: datetime | None = None) -> str:
        """Retweet `tweet_id`: text "RT @user: ...", referenced_tweets type retweeted."""
        with self._lock:
            user = self._user(author)
            original = self.tweets[tweet_id]
            original_author = self.users[original.author_id].username
            text = f"RT @{original_author}: {original.text}"
            counts = {"retweet_count": original.metrics.get("retweet_count", 0)}
            tweet = self._new_tweet(user.id, text, created_at, original.lang, [("retweeted", tweet_id)], counts)
            tweet.conversation_id = tweet.id
            original.metrics["retweet_count"] = original.metrics.get("retweet_count", 0) + 1
            return tweet.id

    def set_metrics(self, tweet_id: str, **counts: int) -> None:
        """Update public metrics, e.g. `set_metrics(id, like_count=5, impression_count=900)`."""
        with self._lock:
            unknown = set(counts) - set(_zero_metrics())
            if unknown:
                raise ValueError(f"unknown metrics: {sorted(unknown)}")
            self.tweets[tweet_id].metrics.update(counts)

    def edit_tweet(self, tweet_id: str, text: str, *, at: datetime | None = None) -> str:
        """Edit as X does: a new version with a new id; every version lists the whole chain."""
        with self._lock:
            old = self.tweets[tweet_id]
            chain = old.edit_history
            latest = self.tweets[chain[-1]]
            new = self._new_tweet(old.author_id, text, at, old.lang, list(old.referenced), dict(latest.metrics))
            new.conversation_id = old.conversation_id
            new.in_reply_to_user_id = old.in_reply_to_user_id
            chain.append(new.id)
            for version_id in chain:
                self.tweets[version_id].edit_history = chain
            return new.id

    def delete_tweet(self, tweet_id: str) -> None:
        """Delete a tweet with all its versions, and the retweets of it."""
        with self._lock:
            for version_id in self.tweets[tweet_id].edit_history:
                self.tweets[version_id].deleted = True
            for tweet in self.tweets.values():
                if ("retweeted", tweet_id) in tweet.referenced:
                    tweet.deleted = True

    # ----------------------------------------------------------------- faults and log

    def fail_next(self, status: int = 503, count: int = 1, *, path: str | None = None) -> None:
        """Answer the next `count` requests (to `path`, or any) with `status` and problem JSON."""
        self._queue(count, _Fault("status", path, status=status))

    def rate_limit_next(
        self, count: int = 1, *, reset_in: float | None = 30.0, path: str | None = None
    ) -> None:
        """Answer 429; `reset_in=None` sends no x-rate-limit-* headers at all."""
        fault = _Fault("status", path, status=429, reset_in=reset_in, rate_headers=reset_in is not None)
        self._queue(count, fault)

    def invalid_json_next(self, count: int = 1, *, truncated: bool = True, path: str | None = None) -> None:
        """HTTP 200 with a broken body: cut-off JSON (`truncated`) or an HTML error page."""
        self._queue(count, _Fault("invalid_json", path, truncated=truncated))

    def delay_next(self, seconds: float, count: int = 1, *, path: str | None = None) -> None:
        """Stall before answering normally, to make clients time out."""
        self._queue(count, _Fault("delay", path, delay=seconds))

    def drop_next(self, count: int = 1, *, path: str | None = None) -> None:
        """Close the connection without any response."""
        self._queue(count, _Fault("drop", path))

    def corrupt_next_page(self, kind: str = "missing_id", *, index: int = 0) -> None:
        """Damage item `index` of the next successful `data` list (search or lookup)."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind must be one of {MALFORMED_KINDS}")
        with self._lock:
            self._corruptions.append((kind, index))

    def set_remaining(self, remaining: int, *, path: str = SEARCH_PATH) -> None:
        """Set what is left of the current rate-limit window for `path`."""
        with self._lock:
            reset, _ = self._budget(path)
            self._budgets[path] = (reset, remaining)

    def reset_rate_limits(self) -> None:
        with self._lock:
            self._budgets.clear()

    def request_count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # ----------------------------------------------------------------- internals: data

    def _user(self, ref: str) -> FakeUser:
        if ref in self.users:
            return self.users[ref]
        for user in self.users.values():
            if user.username.lower() == ref.lower():
                return user
        raise KeyError(f"unknown user {ref!r}")

    def _username(self, user_id: str) -> str | None:
        user = self.users.get(user_id)
        return user.username if user else None

    def _new_tweet(
        self,
        author_id: str,
        text: str,
        created_at: datetime | None,
        lang: str | None,
        refs: list[tuple[str, str]],
        metrics: dict[str, int] | None,
    ) -> FakeTweet:
        when = (created_at or self.now()).astimezone(timezone.utc)
        tweet_id = self._snowflake(when)
        tweet = FakeTweet(
            id=tweet_id,
            author_id=author_id,
            text=text,
            created_at=when,
            lang=lang,
            referenced=refs,
            metrics={**_zero_metrics(), **(metrics or {})},
            edit_history=[tweet_id],
        )
        self.tweets[tweet_id] = tweet
        self.users[author_id].tweet_count += 1
        return tweet

    def _snowflake(self, when: datetime) -> str:
        ms = int(when.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS
        value = (ms << 22) | (next(self._seq) & 0x3FFFFF)
        while str(value) in self.tweets:
            value += 1
        return str(value)

    # ----------------------------------------------------------------- internals: HTTP

    def _queue(self, count: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(count))

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is None or fault.path == path:
                    del self._faults[i]
                    return fault
        return None

    def _budget(self, path: str) -> tuple[float, int]:
        now = self.clock()
        reset, remaining = self._budgets.get(path, (0.0, self.rate_limit))
        if now >= reset:
            reset, remaining = float(int(now + self.window)), self.rate_limit
            self._budgets[path] = (reset, remaining)
        return reset, remaining

    def _rate_headers(self, path: str, *, spend: bool) -> dict[str, str]:
        with self._lock:
            reset, remaining = self._budget(path)
            if spend and remaining > 0:
                remaining -= 1
                self._budgets[path] = (reset, remaining)
            return {
                "x-rate-limit-limit": str(self.rate_limit),
                "x-rate-limit-remaining": str(remaining),
                "x-rate-limit-reset": str(int(reset)),
            }

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            self.requests.append(LoggedRequest(handler.command, parts.path, query))
        fault = self._take_fault(parts.path)
        if fault is not None and fault.kind != "delay":
            self._answer_fault(handler, fault, parts.path)
            return
        if fault is not None and self._stopping.wait(fault.delay):
            return
        status, body, headers = self._answer(handler, parts.path, query)
        _send(handler, status, json.dumps(body).encode(), headers)

    def _answer(
        self, handler: _Handler, path: str, query: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if handler.headers.get("Authorization") != f"Bearer {self.bearer_token}":
            return 401, _plain_problem(401, "Unauthorized"), self._rate_headers(path, spend=False)
        with self._lock:
            _, remaining = self._budget(path)
            if remaining <= 0:
                return 429, _plain_problem(429, "Too Many Requests"), self._rate_headers(path, spend=False)
            headers = self._rate_headers(path, spend=True)
            try:
                if path == SEARCH_PATH:
                    return 200, self._search(query), headers
                if path == LOOKUP_PATH:
                    return 200, self._lookup(query), headers
                return 404, _plain_problem(404, "Not Found"), headers
            except _Problem as problem:
                return problem.status, problem.body, headers

    def _answer_fault(self, handler: _Handler, fault: _Fault, path: str) -> None:
        if fault.kind == "drop":
            handler.close_connection = True
            return
        if fault.kind == "invalid_json":
            body = b'{"data":[{"id":"1","text":"cut of' if fault.truncated else b"<html>upstream error</html>"
            _send(handler, 200, body, self._rate_headers(path, spend=True))
            return
        headers: dict[str, str] = {}
        if fault.rate_headers:
            headers = self._rate_headers(path, spend=False)
        if fault.status == 429 and fault.reset_in is not None:
            headers["x-rate-limit-remaining"] = "0"
            headers["x-rate-limit-reset"] = str(int(self.clock() + fault.reset_in))
        title = STATUS_TITLES.get(fault.status, "Error")
        _send(handler, fault.status, json.dumps(_plain_problem(fault.status, title)).encode(), headers)

    # ----------------------------------------------------------------- endpoints

    def _search(self, query: dict[str, str]) -> dict[str, Any]:
        _check_params(query, SEARCH_PARAMS)
        fields, user_fields, expansions = _requested(query)
        predicate = self._parse_query(query.get("query", ""))
        max_results = _int_param(query, "max_results", 10, 10, 100)
        now = self.now()
        start = _time_param(query, "start_time")
        end = _time_param(query, "end_time")
        if start is not None and start < now - RECENT_WINDOW:
            raise _invalid("start_time", query["start_time"], "Invalid 'start_time': must be on or after "
                           f"{format_time(now - RECENT_WINDOW)}")
        if end is not None and end > now - timedelta(seconds=10):
            raise _invalid("end_time", query["end_time"], "Invalid 'end_time': must be a minimum of 10 "
                           "seconds prior to the request time.")
        since = _id_param(query, "since_id")
        until = _id_param(query, "until_id")
        token = query.get("next_token") or query.get("pagination_token")
        below = _decode_token(token) if token else None
        matches = sorted(
            (
                t
                for t in self.tweets.values()
                if not t.deleted
                and t.is_latest
                and t.created_at >= max(start or now - RECENT_WINDOW, now - RECENT_WINDOW)
                and (end is None or t.created_at < end)
                and (since is None or int(t.id) > since)
                and (until is None or int(t.id) < until)
                and (below is None or int(t.id) < below)
                and predicate(t)
            ),
            key=lambda t: int(t.id),
            reverse=True,
        )
        page = matches[:max_results]
        if not page:
            return {"meta": {"result_count": 0}}
        body = self._envelope(page, fields, user_fields, expansions)
        meta: dict[str, Any] = {"newest_id": page[0].id, "oldest_id": page[-1].id, "result_count": len(page)}
        if len(matches) > max_results:
            meta["next_token"] = _encode_token(int(page[-1].id))
        body["meta"] = meta
        return body

    def _lookup(self, query: dict[str, str]) -> dict[str, Any]:
        _check_params(query, LOOKUP_PARAMS)
        fields, user_fields, expansions = _requested(query)
        raw = query.get("ids", "")
        ids = [i for i in raw.split(",") if i]
        if not 1 <= len(ids) <= 100:
            raise _invalid("ids", raw, "The number of values in the `ids` query parameter list "
                           "[" + str(len(ids)) + "] is not between 1 and 100")
        for tweet_id in ids:
            if not tweet_id.isdigit():
                raise _invalid("ids", tweet_id, f"The `ids` query parameter value [{tweet_id}] is not valid")
        found = [self.tweets[i] for i in ids if i in self.tweets and not self.tweets[i].deleted]
        missing = [i for i in ids if i not in self.tweets or self.tweets[i].deleted]
        body = self._envelope(found, fields, user_fields, expansions) if found else {}
        if missing:
            body["errors"] = [_not_found(i) for i in missing]
        return body

    def _parse_query(self, text: str) -> Predicate:
        if not text.strip():
            raise _invalid("query", text, "The `query` query parameter can not be empty")
        if len(text) > 512:
            raise _invalid("query", text, "The `query` query parameter value is longer than 512 characters")
        try:
            return _QueryParser(text, self._username).parse()
        except ValueError as exc:
            raise _invalid("query", text, f"There were errors processing your request: {exc}") from None

    def _envelope(
        self, tweets: list[FakeTweet], fields: set[str], user_fields: set[str], expansions: set[str]
    ) -> dict[str, Any]:
        """`data` plus `includes` for the requested expansions."""
        data = [self._tweet_json(t, fields) for t in tweets]
        self._corrupt(data)
        body: dict[str, Any] = {"data": data}
        includes: dict[str, Any] = {}
        referenced: list[FakeTweet] = []
        if "referenced_tweets.id" in expansions:
            seen: set[str] = set()
            for tweet in tweets:
                for _, ref_id in tweet.referenced:
                    ref = self.tweets.get(ref_id)
                    if ref is not None and not ref.deleted and ref_id not in seen:
                        seen.add(ref_id)
                        referenced.append(ref)
            if referenced:
                includes["tweets"] = [self._tweet_json(t, fields) for t in referenced]
        author_ids: list[str] = []
        if "author_id" in expansions:
            author_ids += [t.author_id for t in tweets]
        if "referenced_tweets.id.author_id" in expansions:
            author_ids += [t.author_id for t in referenced]
        users = [self.users[u] for u in dict.fromkeys(author_ids) if u in self.users]
        if users:
            includes["users"] = [_user_json(u, user_fields) for u in users]
        if includes:
            body["includes"] = includes
        return body

    def _tweet_json(self, tweet: FakeTweet, fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": tweet.id,
            "text": html.escape(tweet.text, quote=False),
            "edit_history_tweet_ids": list(tweet.edit_history),
        }
        if "created_at" in fields:
            out["created_at"] = format_time(tweet.created_at)
        if "author_id" in fields:
            out["author_id"] = tweet.author_id
        if "lang" in fields and tweet.lang:
            out["lang"] = tweet.lang
        if "conversation_id" in fields and tweet.conversation_id:
            out["conversation_id"] = tweet.conversation_id
        if "in_reply_to_user_id" in fields and tweet.in_reply_to_user_id:
            out["in_reply_to_user_id"] = tweet.in_reply_to_user_id
        if "public_metrics" in fields:
            out["public_metrics"] = dict(tweet.metrics)
        if "referenced_tweets" in fields and tweet.referenced:
            out["referenced_tweets"] = [{"type": t, "id": i} for t, i in tweet.referenced]
        if "entities" in fields:
            entities = self._entities(tweet.text)
            if entities:
                out["entities"] = entities
        if "possibly_sensitive" in fields:
            out["possibly_sensitive"] = False
        return out

    def _entities(self, text: str) -> dict[str, Any]:
        entities: dict[str, Any] = {}
        tags = [{"start": m.start(), "end": m.end(), "tag": m.group(1)} for m in HASHTAG_RE.finditer(text)]
        if tags:
            entities["hashtags"] = tags
        mentions = []
        for m in MENTION_RE.finditer(text):
            mention: dict[str, Any] = {"start": m.start(), "end": m.end(), "username": m.group(1)}
            try:
                mention["id"] = self._user(m.group(1)).id
            except KeyError:
                pass
            mentions.append(mention)
        if mentions:
            entities["mentions"] = mentions
        return entities

    def _corrupt(self, data: list[Any]) -> None:
        with self._lock:
            if not self._corruptions or not data:
                return
            kind, index = self._corruptions.popleft()
        index = min(index, len(data) - 1)
        item = data[index]
        if kind == "not_object":
            data[index] = "oops"
        elif kind == "missing_id":
            item.pop("id", None)
        elif kind == "missing_created_at":
            item.pop("created_at", None)
        elif kind == "missing_author":
            item.pop("author_id", None)
        elif kind == "wrong_types":
            item["id"] = int(item["id"])
            item["created_at"] = 12345
            item["public_metrics"] = "many"


# --------------------------------------------------------------------------- helpers


def _send(handler: _Handler, status: int, body: bytes, headers: dict[str, str]) -> None:
    """Write a JSON answer; a client that already hung up is not an error."""
    try:
        handler.send_response(status, STATUS_TITLES.get(status))
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


def _zero_metrics() -> dict[str, int]:
    return dict.fromkeys(
        ("retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count"), 0
    )


def _user_json(user: FakeUser, fields: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": user.id, "name": user.name, "username": user.username}
    if "public_metrics" in fields:
        out["public_metrics"] = {
            "followers_count": user.followers,
            "following_count": user.following,
            "tweet_count": user.tweet_count,
            "listed_count": user.listed_count,
            "like_count": 0,
        }
    if "verified" in fields:
        out["verified"] = False
    if "protected" in fields:
        out["protected"] = False
    return out


def _not_found(tweet_id: str) -> dict[str, str]:
    return {
        "value": tweet_id,
        "detail": f"Could not find tweet with ids: [{tweet_id}].",
        "title": "Not Found Error",
        "resource_type": "tweet",
        "parameter": "ids",
        "resource_id": tweet_id,
        "type": PROBLEMS + "resource-not-found",
    }


def _check_params(query: dict[str, str], allowed: frozenset[str]) -> None:
    for name in query:
        if name not in allowed:
            raise _invalid(name, query[name], f"The query parameter [{name}] is not one of {sorted(allowed)}")


def _split(query: dict[str, str], name: str, allowed: frozenset[str]) -> set[str]:
    values = {v for v in query.get(name, "").split(",") if v}
    for value in values:
        if value not in allowed:
            raise _invalid(name, value, f"The `{name}` query parameter value [{value}] is not one of "
                           f"{sorted(allowed)}")
    return values


def _requested(query: dict[str, str]) -> tuple[set[str], set[str], set[str]]:
    return (
        _split(query, "tweet.fields", TWEET_FIELDS),
        _split(query, "user.fields", USER_FIELDS),
        _split(query, "expansions", EXPANSIONS),
    )


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _invalid(name, raw, f"The `{name}` query parameter value [{raw}] is not between {low} and {high}")
    return int(raw)


def _id_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise _invalid(name, raw, f"The `{name}` query parameter value [{raw}] does not match ^[0-9]{{1,19}}$")
    return int(raw)


def _time_param(query: dict[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(name, raw, f"Invalid '{name}':'{raw}'. '{name}' must be a valid RFC3339 date") from None
    if value.tzinfo is None:
        raise _invalid(name, raw, f"Invalid '{name}':'{raw}'. '{name}' needs a time zone")
    return value.astimezone(timezone.utc)


def _encode_token(below_id: int) -> str:
    return base64.b32encode(f"x1:{below_id}".encode()).decode().rstrip("=").lower()


def _decode_token(token: str) -> int:
    try:
        padded = token.upper() + "=" * (-len(token) % 8)
        prefix, _, value = base64.b32decode(padded).decode().partition(":")
        if prefix != "x1" or not value.isdigit():
            raise ValueError(token)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("next_token", token, "The `next_token` query parameter value is invalid") from None


def iter_ids(server: XServer) -> Iterator[str]:
    """Live (not deleted) tweet ids, newest first: handy for demos and assertions."""
    with server._lock:
        live = [t.id for t in server.tweets.values() if not t.deleted]
    return iter(sorted(live, key=int, reverse=True))


def add_thread(server: XServer, author: str, texts: Iterable[str], *, start: datetime, step: timedelta) -> list[str]:
    """Add tweets by `author` at `start`, `start+step`, ...; returns their ids (oldest first)."""
    return [server.add_tweet(author, text, created_at=start + i * step) for i, text in enumerate(texts)]
