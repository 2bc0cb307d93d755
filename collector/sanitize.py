"""One item's fields made safe to keep. Pure.

A bad field costs that field, never the item's neighbours: text loses its control characters, NUL and
bidi overrides (``store.clean``) and is cut to the ``TextLimits``; names stay on one line; a date outside
1990 .. 9998 is unknown; a count too large for the store is unknown. Only an item whose link cannot be
read at all is dropped (``ItemUnreadable``): its identity is its link.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit

from collector.policy import TextLimits
from store.clean import clean_text, one_line
from store.records import Entry, TrendEntry

EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)  # before any web feed: a date earlier is a wrong one
LATEST = datetime(9998, 1, 1, tzinfo=timezone.utc)  # later dates cannot be shifted or shown safely
MAX_URL = 4096  # characters in a link or GUID
MAX_NAME = 200  # characters in a publisher name or a category (the store's column holds 200)
MAX_NOTE = 100  # characters in a date note (the store's column holds 100)
MAX_TRAFFIC = 40  # characters of Google Trends traffic as written (the store's column holds 40)
MAX_CATEGORIES = 50
MAX_NEWS = 20  # news items kept per Google Trends term
MAX_COUNT = 10**12  # bookmark counts and search traffic above this are not believed (nor storable)
_URL_DROP = str.maketrans("", "", "\t\n\r")
_SPACE = re.compile(r"\s")


class ItemUnreadable(ValueError):
    """An item that cannot be kept (no readable link); the items beside it are."""


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (never in the middle of a surrogate pair: there are none left)."""
    return text if len(text) <= limit else text[:limit].rstrip()


def clean_line(text: str | None, limit: int) -> str:
    """One line of clean text, at most ``limit`` characters (titles, names)."""
    if not text:
        return ""
    return cap(one_line(text[: limit * 4 + 64]).strip(), limit)


def clean_block(text: str | None, limit: int) -> str:
    """Clean text with its line breaks, at most ``limit`` characters (summaries, article text)."""
    if not text:
        return ""
    return cap(clean_text(text[: limit * 4 + 64]).strip(), limit)


def link(raw: str | None) -> str | None:
    """A link as a browser would read it (tabs and line breaks dropped, other spaces encoded, controls removed),
    or None when it is empty, longer than ``MAX_URL`` or not parseable (a broken IPv6 host, a bad port)."""
    if not raw or len(raw) > MAX_URL * 2:
        return None
    url = _SPACE.sub(lambda m: quote(m.group(0)), one_line(raw.translate(_URL_DROP)).strip())
    if not url or len(url) > MAX_URL:
        return None
    try:
        urlsplit(url).port  # noqa: B018 (raises ValueError on an unreadable host or port)
    except ValueError:
        return None
    return url


def count(value) -> int | None:
    """A non-negative count that fits the store, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if not (text.isascii() and text.isdigit()) or len(text) > 13:
            return None
        value = int(text)
    if not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        return None
    return value


def in_range(when: datetime | None, *, now: datetime) -> tuple[datetime | None, str | None]:
    """(date, note) for a feed's date: None with a note when it is outside what a feed can mean."""
    if when is None:
        return None, None
    try:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        when = when.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None, "date out of range: fetch time used"
    if not EARLIEST <= when < LATEST:
        return None, f"date {when.date().isoformat()} out of range: fetch time used"
    return when, None


def clean_entry(entry: Entry, limits: TextLimits, *, now: datetime) -> Entry:
    """``entry`` with every field safe to store (see the module's docstring); ItemUnreadable without a link."""
    url = link(entry.url)
    if url is None:
        raise ItemUnreadable(f"unreadable link {one_line(str(entry.url))[:120]!r}")
    published, note = in_range(entry.published, now=now)
    guid = one_line(entry.guid).strip() if entry.guid else None
    return replace(
        entry, url=url, title=clean_line(entry.title, limits.title),
        summary=clean_block(entry.summary, limits.summary),
        guid=guid if guid and len(guid) <= MAX_URL else None,
        published=published, date_note=clean_line(note or entry.date_note, MAX_NOTE) or None,
        publisher=clean_line(entry.publisher, MAX_NAME) or None, publisher_url=link(entry.publisher_url),
        social_count=count(entry.social_count),
        categories=tuple(c for c in (clean_line(c, MAX_NAME) for c in entry.categories[:MAX_CATEGORIES]) if c),
    )


def clean_trend(trend: TrendEntry, limits: TextLimits, *, now: datetime) -> TrendEntry:
    published, _note = in_range(trend.published, now=now)
    if published is not None and published > now + timedelta(minutes=15):
        published = now
    news = tuple((clean_line(title, limits.title), link(url) or "", clean_line(source, MAX_NAME))
                 for title, url, source in trend.news[:MAX_NEWS])
    return replace(trend, term=clean_line(trend.term, limits.title), traffic=count(trend.traffic),
                   traffic_raw=clean_line(trend.traffic_raw, MAX_TRAFFIC), published=published, news=news)
