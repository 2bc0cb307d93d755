"""Feed bytes -> entries. Pure: no network, no store, time is a parameter.

One bad item never costs the feed: an item that cannot be read is skipped (its reason appended to
``skipped`` when the caller passes a list) and the items beside it are returned; a bad field costs only
that field (``collector.sanitize``)."""

from __future__ import annotations

import calendar
import html
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import feedparser
from lxml import etree

from collector import charset
from collector.article import parse_time
from collector.errors import FeedMalformed
from collector.policy import TextLimits
from collector.sanitize import clean_entry, clean_trend, count, in_range
from collector.xmlfeed import read_entries
from store.records import Entry, TrendEntry

FUTURE_TOLERANCE = timedelta(minutes=15)
_TAG = re.compile(r"<[^<>]+>")  # [^<>]: an unclosed "<" costs one scan to the next "<", not to the end
_BLOCK_OPEN = re.compile(r"<(script|style)\b[^<>]*>", re.IGNORECASE)
_BLOCK_CLOSE = {"script": re.compile(r"</script\s*>", re.IGNORECASE), "style": re.compile(r"</style\s*>", re.IGNORECASE)}
_SPACE = re.compile(r"\s+")
MARKUP_FACTOR = 4  # markup longer than this many times the text limit is cut before its tags are removed


@dataclass(frozen=True)
class ItemRules:
    """What a kind's items mean beyond the feed format (each kind's rules: ``collector.kinds``)."""

    outlet_summary: bool = True  # False: an item naming its outlet (<source>) has a summary that only repeats
    # its title and outlet, and is dropped (Google News)
    author_publisher: bool = False  # an item without a publisher is published by the account in its address
    # (Mastodon: https://host/@name/1 -> @name@host)


FEED_ITEMS = ItemRules()


def parse_feed(body: bytes, *, url: str, content_type: str | None = None, rules: ItemRules = FEED_ITEMS,
               now: datetime, limits: TextLimits = TextLimits(), skipped: list[str] | None = None) -> list[Entry]:
    """Parse an RSS 0.9x/1.0/2.0 or Atom body (bytes, so the declared charset is honoured), its items read by
    ``rules``. Raises FeedMalformed when the body is not a feed at all; an unreadable item is skipped (see the
    module)."""
    if not body.strip():
        raise FeedMalformed(url, "empty body: no feed")
    if _truncated(body):
        raise FeedMalformed(url, "truncated: the document ends before its closing tag")
    body = to_utf8(body, content_type)
    readers = read_entries(body, base=url)  # well-formed RSS/RDF/Atom; None: feedparser reads it
    if readers is not None:
        return _entries(readers, rules=rules, now=now, limits=limits, skipped=skipped)
    return _with_feedparser(body, url=url, rules=rules, now=now, limits=limits, skipped=skipped)


def _with_feedparser(body: bytes, *, url: str, rules: ItemRules, now: datetime, limits: TextLimits = TextLimits(),
                     skipped: list[str] | None = None) -> list[Entry]:
    headers = {"content-location": url, "content-type": "application/xml; charset=utf-8"}
    # we keep plain text only (plain_text below), so feedparser's HTML sanitizer and URI rewriting are skipped
    try:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False,
                                  resolve_relative_uris=False)
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError, OverflowError) as exc:
        raise FeedMalformed(url, f"unreadable feed ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not parsed.get("version") and not parsed.get("entries"):
        reason = str(parsed.get("bozo_exception") or "no feed elements found")
        if body.lstrip()[:200].lower().find(b"<html") >= 0:
            reason = "an HTML page, not a feed"
        raise FeedMalformed(url, reason)
    if parsed.get("bozo") and not parsed.get("entries"):
        raise FeedMalformed(url, f"unreadable feed: {parsed.get('bozo_exception')}")
    return _entries([lambda e=e: e for e in parsed.entries], rules=rules, now=now, limits=limits, skipped=skipped)


def _entries(readers, *, rules: ItemRules, now: datetime, limits: TextLimits, skipped: list[str] | None) -> list[Entry]:
    """Each item on its own: one that cannot be read is skipped with its reason, the others are kept."""
    out = []
    for n, read in enumerate(readers, 1):
        try:
            entry = _entry(read(), rules=rules, now=now, limits=limits)
        except Exception as exc:  # an item boundary: whatever one item does, the others are read
            if skipped is not None:
                skipped.append(f"item {n}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if entry is not None:
            out.append(entry)
    return out


_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DECLARATION = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*["'])[A-Za-z0-9._-]+""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
_ROOT_END = re.compile(rb"</(?:[A-Za-z0-9_]+:)?(?:rss|RDF|feed)\s*>\s*$")


def _truncated(body: bytes) -> bool:
    head = body.lstrip()[:512].lower()
    is_xml_feed = head.startswith(b"<?xml") or head.startswith(b"<rss") or head.startswith(b"<rdf") or head.startswith(b"<feed")
    return is_xml_feed and b"<html" not in head and not _ROOT_END.search(body[-200:])


def to_utf8(body: bytes, content_type: str | None) -> bytes:
    """Decode by the byte order mark, else the declared charset (XML declaration, else HTTP header); when the
    declaration is wrong, by the first Japanese encoding that decodes the body cleanly (``collector.charset``).
    Returns UTF-8 with the declaration fixed."""
    declared = _DECLARED.match(body)
    header = _CHARSET.search(content_type or "")
    names = ([declared.group(1).decode()] if declared else []) + ([header.group(1)] if header else [])
    text = charset.decode(body, names)
    text = _DECLARATION.sub(r"\g<1>utf-8", _xml_chars(text), count=1)
    return text.encode("utf-8")


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CHAR_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")


def _xml_chars(text: str) -> str:
    """Characters XML 1.0 forbids (NUL, ESC and the other C0 controls, surrogates), raw or as character
    references, removed or made U+FFFD: one such character would otherwise make the whole document
    unreadable, or crash the parser that tolerates it."""
    if _NOT_XML.search(text):
        text = _NOT_XML.sub("", text)
    if "&#" in text:
        text = _CHAR_REF.sub(_char_ref, text)
    return text


def _char_ref(m) -> str:
    code = int(m.group(1), 16) if m.group(1) else int(m.group(2))
    if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF:
        return m.group(0)
    return "" if code < 0x20 else "&#xFFFD;"


def _entry(e, *, rules: ItemRules, now: datetime, limits: TextLimits = TextLimits()) -> Entry | None:
    """One feed item as an Entry (None when it has no link at all); ItemUnreadable when its link is broken."""
    link = _field(e, "link")
    comments = _field(e, "comments")
    if comments.endswith("/comments") and "news.yahoo.co.jp/articles/" in comments:
        link = comments.removesuffix("/comments")  # Yahoo!ニュース: the article, not the pickup page
    guid = _field(e, "id") or None
    url = link or guid
    if not url:
        return None
    summary = plain_text(_field(e, "summary")[: limits.summary * MARKUP_FACTOR + 4096])
    title = plain_text(_field(e, "title")[: limits.title * MARKUP_FACTOR + 4096])
    publisher = publisher_url = None
    source = e.get("source") or {}
    source_title = source.get("title") if isinstance(source, dict) else None
    if isinstance(source_title, str) and source_title.strip():
        # Google News: "見出し - 媒体名" with <source url="https://媒体">媒体名</source>
        publisher, publisher_url = source_title.strip(), source.get("href") or None
        suffix = f" - {publisher}"
        if title.endswith(suffix):
            title = title[: -len(suffix)].rstrip()
        if not rules.outlet_summary:
            summary = ""  # the description only repeats the title and the publisher
    if not title:  # Mastodon posts have no title: the start of the post stands in
        title = summary[:80]
    if rules.author_publisher and publisher is None:
        publisher = mastodon_account(url)
    published, note = entry_date(e, now=now)
    tags = e.get("tags") or []
    return clean_entry(Entry(
        url=url, title=title, summary=summary, guid=guid, published=published, publisher=publisher,
        publisher_url=publisher_url if isinstance(publisher_url, str) else None, date_note=note,
        social_count=count(e.get("hatena_bookmarkcount")),
        categories=tuple(t.get("term") for t in tags[:100] if isinstance(t, dict) and isinstance(t.get("term"), str)
                         and t.get("term")),
    ), limits, now=now)


def _field(e, key: str) -> str:
    value = e.get(key)
    return value if isinstance(value, str) else ""


def entry_date(e, *, now: datetime) -> tuple[datetime | None, str | None]:
    """published, else updated (RSS 1.0 dc:date arrives as updated), else None; future dates are clamped,
    dates out of range (year 0001, 9999-12-31T23:59:59-14:00) are unknown."""
    unusable = None
    for key in ("published", "updated", "created"):
        try:
            when = _date_of(e.get(key), e.get(f"{key}_parsed"))
        except (ValueError, OverflowError, OSError, TypeError):
            when = None
            unusable = unusable or f"date {str(e.get(key))[:40]!r} out of range or unreadable: fetch time used"
        when, out_of_range = in_range(when, now=now)
        if out_of_range:
            unusable = unusable or out_of_range
        if when is None:
            continue
        if when > now + FUTURE_TOLERANCE:
            return now, f"future date {when.isoformat()} clamped to fetch time"
        return when, None
    return None, unusable or "no date in feed: fetch time used"


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
    """Text of an HTML fragment: scripts and styles dropped, tags removed, entities decoded, spaces folded.
    Linear in the length of the markup, whatever it holds."""
    if "<" in markup:
        markup = _TAG.sub(" ", _drop_blocks(markup))
    return _SPACE.sub(" ", html.unescape(markup)).strip()


def _drop_blocks(markup: str) -> str:
    """``markup`` without <script> and <style> elements; an unclosed one runs to the end, as in a browser."""
    out, pos = [], 0
    while (opened := _BLOCK_OPEN.search(markup, pos)) is not None:
        out.append(markup[pos:opened.start()])
        closed = _BLOCK_CLOSE[opened.group(1).lower()].search(markup, opened.end())
        if closed is None:
            return "".join(out)
        out.append(" ")
        pos = closed.end()
    out.append(markup[pos:])
    return "".join(out)


def mastodon_account(status_url: str) -> str:
    try:
        parts = urlsplit(status_url)
    except ValueError:
        return ""
    handle = next((p for p in parts.path.split("/") if p.startswith("@")), "")
    return f"{handle}@{parts.hostname}" if handle else (parts.hostname or status_url)


def parse_trends(body: bytes, *, url: str, now: datetime, limits: TextLimits = TextLimits(),
                 skipped: list[str] | None = None) -> list[TrendEntry]:
    """Google Trends "trending now" RSS. Parsed as XML: feedparser flattens repeated ht:news_item."""
    if not body.strip():
        raise FeedMalformed(url, "empty body: no feed")
    try:
        root = etree.fromstring(to_utf8(body, None), parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise FeedMalformed(url, f"not well-formed XML: {exc}") from exc
    items = [el for el in root.iter() if _local(el) == "item"]
    if _local(root) != "rss" or not items and not any(_local(el) == "channel" for el in root):
        raise FeedMalformed(url, "not a Google Trends RSS feed")
    out = []
    for n, item in enumerate(items, 1):
        try:
            trend = _trend(item, now=now)
            if trend is not None:
                out.append(clean_trend(trend, limits, now=now))
        except Exception as exc:  # an item boundary, as in parse_feed
            if skipped is not None:
                skipped.append(f"item {n}: {type(exc).__name__}: {str(exc)[:200]}")
    return out


def _trend(item, *, now: datetime) -> TrendEntry | None:
    fields = {_local(child): child for child in item}
    term = _text(fields.get("title"))
    if not term:
        return None
    raw = _text(fields.get("approx_traffic"))
    published = None
    if fields.get("pubDate") is not None:
        try:
            published = parsedate_to_datetime(_text(fields["pubDate"])).astimezone(timezone.utc)
        except (TypeError, ValueError, IndexError, OverflowError):
            published = None
    if published is not None and published > now + FUTURE_TOLERANCE:
        published = now
    news = tuple(
        (_child_text(n, "news_item_title"), _child_text(n, "news_item_url"), _child_text(n, "news_item_source"))
        for n in item if _local(n) == "news_item"
    )
    return TrendEntry(term=term, traffic=parse_traffic(raw), traffic_raw=raw, published=published, news=news)


def parse_traffic(raw: str) -> int | None:
    """'20000+' -> 20000, '200,000+' -> 200000, '20K+' -> 20000, '2M+' -> 2000000; None when unreadable."""
    m = re.fullmatch(r"\s*(\d[\d,]{0,15}(?:\.\d{1,6})?)\s*([KkMm万]?)\+?\s*", (raw or "")[:64])
    if not m:
        return None
    number = float(m.group(1).replace(",", ""))
    scale = {"k": 1_000, "m": 1_000_000, "万": 10_000}.get(m.group(2).lower(), 1)
    return count(int(number * scale))


def _local(el) -> str:
    tag = el.tag if isinstance(el.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _text(el) -> str:
    return (el.text or "").strip() if el is not None else ""


def _child_text(el, name: str) -> str:
    return next((_text(c) for c in el if _local(c) == name), "")
