"""Source health as reports and alerts read it (the collector writes it: ``store/items.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.tables import FetchLog, Source

SUCCESSES = ("new", "unchanged", "not_modified")  # fetch_log outcomes of a source that answered usefully


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


def last_attempt(session: Session) -> datetime | None:
    """The last time any source was tried: how long ago the monitor last ran (before this start)."""
    return session.scalar(select(func.max(Source.last_attempt_at)))


def last_success(session: Session) -> datetime | None:
    """The last time any source answered: when it is long ago, collection itself has stopped."""
    return session.scalar(select(func.max(Source.last_success_at)))


@dataclass(frozen=True)
class FetchTally:
    """Fetch attempts of one source in a period with one outcome and reason (``fetch_log``)."""

    source: str
    outcome: str  # ok (any success) | failed | offline
    reason: str | None  # the stored error, for failures
    attempts: int


def fetch_history_start(session: Session) -> datetime | None:
    """The first fetch attempt the store knows of: before it, nothing is known about collection."""
    return session.scalar(select(func.min(FetchLog.started_at)))


def successful_fetches(session: Session, since: datetime, until: datetime) -> list[tuple[datetime, int]]:
    """(when, the source's interval in minutes) of every successful fetch in [since, until), in time order."""
    rows = session.execute(select(FetchLog.started_at, Source.interval_minutes).distinct()
                           .join(Source, Source.id == FetchLog.source_id)
                           .where(FetchLog.outcome.in_(SUCCESSES), FetchLog.started_at >= since,
                                  FetchLog.started_at < until)
                           .order_by(FetchLog.started_at))
    return [(at, min(int(minutes or 60), MAX_INTERVAL_MINUTES)) for at, minutes in rows]


def longest_interval(session: Session) -> int:
    """The longest fetch interval of any source, in minutes (how far back a success can still cover)."""
    return min(int(session.scalar(select(func.max(Source.interval_minutes))) or 60), MAX_INTERVAL_MINUTES)


# A year: what the settings allow. A store may hold more from a version that did not check (a source's row
# outlives its settings), which overflowed the report's and the gaps' time arithmetic.
MAX_INTERVAL_MINUTES = 366 * 1440


def fetch_tallies(session: Session, since: datetime, until: datetime) -> list[FetchTally]:
    """Per source, outcome and reason: how many attempts in [since, until)."""
    rows = session.execute(select(Source.name, FetchLog.outcome, FetchLog.error, func.count())
                           .join(Source, Source.id == FetchLog.source_id)
                           .where(FetchLog.started_at >= since, FetchLog.started_at < until)
                           .group_by(Source.name, FetchLog.outcome, FetchLog.error))
    tallies: dict[tuple[str, str, str | None], int] = {}
    for name, outcome, error, n in rows:
        key = (name, "ok", None) if outcome in SUCCESSES else (name, outcome, error)  # the three successes as one
        tallies[key] = tallies.get(key, 0) + int(n)
    return [FetchTally(name, outcome, reason, n) for (name, outcome, reason), n in sorted(
        tallies.items(), key=lambda kv: (kv[0][0], kv[0][1] != "ok", -kv[1], kv[0][2] or ""))]
