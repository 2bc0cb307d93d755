"""Queries on alerts and sent digests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.records import Episode
from store.tables import Alert, SentDigest


@dataclass(frozen=True)
class AlertView:
    dedup_key: str
    series: str
    service: str
    status: str
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    peak_count: int
    score: float


def upsert_episode(session: Session, episode: Episode, *, service: str, status: str,
                   resolved_at: datetime | None) -> tuple[AlertView, str | None]:
    """Record an episode as an alert (one per episode, by dedup key). Returns it and its previous status."""
    key = f"{episode.series}@{episode.start.isoformat()}"
    alert = session.scalar(select(Alert).where(Alert.dedup_key == key))
    previous = None if alert is None else alert.status
    if alert is None:
        alert = Alert(dedup_key=key, series=episode.series, service=service, started_at=episode.start,
                      last_seen_at=episode.end, peak_count=episode.peak_count, score=episode.score, status=status)
        session.add(alert)
    alert.last_seen_at = max(alert.last_seen_at, episode.end)
    alert.peak_count = max(alert.peak_count, episode.peak_count)
    alert.score = max(alert.score, episode.score)
    alert.status, alert.resolved_at = status, resolved_at
    session.flush()
    return _view(alert), previous


def alerts_between(session: Session, since: datetime, until: datetime) -> list[AlertView]:
    """Alerts active at any time in [since, until)."""
    rows = session.scalars(select(Alert).where(Alert.started_at < until, Alert.last_seen_at >= since)
                           .order_by(Alert.started_at))
    return [_view(a) for a in rows]


def _view(a: Alert) -> AlertView:
    return AlertView(a.dedup_key, a.series, a.service, a.status, a.started_at, a.last_seen_at, a.resolved_at,
                     a.peak_count, a.score)


def digest_sent(session: Session, report_date: str, recipient: str) -> bool:
    return session.scalar(select(SentDigest.id).where(SentDigest.report_date == report_date,
                                                      SentDigest.recipient == recipient)) is not None


def record_digest(session: Session, report_date: str, recipient: str, message_id: str, *, sent_at: datetime) -> None:
    session.add(SentDigest(report_date=report_date, recipient=recipient, message_id=message_id, sent_at=sent_at))
