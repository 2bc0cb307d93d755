"""SIGKILL `classify`, `alerts check` and `report` at random points, as tests/test_kill.py does the collector:
the store stays consistent, and a rerun completes with nothing lost or doubled (one label per item and model,
each alert and each notification once, every report file whole).

Each stage runs as a real process on a real store; the kill lands at a random time within the stage's work
(from opening the store to its end, as measured on an untouched copy), or just after a visible step (a committed
batch of labels, the first webhook request, the report folder made just before the files). A few seeds each,
bounded in time.
"""

from __future__ import annotations

import email
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_reports_data import MODEL, Row, add_items

from store import labels as store_labels
from store.db import make_sessions

SEEDS = [1, 2, 3]
ITEMS = 4000
UTC = timezone.utc
WEBHOOK_TIMEOUT = 1  # seconds: a claim whose sender was killed runs out after this and the outbox's margin
WIRE = ["マイナ保険証の資格確認でエラー相次ぐ", "マイナポータルにつながりにくい状態", "コンビニ交付サービスが一時停止",
        "電子証明書の更新手続きで障害", "公金受取口座の誤登録を公表", "マイナンバーカードの交付が遅れる"]


def _start(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(folder / "mynawatch.toml"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def _finish(folder: Path, *args: str) -> float:
    """Run a command to its end; how long it worked with the store open (from opening it to the end)."""
    proc = _start(folder, *args)
    opened = _store_open(proc, folder / "mynawatch.sqlite")
    while not opened() and proc.poll() is None:
        time.sleep(0.005)
    started = time.monotonic()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"`{' '.join(args)}` failed:\n{err.decode()}"
    assert b"Traceback" not in err
    return time.monotonic() - started


def _store_open(proc: subprocess.Popen, db: Path):
    """A test that holds once ``proc`` has the store's file open (its imports done, its work begun): Linux's
    /proc/PID/fd; elsewhere it holds at once."""
    fds, target = Path(f"/proc/{proc.pid}/fd"), os.path.realpath(db)
    if not Path("/proc/self/fd").is_dir():
        return lambda: True

    def opened() -> bool:
        try:
            return any(os.readlink(fds / fd) == target for fd in os.listdir(fds))
        except OSError:  # it ended, or a descriptor closed while we looked
            return False
    return opened


def _kill(proc: subprocess.Popen, *, after: float, when=None, within: float = 120.0) -> bool:
    """SIGKILL ``proc`` ``after`` seconds from now, or from the moment ``when()`` first holds; False when it
    ended by itself first."""
    deadline = time.monotonic() + within
    while when is not None and not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    end = time.monotonic() + after
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    if proc.poll() is not None:
        proc.communicate()
        assert proc.returncode == 0, "the stage failed before the kill"
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return True


def _read(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db, timeout=10) as c:
        return c.execute(sql, args).fetchall()


def _consistent(db: Path) -> None:
    """SQLite's own checks, foreign keys, and the search index's integrity."""
    c = sqlite3.connect(db, timeout=10)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
        c.execute("INSERT INTO items_fts(items_fts, rank) VALUES ('integrity-check', 0)")
        c.rollback()
    finally:
        c.close()


def _copy(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to


def _store(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    settings = f'[store]\nurl = "sqlite:///mynawatch.sqlite"\n[reports]\ndir = "out"\n{extra}'
    (folder / "mynawatch.toml").write_text(settings, encoding="utf-8")
    return folder


def _checkpointed(folder: Path) -> Path:
    """The store as one file (no -wal, no -shm), so a copy of the folder is a copy of the store."""
    with sqlite3.connect(folder / "mynawatch.sqlite") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return folder


# --- classify ---------------------------------------------------------------------------------------------

def _labels(db: Path) -> dict[int, tuple]:
    """The served version's label of each item: relevance, cause, sentiment, services."""
    (version,) = _read(db, "SELECT model_version FROM served_model")[0]
    rows = _read(db, """SELECT c.item_id, c.relevant, c.cause, c.sentiment, group_concat(s.service)
                        FROM classifications c LEFT JOIN classification_services s ON s.classification_id = c.id
                        WHERE c.model_version = ? GROUP BY c.id""", version)
    return {item: (bool(rel), cause, sent, tuple(sorted((services or "").split(","))))
            for item, rel, cause, sent, services in rows}


@pytest.fixture(scope="module")
def untagged(tmp_path_factory, model) -> tuple[Path, dict[int, tuple], float]:
    """4,000 untagged items (eight batches of the classify job, then the search index), and what an unkilled
    `classify` makes of them: the labels, and how long it worked with the store open. After the run's model
    (``model``), which the classify processes load from the shared cache instead of training their own."""
    folder = _store(tmp_path_factory.mktemp("classify") / "base")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = [Row(f"{WIRE[i % len(WIRE)]}　第{i}報" if i % 3 else f"自治体窓口の様子 {i} 号：マイナンバーの手続き",
                now - timedelta(minutes=7 * i), publisher=f"媒体{i % 9}", source=f"src{i % 9}") for i in range(ITEMS)]
    add_items(make_sessions(f"sqlite:///{folder / 'mynawatch.sqlite'}"), rows)
    with sqlite3.connect(folder / "mynawatch.sqlite") as c:  # the helper labels them: only the items stay
        c.execute("DELETE FROM classification_services")
        c.execute("DELETE FROM classifications")
    _checkpointed(folder)
    reference = _copy(folder, folder.with_name("reference"))
    took = _finish(reference, "classify")
    labels = _labels(reference / "mynawatch.sqlite")
    assert len(labels) == ITEMS
    return folder, labels, took


@pytest.mark.parametrize("seed", SEEDS)
def test_classify_killed_at_a_random_point_then_rerun_labels_every_item_once(seed, untagged, tmp_path):
    base, reference, took = untagged
    rng = random.Random(seed)
    folder = _copy(base, tmp_path / "store")
    db = folder / "mynawatch.sqlite"
    if seed % 3 == 0:  # every label in one transaction, which also switches the served model
        proc = _start(folder, "classify", "--all")
        _kill(proc, after=rng.uniform(0, took), when=_store_open(proc, db))
    elif seed % 3 == 1:  # anywhere in its work: loading the model, tagging, indexing
        proc = _start(folder, "classify")
        _kill(proc, after=rng.uniform(0, took), when=_store_open(proc, db))
    else:  # between or inside the later batches, or while the search index is filled
        proc = _start(folder, "classify")
        _kill(proc, after=rng.uniform(0.0, 0.3), when=lambda: _count(db, "classifications") > 0)
    _consistent(db)
    partial = _labels(db) if _read(db, "SELECT count(*) FROM served_model")[0][0] else {}
    assert all(reference[item] == label for item, label in partial.items())  # whole labels, the right ones
    _finish(folder, "classify")
    _consistent(db)
    assert _labels(db) == reference
    assert _count(db, "classifications") == len(reference)  # one label per item, none doubled
    indexed, items = _read(db, "SELECT (SELECT count(*) FROM items_fts), (SELECT count(*) FROM items)")[0]
    assert indexed == items == len(reference)


def _count(db: Path, table: str) -> int:
    try:
        return _read(db, f"SELECT count(*) FROM {table}")[0][0]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


# --- alerts check -----------------------------------------------------------------------------------------

class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every request (path, Idempotency-Key) it took, answering a little
    later, so a kill can land between the send and its bookkeeping."""

    def __init__(self, hold: float = 0.3):
        self.taken: dict[str, list[str]] = defaultdict(list)
        self.arrived: dict[str, threading.Event] = defaultdict(threading.Event)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.taken[self.path].append(self.headers.get("Idempotency-Key"))
                outer.arrived[self.path].set()
                time.sleep(hold)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender is gone
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


def _hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _month(folder: Path, now: datetime) -> Path:
    """Two weeks of a quiet trouble signal for two services up to the hour ``now``, then a burst of reports for
    each in the last hours: `alerts check` fires for both. Labeled with a fixed model version the store serves."""
    folder = _store(folder)
    rows = []
    for d in range(1, 15):
        for n, svc in enumerate(("portal", "health_insurance")):
            rows.append(Row(f"{svc} の不具合報告 {d}", now - timedelta(days=d, hours=n * 3, minutes=53), services=(svc,),
                            cause="defect"))
    for n, svc in enumerate(("portal", "health_insurance")):
        rows += [Row(f"{svc} 障害 {h}-{k}", now - timedelta(hours=h + n, minutes=55 - 7 * k), services=(svc,),
                     publisher=f"媒体{k}") for h in (1, 2, 3, 4) for k in range(6)]
    sessions = make_sessions(f"sqlite:///{folder / 'mynawatch.sqlite'}")
    add_items(sessions, rows)
    with sessions.begin() as session:
        store_labels.serve(session, store_labels.Serving(MODEL, None, None, 0, now - timedelta(days=15)))
    sessions.kw["bind"].dispose()
    return _checkpointed(folder)


def _with_webhook(folder: Path, receiver: Receiver, name: str) -> Path:
    config = folder / "mynawatch.toml"
    hook = f'[[webhooks]]\nname = "chat"\nurl = "{receiver.url("/" + name)}"\ntimeout_seconds = {WEBHOOK_TIMEOUT}\n'
    config.write_text(config.read_text(encoding="utf-8") + hook, encoding="utf-8")
    return folder


def _outbox(db: Path) -> list[tuple]:
    return sorted(_read(db, "SELECT key, channel, kind FROM notifications"))  # the target differs per test


def _alert_keys(db: Path) -> list[str]:
    return sorted(r[0] for r in _read(db, "SELECT dedup_key FROM alerts"))


@pytest.fixture(scope="module")
def alert_cases(receiver, tmp_path_factory):
    """Per clock hour: the month built against that hour, and what an unkilled `alerts check` does to a copy
    of it (the alerts, the notifications, how long it worked). `alerts check` reads the real clock and the
    month's burst is placed against the hour it was built in: in the next hour the same store is evaluated
    differently (an alert resolves), so a test that runs into the next hour takes that hour's case."""
    cases: dict[datetime, tuple] = {}

    def case(hour: datetime) -> tuple:
        while hour not in cases:
            month = _month(tmp_path_factory.mktemp("alerts") / "base", hour)
            name = f"reference-{hour:%Y%m%d%H}"
            folder = _with_webhook(_copy(month, tmp_path_factory.mktemp(name) / "store"), receiver, name)
            took = _finish(folder, "alerts", "check")
            if _hour() != hour:  # the hour turned while the reference ran: it holds for neither hour
                hour = _hour()
                continue
            db = folder / "mynawatch.sqlite"
            outbox = _outbox(db)
            assert len(_alert_keys(db)) >= 2 and len(outbox) >= 2, "the month should fire for both services"
            assert sorted(_read(db, "SELECT DISTINCT status FROM notifications")) == [("sent",)]
            assert len(receiver.taken["/" + name]) == len(outbox)
            cases[hour] = (month, _alert_keys(db), outbox, took)
        return cases[hour]

    return case


def _wait_out_claims(db: Path) -> None:
    """Claims of the killed process run out (the send's deadline and a margin): wait for them, as the next
    delivery would."""
    rows = _read(db, "SELECT max(next_attempt_at) FROM notifications WHERE status = 'sending'")
    if rows[0][0]:
        until = datetime.fromisoformat(rows[0][0]).replace(tzinfo=UTC)
        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)


@pytest.mark.parametrize("seed", SEEDS[:2])  # both kinds of kill: anywhere in its work (odd), mid-send (even)
def test_alerts_check_killed_at_a_random_point_then_rerun_records_and_sends_each_once(seed, alert_cases, receiver,
                                                                                      tmp_path):
    for attempt in (1, 2):
        hour = _hour()
        try:
            _kill_alerts_check(seed, attempt, alert_cases(hour), receiver, tmp_path / f"try{attempt}")
            return
        except AssertionError:
            if attempt == 2 or _hour() == hour:
                raise  # a failure within one clock hour is a failure; one across an hour's turn is run again


def _kill_alerts_check(seed: int, attempt: int, case: tuple, receiver, tmp_path: Path) -> None:
    month, keys, outbox, took = case
    rng = random.Random(seed)
    name = f"seed{seed}-{attempt}"
    folder = _with_webhook(_copy(month, tmp_path / "store"), receiver, name)
    db = folder / "mynawatch.sqlite"
    proc = _start(folder, "alerts", "check")
    if seed % 2:  # anywhere in its work: detecting, recording, sending
        _kill(proc, after=rng.uniform(0, took), when=_store_open(proc, db))
    else:  # while the first notification is with the receiver, before its answer is booked
        _kill(proc, after=rng.uniform(0.0, 0.25), when=receiver.arrived[f"/{name}"].is_set)
    _consistent(db)
    assert _alert_keys(db) in ([], keys)  # the alerts and their notifications are written in one transaction
    assert _outbox(db) in ([], outbox)
    _finish(folder, "alerts", "check")
    _wait_out_claims(db)
    _finish(folder, "alerts", "deliver")
    _consistent(db)
    assert _alert_keys(db) == keys and _outbox(db) == outbox  # each once
    assert _read(db, "SELECT DISTINCT status FROM notifications") == [("sent",)]  # none lost
    taken = receiver.taken[f"/{name}"]
    assert len(set(taken)) == len(outbox) and None not in taken  # every one arrived, each with its key
    assert len(taken) - len(set(taken)) <= 1  # a copy only of what was in flight at the kill (receivers drop it)


# --- report -----------------------------------------------------------------------------------------------

DAY = (datetime.now(UTC) + timedelta(hours=9)).date().isoformat()  # today in Tokyo, when the module loads


def _parts(path: Path) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["Subject"] and msg.is_multipart()
    return [(str(msg["Subject"]), b"")] + [  # Content-IDs differ per run
        (p.get_content_type(), re.sub(rb"cid:[^\"\s>]+", b"cid:", p.get_payload(decode=True) or b""))
        for p in msg.walk() if not p.is_multipart()]


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> Path:
    """The alerts month built against the hour the module reaches the report tests (their day is fixed)."""
    return _month(tmp_path_factory.mktemp("report-month") / "base", _hour())


@pytest.fixture(scope="module")
def reported(month, tmp_path_factory) -> tuple[dict[str, bytes], dict, float]:
    """An unkilled `report`'s files (bytes; the digest's parts: its Date, boundary and Content-IDs differ per run)."""
    folder = _copy(month, tmp_path_factory.mktemp("report-reference") / "store")
    took = _finish(folder, "report", "--date", DAY)
    files = {p.name: p.read_bytes() for p in (folder / "out").iterdir()}
    assert len(files) == 5 and not [n for n in files if n.endswith(".tmp")]
    digest = next(p for p in (folder / "out").iterdir() if p.suffix == ".eml")
    return files, {digest.name: _parts(digest)}, took


def _whole(out: Path, files: dict[str, bytes], digests: dict) -> list[str]:
    """Every report file in ``out`` is the whole file an unkilled run writes; returns their names."""
    names = sorted(p.name for p in out.iterdir() if not p.name.endswith(".tmp")) if out.exists() else []
    for name in names:
        assert name in files, name
        if name in digests:
            assert _parts(out / name) == digests[name], f"{name} is not whole"
        else:
            assert (out / name).read_bytes() == files[name], f"{name} is not whole"
    return names


@pytest.mark.parametrize("seed", SEEDS)
def test_report_killed_at_a_random_point_then_rerun_leaves_every_file_whole(seed, month, reported, tmp_path):
    files, digests, took = reported
    rng = random.Random(seed)
    folder = _copy(month, tmp_path / "store")
    out = folder / "out"
    proc = _start(folder, "report", "--date", DAY)
    if seed % 2:  # anywhere in its work: reading, rendering, writing
        _kill(proc, after=rng.uniform(0, took), when=_store_open(proc, folder / "mynawatch.sqlite"))
    else:  # among the writes of the files (the folder is made just before them)
        _kill(proc, after=rng.uniform(0.0, 0.03), when=out.exists)
    _whole(out, files, digests)
    _consistent(folder / "mynawatch.sqlite")
    _finish(folder, "report", "--date", DAY)
    assert _whole(out, files, digests) == sorted(files)
    left = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert all(f".{proc.pid}.tmp" in n for n in left), left  # only the killed process's, removed within an hour
