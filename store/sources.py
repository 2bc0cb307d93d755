"""Queries on sources and the fetch log. Functions take the session first and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from store.dialect import insert_for
from store.tables import FetchLog, Item, Source


@dataclass(frozen=True)
class SourceState:
    """What the fetcher needs to know about a source between fetches."""

    id: int
    name: str
    url: str
    kind: str
    publisher: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    failure_score: float
    hold_until: datetime | None = None
    interval_minutes: int = 60


@dataclass(frozen=True)
class FetchRecord:
    """The outcome of one fetch attempt, as the collector decided it."""

    started_at: datetime
    outcome: str  # new | unchanged | not_modified | failed | offline
    http_status: int | None = None
    new_items: int = 0
    error: str | None = None
    failure_kind: str | None = None
    failure_score: float | None = None  # the source's new score after a counted failure
    duration_ms: int = 0
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    hold_until: datetime | None = None
    next_fetch_at: datetime | None = None


@dataclass(frozen=True)
class SourceRow:
    """A source's health, with the dates of its newest items (newest first) for the staleness check."""

    name: str
    kind: str
    url: str
    status: str
    failure_score: float
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_new_item_at: datetime | None
    hold_until: datetime | None
    next_fetch_at: datetime | None
    items: int
    newest: tuple[datetime, ...]


def upsert_source(session: Session, *, name: str, url: str, kind: str, publisher: str | None,
                  interval_minutes: int) -> SourceState:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:  # ON CONFLICT: another process (a second collector, a stream reader) may create it at once
        session.execute(insert_for(session, Source).values(
            name=name, url=url, kind=kind, publisher=publisher, interval_minutes=interval_minutes,
            failure_score=0.0, status="new").on_conflict_do_nothing())
        source = session.scalar(select(Source).where(Source.name == name))
    if source.url != url:  # a new address: conditional-GET state and backoff belong to the old one
        source.etag = source.last_modified = source.body_hash = source.hold_until = None
        source.failure_score = 0.0
    source.url, source.kind, source.publisher = url, kind, publisher
    source.interval_minutes = interval_minutes
    return _state(source)


def source_states(session: Session, names: list[str]) -> dict[str, SourceState]:
    """The current fetch state of these sources (one query)."""
    return {s.name: _state(s) for s in session.scalars(select(Source).where(Source.name.in_(names)))}


def _state(source: Source) -> SourceState:
    return SourceState(source.id, source.name, source.url, source.kind, source.publisher,
                       source.etag, source.last_modified, source.body_hash, source.failure_score or 0.0,
                       source.hold_until, source.interval_minutes)


def record_fetch(session: Session, source_id: int, record: FetchRecord | None = None, **fields) -> None:
    """Log one fetch and update the source's state (validators, health, when to fetch it next).

    Pass a FetchRecord, or its fields as keywords. Two plain statements: this runs for every source every round.
    """
    r = record or FetchRecord(**fields)
    session.execute(insert(FetchLog).values(
        source_id=source_id, started_at=r.started_at, http_status=r.http_status, outcome=r.outcome,
        new_items=r.new_items, error=r.error, duration_ms=r.duration_ms, failure_kind=r.failure_kind))
    values = {"last_attempt_at": r.started_at, "hold_until": r.hold_until, "next_fetch_at": r.next_fetch_at}
    if r.outcome == "offline":
        values["status"] = f"offline (not counted): {r.error}"[:200]
    elif r.outcome == "failed":
        values["failure_score"] = r.failure_score if r.failure_score is not None else Source.failure_score + 1.0
        values["status"] = f"error ({r.failure_kind or 'temporary'}): {r.error}"[:200]
    else:
        values.update(failure_score=0.0, last_success_at=r.started_at,
                      status={"not_modified": "not modified", "unchanged": "unchanged"}.get(r.outcome, "ok"))
        if r.etag is not None or r.last_modified is not None:
            values.update(etag=r.etag, last_modified=r.last_modified)
        if r.body_hash is not None:
            values["body_hash"] = r.body_hash
        if r.new_items:
            values["last_new_item_at"] = r.started_at
    session.execute(update(Source).where(Source.id == source_id).values(**values))


def source_rows(session: Session, *, newest: int = 20) -> list[SourceRow]:
    """Every source with its health and the published dates of its ``newest`` items."""
    ranked = (select(Item.source_id, Item.published_at,
                     func.row_number().over(partition_by=Item.source_id, order_by=Item.published_at.desc()).label("rn"))
              .subquery())
    dates: dict[int, list[datetime]] = {}
    rows = session.execute(select(ranked.c.source_id, ranked.c.published_at).where(ranked.c.rn <= newest)
                           .order_by(ranked.c.source_id, ranked.c.rn))
    for source_id, published in rows:
        dates.setdefault(source_id, []).append(published)
    counts = dict(session.execute(select(Item.source_id, func.count(Item.id)).group_by(Item.source_id)).all())
    out = []
    for s in session.scalars(select(Source).order_by(Source.name)):
        out.append(SourceRow(s.name, s.kind, s.url, s.status or "", s.failure_score or 0.0, s.last_attempt_at,
                             s.last_success_at, s.last_new_item_at, s.hold_until, s.next_fetch_at,
                             counts.get(s.id, 0), tuple(dates.get(s.id, ()))))
    return out
