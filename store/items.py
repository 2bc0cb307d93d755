"""Queries on items, stories and trend points. Functions take the session first and never commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from store.dialect import dialect_for, insert_for
from store.records import Entry, ItemText, TrendEntry
from store.sources import SourceState, record_fetch, upsert_source  # noqa: F401 (older imports)
from store.tables import Item, Story, TrendPoint

CHUNK = 400  # values per IN (...) list


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


@dataclass
class KnownKeys:
    """Which of a batch's identities are already stored."""

    urls: set[str] = field(default_factory=set)
    title_keys: set[str] = field(default_factory=set)
    guids: set[str] = field(default_factory=set)  # of the same source


def _chunks(values: list) -> list[list]:
    values = list(dict.fromkeys(values))
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


def known_keys(session: Session, urls: list[str], title_keys: list[str], *, source_id: int | None = None,
               guids: list[str] = ()) -> KnownKeys:
    """The canonical URLs, title keys and (this source's) GUIDs among these that are already stored."""
    known = KnownKeys()
    guids = [g for g in guids if g] if source_id is not None else []
    dialect, connection = dialect_for(session.get_bind()), session.connection()
    known.urls.update(dialect.known_item_values(connection, "canonical_url", urls))  # one statement per list
    known.title_keys.update(dialect.known_item_values(connection, "title_key", title_keys))
    if guids:
        known.guids.update(dialect.known_item_values(connection, "guid", guids, source_id=source_id))
    return known


def recent_stories(session: Session, since: datetime, until: datetime | None = None) -> list[StoryCandidate]:
    """Stories first seen at or after ``since`` (and before ``until``)."""
    query = select(Story.id, Story.title, Story.first_seen_at).where(Story.first_seen_at >= since)
    if until is not None:
        query = query.where(Story.first_seen_at < until)
    return [StoryCandidate(*row) for row in session.execute(query.order_by(Story.id))]


def add_stories(session: Session, stories: list[tuple[str, datetime]]) -> list[int]:
    """Insert stories (title, first_seen_at) in one statement; their ids, in order."""
    if not stories:
        return []
    stmt = insert(Story).returning(Story.id, sort_by_parameter_order=True)
    rows = session.connection().execute(stmt, [{"title": t, "first_seen_at": w} for t, w in stories])
    return [r[0] for r in rows]


def save_items(session: Session, source_id: int, rows: list[tuple[NewItem, int]], *, fetched_at: datetime) -> int:
    """Insert items with their story ids in one statement; duplicates (by URL, title key, GUID) are ignored.
    Returns how many were inserted."""
    if not rows:
        return 0
    values = [dict(source_id=source_id, story_id=story_id, canonical_url=i.canonical_url, guid=i.entry.guid,
                   title=i.entry.title, summary=i.entry.summary, publisher=i.publisher, title_key=i.title_key,
                   published_at=i.published, fetched_at=fetched_at, date_note=i.entry.date_note,
                   social_count=i.entry.social_count, gate=i.gate, gate_reason=i.gate_reason) for i, story_id in rows]
    return dialect_for(session.get_bind()).insert_new_rows(session.connection(), Item, values)


def move_stories_back(session: Session, times: dict[int, datetime]) -> None:
    """An earlier item joined these stories: their first_seen_at becomes its time when earlier."""
    if not times:
        return
    stmt = (update(Story).where(Story.id == bindparam("sid"), Story.first_seen_at > bindparam("when"))
            .values(first_seen_at=bindparam("when")))
    session.connection().execute(stmt, [{"sid": sid, "when": when} for sid, when in times.items()])


def drop_empty_stories(session: Session, story_ids: list[int]) -> None:
    """Remove stories of this batch that got no item (their items were stored meanwhile by another writer)."""
    for chunk in _chunks(story_ids):
        session.execute(delete(Story).where(Story.id.in_(chunk), ~exists().where(Item.story_id == Story.id)))


def item_ids(session: Session, urls: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(urls):
        out.update(session.execute(select(Item.canonical_url, Item.id).where(Item.canonical_url.in_(chunk))).all())
    return out


def texts_by_url(session: Session, urls: list[str]) -> dict[str, tuple[str, str]]:
    """url -> (title, summary) of the stored items at those URLs (the canonical URL, or the GUID when it
    is the page's address), for measuring the classifier on labeled URLs."""
    out: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(urls):
        for column in (Item.canonical_url, Item.guid):
            rows = session.execute(select(column, Item.title, Item.summary).where(column.in_(chunk))).all()
            out.update({url: (title, summary) for url, title, summary in rows if url not in out})
    return out


def update_social_counts(session: Session, counts: dict[str, int]) -> None:
    """Refresh bookmark counts of already stored items (they grow after the first fetch)."""
    changed = []
    for chunk in _chunks(list(counts)):
        for item_id, url, current in session.execute(select(Item.id, Item.canonical_url, Item.social_count)
                                                     .where(Item.canonical_url.in_(chunk))):
            if (current or 0) < counts[url]:
                changed.append({"iid": item_id, "count": counts[url]})
    if changed:
        stmt = update(Item).where(Item.id == bindparam("iid")).values(social_count=bindparam("count"))
        session.connection().execute(stmt, changed)


def save_trends(session: Session, source_id: int, trends: list[TrendEntry], *, fetched_at: datetime) -> int:
    inserted = 0
    for t in trends:
        stmt = insert_for(session, TrendPoint).values(
            source_id=source_id, term=t.term, traffic=t.traffic, traffic_raw=t.traffic_raw,
            published_at=t.published or fetched_at, fetched_at=fetched_at,
            news_titles="\n".join(title for title, _url, _src in t.news),
        ).on_conflict_do_nothing().returning(TrendPoint.id)
        inserted += session.execute(stmt).first() is not None  # an INSERT's rowcount is -1 on psycopg
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
