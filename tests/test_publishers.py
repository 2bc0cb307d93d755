"""One name per outlet: host names learned from Google News <source url> and configured outlet feeds."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from collector.dedup import title_key
from collector.jobs import save_entries
from collector.kinds import KINDS
from collector.parse import parse_feed
from collector.sources import SourceConfig
from store import items as store_items
from store.publishers import host_key, publisher_names, record_publisher
from store.records import Entry
from store.tables import Item, PublisherHost

T = datetime(2024, 10, 9, 3, 0, tzinfo=timezone.utc)
TITLE = "マイナ保険証で別人の情報　医療機関で確認相次ぐ"
ARTICLE = "https://www.47news.jp/11598072.html"
GOOGLE_NEWS = SourceConfig("google-news", "https://news.google.com/rss/search?q=マイナ", kind="google_news")
HATENA = SourceConfig("hatena", "https://b.hatena.ne.jp/q/マイナ?mode=rss", kind="hatena")


def _google_news(title=TITLE, outlet="47NEWS", site="https://www.47news.jp", n=1) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>g</title>
<item><title>{title} - {outlet}</title><link>https://news.google.com/rss/articles/CBMi{n}?oc=5</link>
<guid isPermaLink="false">CBMi{n}</guid><pubDate>Wed, 09 Oct 2024 02:30:00 GMT</pubDate>
<source url="{site}">{outlet}</source></item></channel></rss>""".encode()


def _hatena(link=ARTICLE, title=f"{TITLE} | 47NEWS") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rdf:RDF xmlns="http://purl.org/rss/1.0/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:hatena="http://www.hatena.ne.jp/info/xmlns#">
<channel rdf:about="https://b.hatena.ne.jp/q/x"><title>h</title><link>https://b.hatena.ne.jp/q/x</link></channel>
<item rdf:about="{link}"><title>{title}</title><link>{link}</link>
<dc:date>2024-10-09T12:10:00+09:00</dc:date><hatena:bookmarkcount>120</hatena:bookmarkcount></item>
</rdf:RDF>""".encode()


def _collect(sessions, source: SourceConfig, body: bytes | list[Entry]) -> int:
    entries = body if isinstance(body, list) else parse_feed(body, url=source.url, rules=KINDS[source.kind].items, now=T)
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name=source.name, url=source.url, kind=source.kind,
                                          publisher=source.publisher, interval_minutes=60)
        return save_entries(s, state.id, source, entries, now=T)


def _items(sessions) -> dict[str, tuple[str, int, str]]:
    """canonical URL -> (publisher, story id, title key) of every stored item."""
    with sessions.begin() as s:
        rows = s.execute(select(Item.canonical_url, Item.publisher, Item.story_id, Item.title_key))
        return {url: (publisher, story, key) for url, publisher, story, key in rows}


def _learned(sessions) -> dict[str, tuple[str, str]]:
    with sessions.begin() as s:
        rows = s.execute(select(PublisherHost.host, PublisherHost.publisher, PublisherHost.learned_from))
        return {host: (name, how) for host, name, how in rows}


def test_google_news_first_then_hatena_the_outlet_has_one_name(sessions):
    assert _collect(sessions, GOOGLE_NEWS, _google_news()) == 1
    assert _collect(sessions, HATENA, _hatena()) == 1
    items = _items(sessions)
    assert {publisher for publisher, _, _ in items.values()} == {"47NEWS"}
    assert len({story for _, story, _ in items.values()}) == 1  # one story, one outlet
    assert _learned(sessions) == {"47news.jp": ("47NEWS", "google_news")}


def test_hatena_first_then_google_news_renames_the_earlier_item(sessions):
    assert _collect(sessions, HATENA, _hatena()) == 1
    assert _items(sessions)[ARTICLE][0] == "www.47news.jp"
    assert _collect(sessions, GOOGLE_NEWS, _google_news()) == 1
    items = _items(sessions)
    assert {publisher for publisher, _, _ in items.values()} == {"47NEWS"}
    assert len({story for _, story, _ in items.values()}) == 1
    assert items[ARTICLE][2] == title_key("www.47news.jp", f"{TITLE} | 47NEWS")  # the title key stays
    assert _collect(sessions, HATENA, _hatena()) == 0  # and still finds the item as already stored


def test_a_configured_outlet_feed_teaches_its_host(sessions):
    outlet = SourceConfig("47news", "https://www.47news.jp/rss/news.xml", publisher="47NEWS")
    own = Entry(url="https://www.47news.jp/11500000.html", title="別の記事", published=T)
    assert _collect(sessions, outlet, [own]) == 1
    assert _learned(sessions) == {"47news.jp": ("47NEWS", "source")}
    assert _collect(sessions, HATENA, _hatena(link="https://47news.jp/11598072.html")) == 1  # without www. too
    assert _items(sessions)["https://47news.jp/11598072.html"][0] == "47NEWS"


def test_unknown_hosts_keep_the_host_name(sessions):
    _collect(sessions, GOOGLE_NEWS, _google_news())
    assert _collect(sessions, HATENA, _hatena(link="https://www.cbnews.jp/news/entry/1", title="別の話題")) == 1
    assert _items(sessions)["https://www.cbnews.jp/news/entry/1"][0] == "www.cbnews.jp"


def test_aggregators_and_addresses_without_a_name_teach_nothing(sessions):
    yahoo = SourceConfig("yahoo", "https://news.yahoo.co.jp/rss/topics/top-picks.xml", kind="yahoo",
                         publisher="Yahoo!ニュース")
    _collect(sessions, yahoo, [Entry(url="https://news.yahoo.co.jp/articles/a1", title="記事", published=T)])
    local = SourceConfig("local", "http://127.0.0.1:8000/feed.xml", publisher="ローカル")
    _collect(sessions, local, [Entry(url="http://127.0.0.1:8000/1", title="記事2", published=T)])
    _collect(sessions, GOOGLE_NEWS, _google_news(outlet="どこか", site="http://localhost"))
    assert _learned(sessions) == {}


def test_an_item_with_a_publisher_of_its_own_keeps_it(sessions):
    kyodo = SourceConfig("kyodo", "https://www.kyodo.co.jp/rss", publisher="共同通信")
    _collect(sessions, kyodo, [Entry(url=ARTICLE, title="配信記事", published=T)])
    _collect(sessions, GOOGLE_NEWS, _google_news())
    assert _items(sessions)[ARTICLE][0] == "共同通信"


def test_the_first_name_learned_for_a_host_stays(sessions):
    assert host_key("WWW.47News.JP.") == "47news.jp"
    with sessions.begin() as s:
        assert record_publisher(s, "www.47news.jp", "47NEWS", learned_from="google_news", now=T)
        assert not record_publisher(s, "47news.jp", "よんななニュース", learned_from="source", now=T)
        assert publisher_names(s, ["cbnews.jp", "www.47news.jp"]) == {"47news.jp": "47NEWS"}
