"""Feed bytes -> entries. Pure: no network, no store, time is a parameter."""

from __future__ import annotations

import calendar
import html
import io
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import feedparser
from lxml import etree

from collector.article import parse_time
from collector.errors import FeedMalformed
from collector.xmlfeed import read_entries
from store.records import Entry, TrendEntry

FUTURE_TOLERANCE = timedelta(minutes=15)
_TAG = re.compile(r"<[^>]+>")
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def parse_feed(body: bytes, *, url: str, content_type: str | None = None, kind: str = "feed",
               now: datetime) -> list[Entry]:
    """Parse an RSS 0.9x/1.0/2.0 or Atom body (bytes, so the declared charset is honoured)."""
    if _truncated(body):
        raise FeedMalformed(url, "truncated: the document ends before its closing tag")
    body = to_utf8(body, content_type)
    fast = read_entries(body, base=url)  # well-formed RSS/RDF/Atom; None: feedparser reads it
    if fast is not None:
        return [entry for e in fast if (entry := _entry(e, kind=kind, now=now)) is not None]
    return _with_feedparser(body, url=url, kind=kind, now=now)


def _with_feedparser(body: bytes, *, url: str, kind: str, now: datetime) -> list[Entry]:
    headers = {"content-location": url, "content-type": "application/xml; charset=utf-8"}
    # we keep plain text only (plain_text below), so feedparser's HTML sanitizer and URI rewriting are skipped
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False,
                              resolve_relative_uris=False)
    if not parsed.version and not parsed.entries:
        reason = str(parsed.get("bozo_exception") or "no feed elements found")
        if body.lstrip()[:200].lower().find(b"<html") >= 0:
            reason = "an HTML page, not a feed"
        raise FeedMalformed(url, reason)
    if parsed.bozo and not parsed.entries:
        raise FeedMalformed(url, f"unreadable feed: {parsed.bozo_exception}")
    return [entry for e in parsed.entries if (entry := _entry(e, kind=kind, now=now)) is not None]


_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
_ALIASES = {"shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "windows-31j": "cp932",
            "euc-jp": "euc_jis_2004", "x-euc-jp": "euc_jis_2004"}
_FALLBACKS = ("utf-8", "cp932", "euc_jis_2004")
_ROOT_END = re.compile(rb"</(?:[A-Za-z0-9_]+:)?(?:rss|RDF|feed)\s*>\s*$")


def _truncated(body: bytes) -> bool:
    head = body.lstrip()[:512].lower()
    is_xml_feed = head.startswith(b"<?xml") or head.startswith(b"<rss") or head.startswith(b"<rdf") or head.startswith(b"<feed")
    return is_xml_feed and b"<html" not in head and not _ROOT_END.search(body[-200:])


def to_utf8(body: bytes, content_type: str | None) -> bytes:
    """Decode by the declared charset (XML declaration, else HTTP header); when the declaration is wrong,
    by the first Japanese encoding that decodes the body cleanly. Returns UTF-8 with the declaration fixed."""
    declared = _DECLARED.match(body)
    header = _CHARSET.search(content_type or "")
    names = [m.group(1).decode() if isinstance(m.group(1), bytes) else m.group(1) for m in (declared, header) if m]
    for name in [*names, *_FALLBACKS]:
        codec = _ALIASES.get(name.lower(), name)
        try:
            text = body.decode(codec)
        except (LookupError, UnicodeDecodeError):
            continue
        break
    else:
        text = body.decode("utf-8", errors="replace")
    text = text.removeprefix("\ufeff")
    if declared:
        text = re.sub(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*["'])[A-Za-z0-9._-]+""", r"\g<1>utf-8", text, count=1)
    return text.encode("utf-8")


def _entry(e, *, kind: str, now: datetime) -> Entry | None:
    link = e.get("link") or ""
    comments = e.get("comments") or ""
    if comments.endswith("/comments") and "news.yahoo.co.jp/articles/" in comments:
        link = comments.removesuffix("/comments")  # Yahoo!ニュース: the article, not the pickup page
    guid = e.get("id") or None
    url = link or guid
    if not url:
        return None
    summary = plain_text(e.get("summary") or "")
    title = plain_text(e.get("title") or "")
    publisher = publisher_url = None
    source = e.get("source") or {}
    if source.get("title"):  # Google News: "見出し - 媒体名" with <source url="https://媒体">媒体名</source>
        publisher, publisher_url = source["title"].strip(), source.get("href") or None
        suffix = f" - {publisher}"
        if title.endswith(suffix):
            title = title[: -len(suffix)].rstrip()
        if kind == "google_news":
            summary = ""  # the description only repeats the title and the publisher
    if not title:  # Mastodon posts have no title: the start of the post stands in
        title = summary[:80]
    if not title:
        return None
    if kind == "mastodon" and publisher is None:
        publisher = mastodon_account(url)
    published, note = entry_date(e, now=now)
    count = e.get("hatena_bookmarkcount")
    return Entry(
        url=url, title=title, summary=summary, guid=guid, published=published, publisher=publisher,
        publisher_url=publisher_url, date_note=note,
        social_count=int(count) if count and str(count).strip().isdigit() else None,
        categories=tuple(t.get("term", "") for t in e.get("tags", []) if t.get("term")),
    )


def entry_date(e, *, now: datetime) -> tuple[datetime | None, str | None]:
    """published, else updated (RSS 1.0 dc:date arrives as updated), else None; future dates are clamped."""
    for key in ("published", "updated", "created"):
        when = _date_of(e.get(key), e.get(f"{key}_parsed"))
        if when is None:
            continue
        if when > now + FUTURE_TOLERANCE:
            return now, f"future date {when.isoformat()} clamped to fetch time"
        return when, None
    return None, "no date in feed: fetch time used"


_NAMED_ZONE = re.compile(r"\s(JST|KST)\s*$")


def _date_of(raw, parsed) -> datetime | None:
    """A feed date: RFC 822 with any offset or zone name feedparser does not know (JST), ISO 8601, or a
    Japanese date such as 2024年10月2日 10:30 (Japan time)."""
    if isinstance(raw, str) and _NAMED_ZONE.search(raw):
        try:
            return parsedate_to_datetime(_NAMED_ZONE.sub(" +0900", raw)).astimezone(timezone.utc)
        except (TypeError, ValueError, IndexError):
            pass
    if isinstance(raw, str) and "年" in raw:  # feedparser misreads 2024年10月2日 (as 2024-11-01, say)
        return parse_time(raw)
    if parsed:
        return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
    return parse_time(raw) if isinstance(raw, str) else None


def plain_text(markup: str) -> str:
    """Text of an HTML fragment: scripts and styles dropped, tags removed, entities decoded, spaces folded."""
    if "<" in markup:
        markup = _TAG.sub(" ", _SCRIPT.sub(" ", markup))
    return _SPACE.sub(" ", html.unescape(markup)).strip()


def mastodon_account(status_url: str) -> str:
    parts = urlsplit(status_url)
    handle = next((p for p in parts.path.split("/") if p.startswith("@")), "")
    return f"{handle}@{parts.hostname}" if handle else (parts.hostname or status_url)


def parse_trends(body: bytes, *, url: str, now: datetime) -> list[TrendEntry]:
    """Google Trends "trending now" RSS. Parsed as XML: feedparser flattens repeated ht:news_item."""
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise FeedMalformed(url, f"not well-formed XML: {exc}") from exc
    items = [el for el in root.iter() if _local(el) == "item"]
    if _local(root) != "rss" or not items and not any(_local(el) == "channel" for el in root):
        raise FeedMalformed(url, "not a Google Trends RSS feed")
    out = []
    for item in items:
        fields = {_local(child): child for child in item}
        term = _text(fields.get("title"))
        if not term:
            continue
        raw = _text(fields.get("approx_traffic"))
        published = None
        if fields.get("pubDate") is not None:
            try:
                published = parsedate_to_datetime(_text(fields["pubDate"])).astimezone(timezone.utc)
            except (TypeError, ValueError):
                published = None
        if published is not None and published > now + FUTURE_TOLERANCE:
            published = now
        news = tuple(
            (_child_text(n, "news_item_title"), _child_text(n, "news_item_url"), _child_text(n, "news_item_source"))
            for n in item if _local(n) == "news_item"
        )
        out.append(TrendEntry(term=term, traffic=parse_traffic(raw), traffic_raw=raw, published=published, news=news))
    return out


def parse_traffic(raw: str) -> int | None:
    """'20000+' -> 20000, '200,000+' -> 200000, '20K+' -> 20000, '2M+' -> 2000000."""
    m = re.fullmatch(r"\s*([\d,.]+)\s*([KkMm万]?)\+?\s*", raw or "")
    if not m:
        return None
    number = float(m.group(1).replace(",", ""))
    scale = {"k": 1_000, "m": 1_000_000, "万": 10_000}.get(m.group(2).lower(), 1)
    return int(number * scale)


def _local(el) -> str:
    tag = el.tag if isinstance(el.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _text(el) -> str:
    return (el.text or "").strip() if el is not None else ""


def _child_text(el, name: str) -> str:
    return next((_text(c) for c in el if _local(c) == name), "")
