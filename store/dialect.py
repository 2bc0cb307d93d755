"""Everything database-specific, behind one small interface: connection setup, inserts that ignore or
update duplicates, the Japanese search index, read-only connections, online backup, integrity checks and
the few SQL expressions that differ (hour and Tokyo-day buckets, joined strings).

SQLite is the default; PostgreSQL (``postgresql+psycopg://``) has the same interface. The models, views and
queries elsewhere are plain SQLAlchemy/SQL and ask this module for what differs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache, partial
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, String, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from store.clock import SQL_INTERVAL, SQL_OFFSET
from store.views import CURRENT


@lru_cache(maxsize=1)
def _tokenizer():
    from sudachipy import Dictionary, SplitMode

    return Dictionary().tokenizer(SplitMode.A)


_SKIP: dict[int, bool] = {}  # part-of-speech id -> punctuation or space
# Sudachi writes the auxiliary ない and the adjective 無い as two normalized forms; a search treats them
# as one word (繋がらない, 繋がら無い).
_FOLD = {"ない": "無い"}


def unit_spans(value: str) -> list[tuple[int, int, str, str]]:
    """(start, end, surface, normalized form) of each Sudachi short unit (split mode A) of ``value``,
    punctuation and spaces left out: offsets into ``value`` as given, surface and form NFKC and lower case."""
    out = []
    tok = _tokenizer()
    for start in range(0, len(value), 4000):
        for m in tok.tokenize(value[start:start + 4000]):
            pid = m.part_of_speech_id()
            skip = _SKIP.get(pid)
            if skip is None:
                skip = _SKIP[pid] = m.part_of_speech()[0] in ("補助記号", "空白")
            if not skip:
                surface = unicodedata.normalize("NFKC", m.surface()).lower().replace('"', "")
                normal = unicodedata.normalize("NFKC", m.normalized_form()).lower().replace('"', "")
                out.append((start + m.begin(), start + m.end(), surface, _FOLD.get(normal, normal)))
    return out


@lru_cache(maxsize=8)  # the index asks for surfaces and normalized forms of the same text in turn
def search_units(value: str) -> tuple[tuple[str, str], ...]:
    """(surface, normalized form) of each short unit of ``value`` after NFKC and lower case."""
    return tuple((surface, normal) for _, _, surface, normal in
                 unit_spans(unicodedata.normalize("NFKC", value).lower()))


def search_tokens(value: str | None) -> str:
    """Text as space-separated Sudachi short units (split mode A), NFKC and lower case.

    Short units make one- and two-character words (障害, 停止, 証) searchable inside compounds
    (システム障害, マイナ保険証), which neither SQLite's default nor its trigram tokenizer can do.
    """
    return " ".join(surface for surface, _ in search_units(value)) if value else ""


def variant_tokens(value: str | None) -> str:
    """The same short units in Sudachi's normalized form (つながら, 繋がら -> 繋がる; サーバ, ｻｰﾊﾞｰ -> サーバー;
    ない, 無い -> 無い), so that spelling variants and inflections of a word meet in the index."""
    return " ".join(normal for _, normal in search_units(value)) if value else ""


def query_parts(query: str) -> list[tuple[str, str]]:
    """A user's words as (short units as written, in normalized form) per whitespace-separated part, each
    space-separated; parts without a word left out. ValueError when no part has a word."""
    parts = [(search_tokens(part), variant_tokens(part)) for part in query.split()]
    parts = [(surface, variant) for surface, variant in parts if surface or variant]
    if not parts:
        raise ValueError("the search has no words in it")
    return parts


def phrase_query(query: str | list[tuple[str, str]]) -> str:
    """A user's words as an FTS5 query: each whitespace-separated part a phrase of short units, as
    written or in normalized form, all parts required."""
    phrases = []
    for surface, variant in query_parts(query) if isinstance(query, str) else query:
        if surface and variant and variant != surface:
            phrases.append(f'("{surface}" OR "{variant}")')
        else:
            phrases.append(f'"{surface or variant}"')
    return " AND ".join(phrases)


# PostgreSQL's tsvector holds the words FTS5's unicode61 tokenizer makes of the same short units: runs of
# letters and digits (its default categories, L* N*), so both engines match the same phrases.
_WORD = re.compile(r"[^\W_]+")
MAX_WORD = 500  # characters of one word kept (a tsvector lexeme holds at most 2047 bytes)
MAX_POSITION = 16383  # PostgreSQL's largest tsvector position; later words share it


def fts_words(units: str) -> list[str]:
    """The index words of space-separated short units."""
    return [w[:MAX_WORD] for w in _WORD.findall(units)]


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_text(title: str | None, summary: str | None) -> str:
    """An item's search document as tsvector input: the title's words as written (weight A) and in
    normalized form (B), the summary's as written (C) and normalized (D), each section at its own positions
    with a gap between, so that a phrase never runs from one section into the next (as in FTS5's columns)."""
    positions: dict[str, list[str]] = {}
    at = 1
    for value, tokens, weight in ((title, search_tokens, "A"), (title, variant_tokens, "B"),
                                  (summary, search_tokens, "C"), (summary, variant_tokens, "D")):
        for word in fts_words(tokens(value)):
            positions.setdefault(word, []).append(f"{min(at, MAX_POSITION)}{weight}")
            at += 1
        at += 1
    return " ".join(f"{_lexeme(word)}:{','.join(dict.fromkeys(where))}" for word, where in positions.items())


def tsquery_text(parts: list[tuple[str, str]], *, title_only: bool = False) -> str:
    """The parts as tsquery input: every part required, each a phrase of words as written or in normalized
    form; ``title_only`` keeps a match to the title's sections (weights A and B)."""
    weight = ":AB" if title_only else ""
    clauses = []
    for surface, variant in parts:
        phrases = []
        for units in dict.fromkeys(u for u in (surface, variant) if u):
            words = fts_words(units)
            if words:
                phrases.append("(" + " <-> ".join(_lexeme(w) + weight for w in words) + ")")
        if not phrases:
            return ""
        clauses.append("(" + " | ".join(phrases) + ")")
    return " & ".join(clauses)


class hour_text(FunctionElement):
    """The UTC hour of a stored time as text, 'YYYY-MM-DD HH:00:00'."""

    type = String()
    name = "hour_text"
    inherit_cache = True


class tokyo_day(FunctionElement):
    """The Tokyo calendar day of a stored (UTC) time as text, 'YYYY-MM-DD'."""

    type = String()
    name = "tokyo_day"
    inherit_cache = True


class joined(FunctionElement):
    """An aggregate: the group's values joined with commas (SQLite's group_concat)."""

    type = String()
    name = "joined"
    inherit_cache = True


@compiles(hour_text, "sqlite")
def _hour_sqlite(element, compiler, **kw):
    return f"strftime('%Y-%m-%d %H:00:00', {compiler.process(element.clauses, **kw)})"


@compiles(hour_text, "postgresql")
def _hour_postgresql(element, compiler, **kw):
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM-DD HH24:00:00')"


@compiles(tokyo_day, "sqlite")
def _day_sqlite(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)}, '{SQL_OFFSET}')"


@compiles(tokyo_day, "postgresql")
def _day_postgresql(element, compiler, **kw):
    return f"to_char({compiler.process(element.clauses, **kw)} + {SQL_INTERVAL}, 'YYYY-MM-DD')"


@compiles(joined, "sqlite")
def _joined_sqlite(element, compiler, **kw):
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(joined, "postgresql")
def _joined_postgresql(element, compiler, **kw):
    value = compiler.process(element.clauses, **kw)
    return f"string_agg({value}, ',' ORDER BY {value})"


def insert_for(session_or_connection, table):
    """An INSERT for the store's engine that knows ``on_conflict_do_nothing`` and ``on_conflict_do_update``."""
    bind = session_or_connection.get_bind() if hasattr(session_or_connection, "get_bind") else session_or_connection
    return dialect_for(bind).insert(table)


class ReadOnlyRefused(Exception):
    """A statement tried to change the store through a read-only connection."""


class BackupUnavailable(Exception):
    """The engine's backup tool is missing or failed; the message says which and what to do."""


SERVICE_FILTER = f""" AND i.gate = 'pass' AND EXISTS (
    SELECT 1 FROM classification_services s JOIN classifications c ON c.id = s.classification_id
    WHERE s.classification_id = ({CURRENT}) AND s.service = :service AND c.relevant)"""


@dataclass(frozen=True)
class SQLite:
    name: str = "sqlite"
    lateral: bool = False  # no LATERAL joins: per-row lookups are spelled as plain joins (store/signals.py)

    def insert(self, table):
        return sqlite_dialect.insert(table)

    def insert_new_rows(self, connection, table, values: list[dict]) -> int:
        """Insert rows, ignoring those a unique key already holds; how many were inserted. A plain
        executemany of one cached statement: the hot path of a collector's backlog."""
        fields = list(values[0])
        sql = (f"INSERT INTO {table.__tablename__} ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))}) "
               "ON CONFLICT DO NOTHING")
        result = connection.exec_driver_sql(sql, [tuple(_sqlite_value(v[f]) for f in fields) for v in values])
        return max(result.rowcount, 0)

    def known_item_values(self, connection, column: str, values: list, *, source_id: int | None = None) -> list:
        """Which of ``values`` items already hold in ``column`` (of this source's items, when given): the
        list as one JSON parameter, so one cached statement whatever its length."""
        sql = f"SELECT {column} FROM items WHERE {column} IN (SELECT value FROM json_each(?))"
        params: tuple = (json.dumps(list(values)),)
        if source_id is not None:
            sql, params = sql + " AND source_id = ?", params + (source_id,)
        return [r[0] for r in connection.exec_driver_sql(sql, params)]

    def view_words(self) -> dict[str, str]:
        """What the analysts' views (store/views.py) spell differently on this engine."""
        return {"day": f"date(i.published_at, '{SQL_OFFSET}')", "group_concat": "group_concat(s.service, ',')",
                "false": "0", "current": CURRENT}

    def on_connect(self, dbapi_connection) -> None:
        # Text that is not UTF-8 (written by another program, or by hand) is read with U+FFFD in place of the
        # bad bytes: the default failed the whole query, and every command reading that row with it.
        dbapi_connection.text_factory = _LENIENT_TEXT
        dbapi_connection.create_function("ja_search_tokens", 1, search_tokens, deterministic=True)
        dbapi_connection.create_function("ja_search_variants", 1, variant_tokens, deterministic=True)
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    def create_search_index(self, connection) -> None:
        """An FTS5 index over Sudachi short units of items' titles and summaries, as written (``title``,
        ``body``) and in normalized form (``title_norm``, ``body_norm``).

        New items are indexed in batches by ``index_pending`` (the classify job, ``mynawatch search``),
        not by an insert trigger: tokenizing in the collector's transaction would cost it a third of
        its speed. Items already indexed are re-indexed when their text changes, and leave on delete.
        """
        connection.execute(text("CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(title, body, "
                                "title_norm, body_norm, tokenize = 'unicode61 remove_diacritics 0')"))
        connection.execute(text("DROP TRIGGER IF EXISTS items_fts_insert"))  # stores from before batch indexing
        connection.execute(text("DROP TRIGGER IF EXISTS items_fts_update"))
        connection.execute(text("""
            CREATE TRIGGER items_fts_update AFTER UPDATE OF title, summary ON items
            WHEN EXISTS (SELECT 1 FROM items_fts WHERE rowid = old.id) BEGIN
              DELETE FROM items_fts WHERE rowid = old.id;
              INSERT INTO items_fts(rowid, title, body, title_norm, body_norm)
              VALUES (new.id, ja_search_tokens(new.title), ja_search_tokens(new.summary),
                      ja_search_variants(new.title), ja_search_variants(new.summary));
            END"""))
        connection.execute(text("CREATE TRIGGER IF NOT EXISTS items_fts_delete AFTER DELETE ON items BEGIN "
                                "DELETE FROM items_fts WHERE rowid = old.id; END"))

    def index_pending(self, connection, limit: int) -> int:
        """Index up to ``limit`` items not yet in the search index, oldest id first; how many were indexed.

        The index is filled in id order, so everything above its highest rowid is what is pending."""
        return connection.execute(text("""
            INSERT INTO items_fts(rowid, title, body, title_norm, body_norm)
            SELECT id, ja_search_tokens(title), ja_search_tokens(summary), ja_search_variants(title),
                   ja_search_variants(summary) FROM items
            WHERE id > (SELECT coalesce(max(rowid), 0) FROM items_fts) ORDER BY id LIMIT :limit"""),
            {"limit": limit}).rowcount

    def lock_rows(self, of: str, *, skip_locked: bool) -> str:
        """What a SELECT ends with to lock the rows it reads (store/work.py): nothing, one writer holds the store."""
        return ""

    def try_lock(self, connection, key: tuple[int, int]) -> bool:
        """Take a lock held for the connection's life: always granted, one `run` per SQLite store (run_lock)."""
        return True

    def unlock_all(self, connection) -> None:
        """Give back the locks ``try_lock`` took on this connection: none to give back."""

    def pending_count(self, connection) -> int:
        """Items waiting for ``index_pending``."""
        return connection.execute(text(
            "SELECT count(*) FROM items WHERE id > (SELECT coalesce(max(rowid), 0) FROM items_fts)")).scalar()

    def search(self, connection, parts: list[tuple[str, str]], *, title_only: bool, exclude_title: bool, since,
               service, limit: int) -> list:
        """Id, title, publisher, date, link and summary of matches, newest first (FTS5 walks its index by rowid)."""
        fts_query = phrase_query(parts)
        match = f"{{title title_norm}} : ({fts_query})" if title_only else fts_query
        if exclude_title:
            match = f"({fts_query}) NOT {{title title_norm}} : ({fts_query})"
        sql = """
            SELECT i.id, i.title, i.publisher, i.published_at, i.canonical_url, i.summary
            FROM items_fts JOIN items i ON i.id = items_fts.rowid
            WHERE items_fts MATCH :match"""
        params = {"match": match, "limit": limit}
        if since is not None:
            sql += " AND i.published_at >= :since"
            params["since"] = since.strftime("%Y-%m-%d %H:%M:%S.%f")
        if service is not None:
            sql += SERVICE_FILTER
            params["service"] = service
        sql += " ORDER BY items_fts.rowid DESC LIMIT :limit"
        return connection.execute(text(sql), params).all()

    def connect_read_only(self, url: str, *, memory_bytes: int | None = None, seconds: float | None = None):
        """A connection that cannot change the store (``seconds`` is kept by store/sql.py's own clock): opened ``mode=ro`` through a quoted ``file:`` URI (a
        path may hold ``#``, ``?``, ``%`` or spaces), ``query_only``, and an authorizer that refuses writes.
        ``memory_bytes``: temporary data stays in memory, and SQLite's heap is capped there (process-wide:
        the caller restores it with ``restore_heap_limit``)."""
        path = _sqlite_path(url)
        if not path or path == ":memory:" or not Path(path).is_file():
            raise FileNotFoundError(f"{path or url}: no such store")
        conn = open_read_only(path)
        if memory_bytes is not None:
            conn.execute("PRAGMA temp_store = MEMORY")  # no temporary files growing on disk
            conn.execute(f"PRAGMA hard_heap_limit = {int(memory_bytes)}")
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_read_only_authorizer)
        return conn

    def backup(self, url: str, target: Path) -> None:
        """A consistent online copy (SQLite's backup API), safe while the scheduler writes."""
        path = _sqlite_path(url)
        if not path or path == ":memory:" or not Path(path).is_file():  # a new empty file is no backup
            raise BackupUnavailable(f"{path or url}: no such store; set [store] url in the settings to the store "
                                    "to back up")
        source = open_read_only(path)  # never writes: a store on read-only media is copied too
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            dest = sqlite3.connect(target)
            with dest:
                source.backup(dest)
            dest.close()
        finally:
            source.close()

    def check(self, engine: Engine) -> list[str]:
        """Problems found by integrity, foreign-key and search-index checks (empty when healthy)."""
        problems = []
        with engine.connect() as c:
            problems += [r[0] for r in c.execute(text("PRAGMA integrity_check")) if r[0] != "ok"]
            problems += [f"foreign key: {r[0]} row {r[1]} -> {r[2]}" for r in c.execute(text("PRAGMA foreign_key_check"))]
            try:
                c.execute(text("INSERT INTO items_fts(items_fts, rank) VALUES ('integrity-check', 0)"))
            except Exception as exc:  # the FTS5 check reports corruption as an error
                problems.append(f"search index: {exc}")
            indexed = c.execute(text("SELECT count(*) FROM items_fts")).scalar()
            covered = c.execute(text(  # items the index should hold; newer ones are pending, not missing
                "SELECT count(*) FROM items WHERE id <= (SELECT coalesce(max(rowid), 0) FROM items_fts)")).scalar()
            if indexed != covered:
                problems.append(f"search index holds {indexed} rows for {covered} items")
        return problems


_WRITES = {
    sqlite3.SQLITE_INSERT: "INSERT", sqlite3.SQLITE_UPDATE: "UPDATE", sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_DROP_TABLE: "DROP", sqlite3.SQLITE_DROP_VIEW: "DROP", sqlite3.SQLITE_DROP_INDEX: "DROP",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP", sqlite3.SQLITE_CREATE_TABLE: "CREATE", sqlite3.SQLITE_CREATE_VIEW: "CREATE",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE", sqlite3.SQLITE_CREATE_TRIGGER: "CREATE", sqlite3.SQLITE_ALTER_TABLE: "ALTER",
    sqlite3.SQLITE_ATTACH: "ATTACH", sqlite3.SQLITE_DETACH: "DETACH", sqlite3.SQLITE_PRAGMA: None,
    sqlite3.SQLITE_TRANSACTION: None, sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE",
}
# PRAGMAs that only read, whatever their argument (a table or index name, or how many problems to list).
_READ_PRAGMAS_ARG = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list",
                     "foreign_key_check", "integrity_check", "quick_check", "database_list", "table_list",
                     "collation_list", "function_list", "module_list", "pragma_list", "compile_options"}
# PRAGMAs that read without an argument and set something with one.
_READ_PRAGMAS = {"query_only", "user_version", "schema_version", "application_id", "data_version", "encoding",
                 "page_count", "page_size", "freelist_count", "journal_mode", "foreign_keys", "auto_vacuum",
                 "cache_size", "busy_timeout", "synchronous", "temp_store", "max_page_count", "recursive_triggers"}
last_refused: list[str] = []


def read_only_uri(path: str) -> str:
    """The SQLite URI that opens exactly ``path`` read-only: every character that means something in a URI
    (``#``, ``?``, ``%``, spaces, non-ASCII) percent-encoded."""
    return Path(path).absolute().as_uri() + "?mode=ro"


def open_read_only(path: str) -> sqlite3.Connection:
    """A connection that only reads the store at ``path``. A WAL store needs its -shm file beside it, made by
    the first reader; where the folder cannot be written (read-only media, another user's folder) and no -wal
    file holds changes, nothing can be writing the store either, and it is opened as immutable."""
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens the file, its -wal and -shm
        return conn
    except BaseException as exc:
        conn.close()
        if not (isinstance(exc, sqlite3.OperationalError) and _unwritable_and_settled(path, exc)):
            raise
    return sqlite3.connect(read_only_uri(path) + "&immutable=1", uri=True)


def _unwritable_and_settled(path: str, exc: sqlite3.Error) -> bool:
    """Whether ``exc`` (opening ``path`` read-only) says its -shm file cannot be made, while no writer can be at
    work: its folder cannot be written, and its -wal file is missing or empty."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
        return False
    folder = Path(path).absolute().parent
    try:
        wal = Path(f"{path}-wal").stat().st_size
    except FileNotFoundError:
        wal = 0
    except OSError:
        return False
    return wal == 0 and not os.access(folder, os.W_OK)


def heap_limit() -> int:
    """SQLite's process-wide hard heap limit in bytes (0: none)."""
    conn = sqlite3.connect(":memory:")
    try:
        return int(conn.execute("PRAGMA hard_heap_limit").fetchone()[0])
    finally:
        conn.close()


def restore_heap_limit(limit: int = 0) -> None:
    """Set SQLite's process-wide heap limit back (0: none) after a capped read-only connection.

    The PRAGMA can only lower the limit, so this calls SQLite's C function through the library the
    ``sqlite3`` module is linked to; where that is not possible the lower limit stays (harmless for a
    short command, which is its own process)."""
    try:
        import ctypes

        import _sqlite3

        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_hard_heap_limit64
    except (ImportError, OSError, AttributeError):
        return
    function.restype, function.argtypes = ctypes.c_int64, [ctypes.c_int64]
    function(limit)


def _read_only_authorizer(action, arg1, arg2, dbname, source):
    if action not in _WRITES:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _READ_PRAGMAS_ARG or (name in _READ_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
        last_refused[:] = [f"PRAGMA {arg1}"]
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_TRANSACTION:
        return sqlite3.SQLITE_OK
    if dbname == "temp" and action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
        return sqlite3.SQLITE_OK  # SQLite's own bookkeeping for some queries
    if action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in ("sqlite_master", "sqlite_schema") and not source:
        return sqlite3.SQLITE_OK  # asked while SQLite connects a virtual table (the search index); mode=ro still holds
    last_refused[:] = [_WRITES[action]]
    return sqlite3.SQLITE_DENY


# bytes.decode itself, its arguments bound: a Python function here cost every text value read a call of its own
# (bench/report_speed.py's alert evaluation on 1,000,000 items: 2.0 s with this or the default, 68.8 s with one)
_LENIENT_TEXT = partial(bytes.decode, encoding="utf-8", errors="replace")


def _sqlite_value(value):
    """Datetimes as SQLAlchemy stores them in SQLite (naive UTC text, see store.tables.UTCDateTime)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _sqlite_path(url: str) -> str:
    return make_url(url).database or ""


SEARCH_WINDOW = 20_000  # newest search documents a PostgreSQL search walks in key order before using the GIN index
READER_ROLE = "mynawatch_sql"  # what `mynawatch sql` runs as when the store's own user may touch server files
_SERVER_FILE_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")


def libpq_url(url: str, *, username: str | None = None, password: bool = True) -> str:
    """The SQLAlchemy URL as libpq (psycopg, pg_dump) reads it: every part percent-encoded, as libpq decodes it
    (SQLAlchemy leaves a space in a database name, which libpq 17 and later refuse, and writes a space in a
    query value as '+', which libpq keeps as a plus sign). ``username``: another user, without the password;
    ``password=False``: without it (given to a program through PGPASSWORD, never on its command line)."""
    parsed = make_url(url)
    auth = ""
    if username is not None or parsed.username is not None:
        secret = parsed.password if password and username is None else None
        auth = _pct(username or parsed.username) + (f":{_pct(secret)}" if secret is not None else "") + "@"
    host = parsed.host or ""
    host = f"[{host}]" if ":" in host else _pct(host)
    port = f":{parsed.port}" if parsed.port is not None else ""
    database = f"/{_pct(parsed.database)}" if parsed.database else ""
    query = "&".join(f"{_pct(key)}={_pct(value)}" for key, values in parsed.query.items()
                     for value in (values if isinstance(values, tuple) else (values,)))
    return f"postgresql://{auth}{host}{port}{database}" + (f"?{query}" if query else "")


def _pct(value) -> str:
    return quote(str(value), safe="")


@dataclass(frozen=True)
class PostgreSQL:
    """The same interface on PostgreSQL: search over a tsvector of the same short units, read-only SQL
    enforced by the server, backups through pg_dump."""

    name: str = "postgresql"
    lateral: bool = True  # a LATERAL subquery makes the planner look a row up per outer row (store/signals.py)

    def insert(self, table):
        return pg_dialect.insert(table)

    def insert_new_rows(self, connection, table, values: list[dict]) -> int:
        """Insert rows, ignoring those a unique key already holds; how many were inserted (counted through
        RETURNING: an executemany reports no row count here)."""
        stmt = pg_dialect.insert(table).on_conflict_do_nothing().returning(*table.__table__.primary_key.columns)
        return len(connection.execute(stmt, values).all())

    def known_item_values(self, connection, column: str, values: list, *, source_id: int | None = None) -> list:
        """Which of ``values`` items already hold in ``column`` (of this source's items, when given): the
        list as one array parameter."""
        sql = f"SELECT {column} FROM items WHERE {column} = ANY(:values)"
        params = {"values": list(values)}
        if source_id is not None:
            sql, params["source_id"] = sql + " AND source_id = :source_id", source_id
        return [r[0] for r in connection.execute(text(sql), params)]

    def view_words(self) -> dict[str, str]:
        return {"day": f"to_char(i.published_at + {SQL_INTERVAL}, 'YYYY-MM-DD')",
                "group_concat": "string_agg(s.service, ',' ORDER BY s.service)", "false": "false", "current": CURRENT}

    def on_connect(self, dbapi_connection) -> None:
        """No JIT compilation for mynawatch's own queries: they read thousands of rows, not millions, and the
        planner's cost estimates of the report's per-item lookups (a month of items) are high enough to
        compile them, which took 0.4 to 1 s each, longer than the queries themselves."""
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a SET in the first transaction would go with its rollback
        try:
            dbapi_connection.execute("SET jit = off")
        finally:
            dbapi_connection.autocommit = autocommit

    def create_search_index(self, connection) -> None:
        """A table of search documents (a tsvector per item, see ``tsvector_text``) with a GIN index. Items
        are indexed in batches by ``index_pending``, as on SQLite; an edit of an indexed item's title or
        summary takes it out of the index, and the next batch indexes it again; a deleted item leaves."""
        connection.execute(text("""
            CREATE TABLE IF NOT EXISTS items_fts (
              item_id integer PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
              doc tsvector NOT NULL)"""))
        connection.execute(text("CREATE INDEX IF NOT EXISTS ix_items_fts_doc ON items_fts USING gin (doc)"))
        connection.execute(text("""
            CREATE OR REPLACE FUNCTION items_fts_forget() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN DELETE FROM items_fts WHERE item_id = NEW.id; RETURN NULL; END $$"""))
        connection.execute(text("""
            CREATE OR REPLACE TRIGGER items_fts_update AFTER UPDATE OF title, summary ON items FOR EACH ROW
            WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.summary IS DISTINCT FROM NEW.summary)
            EXECUTE FUNCTION items_fts_forget()"""))

    def index_pending(self, connection, limit: int) -> int:
        """Index up to ``limit`` items not in the search index, oldest id first; how many were indexed. Items
        another process is indexing at the same time are skipped (their rows are locked), not done twice."""
        rows = connection.execute(text("""
            SELECT i.id, i.title, i.summary FROM items i
            WHERE NOT EXISTS (SELECT 1 FROM items_fts f WHERE f.item_id = i.id)
            ORDER BY i.id LIMIT :limit FOR UPDATE OF i SKIP LOCKED"""), {"limit": limit}).all()
        if rows:
            connection.execute(text("INSERT INTO items_fts (item_id, doc) VALUES (:id, CAST(:doc AS tsvector)) "
                                    "ON CONFLICT (item_id) DO NOTHING"),
                               [{"id": i, "doc": tsvector_text(title, summary)} for i, title, summary in rows])
        return len(rows)

    def lock_rows(self, of: str, *, skip_locked: bool) -> str:
        """What a SELECT ends with to lock the rows of ``of`` it reads: those another transaction holds are
        skipped (claiming work) or waited for."""
        return f" FOR UPDATE OF {of}" + (" SKIP LOCKED" if skip_locked else "")

    def try_lock(self, connection, key: tuple[int, int]) -> bool:
        """A session-level advisory lock, held until released or the connection ends (its process dies)."""
        return bool(connection.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": key[0], "b": key[1]}).scalar())

    def unlock_all(self, connection) -> None:
        """Give back at once every session-level advisory lock this connection holds."""
        connection.execute(text("SELECT pg_advisory_unlock_all()"))

    def pending_count(self, connection) -> int:
        return connection.execute(text("SELECT count(*) FROM items i WHERE NOT EXISTS "
                                       "(SELECT 1 FROM items_fts f WHERE f.item_id = i.id)")).scalar()

    def search(self, connection, parts: list[tuple[str, str]], *, title_only: bool, exclude_title: bool, since,
               service, limit: int) -> list:
        """The same matches as SQLite's, newest first (by item id, as FTS5 orders by rowid)."""
        anywhere, in_title = tsquery_text(parts), tsquery_text(parts, title_only=True)
        if not anywhere:
            return []
        sql = """
            SELECT i.id, i.title, i.publisher, i.published_at, i.canonical_url, i.summary
            FROM items_fts f JOIN items i ON i.id = f.item_id WHERE """
        if title_only:
            sql += "f.doc @@ CAST(:title AS tsquery)"
        elif exclude_title:
            sql += "f.doc @@ CAST(:any AS tsquery) AND NOT f.doc @@ CAST(:title AS tsquery)"
        else:
            sql += "f.doc @@ CAST(:any AS tsquery)"
        params = {"any": anywhere, "title": in_title, "limit": limit}
        if since is not None:
            sql += " AND i.published_at >= :since"
            params["since"] = since.astimezone(timezone.utc).replace(tzinfo=None)
        if service is not None:
            sql += SERVICE_FILTER
            params["service"] = service
        # Newest first, in two tries: the newest SEARCH_WINDOW documents walked down the key (a common word
        # fills the page there at once), else every match through the GIN index, then sorted (a rare word:
        # walking the whole key for it would read every document).
        newest = connection.execute(text("SELECT max(item_id) FROM items_fts")).scalar() or 0
        params["floor"] = newest - SEARCH_WINDOW
        rows = connection.execute(text(sql + " AND f.item_id > :floor ORDER BY f.item_id DESC LIMIT :limit"),
                                  params).all()
        if len(rows) >= limit or newest <= SEARCH_WINDOW:
            return rows
        return connection.execute(text(sql + " ORDER BY f.item_id + 0 DESC LIMIT :limit"), params).all()

    def connect_read_only(self, url: str, *, memory_bytes: int | None = None, seconds: float | None = None):
        """A psycopg connection in a read-only transaction (the server refuses every write), with a statement
        timeout of ``seconds``. When the store's user may read or run files on the server (a superuser, or a
        member of pg_read_server_files and the like), the statement runs as the role READER_ROLE, which can
        only read (pg_read_all_data): connected as that role where the server lets it log in without a
        password, else switched to with SET ROLE. ``memory_bytes`` caps that role's temporary files."""
        import psycopg

        conn = psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10)
        try:
            privileged = conn.execute(
                "SELECT rolsuper OR " + " OR ".join(f"pg_has_role(current_user, '{r}', 'USAGE')" for r in _SERVER_FILE_ROLES)
                + " FROM pg_roles WHERE rolname = current_user").fetchone()
            if privileged and privileged[0]:
                conn = _reader_connection(conn, url, memory_bytes)
            if seconds is not None:
                conn.execute(f"SET statement_timeout = {max(1, int(seconds * 1000))}")
            conn.execute("SET default_transaction_read_only = on")
        except BaseException:
            conn.close()
            raise
        conn.autocommit = False
        conn.read_only = True
        conn.execute("SELECT 1")  # the transaction's first query: read-write mode can no longer be set in it
        return conn

    def backup(self, url: str, target: Path) -> None:
        """``pg_dump --format=custom`` into ``target`` (restore with ``pg_restore``): a consistent snapshot
        taken while the workers write."""
        tool = shutil.which("pg_dump")
        if tool is None:
            raise BackupUnavailable("pg_dump is not on the PATH: install PostgreSQL's client tools (Debian: "
                                    "apt-get install postgresql-client) to back up a PostgreSQL store")
        parsed = make_url(url)
        env = dict(os.environ)
        if parsed.password is not None:
            env["PGPASSWORD"] = str(parsed.password)
        target.parent.mkdir(parents=True, exist_ok=True)
        dsn = libpq_url(url, password=False)  # the password goes in PGPASSWORD: a command line is public (ps)
        proc = subprocess.run([tool, "--format=custom", "--no-owner", f"--file={target}", f"--dbname={dsn}"],
                              env=env, capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()] or [f"exit status {proc.returncode}"]
            raise BackupUnavailable(f"pg_dump failed: {lines[-1].strip()}")

    def check(self, engine: Engine) -> list[str]:
        """What SQLite's check reports: indexes that are damaged (amcheck, where installed) or left invalid,
        rows whose reference leads nowhere, and a search index that is missing or holds rows of no item."""
        from store.tables import Base

        problems = []
        with engine.connect() as c:
            problems += [f"index {r[0]} is invalid (a failed CREATE INDEX CONCURRENTLY?): REINDEX it"
                         for r in c.execute(text("SELECT indexrelid::regclass::text FROM pg_index "
                                                 "WHERE NOT indisvalid ORDER BY 1"))]
            if c.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")).first():
                for (index,) in c.execute(text("""
                        SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid
                        JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_am a ON a.oid = x.relam
                        JOIN pg_namespace n ON n.oid = r.relnamespace
                        WHERE a.amname = 'btree' AND n.nspname = current_schema() AND i.indisvalid ORDER BY 1""")):
                    try:
                        with c.begin_nested():
                            c.execute(text("SELECT bt_index_check(CAST(:i AS regclass), true)"), {"i": index})
                    except Exception as exc:  # amcheck reports corruption as an error
                        problems.append(f"index {index}: {str(exc).splitlines()[0]}")
            problems += _orphans(c, Base.metadata)
            if not c.execute(text("SELECT 1 FROM pg_indexes WHERE tablename = 'items_fts' "
                                  "AND indexname = 'ix_items_fts_doc'")).first():
                problems.append("search index: its GIN index ix_items_fts_doc is missing (opening the store makes it)")
            c.rollback()
        return problems


def _orphans(connection, metadata) -> list[str]:
    """'foreign key: TABLE row ID -> PARENT' for each row whose reference leads nowhere (at most 5 per key)."""
    problems = []
    for table in metadata.sorted_tables:
        for fk in table.foreign_key_constraints:
            child = [c.name for c in fk.columns]
            parent = [e.column for e in fk.elements]
            pk = [c.name for c in table.primary_key.columns]
            cond = " AND ".join(f"p.{p.name} = c.{name}" for p, name in zip(parent, child))
            present = " AND ".join(f"c.{name} IS NOT NULL" for name in child)
            rows = connection.execute(text(
                f"SELECT {', '.join('c.' + k for k in pk)} FROM {table.name} c WHERE {present} AND NOT EXISTS "
                f"(SELECT 1 FROM {fk.referred_table.name} p WHERE {cond}) LIMIT 5")).all()
            problems += [f"foreign key: {table.name} row {'/'.join(map(str, r))} -> {fk.referred_table.name}"
                         for r in rows]
    return problems


def _reader_connection(conn, url: str, memory_bytes: int | None = None):
    """A connection that runs as READER_ROLE (made here when missing: no password, no rights but those of
    pg_read_all_data): logged in as it where the server allows that, else the store's user with SET ROLE."""
    import psycopg

    ready = conn.execute("SELECT pg_has_role(%s, 'pg_read_all_data', 'USAGE') FROM pg_roles WHERE rolname = %s",
                         (READER_ROLE, READER_ROLE)).fetchone()
    if not (ready and ready[0]):
        try:
            if not ready:
                try:
                    conn.execute(f"CREATE ROLE {READER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT")
                except psycopg.errors.DuplicateObject:  # another process made it first
                    pass
            conn.execute(f"ALTER ROLE {READER_ROLE} INHERIT")
            conn.execute(f"GRANT pg_read_all_data TO {READER_ROLE}")
            if memory_bytes:  # temporary files of a sort or hash that does not fit in memory (superusers only)
                conn.execute(f"ALTER ROLE {READER_ROLE} SET temp_file_limit = '{int(memory_bytes) // 1024}kB'")
        except psycopg.Error as exc:
            conn.close()
            raise ReadOnlyRefused(f"the store's user may read server files, and a read-only role {READER_ROLE} "
                                  f"cannot be made ({str(exc).splitlines()[0]}): create it as in "
                                  "docs/scale-out.md, or connect as a user without those rights") from None
    try:
        reader = psycopg.connect(libpq_url(url, username=READER_ROLE), autocommit=True, connect_timeout=10)
    except psycopg.Error:  # the server wants a password for it: switch roles in this session instead
        if memory_bytes:
            try:
                conn.execute(f"SET temp_file_limit = '{int(memory_bytes) // 1024}kB'")
            except psycopg.Error:  # only a superuser may
                pass
        conn.execute(f"SET ROLE {READER_ROLE}")
        return conn
    conn.close()
    return reader


def dialect_for(url_or_engine) -> SQLite | PostgreSQL:
    """The dialect of a URL, or of an engine or connection."""
    dialect = getattr(url_or_engine, "dialect", None)
    name = dialect.name if dialect is not None else make_url(url_or_engine).get_backend_name()
    if name == "sqlite":
        return SQLite()
    if name in ("postgresql", "postgres"):
        return PostgreSQL()
    raise ValueError(f"unsupported database {name!r}: mynawatch runs on SQLite or PostgreSQL")
