"""Locks beside a SQLite store: one around opening it (creation and migrations), one held by `mynawatch run`.

Both are OS locks (``flock``) on small files next to the store, ``STORE-open.lock`` and ``STORE-run.lock``:
the kernel drops a lock when its process ends, however it ends, so a killed process never leaves one behind
and the files never need deleting. A store that is not a SQLite file (``:memory:``, PostgreSQL) gets no file
lock.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from store.clock import TOKYO

try:
    import fcntl
except ImportError:  # not a POSIX system: no file locks
    fcntl = None

log = logging.getLogger(__name__)
OPEN_WAIT = 900.0  # seconds to wait for another process's open (a migration of a large store takes a while)


class StoreBusy(Exception):
    """Another process has been opening (or upgrading) the store for longer than we wait."""

    def __init__(self, store: str, waited: float):
        super().__init__(f"{store}: another process has been opening or upgrading this store for {waited:.0f} s; "
                         "try again when it is done")
        self.store, self.waited = store, waited


class AlreadyRunning(Exception):
    """Another `mynawatch run` holds the store."""

    def __init__(self, store: str, holder: str):
        who = f" ({holder})" if holder else ""
        super().__init__(f"another `mynawatch run` is already running on {store}{who}; stop it first, "
                         "or give this one a store of its own ([store] url)")
        self.store, self.holder = store, holder


def store_file(url: str) -> Path | None:
    """The SQLite file behind ``url``; None for other engines and in-memory stores."""
    from sqlalchemy.engine import make_url  # here: the command line imports this module before it needs SQLAlchemy

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _lock_file(url: str, purpose: str) -> Path | None:
    store = store_file(url)
    return store.with_name(f"{store.name}-{purpose}.lock") if store is not None and fcntl is not None else None


def _open_fd(path: Path) -> int | None:
    """The lock file, created when missing; read-only when it cannot be written (a read-only store); None when it
    can be neither (then nobody can change the store either, so there is nothing to lock against). A symbolic
    link in its place is refused (OSError), never followed: `run` writes its name into the file, and would
    overwrite whatever file the link points to."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "a symbolic link where the store's lock file belongs, not followed: "
                                           "remove it", str(path)) from None
            continue
    return None


@contextmanager
def open_lock(url: str, *, wait: float | None = None) -> Iterator[None]:
    """Held while a process creates, migrates and sets up the store, so two processes starting at once never
    both create it: the second waits (at most ``wait`` seconds, OPEN_WAIT by default), then finds it done."""
    wait = OPEN_WAIT if wait is None else wait
    path = _lock_file(url, "open")
    fd = _open_fd(path) if path is not None else None
    if fd is None:
        yield
        return
    try:
        started, told, pause = time.monotonic(), False, 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited > wait:
                    raise StoreBusy(str(store_file(url)), waited) from None
                if waited > 3 and not told:
                    log.warning("waiting for another process that is opening or upgrading %s", store_file(url))
                    told = True
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


@contextmanager
def run_lock(url: str, *, now: datetime | None = None) -> Iterator[None]:
    """Held for the lifetime of `mynawatch run`: a second one on the same store raises AlreadyRunning, naming the
    first (its process id, host and start time are written into the lock file)."""
    path = _lock_file(url, "run")
    fd = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)  # open_engine would make it next
        fd = _open_fd(path)
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(str(store_file(url)), _holder(path)) from None
        started = (now or datetime.now(timezone.utc)).astimezone(TOKYO).isoformat(timespec="seconds")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        except OSError:  # a read-only lock file: the lock holds all the same, only the name is missing
            pass
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0][:200]
    except (OSError, IndexError):
        return ""
