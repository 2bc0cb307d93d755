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
    LargeBinary,
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
    failure_score: Mapped[float] = mapped_column(Float, default=0.0,
                                                 comment="weighted failures since the last success (temporary 1, soft 2, hard 4)")
    status: Mapped[str] = mapped_column(String(200), default="new",
                                        comment="ok | not modified | unchanged | error (kind): ... | offline: ...")
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    hold_until: Mapped[datetime | None] = mapped_column(comment="not fetched before this (backoff or Retry-After)")
    next_fetch_at: Mapped[datetime | None] = mapped_column()
    last_new_item_at: Mapped[datetime | None] = mapped_column()


class FetchLog(Base):
    """One fetch attempt of one source."""

    __tablename__ = "fetch_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(index=True)  # reports read the day's fetches (migration 0011)
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30), comment="new | unchanged | not_modified | failed | offline")
    new_items: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    failure_kind: Mapped[str | None] = mapped_column(String(20), comment="temporary | soft | hard when failed")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class Story(Base):
    """A cluster of items from any publishers that tell the same story."""

    __tablename__ = "stories"
    __table_args__ = (Index("ix_stories_first_seen_at", "first_seen_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(Text, comment="title of the first item seen")
    first_seen_at: Mapped[datetime] = mapped_column(comment="published time of the earliest item")
    items: Mapped[list["Item"]] = relationship(back_populates="story")


class Item(Base):
    """One collected article or post, unique per canonical URL."""

    __tablename__ = "items"
    __table_args__ = (Index("ix_items_published_at", "published_at"), UniqueConstraint("source_id", "guid", name="uq_items_source_guid"))

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


class PublisherHost(Base):
    """An outlet's name for its host, learned from the feeds: items without a publisher of their own take it."""

    __tablename__ = "publisher_hosts"

    host: Mapped[str] = mapped_column(String(253), primary_key=True, comment="lower case, without a leading www.")
    publisher: Mapped[str] = mapped_column(String(200))
    learned_from: Mapped[str] = mapped_column(String(30), comment="google_news (its <source url>) | source (a configured outlet feed)")
    updated_at: Mapped[datetime] = mapped_column()


class Article(Base):
    """The page of a relevant item, fetched and read: its own title, publisher, time and main text."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), unique=True)
    url: Mapped[str] = mapped_column(Text, comment="the address that answered, after redirects")
    status: Mapped[str] = mapped_column(String(20), comment="ok | failed | refused")
    title: Mapped[str | None] = mapped_column(Text, comment="og:title, JSON-LD headline or <title>")
    publisher: Mapped[str | None] = mapped_column(Text, comment="og:site_name or JSON-LD publisher")
    published_at: Mapped[datetime | None] = mapped_column(comment="article:published_time, JSON-LD or <time>")
    text: Mapped[str] = mapped_column(Text, default="", comment="main text")
    error: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column()


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


class ServedModel(Base):
    """The model version whose labels the store serves (one row): reports, alerts, views and search read
    its labels, a person's correction still winning. A retrain switches it in the transaction that
    re-tags the store."""

    __tablename__ = "served_model"

    id: Mapped[int] = mapped_column(primary_key=True, comment="always 1")
    model_version: Mapped[str] = mapped_column(String(80), comment="classifications.model_version of the served labels")
    model_key: Mapped[str | None] = mapped_column(String(64), comment="its file in the model cache; NULL when unknown (served before 0004)")
    basis: Mapped[str | None] = mapped_column(String(64), comment="key of the corpus and code it was trained on, corrections aside")
    corrections: Mapped[int] = mapped_column(Integer, default=0, comment="human corrections it was trained on")
    served_since: Mapped[datetime] = mapped_column()


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
    """One alert: an episode of a signal above its baseline (or collection stopping), through its lifecycle."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_series_last_seen", "series", "last_seen_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True, comment="series@first hour (UTC): one per episode")
    series: Mapped[str] = mapped_column(String(60), comment="the signal, e.g. trouble:portal, or nodata")
    service: Mapped[str] = mapped_column(String(30), comment="taxonomy service code (the group), or collection")
    status: Mapped[str] = mapped_column(String(20), comment="pending | firing | resolved | inhibited | expired")
    started_at: Mapped[datetime] = mapped_column(comment="first hour above threshold")
    last_seen_at: Mapped[datetime] = mapped_column(comment="last hour above threshold")
    fired_at: Mapped[datetime | None] = mapped_column(comment="when it went from pending to firing")
    resolved_at: Mapped[datetime | None] = mapped_column(comment="end of the last hour above threshold, once resolved")
    peak_count: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float, comment="-log10 of the tail probability at the peak")
    flagged_hours: Mapped[int] = mapped_column(Integer, default=0, comment="hours above threshold outside maintenance")
    notified_at: Mapped[datetime | None] = mapped_column(comment="last firing (or repeat) notification queued")
    resolve_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False, comment="a silence covered it at the last evaluation")
    note: Mapped[str] = mapped_column(Text, default="", comment="why inhibited (the maintenance window), etc.")
    peak_expected: Mapped[float | None] = mapped_column(Float, comment="the baseline's expected count in the peak hour")
    total_count: Mapped[int | None] = mapped_column(Integer, comment="trouble stories over the flagged hours")
    total_expected: Mapped[float | None] = mapped_column(Float, comment="the baseline's expected count over those hours")
    backfilled: Mapped[bool] = mapped_column(Boolean, default=False,
                                             comment="recorded for past hours (alerts backfill, a catch-up): not notified then")
    updated_at: Mapped[datetime] = mapped_column()


class SentDigest(Base):
    """A digest email that was sent (or written): recorded so that a day's digest is queued once per recipient."""

    __tablename__ = "sent_digests"
    __table_args__ = (UniqueConstraint("report_date", "recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_date: Mapped[str] = mapped_column(String(10), comment="YYYY-MM-DD, Asia/Tokyo")
    recipient: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column()


class Silence(Base):
    """A person's silence: no notifications for a service (or every service: '*') between two times."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(30), comment="taxonomy service code, collection, or * for all")
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column()


class Notification(Base):
    """The outbox: every notification (alert or digest) to one target, queued, retried until sent (at least once;
    each copy carries the same idempotency key, see docs/alerts.md)."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("channel", "target", "key"), Index("ix_notifications_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(Text, comment="what is notified, e.g. digest|2024-10-02 or the alert events")
    channel: Mapped[str] = mapped_column(String(20), comment="email | webhook")
    target: Mapped[str] = mapped_column(Text, comment="recipient address or webhook URL")
    kind: Mapped[str] = mapped_column(String(20), comment="digest | firing | repeat | resolved")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[bytes] = mapped_column(LargeBinary, comment="the exact bytes sent: an RFC 5322 message or a JSON body")
    status: Mapped[str] = mapped_column(String(20), default="pending", comment="pending | sending | sent | failed (refused for good)")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column()
    next_attempt_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)


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


class IncidentRow(Base):
    """An incident: the overlapping trouble of one or more services, from the first trouble report to the
    signal back at its baseline. Derived from the store (store/incidents.py), recomputed idempotently."""

    __tablename__ = "incident_records"
    __table_args__ = (Index("ix_incident_records_started_at", "started_at"),)

    id: Mapped[str] = mapped_column(String(120), primary_key=True,
                                    comment="stable: Tokyo day and hour of the first trouble report, and the services")
    services: Mapped[str] = mapped_column(String(300), comment="taxonomy service codes, comma-separated, sorted")
    started_at: Mapped[datetime] = mapped_column(comment="the first trouble report (its published time)")
    ended_at: Mapped[datetime] = mapped_column(comment="the signal back at its baseline (end of the last hour above it)")
    ongoing: Mapped[bool] = mapped_column(Boolean, default=False, comment="the signal was still above its baseline")
    peak_at: Mapped[datetime] = mapped_column(comment="the hour with the most trouble stories (its start)")
    peak_count: Mapped[int] = mapped_column(Integer, comment="distinct trouble stories in that hour")
    causes: Mapped[str] = mapped_column(String(200), comment="leading causes as the items give them, most stories first")
    stories: Mapped[int] = mapped_column(Integer, comment="distinct trouble stories")
    items: Mapped[int] = mapped_column(Integer, comment="trouble items")
    publishers: Mapped[int] = mapped_column(Integer, comment="distinct publishers of trouble items")
    first_item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), comment="the first trouble report")
    official_at: Mapped[datetime | None] = mapped_column(comment="the first item from an official source")
    official_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    recovered_at: Mapped[datetime | None] = mapped_column(comment="the first recovery report, official or not")
    recovery_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    alerts: Mapped[str] = mapped_column(Text, default="", comment="dedup keys of the alerts it covers, comma-separated")


class IncidentItem(Base):
    """An item of an incident, with its part in it."""

    __tablename__ = "incident_item_records"
    __table_args__ = (Index("ix_incident_item_records_item", "item_id"),)

    incident_id: Mapped[str] = mapped_column(ForeignKey("incident_records.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), comment="trouble | recovery | followup")
    official: Mapped[bool] = mapped_column(Boolean, default=False, comment="from an official source")


class StreamState(Base):
    """A stream source's position and health: the cursor is written in the transaction of the posts it
    covers, so a restart resumes exactly after what was stored."""

    __tablename__ = "stream_states"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text, comment="jetstream: time_us of the last frame stored; misskey: last note id")
    cursor_at: Mapped[datetime | None] = mapped_column(comment="the time of that frame")
    state: Mapped[str] = mapped_column(String(30), default="new",
                                       comment="new | connected | reconnecting | dropping behind | paused | stopped")
    connected_since: Mapped[datetime | None] = mapped_column()
    last_frame_at: Mapped[datetime | None] = mapped_column(comment="when the last frame was received")
    reconnects: Mapped[int] = mapped_column(Integer, default=0)
    messages: Mapped[int] = mapped_column(Integer, default=0, comment="frames received (a replayed overlap not counted twice)")
    kept: Mapped[int] = mapped_column(Integer, default=0, comment="posts that passed the prefilter")
    errors: Mapped[int] = mapped_column(Integer, default=0, comment="frames skipped: malformed or over max_frame_bytes")
    dropped: Mapped[int] = mapped_column(Integer, default=0, comment="frames lost while dropping behind (streams without replay)")
    messages_per_min: Mapped[float] = mapped_column(Float, default=0.0, comment="over the last minute or so")
    kept_per_min: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column()


class StreamRepost(Base):
    """A repost (Bluesky) or renote (Misskey) of a stored post: buzz on the original, not an item of its own."""

    __tablename__ = "stream_reposts"
    __table_args__ = (Index("ix_stream_reposts_reposted_at", "reposted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True, comment="the original post")
    repost_key: Mapped[str] = mapped_column(Text, unique=True, comment="the repost's own identity (at:// URI, note address)")
    author: Mapped[str] = mapped_column(String(200), comment="who reposted")
    reposted_at: Mapped[datetime] = mapped_column()


class Worker(Base):
    """A `mynawatch run` process sharing the store (store/work.py): its role and its last sign of life."""

    __tablename__ = "work_workers"

    holder: Mapped[str] = mapped_column(String(200), primary_key=True, comment="host:pid:random, unique per process")
    role: Mapped[str] = mapped_column(String(20), comment="collect | classify | alerts | all")
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    leader: Mapped[bool] = mapped_column(Boolean, default=False, comment="holds the alerts lock (alerts, notifications, reports)")
    started_at: Mapped[datetime] = mapped_column()
    seen_at: Mapped[datetime] = mapped_column(comment="last heartbeat; gone after a few lease times without one")


class WorkLease(Base):
    """Work one collector holds at a time (``source:NAME``, ``articles``) until ``expires_at``, renewed while it lives."""

    __tablename__ = "work_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True, comment="source:NAME or articles")
    holder: Mapped[str] = mapped_column(String(200), comment="work_workers.holder")
    expires_at: Mapped[datetime] = mapped_column(comment="free for another worker after this")
    acquired_at: Mapped[datetime] = mapped_column()


class WorkClaim(Base):
    """An item a classifier worker is tagging: claimed in a batch, freed when its labels are saved; a claim that
    runs out (its worker died) is taken by another worker."""

    __tablename__ = "work_claims"
    __table_args__ = (Index("ix_work_claims_expires_at", "expires_at"),)

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), comment="work_workers.holder")
    expires_at: Mapped[datetime] = mapped_column()
