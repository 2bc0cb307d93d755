"""Collecting from a real loopback HTTP server into a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from collector.fetch import FetchPolicy, make_client
from collector.jobs import collect_round
from collector.sources import SourceConfig
from store.tables import FetchLog, Item, Source, Story

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
POLICY = FetchPolicy(timeout_seconds=2, max_bytes=200_000, host_interval_seconds=0, per_host_connections=8)


def _count(sessions, model):
    with sessions.begin() as s:
        return s.scalar(select(func.count()).select_from(model))


def _rss(items: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f"<item><title>{t}</title><link>{link}</link><pubDate>{d}</pubDate></item>" for t, link, d in items)
    return f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def test_collecting_the_same_feeds_twice_adds_nothing(server, sessions, now):
    from tests.conftest import Route

    server.routes["/nhk"] = Route((FEEDS / "nhk_rss2.xml").read_bytes(), headers={"Content-Type": "application/rss+xml"})
    server.routes["/hatena"] = Route((FEEDS / "hatena_rdf.rdf").read_bytes())
    sources = [SourceConfig("nhk", server.url("/nhk"), publisher="NHK"),
               SourceConfig("hatena", server.url("/hatena"), kind="hatena")]
    with make_client(POLICY) as client:
        first = collect_round(sessions, sources, client, POLICY, now=now)
        second = collect_round(sessions, sources, client, POLICY, now=now)
    assert [o.new_items for o in first] == [2, 2]
    assert [o.outcome for o in second] == ["unchanged", "unchanged"]  # identical bodies skipped by hash
    assert _count(sessions, Item) == 4


def test_conditional_get_sends_the_etag_and_304_is_not_a_failure(server, sessions, now):
    from tests.conftest import Route

    body = (FEEDS / "nhk_rss2.xml").read_bytes()

    def answer(handler):
        if handler.headers.get("If-None-Match") == '"v1"':
            route.status = 304
            return b""
        route.status = 200
        return body

    route = Route(answer, headers={"ETag": '"v1"'})
    server.routes["/nhk"] = route
    sources = [SourceConfig("nhk", server.url("/nhk"), publisher="NHK")]
    with make_client(POLICY) as client:
        collect_round(sessions, sources, client, POLICY, now=now)
        (second,) = collect_round(sessions, sources, client, POLICY, now=now)
    assert second.outcome == "not_modified"
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    with sessions.begin() as s:
        assert s.scalar(select(Source.failure_score)) == 0


def test_one_failing_source_never_stops_the_others(server, sessions, now):
    from tests.conftest import Route

    server.routes["/good"] = Route((FEEDS / "nhk_rss2.xml").read_bytes())
    server.routes["/500"] = Route(b"oops", status=500)
    server.routes["/html"] = Route(b"<!DOCTYPE html><html><body>moved</body></html>", headers={"Content-Type": "text/html"})
    server.routes["/truncated"] = Route((FEEDS / "nhk_rss2.xml").read_bytes()[:400])
    server.routes["/huge"] = Route(b"<rss>" + b" " * 300_000 + b"</rss>")
    server.routes["/slow"] = Route((FEEDS / "nhk_rss2.xml").read_bytes(), delay=3)
    names = ["500", "html", "truncated", "huge", "slow", "good"]
    sources = [SourceConfig(n, server.url(f"/{n}"), publisher="NHK") for n in names]
    sources.append(SourceConfig("dead", "http://127.0.0.1:9/feed"))  # nothing listens on port 9
    with make_client(POLICY) as client:
        outcomes = {o.source: o for o in collect_round(sessions, sources, client, POLICY, now=now)}
    assert outcomes["good"].new_items == 2
    for name, words in [("500", "HTTP 500"), ("html", "HTML"), ("truncated", "truncated"),
                        ("huge", "cap"), ("slow", "timed out"), ("dead", "network error")]:
        assert outcomes[name].outcome == "failed" and words in outcomes[name].error, name
    with sessions.begin() as s:
        failed = s.scalars(select(Source.name).where(Source.failure_score > 0)).all()
        assert sorted(failed) == sorted(["500", "html", "truncated", "huge", "slow", "dead"])
        assert s.scalar(select(func.count()).select_from(FetchLog)) == 7


def test_five_outlets_carrying_one_story_make_one_cluster_with_five_publishers(server, sessions, now):
    from tests.conftest import Route

    date = "Wed, 02 Oct 2024 01:30:00 GMT"
    outlets = ["共同通信", "東京新聞", "京都新聞", "神戸新聞", "中日新聞"]
    titles = ["マイナポータル、つながりにくい状態続く　アクセス集中か",
              "マイナポータルつながりにくい状態続く　アクセス集中か",
              "マイナポータル、つながりにくい状態が続く　アクセス集中か",
              "【速報】マイナポータル、つながりにくい状態続く アクセス集中か",
              "マイナポータル つながりにくい状態続く、アクセス集中か"]
    items = "".join(
        f'<item><title>{t} - {o}</title><link>https://news.google.com/rss/articles/CBMi{n}x</link>'
        f'<guid isPermaLink="false">CBMi{n}x</guid><pubDate>{date}</pubDate><source url="https://{n}.example.jp">{o}</source></item>'
        for n, (t, o) in enumerate(zip(titles, outlets)))
    other = '<item><title>マイナ保険証の利用率、9月は13％に - 日本経済新聞</title><link>https://news.google.com/rss/articles/CBMiZZ</link><pubDate>Tue, 01 Oct 2024 01:30:00 GMT</pubDate><source url="https://nikkei.example">日本経済新聞</source></item>'
    server.routes["/gn"] = Route(f'<?xml version="1.0"?><rss version="2.0"><channel><title>g</title>{items}{other}</channel></rss>'.encode())
    with make_client(POLICY) as client:
        collect_round(sessions, [SourceConfig("gn", server.url("/gn"), kind="google_news")], client, POLICY, now=now)
    with sessions.begin() as s:
        assert s.scalar(select(func.count()).select_from(Story)) == 2
        story_id = s.scalar(select(Item.story_id).where(Item.publisher == "共同通信"))
        publishers = set(s.scalars(select(Item.publisher).where(Item.story_id == story_id)))
    assert publishers == set(outlets)


def test_tracking_parameters_do_not_make_a_second_item(server, sessions, now):
    from tests.conftest import Route

    d = "Wed, 02 Oct 2024 01:30:00 GMT"
    server.routes["/a"] = Route(_rss([("マイナ保険証のトラブル", "https://example.jp/n/1?utm_source=rss&ref=rss", d)]))
    server.routes["/b"] = Route(_rss([("マイナ保険証のトラブル続報", "https://example.jp/n/1", d)]))
    with make_client(POLICY) as client:
        collect_round(sessions, [SourceConfig("a", server.url("/a")), SourceConfig("b", server.url("/b"))],
                      client, POLICY, now=now)
    assert _count(sessions, Item) == 1
