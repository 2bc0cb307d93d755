"""Feed parsing, one recorded-format fixture per case with its expectation beside it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.errors import FeedMalformed
from collector.jobs import prepare
from collector.kinds import KINDS
from collector.parse import _with_feedparser, parse_feed, parse_traffic, parse_trends, to_utf8
from collector.xmlfeed import read_entries
from collector.sources import SourceConfig

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
NOW = datetime(2024, 10, 16, tzinfo=timezone.utc)
CASES = sorted(p for p in FEEDS.glob("*.expect.json"))


@pytest.mark.parametrize("expect_path", CASES, ids=[p.name.removesuffix(".expect.json") for p in CASES])
def test_feed_fixture(expect_path):
    expect = json.loads(expect_path.read_text(encoding="utf-8"))
    stem = expect_path.name.removesuffix(".expect.json")
    feed = next(p for p in FEEDS.iterdir() if p.stem == stem and not p.name.endswith(".json"))
    if expect["kind"] == "google_trends":
        return _check_trends(parse_trends(feed.read_bytes(), url="http://127.0.0.1/feed", now=NOW), expect)
    source = SourceConfig(name=stem, url="http://127.0.0.1/feed", kind=expect["kind"],
                          publisher=expect.get("source_publisher"))
    entries = parse_feed(feed.read_bytes(), url=source.url, rules=KINDS[source.kind].items, now=NOW)
    assert len(entries) == expect["count"]
    for entry, want in zip(entries, expect["entries"]):
        item = prepare(source, entry, now=NOW)
        got = {
            "title": entry.title, "url": entry.url, "guid": entry.guid, "summary": entry.summary,
            "published": entry.published.isoformat() if entry.published else None, "date_note": entry.date_note,
            "publisher": item.publisher, "publisher_url": entry.publisher_url, "social_count": entry.social_count, "categories": list(entry.categories),
            "canonical_url": item.canonical_url, "gate": item.gate,
        }
        for key, value in want.items():
            if key.endswith("_startswith"):
                assert (got[key.removesuffix("_startswith")] or "").startswith(value), key
            else:
                assert got[key] == value, key


def _check_trends(trends, expect):
    assert len(trends) == expect["count"]
    for t, want in zip(trends, expect["trends"]):
        got = {"term": t.term, "traffic": t.traffic, "traffic_raw": t.traffic_raw,
               "published": t.published.isoformat() if t.published else None,
               "news_titles": [n[0] for n in t.news], "news_sources": [n[2] for n in t.news]}
        for key, value in want.items():
            assert got[key] == value, key


def _feed_files():
    sample = Path(__file__).parent.parent / "mynawatch" / "sample" / "feeds"
    files = [p for p in sorted(FEEDS.iterdir()) + sorted(sample.iterdir())
             if p.suffix in (".xml", ".rdf", ".atom") and "trends" not in p.name]
    return files


@pytest.mark.parametrize("path", _feed_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_path_reads_every_feed_exactly_as_feedparser_does(path):
    kind = next((k for k in ("google_news", "mastodon", "hatena", "yahoo") if k in path.name), "feed")
    body = to_utf8(path.read_bytes(), None)
    assert read_entries(body, base="https://example.jp/feed") is not None  # the fast path took it
    fast = parse_feed(path.read_bytes(), url="https://example.jp/feed", rules=KINDS[kind].items, now=NOW)
    slow = _with_feedparser(body, url="https://example.jp/feed", rules=KINDS[kind].items, now=NOW)
    assert fast == slow


EDGE = [
    b'''<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://ex.jp/</link>
    <item><title>  A &amp; B  </title><guid>https://ex.jp/g1</guid><category>c1</category><category>c2</category></item>
    <item><guid isPermaLink="false">abc</guid><link>rel/2</link><description>&lt;p&gt;d &lt;script&gt;x()&lt;/script&gt;&lt;/p&gt;</description></item>
    </channel></rss>''',
    b'''<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
    <entry><title type="html">A &lt;b&gt;B&lt;/b&gt; &amp;amp; C</title><link rel="alternate" href="/n/1"/><id>tag:1</id>
    <updated>2024-10-02T10:00:00+09:00</updated><content type="html">&lt;p&gt;body&lt;/p&gt;</content></entry>
    <entry><title>X</title><link rel="enclosure" href="https://ex.jp/a.mp3"/><link href="https://ex.jp/2"/><id>tag:2</id>
    <published>2024-10-02T10:00:00Z</published><summary>sum</summary><category term="k"/></entry></feed>''',
]


@pytest.mark.parametrize("body", EDGE, ids=["rss-edges", "atom-edges"])
def test_fast_path_agrees_with_feedparser_on_edge_cases(body):
    fast = parse_feed(body, url="https://ex.jp/feed.xml", now=NOW)
    assert fast == _with_feedparser(to_utf8(body, None), url="https://ex.jp/feed.xml", rules=KINDS["feed"].items, now=NOW)
    assert fast and all("x()" not in e.summary for e in fast)


def test_feeds_the_fast_path_cannot_read_go_to_feedparser():
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>A&nbsp;B</title>' \
           b'<link>https://ex.jp/1?a=1&b=2</link></item></channel></rss>'
    assert read_entries(body, base="u") is None  # undeclared entity, bare &: not well-formed XML
    (entry,) = parse_feed(body, url="u", now=NOW)
    assert entry.url == "https://ex.jp/1?a=1&b=2"


def test_wrongly_declared_charset_is_still_read_or_refused_clearly():
    body = (FEEDS / "city_wrong_charset.xml").read_bytes()
    try:
        entries = parse_feed(body, url="http://127.0.0.1/city", now=NOW)
    except FeedMalformed as exc:
        assert "city" in str(exc)
    else:
        assert entries and "コンビニ交付" in entries[0].title


def test_yahoo_feed_without_description_or_guid_gets_the_article_url():
    entries = parse_feed((FEEDS / "yahoo_topics.xml").read_bytes(), url="u", rules=KINDS["yahoo"].items, now=NOW)
    assert entries[0].url.startswith("https://news.yahoo.co.jp/articles/")
    assert entries[0].guid is None


def test_truncated_xml_is_malformed_with_the_url_in_the_message():
    body = (FEEDS / "nhk_rss2.xml").read_bytes()[:300]
    with pytest.raises(FeedMalformed, match="http://127.0.0.1/nhk"):
        parse_feed(body, url="http://127.0.0.1/nhk", now=NOW)


def test_html_page_is_not_a_feed():
    with pytest.raises(FeedMalformed, match="HTML"):
        parse_feed(b"<!DOCTYPE html><html><head><title>x</title></head><body><p>hi</p></body></html>",
                   url="http://127.0.0.1/page", now=NOW)


def test_future_and_missing_dates_are_replaced_and_said_so():
    body = """<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>
    <item><title>未来のマイナ記事</title><link>https://example.jp/a</link><pubDate>Fri, 01 Jan 2100 00:00:00 +0900</pubDate></item>
    <item><title>日付なしのマイナ記事</title><link>https://example.jp/b</link></item>
    </channel></rss>""".encode()
    future, missing = parse_feed(body, url="u", now=NOW)
    assert future.published == NOW and "clamped" in future.date_note
    assert missing.published is None and "fetch time" in missing.date_note


TRENDS = """<?xml version="1.0" encoding="UTF-8"?>
<rss xmlns:atom="http://www.w3.org/2005/Atom" xmlns:ht="https://trends.google.com/trending/rss" version="2.0">
<channel><title>Daily Search Trends</title><link>https://trends.google.com/trending/rss?geo=JP</link>
<item><title>マイナポータル</title><ht:approx_traffic>20000+</ht:approx_traffic><description></description>
<link>https://trends.google.com/trending/rss?geo=JP</link><pubDate>Tue, 1 Oct 2024 18:40:00 -0700</pubDate>
<ht:picture>https://encrypted-tbn0.gstatic.com/images?q=tbn:x</ht:picture><ht:picture_source>共同通信</ht:picture_source>
<ht:news_item><ht:news_item_title>マイナポータルつながりにくく</ht:news_item_title><ht:news_item_snippet></ht:news_item_snippet>
<ht:news_item_url>https://example.jp/1</ht:news_item_url><ht:news_item_picture>p</ht:news_item_picture><ht:news_item_source>共同通信</ht:news_item_source></ht:news_item>
<ht:news_item><ht:news_item_title>デジタル庁が原因調査</ht:news_item_title><ht:news_item_snippet></ht:news_item_snippet>
<ht:news_item_url>https://example.jp/2</ht:news_item_url><ht:news_item_picture>p</ht:news_item_picture><ht:news_item_source>NHK</ht:news_item_source></ht:news_item>
</item></channel></rss>""".encode()


def test_trends_keep_every_news_item_and_the_traffic_as_number_and_text():
    (t,) = parse_trends(TRENDS, url="u", now=NOW)
    assert t.term == "マイナポータル" and t.traffic == 20000 and t.traffic_raw == "20000+"
    assert [n[0] for n in t.news] == ["マイナポータルつながりにくく", "デジタル庁が原因調査"]
    assert t.published == datetime(2024, 10, 2, 1, 40, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw,value", [("20000+", 20000), ("200,000+", 200000), ("20K+", 20000),
                                       ("2M+", 2000000), ("", None), ("many", None)])
def test_parse_traffic(raw, value):
    assert parse_traffic(raw) == value
