"""The interface every platform adapter implements, and the shared politeness policy.

An adapter turns one platform's API into pages of `NormalisedPost`. It knows nothing of the
database: the collection loop stores each page, *then* persists the page's cursor, so a crash
never moves a cursor past posts that were not stored.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol, TypeVar

from tracker.posts import NormalisedPost

log = logging.getLogger(__name__)
T = TypeVar("T")

CLOCK_SKEW = timedelta(minutes=5)
"""Default allowance for clocks that disagree (ours, the platform's, an author's server's)."""
RECOVERY_WINDOW = timedelta(days=7)
"""A stored cursor found ahead of the clock is distrusted: the stream re-reads this far back
(X's recent search reaches no further) unless a `since` is given."""


@dataclass(slots=True)
class Page:
    """One API page, normalised."""

    posts: list[NormalisedPost]
    cursor: str | None = None
    """Persist this after `posts` are committed; None: leave the stored cursor as it is."""
    skipped: int = 0
    """Malformed items that were logged and dropped (the rest of the page is kept)."""
    requests: int = 1
    """HTTP requests this page cost, retries included."""
    oldest: datetime | None = None
    newest: datetime | None = None
    """created_at range this page covered (for gap bookkeeping); None when empty."""


@dataclass(slots=True)
class KnownPost:
    """What the database knows of a post that a metrics refresh needs to find it again."""

    platform_id: str
    source: str | None = None
    source_id: str | None = None
    url: str | None = None


@dataclass(slots=True)
class RefreshResult:
    posts: list[NormalisedPost] = field(default_factory=list)
    """Fresh copies: new metrics, edited text, author follower counts."""
    deleted: list[str] = field(default_factory=list)
    """platform_ids the platform says are gone (404/410, or missing from a lookup)."""
    requests: int = 1
    skipped: int = 0


class PlatformError(Exception):
    """Base of the errors adapters raise; the message is safe to show (no secrets)."""


class RateLimited(PlatformError):
    """The platform asked us to wait longer than the policy allows; resume at `resume_at`."""

    def __init__(self, message: str, resume_at: datetime) -> None:
        super().__init__(message)
        self.resume_at = resume_at


class FetchFailed(PlatformError):
    """Retries are exhausted (5xx storm, timeouts, connection errors) or the error is final."""

    transient = False
    """True when retries ran out on errors that pass (the scheduler then tries again soon)."""


class RetriesExhausted(FetchFailed):
    """A 5xx storm, timeouts or connection errors outlasted the retries: worth trying later."""

    transient = True


class AuthFailed(PlatformError):
    """Credentials are missing or rejected; retrying will not help."""


class Adapter(Protocol):
    """One platform. `streams()` are independently cursored feeds (a hashtag, an instance+hashtag)."""

    platform: str

    def streams(self) -> list[str]: ...

    def fetch(self, stream: str, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Pages of posts newer than `cursor` (or, with no cursor, back to `since`)."""
        ...

    def refresh(self, posts: Sequence[KnownPost]) -> Iterator[RefreshResult]:
        """Current metrics of known posts, in batches as large as the platform allows."""
        ...


@dataclass(slots=True)
class Policy:
    """Bounded politeness: how long to wait for rate limits and how to back off on failures."""

    max_retries: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_rate_limit_wait: float = 120.0
    """A rate-limit reset further away than this ends the run (RateLimited) instead of sleeping."""
    default_rate_limit_wait: float = 60.0
    """Assumed wait when a 429 carries no reset header."""
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    clock_skew: timedelta = CLOCK_SKEW
    """How far the clocks involved (ours, a platform's, an author's server's) may disagree before
    a post's time counts as "in the future" for cursors; see `CursorClamp`."""

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def clamp(self) -> CursorClamp:
        """The cursor bounds for one fetch, taken from the clock before its first request."""
        now = self.now()
        return CursorClamp(horizon=now + self.clock_skew, floor=now - self.clock_skew)


@dataclass(frozen=True, slots=True)
class CursorClamp:
    """Why: a post dated in the future must not become a cursor, or every post that arrives
    after it (with an earlier time, or a smaller id where ids follow creation time) falls behind
    the cursor and is never read.

    A time later than `horizon` (the clock plus the skew allowance) counts as `floor` (the clock
    minus the allowance, so a clock of ours that runs a little fast cannot skip a platform's
    newest posts either) when a cursor is chosen. The post itself is still stored as sent; the
    next runs read it again until its date has passed, and the store de-duplicates.
    """

    horizon: datetime
    floor: datetime

    def ahead(self, moment: datetime) -> bool:
        """Is `moment` too far in the future to stand for a cursor?"""
        return moment > self.horizon

    def recovery_start(self, since: datetime | None) -> datetime:
        """Where a stream whose stored cursor is ahead of the clock re-reads from."""
        return since if since is not None else self.floor - RECOVERY_WINDOW


class Retry(Exception):
    """Raised by a classifier: the call failed transiently (5xx, timeout, connection reset)."""


class WaitRateLimit(Exception):
    """Raised by a classifier: rate limited, reset at `reset_at` (None: unknown)."""

    def __init__(self, reset_at: datetime | None) -> None:
        super().__init__("rate limited")
        self.reset_at = reset_at


def call_with_policy(
    call: Callable[[], T],
    classify: Callable[[BaseException], BaseException],
    policy: Policy,
    what: str,
) -> tuple[T, int]:
    """Run `call` with bounded retries; return (result, requests made).

    `classify` maps a client library exception to `Retry`, `WaitRateLimit`, or any other
    exception (raised as is: final). Never sleeps unbounded: a rate limit whose reset is further
    than `policy.max_rate_limit_wait` raises `RateLimited`; exhausted retries raise `FetchFailed`.
    """
    attempts = 0
    waited_for_limit = False
    while True:
        attempts += 1
        try:
            return call(), attempts
        except Exception as exc:  # noqa: BLE001 - classified below
            verdict = classify(exc)
            if isinstance(verdict, WaitRateLimit):
                now = policy.now()
                reset_at = verdict.reset_at or now + timedelta(seconds=policy.default_rate_limit_wait)
                wait = max(0.0, (reset_at - now).total_seconds()) + 1.0
                if waited_for_limit or wait > policy.max_rate_limit_wait:
                    raise RateLimited(f"{what}: rate limited until {reset_at.isoformat()}", reset_at) from exc
                log.info("%s: rate limited, waiting %.0f s", what, wait)
                policy.sleep(wait)
                waited_for_limit = True
                continue
            if isinstance(verdict, Retry):
                if attempts > policy.max_retries:
                    raise RetriesExhausted(f"{what}: giving up after {attempts} attempts: {verdict}") from exc
                delay = policy.backoff(attempts - 1)
                log.warning("%s: %s; retry %d in %.1f s", what, verdict, attempts, delay)
                policy.sleep(delay)
                continue
            if verdict is exc:
                raise
            raise verdict from exc
