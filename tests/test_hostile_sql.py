"""`mynawatch sql` bounded: rows streamed up to a limit, a statement timeout, capped cells, read-only PRAGMAs
and search-index reads allowed, writes refused with the file unchanged, and the store path opened exactly;
`search` refuses a limit below 1 and an unknown service. What is not about SQLite's own files and PRAGMAs
runs on PostgreSQL too, where the server refuses writes, DDL, COPY ... TO PROGRAM and server files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

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


def three_items(s) -> None:
    """A feed source and three items of a portal outage (T0) in the session's store."""
    source = SourceConfig("src", "http://127.0.0.1/feed", publisher="NHK")
    state = store_items.upsert_source(s, name="src", url=source.url, kind="feed", publisher="NHK", interval_minutes=60)
    save_entries(s, state.id, source, [Entry(url=f"https://example.com/{n}", title=f"マイナポータル障害 {n}",
                                             summary="アクセス集中", published=T0) for n in range(3)], now=T0)


def _make_store(folder):
    path = folder / "store.sqlite"
    sessions = make_sessions(_url(path))
    with sessions.begin() as s:
        three_items(s)
        s.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body)"))
        s.execute(text("INSERT INTO notes (body) VALUES (:a), (zeroblob(20 * 1024 * 1024)), (CAST(x'ff41fe' AS TEXT))"),
                  {"a": "長い" * 5000})
    index_pending(sessions)
    sessions.kw["bind"].dispose()
    return path


def _make_pg_store(url: str, *, big: bool = True) -> str:
    sessions = make_sessions(url)
    with sessions.begin() as s:
        three_items(s)
        s.execute(text("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text)"))
        s.execute(text("INSERT INTO notes (body) VALUES (:a), (repeat('x', :n))"), {"a": "長い" * 5000,
                                                                                 "n": 20 * 1024 * 1024 if big else 10})
    index_pending(sessions)
    sessions.kw["bind"].dispose()
    return url


def _fingerprint(url: str, engine=None) -> dict[str, str]:
    """Every table's rows (and the sequences' positions) as one digest each."""
    own = engine is None
    engine = engine or create_engine(url)
    with engine.connect() as c:
        names = c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars().all()
        out = {n: c.execute(text(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {n} t"))
               .scalar() for n in names}
        out |= {n: str(c.execute(text(f"SELECT last_value FROM {n}")).scalar()) for n in c.execute(text(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")).scalars()}
        out["roles and large objects"] = str(c.execute(text(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'intruder'), "
            "(SELECT count(*) FROM pg_largeobject_metadata)")).one())
    if own:
        engine.dispose()
    return out


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = _make_store(tmp_path / "data")
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "sqlite:///{path}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture(params=("sqlite", "postgresql"))
def any_store(request, tmp_path, monkeypatch):
    """The same store on each engine, named in ./mynawatch.toml; its URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{_make_store(tmp_path / 'data')}"
    else:
        url = _make_pg_store(request.getfixturevalue("pg_store_url"))
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return url


def _lines(capsys) -> tuple[list[str], str]:
    got = capsys.readouterr()
    return got.out.splitlines(), got.err


def test_rows_stop_at_the_default_limit_with_a_note(any_store, capsys):
    assert main(["sql", ENDLESS, "--format", "csv"]) == 0
    out, err = _lines(capsys)
    assert out[0] == "x" and out[1:] == [str(n) for n in range(1, 1001)]
    assert "1000 rows" in err and "--all" in err


def test_limit_and_all(any_store, capsys):
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


def test_a_statement_that_runs_too_long_is_stopped(any_store, capsys):
    started = time.monotonic()
    assert main(["sql", ENDLESS.replace("SELECT x FROM c", "SELECT count(*) FROM c"), "--timeout", "1"]) == 2
    assert time.monotonic() - started < 15
    assert "stopped after 1 s" in capsys.readouterr().err
    started = time.monotonic()
    assert main(["sql", ENDLESS, "--all", "--timeout", "1", "--format", "csv"]) == 2
    assert time.monotonic() - started < 15
    out, err = _lines(capsys)
    assert len(out) > 1000 and "stopped after 1 s" in err and "written before it stopped" in err


def test_big_cells_are_capped_and_cut_in_tables_only(any_store, capsys):
    assert main(["sql", "SELECT id, length(body) FROM notes ORDER BY id"]) == 0
    assert "20971520" in capsys.readouterr().out
    assert main(["sql", "SELECT body FROM notes WHERE id = 2"]) == 2
    assert "longer than 16 MiB" in capsys.readouterr().err
    assert main(["sql", "SELECT body FROM notes WHERE id = 1"]) == 0
    out, _ = _lines(capsys)
    assert out[2].endswith("…") and len(out[2]) <= 31  # 60 display columns of double-width characters
    assert main(["sql", "SELECT body FROM notes WHERE id = 1", "--format", "csv"]) == 0
    assert _lines(capsys)[0][1] == "長い" * 5000
    if not any_store.startswith("sqlite"):
        return
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


@pytest.mark.parametrize("statement", ["VACUUM", "  /* tidy */ vacuum", "-- a note\nVACUUM INTO 'copy.sqlite'"])
def test_a_vacuum_is_refused_in_its_own_name(store, capsys, statement):
    """SQLite runs VACUUM as an ATTACH of its own: the refusal names what was typed, not an ATTACH nobody typed."""
    assert main(["sql", statement]) == 2
    err = capsys.readouterr().err
    assert "refused: VACUUM would change the store" in err and "ATTACH" not in err, err
    assert main(["sql", "ATTACH DATABASE 'other.sqlite' AS o"]) == 2  # a real ATTACH keeps its name
    assert "refused: ATTACH would change the store" in capsys.readouterr().err


def test_json_output_stays_valid_and_names_are_clean(store, capsys):
    assert main(["sql", 'SELECT 9e999 AS a, -9e999 AS b, 1.5 AS "c\x1b[2J\u202e"', "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert json.loads(out, parse_constant=lambda name: pytest.fail(name)) == {"a": "inf", "b": "-inf", "c\x1b[2J\u202e": 1.5}
    assert main(["sql", 'SELECT 1 AS "c\x1b[2J"']) == 0
    assert "\x1b" not in capsys.readouterr().out
    assert main(["sql", "SELECT load_extension('/tmp/x')"]) == 2
    assert "only reads" in capsys.readouterr().err


def test_a_query_that_is_not_utf8_is_a_clear_error(any_store, capsys):
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


def test_a_closed_pipe_ends_quietly(any_store, tmp_path):
    proc = subprocess.run(f'"{sys.executable}" -m mynawatch.cli sql "{ENDLESS}" --all --timeout 20 | head -n 2',
                          shell=True, capture_output=True, timeout=120, cwd=tmp_path, env={**os.environ})
    assert len(proc.stdout.splitlines()) == 2
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()


def test_search_refuses_a_limit_below_one_and_an_unknown_service(any_store, capsys):
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


PG_WRITES = [
    "INSERT INTO sources (name, url, kind, interval_minutes, failure_score, status) VALUES ('x', 'u', 'feed', 1, 0, 'ok')",
    "UPDATE items SET title = 'x'", "DELETE FROM items", "WITH x AS (DELETE FROM items RETURNING 1) SELECT * FROM x",
    "TRUNCATE items CASCADE", "DROP TABLE notes", "CREATE TABLE t (x int)", "ALTER TABLE items ADD COLUMN x int",
    "CREATE TEMP TABLE t AS SELECT * FROM items", "CREATE INDEX ix ON notes (body)", "CREATE ROLE intruder",
    "GRANT ALL ON items TO PUBLIC", "SELECT nextval('items_id_seq')", "SELECT setval('items_id_seq', 1)",
    "DO $$ BEGIN DELETE FROM items; END $$", "SET TRANSACTION READ WRITE", "COPY notes FROM '/etc/hostname'",
    "COPY (SELECT 1) TO PROGRAM 'touch {tmp}/pwned'", "COPY (SELECT 1) TO '{tmp}/copied'",
    "SELECT pg_read_file('/etc/hostname')", "SELECT pg_read_binary_file('/etc/hostname')", "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/hostname')", "SELECT lo_create(0)", "VACUUM", "ANALYZE items", "REINDEX TABLE items",
    "SELECT 1; DELETE FROM items", "LOCK TABLE items IN ACCESS EXCLUSIVE MODE", "ALTER SYSTEM SET work_mem = '1MB'",
    "SELECT pg_reload_conf()", "SELECT set_config('role', 'none', false), pg_read_file('/etc/hostname')",
    "REFRESH MATERIALIZED VIEW x", "CREATE EXTENSION amcheck", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
]


@pytest.fixture(scope="module")
def pg_writes_url():
    """One PostgreSQL store for every refusal below (each checks that it stays as it was)."""
    import pg

    pg.require_server()
    url = _make_pg_store(pg.create_database(), big=False)
    engine = create_engine(url)
    yield url, engine
    engine.dispose()
    pg.drop_database(url)


@pytest.mark.parametrize("statement", PG_WRITES)
def test_postgresql_refuses_writes_ddl_and_server_files_and_the_store_stays(pg_writes_url, tmp_path, monkeypatch,
                                                                           capsys, statement):
    url, engine = pg_writes_url
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    before = _fingerprint(url, engine)
    assert before["roles and large objects"] == "(0, 0)"
    code = main(["sql", statement.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    if "pg_terminate_backend" in statement or "lo_create" in statement:  # allowed to run, leaving nothing behind:
        assert code in (0, 2) and ("refused" in err or err == ""), err  # no session ended, the object rolled back
    else:
        assert code == 2 and ("refused" in err or "failed" in err) and "Traceback" not in err, err
    assert _fingerprint(url, engine) == before  # no row, sequence, role or large object changed
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "copied").exists()
