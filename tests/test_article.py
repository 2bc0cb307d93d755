"""Article pages: extraction (one fixture page per case, its expectation beside it), the SSRF guard,
and the job that reads the pages of relevant items only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.article import extract_article
from collector.errors import FetchRefused
from collector.fetch import FetchPolicy, check_address, fetch_page, make_client
from collector.jobs import Collector, save_entries
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from store import items as store_items
from store import labels as store_labels
from store.articles import article_of
from store.records import Cause, Entry, Label, Sentiment, Service
from store.tables import Article, Item
from tests.conftest import Route

PAGES = Path(__file__).parent / "fixtures" / "pages"
CASES = sorted(PAGES.glob("*.expect.json"))
LOOPBACK = FetchPolicy(timeout_seconds=2, host_interval_seconds=0, allow_loopback_links=True)


@pytest.mark.parametrize("expect_path", CASES, ids=[p.name.removesuffix(".expect.json") for p in CASES])
def test_article_fixture(expect_path):
    expect = json.loads(expect_path.read_text(encoding="utf-8"))
    page = extract_article((PAGES / expect_path.name.replace(".expect.json", ".html")).read_bytes(),
                           content_type="text/html; charset=UTF-8")  # a wrong header: the page's own charset wins
    assert page.title == expect["title"]
    assert page.publisher == expect["publisher"]
    assert (page.published.isoformat() if page.published else None) == expect["published"]
    for text in expect["text_contains"]:
        assert text in page.text
    for text in expect["text_excludes"]:
        assert text not in page.text


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/", "http://192.168.1.10/a", "http://172.16.0.5/", "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:8080/", "http://[::1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://[fe80::1]/",
    "file:///etc/passwd", "ftp://example.jp/",
])
def test_links_to_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(FetchRefused):
        check_address(url, allow_loopback=False)


def test_loopback_can_be_allowed_but_private_addresses_never():
    check_address("http://127.0.0.1:8080/", allow_loopback=True)
    with pytest.raises(FetchRefused):
        check_address("http://10.1.2.3/", allow_loopback=True)


def test_a_redirect_to_a_private_address_is_refused_before_it_is_followed(server, now):
    server.routes["/a"] = Route(b"", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with make_client(LOOPBACK) as client, pytest.raises(FetchRefused, match="169.254.169.254"):
        fetch_page(client, server.url("/a"), policy=LOOPBACK, now=now)


def test_loopback_pages_are_refused_unless_allowed(server, now):
    server.routes["/p"] = Route((PAGES / "news_jsonld.html").read_bytes())
    strict = FetchPolicy(timeout_seconds=2)
    with make_client(strict) as client, pytest.raises(FetchRefused):
        fetch_page(client, server.url("/p"), policy=strict, now=now)
    assert server.requests == []  # refused before connecting


def _store(sessions, entries, labels, now):
    source = SourceConfig("feed", "http://127.0.0.1/feed", publisher="東西新聞")
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name="feed", url=source.url, kind="feed", publisher="東西新聞",
                                          interval_minutes=60)
        save_entries(s, state.id, source, entries, now=now)
        ids = dict(s.execute(select(Item.title, Item.id)).all())
        store_labels.save_labels(s, "m1", {ids[t]: label for t, label in labels.items()}, now=now)
    return ids


def test_the_article_job_reads_only_relevant_items_pages(server, sessions, now):
    server.routes["/relevant"] = Route(b"", status=301, headers={"Location": "/moved"})
    server.routes["/moved"] = Route((PAGES / "news_jsonld.html").read_bytes(), headers={"Content-Type": "text/html"})
    server.routes["/other"] = Route((PAGES / "og_shift_jis.html").read_bytes())
    when = now - timedelta(hours=2)
    yes = Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE)
    no = Label(False, (), Cause.NONE, Sentiment.NEUTRAL)
    ids = _store(sessions, [
        Entry(url=server.url("/relevant"), title="マイナポータルつながりにくく", published=when),
        Entry(url=server.url("/other"), title="マイナビ調査：転職意向", published=when),
        Entry(url="http://10.0.0.7/internal", title="マイナ保険証の内部ページ", published=when),
        Entry(url=server.url("/old"), title="マイナポータル、先月の障害", published=now - timedelta(days=10)),
    ], {"マイナポータルつながりにくく": yes, "マイナビ調査：転職意向": no, "マイナ保険証の内部ページ": yes,
        "マイナポータル、先月の障害": yes}, now)
    with make_client(LOOPBACK) as client, Collector(sessions, client, LOOPBACK, CollectPolicy()) as collector:
        counts = collector.fetch_articles(now=now)
        again = collector.fetch_articles(now=now)
    assert counts == {"ok": 1, "failed": 0, "refused": 1} and again == {"ok": 0, "failed": 0, "refused": 0}
    assert [p for p, _ in server.requests] == ["/relevant", "/moved"]  # never the irrelevant or the old one
    with sessions.begin() as s:
        page = article_of(s, ids["マイナポータルつながりにくく"])
        refused = article_of(s, ids["マイナ保険証の内部ページ"])
        assert s.scalar(select(Article.id).where(Article.item_id == ids["マイナビ調査：転職意向"])) is None
    assert page.status == "ok" and page.url.endswith("/moved") and page.publisher == "東西新聞デジタル"
    assert page.published == datetime(2024, 10, 2, 0, 41, tzinfo=timezone.utc)
    assert "アクセスが集中" in page.text
    assert refused.status == "refused" and "10.0.0.7" in refused.error
