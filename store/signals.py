"""Signals aggregated in SQL: counts per hour or Tokyo day of relevant items by service, cause and
sentiment (items, distinct stories, distinct publishers), social buzz and Google Trends presence.

Reports and alerts read these instead of loading every item, so a report over a store of a million
items stays fast. Each item counts under its current label: a person's (``model_version = 'human'``)
wins over the model's. Items the relevance gate rejected are never counted.

These are the news signals: posts pushed by stream sources (``Signal.STREAM`` in store.records.SOURCE_KINDS)
count in none of them (not in the trouble signal alerts watch, nor in a report's stories, items, publishers
or collected counts); they have their own signals in store/stream_signals.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session, aliased

from store.dialect import dialect_for, hour_text, joined, tokyo_day
from store.labels import HUMAN
from store.records import (TROUBLE_CAUSES, Label, LabeledItem, Sentiment, Signal, cause_of, kinds_feeding, sentiment_of,
                           services_of)
from store.tables import Classification, ClassificationService, Item, Source, TrendPoint

TROUBLE = sorted(str(c) for c in TROUBLE_CAUSES)
POST_KINDS = kinds_feeding(Signal.POSTS)  # each item one post
NEWS_KINDS = kinds_feeding(*(x for x in Signal if x is not Signal.STREAM))  # every kind but pushed streams
BOOKMARK_KINDS = kinds_feeding(Signal.BOOKMARKS)  # items carrying bookmark counts


@dataclass(frozen=True)
class Count:
    """Relevant items in one bucket (an hour in UTC, or a Tokyo day), for the keys asked for."""

    bucket: datetime | date | None
    service: str | None
    cause: str | None
    sentiment: str | None
    items: int
    stories: int
    publishers: int


@dataclass(frozen=True)
class SocialCount:
    """Social buzz about a service in one bucket: はてブ bookmarks of relevant pages, Mastodon posts."""

    bucket: datetime | date
    service: str
    bookmarks: int
    posts: int


@dataclass(frozen=True)
class TrendCount:
    """Google Trends "trending now" presence of マイナ terms for a service in one bucket."""

    bucket: datetime | date
    service: str
    terms: int
    traffic: int


def from_kinds(kinds: tuple[str, ...]):
    """A condition on items: their source is of one of ``kinds``."""
    return Item.source_id.in_(select(Source.id).where(Source.kind.in_(kinds)).scalar_subquery())


ITEM_COLUMNS = (Item.id.label("item_id"), Item.story_id, Item.publisher, Item.published_at, Item.source_id,
                Item.social_count)


def current_labels(model_version: str, since: datetime, until: datetime, *, kinds: tuple[str, ...] | None = None):
    """Items published in [since, until) that passed the gate, with the id of their current classification
    (``cid``, NULL when none); only items of sources of ``kinds`` when given."""
    human, model = aliased(Classification), aliased(Classification)
    query = (select(*ITEM_COLUMNS, func.coalesce(human.id, model.id).label("cid"))
             .outerjoin(human, and_(human.item_id == Item.id, human.model_version == HUMAN))
             .outerjoin(model, and_(model.item_id == Item.id, model.model_version == model_version)))
    return _window(query, since, until, kinds).subquery("cur")


def labeled(session: Session, model_version: str, since: datetime, until: datetime, *,
            kinds: tuple[str, ...] | None = NEWS_KINDS):
    """``current_labels`` of the items that have one, with the label's ``relevant``, ``cause`` and
    ``sentiment``: what the news signals count (only items of sources of ``kinds``: news by default).

    Each item's current label is looked up through the classifications' (item_id, model_version) key:
    on PostgreSQL one lookup per item of the window (a LATERAL subquery), never a join over every
    classification of the store, which the planner answered with hash joins over the whole table (see
    docs/scale-out.md, Figures); SQLite's planner looks labels up per item anyway, and keeps the plainer join."""
    c = aliased(Classification)
    if dialect_for(session.get_bind()).lateral:
        best = (select(c.id, c.relevant, c.cause, c.sentiment)
                .where(c.item_id == Item.id, c.model_version.in_([HUMAN, model_version]))
                .order_by((c.model_version == HUMAN).desc()).limit(1).lateral("best"))
        query = select(*ITEM_COLUMNS, best.c.id.label("cid"), best.c.relevant, best.c.cause,
                       best.c.sentiment).join(best, true())
    else:
        human, model = aliased(Classification), aliased(Classification)
        query = (select(*ITEM_COLUMNS, c.id.label("cid"), c.relevant, c.cause, c.sentiment)
                 .outerjoin(human, and_(human.item_id == Item.id, human.model_version == HUMAN))
                 .outerjoin(model, and_(model.item_id == Item.id, model.model_version == model_version))
                 .join(c, c.id == func.coalesce(human.id, model.id)))
    return _window(query, since, until, kinds).subquery("cur")


def _window(query, since: datetime, until: datetime, kinds: tuple[str, ...] | None):
    query = query.where(Item.published_at >= since, Item.published_at < until, Item.gate == "pass")
    return query if kinds is None else query.where(from_kinds(kinds))


def bucket_of(column, by: str):
    if by == "hour":
        return hour_text(column)
    if by == "day":
        return tokyo_day(column)  # the Tokyo day (store.clock), spelled for each engine by store/dialect.py
    raise ValueError(f"bucket {by!r}: hour or day")


def parse_bucket(value: str | None, by: str) -> datetime | date | None:
    if value is None:
        return None
    if by == "hour":
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return date.fromisoformat(value)


def count_relevant(session: Session, model_version: str, since: datetime, until: datetime, *,
                   by: str = "day", keys: tuple[str, ...] = ("service",), trouble: bool = False) -> list[Count]:
    """Relevant items per bucket (``by``: hour or day) and per ``keys`` (service, cause, sentiment).

    ``trouble`` keeps only trouble reports: a failure cause (not none, not maintenance) and a tone
    that is not positive (recovery reports do not count). News only: stream posts are not counted.
    """
    cur = labeled(session, model_version, since, until)
    columns = {"service": ClassificationService.service, "cause": cur.c.cause, "sentiment": cur.c.sentiment}
    group = [bucket_of(cur.c.published_at, by).label("bucket")] + [columns[k].label(k) for k in keys]
    # a row per item (and service): one current label per item, a service once per label, so count(*) counts items
    query = (select(*group, func.count(), func.count(func.distinct(cur.c.story_id)),
                    func.count(func.distinct(cur.c.publisher))).select_from(cur).where(cur.c.relevant.is_(True)))
    if "service" in keys:
        query = query.join(ClassificationService, ClassificationService.classification_id == cur.c.cid)
    if trouble:
        query = query.where(cur.c.cause.in_(TROUBLE), cur.c.sentiment != str(Sentiment.POSITIVE))
    rows = session.execute(query.group_by(*group))
    out = []
    for row in rows:
        named = dict(zip(keys, row[1:1 + len(keys)]))
        out.append(Count(parse_bucket(row[0], by), named.get("service"), named.get("cause"), named.get("sentiment"),
                         *row[1 + len(keys):]))
    return out


def trouble_series(session: Session, model_version: str, since: datetime, until: datetime) -> dict[str, dict[datetime, int]]:
    """Per service, hour (UTC) -> distinct stories of trouble reports: the signal alerts watch."""
    series: dict[str, dict[datetime, int]] = {}
    for n in count_relevant(session, model_version, since, until, by="hour", keys=("service",), trouble=True):
        series.setdefault(n.service, {})[n.bucket] = n.stories
    return series


SIGNALS = ("trouble", "stories", "items", "publishers", "bookmarks", "posts", "trends")


def hourly_signal(session: Session, model_version: str, since: datetime, until: datetime,
                  signal: str = "trouble") -> dict[str, dict[datetime, int]]:
    """One signal per service and hour (UTC): trouble (the alert signal: distinct stories of trouble
    reports), stories / items / publishers of relevant items, bookmarks / posts (social), trends."""
    if signal == "trouble":
        return trouble_series(session, model_version, since, until)
    out: dict[str, dict[datetime, int]] = {}
    if signal in ("stories", "items", "publishers"):
        rows = [(c.service, c.bucket, getattr(c, signal)) for c in count_relevant(session, model_version, since, until, by="hour")]
    elif signal in ("bookmarks", "posts"):
        rows = [(c.service, c.bucket, getattr(c, signal)) for c in count_social(session, model_version, since, until, by="hour")]
    elif signal == "trends":
        rows = [(c.service, c.bucket, c.terms) for c in count_trends(session, since, until, by="hour")]
    else:
        raise ValueError(f"signal {signal!r}: one of {', '.join(SIGNALS)}")
    for service, hour, n in rows:
        out.setdefault(service, {})[hour] = n
    return out


def count_social(session: Session, model_version: str, since: datetime, until: datetime, *,
                 by: str = "day") -> list[SocialCount]:
    """はてブ bookmarks and Mastodon posts about each service (relevant items only)."""
    cur = labeled(session, model_version, since, until, kinds=BOOKMARK_KINDS + POST_KINDS)
    s = ClassificationService
    bucket = bucket_of(cur.c.published_at, by).label("bucket")
    is_post = func.sum(case((Source.kind.in_(POST_KINDS), 1), else_=0))
    bookmarks = func.sum(case((Source.kind.in_(BOOKMARK_KINDS), func.coalesce(cur.c.social_count, 0)), else_=0))
    rows = session.execute(select(bucket, s.service, bookmarks, is_post).select_from(cur)
                           .join(s, s.classification_id == cur.c.cid).join(Source, Source.id == cur.c.source_id)
                           .where(cur.c.relevant.is_(True)).group_by(bucket, s.service))
    return [SocialCount(parse_bucket(b, by), svc, int(bm or 0), int(p or 0)) for b, svc, bm, p in rows]


def count_trends(session: Session, since: datetime, until: datetime, *, by: str = "day") -> list[TrendCount]:
    """Trending マイナ terms per service: how many terms and their summed approximate traffic."""
    bucket = bucket_of(TrendPoint.published_at, by).label("bucket")
    rows = session.execute(select(bucket, TrendPoint.services, func.count(), func.sum(func.coalesce(TrendPoint.traffic, 0)))
                           .where(TrendPoint.published_at >= since, TrendPoint.published_at < until,
                                  TrendPoint.relevant.is_(True))
                           .group_by(bucket, TrendPoint.services))
    totals: dict[tuple, list[int]] = {}
    for b, services, n, traffic in rows:
        for svc in [x for x in (services or "").split(",") if x] or ["general"]:
            acc = totals.setdefault((parse_bucket(b, by), svc), [0, 0])
            acc[0], acc[1] = acc[0] + n, acc[1] + int(traffic or 0)
    return [TrendCount(b, svc, n, t) for (b, svc), (n, t) in sorted(totals.items())]


def count_collected(session: Session, model_version: str, since: datetime, until: datetime) -> tuple[int, int]:
    """(news items collected in [since, until), of which relevant under their current label): stream posts
    are in neither."""
    total = session.scalar(select(func.count(Item.id)).where(Item.published_at >= since, Item.published_at < until,
                                                             from_kinds(NEWS_KINDS)))
    cur = labeled(session, model_version, since, until)
    relevant = session.scalar(select(func.count()).select_from(cur).where(cur.c.relevant.is_(True)))
    return int(total or 0), int(relevant or 0)


def relevant_items(session: Session, model_version: str, since: datetime, until: datetime) -> list[LabeledItem]:
    """Relevant news items published in [since, until) with their current label (for the top stories of a day
    and an incident's reports): stream posts are not among them."""
    cur = labeled(session, model_version, since, until)
    s = ClassificationService
    rows = session.execute(
        select(cur.c.item_id, cur.c.story_id, Item.title, Item.canonical_url, cur.c.publisher, cur.c.published_at,
               cur.c.cause, cur.c.sentiment, joined(s.service)).select_from(cur)
        .join(Item, Item.id == cur.c.item_id).join(s, s.classification_id == cur.c.cid)
        .where(cur.c.relevant.is_(True))
        .group_by(cur.c.item_id, cur.c.story_id, Item.title, Item.canonical_url, cur.c.publisher, cur.c.published_at,
                  cur.c.cause, cur.c.sentiment)
        .order_by(cur.c.published_at, cur.c.item_id))
    return [LabeledItem(i, story, title, url, publisher, published,
                        Label(True, services_of(sorted(services.split(","))), cause_of(cause), sentiment_of(sentiment)))
            for i, story, title, url, publisher, published, cause, sentiment, services in rows]


def first_item_at(session: Session) -> datetime | None:
    """When the news history begins (the earliest item not from a stream): the trouble signal's spike
    detection warms up from there (stream alerts from store.stream_signals.first_post_at)."""
    return session.scalar(select(func.min(Item.published_at)).where(from_kinds(NEWS_KINDS)))
