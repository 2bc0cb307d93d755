"""HTML bytes -> an article's title, publisher, publish time and main text. Pure (beautifulsoup4 + lxml).

The page is decoded by its own declared charset (``<meta charset>`` or ``http-equiv``), then the HTTP
header's, then the first of UTF-8 / Shift_JIS / EUC-JP that decodes cleanly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from bs4 import BeautifulSoup

from collector import charset
from store.clock import TOKYO

ARTICLE_TYPES = {"NewsArticle", "Article", "ReportageNewsArticle", "AnalysisNewsArticle", "BlogPosting",
                 "WebPage", "GovernmentService"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
_JA_DATE = re.compile(r"(\d{4})[年/.-](\d{1,2})[月/.-](\d{1,2})日?(?:\D{0,6}?(\d{1,2})[:時](\d{1,2})分?)?")
_UTC_NAMED = re.compile(r"\d\s*(?:UTC|GMT|Z)\s*$", re.IGNORECASE)  # 2024-10-01 01:00 UTC: not Japan time
_SPACE = re.compile(r"[ \t\u3000]+")
MAX_LD_NODES = 10_000  # JSON-LD objects looked at per page for the article's own
_DROP = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "iframe", "svg", "button")


@dataclass(frozen=True)
class ArticlePage:
    title: str | None
    publisher: str | None
    published: datetime | None  # aware, UTC
    text: str


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """The page as text: its byte order mark, its own ``<meta>`` charset, the HTTP header's, then the fallbacks
    (``collector.charset``)."""
    declared = _META_CHARSET.search(body[:4096])
    header = _HEADER_CHARSET.search(content_type or "")
    names = ([declared.group(1).decode("ascii")] if declared else []) + ([header.group(1)] if header else [])
    return charset.decode(body, names)


def soup_of(body: bytes, content_type: str | None = None) -> BeautifulSoup:
    return BeautifulSoup(decode_html(body, content_type), "lxml")


def extract_article(body: bytes, *, content_type: str | None = None) -> ArticlePage:
    """Title (og:title, JSON-LD headline, <title>), publisher (og:site_name, JSON-LD), publish time
    (article:published_time, JSON-LD datePublished, <time datetime>) and main text."""
    soup = soup_of(body, content_type)
    ld = _json_ld_article(soup)
    publisher = _meta(soup, "og:site_name") or _ld_name(ld.get("publisher"))
    title = _meta(soup, "og:title") or _text(ld.get("headline")) or _page_title(soup, publisher)
    published = (parse_time(_meta(soup, "article:published_time")) or parse_time(_text(ld.get("datePublished")))
                 or _time_element(soup))
    text = _text(ld.get("articleBody")) or main_text(soup)
    return ArticlePage(title, publisher, published, text)


def _meta(soup, name: str) -> str | None:
    tag = soup.find("meta", attrs={"property": name}) or soup.find("meta", attrs={"name": name})
    value = tag.get("content") if tag else None
    return value.strip() or None if isinstance(value, str) else None


def _json_ld_article(soup) -> dict:
    for script in soup.find_all("script", attrs={"type": "application/ld+json"}):
        try:
            data = json.loads(script.string or script.get_text() or "")
        except (ValueError, TypeError, RecursionError):  # not JSON, or nested past the parser's depth
            continue
        for node in _nodes(data):
            types = node.get("@type")
            types = types if isinstance(types, list) else [types]
            if any(isinstance(t, str) and t in ARTICLE_TYPES for t in types):
                return node
    return {}


def _nodes(data):
    """The objects of a JSON-LD document: itself, the items of a list, the members of ``@graph``, walked without
    recursion (a document may nest as deep as the JSON parser allows), at most MAX_LD_NODES of them."""
    stack, seen = [data], 0
    while stack and seen < MAX_LD_NODES:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            seen += 1
            yield node
            graph = node.get("@graph")
            if isinstance(graph, (list, dict)):
                stack.append(graph)


def _ld_name(value) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name")
    return _text(value)


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _page_title(soup, publisher: str | None) -> str | None:
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    if title and publisher:
        title = re.sub(rf"\s*[|｜\-–—:：]\s*{re.escape(publisher)}\s*$", "", title)
    return title or None


def _time_element(soup) -> datetime | None:
    scope = soup.find("article") or soup
    for tag in scope.find_all("time"):
        when = parse_time(tag.get("datetime") or tag.get_text(" ", strip=True))
        if when:
            return when
    return None


def parse_time(value: str | None) -> datetime | None:
    """ISO 8601 or a Japanese date (2024年10月2日 10時30分, 2024/10/02 10:30); without a zone, Japan time."""
    if not value:
        return None
    value = value.strip()[:200]
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        when = _rfc822(value)
    if when is None:
        m = _JA_DATE.search(value)
        if not m:
            return None
        try:
            when = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4] or 0), int(m[5] or 0),
                            tzinfo=timezone.utc if _UTC_NAMED.search(value) else None)
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=TOKYO)
    try:
        return when.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # 0001-01-01 in Tokyo, 9999-12-31T23:59:59-14:00: out of range
        return None


def _rfc822(value: str) -> datetime | None:
    """An e-mail style date (Tue, 01 Oct 2024 01:00:00 GMT), as pages also write them; None when it is not one."""
    if not value[:1].isalpha():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if str(when.year) in value else None  # it reads year 0001 as 2001, year 99 as 1999


def main_text(soup) -> str:
    """The text of the article body: <article> / articleBody / <main>, else the element richest in paragraphs."""
    for tag in soup.find_all(_DROP):
        tag.decompose()
    container = (soup.find(attrs={"itemprop": "articleBody"}) or soup.find("article") or soup.find("main")
                 or _richest(soup))
    if container is None:
        return ""
    paragraphs = [p.get_text(" ", strip=True) for p in container.find_all("p")]
    lines = [p for p in paragraphs if p] or [container.get_text("\n", strip=True)]
    return "\n".join(_SPACE.sub(" ", line) for line in lines).strip()


def _richest(soup):
    best, best_len = None, 0
    for p in soup.find_all("p"):
        parent = p.parent
        size = sum(len(q.get_text(strip=True)) for q in parent.find_all("p", recursive=False))
        if size > best_len:
            best, best_len = parent, size
    return best or soup.body
