"""Queries on incidents and their items. Functions take the session first and never commit.

An incident groups the trouble of one or more services that overlaps in time (see ``reports/incidents.py``,
which derives them from the store). Its id is stable: the Tokyo day and hour of its first trouble report
and its services, so recomputing from the same store gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from store.clock import tokyo
from store.tables import IncidentItem, IncidentRow, Item, Source

HOUR = timedelta(hours=1)
ROLES = ("trouble", "recovery", "followup")


@dataclass(frozen=True)
class Incident:
    """An incident as reports, alerts and the command line see it. Times are aware UTC datetimes."""

    id: str
    services: tuple[str, ...]
    start: datetime  # the first trouble report
    end: datetime  # the signal back at its baseline (end of the last hour above it)
    peak_at: datetime  # the hour with the most trouble stories
    peak_count: int
    causes: tuple[str, ...]  # leading causes, most stories first
    stories: int
    items: int
    publishers: int
    first_item_id: int
    first_official: datetime | None = None  # the first item from an official source
    official_item_id: int | None = None
    recovered: datetime | None = None  # the first recovery report, official or not
    recovery_item_id: int | None = None
    ongoing: bool = False
    alerts: tuple[str, ...] = ()  # dedup keys of the alerts it covers

    @property
    def to_acknowledge(self) -> timedelta | None:
        """From the first trouble report to the first official item."""
        return None if self.first_official is None else self.first_official - self.start

    @property
    def to_recover(self) -> timedelta | None:
        """From the first trouble report to the first recovery report."""
        return None if self.recovered is None else self.recovered - self.start

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class IncidentEntry:
    """An item of an incident, with its part in it (trouble, recovery or followup)."""

    item_id: int
    role: str
    official: bool


@dataclass(frozen=True)
class IncidentItemRow:
    """An incident's item as shown in a timeline."""

    item_id: int
    role: str
    official: bool
    published_at: datetime
    title: str
    publisher: str
    url: str
    story_id: int


def incident_id(first_report: datetime, services: tuple[str, ...]) -> str:
    """``2024-10-02T08-portal``: the Tokyo day and hour of the first trouble report, then the services."""
    return f"{tokyo(first_report):%Y-%m-%dT%H}-{'+'.join(sorted(services))}"


_COLUMNS = {"id": "id", "start": "started_at", "end": "ended_at", "peak_at": "peak_at", "peak_count": "peak_count",
            "stories": "stories", "items": "items", "publishers": "publishers", "first_item_id": "first_item_id",
            "first_official": "official_at", "official_item_id": "official_item_id", "recovered": "recovered_at",
            "recovery_item_id": "recovery_item_id", "ongoing": "ongoing"}


def _split(text: str) -> tuple[str, ...]:
    return tuple(x for x in (text or "").split(",") if x)


def _incident(row: IncidentRow) -> Incident:
    values = {attr: getattr(row, column) for attr, column in _COLUMNS.items()}
    return Incident(services=_split(row.services), causes=_split(row.causes), alerts=_split(row.alerts), **values)


def _row_values(incident: Incident) -> dict:
    values = {column: getattr(incident, attr) for attr, column in _COLUMNS.items()}
    values.update(services=",".join(incident.services), causes=",".join(incident.causes),
                  alerts=",".join(incident.alerts))
    return values


def incident_for(session: Session, service: str, when: datetime) -> Incident | None:
    """The incident of ``service`` whose span covers ``when`` (from the hour of its first trouble report to
    its end; an ongoing one has no end yet), or None. The latest such incident when two qualify. An alert of
    a service the incident lists as a co-mention (its trouble stories all named the incident's services)
    or as a follow-up finds it too: ``when`` is then the alert's first hour."""
    rows = list(session.scalars(select(IncidentRow).where(IncidentRow.started_at < when + HOUR)
                                .where(IncidentRow.started_at >= when - timedelta(days=7))
                                .order_by(IncidentRow.started_at.desc())))
    for row in rows:
        if service in _split(row.services) and (row.ended_at > when or row.ongoing):
            return _incident(row)
    prefix = f"trouble:{service}@{when.astimezone(timezone.utc):%Y-%m-%dT%H}"
    for row in rows:
        if any(key.startswith(prefix) for key in _split(row.alerts)):
            return _incident(row)
    return None


def get_incident(session: Session, incident_id_: str) -> Incident | None:
    row = session.get(IncidentRow, incident_id_)
    return None if row is None else _incident(row)


def incidents_between(session: Session, since: datetime | None = None, until: datetime | None = None) -> list[Incident]:
    """Incidents that overlap [since, until) (either bound may be left open), oldest first."""
    query = select(IncidentRow).order_by(IncidentRow.started_at, IncidentRow.id)
    if since is not None:
        query = query.where(or_(IncidentRow.ended_at > since, IncidentRow.ongoing.is_(True)))
    if until is not None:
        query = query.where(IncidentRow.started_at < until)
    return [_incident(r) for r in session.scalars(query)]


def incident_items(session: Session, incident_id_: str) -> list[IncidentItemRow]:
    """The items of an incident, in order of publication."""
    rows = session.execute(
        select(IncidentItem.item_id, IncidentItem.role, IncidentItem.official, Item.published_at, Item.title,
               Item.publisher, Item.canonical_url, Item.story_id)
        .join(Item, Item.id == IncidentItem.item_id).where(IncidentItem.incident_id == incident_id_)
        .order_by(Item.published_at, Item.id))
    return [IncidentItemRow(*row) for row in rows]


def save_incidents(session: Session, incidents: list[tuple[Incident, list[IncidentEntry]]], *,
                   since: datetime | None = None) -> tuple[int, int, int]:
    """Make the stored incidents that start at or after ``since`` (all of them when None) exactly these;
    rows that are already so are left untouched. Returns (added, changed, removed)."""
    query = select(IncidentRow)
    if since is not None:
        query = query.where(IncidentRow.started_at >= since)
    stored = {row.id: row for row in session.scalars(query)}
    wanted = {inc.id: (inc, entries) for inc, entries in incidents if since is None or inc.start >= since}
    added = changed = 0
    for key, (inc, entries) in wanted.items():
        row = stored.get(key) or session.get(IncidentRow, key)
        values = _row_values(inc)
        if row is None:
            session.add(IncidentRow(**values))
            session.flush()
            added += 1
            _replace_entries(session, key, entries)
            continue
        moved = any(getattr(row, k) != v for k, v in values.items())
        for k, v in values.items():
            if getattr(row, k) != v:
                setattr(row, k, v)
        if _replace_entries(session, key, entries) or moved:
            changed += 1
    gone = [key for key in stored if key not in wanted]
    if gone:
        session.execute(delete(IncidentItem).where(IncidentItem.incident_id.in_(gone)))
        session.execute(delete(IncidentRow).where(IncidentRow.id.in_(gone)))
    session.flush()
    return added, changed, len(gone)


def _replace_entries(session: Session, key: str, entries: list[IncidentEntry]) -> bool:
    """Make the items of incident ``key`` exactly ``entries``; True when anything changed."""
    stored = {r.item_id: r for r in session.scalars(select(IncidentItem).where(IncidentItem.incident_id == key))}
    wanted = {e.item_id: e for e in entries}
    touched = False
    for item_id, e in wanted.items():
        row = stored.get(item_id)
        if row is None:
            session.add(IncidentItem(incident_id=key, item_id=item_id, role=e.role, official=e.official))
            touched = True
        elif (row.role, row.official) != (e.role, e.official):
            row.role, row.official = e.role, e.official
            touched = True
    gone = [i for i in stored if i not in wanted]
    if gone:
        session.execute(delete(IncidentItem).where(and_(IncidentItem.incident_id == key, IncidentItem.item_id.in_(gone))))
        touched = True
    return touched


def count_incidents(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(IncidentRow)) or 0)


def sources_of(session: Session, item_ids: list[int]) -> dict[int, str]:
    """The name of the source each item came from."""
    out: dict[int, str] = {}
    for n in range(0, len(item_ids), 500):
        chunk = item_ids[n:n + 500]
        out.update(session.execute(select(Item.id, Source.name).join(Source, Source.id == Item.source_id)
                                   .where(Item.id.in_(chunk))).all())
    return out


@dataclass(frozen=True)
class TimelineRow:
    """An incident's item with its current label (from the incident_items view)."""

    item_id: int
    role: str
    official: bool
    published_at: datetime
    publisher: str
    title: str
    url: str
    story_id: int
    source: str
    services: tuple[str, ...]
    cause: str
    sentiment: str | None


def timeline_rows(session: Session, incident_id_: str) -> list[TimelineRow]:
    """The items of an incident with their current labels, in order of publication."""
    from sqlalchemy import text

    from store.tables import UTCDateTime

    rows = session.execute(text(
        "SELECT item_id, role, official, published_at, publisher, title, url, story_id, source, services, cause, "
        "sentiment FROM incident_items WHERE incident_id = :id ORDER BY published_at, item_id")
        .columns(published_at=UTCDateTime()), {"id": incident_id_})
    return [TimelineRow(r[0], r[1], bool(r[2]), r[3], r[4] or "", r[5] or "", r[6] or "", r[7], r[8] or "",
                        _split(r[9]), r[10] or "none", r[11]) for r in rows]


def last_item_at(session: Session) -> datetime | None:
    """When the store's newest item was published: past it every signal is quiet."""
    return session.scalar(select(func.max(Item.published_at)))
