"""ORM models (SQLAlchemy 2.0). All timestamps are UTC; label columns hold taxonomy codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from datetime import timezone


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC (SQLite has no zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes aware datetimes only")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class Source(Base):
    """A feed we watch, with its fetch state."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, comment="short name from mynawatch.toml")
    url: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(30), comment="feed | google_news | google_trends | yahoo | hatena | mastodon")
    publisher: Mapped[str | None] = mapped_column(String(200))
    interval_minutes: Mapped[int] = mapped_column(Integer, default=60)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    body_hash: Mapped[str | None] = mapped_column(String(64), comment="sha256 of the last body parsed")
    failure_score: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(200), default="new", comment="ok | not modified | error: ...")
    last_success_at: Mapped[datetime | None] = mapped_column()
    next_fetch_at: Mapped[datetime | None] = mapped_column()
    last_new_item_at: Mapped[datetime | None] = mapped_column()


class FetchLog(Base):
    """One fetch attempt of one source."""

    __tablename__ = "fetch_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    started_at: Mapped[datetime] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30), comment="new | unchanged | not_modified | failed")
    new_items: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class Story(Base):
    """A cluster of items from any publishers that tell the same story."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(Text, comment="title of the first item seen")
    first_seen_at: Mapped[datetime] = mapped_column(comment="published time of the earliest item")
    items: Mapped[list["Item"]] = relationship(back_populates="story")


class Item(Base):
    """One collected article or post, unique per canonical URL."""

    __tablename__ = "items"
    __table_args__ = (Index("ix_items_published_at", "published_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), index=True)
    canonical_url: Mapped[str] = mapped_column(Text, unique=True)
    guid: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    publisher: Mapped[str] = mapped_column(String(200))
    title_key: Mapped[str] = mapped_column(String(64), comment="hash of publisher + normalized title", unique=True)
    published_at: Mapped[datetime] = mapped_column(comment="UTC; the feed's date, or fetch time when missing")
    fetched_at: Mapped[datetime] = mapped_column()
    date_note: Mapped[str | None] = mapped_column(String(100), comment="why published_at is not the feed's date")
    social_count: Mapped[int | None] = mapped_column(Integer, comment="はてなブックマーク count when known")
    gate: Mapped[str] = mapped_column(String(10), default="pass", comment="pass | rejected (relevance gate)")
    gate_reason: Mapped[str | None] = mapped_column(Text)
    story: Mapped[Story] = relationship(back_populates="items")


class Classification(Base):
    """The four-axis label of one item by one model version (or a person: model_version 'human')."""

    __tablename__ = "classifications"
    __table_args__ = (UniqueConstraint("item_id", "model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(80))
    relevant: Mapped[bool] = mapped_column(Boolean)
    cause: Mapped[str] = mapped_column(String(30), comment="taxonomy cause code")
    sentiment: Mapped[str] = mapped_column(String(20), comment="taxonomy sentiment code")
    confidence: Mapped[float] = mapped_column(Float, comment="lowest per-axis probability")
    scores: Mapped[str] = mapped_column(Text, comment="JSON: probabilities per axis")
    created_at: Mapped[datetime] = mapped_column()
    services: Mapped[list["ClassificationService"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class ClassificationService(Base):
    """One service code of a classification (a relevant item has one or more)."""

    __tablename__ = "classification_services"

    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id"), primary_key=True)
    service: Mapped[str] = mapped_column(String(30), primary_key=True, comment="taxonomy service code")


class TrendPoint(Base):
    """A Google Trends "trending now" observation of a search term."""

    __tablename__ = "trend_points"
    __table_args__ = (UniqueConstraint("term", "published_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    term: Mapped[str] = mapped_column(Text)
    traffic: Mapped[int | None] = mapped_column(Integer, comment="lower bound of ht:approx_traffic")
    traffic_raw: Mapped[str] = mapped_column(String(40), comment="ht:approx_traffic as written, e.g. 20000+")
    published_at: Mapped[datetime] = mapped_column()
    fetched_at: Mapped[datetime] = mapped_column()
    news_titles: Mapped[str] = mapped_column(Text, default="", comment="ht:news_item titles, one per line")
    relevant: Mapped[bool | None] = mapped_column(Boolean, comment="set by the classifier; NULL until tagged")
    services: Mapped[str] = mapped_column(Text, default="", comment="taxonomy service codes, comma-separated")


class Alert(Base):
    """One alert episode: a spike of trouble mentions about one service."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    series: Mapped[str] = mapped_column(String(60), comment="the signal, e.g. trouble:portal")
    service: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), comment="firing | resolved")
    started_at: Mapped[datetime] = mapped_column(comment="first hour above threshold")
    last_seen_at: Mapped[datetime] = mapped_column(comment="last hour above threshold")
    resolved_at: Mapped[datetime | None] = mapped_column()
    peak_count: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float, comment="-log10 of the tail probability at the peak")


class SentDigest(Base):
    """A digest email that was sent (or written), never sent twice."""

    __tablename__ = "sent_digests"
    __table_args__ = (UniqueConstraint("report_date", "recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_date: Mapped[str] = mapped_column(String(10), comment="YYYY-MM-DD, Asia/Tokyo")
    recipient: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column()


class MaintenanceWindow(Base):
    """A planned-maintenance window announced in a notice: alerts for its service are inhibited during it."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (UniqueConstraint("service", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(30), comment="taxonomy service code the window applies to")
    starts_at: Mapped[datetime] = mapped_column(comment="UTC")
    ends_at: Mapped[datetime] = mapped_column(comment="UTC")
    title: Mapped[str] = mapped_column(Text, comment="the notice's title")
    url: Mapped[str] = mapped_column(Text, comment="where the notice was read")
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), comment="the collected item, when it came from a feed")
    found_at: Mapped[datetime] = mapped_column()
