"""Stream signals in SQL: per service and bin (five minutes, or rolled up per hour) the posts of stream
sources about it, their distinct authors, the reposts of them, and the distinct authors of trouble posts.

Posts count under their current label (a person's wins over the model's), as the news signals do; a
deleted post has left the store, and so the counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Integer, and_, cast, func, literal_column, select
from sqlalchemy.orm import Session

from store.records import Sentiment, Signal, kinds_feeding
from store.signals import TROUBLE, current_labels
from store.tables import Classification, ClassificationService, Item, Source, StreamRepost

STREAM_KINDS = kinds_feeding(Signal.STREAM)
SIGNALS = ("posts", "authors", "reposts", "trouble")
REPOST_REACH = timedelta(days=7)  # reposts in a bin count for originals published up to this long before it


def _bin(session: Session, column, seconds: int):
    """Seconds since the epoch of the start of ``column``'s bin."""
    if session.get_bind().dialect.name == "sqlite":
        return (cast(func.strftime("%s", column), Integer) // seconds) * seconds
    return func.floor(func.extract("epoch", column) / seconds) * seconds


def stream_series(session: Session, model_version: str, since: datetime, until: datetime, *,
                  signal: str = "authors", minutes: int = 5) -> dict[str, dict[datetime, int]]:
    """Per service, bin start (UTC) -> the signal in [since, until): posts, authors (distinct), reposts,
    or trouble (distinct authors of posts whose cause is a failure and whose tone is not positive)."""
    if signal not in SIGNALS:
        raise ValueError(f"stream signal {signal!r}: one of {', '.join(SIGNALS)}")
    seconds = minutes * 60
    c, s = Classification, ClassificationService
    if signal == "reposts":
        cur = current_labels(model_version, since - REPOST_REACH, until)
        when = StreamRepost.reposted_at
        query = (select(_bin(session, when, seconds).label("b"), s.service, func.count(StreamRepost.id))
                 .select_from(StreamRepost).join(cur, cur.c.item_id == StreamRepost.item_id)
                 .where(when >= since, when < until))
    else:
        cur = current_labels(model_version, since, until)
        counted = func.count(func.distinct(cur.c.item_id)) if signal == "posts" else \
            func.count(func.distinct(cur.c.publisher))
        query = select(_bin(session, cur.c.published_at, seconds).label("b"), s.service, counted).select_from(cur)
    query = (query.join(c, and_(c.id == cur.c.cid, c.relevant.is_(True))).join(s, s.classification_id == c.id)
             .join(Source, Source.id == cur.c.source_id).where(Source.kind.in_(STREAM_KINDS)))
    if signal == "trouble":
        query = query.where(c.cause.in_(TROUBLE), c.sentiment != str(Sentiment.POSITIVE))
    out: dict[str, dict[datetime, int]] = {}
    for start, service, n in session.execute(query.group_by(literal_column("b"), s.service)):
        out.setdefault(service, {})[datetime.fromtimestamp(int(start), timezone.utc)] = int(n)
    return out


def first_post_at(session: Session) -> datetime | None:
    """When the stream history begins (the earliest stream post): stream alerts warm up from there."""
    return session.scalar(select(func.min(Item.published_at)).join(Source, Source.id == Item.source_id)
                          .where(Source.kind.in_(STREAM_KINDS)))


def first_news_at(session: Session, model_version: str, service: str, since: datetime,
                  until: datetime) -> datetime | None:
    """The first trouble report about ``service`` in [since, until) from a source that is not a stream (news,
    feeds, pages): what a stream burst is measured against."""
    cur = current_labels(model_version, since, until)
    c, s = Classification, ClassificationService
    return session.scalar(select(func.min(cur.c.published_at)).select_from(cur)
                          .join(c, and_(c.id == cur.c.cid, c.relevant.is_(True))).join(s, s.classification_id == c.id)
                          .join(Source, Source.id == cur.c.source_id)
                          .where(s.service == service, Source.kind.not_in(STREAM_KINDS), c.cause.in_(TROUBLE),
                                 c.sentiment != str(Sentiment.POSITIVE)))
