"""The notification outbox: queue once, claim, mark sent or schedule a retry. Never commits.

A notification is identified by (channel, target, key): queueing the same one twice is a no-op, so
an evaluation that runs again (after a crash, or from two processes) never sends a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from store.tables import Notification

STALE_CLAIM = timedelta(minutes=10)  # a claim older than this was a process that died mid-send


@dataclass(frozen=True)
class Outgoing:
    """A notification to queue: the exact bytes to deliver to one target."""

    key: str
    channel: str  # email | webhook
    target: str
    kind: str  # digest | firing | repeat | resolved
    subject: str
    body: bytes


@dataclass(frozen=True)
class Queued:
    id: int
    key: str
    channel: str
    target: str
    kind: str
    subject: str
    body: bytes
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


def _queued(n: Notification) -> Queued:
    return Queued(n.id, n.key, n.channel, n.target, n.kind, n.subject, n.body, n.status, n.attempts,
                  n.created_at, n.next_attempt_at, n.sent_at, n.last_error)


def enqueue(session: Session, msg: Outgoing, *, now: datetime) -> bool:
    """Queue ``msg`` unless the same (channel, target, key) is already queued or sent. True when new."""
    stmt = sqlite_insert(Notification).values(
        key=msg.key, channel=msg.channel, target=msg.target, kind=msg.kind, subject=msg.subject, body=msg.body,
        status="pending", attempts=0, created_at=now, next_attempt_at=now,
    ).on_conflict_do_nothing()
    return session.execute(stmt).rowcount == 1


def is_queued(session: Session, channel: str, target: str, key: str) -> bool:
    return session.scalar(select(Notification.id).where(Notification.channel == channel, Notification.target == target,
                                                        Notification.key == key)) is not None


def due(session: Session, *, now: datetime, limit: int = 100) -> list[Queued]:
    """Pending notifications whose time has come, and claims left behind by a process that died."""
    rows = session.scalars(select(Notification).where(or_(
        (Notification.status == "pending") & (Notification.next_attempt_at <= now),
        (Notification.status == "sending") & (Notification.next_attempt_at <= now - STALE_CLAIM),
    )).order_by(Notification.id).limit(limit))
    return [_queued(n) for n in rows]


def claim(session: Session, notification_id: int, *, now: datetime) -> bool:
    """Mark one notification as being sent by this process. False when another process got there first."""
    stmt = (update(Notification).where(Notification.id == notification_id, or_(
        Notification.status == "pending",
        (Notification.status == "sending") & (Notification.next_attempt_at <= now - STALE_CLAIM)))
        .values(status="sending", attempts=Notification.attempts + 1, next_attempt_at=now))
    return session.execute(stmt).rowcount == 1


def mark_sent(session: Session, notification_id: int, *, now: datetime) -> None:
    session.execute(update(Notification).where(Notification.id == notification_id)
                    .values(status="sent", sent_at=now, last_error=None))


def mark_failed(session: Session, notification_id: int, error: str, *, retry_at: datetime) -> None:
    session.execute(update(Notification).where(Notification.id == notification_id)
                    .values(status="pending", last_error=error[:500], next_attempt_at=retry_at))


def mark_gave_up(session: Session, notification_id: int, error: str) -> None:
    """The server refused it for good (a 5xx SMTP answer, a 4xx webhook answer): kept, not retried."""
    session.execute(update(Notification).where(Notification.id == notification_id)
                    .values(status="failed", last_error=error[:500]))


def notifications(session: Session, *, status: str | None = None, limit: int = 50) -> list[Queued]:
    """The latest notifications, newest first (optionally only one status)."""
    query = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if status:
        query = query.where(Notification.status == status)
    return [_queued(n) for n in session.scalars(query)]
