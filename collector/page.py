"""Watched HTML pages (official notice and schedule pages without feeds) -> a region hash, entries and
notice blocks. Pure.

Only the region picked by the source's CSS ``selector`` (default: main / article / body) counts, so a
clock or a banner elsewhere on the page does not look like a change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin

from collector.article import parse_time, soup_of
from collector.errors import FeedMalformed
from collector.policy import TextLimits
from collector.sanitize import clean_block, clean_entry, clean_line
from store.records import Entry

BLOCKS = ("li", "tr", "p", "dd", "dt", "h1", "h2", "h3", "h4", "h5")
_DATE = re.compile(r"(?:\d{4}|令和\s*(?:\d{1,2}|元))\s*[年/.-]\s*\d{1,2}\s*[月/.-]\s*\d{1,2}日?")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class PageSnapshot:
    region_hash: str
    heading: str  # the page's <h1> (or <title>)
    entries: list[Entry]  # the links in the region, as items
    blocks: list[str]  # the region's text blocks, where notices are looked for


def parse_page(body: bytes, *, url: str, content_type: str | None = None, selector: str | None = None,
               now: datetime, limits: TextLimits = TextLimits(), skipped: list[str] | None = None) -> PageSnapshot:
    soup = soup_of(body, content_type)
    if soup.find(["rss", "feed", "rdf:rdf"]) is not None and soup.find("html") is None:
        raise FeedMalformed(url, "a feed, not an HTML page: use kind = \"feed\"")
    region = soup.select_one(selector) if selector else (soup.find("main") or soup.find("article") or soup.body)
    if region is None:
        raise FeedMalformed(url, f"no element matches the selector {selector!r}" if selector else "no <body>")
    text = _SPACE.sub(" ", region.get_text(" ", strip=True))
    h1 = soup.find("h1")
    heading = (h1.get_text(" ", strip=True) if h1 else None) or (soup.title.get_text(strip=True) if soup.title else "")
    blocks = [clean_block(_SPACE.sub(" ", b.get_text(" ", strip=True)), limits.summary)
              for b in region.find_all(BLOCKS)]
    return PageSnapshot(hashlib.sha256(text.encode("utf-8", "replace")).hexdigest(), clean_line(heading, limits.title),
                        _entries(region, url, now, limits, skipped),
                        [b for b in blocks if b] or [clean_block(text, limits.summary)])


def _entries(region, url: str, now: datetime, limits: TextLimits, skipped: list[str] | None) -> list[Entry]:
    out, seen = [], set()
    for a in region.find_all("a", href=True):
        try:
            entry = _entry(a, url, now, limits)
        except Exception as exc:  # a link boundary: one unreadable link never costs the page
            if skipped is not None:
                skipped.append(f"link {str(a.get('href'))[:120]!r}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if entry is None or entry.url in seen:
            continue
        seen.add(entry.url)
        out.append(entry)
    return out


def _entry(a, url: str, now: datetime, limits: TextLimits) -> Entry | None:
    title = _SPACE.sub(" ", a.get_text(" ", strip=True))
    href = a["href"] if isinstance(a["href"], str) else ""
    link = urljoin(url, href.strip())
    if len(title) < 6 or not link.startswith("http"):
        return None
    published = _nearby_date(a)
    note = None if published else "no date on the page: fetch time used"
    return clean_entry(Entry(url=link, title=title, published=published, date_note=note), limits, now=now)


def _nearby_date(a) -> datetime | None:
    """A date written in the link or in its list item / table row / paragraph (Japan time)."""
    for scope in (a, a.find_parent(["li", "tr", "dd", "p", "div"])):
        if scope is None:
            continue
        m = _DATE.search(scope.get_text(" ", strip=True))
        if m:
            return parse_time(_western(_SPACE.sub("", m.group(0))))
    return None


def _western(date_text: str) -> str:
    m = re.match(r"令和\s*(\d{1,2}|元)\s*[年/.-]?(.*)", date_text)
    if not m:
        return date_text
    year = 2018 + (1 if m.group(1) == "元" else int(m.group(1)))
    return f"{year}年{m.group(2)}"
