"""Properties of the feed parsers and the text sanitizer, over inputs hypothesis makes up (bounded: the whole
file runs in seconds). Whatever the bytes, a parser returns entries or raises FeedMalformed, never anything
else; entries hold only clean, capped text, dates in range and links that can be read; one bad item never
costs the good ones."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from html import escape
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.dedup import canonical_url, title_key
from collector.errors import FeedMalformed
from collector.kinds import KINDS
from collector.maintenance import find_windows
from collector.page import parse_page
from collector.parse import parse_feed, parse_traffic, parse_trends, plain_text
from collector.policy import TextLimits
from collector.sanitize import EARLIEST, LATEST, MAX_URL, clean_entry, count, link
from store.clean import clean_text, one_line, web_link
from store.records import Entry

NOW = datetime(2024, 10, 16, tzinfo=timezone.utc)
LIMITS = TextLimits(title=40, summary=200, body=500)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff\ud800-\udfff]")
SCALE = int(os.environ.get("MYNAWATCH_PROPERTY_SCALE", "1"))  # e.g. 50 for a long hunt; 1 in make test
FAST = settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=50 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with everything hostile in it: controls, NUL, bidi, separators, surrogates, markup, entities.
hostile_chars = st.sampled_from(list("\x00\x07\x08\x0b\x1b\x7f\x85\u202e\u2066\u2028\ufeff\ud800<>&;#\"' \n\r\t")
                                + ["&#0;", "&#xD800;", "&#x1b;", "<script>", "</p>", "<![CDATA[", "]]>", "&amp;"])
hostile_text = st.lists(st.one_of(st.text(max_size=8), hostile_chars), max_size=30).map("".join)
dates = st.one_of(
    st.sampled_from(["Mon, 01 Jan 0001 00:00:00 +0000", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+09:00",
                     "Sat, 31 Feb 2024 99:99:99 +9999", "2024年13月45日", "", "9" * 400, "1970-01-01T00:00:00Z",
                     "Tue, 15 Oct 2024 10:00:00 JST", "2024-10-15T10:00:00+09:00"]),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)),
                                            timezone(timedelta(hours=-14))])).map(lambda d: d.isoformat()),
    hostile_text,
)
hosts = st.sampled_from(["example.jp", "[2001:db8::1]", "[::1]:8080", "127.0.0.1", "[", "a:99999", "xn--", ""])
links = st.one_of(st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}",
                            st.sampled_from(["http", "https", "javascript", "data"]), hosts, hostile_text),
                  hostile_text)


def _xml(text: str) -> str:
    """Text as it would sit in XML, hostile characters kept raw (only the markup escaped, often)."""
    return escape(text, quote=False)


def _item(title, link_, date, summary) -> str:
    return (f"<item><title>{_xml(title)}</title><link>{_xml(link_)}</link><pubDate>{_xml(date)}</pubDate>"
            f"<description>{_xml(summary)}</description></item>")


GOOD = [("マイナポータル 障害", "https://good.example/1"), ("マイナ保険証 トラブル", "https://good.example/2")]


def _feed(items: list[str]) -> bytes:
    good = "".join(f"<item><title>{t}</title><link>{u}</link></item>" for t, u in GOOD)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>p</title>'
            f'{"".join(items)}{good}</channel></rss>').encode("utf-8", "surrogatepass")


def _check_entries(entries) -> None:
    for e in entries:
        for text in (e.title, e.summary, e.url, e.guid or "", e.publisher or "", e.date_note or "", *e.categories):
            assert not UNSAFE.search(text), repr(text)
        assert "\n" not in e.title and len(e.title) <= LIMITS.title and len(e.summary) <= LIMITS.summary
        assert len(e.url) <= MAX_URL
        urlsplit(e.url).port  # noqa: B018 (readable)
        assert e.published is None or EARLIEST <= e.published < LATEST
        assert e.social_count is None or 0 <= e.social_count <= 10**12


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_give_entries_or_feed_malformed(body):
    try:
        entries = parse_feed(body, url="https://example.jp/feed", now=NOW, limits=LIMITS)
    except FeedMalformed:
        return
    _check_entries(entries)


@FAST
@given(st.lists(st.tuples(hostile_text, links, dates, hostile_text), max_size=6))
def test_hostile_items_never_cost_the_good_ones(items):
    skipped: list[str] = []
    entries = parse_feed(_feed([_item(*i) for i in items]), url="https://example.jp/feed", now=NOW, limits=LIMITS,
                         skipped=skipped)
    _check_entries(entries)
    urls = [e.url for e in entries]
    assert all(u in urls for _, u in GOOD)  # the good items are always there


@SLOW
@given(st.sampled_from(["feed", "google_news", "hatena", "mastodon", "yahoo"]),
       st.lists(st.tuples(hostile_text, links, dates, hostile_text), min_size=1, max_size=4))
def test_every_kind_reads_the_same_hostile_feed_without_failing(kind, items):
    body = _feed([_item(*i) for i in items]).replace(b"<rss version=\"2.0\">", b"<rss version=\"2.0\" "
                                                     b"xmlns:hatena=\"http://www.hatena.ne.jp/info/xmlns#\">")
    _check_entries(parse_feed(body, url="https://example.jp/feed", rules=KINDS[kind].items, now=NOW, limits=LIMITS))


@FAST
@given(st.lists(st.tuples(hostile_text, st.text(alphabet="0123456789,.+KkMm万e-", max_size=30), dates), max_size=5))
def test_trends_give_points_or_feed_malformed(items):
    body = ('<?xml version="1.0"?><rss version="2.0" xmlns:ht="https://trends.google.com/trending/rss"><channel>'
            + "".join(f"<item><title>{_xml(t)}</title><ht:approx_traffic>{_xml(a)}</ht:approx_traffic>"
                      f"<pubDate>{_xml(d)}</pubDate></item>" for t, a, d in items)
            + "</channel></rss>").encode("utf-8", "surrogatepass")
    try:
        trends = parse_trends(body, url="u", now=NOW, limits=LIMITS)
    except FeedMalformed:
        return
    for t in trends:
        assert not UNSAFE.search(t.term) and len(t.term) <= LIMITS.title
        assert t.traffic is None or 0 <= t.traffic <= 10**12


@FAST
@given(st.text(max_size=60))
def test_traffic_is_a_storable_number_or_none(raw):
    value = parse_traffic(raw)
    assert value is None or 0 <= value <= 10**12


@SLOW
@given(st.lists(st.tuples(hostile_text, links, dates), max_size=6))
def test_pages_give_links_or_feed_malformed(anchors):
    body = ("<html><body><main><ul>" + "".join(f'<li>{_xml(d)} <a href="{escape(u)}">{_xml(t)}</a></li>'
                                               for t, u, d in anchors)
            + "</ul></main></body></html>").encode("utf-8", "surrogatepass")
    try:
        page = parse_page(body, url="https://example.jp/news", now=NOW, limits=LIMITS)
    except FeedMalformed:
        return
    _check_entries(page.entries)
    assert all(not UNSAFE.search(b) and len(b) <= LIMITS.summary for b in page.blocks)


@FAST
@given(hostile_text, st.integers(min_value=1, max_value=9999), st.integers(1, 12), st.integers(1, 31),
       st.integers(0, 48))
def test_maintenance_notices_never_raise_whatever_the_date(text, year, month, day, hour):
    notice = f"システムメンテナンスのお知らせ {year}年{month}月{day}日 {hour}時から翌日6時まで停止します。{text}"
    for w in find_windows("計画停止", notice, notice_time=NOW):
        assert w.starts_at < w.ends_at


@FAST
@given(hostile_text)
def test_plain_text_is_clean_of_markup_blocks(markup):
    text = plain_text(markup + "<script>hidden()</script>")
    assert "hidden()" not in text


@FAST
@given(links)
def test_links_are_readable_or_none_and_canonical_urls_never_raise(raw):
    url = link(raw)
    if url is not None:
        assert len(url) <= MAX_URL and not any(c.isspace() for c in url) and not UNSAFE.search(url)
        urlsplit(url).port  # noqa: B018
        canonical = canonical_url(url)
        host = urlsplit(url).hostname or ""
        if ":" in host and urlsplit(url).scheme in ("http", "https"):
            assert f"[{host}]" in canonical  # IPv6 keeps its brackets
    canonical_url(raw)


@FAST
@given(hostile_text, hostile_text, links)
def test_untitled_items_are_keyed_apart_by_url(publisher, title, url):
    if not re.sub(r"[\s\W_]+", "", title):
        assert title_key(publisher, title, url) != title_key(publisher, title, url + "x")


@FAST
@given(st.one_of(st.integers(), st.text(max_size=420), st.booleans(), st.none()))
def test_counts_fit_the_store(value):
    result = count(value)
    assert result is None or 0 <= result <= 10**12


@FAST
@given(hostile_text, hostile_text, st.one_of(st.none(), st.datetimes(timezones=st.just(timezone.utc))))
def test_clean_entry_keeps_every_field_safe(title, summary, published):
    entry = Entry(url="https://example.jp/a", title=title * 3, summary=summary * 20, published=published,
                  publisher=title, guid=summary, categories=(title, summary))
    _check_entries([clean_entry(entry, LIMITS, now=NOW)])


# store/clean.py

@FAST
@given(st.text())
def test_clean_text_removes_every_unsafe_character_and_is_idempotent(text):
    cleaned = clean_text(text)
    assert not UNSAFE.search(cleaned) and "\r" not in cleaned
    assert clean_text(cleaned) == cleaned


@FAST
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp"))))
def test_clean_text_leaves_safe_text_as_it_is(text):
    assert clean_text(text) == text


@FAST
@given(st.text())
def test_one_line_has_no_line_break_and_is_idempotent(text):
    line = one_line(text)
    assert not any(c in line for c in "\r\n\t\v\f\x85\u2028\u2029") and not UNSAFE.search(line)
    assert one_line(line) == line


@FAST
@given(links)
def test_web_links_are_only_http_or_https(raw):
    url = web_link(raw)
    assert url is None or urlsplit(url).scheme.lower() in ("http", "https")
