"""Plain records shared by every stage: the label vocabulary and frozen dataclasses.

No SQLAlchemy here. The codes are a fixed contract (``shared/taxonomy.md``): never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Service(StrEnum):
    HEALTH_INSURANCE = "health_insurance"
    PORTAL = "portal"
    CARD = "card"
    CERTIFICATE = "certificate"
    CONVENIENCE_STORE = "convenience_store"
    PUBLIC_FUNDS_ACCOUNT = "public_funds_account"
    POINTS = "points"
    DRIVERS_LICENSE = "drivers_license"
    SMARTPHONE = "smartphone"
    GENERAL = "general"

    @property
    def display(self) -> str:
        return SERVICE_NAMES[self]


class Cause(StrEnum):
    LOAD = "load"
    DEFECT = "defect"
    DATA_ERROR = "data_error"
    HUMAN_ERROR = "human_error"
    NETWORK = "network"
    EXTERNAL = "external"
    ATTACK = "attack"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"
    NONE = "none"

    @property
    def display(self) -> str:
        return CAUSE_NAMES[self]


class Sentiment(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"

    @property
    def display(self) -> str:
        return SENTIMENT_NAMES[self]


SERVICE_NAMES = {
    Service.HEALTH_INSURANCE: "マイナ保険証",
    Service.PORTAL: "マイナポータル",
    Service.CARD: "マイナンバーカード",
    Service.CERTIFICATE: "電子証明書",
    Service.CONVENIENCE_STORE: "コンビニ交付",
    Service.PUBLIC_FUNDS_ACCOUNT: "公金受取口座",
    Service.POINTS: "マイナポイント",
    Service.DRIVERS_LICENSE: "マイナ免許証",
    Service.SMARTPHONE: "スマホ搭載",
    Service.GENERAL: "制度全般",
}
CAUSE_NAMES = {
    Cause.LOAD: "アクセス集中",
    Cause.DEFECT: "システム不具合",
    Cause.DATA_ERROR: "誤登録・紐付け誤り",
    Cause.HUMAN_ERROR: "人為ミス",
    Cause.NETWORK: "通信障害",
    Cause.EXTERNAL: "外部要因",
    Cause.ATTACK: "サイバー攻撃",
    Cause.MAINTENANCE: "メンテナンス",
    Cause.UNKNOWN: "原因不明",
    Cause.NONE: "該当なし",
}
SENTIMENT_NAMES = {
    Sentiment.NEGATIVE: "ネガティブ",
    Sentiment.NEUTRAL: "中立",
    Sentiment.POSITIVE: "ポジティブ",
}

# Causes that describe trouble (an incident), as opposed to planned work or no trouble at all.
TROUBLE_CAUSES = frozenset(Cause) - {Cause.NONE, Cause.MAINTENANCE}


@dataclass(frozen=True)
class Entry:
    """One item as parsed from a feed, before it is stored."""

    url: str
    title: str
    summary: str = ""
    guid: str | None = None
    published: datetime | None = None  # aware, UTC
    publisher: str | None = None
    publisher_url: str | None = None  # Google News <source url="...">: the outlet's own address
    date_note: str | None = None  # "missing", "clamped future date" ... when the feed's date was not used as is
    social_count: int | None = None  # はてなブックマーク bookmark count
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrendEntry:
    """One Google Trends "trending now" item: a search term with its approximate traffic."""

    term: str
    traffic: int | None
    traffic_raw: str
    published: datetime | None
    news: tuple[tuple[str, str, str], ...] = ()  # (title, url, source)


@dataclass(frozen=True)
class ItemText:
    """What the classifier sees of a stored item."""

    item_id: int
    title: str
    text: str


@dataclass(frozen=True)
class Label:
    """The classifier's (or a person's) answer for one item on the four taxonomy axes."""

    relevant: bool
    services: tuple[Service, ...]
    cause: Cause
    sentiment: Sentiment
    scores: dict = field(default_factory=dict, compare=False)

    def as_json(self) -> dict:
        return {
            "relevant": self.relevant,
            "services": [str(s) for s in self.services],
            "cause": str(self.cause),
            "sentiment": str(self.sentiment),
            "scores": self.scores,
        }


@dataclass(frozen=True)
class LabeledItem:
    """A stored item with its current label, as reports see it."""

    item_id: int
    story_id: int
    title: str
    url: str
    publisher: str
    published: datetime
    label: Label
