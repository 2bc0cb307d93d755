"""Full disks, read-only stores and files that cannot be written, as one line for people: what failed,
where, and what to do. The CLI turns these errors into that line and exit status 1, never a traceback."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import PurePath

from sqlalchemy.engine import make_url

from store.clean import one_line


class DiskError(Exception):
    """A disk's trouble already said in one line (what, where, what to do)."""


# SQLite's primary result codes (the low byte of an extended code) -> the kind of trouble
_SQLITE = {13: "full", 8: "read-only", 3: "read-only", 14: "cannot-open", 10: "io", 26: "not-a-store",
           11: "damaged", 5: "busy", 6: "busy"}
_ERRNO = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EFBIG: "full", errno.EROFS: "read-only",
          errno.EACCES: "not-allowed", errno.EPERM: "not-allowed", errno.EIO: "io", errno.ENOENT: "missing",
          errno.ENOTDIR: "not-a-folder", errno.EEXIST: "not-a-folder", errno.EISDIR: "a-folder"}
_SQLSTATE = {"53100": "full", "25006": "read-only",  # PostgreSQL: disk_full, read_only_sql_transaction,
             "57P01": "unreachable", "57P02": "unreachable", "57P03": "unreachable", "3D000": "unreachable"}  # gone

_STORE_LINES = {
    "full": "the disk holding the store {where} is full ({detail}): free some space there and run the command "
            "again (the unfinished write was rolled back; nothing is half-written)",
    "read-only": "the store {where} is read-only ({detail}): make the file and its folder writable for this user, "
                 "or set [store] url to a writable copy",
    "cannot-open": "cannot open the store {where} ({detail}): its folder must exist and be writable for this user "
                   "(SQLite keeps its -wal and -shm files beside the store), or set [store] url elsewhere",
    "io": "the disk failed while reading or writing the store {where} ({detail}): check that it is not full, "
          "read-only or failing (df, dmesg), then run the command again",
    "not-a-store": "{where} is not a SQLite database ({detail}): set [store] url in the settings to a mynawatch "
                   "store, or to a new file name",
    "damaged": "the store {where} is damaged ({detail}): `mynawatch db check` names the problems; restore the "
               "latest copy made by `mynawatch db backup`",
    "busy": "the store {where} stayed locked by another process ({detail}): run the command again when that one "
            "is done",
    "unreachable": "cannot reach the PostgreSQL store {where} ({detail}): check that the server runs and accepts "
                   "connections (pg_isready), that the database exists and [store] url names it, then run the command "
                   "again (an unfinished write was rolled back)",
}
_FILE_LINES = {
    "full": "no room to write {where} ({detail}): the disk is full or a file-size limit was reached; free some "
            "space and run the command again",
    "read-only": "cannot write {where} ({detail}): the file system is read-only; choose a folder on a writable disk",
    "not-allowed": "not allowed to use {where} ({detail}): give this user access to it, or choose another path",
    "io": "the disk failed on {where} ({detail}): check the disk (dmesg), then run the command again",
    "missing": "{where}: {detail}; check the path (a file's folder must exist)",
    "not-a-folder": "{where}: {detail}; a file stands where a folder is needed: choose another path",
    "a-folder": "{where} is a folder ({detail}): give the path of a file",
    "other": "{where}: {detail}",
}


def store_place(url: str | None) -> str:
    """The store as people name it: the SQLite file, or the URL without its password."""
    if not url:
        return "(the store)"
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL fails earlier with its own message
        return "(the store)"
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ":memory:"
        return database.removeprefix("file:").split("?", 1)[0]
    return parsed.render_as_string(hide_password=True)


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper around the driver's error
        if isinstance(orig, BaseException):
            yield orig
        exc = exc.__cause__  # the explicit chain only: an error raised while handling another is its own


def store_trouble(exc: BaseException | None) -> tuple[str, str] | None:
    """(kind, SQLite's or PostgreSQL's own words) when ``exc`` is a store failure of the disk kind, else None."""
    for e in _causes(exc) if exc is not None else ():
        if isinstance(e, sqlite3.Error) and (code := getattr(e, "sqlite_errorcode", None)) is not None:
            if (kind := _SQLITE.get(code & 0xFF)) is not None:
                return kind, one_line(str(e))
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str) and state in _SQLSTATE:
            return _SQLSTATE[state], one_line(str(e).splitlines()[0] if str(e) else state)
        if _psycopg_operational(e) and (state is None or state.startswith("08")):  # no connection, or it was lost
            # (ConnectionTimeout, a server that never answered, is an OperationalError too)
            return "unreachable", one_line(str(e).strip().splitlines()[0] if str(e).strip() else "connection lost")
    return None


def _psycopg_operational(e: BaseException) -> bool:
    return any(c.__module__.startswith("psycopg") and c.__name__ == "OperationalError" for c in type(e).__mro__)


def file_trouble(exc: BaseException) -> tuple[str, str, str] | None:
    """(kind, the file, the system's words) when ``exc`` is an operating-system error on a file, else None."""
    for e in _causes(exc):
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, (BrokenPipeError, ConnectionError)):
            kind = _ERRNO.get(e.errno, "other")
            if e.filename is None and kind == "other":
                return kind, "", one_line(str(e))
            where = short_path(one_line(str(e.filename))) if e.filename is not None else "a file"
            return kind, where, short_path(one_line(e.strerror or str(e)))
    return None


def disk_line(exc: BaseException, *, store: str | None) -> str | None:
    """One line naming what failed, where, and what to do, for a full disk, a read-only or unusable store
    or a file that cannot be written; None when ``exc`` is none of these."""
    if isinstance(exc, DiskError):
        return str(exc)
    if (found := store_trouble(exc)) is not None:
        kind, detail = found
        return _STORE_LINES[kind].format(where=store_place(store), detail=detail)
    if (found := file_trouble(exc)) is not None:
        kind, where, detail = found
        if not where:
            return detail
        line = _FILE_LINES[kind].format(where=where, detail=detail)
        if kind != "other" and PurePath(where).name.startswith("model-") and ".pickle" in where:
            line += " (it is the classifier's model cache: MYNAWATCH_CACHE can point it at another folder)"
        return line
    return None


def short_path(text: str, most: int = 240) -> str:
    """A path (or a line naming one) of at most ``most`` characters: its start and its end, which names the
    file (a path of thousands of characters was quoted whole in the one line of a failed command)."""
    return text if len(text) <= most else f"{text[:most // 2]}…{text[-(most // 2 - 1):]}"


def model_cache_problem() -> str | None:
    """What is wrong with the folder of the classifier's model cache, found before a command trains or loads
    a model (a file or a device there, or a path too long, was found only when the model was saved, after a
    minute of training), or None. A folder not made yet is fine: it is made when the model is saved."""
    from classifier.cache import cache_dir

    place = cache_dir()
    var = next((v for v in ("MYNAWATCH_CACHE", "XDG_CACHE_HOME") if os.environ.get(v)), None)
    named = f"{var} {one_line(str(place))[:120]!r}" if var else f"the model cache {one_line(str(place))[:120]!r}"
    try:
        if stat.S_ISDIR(os.stat(place).st_mode):
            return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return f"{named}: the path is too long for this system: point it at another folder"
        if exc.errno != errno.ENOTDIR:
            return None  # not made yet, or a folder this user may not enter: the load or the save names it
    return (f"{named}: not a folder (a file or a device stands there or on its way): point it at a folder for the "
            "classifier's model cache (made when missing)")
