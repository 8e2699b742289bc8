"""Sent reports (the only SQL for `sent_reports`) and the run history reports quote.

A report is claimed (a row with status 'sending', committed) *before* it is sent, and marked
'sent' or 'failed' after. The unique key (kind, period, recipients_key) makes the claim atomic
across processes: whoever inserts the row, or flips a 'failed' row back to 'sending', sends;
everyone else sees the row and stays quiet. A row left in 'sending' means a run stopped while
sending (the email may have gone out), so it is never claimed again without `force`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import CollectionRun, SentReport
from storage.upserts import _insert

SENDING, SENT, FAILED = "sending", "sent", "failed"
PROBLEM_RUNS = ("failed", "partial", "interrupted")
"""Run statuses a report lists as failed collections."""


def recipients_key(recipients: Iterable[str]) -> str:
    """sha256 of the sorted, lower-cased, de-duplicated addresses: the same list in any order or
    case is the same audience (and the key reveals no address)."""
    canonical = "\n".join(sorted({r.strip().lower() for r in recipients}))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A detached copy of a `sent_reports` row (safe to use after the session closed)."""

    id: int
    kind: str
    period: str
    recipients_key: str
    recipients: str
    status: str
    created_at: dt.datetime
    """When the row was last claimed (first claim, or the latest retry / forced re-send)."""
    sent_at: dt.datetime | None
    message_id: str | None
    error: str | None

    @classmethod
    def of(cls, row: SentReport) -> ReportRecord:
        return cls(row.id, row.kind, row.period, row.recipients_key, row.recipients, row.status,
                   row.created_at, row.sent_at, row.message_id, row.error)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of `claim_report`: `claimed` means this caller may send now."""

    claimed: bool
    report: ReportRecord
    """The row as it is now (claimed: 'sending' by us; else the other run's row)."""
    previous_status: str | None = None
    """The status before this claim (None: the row is new); when not claimed, the blocking status."""


def find_report(session: Session, kind: str, period: str, key: str) -> ReportRecord | None:
    row = session.scalar(select(SentReport).where(
        SentReport.kind == kind, SentReport.period == period, SentReport.recipients_key == key))
    return ReportRecord.of(row) if row is not None else None


def _get(session: Session, report_id: int) -> ReportRecord:
    row = session.get(SentReport, report_id, populate_existing=True)
    assert row is not None
    return ReportRecord.of(row)


def claim_report(session: Session, kind: str, period: str, recipients: Sequence[str], now: dt.datetime, *,
                 message_id: str | None = None, force: bool = False) -> Claim:
    """Atomically take the right to send `kind` for `period` to `recipients`; commit before sending.

    New row -> claimed. A 'failed' row -> claimed again (a retry). 'sent' or 'sending' -> not
    claimed, unless `force`. Two concurrent callers never both claim: the insert is
    ON CONFLICT DO NOTHING and the retry is a conditional UPDATE.
    """
    key = recipients_key(recipients)
    table = SentReport.__table__
    stmt = _insert(session, table).values(
        kind=kind, period=period, recipients_key=key, recipients=", ".join(recipients), status=SENDING,
        created_at=now, message_id=message_id,
    ).on_conflict_do_nothing(index_elements=["kind", "period", "recipients_key"]).returning(table.c.id)
    new_id = session.execute(stmt).scalar_one_or_none()  # RETURNING: rowcount is unreliable here
    if new_id is not None:
        return Claim(True, _get(session, new_id))
    existing = find_report(session, kind, period, key)
    assert existing is not None
    if not force and existing.status != FAILED:
        return Claim(False, existing, existing.status)
    conditions = [SentReport.id == existing.id]
    if not force:
        conditions.append(SentReport.status == FAILED)  # lost a race to another retry: not claimed
    taken = session.execute(
        update(SentReport).where(*conditions)
        .values(status=SENDING, created_at=now, sent_at=None, error=None, message_id=message_id,
                recipients=", ".join(recipients))
        .returning(SentReport.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    current = _get(session, existing.id)
    return Claim(taken is not None, current, existing.status if taken is not None else current.status)


def mark_sent(session: Session, report_id: int, now: dt.datetime, message_id: str | None,
              note: str | None = None) -> None:
    """The server accepted the message; `note` keeps e.g. recipients it refused."""
    session.execute(update(SentReport).where(SentReport.id == report_id)
                    .values(status=SENT, sent_at=now, message_id=message_id, error=note)
                    .execution_options(synchronize_session=False))


def mark_failed(session: Session, report_id: int, error: str) -> None:
    """Sending failed before the server accepted the message: a later run may retry."""
    session.execute(update(SentReport).where(SentReport.id == report_id)
                    .values(status=FAILED, sent_at=None, error=error[:2000])
                    .execution_options(synchronize_session=False))


def list_reports(session: Session, kind: str | None = None, limit: int = 50) -> list[ReportRecord]:
    """Most recently claimed first."""
    stmt = select(SentReport).order_by(SentReport.created_at.desc(), SentReport.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(SentReport.kind == kind)
    return [ReportRecord.of(row) for row in session.scalars(stmt)]


@dataclass(frozen=True, slots=True)
class RunProblem:
    platform: str
    kind: str
    status: str
    started_at: dt.datetime
    error: str | None


def problem_runs(session: Session, start: dt.datetime, end: dt.datetime) -> list[RunProblem]:
    """Collection and refresh runs started in [start, end) that failed, partly failed or were
    interrupted, oldest first: the "collection health" a weekly report shows."""
    stmt = (
        select(CollectionRun)
        .where(CollectionRun.started_at >= start, CollectionRun.started_at < end,
               CollectionRun.status.in_(PROBLEM_RUNS))
        .order_by(CollectionRun.started_at, CollectionRun.id)
    )
    return [RunProblem(r.platform, r.kind, r.status, r.started_at, r.error) for r in session.scalars(stmt)]
