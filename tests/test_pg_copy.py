"""`mynawatch db copy`: SQLite -> PostgreSQL -> SQLite leaves every table's row count and checksum as it
was; a destination that holds rows is refused unless --replace; the copy goes on working (ids, search)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Boolean, DateTime, Float, Integer, LargeBinary, String, Text, create_engine, text

from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from store import items as store_items
from store.copy import copy_store, table_checksums
from store.db import make_sessions
from store.records import Entry
from store.search import search_items
from store.tables import Base, UTCDateTime

ROWS = 12
T0 = datetime(2024, 10, 1, 23, 30, 0, 123456, tzinfo=timezone.utc)
FLOATS = [0.1, -2.5e-300, 1e300, 3.0, 0.0]


def _value(column, i: int, made: dict[str, list[dict]]):
    """Row ``i``'s value for ``column``: every type the models use, awkward text and bytes, NULL where allowed;
    a reference takes the value of a parent row made before."""
    if column.foreign_keys:
        target = next(iter(column.foreign_keys)).column
        parents = made[target.table.name]
        return parents[i % len(parents)][target.name]
    if column.primary_key and isinstance(column.type, Integer):
        return i + 1
    if column.nullable and i % 3 == 2:
        return None
    kind = column.type
    if isinstance(kind, (UTCDateTime, DateTime)) or getattr(kind, "impl", None) is DateTime:
        return T0 + timedelta(hours=i, microseconds=i * 7)
    if isinstance(kind, Boolean):
        return i % 2 == 0
    if isinstance(kind, Integer):
        return i * 1000 - 7
    if isinstance(kind, Float):
        return FLOATS[i % len(FLOATS)]
    if isinstance(kind, LargeBinary):
        return bytes([i % 256, 0, 255, 10]) + "マイナ".encode()
    if isinstance(kind, (String, Text)):
        value = f"{i}-{column.name}-マイナ保険証 'quote' \"dq\" \\ back\nline\t😀"
        return value[:kind.length] if getattr(kind, "length", None) else value
    raise AssertionError(f"no test value for {column.table.name}.{column.name} ({kind!r})")


def _fill_every_table(url: str) -> None:
    """ROWS rows in every table of the models (tables added later are filled too), then real items."""
    sessions = make_sessions(url)
    made: dict[str, list[dict]] = {}
    with sessions.begin() as s:
        for table in Base.metadata.sorted_tables:
            made[table.name] = [{c.name: _value(c, i, made) for c in table.columns} for i in range(ROWS)]
            s.execute(table.insert(), made[table.name])
    with sessions.begin() as s:  # ids of the store's own inserts continue after the rows above
        source = SourceConfig("real", "http://127.0.0.1/real", publisher="NHK")
        state = store_items.upsert_source(s, name="real", url=source.url, kind="feed", publisher="NHK", interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url=f"https://real.example/{n}", title=f"マイナポータルで障害 {n}",
                                                 summary="アクセス集中でつながりにくい", published=T0) for n in range(3)],
                     now=T0)
    sessions.kw["bind"].dispose()


@pytest.fixture
def sqlite_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    _fill_every_table(url)
    return url


def test_sqlite_to_postgresql_and_back_keeps_every_row(sqlite_store, pg_url, tmp_path):
    original = table_checksums(sqlite_store)
    assert {name for name, (rows, _) in original.items() if rows >= ROWS} == {t.name for t in Base.metadata.sorted_tables}
    there = copy_store(sqlite_store, pg_url)
    assert all(t.same for t in there), [t for t in there if not t.same]
    assert table_checksums(pg_url) == original
    back_url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    back = copy_store(pg_url, back_url)
    assert all(t.same for t in back)
    assert table_checksums(back_url) == original

    for url in (pg_url, back_url):  # the copies work: new ids follow the copied ones, search finds copied items
        sessions = make_sessions(url)
        with sessions.begin() as s:
            source = SourceConfig("later", "http://127.0.0.1/later", publisher="共同通信")
            state = store_items.upsert_source(s, name="later", url=source.url, kind="feed", publisher="共同通信",
                                              interval_minutes=60)
            assert state.id == ROWS + 2
            save_entries(s, state.id, source, [Entry(url="https://later.example/1", title="コンビニ交付が停止",
                                                     summary="", published=T0)], now=T0)
        with sessions.begin() as s:
            assert len(search_items(s, "障害")) == 3
        sessions.kw["bind"].dispose()


def test_a_destination_with_rows_is_refused_unless_replace(sqlite_store, pg_url, tmp_path, capsys):
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    _fill_every_table(other)
    engine = create_engine(other)
    with engine.begin() as c:
        c.execute(text("DELETE FROM classification_services WHERE classification_id = 1"))
    engine.dispose()
    assert main(["db", "copy", sqlite_store, pg_url]) == 0
    out = capsys.readouterr().out
    assert "counts and checksums match" in out and "items" in out
    assert main(["db", "copy", other, pg_url]) == 2
    err = capsys.readouterr().err
    assert "already holds rows" in err and "--replace" in err and "Traceback" not in err
    assert table_checksums(pg_url) == table_checksums(sqlite_store)  # untouched
    assert main(["db", "copy", other, pg_url, "--replace"]) == 0
    assert table_checksums(pg_url) == table_checksums(other)
    assert main(["db", "copy", sqlite_store, sqlite_store]) == 2
    assert "same store" in capsys.readouterr().err


def test_a_row_the_destination_cannot_hold_leaves_it_empty(tmp_path, pg_url, capsys):
    url = f"sqlite:///{tmp_path / 'nul.sqlite'}"
    _fill_every_table(url)
    sessions = make_sessions(url)
    with sessions.begin() as s:
        s.execute(text("UPDATE items SET title = 'a' || char(0) || 'b' WHERE id = 1"))  # PostgreSQL text has no NUL
    sessions.kw["bind"].dispose()
    assert main(["db", "copy", url, pg_url]) == 2
    err = capsys.readouterr().err
    assert "items" in err and "nothing was copied" in err and "Traceback" not in err
    assert all(rows == 0 for rows, _ in table_checksums(pg_url).values())
