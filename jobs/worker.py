"""The scheduler's work, decided from the database's own records (not from pickled job state).

Each method is one job: it checks whether its work is due (last run + interval, a rate limit's
resume time), does it through `tracker` functions, and records the outcome. So a restart after
downtime catches up by itself, and `tracker run --once` is simply "every due job, once".
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from storage.runs import finish_run, last_run_started, start_run
from tracker.app import App
from tracker.collect import PlatformResult, collect_platform, refresh_platform, utcnow
from tracker.platforms.base import Adapter, Policy
from tracker.platforms.registry import build_adapter, enabled_platforms
from tracker.redaction import redact
from tracker.schedule import RETRY_FIRST, collect_interval, is_transient, next_due, retry_delay

if TYPE_CHECKING:
    from tracker.weekly import SendOutcome

log = logging.getLogger(__name__)


class Worker:
    """Keeps one adapter per platform for the whole process (sessions and logins are reused)."""

    def __init__(self, app: App, *, clock: Callable[[], dt.datetime] = utcnow,
                 stop: threading.Event | None = None, policy: Policy | None = None,
                 retry_first: dt.timedelta = RETRY_FIRST) -> None:
        self.app = app
        self.retry_first = retry_first
        """First wait before retrying a job that failed for a passing reason (then doubling)."""
        self.clock = clock
        self.stop = stop or threading.Event()
        self.policy = policy
        self._adapters: dict[str, Adapter] = {}
        self._lock = threading.Lock()
        self._weekly_noted: set[str] = set()
        self._retries: dict[str, tuple[int, dt.datetime]] = {}
        """Job key ('collect-x') -> (failures in a row, retry time), for passing failures."""
        self.on_retry: Callable[[str, dt.datetime], None] | None = None
        """Set by the scheduler: run the job with this id at this time."""

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.app.settings

    def adapter(self, platform: str) -> Adapter:
        with self._lock:
            if platform not in self._adapters:
                self._adapters[platform] = build_adapter(self.settings, platform, self.policy)
            return self._adapters[platform]

    def close(self) -> None:
        for adapter in self._adapters.values():
            close = getattr(adapter, "close", None)
            if callable(close):
                close()
        self._adapters.clear()

    # -- due checks ------------------------------------------------------------------------------

    def _due(self, platform: str, kind: str, interval: dt.timedelta) -> bool:
        with self.app.database().read() as session:
            last = last_run_started(session, platform, kind)
        due = next_due(last, interval)
        return due is None or due <= self.clock()

    def collect_due(self, platform: str) -> bool:
        return self._due(platform, "collect", collect_interval(self.settings, self.clock()))

    def refresh_due(self, platform: str) -> bool:
        return self._due(platform, "refresh", dt.timedelta(minutes=self.settings.schedule.refresh_every_minutes))

    # -- jobs ----------------------------------------------------------------------------------

    def collect(self, platform: str, *, force: bool = False) -> PlatformResult | None:
        """Job `collect-<platform>`: one round if due. Never raises: errors are recorded."""
        return self._job(platform, "collect", force, lambda: collect_interval(self.settings, self.clock()),
                         lambda adapter: collect_platform(
                             self.app.database(), adapter, tagger=self.app.tagger(), clock=self.clock,
                             stop=self.stop, privacy=self.settings.privacy))

    def refresh(self, platform: str, *, force: bool = False) -> PlatformResult | None:
        """Job `refresh-metrics`: re-read metrics of recent posts if due."""
        max_age = dt.timedelta(days=self.settings.schedule.refresh_max_age_days)
        return self._job(platform, "refresh", force,
                         lambda: dt.timedelta(minutes=self.settings.schedule.refresh_every_minutes),
                         lambda adapter: refresh_platform(
                             self.app.database(), adapter, max_age=max_age, tagger=self.app.tagger(),
                             clock=self.clock, stop=self.stop, privacy=self.settings.privacy))

    def refresh_all(self) -> list[PlatformResult]:
        return [r for p in enabled_platforms(self.settings) if (r := self.refresh(p)) is not None]

    def _job(self, platform: str, kind: str, force: bool, interval: Callable[[], dt.timedelta],
             work: Callable[[Adapter], PlatformResult]) -> PlatformResult | None:
        """Run `work` if due. A job that failed for a passing reason (database locked or
        unreachable, platform 5xx) is due again after `retry_delay` (1, 2, 4 ... minutes), not
        after its whole interval; the scheduler is asked to run it then (`on_retry`)."""
        key = f"{kind}-{platform}"
        if self.stop.is_set():
            return None
        try:
            if not force:
                retry = self._retries.get(key)
                if retry is not None:
                    if self.clock() < retry[1]:
                        return None
                elif not self._due(platform, kind, interval()):
                    return None
            result, failure = self._guard(platform, kind, work)
        except Exception as exc:  # noqa: BLE001 - the due check itself met a database outage
            log.error("job %s failed: %s", key, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            result, failure = None, exc
        transient = is_transient(failure) if result is None and failure is not None else (
            result is not None and result.transient and result.status in ("failed", "partial"))
        if transient and not self.stop.is_set():
            self._schedule_retry(key, kind, interval())
        else:
            self._retries.pop(key, None)
        return result

    def _schedule_retry(self, key: str, kind: str, interval: dt.timedelta) -> None:
        """Note one more passing failure of job `key` and ask the scheduler to run it after
        `retry_delay` (the refresh of every platform is the one job 'refresh-metrics')."""
        failures = self._retries.get(key, (0, self.clock()))[0] + 1
        at = self.clock() + retry_delay(failures, interval, self.retry_first)
        self._retries[key] = (failures, at)
        log.warning("job %s failed for a passing reason: retry %d at %s UTC", key, failures,
                    at.strftime("%H:%M:%S"))
        if self.on_retry is not None:
            self.on_retry("refresh-metrics" if kind == "refresh" else key, at)

    def retry_at(self, platform: str, kind: str) -> dt.datetime | None:
        """When a job that failed for a passing reason is tried again (None: no retry pending)."""
        retry = self._retries.get(f"{kind}-{platform}")
        return retry[1] if retry else None

    def _guard(self, platform: str, kind: str, work: Callable[[Adapter], PlatformResult],
               ) -> tuple[PlatformResult | None, Exception | None]:
        """(result, None), or (None, the failure) for a failure that escapes the collection loop
        (bad credentials at start-up, a database outage): it is logged as one line (the
        traceback with -vv) and recorded as a failed run when the database allows."""
        try:
            return work(self.adapter(platform)), None
        except Exception as exc:  # noqa: BLE001
            log.error("job %s-%s failed: %s", kind, platform, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            try:
                with self.app.database().write() as session:
                    run_id = start_run(session, platform, kind, self.clock())
                    finish_run(session, run_id, "failed", self.clock(), error=redact(str(exc))[:2000])
            except Exception as again:  # noqa: BLE001 - the database itself may be what failed
                log.error("could not record the failed %s run of %s: %s", kind, platform, again,
                          exc_info=log.isEnabledFor(logging.DEBUG))
            return None, exc

    def weekly(self) -> SendOutcome | None:
        """Job `weekly-report`: the previous week's email once this week's send time has passed,
        unless it was sent (or a run stopped while sending: never re-sent without a person's
        --force). A failed send is retried at the next tick. Never raises: errors are logged."""
        from tracker.weekly import due_week, in_progress_text, report_state, send_weekly  # charts: load late

        if self.stop.is_set():
            return None
        settings = self.settings
        if not settings.email.recipients:
            self._note_once("no-recipients", logging.INFO,
                            "weekly email: no [email] recipients configured, not sending it")
            return None
        try:
            week = due_week(settings, self.clock())
            if week is None:
                return None
            state = report_state(self.app.database(), settings, week)
            if state is not None and state.status == "sent":
                return None
            if state is not None and state.status == "sending":
                self._note_once(f"sending-{week.label}", logging.WARNING, "weekly email: %s",
                                in_progress_text(week))
                return None
            outcome = send_weekly(self.app.database(), settings, week, now=self.clock())
        except Exception as exc:  # noqa: BLE001 - recorded as 'failed' by send_weekly; retried later
            log.error("weekly email failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return None
        level = logging.WARNING if outcome.status == "in-progress" else logging.INFO
        log.log(level, "weekly email: %s", outcome.text)
        return outcome

    def _note_once(self, key: str, level: int, message: str, *args: object) -> None:
        if key not in self._weekly_noted:
            self._weekly_noted.add(key)
            log.log(level, message, *args)

    def tag_untagged(self) -> int:
        """Job `tag`: tag any stored post that has no visit decision yet (posts are tagged as
        they are stored; this catches posts stored before the tagger could see them)."""
        from tracker.retag import retag

        if self.stop.is_set():
            return 0
        try:
            count = retag(self.app.database(), self.app.tagger(), only_untagged=True)
        except Exception as exc:  # noqa: BLE001 - logged; the next tick tries again
            log.error("job tag failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return 0
        if count:
            log.info("tagged %d untagged posts", count)
        return count

    def retention(self) -> None:
        """Job `retention` (daily): apply `[privacy] retention_days` and scrub posts deleted on
        their platform. Idempotent. Never raises: errors are logged; a passing failure (the
        database unavailable) is retried soon, others the next day."""
        from tracker.privacy import run_retention

        if self.stop.is_set():
            return
        try:
            result = run_retention(self.app.database(), self.settings, now=self.clock())
        except Exception as exc:  # noqa: BLE001
            log.error("job retention failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            if is_transient(exc) and not self.stop.is_set():  # not a whole day later
                self._schedule_retry("retention", "retention", dt.timedelta(hours=24))
            return
        self._retries.pop("retention", None)
        log.info("retention: %s", result.line())

    def run_due(self) -> list[PlatformResult]:
        """Every due job once (start-up catch-up and `tracker run --once`)."""
        results = []
        for platform in enabled_platforms(self.settings):
            if (result := self.collect(platform)) is not None:
                results.append(result)
        results.extend(self.refresh_all())
        self.tag_untagged()
        self.weekly()  # last, so it reports freshly collected figures; not a collection result
        return results
