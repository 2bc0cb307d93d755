"""The same store on SQLite and on PostgreSQL answers every search with the same hits, in the same order,
with the same snippets: real items from the classifier's corpus, labeled with their services."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.jobs import save_entries
from collector.sources import SourceConfig
from store import items as store_items
from store import labels as store_labels
from store.db import make_sessions
from store.records import Cause, Entry, Label, Sentiment, Service
from store.search import index_pending, search_items

CORPUS = Path(__file__).parent.parent / "classifier" / "data" / "corpus"
QUERIES = ["障害", "停止", "マイナ保険証", "つながらない", "繋がらない", "サーバー", "コンビニ交付 停止", "資格確認",
           "e-Tax", "証明書", "カード", "マイナポータル 障害", "暗証番号", "誤登録", "ログイン できない", "機構",
           "J-LIS", "2024", "スマホ", "不具合", "システム障害", "交付", "ひも付け", "紐付け", "保険証 廃止", "点検"]


def _corpus(every: int = 25) -> list[dict]:
    rows = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        rows += [json.loads(line) for line in lines[::every] if line.strip()]
    return rows


def _fill(url: str, rows: list[dict]):
    sessions = make_sessions(url)
    with sessions.begin() as s:
        source = SourceConfig("corpus", "http://127.0.0.1/corpus", publisher="コーパス")
        state = store_items.upsert_source(s, name=source.name, url=source.url, kind="feed", publisher="コーパス",
                                          interval_minutes=60)
        entries = [Entry(url=f"https://corpus.example/{r['id']}", title=r["title"], summary=r.get("text", ""),
                         published=datetime.fromisoformat(r["date"]).replace(hour=n % 24, tzinfo=timezone.utc))
                   for n, r in enumerate(rows)]
        save_entries(s, state.id, source, entries, now=datetime(2025, 1, 1, tzinfo=timezone.utc))
        ids = dict(s.connection().exec_driver_sql("SELECT canonical_url, id FROM items").all())
        labels = {}
        for r in rows:
            item = ids.get(f"https://corpus.example/{r['id']}")
            services = tuple(Service(x) for x in r.get("services", []) if x in {str(v) for v in Service})
            if item is not None and r.get("relevant") and services:
                labels[item] = Label(True, services, Cause.UNKNOWN, Sentiment.NEUTRAL)
        store_labels.save_labels(s, "m-test", labels, now=datetime(2025, 1, 1, tzinfo=timezone.utc))
    index_pending(sessions)
    return sessions


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    import pg

    pg.require_server()
    rows = _corpus()
    lite = _fill(f"sqlite:///{tmp_path_factory.mktemp('search') / 'store.sqlite'}", rows)
    url = pg.create_database()
    postgres = _fill(url, rows)
    yield lite, postgres
    postgres.kw["bind"].dispose()
    pg.drop_database(url)


def _hits(sessions, query: str, **kw) -> list[tuple]:
    with sessions.begin() as s:
        return [(h.url, h.in_title, h.snippet, h.published) for h in search_items(s, query, **kw)]


@pytest.mark.parametrize("query", QUERIES)
def test_both_engines_find_the_same_items_in_the_same_order(both, query):
    lite, postgres = both
    expected = _hits(lite, query, limit=1000)
    assert _hits(postgres, query, limit=1000) == expected
    assert _hits(postgres, query, limit=7) == expected[:7]


def test_the_comparison_has_something_to_compare(both):
    lite, _ = both
    found = {q: len(_hits(lite, q, limit=1000)) for q in QUERIES}
    assert sum(1 for n in found.values() if n) >= len(QUERIES) - 3, found
    assert any(in_title for _, in_title, _, _ in _hits(lite, "障害", limit=1000))
    assert not all(in_title for _, in_title, _, _ in _hits(lite, "障害", limit=1000))


@pytest.mark.parametrize("service", ["health_insurance", "portal", "card"])
def test_both_engines_filter_by_service_and_date_alike(both, service):
    lite, postgres = both
    since = datetime(2023, 1, 1, tzinfo=timezone.utc)
    for query in ("障害", "停止", "カード", "マイナ保険証"):
        expected = _hits(lite, query, service=service, since=since, limit=1000)
        assert _hits(postgres, query, service=service, since=since, limit=1000) == expected


@pytest.mark.parametrize("window", [1, 7, 150])
def test_postgresql_gives_the_same_hits_whether_the_newest_documents_suffice_or_not(both, monkeypatch, window):
    """PostgreSQL walks the newest documents first and falls back on its GIN index: the same hits either way."""
    import store.dialect

    lite, postgres = both
    monkeypatch.setattr(store.dialect, "SEARCH_WINDOW", window)
    for query in QUERIES:
        expected = _hits(lite, query, limit=1000)
        assert _hits(postgres, query, limit=3) == expected[:3], query
        assert _hits(postgres, query, limit=1000) == expected, query
