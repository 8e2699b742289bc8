"""`tracker run`: one long-running APScheduler 3.x process (BlockingScheduler).

Jobs have fixed ids, max_instances=1 and coalesce. Whether work is due is decided by the
Worker from the database's records, so jobs tick at the dense interval and skip when nothing
is due, and a restart after downtime catches up at once. One scheduler per database (a lock
row with a heartbeat). SIGTERM / Ctrl-C: running jobs finish the page they are storing, commit,
and the process exits cleanly.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jobs.worker import Worker
from storage import locks
from tracker.app import App
from tracker.collect import utcnow
from tracker.errors import TrackerError
from tracker.platforms.base import Policy
from tracker.platforms.registry import enabled_platforms

log = logging.getLogger(__name__)

LOCK_NAME = "scheduler"
HEARTBEAT = dt.timedelta(seconds=30)
STALE_AFTER = dt.timedelta(minutes=3)


class SchedulerBusy(TrackerError):
    exit_code = 4


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_here(holder: str) -> bool:
    """True when `holder` ("host:pid") is a process of this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_lock(app: App, holder: str, now: dt.datetime) -> None:
    with app.database().write() as session:
        state = locks.acquire(session, LOCK_NAME, holder, now, STALE_AFTER)
        if not state.acquired and _dead_here(state.holder):  # killed (kill -9) on this host
            log.warning("taking over the lock of %s, which is no longer running", state.holder)
            if locks.take_over(session, LOCK_NAME, state.holder, holder, now):
                return
    if not state.acquired:
        age = int((now - state.heartbeat_at).total_seconds())
        raise SchedulerBusy(
            f"another scheduler ({state.holder}) is running against this database "
            f"(last heartbeat {age} s ago); stop it first, or wait {int(STALE_AFTER.total_seconds())} s "
            "after it died"
        )


def release_lock(app: App, holder: str) -> None:
    try:
        with app.database().write() as session:
            locks.release(session, LOCK_NAME, holder)
    except Exception as exc:  # noqa: BLE001 - shutting down anyway; a stale lock expires by itself
        log.warning("could not release the scheduler lock (it expires by itself): %s", exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))


def run_once(app: App, *, clock: Callable[[], dt.datetime] = utcnow, policy: Policy | None = None) -> list[Any]:
    """Every due job once, under the lock (for cron users and tests)."""
    holder = holder_id()
    take_lock(app, holder, clock())
    worker = Worker(app, clock=clock, policy=policy)
    try:
        return worker.run_due()
    finally:
        worker.close()
        release_lock(app, holder)


class Stopper:
    """Stops the scheduler exactly once, from one thread of its own.

    A signal handler (or the heartbeat that lost the lock) only calls `request()`, which sets
    events and never raises. The stopper thread waits for the request, then for the scheduler
    to be running (a SIGTERM may arrive during start-up), and calls `shutdown(wait=True)` once:
    two signals in quick succession used to start two shutdown threads, and the second died
    with SchedulerNotRunningError; a signal before start-up was ignored and the process ran on.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.sched: BlockingScheduler | None = None
        self.stop = stop
        self.requested = threading.Event()
        self.main_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scheduler-stopper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request(self) -> None:
        self.stop.set()  # running jobs end after the page they are storing
        self.requested.set()

    def _run(self) -> None:
        self.requested.wait()
        while self.sched is None or not self.sched.running:  # not started yet, or already stopped
            if self.main_done.wait(0.05):
                return
        try:
            self.sched.shutdown(wait=True)
        except SchedulerNotRunningError:  # stopped meanwhile by start() failing: nothing to do
            pass

    def finish(self) -> None:
        """After the scheduler's loop returned: wait until running jobs have finished."""
        self.request()
        self.main_done.set()
        self.thread.join()


def build_scheduler(worker: Worker, holder: str, stopper: Stopper | None = None) -> BlockingScheduler:
    """The scheduler with every job; `stopper` (made here if not given) is what stops it."""
    stopper = stopper or Stopper(worker.stop)
    settings = worker.settings
    sched = BlockingScheduler(
        timezone=settings.campaign.tz,
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={"max_instances": 1, "coalesce": True},
    )
    dense = settings.schedule.visit_collect_every_minutes
    now = worker.clock()
    for platform in enabled_platforms(settings):
        sched.add_job(worker.collect, IntervalTrigger(minutes=dense), args=[platform],
                      id=f"collect-{platform}", name=f"collect {platform}",
                      misfire_grace_time=dense * 60, next_run_time=now)
    refresh = settings.schedule.refresh_every_minutes
    sched.add_job(worker.refresh_all, IntervalTrigger(minutes=refresh), id="refresh-metrics",
                  name="refresh metrics", misfire_grace_time=refresh * 60,
                  next_run_time=now + dt.timedelta(seconds=30))

    sched.add_job(worker.tag_untagged, IntervalTrigger(minutes=dense), id="tag", name="tag untagged posts",
                  misfire_grace_time=dense * 60, next_run_time=now + dt.timedelta(seconds=15))

    sched.add_job(worker.retention, IntervalTrigger(hours=24), id="retention", name="privacy retention",
                  misfire_grace_time=6 * 3600, next_run_time=now + dt.timedelta(minutes=5))

    # The weekly email: ticks hourly at the configured minute (so at the configured day and time,
    # and again every hour after a failed send) and once shortly after start-up (catch-up after
    # downtime); Worker.weekly decides from sent_reports whether anything is due.
    minute = int(settings.schedule.weekly_report_time.split(":")[1])
    sched.add_job(worker.weekly, CronTrigger(minute=minute, timezone=settings.campaign.tz), id="weekly-report",
                  name="weekly report email", misfire_grace_time=30 * 60,
                  next_run_time=now + dt.timedelta(seconds=60))

    def beat() -> None:
        with worker.app.database().write() as session:
            mine = locks.heartbeat(session, LOCK_NAME, holder, worker.clock())
        if not mine:
            log.error("the scheduler lock was taken over by another process; stopping")
            stopper.request()

    def run_sooner(job_id: str, at: dt.datetime) -> None:
        """Move a job's next run forward to `at` (a retry after a passing failure)."""
        job = sched.get_job(job_id)
        if job is not None and (job.next_run_time is None or at < job.next_run_time):
            sched.modify_job(job_id, next_run_time=at)

    worker.on_retry = run_sooner

    sched.add_job(beat, IntervalTrigger(seconds=int(HEARTBEAT.total_seconds())), id="heartbeat",
                  name="lock heartbeat", misfire_grace_time=60)

    def on_error(event: JobExecutionEvent) -> None:
        log.error("job %s raised %s", event.job_id, event.exception,
                  exc_info=(type(event.exception), event.exception, event.traceback)  # type: ignore[arg-type]
                  if log.isEnabledFor(logging.DEBUG) else None)

    sched.add_listener(on_error, EVENT_JOB_ERROR)
    stopper.sched = sched
    return sched


def run_forever(app: App, *, policy: Policy | None = None) -> None:
    """Start the scheduler; return after SIGTERM/SIGINT once running jobs have committed."""
    holder = holder_id()
    take_lock(app, holder, utcnow())
    worker = Worker(app, policy=policy)
    stopper = Stopper(worker.stop)
    sched = build_scheduler(worker, holder, stopper)

    def stop(signum: int, _frame: Any) -> None:
        if not stopper.requested.is_set():
            log.warning("received %s: finishing running jobs, then stopping", signal.Signals(signum).name)
        stopper.request()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stopper.start()
    try:
        log.info("scheduler started (%s); jobs: %s", holder, ", ".join(j.id for j in sched.get_jobs()))
        if not stopper.requested.is_set():
            sched.start()
    finally:
        stopper.finish()  # running jobs finish before the adapters close and the lock goes
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker.close()
        release_lock(app, holder)
        log.info("scheduler stopped")
