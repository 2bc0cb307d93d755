"""`mynawatch sql`: one statement on a read-only connection, printed as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sqlite3
from typing import IO

from store import dialect as dialects


class ReadOnlyError(Exception):
    """The statement was refused (it writes) or failed; the message says which and why."""


def run_read_only(url: str, query: str) -> tuple[list[str], list[tuple]]:
    try:
        connection = dialects.dialect_for(url).connect_read_only(url)
    except FileNotFoundError as exc:
        raise ReadOnlyError(str(exc)) from None
    dialects.last_refused.clear()
    try:
        cursor = connection.execute(query)
        rows = cursor.fetchall()
        columns = [d[0] for d in cursor.description or []]
    except sqlite3.DatabaseError as exc:
        if dialects.last_refused or "readonly" in str(exc).lower() or "not authorized" in str(exc).lower():
            what = dialects.last_refused[0] if dialects.last_refused else "writing"
            raise ReadOnlyError(f"refused: {what} would change the store, and `mynawatch sql` is read-only "
                                "(the store was not changed)") from None
        raise ReadOnlyError(f"the query failed: {exc}") from None
    except sqlite3.Warning as exc:  # e.g. more than one statement
        raise ReadOnlyError(f"the query failed: {exc}") from None
    finally:
        connection.close()
    return columns, rows


def write_result(columns: list[str], rows: list[tuple], fmt: str, out: IO[str]) -> None:
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False, default=str) + "\n")
    else:
        cells = [[("" if v is None else str(v)) for v in row] for row in rows]
        widths = [max([_width(c)] + [_width(r[i]) for r in cells]) for i, c in enumerate(columns)]
        line = lambda vals: "  ".join(v + " " * (w - _width(v)) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
        out.write(line(columns) + "\n" + line(["-" * w for w in widths]) + "\n")
        for r in cells:
            out.write(line(r) + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _width(text: str) -> int:
    """Display width: East Asian wide characters take two columns."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
