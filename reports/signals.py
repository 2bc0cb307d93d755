"""Counting labeled items into signals. Pure. Syndicated copies count once: counts are distinct stories."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from zoneinfo import ZoneInfo

from store.records import TROUBLE_CAUSES, LabeledItem, Sentiment, Service

TOKYO = ZoneInfo("Asia/Tokyo")


def trouble_series(items: list[LabeledItem]) -> dict[str, dict[datetime, int]]:
    """Per service, hour (UTC) -> distinct stories of relevant items reporting trouble in that hour.

    Planned maintenance, items about no trouble at all and recovery reports (positive) are not
    counted: alerts are for incidents under way.
    """
    stories: dict[str, dict[datetime, set[int]]] = defaultdict(lambda: defaultdict(set))
    for it in items:
        if is_trouble_report(it):
            hour = it.published.replace(minute=0, second=0, microsecond=0)
            for service in it.label.services:
                stories[f"trouble:{service}"][hour].add(it.story_id)
    return {name: {h: len(s) for h, s in hours.items()} for name, hours in stories.items()}


def is_trouble_report(it: LabeledItem) -> bool:
    return it.label.relevant and it.label.cause in TROUBLE_CAUSES and it.label.sentiment != Sentiment.POSITIVE


def local_day(when: datetime) -> date:
    return when.astimezone(TOKYO).date()


def daily_stories(items: list[LabeledItem]) -> dict[date, dict[Service, int]]:
    """Per Tokyo day, per service: distinct stories among relevant items (every cause)."""
    stories: dict[date, dict[Service, set[int]]] = defaultdict(lambda: defaultdict(set))
    for it in items:
        if it.label.relevant:
            for service in it.label.services:
                stories[local_day(it.published)][service].add(it.story_id)
    return {d: {s: len(ids) for s, ids in per.items()} for d, per in stories.items()}
