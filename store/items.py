"""Queries on sources, items and stories. Functions take the session first and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from store.records import Entry, ItemText, TrendEntry
from store.tables import FetchLog, Item, Source, Story, TrendPoint


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


@dataclass(frozen=True)
class NewItem:
    """An entry ready to store: identity computed, gate decided, story still to assign."""

    entry: Entry
    canonical_url: str
    publisher: str
    title_key: str
    published: datetime
    gate: str
    gate_reason: str | None


@dataclass(frozen=True)
class StoryCandidate:
    """A recent story the clustering step may attach a new item to."""

    story_id: int
    title: str
    first_seen_at: datetime


def upsert_source(session: Session, *, name: str, url: str, kind: str, publisher: str | None,
                  interval_minutes: int) -> SourceState:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        source = Source(name=name, url=url, kind=kind, publisher=publisher, interval_minutes=interval_minutes)
        session.add(source)
        session.flush()
    else:
        if source.url != url:  # a new address: conditional-GET state belongs to the old one
            source.etag = source.last_modified = source.body_hash = None
        source.url, source.kind, source.publisher = url, kind, publisher
        source.interval_minutes = interval_minutes
    return _state(source)


def _state(source: Source) -> SourceState:
    return SourceState(source.id, source.name, source.url, source.kind, source.publisher,
                       source.etag, source.last_modified, source.body_hash, source.failure_score)


def record_fetch(session: Session, source_id: int, *, started_at: datetime, http_status: int | None,
                 outcome: str, new_items: int = 0, error: str | None = None, duration_ms: int = 0,
                 etag: str | None = None, last_modified: str | None = None,
                 body_hash: str | None = None) -> None:
    """Log one fetch and update the source's state (conditional-GET validators, health)."""
    session.add(FetchLog(source_id=source_id, started_at=started_at, http_status=http_status,
                         outcome=outcome, new_items=new_items, error=error, duration_ms=duration_ms))
    source = session.get(Source, source_id)
    if outcome == "failed":
        source.failure_score += 1.0
        source.status = f"error: {error}"
        return
    source.failure_score = 0.0
    source.last_success_at = started_at
    source.status = "ok" if outcome != "not_modified" else "not modified"
    if etag is not None or last_modified is not None:
        source.etag, source.last_modified = etag, last_modified
    if body_hash is not None:
        source.body_hash = body_hash
    if new_items:
        source.last_new_item_at = started_at


def known_keys(session: Session, urls: list[str], title_keys: list[str]) -> set[str]:
    """The canonical URLs and title keys among these that are already stored."""
    found: set[str] = set()
    if urls:
        found.update(session.scalars(select(Item.canonical_url).where(Item.canonical_url.in_(urls))))
    if title_keys:
        found.update(session.scalars(select(Item.title_key).where(Item.title_key.in_(title_keys))))
    return found


def recent_stories(session: Session, since: datetime) -> list[StoryCandidate]:
    rows = session.execute(select(Story.id, Story.title, Story.first_seen_at)
                           .where(Story.first_seen_at >= since))
    return [StoryCandidate(*row) for row in rows]


def add_story(session: Session, title: str, first_seen_at: datetime) -> int:
    story = Story(title=title, first_seen_at=first_seen_at)
    session.add(story)
    session.flush()
    return story.id


def save_item(session: Session, source_id: int, item: NewItem, story_id: int, *, fetched_at: datetime) -> bool:
    """Insert one item; a duplicate canonical URL or title key is ignored. True when inserted."""
    e = item.entry
    stmt = sqlite_insert(Item).values(
        source_id=source_id, story_id=story_id, canonical_url=item.canonical_url, guid=e.guid,
        title=e.title, summary=e.summary, publisher=item.publisher, title_key=item.title_key,
        published_at=item.published, fetched_at=fetched_at, date_note=e.date_note,
        social_count=e.social_count, gate=item.gate, gate_reason=item.gate_reason,
    ).on_conflict_do_nothing()
    inserted = session.execute(stmt).rowcount == 1
    if inserted:
        story = session.get(Story, story_id)
        if item.published < story.first_seen_at:
            story.first_seen_at = item.published
    return inserted


def update_social_counts(session: Session, counts: dict[str, int]) -> None:
    """Refresh bookmark counts of already stored items (they grow after the first fetch)."""
    for url, count in counts.items():
        item = session.scalar(select(Item).where(Item.canonical_url == url))
        if item is not None and (item.social_count or 0) < count:
            item.social_count = count


def save_trends(session: Session, source_id: int, trends: list[TrendEntry], *, fetched_at: datetime) -> int:
    inserted = 0
    for t in trends:
        stmt = sqlite_insert(TrendPoint).values(
            source_id=source_id, term=t.term, traffic=t.traffic, traffic_raw=t.traffic_raw,
            published_at=t.published or fetched_at, fetched_at=fetched_at,
            news_titles="\n".join(title for title, _url, _src in t.news),
        ).on_conflict_do_nothing()
        inserted += session.execute(stmt).rowcount
    return inserted


def items_to_classify(session: Session, model_version: str, *, everything: bool = False) -> list[ItemText]:
    """Gate-passed items without a classification by this model version (or all of them)."""
    from store.tables import Classification

    query = select(Item.id, Item.title, Item.summary).where(Item.gate == "pass")
    if not everything:
        done = select(Classification.item_id).where(Classification.model_version == model_version)
        query = query.where(Item.id.not_in(done))
    return [ItemText(i, t, s) for i, t, s in session.execute(query.order_by(Item.id))]


def count_items(session: Session) -> dict[str, int]:
    total = session.scalar(select(func.count(Item.id)))
    rejected = session.scalar(select(func.count(Item.id)).where(Item.gate == "rejected"))
    stories = session.scalar(select(func.count(Story.id)))
    return {"items": total, "gate_rejected": rejected, "stories": stories}


def trends_to_classify(session: Session) -> list[tuple[int, str, str]]:
    rows = session.execute(select(TrendPoint.id, TrendPoint.term, TrendPoint.news_titles)
                           .where(TrendPoint.relevant.is_(None)))
    return [tuple(r) for r in rows]


def save_trend_labels(session: Session, labels: dict[int, tuple[bool, list[str]]]) -> None:
    for trend_id, (relevant, services) in labels.items():
        point = session.get(TrendPoint, trend_id)
        point.relevant, point.services = relevant, ",".join(services)


def trend_points_between(session: Session, since: datetime, until: datetime) -> list[TrendPoint]:
    return list(session.scalars(select(TrendPoint).where(TrendPoint.published_at >= since,
                                                         TrendPoint.published_at < until)
                                .order_by(TrendPoint.traffic.desc())))
