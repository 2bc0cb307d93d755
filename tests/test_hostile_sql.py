"""`mynawatch sql` bounded: rows streamed up to a limit, a statement timeout, capped cells, read-only PRAGMAs
and search-index reads allowed, writes refused with the file unchanged, and the store path opened exactly;
`search` refuses a limit below 1 and an unknown service."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from store import items as store_items
from store.db import make_sessions
from store.records import Entry, Service
from store.dialect import heap_limit
from store.search import index_pending
from store.sql import Limits, ReadOnlyError, run_read_only

T0 = datetime(2024, 10, 2, 2, 0, tzinfo=timezone.utc)
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"


def _url(path) -> str:
    """A store URL for any path: '%' and '?' quoted the way SQLAlchemy reads them back."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def _make_store(folder):
    path = folder / "store.sqlite"
    sessions = make_sessions(_url(path))
    with sessions.begin() as s:
        source = SourceConfig("src", "http://127.0.0.1/feed", publisher="NHK")
        state = store_items.upsert_source(s, name="src", url=source.url, kind="feed", publisher="NHK", interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url=f"https://example.com/{n}", title=f"マイナポータル障害 {n}",
                                                 summary="アクセス集中", published=T0) for n in range(3)], now=T0)
        s.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body)"))
        s.execute(text("INSERT INTO notes (body) VALUES (:a), (zeroblob(20 * 1024 * 1024)), (CAST(x'ff41fe' AS TEXT))"),
                  {"a": "長い" * 5000})
    index_pending(sessions)
    sessions.kw["bind"].dispose()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = _make_store(tmp_path / "data")
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "sqlite:///{path}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


def _lines(capsys) -> tuple[list[str], str]:
    got = capsys.readouterr()
    return got.out.splitlines(), got.err


def test_rows_stop_at_the_default_limit_with_a_note(store, capsys):
    assert main(["sql", ENDLESS, "--format", "csv"]) == 0
    out, err = _lines(capsys)
    assert out[0] == "x" and out[1:] == [str(n) for n in range(1, 1001)]
    assert "1000 rows" in err and "--all" in err


def test_limit_and_all(store, capsys):
    assert main(["sql", ENDLESS, "--limit", "5"]) == 0
    out, err = _lines(capsys)
    assert out[2:] == ["1", "2", "3", "4", "5", "(5 rows)"] and "left out" in err
    bounded = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) SELECT x FROM c"
    assert main(["sql", bounded, "--all", "--format", "json"]) == 0
    out, err = _lines(capsys)
    assert len(out) == 5000 and err == ""
    assert main(["sql", bounded, "--limit", "5000", "--format", "csv"]) == 0
    out, err = _lines(capsys)
    assert len(out) == 5001 and err == ""  # exactly the limit: nothing was left out
    for bad in ("0", "-1"):
        assert main(["sql", "SELECT 1", "--limit", bad]) == 2
        assert "at least 1" in capsys.readouterr().err


def test_a_statement_that_runs_too_long_is_stopped(store, capsys):
    started = time.monotonic()
    assert main(["sql", ENDLESS.replace("SELECT x FROM c", "SELECT count(*) FROM c"), "--timeout", "1"]) == 2
    assert time.monotonic() - started < 15
    assert "stopped after 1 s" in capsys.readouterr().err
    started = time.monotonic()
    assert main(["sql", ENDLESS, "--all", "--timeout", "1", "--format", "csv"]) == 2
    assert time.monotonic() - started < 15
    out, err = _lines(capsys)
    assert len(out) > 1000 and "stopped after 1 s" in err and "written before it stopped" in err


def test_big_cells_are_capped_and_cut_in_tables_only(store, capsys):
    assert main(["sql", "SELECT id, length(body) FROM notes ORDER BY id"]) == 0
    assert "20971520" in capsys.readouterr().out
    assert main(["sql", "SELECT body FROM notes WHERE id = 2"]) == 2
    assert "longer than 16 MiB" in capsys.readouterr().err
    assert main(["sql", "SELECT body FROM notes WHERE id = 1"]) == 0
    out, _ = _lines(capsys)
    assert out[2].endswith("…") and len(out[2]) <= 31  # 60 display columns of double-width characters
    assert main(["sql", "SELECT body FROM notes WHERE id = 1", "--format", "csv"]) == 0
    assert _lines(capsys)[0][1] == "長い" * 5000
    assert main(["sql", "SELECT body FROM notes WHERE id = 3", "--format", "json"]) == 0
    assert _lines(capsys)[0] == ['{"body": "\ufffdA\ufffd"}']  # not UTF-8 in the store: shown, not an error


def test_sqlite_memory_is_capped_and_the_cap_lifted_afterwards(store):
    query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION SELECT x + 1 FROM c) SELECT count(*) FROM c"
    started = time.monotonic()
    with pytest.raises(ReadOnlyError, match="more than 32 MiB of memory"):
        run_read_only(f"sqlite:///{store}", query, limits=Limits(memory_bytes=32 << 20, seconds=60))
    assert time.monotonic() - started < 30
    assert heap_limit() == 0  # the process-wide cap is lifted again for the rest of the process
    assert run_read_only(f"sqlite:///{store}", "SELECT count(*) FROM items") == (["count(*)"], [(3,)])


@pytest.mark.parametrize("query, expect", [
    ("PRAGMA table_info(items)", "canonical_url"),
    ("PRAGMA table_info('sources')", "interval_minutes"),
    ("PRAGMA main.table_xinfo(items)", "title"),
    ("SELECT name FROM pragma_table_info('items') WHERE name = 'title'", "title"),
    ("PRAGMA integrity_check", "ok"),
    ("PRAGMA quick_check", "ok"),
    ("PRAGMA index_list(items)", "ix_items"),
    ("PRAGMA foreign_key_list(items)", "sources"),
    ("PRAGMA foreign_key_check", "(0 rows)"),
    ("PRAGMA user_version", "user_version"),
    ("PRAGMA journal_mode", "wal"),
    ("SELECT count(*) FROM items_fts", "3"),
    ("SELECT rowid FROM items_fts WHERE items_fts MATCH '障害' ORDER BY rowid", "(3 rows)"),
    ("SELECT * FROM items_fts_config", "version"),
    ("SELECT count(*) FROM items_fts_data", "(1 row)"),
])
def test_read_only_pragmas_and_every_table_can_be_read(store, capsys, query, expect):
    assert main(["sql", query]) == 0, capsys.readouterr().err
    assert expect in capsys.readouterr().out


@pytest.mark.parametrize("statement", [
    "PRAGMA user_version = 7", "PRAGMA journal_mode = DELETE", "PRAGMA writable_schema = ON", "PRAGMA query_only = OFF",
    "PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA optimize", "PRAGMA integrity_check; DELETE FROM items",
    "INSERT INTO items_fts(items_fts) VALUES ('rebuild')", "DELETE FROM items_fts", "UPDATE sqlite_master SET sql = ''",
    "VACUUM", "REINDEX", "ANALYZE", "DELETE FROM notes", "CREATE TEMP TABLE t AS SELECT * FROM items",
    "ATTACH DATABASE 'other.sqlite' AS o", "WITH x AS (SELECT 1) DELETE FROM items",
])
def test_writes_stay_refused_and_the_file_unchanged(store, capsys, statement):
    before = store.read_bytes()
    assert main(["sql", statement]) == 2
    err = capsys.readouterr().err
    assert ("read-only" in err or "failed" in err) and "Traceback" not in err
    assert store.read_bytes() == before
    c = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 3
    c.close()


def test_json_output_stays_valid_and_names_are_clean(store, capsys):
    assert main(["sql", 'SELECT 9e999 AS a, -9e999 AS b, 1.5 AS "c\x1b[2J\u202e"', "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert json.loads(out, parse_constant=lambda name: pytest.fail(name)) == {"a": "inf", "b": "-inf", "c\x1b[2J\u202e": 1.5}
    assert main(["sql", 'SELECT 1 AS "c\x1b[2J"']) == 0
    assert "\x1b" not in capsys.readouterr().out
    assert main(["sql", "SELECT load_extension('/tmp/x')"]) == 2
    assert "only reads" in capsys.readouterr().err


def test_a_query_that_is_not_utf8_is_a_clear_error(store, capsys):
    assert main(["sql", "SELECT '\udcff'"]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err


def test_a_store_path_with_uri_characters_opens_that_file(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "a #b 100% ?c"
    path = _make_store(folder)
    decoy = tmp_path / "a "  # where an unquoted file: URI stops at the '#'
    c = sqlite3.connect(decoy)
    c.execute("CREATE TABLE items (title)")
    c.execute("INSERT INTO items VALUES ('decoy')")
    c.commit()
    c.close()
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{_url(path)}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["sql", "SELECT title FROM items ORDER BY id", "--format", "csv"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == ["title"] + [f"マイナポータル障害 {n}" for n in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a ", "a #b 100% ?c", "mynawatch.toml"]  # no stray folder


def test_a_closed_pipe_ends_quietly(store, tmp_path):
    proc = subprocess.run(f'"{sys.executable}" -m mynawatch.cli sql "{ENDLESS}" --all --timeout 20 | head -n 2',
                          shell=True, capture_output=True, timeout=120, cwd=tmp_path, env={**os.environ})
    assert len(proc.stdout.splitlines()) == 2
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()


def test_search_refuses_a_limit_below_one_and_an_unknown_service(store, capsys):
    for limit in ("0", "-1"):
        assert main(["search", "障害", "--limit", limit]) == 2
        assert "at least 1" in capsys.readouterr().err
    assert main(["search", "障害", "--service", "portl"]) == 2
    err = capsys.readouterr().err
    assert "portl" in err and all(str(s) in err for s in Service)
    assert main(["search", "障害", "--limit", str(10**30)]) == 2
    assert "at most" in capsys.readouterr().err
    assert main(["search", "\udcff障害\x1b"]) == 0  # bytes that were not UTF-8 on the command line, an ESC
    assert capsys.readouterr().out.splitlines()[-1].startswith("3 item(s)")
    assert main(["search", "障害", "--limit", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("2 item(s)")
    assert main(["search", "障害", "--service", "portal"]) == 0
