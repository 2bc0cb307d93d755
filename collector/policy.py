"""How the collector treats sources over time: backoff, offline detection, staleness, article pages; and how
much text of one item it keeps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextLimits:
    """How much of one item's text is kept, in characters; longer text is cut at ingest."""

    title: int = 300
    summary: int = 5_000
    body: int = 100_000  # an article page's main text


@dataclass(frozen=True)
class CollectPolicy:
    backoff_minutes: float = 15.0  # a source waits this long per point of failure score before its next try
    max_backoff_hours: float = 24.0  # ... but never longer than this: no source is disabled for good
    offline_fraction: float = 0.8  # this share of hosts failing without an answer means the machine is offline
    offline_min_hosts: int = 3  # ... when at least this many hosts were tried
    stale_factor: float = 4.0  # stale: no new item for this many times the usual gap between items
    stale_min_hours: float = 48.0  # ... and for at least this long
    story_hours: float = 72.0  # items this close in time may join one story
    story_similarity: float = 0.6  # how alike two titles must be (character bigrams) to be one story
    article_pages: bool = True  # fetch the page of each relevant item for its text, date and publisher
    articles_per_round: int = 30  # at most this many pages per round
    article_max_age_hours: float = 72.0  # only for items published this recently
    max_title_chars: int = TextLimits.title  # an item's title is cut to this many characters at ingest
    max_summary_chars: int = TextLimits.summary  # ... its summary (the feed's description)
    max_article_chars: int = TextLimits.body  # ... and the main text of its article page

    def __post_init__(self):
        if not 0 < self.offline_fraction <= 1:
            raise ValueError("offline_fraction must be in (0, 1]")
        if not 0 < self.story_similarity <= 1:
            raise ValueError("story_similarity must be in (0, 1]")
        if min(self.backoff_minutes, self.max_backoff_hours, self.stale_factor, self.story_hours) < 0:
            raise ValueError("durations and factors must not be negative")
        for name in ("max_title_chars", "max_summary_chars", "max_article_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
                raise ValueError(f"{name} must be a whole number of characters from 1 to 10000000 (got {value!r})")

    @property
    def text_limits(self) -> TextLimits:
        return TextLimits(self.max_title_chars, self.max_summary_chars, self.max_article_chars)
