"""Source health as reports and alerts read it (the collector writes it: ``store/items.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.tables import Source


@dataclass(frozen=True)
class SourceHealth:
    name: str
    kind: str
    status: str  # ok | not modified | error: ... (and whatever else the collector writes)
    failure_score: float
    last_success_at: datetime | None
    last_new_item_at: datetime | None


def source_health(session: Session) -> list[SourceHealth]:
    rows = session.scalars(select(Source).order_by(Source.name))
    return [SourceHealth(s.name, s.kind, s.status or "", s.failure_score or 0.0, s.last_success_at, s.last_new_item_at)
            for s in rows]


def last_success(session: Session) -> datetime | None:
    """The last time any source answered: when it is long ago, collection itself has stopped."""
    return session.scalar(select(func.max(Source.last_success_at)))
