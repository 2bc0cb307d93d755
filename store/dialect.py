"""Everything database-specific, behind one small interface: connection setup, the Japanese search
index, read-only connections, online backup and integrity checks.

SQLite (the default) is implemented and tested here. The PostgreSQL class keeps the same interface
for the scale-out path; the models, views and queries elsewhere are plain SQLAlchemy/SQL.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

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


def phrase_query(query: str) -> str:
    """A user's words as an FTS5 query: each whitespace-separated part a phrase of short units, as
    written or in normalized form, all parts required."""
    phrases = []
    for part in query.split():
        surface, variant = search_tokens(part), variant_tokens(part)
        if surface and variant and variant != surface:
            phrases.append(f'("{surface}" OR "{variant}")')
        elif surface or variant:
            phrases.append(f'"{surface or variant}"')
    if not phrases:
        raise ValueError("the search has no words in it")
    return " AND ".join(phrases)


class ReadOnlyRefused(Exception):
    """A statement tried to change the store through a read-only connection."""


@dataclass(frozen=True)
class SQLite:
    name: str = "sqlite"

    def on_connect(self, dbapi_connection) -> None:
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

    def pending_count(self, connection) -> int:
        """Items waiting for ``index_pending``."""
        return connection.execute(text(
            "SELECT count(*) FROM items WHERE id > (SELECT coalesce(max(rowid), 0) FROM items_fts)")).scalar()

    def search(self, connection, fts_query: str, *, title_only: bool, exclude_title: bool, since, service,
               limit: int) -> list:
        """Id, title, publisher, date, link and summary of matches, newest first (FTS5 walks its index by rowid)."""
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
            sql += f""" AND i.gate = 'pass' AND EXISTS (
                SELECT 1 FROM classification_services s JOIN classifications c ON c.id = s.classification_id
                WHERE s.classification_id = ({CURRENT}) AND s.service = :service AND c.relevant)"""
            params["service"] = service
        sql += " ORDER BY items_fts.rowid DESC LIMIT :limit"
        return connection.execute(text(sql), params).all()

    def connect_read_only(self, url: str, *, memory_bytes: int | None = None):
        """A connection that cannot change the store: opened ``mode=ro`` through a quoted ``file:`` URI (a
        path may hold ``#``, ``?``, ``%`` or spaces), ``query_only``, and an authorizer that refuses writes.
        ``memory_bytes``: temporary data stays in memory, and SQLite's heap is capped there (process-wide:
        the caller restores it with ``restore_heap_limit``)."""
        path = _sqlite_path(url)
        if not path or path == ":memory:" or not Path(path).is_file():
            raise FileNotFoundError(f"{path or url}: no such store")
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        if memory_bytes is not None:
            conn.execute("PRAGMA temp_store = MEMORY")  # no temporary files growing on disk
            conn.execute(f"PRAGMA hard_heap_limit = {int(memory_bytes)}")
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_read_only_authorizer)
        return conn

    def backup(self, url: str, target: Path) -> None:
        """A consistent online copy (SQLite's backup API), safe while the scheduler writes."""
        source = sqlite3.connect(_sqlite_path(url))
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


def _sqlite_path(url: str) -> str:
    return make_url(url).database or ""


@dataclass(frozen=True)
class PostgreSQL:
    """The same interface for PostgreSQL (search over a tsvector of the same short units)."""

    name: str = "postgresql"

    def on_connect(self, dbapi_connection) -> None:
        pass

    def create_search_index(self, connection) -> None:
        raise NotImplementedError("Japanese search on PostgreSQL: planned (a tsvector of the same short units)")

    def search(self, connection, fts_query: str, **kw) -> list:
        raise NotImplementedError("Japanese search on PostgreSQL: planned (a tsvector of the same short units)")

    def index_pending(self, connection, limit: int) -> int:
        raise NotImplementedError("Japanese search on PostgreSQL: planned (a tsvector of the same short units)")

    def pending_count(self, connection) -> int:
        raise NotImplementedError("Japanese search on PostgreSQL: planned (a tsvector of the same short units)")

    def connect_read_only(self, url: str, *, memory_bytes: int | None = None):
        import psycopg  # noqa: F401  (optional: only PostgreSQL users install a driver)

        conn = psycopg.connect(make_url(url).render_as_string(hide_password=False).replace("+psycopg", ""))
        conn.execute("SET default_transaction_read_only = on")
        return conn

    def backup(self, url: str, target: Path) -> None:
        raise NotImplementedError("use pg_dump for PostgreSQL backups")

    def check(self, engine: Engine) -> list[str]:
        return []


def dialect_for(url_or_engine) -> SQLite | PostgreSQL:
    name = url_or_engine.dialect.name if isinstance(url_or_engine, Engine) else make_url(url_or_engine).get_backend_name()
    if name == "sqlite":
        return SQLite()
    if name in ("postgresql", "postgres"):
        return PostgreSQL()
    raise ValueError(f"unsupported database {name!r}: mynawatch runs on SQLite or PostgreSQL")
