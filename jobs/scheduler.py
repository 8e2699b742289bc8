"""`tracker run`: one long-running APScheduler 3.x process (BlockingScheduler).

Jobs have fixed ids, max_instances=1 and coalesce. Whether work is due is decided by the
Worker from the database's records, so jobs tick at the dense interval and skip when nothing
is due, and a restart after downtime catches up at once. One scheduler per database (a lock
row with a heartbeat). SIGTERM / Ctrl-C: running jobs finish the page they are storing, commit,
and the process exits cleanly (the scheduler's loop runs in a thread, the main thread keeps free
for signal handlers and stops it once). A job that failed for a passing reason is moved forward
to its retry time (Worker, `on_retry`).
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
    """Asks the scheduler to stop, from a signal handler or the heartbeat that lost the lock.

    `request()` only sets events: it never raises and never starts a thread, so two signals in
    quick succession, or a signal during start-up, are harmless. The thread that started the
    scheduler (`run_forever`) shuts it down exactly once. (Each signal used to start a thread
    calling shutdown(): the second died with SchedulerNotRunningError, and a signal during
    start-up was lost, leaving the process running.)
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.requested = threading.Event()

    def request(self) -> None:
        self.stop.set()  # running jobs end after the page they are storing
        self.requested.set()


def build_scheduler(worker: Worker, holder: str, stopper: Stopper | None = None) -> BlockingScheduler:
    """The scheduler with every job; `stopper` (made here if not given) is how a job asks it
    to stop (the lock heartbeat, when another process took the lock)."""
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
    return sched


def run_forever(app: App, *, policy: Policy | None = None) -> None:
    """Start the scheduler; return after SIGTERM/SIGINT once running jobs have committed.

    The scheduler's loop runs in a thread of its own; the main thread, where Python runs signal
    handlers, only waits in short steps, so a signal is acted on within a second whenever it
    arrives (a signal landing just before a long blocking wait used to wait for the next job)."""
    holder = holder_id()
    take_lock(app, holder, utcnow())
    worker = Worker(app, policy=policy)
    stopper = Stopper(worker.stop)
    sched = build_scheduler(worker, holder, stopper)
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            sched.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)
            stopper.request()

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopper.requested.is_set():
            log.warning("received %s: finishing running jobs, then stopping", signal.Signals(signum).name)
        stopper.request()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    runner = threading.Thread(target=loop, name="scheduler", daemon=True)
    try:
        log.info("scheduler started (%s); jobs: %s", holder, ", ".join(j.id for j in sched.get_jobs()))
        runner.start()
        while not stopper.requested.wait(0.5):
            pass
        while runner.is_alive() and not sched.running:  # a signal during start-up: let it start
            runner.join(0.05)
        if sched.running:
            try:
                sched.shutdown(wait=True)  # running jobs finish before the adapters close and the lock goes
            except SchedulerNotRunningError:
                pass
        runner.join()
    finally:
        stopper.request()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker.close()
        release_lock(app, holder)
        log.info("scheduler stopped")
    if failure:
        raise failure[0]
