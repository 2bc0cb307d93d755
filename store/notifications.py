"""The notification outbox: queue once, claim, mark sent or schedule a retry. Never commits.

A notification is identified by (channel, target, key): queueing the same one twice is a no-op, so
an evaluation that runs again (after a crash, or from two processes) never queues a second copy.

A claim is a lease: ``next_attempt_at`` of a notification being sent is when its claim runs out (the send's
own deadline and a margin). A process that dies between claim and bookkeeping leaves the claim to run out,
and the next delivery takes it again; a late answer from the first process cannot undo the second's claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from store.dialect import insert_for
from store.tables import Notification



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
    stmt = insert_for(session, Notification).values(
        key=msg.key, channel=msg.channel, target=msg.target, kind=msg.kind, subject=msg.subject, body=msg.body,
        status="pending", attempts=0, created_at=now, next_attempt_at=now,
    ).on_conflict_do_nothing().returning(Notification.id)
    return session.execute(stmt).first() is not None  # a row returned: an INSERT's rowcount is -1 on psycopg


def due(session: Session, *, now: datetime, limit: int = 100) -> list[Queued]:
    """Pending notifications whose time has come, and claims that ran out (their process never reported back)."""
    rows = session.scalars(select(Notification).where(Notification.status.in_(("pending", "sending")),
                                                      Notification.next_attempt_at <= now)
                           .order_by(Notification.id).limit(limit))
    return [_queued(n) for n in rows]


def held(session: Session, *, now: datetime) -> list[Queued]:
    """Notifications another process is sending right now (their claim has not run out)."""
    rows = session.scalars(select(Notification).where(Notification.status == "sending", Notification.next_attempt_at > now)
                           .order_by(Notification.id))
    return [_queued(n) for n in rows]


def next_due_at(session: Session) -> datetime | None:
    """When the outbox next has something to do: a retry, or a claim running out."""
    return session.scalar(select(func.min(Notification.next_attempt_at))
                          .where(Notification.status.in_(("pending", "sending"))))


def claim(session: Session, q: Queued, *, now: datetime, lease: timedelta) -> bool:
    """Take ``q`` for sending until ``now + lease``. False when another process took it (or acted on it) since
    ``q`` was read: the claim is granted only while the attempt count is the one read."""
    stmt = (update(Notification).where(Notification.id == q.id, Notification.attempts == q.attempts,
                                       Notification.status.in_(("pending", "sending")),
                                       Notification.next_attempt_at <= now)
            .values(status="sending", attempts=q.attempts + 1, next_attempt_at=now + lease))
    return session.execute(stmt).rowcount == 1


def mark_sent(session: Session, notification_id: int, *, now: datetime) -> None:
    """The server took it: sent, whoever holds the claim now (a copy is on its way anyway)."""
    session.execute(update(Notification).where(Notification.id == notification_id, Notification.status != "sent")
                    .values(status="sent", sent_at=now, last_error=None))


def mark_failed(session: Session, notification_id: int, attempt: int, error: str, *, retry_at: datetime) -> None:
    """Attempt number ``attempt`` failed: retried at ``retry_at``, unless another process claimed it since."""
    session.execute(update(Notification).where(Notification.id == notification_id, Notification.status == "sending",
                                               Notification.attempts == attempt)
                    .values(status="pending", last_error=error[:500], next_attempt_at=retry_at))


def mark_gave_up(session: Session, notification_id: int, attempt: int, error: str) -> None:
    """The server refused it for good (a 5xx SMTP answer, a 4xx webhook answer): kept, not retried."""
    session.execute(update(Notification).where(Notification.id == notification_id, Notification.status == "sending",
                                               Notification.attempts == attempt)
                    .values(status="failed", last_error=error[:500]))


def notifications(session: Session, *, status: str | None = None, limit: int = 50) -> list[Queued]:
    """The latest notifications, newest first (optionally only one status)."""
    query = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if status:
        query = query.where(Notification.status == status)
    return [_queued(n) for n in session.scalars(query)]
