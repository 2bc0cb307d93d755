"""Plain records shared by every stage: the label vocabulary (codes, display names, the words that name
each service) and frozen dataclasses.

No SQLAlchemy here. The codes are a fixed contract (``shared/taxonomy.md``): never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Mapping


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


@dataclass(frozen=True)
class ServiceWords:
    """How texts name one service: the one vocabulary the gate, the rules and the maintenance parser read."""

    display: str  # its name in reports
    names: tuple[str, ...]  # words that name it on their own: the gate passes them, the rules fire on them,
    # and the maintenance parser attributes a notice to the service by them
    near: tuple[tuple[str, str], ...] = ()  # two words that name it when the second follows within NEAR characters
    hints: tuple[str, ...] = ()  # words that point to it once an item is about the systems: the rules only
    # (iPhone or 暗証番号 alone must not carry a bank's news past the gate)


NEAR = 12  # characters allowed between the two words of a ServiceWords.near pair

SERVICE_WORDS: Mapping[Service, ServiceWords] = MappingProxyType({
    Service.HEALTH_INSURANCE: ServiceWords(
        "マイナ保険証",
        names=("マイナ保険証", "オンライン資格確認", "資格確認", "資格確認書", "顔認証付きカードリーダー", "顔認証カードリーダー",
               "保険証", "健康保険証"),
        hints=("カードリーダー", "医療費情報", "薬剤情報", "電子処方箋")),
    Service.PORTAL: ServiceWords(
        "マイナポータル",
        names=("マイナポータル", "マイナポータルアプリ", "ぴったりサービス", "引越し手続オンライン")),
    Service.CARD: ServiceWords(
        "マイナンバーカード",
        names=("マイナンバーカード", "マイナカード", "個人番号カード", "カード管理システム", "交付窓口"),
        hints=("カードの交付", "カードの申請", "暗証番号", "再発行")),
    Service.CERTIFICATE: ServiceWords(
        "電子証明書",
        names=("電子証明書", "署名用電子証明書", "利用者証明用電子証明書", "署名用", "利用者証明用", "公的個人認証", "JPKI",
               "J-LIS", "地方公共団体情報システム機構")),
    Service.CONVENIENCE_STORE: ServiceWords(
        "コンビニ交付",
        names=("コンビニ交付", "証明書コンビニ交付"),
        near=(("住民票", "コンビニ"), ("コンビニ", "住民票"), ("コンビニ", "証明書"), ("コンビニ", "印鑑登録"),
              ("証明書", "交付")),
        hints=("住民票の写し", "印鑑登録証明書", "キオスク端末", "マルチコピー機")),
    Service.PUBLIC_FUNDS_ACCOUNT: ServiceWords("公金受取口座", names=("公金受取口座", "公金口座")),
    Service.POINTS: ServiceWords("マイナポイント", names=("マイナポイント",)),
    Service.DRIVERS_LICENSE: ServiceWords(
        "マイナ免許証",
        names=("マイナ免許証", "運転免許証との一体化", "免許証の一体化"),
        near=(("免許証", "一体化"),),
        hints=("運転免許証",)),
    Service.SMARTPHONE: ServiceWords(
        "スマホ搭載",
        names=("スマホ用電子証明書", "スマートフォン用電子証明書", "スマホ搭載"),
        near=tuple((device, "マイナンバーカード機能") for device in ("スマートフォン", "スマホ", "iPhone", "Android")),
        hints=("iPhone", "Android")),
    Service.GENERAL: ServiceWords(
        "制度全般",
        names=("マイナンバー制度", "マイナンバー", "個人番号", "情報連携", "デジタル庁"),
        hints=("総点検",)),
})
SERVICE_NAMES = {service: words.display for service, words in SERVICE_WORDS.items()}
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


# A store may hold codes this version does not know (written by another version, or by hand): read as these.
def services_of(codes) -> tuple[Service, ...]:
    """The taxonomy's services among ``codes``, in their order; codes it does not know are left out."""
    return tuple(Service(c) for c in codes if c in SERVICE_CODES)


def cause_of(code: str) -> Cause:
    """The cause of ``code``; UNKNOWN for a code the taxonomy does not have."""
    return Cause(code) if code in _CAUSE_CODES else Cause.UNKNOWN


def sentiment_of(code: str) -> Sentiment:
    """The sentiment of ``code``; NEUTRAL for a code the taxonomy does not have."""
    return Sentiment(code) if code in _SENTIMENT_CODES else Sentiment.NEUTRAL


SERVICE_CODES = frozenset(str(s) for s in Service)
_CAUSE_CODES = frozenset(str(c) for c in Cause)
_SENTIMENT_CODES = frozenset(str(s) for s in Sentiment)


class Signal(StrEnum):
    """What a source kind's rows feed: news counts (stories and relevant items, every kind but STREAM) and
    the signals beyond them."""

    STORIES = "stories"  # news items and their stories, nothing more
    TRENDS = "trends"  # search terms with their traffic (trend_points, not items)
    BOOKMARKS = "bookmarks"  # social: the bookmark counts of the pages it lists (はてなブックマーク)
    POSTS = "posts"  # social: each item is one post (Mastodon)
    STREAM = "stream"  # posts pushed by a stream, counted in short bins (store/stream_signals.py)


# Every source kind the sources table may hold, with the signal its rows feed: the store counts by this
# table, never by a kind's name. The collector's registry (collector/kinds.py, collector/streams) says how
# each kind is read; tests/test_kinds.py fails when the two disagree.
SOURCE_KINDS: Mapping[str, Signal] = MappingProxyType({
    "feed": Signal.STORIES,
    "google_news": Signal.STORIES,
    "google_trends": Signal.TRENDS,
    "yahoo": Signal.STORIES,
    "hatena": Signal.BOOKMARKS,
    "mastodon": Signal.POSTS,
    "page": Signal.STORIES,
    "jetstream": Signal.STREAM,
    "misskey": Signal.STREAM,
})


def kinds_feeding(*signals: Signal) -> tuple[str, ...]:
    """The source kinds whose rows feed any of ``signals``, in the table's order."""
    return tuple(kind for kind, signal in SOURCE_KINDS.items() if signal in signals)


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
