"""Source kinds: the one registry of how each kind of polled source is read, what it stores and which
publisher names it teaches. ``collector.jobs``, ``collector.ingest``, ``collector.publishers`` and
``collector.sources`` look a source's kind up here instead of testing its name.

Adding a kind: its reader (a module of its own when no reader here fits: bytes in, entries out, pure), one
``Kind`` entry in ``KINDS``, and the signal its rows feed in ``store.records.SOURCE_KINDS`` (the store
counts by that table, never by a kind's name); tests/test_kinds.py fails when the two disagree.
Stream kinds (jetstream, misskey) are pushed, not polled: ``collector.streams.ADAPTERS`` holds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from collector.page import parse_page
from collector.parse import FEED_ITEMS, ItemRules, parse_feed, parse_trends
from collector.policy import TextLimits
from store.records import SOURCE_KINDS, Signal


class Stores(StrEnum):
    """What a kind's reader gives, and so how it is stored (``collector.ingest.save_read``)."""

    ITEMS = "items"  # entries: items, their stories, publisher names, maintenance notices
    PAGE = "page"  # a watched page: its links as items, its notice blocks read for maintenance windows
    TRENDS = "trends"  # search terms with their traffic: trend points, not items


def read_feed(kind: Kind, body: bytes, *, url: str, content_type: str | None, selector: str | None,
              now: datetime, limits: TextLimits, skipped: list[str]):
    """RSS or Atom, each item read by the kind's rules; the body's hash tells whether it changed."""
    return (parse_feed(body, url=url, content_type=content_type, rules=kind.items, now=now, limits=limits,
                       skipped=skipped), hashlib.sha256(body).hexdigest())


def read_page(kind: Kind, body: bytes, *, url: str, content_type: str | None, selector: str | None,
              now: datetime, limits: TextLimits, skipped: list[str]):
    """An HTML page: only the region ``selector`` picks counts, so its hash tells whether it changed."""
    page = parse_page(body, url=url, content_type=content_type, selector=selector, now=now, limits=limits,
                      skipped=skipped)
    return page, page.region_hash


def read_trends(kind: Kind, body: bytes, *, url: str, content_type: str | None, selector: str | None,
                now: datetime, limits: TextLimits, skipped: list[str]):
    """Google Trends "trending now" RSS (its ht: elements read as XML)."""
    return parse_trends(body, url=url, now=now, limits=limits, skipped=skipped), hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Kind:
    name: str
    reader: Callable = read_feed  # read_feed, read_page, read_trends or a module's own (see ``read``)
    stores: Stores = Stores.ITEMS
    items: ItemRules = FEED_ITEMS  # how a feed's items are read
    own_address: bool = False  # the source's address is its outlet's own: a configured publisher names that host
    item_outlets: bool = False  # each item names its outlet and the outlet's address (<source url>): learned
    selector: bool = False  # the watched region is picked by the source's CSS selector

    def read(self, body: bytes, *, url: str, content_type: str | None, selector: str | None, now: datetime,
             limits: TextLimits, skipped: list[str]) -> tuple[object, str]:
        """(what the body gives: entries, a page or trend terms; the hash that says whether it changed)."""
        return self.reader(self, body, url=url, content_type=content_type, selector=selector, now=now,
                           limits=limits, skipped=skipped)

    @property
    def body_hash(self) -> bool:
        """Whether a body whose hash did not change is unchanged without reading it (not so for a page:
        only its region counts)."""
        return self.stores is not Stores.PAGE

    @property
    def signal(self) -> Signal:
        """What the kind's rows feed beyond the counts of relevant items: the store's table says."""
        return SOURCE_KINDS[self.name]


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("feed", own_address=True),  # RSS 0.9x/1.0/2.0, Atom
    Kind("google_news", items=ItemRules(outlet_summary=False), item_outlets=True),  # " - 媒体名" stripped
    Kind("google_trends", reader=read_trends, stores=Stores.TRENDS),
    Kind("yahoo"),  # the article's URL from <comments> (collector.parse reads it in any feed)
    Kind("hatena"),  # bookmark counts (hatena:bookmarkcount)
    Kind("mastodon", items=ItemRules(author_publisher=True)),  # posts without titles
    Kind("page", reader=read_page, stores=Stores.PAGE, own_address=True, selector=True),
)}


def kind_of(name: str) -> Kind:
    """The registry's entry for ``name``; KeyError names the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown source kind {name!r} (one of {', '.join(KINDS)})") from None
