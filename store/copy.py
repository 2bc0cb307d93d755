"""`mynawatch db copy`: a whole store moved between engines (SQLite -> PostgreSQL and back) without loss.

Every table of the models is copied row by row in id order, in one transaction on the destination (a
failure leaves it as it was); PostgreSQL's id sequences then continue after the copied rows, and the
destination's search index is rebuilt from the copied items (it is derived data). At the end each table's
row count and checksum are computed on both sides and compared.

A checksum is the SHA-256 of a table's rows in primary-key order, each value as the models read it
(aware UTC times, booleans, numbers, text, bytes), so the same rows give the same checksum on either
engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import Engine, Table, create_engine, delete, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError

BATCH = 2000  # rows per INSERT


class CopyError(Exception):
    """The copy was refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class TableCopy:
    """One table after the copy: rows and checksum on each side."""

    name: str
    source_rows: int
    dest_rows: int
    source_checksum: str
    dest_checksum: str

    @property
    def same(self) -> bool:
        return self.source_rows == self.dest_rows and self.source_checksum == self.dest_checksum


def copy_store(source_url: str, dest_url: str, *, replace: bool = False,
               progress: Callable[[str, int], None] | None = None) -> list[TableCopy]:
    """Copy every table of the store at ``source_url`` into the store at ``dest_url`` (made when missing),
    then compare row counts and checksums. CopyError when the destination holds rows (unless ``replace``:
    they are deleted first, in the same transaction), when the source is not a store at the latest schema,
    or when both name the same store."""
    from store.db import make_sessions, open_engine
    from store.migrations import current, head
    from store.search import index_pending
    from store.tables import Base

    if _same_store(source_url, dest_url):
        raise CopyError("the source and the destination are the same store")
    source = _open_source(source_url)
    try:
        with source.connect() as c:
            revision = current(c)
        if revision is None or not inspect(source).has_table("items"):
            raise CopyError(f"{_shown(source_url)} is not a mynawatch store (no schema revision)")
        if revision != head():
            raise CopyError(f"{_shown(source_url)} is at schema {revision}, not {head()}: run `mynawatch db upgrade` "
                            "on it first (with its settings), then copy")
        tables = Base.metadata.sorted_tables
        made = _new_sqlite_file(dest_url)
        try:
            dest = open_engine(dest_url)
        except BaseException:
            _remove_made(made)
            raise
        try:
            with dest.begin() as d:
                filled = [t.name for t in tables if d.execute(select(func.count()).select_from(t)).scalar()]
                if filled and not replace:
                    raise CopyError(f"{_shown(dest_url)} already holds rows ({', '.join(filled)}): give --replace "
                                    "to delete them first, or copy into an empty store")
                for table in reversed(tables):
                    d.execute(delete(table))
                with source.connect() as s:
                    for table in tables:
                        _copy_table(s, d, table, progress)
                _continue_ids(d, tables)
            sessions = make_sessions(dest_url)
            index_pending(sessions)
            sessions.kw["bind"].dispose()
            out = []
            with source.connect() as s, dest.connect() as d:
                for t in tables:
                    (source_rows, source_sum), (dest_rows, dest_sum) = _count_sum(s, t), _count_sum(d, t)
                    out.append(TableCopy(t.name, source_rows, dest_rows, source_sum, dest_sum))
            return out
        except BaseException:
            dest.dispose()
            _remove_made(made)  # a destination file this copy made is not left half made
            raise
        finally:
            dest.dispose()
    finally:
        source.dispose()


def table_checksums(url: str) -> dict[str, tuple[int, str]]:
    """Each model table's (row count, checksum) in the store at ``url``."""
    from store.tables import Base

    engine = _open_source(url)
    try:
        with engine.connect() as c:
            return {t.name: _count_sum(c, t) for t in Base.metadata.sorted_tables if inspect(c).has_table(t.name)}
    finally:
        engine.dispose()


def _open_source(url: str) -> Engine:
    """The source, opened without migrating or indexing it (a copy only reads)."""
    from store.dialect import dialect_for

    try:
        engine = create_engine(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several kinds for a bad URL
        raise CopyError(f"{url!r} is not a database URL ({exc})") from None
    dialect = dialect_for(engine)
    event.listen(engine, "connect", lambda conn, _record: dialect.on_connect(conn))
    return engine


def _copy_table(source, dest, table: Table, progress) -> None:
    order = list(table.primary_key.columns)
    result = source.execution_options(stream_results=True, yield_per=BATCH).execute(select(table).order_by(*order))
    done = 0
    for rows in result.partitions(BATCH):
        try:
            with dest.begin_nested():
                dest.execute(table.insert(), [dict(r._mapping) for r in rows])
        except (DataError, IntegrityError) as exc:  # the rows refused (a full disk and the like go up as they are)
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise CopyError(f"{table.name}: rows {done + 1} to {done + len(rows)} cannot be written to the "
                            f"destination ({detail}); nothing was copied") from None
        done += len(rows)
        if progress:
            progress(table.name, done)


def _new_sqlite_file(url: str):
    """The destination's SQLite file when this copy is about to make it (None otherwise)."""
    from pathlib import Path

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def _remove_made(path) -> None:
    if path is None:
        return
    for end in ("", "-wal", "-shm", "-journal", "-open.lock"):
        try:
            path.with_name(path.name + end).unlink(missing_ok=True)
        except OSError:
            pass


def _continue_ids(dest, tables: list[Table]) -> None:
    """PostgreSQL: each id sequence continues after the highest copied id (SQLite needs nothing)."""
    if dest.dialect.name != "postgresql":
        return
    for table in tables:
        for column in table.primary_key.columns:
            sequence = dest.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                    {"t": table.name, "c": column.name}).scalar()
            if sequence:
                dest.execute(text(f"SELECT setval(:s, coalesce((SELECT max({column.name}) FROM {table.name}), 0) + 1, "
                                  "false)"), {"s": sequence})


def _count_sum(connection, table: Table) -> tuple[int, str]:
    digest, n = hashlib.sha256(), 0
    rows = connection.execution_options(stream_results=True, yield_per=BATCH).execute(
        select(table).order_by(*table.primary_key.columns))
    for row in rows:
        digest.update(json.dumps([_plain(v) for v in row], ensure_ascii=False).encode() + b"\n")
        n += 1
    return n, digest.hexdigest()


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)
    return value


def _same_store(a: str, b: str) -> bool:
    try:
        ua, ub = make_url(a), make_url(b)
    except Exception:  # noqa: BLE001 - a bad URL fails later with its own message
        return False
    if ua.get_backend_name() == ub.get_backend_name() == "sqlite":
        from pathlib import Path

        return bool(ua.database) and bool(ub.database) and Path(ua.database).resolve() == Path(ub.database).resolve()
    return (ua.get_backend_name(), ua.host, ua.port, ua.database) == (ub.get_backend_name(), ub.host, ub.port, ub.database)


def _shown(url: str) -> str:
    """A store as people name it: the SQLite file, or the URL without its password."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001
        return url
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)
