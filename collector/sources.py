"""Source definitions as the collector sees them (built from settings by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("feed", "google_news", "google_trends", "yahoo", "hatena", "mastodon")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str
    kind: str = "feed"
    publisher: str | None = None  # None: taken from each item (Google News <source>, Mastodon account, host)
    interval_minutes: int = 60

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"source {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")
