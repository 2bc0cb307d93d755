"""Hostile feeds, one fixture per case in fixtures/hostile/ with its expectation beside it, served from a real
loopback HTTP server and collected into a real SQLite store: one bad item or field never costs the feed."""

from __future__ import annotations

import json
import logging
import re
import time
import tracemalloc
from dataclasses import fields, replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.fetch import FetchPolicy, make_client
from collector.jobs import Collector
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from store.tables import Item, MaintenanceWindow, TrendPoint
from tests.conftest import Route

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
CASES = sorted(HOSTILE.glob("*.expect.json"))
DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"
POLICY = FetchPolicy(timeout_seconds=10, max_bytes=2_000_000, host_interval_seconds=0, per_host_connections=32)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff\ud800-\udfff]")
FIELDS = (Item.title, Item.summary, Item.publisher, Item.canonical_url, Item.guid, Item.date_note)


def _case(path: Path) -> tuple[str, dict, bytes]:
    name = path.name.removesuffix(".expect.json")
    spec = json.loads(path.read_text(encoding="utf-8"))
    body = next(p for p in HOSTILE.iterdir() if p.stem == name and not p.name.endswith(".json")).read_bytes()
    fill = spec.get("serve", {}).get("fill")
    if fill:
        body = body.replace(b"@@FILL@@", fill["text"].encode("utf-8") * fill["times"])
    return name, spec, body


def _source(server, name: str, spec: dict, body: bytes) -> SourceConfig:
    server.routes[f"/{name}"] = Route(body, headers=spec.get("serve", {}).get("headers", {}))
    publisher = None if spec["kind"] in ("google_news", "hatena", "mastodon") else "hostile"
    return SourceConfig(name, server.url(f"/{name}"), kind=spec["kind"],
                        publisher=publisher if spec["kind"] != "google_trends" else None)


def _round(sessions, sources, fetch: FetchPolicy, collect: CollectPolicy, now):
    with make_client(fetch) as client, Collector(sessions, client, fetch, collect) as collector:
        first = {o.source: o for o in collector.collect_round(sources, now=now)}
        second = {o.source: o for o in collector.collect_round(sources, now=now, force=True)}
    return first, second


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".expect.json") for p in CASES])
def test_hostile_feed(path, server, sessions, now, caplog):
    name, spec, body = _case(path)
    expect = spec["expect"]
    fetch = replace(POLICY, **spec.get("policy", {}))
    collect = CollectPolicy(**spec.get("collect", {}))
    source = _source(server, name, spec, body)
    traced = "max_peak_mb" in expect
    if traced:
        tracemalloc.start()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="collector.jobs"):
            first, second = _round(sessions, [source], fetch, collect, now)
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
    seconds = time.monotonic() - started
    outcome = first[name]
    assert outcome.outcome == expect["outcome"], outcome
    assert "internal error" not in (outcome.error or "") and "internal error" not in (second[name].error or "")
    if expect["outcome"] != "failed":
        assert second[name].outcome != "failed", second[name]  # not in the next round either
    if "failure_kind" in expect:
        assert outcome.failure_kind == expect["failure_kind"]
    if "error" in expect:
        assert expect["error"] in (outcome.error or "")
    if "skipped" in expect:
        assert outcome.skipped_items == expect["skipped"]
        lines = [r for r in caplog.records if "unreadable item" in r.getMessage() and r.getMessage().startswith(name)]
        assert len(lines) == 1  # logged once for the source and round, however many items
    if "max_seconds" in expect:
        assert seconds < expect["max_seconds"], seconds
    if traced:
        assert peak < expect["max_peak_mb"] * 1024 * 1024, f"{peak / 2**20:.0f} MB at the peak"
    _check_store(sessions, expect, collect)


def _check_store(sessions, expect: dict, collect: CollectPolicy) -> None:
    with sessions.begin() as s:
        rows = s.execute(select(*FIELDS)).all()
        windows = s.scalar(select(func.count(MaintenanceWindow.id)))
        trends = s.execute(select(TrendPoint.term, TrendPoint.traffic, TrendPoint.traffic_raw)
                           .order_by(TrendPoint.id)).all()
    titles = [r.title for r in rows]
    if "items" in expect:
        assert len(rows) == expect["items"], titles
    for title in expect.get("titles", []):
        assert any(t == title or (title and t.startswith(title)) for t in titles), (title, titles)
    if "empty_titles" in expect:
        assert titles.count("") == expect["empty_titles"]
    for publisher in expect.get("publishers", []):
        assert publisher in [r.publisher for r in rows]
    if "canonical_urls" in expect:
        assert sorted(r.canonical_url for r in rows) == sorted(expect["canonical_urls"])
    for note in expect.get("date_notes", []):
        assert any(note in (r.date_note or "") for r in rows), [r.date_note for r in rows]
    if "windows" in expect:
        assert windows == expect["windows"]
    if "trends" in expect:
        assert len(trends) == expect["trends"]
    if "traffic" in expect:
        assert [t.traffic for t in trends] == expect["traffic"]
    for text in [v for r in rows for v in r if v] + [v for t in trends for v in (t.term, t.traffic_raw) if v]:
        assert not UNSAFE.search(text), repr(text[:80])
        for absent in expect.get("absent", []):
            assert absent not in text
    for r in rows:
        assert len(r.title) <= collect.max_title_chars and len(r.summary or "") <= collect.max_summary_chars
        assert len(r.publisher) <= 200 and len(r.date_note or "") <= 100


def test_every_hostile_feed_in_one_round_never_stops_the_good_source(server, sessions, now):
    from tests.conftest import FIXTURES

    good = SourceConfig("good", server.url("/good"), kind="hatena")
    server.routes["/good"] = Route((FIXTURES / "feeds" / "hatena_rdf.rdf").read_bytes())
    sources = [good]
    for path in CASES:
        name, spec, body = _case(path)
        if "policy" in spec or "collect" in spec:  # the large cases have run on their own above
            continue
        sources.append(_source(server, name, spec, body))
    first, second = _round(sessions, sources, POLICY, CollectPolicy(), now)
    assert first["good"].outcome == "new" and first["good"].new_items == 2
    assert all("internal error" not in (o.error or "") for o in [*first.values(), *second.values()])
    with sessions.begin() as s:
        urls = s.scalars(select(Item.canonical_url)).all()
    assert len(urls) == len(set(urls))


def test_the_text_caps_are_collect_settings_and_documented():
    documented = set(re.findall(r"`([a-z_]+)`", DOCS.read_text(encoding="utf-8")))
    caps = {f.name for f in fields(CollectPolicy) if f.name.startswith("max_") and f.name.endswith("_chars")}
    assert caps == {"max_title_chars", "max_summary_chars", "max_article_chars"}
    assert {f.name for f in fields(CollectPolicy)} - documented == set()
    with pytest.raises(ValueError, match="max_title_chars"):
        CollectPolicy(max_title_chars=0)
    with pytest.raises(ValueError, match="max_summary_chars"):
        CollectPolicy(max_summary_chars="long")


def test_an_article_page_is_cleaned_and_capped_like_a_feed_item(server, sessions, now):
    from datetime import timedelta

    from store.articles import article_of
    from store.records import Entry

    text = "本文" * 50_000
    page = (f'<html><head><meta property="og:title" content="見出し\u202e\x1b[31m{"長" * 1000}">'
            f'<meta property="article:published_time" content="0001-01-01T00:00:00+09:00"></head>'
            f'<body><article><p>{text}</p></article></body></html>').encode()
    server.routes["/a"] = Route(page, headers={"Content-Type": "text/html; charset=utf-8"})
    loopback = replace(POLICY, allow_loopback_links=True)
    collect = CollectPolicy(max_article_chars=1000, max_title_chars=20)
    source = SourceConfig("feed", "http://127.0.0.1/feed", publisher="東西新聞")
    with sessions.begin() as s:
        from store import items as store_items
        from store import labels as store_labels
        from collector.ingest import save_entries
        from store.records import Cause, Label, Sentiment, Service

        state = store_items.upsert_source(s, name="feed", url=source.url, kind="feed", publisher="東西新聞",
                                          interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url=server.url("/a"), title="マイナポータル障害",
                                                 published=now - timedelta(hours=1))], now=now)
        item_id = s.scalar(select(Item.id))
        store_labels.save_labels(s, "m1", {item_id: Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE)},
                                 now=now)
    with make_client(loopback) as client, Collector(sessions, client, loopback, collect) as collector:
        assert collector.fetch_articles(now=now)["ok"] == 1
    with sessions.begin() as s:
        record = article_of(s, item_id)
    assert len(record.text) <= 1000 and len(record.title) <= 20 and record.published is None
    assert not UNSAFE.search(record.title) and record.title.startswith("見出し[31m")
