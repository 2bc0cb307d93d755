"""Search finds spelling variants of a word (Sudachi's normalized forms) and brackets them as written, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, event

from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from store import items as store_items
from store.db import make_sessions, open_engine
from store.dialect import SQLite
from store.migrations import migrate
from store.records import Entry
from store.search import highlight, index_pending, search_items

T0 = datetime(2024, 10, 1, 23, 30, tzinfo=timezone.utc)

TITLES = {  # three spellings of "cannot connect", one unrelated title
    "kana": "マイナポータルがつながらない状態",
    "kanji": "マイナポータルが繋がらない　午前中",
    "kanji_nai": "マイナポータル繋がら無い",
    "other": "コンビニ交付が一時停止",
}


def _add(sessions, titles: dict[str, str], summaries: dict[str, str] | None = None) -> dict[str, int]:
    ids = {}
    with sessions.begin() as s:
        for n, (key, title) in enumerate(titles.items()):
            source = SourceConfig(f"v{key}", f"http://127.0.0.1/{key}", publisher=f"紙{n}")
            state = store_items.upsert_source(s, name=source.name, url=source.url, kind="feed",
                                              publisher=source.publisher, interval_minutes=60)
            save_entries(s, state.id, source, [Entry(url=f"https://v.example/{key}", title=title,
                                                     summary=(summaries or {}).get(key, ""), published=T0)], now=T0)
        for row in s.connection().exec_driver_sql("SELECT id, canonical_url FROM items"):
            ids[row[1].rsplit("/", 1)[1]] = row[0]
    return ids


@pytest.mark.parametrize("query", ["つながらない", "繋がらない", "繋がら無い"])
def test_every_spelling_finds_the_same_items(engine_sessions, query):
    sessions = engine_sessions
    ids = _add(sessions, TITLES)
    index_pending(sessions)
    with sessions.begin() as s:
        found = {h.item_id for h in search_items(s, query)}
    assert found == {ids["kana"], ids["kanji"], ids["kanji_nai"]}


def test_title_highlights_stay_on_the_text_as_written(engine_sessions):
    sessions = engine_sessions
    _add(sessions, TITLES)
    index_pending(sessions)
    with sessions.begin() as s:
        hits = {h.title: h for h in search_items(s, "繋がらない")}
    assert all(h.in_title for h in hits.values())
    assert highlight(TITLES["kana"], "繋がらない") == "マイナポータルが[つながらない]状態"
    assert highlight(TITLES["kanji_nai"], "つながらない") == "マイナポータル[繋がら無い]"
    assert "[繋がらない]" in hits[TITLES["kanji"]].snippet


def test_a_body_match_on_a_variant_is_bracketed_in_the_body_as_written(engine_sessions):
    sessions = engine_sessions
    ids = _add(sessions, {"body": "マイナ保険証のお知らせ"},
               {"body": "午前から病院の端末がｻｰﾊﾞｰに繋がら無い状態が続いた。"})
    index_pending(sessions)
    with sessions.begin() as s:
        (hit,) = search_items(s, "つながらない サーバー")
    assert hit.item_id == ids["body"] and not hit.in_title
    assert "[ｻｰﾊﾞｰ]" in hit.snippet and "[繋がら無い]" in hit.snippet  # not the normalized サーバー, 繋がる


def test_the_cli_prints_the_same_items_for_every_spelling(tmp_path, capsys, store_url):
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{store_url}"\n', encoding="utf-8")
    _add(make_sessions(store_url), TITLES)
    outputs = []
    for query in ("つながらない", "繋がらない", "繋がら無い"):
        assert main(["--config", str(tmp_path / "mynawatch.toml"), "search", query]) == 0
        out = capsys.readouterr().out
        outputs.append(sorted(line for line in out.splitlines() if line.startswith("20")))
        assert "3 item(s)" in out
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_store_indexed_before_variants_is_rebuilt_by_its_migration(tmp_path):
    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda conn, _r: SQLite().on_connect(conn))
    migrate(engine, to="0004")
    with engine.begin() as c:  # the index as stores before 0006 had it: surfaces only
        c.exec_driver_sql("CREATE VIRTUAL TABLE items_fts USING fts5(title, body, "
                          "tokenize = 'unicode61 remove_diacritics 0')")
    engine.dispose()
    sessions = make_sessions(f"sqlite:///{path}")  # migrates to the head on open
    ids = _add(sessions, TITLES)
    assert index_pending(sessions) == len(TITLES)
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(items_fts)")]
    assert columns == ["title", "body", "title_norm", "body_norm"]
    with sessions.begin() as s:
        assert {h.item_id for h in search_items(s, "繋がら無い")} == {ids["kana"], ids["kanji"], ids["kanji_nai"]}
    open_engine(f"sqlite:///{path}")  # opening again keeps the index as it is
    assert index_pending(sessions) == 0
