"""The daily report as data: built from the day's aggregated signals (``DayInputs``), then rendered
by ``reports/rendering.py``. Pure: no store, no clock."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from reports.coverage import Coverage, missing_days
from store.alerts import AlertView
from store.maintenance import Window
from store.records import SERVICE_CODES, Cause, LabeledItem, Sentiment, Service, cause_of, sentiment_of
from store.health import SourceHealth
from store.signals import Count, SocialCount
from store.stream_signals import Burst, StreamCount
from reports.timeline import Timeline

STALE_AFTER = timedelta(days=3)  # no new item for this long: the source may have stopped updating
SILENT_AFTER = timedelta(hours=24)  # no successful fetch for this long


@dataclass(frozen=True)
class TrendRow:
    term: str
    traffic_raw: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class DayInputs:
    """Everything a daily report needs, read from the store (see ``reports/archive.py``)."""

    day: date
    collected: int
    relevant: int
    per_day: list[Count]  # by day and service, the 28 days before ``day`` and ``day``
    causes: list[Count]  # ``day``, by service and cause
    sentiment: list[Count]  # by day and sentiment, the 7 days before ``day`` and ``day``
    items: list[LabeledItem]  # relevant items of ``day``
    hourly: dict[str, dict[datetime, int]]  # trouble stories per service per hour of ``day``
    social: list[SocialCount] = field(default_factory=list)  # ``day``, by service
    trends: list[TrendRow] = field(default_factory=list)
    alerts: list[AlertView] = field(default_factory=list)
    alert_days: list[date] = field(default_factory=list)  # days an alert fired over the 28 days (for the chart)
    windows: list[Window] = field(default_factory=list)  # overlapping ``day`` or in the 7 days after
    sources: list[SourceHealth] = field(default_factory=list)
    as_of: datetime | None = None  # when the report is made (for source health)
    incidents: list[Timeline] = field(default_factory=list)  # incidents that overlap ``day``
    coverage: Coverage | None = None  # what was collected: gaps, each source's fetches (None: not read)
    streams: list[StreamCount] | None = None  # ``day``, by service (None: the store has no stream source)
    bursts: list[Burst] = field(default_factory=list)  # stream bursts whose alert fired on ``day``


@dataclass(frozen=True)
class ServiceRow:
    service: Service
    stories: int
    items: int
    publishers: int
    avg7: float
    avg28: float
    top_cause: Cause | None = None
    bookmarks: int = 0
    posts: int = 0

    @property
    def ratio(self) -> float | None:
        """Today's stories against the 28-day daily average (None when there is no history)."""
        if not self.avg28:
            return None
        ratio = self.stories / self.avg28
        return round(ratio, 1) if ratio < 10 else round(ratio)


@dataclass(frozen=True)
class StreamRow:
    """The social panel's row of a service: stream posts, their distinct authors, reposts of them."""

    service: Service
    posts: int
    authors: int
    reposts: int


@dataclass(frozen=True)
class StoryRow:
    title: str
    services: tuple[Service, ...]
    cause: Cause
    sentiment: Sentiment
    items: int
    publishers: tuple[tuple[str, str], ...]  # (publisher, its article's URL), in order of publication
    url: str
    first_seen: datetime


@dataclass(frozen=True)
class SourceRow:
    name: str
    state: str  # failing | silent | stale
    detail: str


@dataclass(frozen=True)
class DailyReport:
    day: date
    collected: int
    relevant: int
    services: list[ServiceRow]
    causes: list[tuple[Cause, int]]
    sentiment: list[tuple[Sentiment, int, float, float]]  # (code, items today, share today, share over 7 days)
    top_stories: list[StoryRow]
    alerts: list[AlertView]
    maintenance: list[Window]
    notices: list[StoryRow]  # maintenance notices among today's stories
    trends: list[TrendRow]
    sources: list[SourceRow]
    sources_ok: int
    per_day: dict[date, dict[Service, int]] = field(default_factory=dict, compare=False)  # for the chart
    alert_days: list[date] = field(default_factory=list, compare=False)
    hourly: dict[str, dict[datetime, int]] = field(default_factory=dict, compare=False)
    incidents: list[Timeline] = field(default_factory=list)
    coverage: Coverage | None = None
    streams: list[StreamRow] | None = None  # the social panel (None: the store reads no stream)
    bursts: list[Burst] = field(default_factory=list)

    @property
    def irrelevant(self) -> int:
        return self.collected - self.relevant

    @property
    def title(self) -> str:
        return f"マイナ関連 日次レポート {self.day:%Y年%m月%d日}"


def build_daily_report(inputs: DayInputs, *, top: int = 10) -> DailyReport:
    day = inputs.day
    per_day = stories_per_day(inputs.per_day)
    stories = story_rows(inputs.items)
    sources = _source_rows(inputs)
    return DailyReport(
        day=day, collected=inputs.collected, relevant=inputs.relevant,
        services=_service_rows(inputs, per_day), causes=_causes(stories), sentiment=_sentiment(inputs),
        top_stories=[s for s in stories if s.cause != Cause.MAINTENANCE][:top],
        alerts=list(inputs.alerts), maintenance=list(inputs.windows),
        notices=[s for s in stories if s.cause == Cause.MAINTENANCE], trends=list(inputs.trends),
        sources=sources, sources_ok=len(inputs.sources) - len(sources),
        per_day=per_day, hourly=inputs.hourly, alert_days=sorted(set(inputs.alert_days)),
        incidents=list(inputs.incidents), coverage=inputs.coverage,
        streams=None if inputs.streams is None else stream_rows(inputs.streams),
        bursts=sorted(inputs.bursts, key=lambda b: (b.fired, b.service)),
    )


def stream_rows(counts: list[StreamCount]) -> list[StreamRow]:
    """The social panel: services by distinct authors, then posts, in the taxonomy's order."""
    order = list(Service)
    rows = [StreamRow(Service(c.service), c.posts, c.authors, c.reposts)
            for c in counts if c.service in SERVICE_CODES]
    return sorted(rows, key=lambda r: (-r.authors, -r.posts, order.index(r.service)))


def stories_per_day(counts: list[Count]) -> dict[date, dict[Service, int]]:
    out: dict[date, dict[Service, int]] = defaultdict(dict)
    for c in counts:
        if c.service in SERVICE_CODES:
            out[c.bucket][Service(c.service)] = c.stories
    return dict(out)


def _service_rows(inputs: DayInputs, per_day: dict[date, dict[Service, int]]) -> list[ServiceRow]:
    day = inputs.day
    today = {Service(c.service): c for c in inputs.per_day if c.bucket == day and c.service in SERVICE_CODES}
    causes: dict[Service, Counter] = defaultdict(Counter)
    for c in inputs.causes:
        if c.service in SERVICE_CODES:
            causes[Service(c.service)][cause_of(c.cause)] += c.stories
    social = {s.service: s for s in inputs.social}

    before = [day - timedelta(d) for d in range(1, 29)]
    missing = missing_days(inputs.coverage.gaps, before) if inputs.coverage else set()  # days with nothing collected

    def avg(service: Service, days: int) -> float:
        counted = [d for d in before[:days] if d not in missing]
        return round(sum(per_day.get(d, {}).get(service, 0) for d in counted) / len(counted), 2) if counted else 0.0

    rows = []
    for service in Service:
        t = today.get(service)
        top = causes[service].most_common(1)
        s = social.get(str(service))
        row = ServiceRow(service, t.stories if t else 0, t.items if t else 0, t.publishers if t else 0,
                         avg(service, 7), avg(service, 28), top[0][0] if top else None,
                         s.bookmarks if s else 0, s.posts if s else 0)
        if row.items or row.avg7 or row.avg28:
            rows.append(row)
    return sorted(rows, key=lambda r: (-r.stories, -r.avg7, list(Service).index(r.service)))


def story_rows(items: list[LabeledItem]) -> list[StoryRow]:
    """One row per story cluster: syndicated copies folded together, most widely carried first."""
    groups: dict[int, list[LabeledItem]] = defaultdict(list)
    for it in sorted(items, key=lambda it: (it.published, it.item_id)):
        groups[it.story_id].append(it)
    rows = []
    for members in groups.values():
        first = members[0]
        seen: dict[str, str] = {}
        for it in members:
            seen.setdefault(it.publisher, it.url)
        publishers = tuple(seen.items())
        rows.append(StoryRow(first.title, tuple(dict.fromkeys(s for it in members for s in it.label.services)),
                             Counter(it.label.cause for it in members).most_common(1)[0][0],
                             Counter(it.label.sentiment for it in members).most_common(1)[0][0],
                             len(members), publishers, first.url, first.published))
    rows.sort(key=lambda r: (-len(r.publishers), -r.items, r.first_seen))
    return rows


def _causes(stories: list[StoryRow]) -> list[tuple[Cause, int]]:
    counts = Counter(s.cause for s in stories)
    return sorted(counts.items(), key=lambda kv: (-kv[1], list(Cause).index(kv[0])))


def _sentiment(inputs: DayInputs) -> list[tuple[Sentiment, int, float, float]]:
    today, week = Counter(), Counter()
    for c in inputs.sentiment:
        (today if c.bucket == inputs.day else week)[sentiment_of(c.sentiment)] += c.items
    n, w = sum(today.values()), sum(week.values())
    return [(s, today[s], round(today[s] / n, 3) if n else 0.0, round(week[s] / w, 3) if w else 0.0)
            for s in Sentiment]


def _source_rows(inputs: DayInputs) -> list[SourceRow]:
    now = inputs.as_of
    rows = []
    for s in inputs.sources:
        if s.status.startswith(("error", "offline")):
            rows.append(SourceRow(s.name, "failing", s.status))
        elif now and (s.last_success_at is None or now - s.last_success_at > SILENT_AFTER):
            rows.append(SourceRow(s.name, "silent", "24時間以上取得できていません" if s.last_success_at else "まだ取得していません"))
        elif s.status.startswith("stale") or (now and s.last_new_item_at and now - s.last_new_item_at > STALE_AFTER):
            days = (now - s.last_new_item_at).days if now and s.last_new_item_at else None
            rows.append(SourceRow(s.name, "stale", f"{days}日間新しい記事がありません" if days is not None else s.status))
    return rows
