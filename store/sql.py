"""`mynawatch sql`: one statement on a read-only connection, streamed out as a table, CSV or JSON lines.

Bounded whatever the statement does: at most ``Limits.rows`` rows (unless told otherwise), at most
``Limits.seconds`` of work inside SQLite, no value longer than ``Limits.cell_bytes`` and at most
``Limits.memory_bytes`` of SQLite memory (temporary data kept in memory, so nothing grows on disk).
Rows are written as they come; stored text is shown without control characters or bidi overrides.

On PostgreSQL the server enforces it: a read-only transaction, ``statement_timeout`` of ``Limits.seconds``,
one statement only (the extended protocol takes no more), and a role that can only read when the store's
user could touch server files (see store/dialect.py); its refusals read as SQLite's do.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from store import dialect as dialects
from store.clean import clean_text, one_line

FETCH = 200  # rows per fetch
WIDTH_SAMPLE = 200  # rows a table's column widths are measured on before it streams
TABLE_CELL = 60  # display columns of a cell in table format (csv and json keep whole values)
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    rows: int | None = 1000  # None: every row
    seconds: float = 30.0  # time spent inside SQLite, the statement's own work
    cell_bytes: int = 16 * MIB  # the longest value returned (SQLite refuses to produce a longer one)
    memory_bytes: int = 512 * MIB  # SQLite's heap while the statement runs


class ReadOnlyError(Exception):
    """The statement was refused (it writes) or failed; the message says which and why."""


@dataclass
class Result:
    """Columns of a running statement; ``rows`` yields up to the row limit, then ``cut`` tells whether
    more rows were left unread."""

    columns: list[str]
    rows: Iterator[tuple]
    cut: bool = False


@contextmanager
def read_only_query(url: str, query: str, *, limits: Limits = Limits()) -> Iterator[Result]:
    """Run ``query`` on a read-only connection; ReadOnlyError (also while iterating) when it is refused or fails."""
    if _NOTHING.fullmatch(query):  # SQLite would run it as nothing at all, and print an empty table
        raise ReadOnlyError("the query is empty (only spaces, comments or semicolons): give one SQL statement")
    previous = dialects.heap_limit()
    try:
        try:
            connection = dialects.dialect_for(url).connect_read_only(url, memory_bytes=limits.memory_bytes,
                                                                     seconds=limits.seconds)
        except FileNotFoundError as exc:
            raise ReadOnlyError(str(exc)) from None
        except sqlite3.Error as exc:  # unreadable, locked away, not a database
            raise ReadOnlyError(f"cannot open the store read-only: {one_line(str(exc))}") from None
        except dialects.ReadOnlyRefused as exc:
            raise ReadOnlyError(str(exc)) from None
        except Exception as exc:
            if not _is_postgres_error(exc):
                raise
            raise ReadOnlyError(f"cannot open the store read-only: {_first_line(exc)}") from None
        try:
            yield _start(connection, query, limits)
        finally:
            connection.close()
    finally:
        dialects.restore_heap_limit(previous)


def _start(connection, query: str, limits: Limits) -> Result:
    if not isinstance(connection, sqlite3.Connection):
        return _start_postgresql(connection, query, limits)
    clock = _Clock(limits.seconds)
    if isinstance(connection, sqlite3.Connection):
        connection.set_progress_handler(clock.expired, 10_000)  # a true answer interrupts the statement
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.cell_bytes)
        connection.text_factory = _text  # a stored value that is not UTF-8 is shown, not an error
    dialects.last_refused.clear()
    with _translated(limits, vacuum=_VACUUM.match(query) is not None):
        cursor = clock.run(connection.execute, query)
    result = Result([d[0] for d in cursor.description or []], iter(()))
    result.rows = _rows(cursor, result, clock, limits)
    return result


def run_read_only(url: str, query: str, *, limits: Limits = Limits()) -> tuple[list[str], list[tuple]]:
    """Columns and rows (at most ``limits.rows``) of one read-only statement."""
    with read_only_query(url, query, limits=limits) as result:
        return result.columns, list(result.rows)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class _Clock:
    """The statement's time budget, spent only while SQLite works (not while the output is written)."""

    def __init__(self, seconds: float):
        self.left, self.deadline = seconds, float("inf")

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def run(self, function, *args):
        started = time.monotonic()
        self.deadline = started + self.left
        try:
            return function(*args)
        finally:
            self.left -= time.monotonic() - started
            self.deadline = float("inf")


def _rows(cursor, result: Result, clock: _Clock, limits: Limits) -> Iterator[tuple]:
    sent = 0
    while True:
        want = FETCH if limits.rows is None else min(FETCH, limits.rows - sent + 1)
        with _translated(limits, sent):
            batch = clock.run(cursor.fetchmany, want)
        for row in batch:
            if limits.rows is not None and sent >= limits.rows:
                result.cut = True
                return
            sent += 1
            yield row
        if len(batch) < want:
            return


# Spaces and comments (SQLite ends an open /* at the end of the text). Possessive, never backtracking: a lazy
# /\*.*?\*/ could also span several comments, and took exponential time on a few dozen of them before a statement.
_BLANK = r"(?:\s|--[^\n]*+|/\*(?:[^*]|\*(?!/))*+(?:\*/|\Z))"
_NOTHING = re.compile(rf"(?:{_BLANK}|;)*+")  # no statement at all
# VACUUM (and VACUUM INTO), after any comments: SQLite runs it as an ATTACH of its own, which is what is refused
_VACUUM = re.compile(rf"{_BLANK}*+vacuum\b", re.IGNORECASE)


@contextmanager
def _translated(limits: Limits, rows_before: int = 0, *, vacuum: bool = False):
    """SQLite's errors as one clear ReadOnlyError each."""
    after = f"; {rows_before} row{'s' if rows_before != 1 else ''} written before it stopped" if rows_before else ""
    try:
        yield
    except MemoryError:
        raise ReadOnlyError(f"the query needed more than {limits.memory_bytes // MIB} MiB of memory (narrow it with "
                            f"WHERE or LIMIT, or use the sqlite3 shell){after}") from None
    except sqlite3.Error as exc:
        name, text = getattr(exc, "sqlite_errorname", ""), one_line(str(exc))
        if dialects.last_refused or any(w in text.lower() for w in ("readonly", "may not be modified")):
            what = dialects.last_refused[0] if dialects.last_refused else "writing"
            what = "VACUUM" if vacuum and what == "ATTACH" else what  # not the user's ATTACH: say what was typed
            raise ReadOnlyError(f"refused: {what} would change the store, and `mynawatch sql` is read-only "
                                "(the store was not changed)") from None
        if "not authorized" in text.lower():
            raise ReadOnlyError(f"refused: {text}; `mynawatch sql` only reads (the store was not changed)") from None
        if name == "SQLITE_INTERRUPT":
            raise ReadOnlyError(f"stopped after {limits.seconds:g} s (--timeout SECONDS allows longer){after}") from None
        if name == "SQLITE_TOOBIG":
            raise ReadOnlyError(f"a value is longer than {limits.cell_bytes // MIB} MiB, the most `mynawatch sql` "
                                f"returns in one cell (select length(...) to find it){after}") from None
        if name == "SQLITE_NOMEM":
            raise ReadOnlyError(f"the query needed more than {limits.memory_bytes // MIB} MiB of memory (narrow it "
                                f"with WHERE or LIMIT, or use the sqlite3 shell){after}") from None
        raise ReadOnlyError(f"the query failed: {text}") from None
    except sqlite3.Warning as exc:  # e.g. more than one statement
        raise ReadOnlyError(f"the query failed: {one_line(str(exc))}") from None
    except UnicodeEncodeError:  # bytes that are not UTF-8 on the command line
        raise ReadOnlyError("the query is not valid UTF-8 text") from None


def _start_postgresql(connection, query: str, limits: Limits) -> Result:
    """The statement streamed row by row through the extended protocol (so one statement only); the server
    stops it after ``limits.seconds``."""
    _show_unreadable_times(connection)
    cursor = connection.cursor()
    rows = cursor.stream(query)
    with _pg_translated(limits):
        try:
            first = next(rows, None)
        except UnicodeEncodeError:  # bytes that are not UTF-8 on the command line
            raise ReadOnlyError("the query is not valid UTF-8 text") from None
    result = Result([d.name for d in cursor.description or []], iter(()))
    result.rows = _pg_rows(first, rows, result, limits)
    return result


def _show_unreadable_times(connection) -> None:
    """Dates and times Python cannot hold (PostgreSQL's 'infinity', years past 9999, 24:00:00) come out as the
    server writes them, instead of failing the whole statement."""
    import psycopg
    from psycopg.types import datetime as times

    for name, loader in (("date", times.DateLoader), ("timestamp", times.TimestampLoader),
                         ("timestamptz", times.TimestamptzLoader), ("time", times.TimeLoader),
                         ("timetz", times.TimetzLoader), ("interval", times.IntervalLoader)):
        class AsWritten(loader):
            def load(self, data):
                try:
                    return super().load(data)
                except (psycopg.DataError, ValueError, OverflowError):
                    return bytes(data).decode("utf-8", "replace")

        connection.adapters.register_loader(name, AsWritten)


def _pg_rows(first, rows, result: Result, limits: Limits) -> Iterator[tuple]:
    sent = 0
    pending = [first] if first is not None else []
    while True:
        if not pending:
            with _pg_translated(limits, sent):
                row = next(rows, None)
            if row is None:
                return
            pending.append(row)
        row = pending.pop()
        if limits.rows is not None and sent >= limits.rows:
            result.cut = True
            return
        for value in row:
            if isinstance(value, (str, bytes)) and len(value) > limits.cell_bytes // 4 and (
                    len(value.encode() if isinstance(value, str) else value) > limits.cell_bytes):
                raise ReadOnlyError(f"a value is longer than {limits.cell_bytes // MIB} MiB, the most `mynawatch "
                                    f"sql` returns in one cell (select length(...) to find it)" + _after(sent))
        sent += 1
        yield row


def _after(rows_before: int) -> str:
    return f"; {rows_before} row{'s' if rows_before != 1 else ''} written before it stopped" if rows_before else ""


def _is_postgres_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("psycopg")


def _first_line(exc: BaseException) -> str:
    return one_line((str(exc).strip().splitlines() or [type(exc).__name__])[0])


_CANNOT = re.compile(r"cannot execute (.+?) in a read-only transaction")


@contextmanager
def _pg_translated(limits: Limits, rows_before: int = 0):
    """PostgreSQL's errors as the same clear ReadOnlyErrors as SQLite's."""
    after = _after(rows_before)
    try:
        yield
    except ReadOnlyError:
        raise
    except Exception as exc:
        if not _is_postgres_error(exc):
            raise
        state, text = getattr(exc, "sqlstate", None) or "", _first_line(exc)
        if state == "57014":  # query_canceled: the statement timeout
            raise ReadOnlyError(f"stopped after {limits.seconds:g} s (--timeout SECONDS allows longer){after}") from None
        if state.startswith("25"):  # read_only_sql_transaction, or read-write mode asked for too late
            what = m.group(1) if (m := _CANNOT.search(text)) else "writing"
            raise ReadOnlyError(f"refused: {what} would change the store, and `mynawatch sql` is read-only "
                                "(the store was not changed)") from None
        if state == "42501":  # insufficient_privilege: server files, programs, other roles' work
            raise ReadOnlyError(f"refused: {text}; `mynawatch sql` only reads (the store was not changed)") from None
        if state in ("53200", "53400", "53100", "54000"):  # out of memory, temp_file_limit, disk full, too large
            raise ReadOnlyError(f"the query needed more memory or temporary space than allowed ({text}): narrow it "
                                f"with WHERE or LIMIT{after}") from None
        raise ReadOnlyError(f"the query failed: {text}{after}") from None


def write_result(columns: list[str], rows: Iterable[tuple], fmt: str, out: IO[str]) -> int:
    """Write rows as they come; returns how many. Text is shown without control characters or bidi overrides
    (CSV keeps line breaks inside its quoted cells; JSON escapes them, losing nothing)."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([clean_text(c) for c in columns])
        n = 0
        for n, row in enumerate(rows, 1):
            writer.writerow([clean_text(v) if isinstance(v, str) else _plain(v) if isinstance(v, bytes) else v
                             for v in row])
        return n
    if fmt == "json":
        n = 0
        for n, row in enumerate(rows, 1):
            out.write(safe_json(dict(zip(columns, map(_finite, row)))) + "\n")
        return n
    return _write_table(columns, rows, out)


_NOT_PLAIN = re.compile("[^\x20-\x7e]")


def safe_json(obj, **dumps) -> str:
    """One line of JSON in which every character that ``clean_text`` would drop (control characters, bidi
    overrides, lone surrogates) is escaped as \\uXXXX: lossless, and nothing reaches a terminal raw."""
    text = json.dumps(obj, ensure_ascii=False, **({"default": _plain} | dumps))
    if clean_text(text) == text:
        return text
    return _NOT_PLAIN.sub(lambda m: m.group(0) if clean_text(m.group(0)) == m.group(0) else f"\\u{ord(m.group(0)):04x}", text)


def _finite(value):
    """JSON has no Infinity: SQLite's overflowing reals are written as the strings "inf" and "-inf"."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _plain(value) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def _write_table(columns: list[str], rows: Iterable[tuple], out: IO[str]) -> int:
    rows = iter(rows)
    head = [_cell(c) for c in columns]
    sample = []
    for row in rows:
        sample.append([_cell(v) for v in row])
        if len(sample) >= WIDTH_SAMPLE:
            break
    widths = [max([_width(c)] + [_width(r[i]) for r in sample]) for i, c in enumerate(head)]

    def line(vals: list[str]) -> str:
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(vals, widths)).rstrip() + "\n"

    out.write(line(head) + line(["-" * w for w in widths]))
    n = 0
    for n, r in enumerate(sample, 1):
        out.write(line(r))
    for row in rows:
        n += 1
        out.write(line([_cell(v) for v in row]))
    out.write(f"({n} row{'s' if n != 1 else ''})\n")
    return n


def _cell(value) -> str:
    """A value as one table cell: one line, no control characters, at most TABLE_CELL columns wide."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = one_line(str(value)[:TABLE_CELL * 4])
    if _width(text) <= TABLE_CELL:
        return text
    out, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > TABLE_CELL - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _width(text: str) -> int:
    """Display width: East Asian wide characters take two columns."""
    return sum(_char_width(ch) for ch in text)
