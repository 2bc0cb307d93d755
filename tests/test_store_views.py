"""Views analysts rely on, Japanese search, read-only SQL, backup and checks, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from store import items as store_items
from store import labels as store_labels
from store.records import Cause, Entry, Label, Sentiment, Service
from store.search import index_pending, pending_count, search_items
from store.sql import ReadOnlyError, run_read_only

T0 = datetime(2024, 10, 1, 23, 30, tzinfo=timezone.utc)  # 2024-10-02 08:30 in Tokyo

# Pinned: renaming or dropping a column of a view breaks analysts' queries, so it must fail here first.
VIEW_COLUMNS = {
    "item_labels_current": ["item_id", "relevant", "cause", "sentiment", "confidence", "model_version",
                            "labeled_by", "classification_id"],
    "item_labels_current_services": ["item_id", "service"],
    "items_labeled": ["item_id", "published_at", "day", "publisher", "title", "url", "story_id", "source", "gate",
                      "relevant", "services", "cause", "sentiment", "labeled_by", "confidence"],
    "daily_service_counts": ["day", "service", "items", "stories", "publishers"],
    "daily_cause_counts": ["day", "cause", "items", "stories"],
    "daily_sentiment_counts": ["day", "sentiment", "items", "stories"],
    "stories_with_publishers": ["story_id", "title", "first_seen_at", "items", "publishers", "first_published_at",
                                "last_published_at"],
    "story_publishers": ["story_id", "publisher", "first_published_at", "items"],
}

ENTRIES = [
    ("共同通信", "https://kyodo.example/1", "マイナポータルつながりにくく　アクセス集中か", "午前から利用しにくい状態が続いた。"),
    ("東京新聞", "https://tokyo.example/1", "マイナポータル、つながりにくく　アクセス集中か", "午前から利用しにくい状態が続いた。"),
    ("NHK", "https://nhk.example/1", "マイナ保険証で資格確認できず　全国の病院", "システム障害で窓口が混乱した。"),
    ("ITmedia", "https://itmedia.example/1", "コンビニ交付が一時停止", "回線の障害でマイナンバーカードによる証明書交付が停止した。"),
    ("経済新聞", "https://keizai.example/1", "日銀、マイナス金利を解除", "17年ぶりの利上げ。"),
]
LABELS = [
    Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE),
    Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE),
    Label(True, (Service.HEALTH_INSURANCE,), Cause.UNKNOWN, Sentiment.NEGATIVE),
    Label(True, (Service.CONVENIENCE_STORE, Service.CARD), Cause.NETWORK, Sentiment.NEGATIVE),
    Label(False, (), Cause.NONE, Sentiment.NEUTRAL),
]


@pytest.fixture
def store(tmp_path, sessions):
    with sessions.begin() as s:
        for n, (publisher, url, title, text) in enumerate(ENTRIES):
            source = SourceConfig(f"s{n}", f"http://127.0.0.1/{n}", publisher=publisher)
            state = store_items.upsert_source(s, name=source.name, url=source.url, kind="feed", publisher=publisher,
                                              interval_minutes=60)
            save_entries(s, state.id, source, [Entry(url=url, title=title, summary=text, published=T0)], now=T0)
        ids = sorted(i.item_id for i in store_items.items_to_classify(s, "m-test", everything=True))
        gate_rejected = {r.item_id for r in store_labels.labeled_items(s, "none", T0, T0.replace(hour=23))}
        store_labels.save_labels(s, "m-test", dict(zip(sorted(ids), LABELS[:len(ids)])), now=T0)
    assert index_pending(sessions) == len(ENTRIES)
    return tmp_path / "store.sqlite", sessions


def test_new_items_wait_for_the_batch_index_which_then_follows_edits_and_deletes(sessions):
    def add(n: int, title: str) -> None:
        with sessions.begin() as s:
            source = SourceConfig(f"b{n}", f"http://127.0.0.1/b{n}", publisher=f"紙{n}")
            state = store_items.upsert_source(s, name=source.name, url=source.url, kind="feed", publisher=source.publisher,
                                              interval_minutes=60)
            save_entries(s, state.id, source, [Entry(url=f"https://b.example/{n}", title=title, summary="",
                                                     published=T0)], now=T0)

    def found(query: str) -> list[int]:
        with sessions.begin() as s:
            return [h.item_id for h in search_items(s, query)]

    add(1, "マイナポータルで障害")
    assert found("障害") == []  # collected, not indexed yet
    with sessions.begin() as s:
        assert pending_count(s) == 1
    assert index_pending(sessions) == 1
    (item,) = found("障害")
    with sessions.begin() as s:
        s.connection().exec_driver_sql("UPDATE items SET title = 'マイナポータルが復旧' WHERE id = ?", (item,))
    assert found("障害") == [] and found("復旧") == [item]  # an indexed item follows its edits at once
    for n, title in enumerate(["コンビニ交付が停止", "コンビニ交付を再開", "コンビニ交付の停止を延長"], 2):
        add(n, title)
    assert index_pending(sessions, batch=2) == 3  # several batches, each its own transaction
    assert len(found("コンビニ交付")) == 3
    with sessions.begin() as s:
        s.connection().exec_driver_sql("DELETE FROM items WHERE id = ?", (item,))
        assert pending_count(s) == 0
    assert found("復旧") == []


def test_views_keep_their_columns(store):
    path, _ = store
    c = sqlite3.connect(path)
    for view, columns in VIEW_COLUMNS.items():
        cursor = c.execute(f"SELECT * FROM {view} LIMIT 0")
        assert [d[0] for d in cursor.description] == columns, view


def test_views_count_stories_publishers_and_human_labels_win(store):
    path, sessions = store
    c = sqlite3.connect(path)
    rows = c.execute("SELECT day, service, items, stories, publishers FROM daily_service_counts ORDER BY service").fetchall()
    assert ("2024-10-02", "portal", 2, 1, 2) in rows  # two outlets, one story
    assert ("2024-10-02", "card", 1, 1, 1) in rows
    assert not [r for r in rows if r[1] not in {s.value for s in Service}]
    item = c.execute("SELECT item_id FROM items_labeled WHERE title LIKE 'マイナ保険証%'").fetchone()[0]
    with sessions.begin() as s:
        store_labels.save_labels(s, store_labels.HUMAN, {item: Label(True, (Service.HEALTH_INSURANCE,), Cause.DEFECT,
                                                                     Sentiment.NEGATIVE)}, now=T0)
    assert c.execute("SELECT cause, labeled_by FROM items_labeled WHERE item_id = ?", (item,)).fetchone() == ("defect", "human")
    assert c.execute("SELECT items, publishers FROM stories_with_publishers ORDER BY items DESC").fetchone() == (2, 2)


@pytest.mark.parametrize("query,title_start", [("障害", "コンビニ交付"), ("停止", "コンビニ交付"),
                                               ("マイナ保険証", "マイナ保険証"), ("アクセス集中", "マイナポータル")])
def test_search_finds_short_words_inside_compounds(store, query, title_start):
    _, sessions = store
    with sessions.begin() as s:
        hits = search_items(s, query)
    assert hits and any(h.title.startswith(title_start) for h in hits)


def test_search_ranks_title_matches_first_and_filters(store):
    _, sessions = store
    with sessions.begin() as s:
        hits = search_items(s, "障害")
        assert [h.in_title for h in hits] == sorted([h.in_title for h in hits], reverse=True)
        assert hits[0].in_title is False or "障害" in hits[0].title
        assert "[障害]" in hits[0].snippet
        portal = search_items(s, "アクセス集中", service="portal", since=datetime(2024, 10, 1, tzinfo=timezone.utc))
        assert len(portal) == 2
        assert search_items(s, "アクセス集中", service="card") == []


@pytest.mark.parametrize("statement", [
    "INSERT INTO sources (name, url, kind, interval_minutes, failure_score, status) VALUES ('x', 'u', 'feed', 1, 0, 'ok')",
    "UPDATE items SET title = 'x'",
    "DELETE FROM items",
    "DROP TABLE items",
    "ATTACH DATABASE ':memory:' AS other",
    "CREATE TABLE t (x)",
    "PRAGMA journal_mode = DELETE",
])
def test_sql_refuses_writes_and_leaves_the_store_unchanged(store, statement):
    path, _ = store
    before = path.read_bytes()
    with pytest.raises(ReadOnlyError, match="read-only"):
        run_read_only(f"sqlite:///{path}", statement)
    c = sqlite3.connect(path)
    assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 5
    assert c.execute("SELECT count(*) FROM items WHERE title = 'x'").fetchone()[0] == 0
    c.close()
    assert path.read_bytes() == before


def test_sql_command_prints_table_csv_and_json(store, tmp_path, monkeypatch, capsys):
    path, _ = store
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "sqlite:///{path}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    q = "SELECT service, stories FROM daily_service_counts WHERE service = 'portal'"
    assert main(["sql", q]) == 0
    assert "portal" in capsys.readouterr().out
    assert main(["sql", q, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["service,stories", "portal,1"]
    assert main(["sql", q, "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == '{"service": "portal", "stories": 1}'
    assert main(["sql", "DELETE FROM items"]) == 2
    assert "read-only" in capsys.readouterr().err


def test_backup_is_a_consistent_copy_and_check_passes(store, tmp_path, monkeypatch, capsys):
    path, _ = store
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "sqlite:///{path}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "backup", str(tmp_path / "copy.sqlite")]) == 0
    copy = sqlite3.connect(tmp_path / "copy.sqlite")
    assert copy.execute("SELECT count(*) FROM items").fetchone()[0] == 5
    assert main(["db", "check"]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
