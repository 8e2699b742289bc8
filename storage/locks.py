"""A lock row in the database: only one scheduler runs against one database.

The holder refreshes `heartbeat_at`; a lock whose heartbeat is older than `stale_after` belongs
to a process that died (kill -9, power cut) and may be taken over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, delete, update
from sqlalchemy.orm import Session

from storage.models import SchedulerLock
from storage.upserts import _insert


@dataclass(frozen=True, slots=True)
class LockState:
    acquired: bool
    holder: str
    heartbeat_at: dt.datetime


def acquire(session: Session, name: str, holder: str, now: dt.datetime, stale_after: dt.timedelta) -> LockState:
    """Take the lock if it is free, ours, or stale. Call in a write transaction."""
    table = SchedulerLock.__table__
    session.execute(_insert(session, table)
                    .values(name=name, holder=holder, acquired_at=now, heartbeat_at=now)
                    .on_conflict_do_nothing(index_elements=["name"]))
    session.execute(
        update(SchedulerLock)
        .where(SchedulerLock.name == name,
               (SchedulerLock.holder == holder) | (SchedulerLock.heartbeat_at < now - stale_after))
        .values(holder=holder, heartbeat_at=now,
                acquired_at=case((SchedulerLock.holder == holder, SchedulerLock.acquired_at), else_=now))
    )
    row = session.get(SchedulerLock, name, populate_existing=True)
    assert row is not None
    return LockState(row.holder == holder, row.holder, row.heartbeat_at)


def heartbeat(session: Session, name: str, holder: str, now: dt.datetime) -> bool:
    """Refresh our heartbeat; False when the lock is no longer ours."""
    result = session.execute(update(SchedulerLock)
                             .where(SchedulerLock.name == name, SchedulerLock.holder == holder)
                             .values(heartbeat_at=now))
    return bool(result.rowcount)


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(SchedulerLock).where(SchedulerLock.name == name, SchedulerLock.holder == holder))


def take_over(session: Session, name: str, old_holder: str, new_holder: str, now: dt.datetime) -> bool:
    """Take the lock from a holder known to be dead (same host, process gone)."""
    result = session.execute(update(SchedulerLock)
                             .where(SchedulerLock.name == name, SchedulerLock.holder == old_holder)
                             .values(holder=new_holder, acquired_at=now, heartbeat_at=now))
    return bool(result.rowcount)
