"""Stream sources with several `mynawatch run --role collect` processes on one PostgreSQL store: each stream is
read by exactly one process at a time, the holder of its lease ``stream:NAME`` (store/work.py), and taken over
from the stored cursor when the holder dies (SIGKILL): every post stored once, never two connections at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from store import work
from store.db import make_sessions
from tests.conftest import wait_until

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "streams"))
from loopback import JetstreamServer, load  # noqa: E402

ROOT = Path(__file__).parent.parent
LEASE = 3  # seconds: [schedule] lease_seconds of the processes


class CountingJetstream(JetstreamServer):
    """A loopback Jetstream that counts the connections open at once."""

    def __init__(self, frames, **kw):
        self.lock, self.open, self.most = threading.Lock(), 0, 0
        super().__init__(frames, **kw)

    def handle(self, ws) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            super().handle(ws)
        finally:
            with self.lock:
                self.open -= 1


def _sql(url: str, query: str):
    import psycopg

    from store.dialect import libpq_url

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(query).fetchall()


def _wait(what: str, check, timeout: float, procs, logs):
    return wait_until(what, check, timeout, procs=procs, tails=lambda: _tails(logs), every=0.1, tolerate=(Exception,))


def _tails(logs) -> str:
    return "\n".join(f"--- {p}:\n{p.read_text(encoding='utf-8')[-1500:]}" for p in logs)


def _start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "-v", "run", "--role",
                             "collect"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w", encoding="utf-8"),
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_two_collect_processes_read_a_stream_one_at_a_time_and_the_survivor_takes_it_over(tmp_path, pg_url):
    frames, expect = load("jetstream")
    server = CountingJetstream(frames, pace=0.3, chunk=100)  # about 12 s for the whole replay
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "{pg_url}"\n\n[schedule]\nlease_seconds = {LEASE}\n\n'
                      f'[[streams]]\nname = "bsky"\nkind = "jetstream"\nendpoint = "{server.url}"\nstall_seconds = 60.0\n'
                      "backoff_seconds = 0.05\nmax_backoff_seconds = 0.2\nbatch_seconds = 0.1\nbatch_messages = 50\n",
                      encoding="utf-8")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_start(config, log) for log in logs]
    cursor = "SELECT cursor FROM stream_states"
    try:
        holder = _wait("a holder reading the stream", lambda: _sql(
            pg_url, "SELECT holder FROM work_leases WHERE name = 'stream:bsky'") if _sql(pg_url, cursor)
            and _sql(pg_url, cursor)[0][0] else None, 120, procs, logs)[0][0]
        first = next(p for p in procs if p.pid == int(holder.split(":")[-2]))
        other = next(p for p in procs if p is not first)
        third = _first_us(frames) + (expect["last_time_us"] - _first_us(frames)) // 3
        _wait("a third of the replay stored", lambda: int(_sql(pg_url, cursor)[0][0]) > third, 60, procs, logs)
        assert len(server.connections) == 1 and server.most == 1  # the other process waits
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = int(_sql(pg_url, cursor)[0][0])
        assert killed_at < expect["last_time_us"]
        _wait("the survivor holding the lease", lambda: _sql(
            pg_url, f"SELECT 1 FROM work_leases WHERE name = 'stream:bsky' AND holder LIKE '%:{other.pid}:%'"),
            30, [other], logs)
        _wait("the whole replay stored", lambda: int(_sql(pg_url, cursor)[0][0]) == expect["last_time_us"], 60,
              [other], logs)
        assert _sql(pg_url, "SELECT state FROM stream_states") == [("connected",)]
        other.send_signal(signal.SIGTERM)
        assert other.wait(60) == 0, _tails(logs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        server.close()
    posts = [g for (g,) in _sql(pg_url, "SELECT guid FROM items")]
    assert len(posts) == len(set(posts)) and set(posts) == set(expect["stored"])  # nothing lost, nothing twice
    assert server.most == 1 and len(server.connections) == 2  # one reader at a time: the holder, then the heir
    assert "cursor=" in server.connections[1]  # the heir resumed from the stored cursor
    assert _sql(pg_url, "SELECT state FROM stream_states") == [("stopped",)]
    assert _sql(pg_url, "SELECT count(*) FROM work_leases") == [(0,)]  # a clean stop frees the lease
    b = logs[procs.index(other)].read_text(encoding="utf-8")
    assert "stream bsky: this process reads it now" in b and "Traceback" not in b


def _first_us(frames: list[str]) -> int:
    return json.loads(frames[0])["time_us"]


@pytest.fixture
def pg_sessions(pg_url):
    sessions = make_sessions(pg_url)
    yield sessions
    sessions.kw["bind"].dispose()


def test_a_lease_is_renewed_by_its_holder_taken_when_run_out_and_fences_the_holders_writes(pg_sessions):
    t0, lease, name = datetime(2024, 10, 2, tzinfo=timezone.utc), timedelta(seconds=10), "stream:bsky"

    def hold(holder: str, at: float, take: bool = True) -> bool:
        with pg_sessions.begin() as s:
            return work.hold_lease(s, holder, name, now=t0 + timedelta(seconds=at), lease=lease, take=take)

    assert hold("a", 0) and hold("a", 5)  # taken, renewed (until 15)
    assert not hold("b", 14)  # held by another
    assert hold("b", 16)  # run out: taken over (until 26)
    assert not hold("a", 17, take=False) and not hold("a", 17)  # the old holder writes nothing more
    # a renewal in a transaction still open keeps the row locked: a taker that finds the lease run out skips it
    renewing = pg_sessions()
    assert work.hold_lease(renewing, "b", name, now=t0 + timedelta(seconds=25), lease=lease)
    assert not hold("a", 27)  # b's renewal (until 35) is not committed yet; the row is skipped, not waited for
    renewing.commit()
    renewing.close()
    assert not hold("a", 30) and hold("b", 31, take=False)
