"""Queries on alerts, silences and sent digests. Functions take the session first and never commit."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from store.tables import Alert, SentDigest, Silence

OPEN = ("pending", "firing")  # inhibited and expired alerts never notify; resolved ones are done


@dataclass(frozen=True)
class AlertView:
    """An alert as the lifecycle and the reports see it."""

    dedup_key: str
    series: str
    service: str
    status: str  # pending | firing | resolved | inhibited | expired
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    peak_count: int
    score: float
    fired_at: datetime | None = None
    flagged_hours: int = 0
    notified_at: datetime | None = None
    resolve_notified: bool = False
    silenced: bool = False
    note: str = ""
    peak_expected: float | None = None  # the baseline's expected count in the peak hour
    total_count: int | None = None  # trouble stories over the flagged hours
    total_expected: float | None = None  # the baseline's expected count over those hours
    backfilled: bool = False  # recorded for past hours (a backfill or a catch-up), not notified then

    @property
    def ever_fired(self) -> bool:
        return self.fired_at is not None


@dataclass(frozen=True)
class SilenceView:
    id: int
    service: str  # a service code, "collection", or "*"
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str

    def covers(self, service: str, when: datetime) -> bool:
        return self.service in ("*", service) and self.starts_at <= when < self.ends_at


_FIELDS = [f.name for f in fields(AlertView)]


def _view(a: Alert) -> AlertView:
    return AlertView(**{name: getattr(a, name) for name in _FIELDS})


def save_alert(session: Session, view: AlertView, *, now: datetime) -> None:
    """Insert or update the alert with this dedup key."""
    alert = session.scalar(select(Alert).where(Alert.dedup_key == view.dedup_key))
    if alert is None:
        alert = Alert(dedup_key=view.dedup_key)
        session.add(alert)
    for name in _FIELDS[1:]:
        setattr(alert, name, getattr(view, name))
    alert.updated_at = now
    session.flush()


def recent_alerts(session: Session, since: datetime) -> list[AlertView]:
    """Open alerts (pending, firing) and any alert seen since ``since``: what a new evaluation matches."""
    rows = session.scalars(select(Alert).where(or_(Alert.status.in_(OPEN), Alert.last_seen_at >= since))
                           .order_by(Alert.started_at))
    return [_view(a) for a in rows]


def alerts_between(session: Session, since: datetime, until: datetime) -> list[AlertView]:
    """Alerts that were above threshold at any time in [since, until) (pending ones that expired left out)."""
    rows = session.scalars(select(Alert).where(Alert.started_at < until, Alert.last_seen_at >= since,
                                               Alert.status != "expired").order_by(Alert.started_at))
    return [_view(a) for a in rows]


def all_alerts(session: Session, *, limit: int = 50) -> list[AlertView]:
    rows = session.scalars(select(Alert).order_by(Alert.started_at.desc()).limit(limit))
    return [_view(a) for a in rows]


def add_silence(session: Session, *, service: str, starts_at: datetime, ends_at: datetime, comment: str,
                created_by: str, now: datetime) -> int:
    silence = Silence(service=service, starts_at=starts_at, ends_at=ends_at, comment=comment,
                      created_by=created_by, created_at=now)
    session.add(silence)
    session.flush()
    return silence.id


def silences(session: Session, *, now: datetime, include_expired: bool = False) -> list[SilenceView]:
    """Silences in force at ``now`` or later (all of them with ``include_expired``)."""
    query = select(Silence).order_by(Silence.starts_at)
    if not include_expired:
        query = query.where(Silence.ends_at > now)
    return [SilenceView(s.id, s.service, s.starts_at, s.ends_at, s.comment, s.created_by) for s in session.scalars(query)]


def expire_silence(session: Session, silence_id: int, *, now: datetime) -> bool:
    """End a silence now. False when there is no such silence in force."""
    silence = session.get(Silence, silence_id)
    if silence is None or silence.ends_at <= now:
        return False
    silence.ends_at = max(now, silence.starts_at)
    return True


def digest_sent(session: Session, report_date: str, recipient: str) -> bool:
    return session.scalar(select(SentDigest.id).where(SentDigest.report_date == report_date,
                                                      SentDigest.recipient == recipient)) is not None


def record_digest(session: Session, report_date: str, recipient: str, message_id: str, *, sent_at: datetime) -> None:
    if not digest_sent(session, report_date, recipient):
        session.add(SentDigest(report_date=report_date, recipient=recipient, message_id=message_id, sent_at=sent_at))
