"""Stream signals in SQL: per service and bin (five minutes, or rolled up per hour) the posts of stream
sources about it, their distinct authors, the reposts of them, and the distinct authors of trouble posts.

Posts count under their current label (a person's wins over the model's), as the news signals do; a
deleted post has left the store, and so the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Integer, and_, cast, func, literal_column, select
from sqlalchemy.orm import Session

from store.records import Sentiment, Signal, kinds_feeding
from store.signals import TROUBLE, current_labels
from store.tables import Classification, ClassificationService, Item, Source, StreamRepost

STREAM_KINDS = kinds_feeding(Signal.STREAM)
SIGNALS = ("posts", "authors", "reposts", "trouble")
REPOST_REACH = timedelta(days=7)  # reposts in a bin count for originals published up to this long before it


@dataclass(frozen=True)
class StreamCount:
    """Stream posts about one service over a window (a report's day): relevant posts, their distinct authors,
    and the reposts of relevant posts made in the window."""

    service: str
    posts: int
    authors: int
    reposts: int


@dataclass(frozen=True)
class Burst:
    """A burst of trouble posts about one service: its first post, when the stream detector first fired on it
    (evaluated every five minutes), and the first trouble report of that service from a news source the same
    Tokyo day (None: none)."""

    service: str
    first_post: datetime
    fired: datetime
    first_news: datetime | None

    @property
    def lead_minutes(self) -> int | None:
        """How many minutes the stream alert came before the first news report (negative: after it)."""
        return None if self.first_news is None else round((self.first_news - self.fired).total_seconds() / 60)


def _bin(session: Session, column, seconds: int):
    """Seconds since the epoch of the start of ``column``'s bin."""
    if session.get_bind().dialect.name == "sqlite":
        return (cast(func.strftime("%s", column), Integer) // seconds) * seconds
    return func.floor(func.extract("epoch", column) / seconds) * seconds


def _counts(session: Session, model_version: str, since: datetime, until: datetime, signal: str,
            seconds: int | None):
    """(bin start in seconds, when ``seconds``; service; the signal) rows for [since, until)."""
    c, s = Classification, ClassificationService
    if signal == "reposts":
        cur = current_labels(model_version, since - REPOST_REACH, until)
        when, counted = StreamRepost.reposted_at, func.count(StreamRepost.id)
    else:
        cur = current_labels(model_version, since, until)
        when = cur.c.published_at
        counted = func.count(func.distinct(cur.c.item_id)) if signal == "posts" else \
            func.count(func.distinct(cur.c.publisher))
    keys = ([_bin(session, when, seconds).label("b")] if seconds else []) + [s.service]
    query = select(*keys, counted)
    if signal == "reposts":
        query = (query.select_from(StreamRepost).join(cur, cur.c.item_id == StreamRepost.item_id)
                 .where(when >= since, when < until))
    else:
        query = query.select_from(cur)
    query = (query.join(c, and_(c.id == cur.c.cid, c.relevant.is_(True))).join(s, s.classification_id == c.id)
             .join(Source, Source.id == cur.c.source_id).where(Source.kind.in_(STREAM_KINDS)))
    if signal == "trouble":
        query = query.where(c.cause.in_(TROUBLE), c.sentiment != str(Sentiment.POSITIVE))
    return session.execute(query.group_by(*([literal_column("b")] if seconds else []), s.service))


def stream_series(session: Session, model_version: str, since: datetime, until: datetime, *,
                  signal: str = "authors", minutes: int = 5) -> dict[str, dict[datetime, int]]:
    """Per service, bin start (UTC) -> the signal in [since, until): posts, authors (distinct), reposts,
    or trouble (distinct authors of posts whose cause is a failure and whose tone is not positive)."""
    if signal not in SIGNALS:
        raise ValueError(f"stream signal {signal!r}: one of {', '.join(SIGNALS)}")
    out: dict[str, dict[datetime, int]] = {}
    for start, service, n in _counts(session, model_version, since, until, signal, minutes * 60):
        out.setdefault(service, {})[datetime.fromtimestamp(int(start), timezone.utc)] = int(n)
    return out


def stream_counts(session: Session, model_version: str, since: datetime, until: datetime) -> list[StreamCount]:
    """Per service, the posts, distinct authors and reposts of [since, until) (a report's day), by service
    code; services without a post or repost are left out."""
    found: dict[str, dict[str, int]] = {}
    for signal in ("posts", "authors", "reposts"):
        for service, n in _counts(session, model_version, since, until, signal, None):
            found.setdefault(service, {})[signal] = int(n)
    return [StreamCount(service, n.get("posts", 0), n.get("authors", 0), n.get("reposts", 0))
            for service, n in sorted(found.items())]


def first_post_at(session: Session) -> datetime | None:
    """When the stream history begins (the earliest stream post): stream alerts warm up from there."""
    return session.scalar(select(func.min(Item.published_at)).join(Source, Source.id == Item.source_id)
                          .where(Source.kind.in_(STREAM_KINDS)))


def first_news_at(session: Session, model_version: str, service: str, since: datetime,
                  until: datetime) -> datetime | None:
    """The first trouble report about ``service`` in [since, until) from a source that is not a stream (news,
    feeds, pages): what a stream burst is measured against."""
    return _first_trouble(session, model_version, service, since, until, Source.kind.not_in(STREAM_KINDS))


def first_stream_trouble_at(session: Session, model_version: str, service: str, since: datetime,
                            until: datetime) -> datetime | None:
    """The first trouble post about ``service`` in [since, until) from a stream source (a burst's first post)."""
    return _first_trouble(session, model_version, service, since, until, Source.kind.in_(STREAM_KINDS))


def _first_trouble(session: Session, model_version: str, service: str, since: datetime, until: datetime,
                   kinds) -> datetime | None:
    cur = current_labels(model_version, since, until)
    c, s = Classification, ClassificationService
    return session.scalar(select(func.min(cur.c.published_at)).select_from(cur)
                          .join(c, and_(c.id == cur.c.cid, c.relevant.is_(True))).join(s, s.classification_id == c.id)
                          .join(Source, Source.id == cur.c.source_id)
                          .where(s.service == service, kinds, c.cause.in_(TROUBLE),
                                 c.sentiment != str(Sentiment.POSITIVE)))
