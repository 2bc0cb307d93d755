"""Queries on planned-maintenance windows (written by the collector, read by reports and alerts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.tables import MaintenanceWindow


@dataclass(frozen=True)
class Window:
    service: str
    starts_at: datetime
    ends_at: datetime
    title: str
    url: str


def save_window(session: Session, window: Window, *, found_at: datetime, item_id: int | None = None) -> bool:
    """Store a window unless the same (service, start, end) is known. True when new."""
    exists = session.scalar(select(MaintenanceWindow.id).where(
        MaintenanceWindow.service == window.service, MaintenanceWindow.starts_at == window.starts_at,
        MaintenanceWindow.ends_at == window.ends_at))
    if exists is not None:
        return False
    session.add(MaintenanceWindow(service=window.service, starts_at=window.starts_at, ends_at=window.ends_at,
                                  title=window.title, url=window.url, item_id=item_id, found_at=found_at))
    session.flush()
    return True


def windows_between(session: Session, since: datetime, until: datetime) -> list[Window]:
    """Windows overlapping [since, until)."""
    rows = session.scalars(select(MaintenanceWindow).where(MaintenanceWindow.starts_at < until,
                                                           MaintenanceWindow.ends_at > since)
                           .order_by(MaintenanceWindow.starts_at))
    return [Window(r.service, r.starts_at, r.ends_at, r.title, r.url) for r in rows]
