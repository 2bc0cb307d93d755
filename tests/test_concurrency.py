"""Several processes on one store at once: creating a new store, and a second `mynawatch run`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from store.migrations import head

ROOT = Path(__file__).parent.parent

# Each process imports everything first, then waits for the go file, so they all open the store in the same instant.
OPEN = """
import os, sys, time
from store.db import open_engine
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
open_engine(sys.argv[1]).dispose()
print("opened")
"""


def _schema(db: Path) -> tuple:
    c = sqlite3.connect(db)
    try:
        return (c.execute("SELECT version_num FROM alembic_version").fetchall(),
                c.execute("PRAGMA integrity_check").fetchone()[0],
                {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")})
    finally:
        c.close()


def test_processes_opening_a_new_store_at_once_all_succeed_and_create_it_once(tmp_path):
    for attempt in range(3):  # the race is timing-dependent: three new stores
        db, go = tmp_path / f"new{attempt}" / "store.sqlite", tmp_path / f"go{attempt}"
        procs = [subprocess.Popen([sys.executable, "-c", OPEN, f"sqlite:///{db}", str(go)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        time.sleep(1.5)  # the imports
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out.strip() == "opened", err[-2000:]
        versions, integrity, names = _schema(db)
        assert versions == [(head(),)] and integrity == "ok"
        assert {"items", "fetch_log", "notifications", "items_fts", "item_labels_current"} <= names


def test_commands_started_at_once_on_a_new_store_all_succeed(tmp_path):
    db = tmp_path / "store.sqlite"
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n', encoding="utf-8")
    commands = [["alerts", "list"], ["alerts", "outbox"], ["silence", "list"], ["db", "check"], ["sources"]]
    procs = [subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in commands]
    for args, p in zip(commands, procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "Traceback" not in err, (args, err[-2000:])
    versions, integrity, _ = _schema(db)
    assert versions == [(head(),)] and integrity == "ok"


def _run(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "run"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _wait_started(proc: subprocess.Popen, lock: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists() and f"pid {proc.pid} " in lock.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"`run` did not start: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}")


def test_a_second_run_on_the_same_store_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    db = tmp_path / "store.sqlite"
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n[collect]\narticle_pages = false\n', encoding="utf-8")
    lock = tmp_path / "store.sqlite-run.lock"
    first = _run(config)
    try:
        _wait_started(first, lock)
        second = _run(config)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, (out, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "already running" in err and f"pid {first.pid}" in err and str(db) in err, err
        assert first.poll() is None  # the first one runs on
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = _run(config)  # the kernel dropped the killed process's lock
        try:
            _wait_started(third, lock)
            assert "scheduled" in third.stdout.readline()  # its signal handlers are in place
        finally:
            third.send_signal(signal.SIGTERM)
            out, err = third.communicate(timeout=60)
        assert third.returncode == 0 and "stopped" in out, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_a_store_held_open_too_long_is_one_clear_line_not_a_hang(tmp_path, monkeypatch, capsys):
    from mynawatch.cli import main
    from store import locks

    db = tmp_path / "store.sqlite"
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{db}"\n', encoding="utf-8")
    monkeypatch.setattr(locks, "OPEN_WAIT", 0.5)
    with locks.open_lock(f"sqlite:///{db}"):  # as a process stuck in a long migration would hold it
        assert main(["--config", str(config), "alerts", "list"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "opening or upgrading" in err and str(db) in err, err
    assert main(["--config", str(config), "alerts", "list"]) == 0  # released: opens at once
