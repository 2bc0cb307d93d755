"""One name per outlet: publisher names learned from the feeds, given to items that have none of their own.

Google News names each entry's outlet (``<source url="https://www.47news.jp">47NEWS</source>``) and a
configured outlet feed names its publisher and is served from the outlet's host. An item without a publisher
(a はてなブックマーク link, say) is otherwise stored under its host name, so one outlet would be counted
under two names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from collector.kinds import kind_of
from collector.sources import SourceConfig
from store.items import NewItem
from store.publishers import host_key, publisher_names, record_publisher
from store.records import Entry


def taught_names(source: SourceConfig, entries: list[Entry]) -> dict[str, tuple[str, str]]:
    """host -> (publisher, learned_from) that a source and its entries teach (by the kind's rules: an
    aggregator's own address names no outlet)."""
    taught: dict[str, tuple[str, str]] = {}
    kind = kind_of(source.kind)
    if kind.item_outlets:
        for e in entries:
            if e.publisher and (host := outlet_host(e.publisher_url)):
                taught.setdefault(host, (e.publisher, kind.name))
    if kind.own_address and source.publisher and (host := outlet_host(source.url)):
        taught[host] = (source.publisher, "source")
    return taught


def learn_names(session: Session, source: SourceConfig, entries: list[Entry], *, now: datetime) -> int:
    """Record the names this batch teaches for hosts not named yet. Returns how many hosts were new."""
    taught = taught_names(source, entries)
    if not taught:
        return 0
    known = publisher_names(session, list(taught))
    return sum(record_publisher(session, host, name, learned_from=how, now=now)
               for host, (name, how) in taught.items() if host not in known)


def name_items(session: Session, source: SourceConfig, items: list[NewItem]) -> list[NewItem]:
    """Items stored under their host name (no publisher of their own) take the host's learned name."""
    if source.publisher or all(p.entry.publisher for p in items):
        return items
    names = publisher_names(session, [_bare_host(p) for p in items if not p.entry.publisher])
    return [replace(p, publisher=names[key]) if not p.entry.publisher and (key := host_key(_bare_host(p))) in names
            else p for p in items]


def outlet_host(url: str | None) -> str:
    """The host key of a URL when it can name an outlet: not an IP address or a single label (localhost)."""
    host = host_key(urlsplit(url or "").hostname)
    if "." not in host:
        return ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return ""


def _bare_host(item: NewItem) -> str:
    return urlsplit(item.canonical_url).hostname or ""
