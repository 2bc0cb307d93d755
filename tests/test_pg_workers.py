"""Many workers, one PostgreSQL store (issue 14): `mynawatch run --role collect|classify|alerts` as real processes.

Two collectors fetch 10,000 items from feeds on a loopback server, each source leased to one of them at a time;
four classifier workers tag them, one SIGKILLed while it holds a claimed batch; two alerts processes, one leading
and one waiting, the leader SIGKILLed after it notified: every item stored once and tagged exactly once, and the
webhook receives each alert notification once. The smaller tests below check the leases, claims and leader
lock one by one, and that roles are refused on SQLite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pg import require_server
from tests.conftest import LoopbackServer, Route, wait_until

ROOT = Path(__file__).parent.parent
SOURCES, PER_SOURCE = 20, 500  # 10,000 items
LEASE, CLAIM = 6, 8  # seconds: [schedule] lease_seconds and claim_seconds of the workers
CITIES = ["札幌市", "仙台市", "新潟市", "金沢市", "静岡市", "名古屋市", "京都市", "神戸市", "岡山市", "広島市", "高松市",
          "松山市", "福岡市", "熊本市", "鹿児島市", "那覇市", "青森市", "盛岡市", "秋田市", "山形市"]
NEUTRAL = ["利用登録の説明会を開催", "申請窓口の受付時間を延長", "出張申請サービスを実施", "交付率が県内で最高に",
           "健康保険証との一体化を解説", "公金受取口座の登録を呼びかけ", "商店街でポイント還元の催し", "高齢者向けの相談会"]
TOPICS = ["マイナンバーカード", "マイナ保険証", "マイナポイント", "マイナポータル", "コンビニ交付", "電子証明書"]
TROUBLE = ["マイナポータルでシステム障害、ログインできない状態が続く", "マイナポータルが利用できず、デジタル庁が原因を調査",
           "マイナポータルに接続障害、手続きが止まる", "マイナポータルの不具合でエラー表示、利用者から苦情",
           "マイナポータルがつながらない、午前から障害", "マイナポータル障害で電子申請が停止"]


def _rfc822(when: datetime) -> str:
    return format_datetime(when.astimezone(timezone.utc), usegmt=True)


def _feed(n: int, now: datetime) -> bytes:
    """PER_SOURCE items of outlet ``n`` over the last ten days, ordinary news about the card; outlet 0 also
    carries the portal's trouble: a story every other day, then a burst in the last three hours."""
    items = []
    for i in range(PER_SOURCE):
        when = now - timedelta(days=10) + timedelta(minutes=(i * 28 + n * 7) % (10 * 24 * 60 - 240))
        title = f"{CITIES[(i + n) % len(CITIES)]}、{TOPICS[i % len(TOPICS)]}の{NEUTRAL[(i // 3 + n) % len(NEUTRAL)]}（{n}-{i}）"
        items.append((title, when))
    if n == 0:
        for d in range(1, 10, 2):
            items[d] = (f"{CITIES[d]}で{TROUBLE[d % len(TROUBLE)]}（過去{d}）", now - timedelta(days=d, hours=5))
        for k in range(30):  # ten an hour over the last three hours, each its own story
            items[100 + k] = (f"{CITIES[k % len(CITIES)]}の窓口で{TROUBLE[k % len(TROUBLE)]}　{k}件目の報告",
                              now - timedelta(minutes=175 - 6 * k))
    body = "".join(f"<item><title>{t}</title><link>https://outlet{n}.example.jp/news/{i}</link>"
                   f"<guid>outlet{n}-{i}</guid><pubDate>{_rfc822(w)}</pubDate>"
                   f"<description>{t}。</description></item>" for i, (t, w) in enumerate(items))
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>outlet {n}</title>{body}'
            "</channel></rss>").encode()


class Receiver:
    """A webhook receiver on 127.0.0.1 keeping each POST's Idempotency-Key and body."""

    def __init__(self):
        self.taken: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.taken.append((self.headers.get("Idempotency-Key"), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Fetches:
    """When each feed was being served, to show that no two collectors fetched one source at once."""

    def __init__(self):
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.lock = threading.Lock()

    def route(self, path: str, body: bytes) -> Route:
        def answer(handler):
            start = time.monotonic()
            time.sleep(0.05)
            with self.lock:
                self.spans.setdefault(path, []).append((start, time.monotonic()))
            return body

        return Route(answer, headers={"Content-Type": "application/rss+xml"})

    def overlapping(self) -> list[str]:
        out = []
        for path, spans in self.spans.items():
            spans = sorted(spans)
            out += [path for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
        return out


def _sql(url: str, query: str, params=()):
    import psycopg

    from store.dialect import libpq_url

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _tails(procs) -> str:
    out = []
    for p in procs:
        if not p.log.closed:
            p.log.flush()
        out.append(f"--- {p.role} {p.pid} (exit {p.poll()}):\n" + Path(p.log.name).read_text(encoding="utf-8")[-1500:])
    return "\n".join(out)


def _wait(what: str, check, timeout: float, procs=()):
    return wait_until(what, check, timeout, procs=procs, tails=lambda: _tails(procs))


class Workers:
    def __init__(self, config: Path, log_dir: Path):
        self.config, self.log_dir, self.procs = config, log_dir, []

    def start(self, role: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{role}-{len(self.procs)}.log", "w+", encoding="utf-8")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(self.config), "-v", "run",
                                 "--role", role], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
        proc.log, proc.role = log, role
        self.procs.append(proc)
        return proc

    def log(self, proc) -> str:
        if not proc.log.closed:
            proc.log.flush()
        return Path(proc.log.name).read_text(encoding="utf-8")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.log.close()


def _pid(holder: str) -> int:
    return int(holder.split(":")[-2])


@pytest.fixture
def feeds():
    server = LoopbackServer()
    yield server
    server.close()


@pytest.mark.skipif(os.environ.get("MYNAWATCH_SLOW_TESTS") != "1",
                    reason="75-150 s: run with MYNAWATCH_SLOW_TESTS=1")
def test_collectors_classifier_workers_and_alerts_processes_share_one_store(tmp_path, pg_url, model, feeds):
    now = datetime.now(timezone.utc)
    fetches, hook = Fetches(), Receiver()
    lines = [f'[store]\nurl = "{pg_url}"\n', f'[reports]\ndir = "{tmp_path / "reports"}"\n',
             "[fetch]\ntimeout_seconds = 30\nconnections = 4\nper_host_connections = 4\nhost_interval_seconds = 0\n",
             "[collect]\narticle_pages = false\n",
             f"[schedule]\nlease_seconds = {LEASE}\nclaim_seconds = {CLAIM}\njitter_seconds = 1\nclassify_minutes = 30\n",
             f'[[webhooks]]\nurl = "{hook.url}"\nname = "ops"\n']
    for n in range(SOURCES):
        feeds.routes[f"/f{n}"] = fetches.route(f"/f{n}", _feed(n, now))
        lines.append(f'[[sources]]\nname = "outlet{n}"\nurl = "{feeds.url(f"/f{n}")}"\npublisher = "媒体{n}"\n'
                     "interval_minutes = 60\n")
    config = tmp_path / "mynawatch.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    workers, started = Workers(config, tmp_path), time.monotonic()
    try:
        # two collectors: each source leased to one of them, every item stored once
        collectors = [workers.start("collect"), workers.start("collect")]
        _wait("10,000 items", lambda: _sql(pg_url, "SELECT count(*) FROM items")[0][0] >= SOURCES * PER_SOURCE
              if _sql(pg_url, "SELECT to_regclass('items') IS NOT NULL")[0][0] else False, 240, collectors)
        _wait("every source fetched", lambda: len(fetches.spans) == SOURCES, 60, collectors)
        print(f"collected: {time.monotonic() - started:.1f} s")
        assert _sql(pg_url, "SELECT count(*), count(DISTINCT canonical_url) FROM items") == [(10_000, 10_000)]
        assert fetches.overlapping() == [], "a source was fetched by two collectors at once"
        holders = _sql(pg_url, "SELECT holder, count(*) FROM work_leases GROUP BY holder")
        assert len(holders) == 2 and all(c == SOURCES // 2 for _, c in holders), holders  # the fair share each

        # four classifier workers; one SIGKILLed while it holds a claimed batch
        passed = _sql(pg_url, "SELECT count(*) FROM items WHERE gate = 'pass'")[0][0]
        assert passed > 9_000
        classifiers = [workers.start("classify") for _ in range(4)]
        held = _wait("a worker holding claims after some tagging", lambda: _sql(
            pg_url, "SELECT w.holder, count(*) FROM work_claims w WHERE (SELECT count(*) FROM classifications) > 1500 "
            "GROUP BY w.holder ORDER BY 2 DESC LIMIT 1"), 240, classifiers)
        victim = next(p for p in classifiers if p.pid == _pid(held[0][0]))
        victim.send_signal(signal.SIGKILL)
        print(f"killed a classifier worker holding {held[0][1]} claims: {time.monotonic() - started:.1f} s")
        victim.wait(timeout=30)
        killed_claims = held[0][1]
        survivors = [p for p in classifiers if p is not victim]
        _wait("every item tagged", lambda: _sql(pg_url, "SELECT count(DISTINCT item_id) FROM classifications "
                                                      "WHERE model_version <> 'human'")[0][0] == passed, 240, survivors)
        tagged = _sql(pg_url, "SELECT count(*), count(DISTINCT item_id), count(DISTINCT model_version) "
                              "FROM classifications")
        assert tagged == [(passed, passed, 1)]
        print(f"tagged: {time.monotonic() - started:.1f} s")
        assert _sql(pg_url, "SELECT count(*) FROM work_claims") == [(0,)]
        assert _sql(pg_url, "SELECT count(*) FROM items i WHERE gate = 'pass' AND NOT EXISTS "
                            "(SELECT 1 FROM classifications c WHERE c.item_id = i.id)") == [(0,)]

        # two alerts processes: one leads and notifies; killed, the other takes over and notifies nothing twice
        leaders = [workers.start("alerts"), workers.start("alerts")]
        _wait("an alert notified", lambda: _sql(pg_url, "SELECT count(*) FROM notifications WHERE status = 'sent'")[0][0],
              120, leaders)
        first = _wait("one leader", lambda: _sql(pg_url, "SELECT holder FROM work_workers WHERE leader"), 30, leaders)
        assert len(first) == 1
        dead = next(p for p in leaders if p.pid == _pid(first[0][0]))
        print(f"notified, leader killed: {time.monotonic() - started:.1f} s")
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        heir = next(p for p in leaders if p is not dead)
        _wait("the other alerts process leading and evaluating", lambda: "alerts evaluated" in workers.log(heir)
              and "leads now" in workers.log(heir), 60, [heir])
        time.sleep(1)
        print(f"taken over: {time.monotonic() - started:.1f} s")
    finally:
        workers.stop()
        hook.close()

    # the storage and claims held through the kill
    stats = _sql(pg_url, "SELECT n_tup_del, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'classifications'")
    assert stats == [(0, 0)], "a label was written twice (replaced) by two workers"
    logs = {p.pid: workers.log(p) for p in workers.procs}
    assert all(p.returncode == 0 for p in workers.procs if p not in (victim, dead)), logs
    assert "Traceback" not in "".join(logs.values())
    collected = [sum(int(n) for n in re.findall(r"collected outlet\d+: new (\d+)", logs[p.pid])) for p in collectors]
    # every item stored once between them; which collector stored a feed's first items depends on which process
    # got through its start first (one that starts seconds earlier fetches every source before the other has
    # registered, and hands half of the leases over afterwards): the fair split is the leases checked above
    assert sum(collected) == SOURCES * PER_SOURCE, collected
    by_worker = [sum(int(n) for n in re.findall(r"classified (\d+) items", logs[p.pid])) for p in survivors]
    assert all(by_worker) and killed_claims > 0, by_worker

    # one notification per alert, each received once
    notified = _sql(pg_url, "SELECT dedup_key FROM alerts WHERE notified_at IS NOT NULL")
    assert notified, _sql(pg_url, "SELECT dedup_key, status FROM alerts")
    assert any(k.startswith("trouble:portal@") for (k,) in notified)
    sent = _sql(pg_url, "SELECT key FROM notifications WHERE channel = 'webhook' AND status = 'sent'")
    keys = [k for k, _ in hook.taken]
    assert len(keys) == len(set(keys)) == len(sent), hook.taken
    received = [(a["annotations"]["dedup_key"], a["status"]) for _, body in hook.taken for a in body["alerts"]]
    assert len(received) == len(set(received))  # no alert twice
    assert {k for k, status in received if status == "firing"} == {k for (k,) in notified}


# -- one by one ------------------------------------------------------------------------------------


def test_roles_are_refused_on_sqlite_with_one_line(tmp_path):
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "run", "--role", "classify"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "PostgreSQL" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def pg_sessions(pg_url):
    from store.db import make_sessions

    sessions = make_sessions(pg_url)
    yield sessions
    sessions.kw["bind"].dispose()


def _items(sessions, n: int, now: datetime) -> None:
    from store.tables import Item, Source, Story

    with sessions.begin() as s:
        s.add(Source(id=1, name="a", url="http://127.0.0.1:9/a", kind="feed"))
        s.add(Story(id=1, title="t", first_seen_at=now))
        s.flush()
        s.add_all(Item(id=i, source_id=1, story_id=1, canonical_url=f"https://example.jp/{i}", title=f"記事{i}",
                       summary="", publisher="p", title_key=f"k{i}", published_at=now, fetched_at=now, gate="pass")
                  for i in range(1, n + 1))


def test_claims_run_out_and_go_to_another_worker_and_a_late_save_is_dropped(pg_sessions):
    from store import work

    now, lease = datetime(2026, 12, 7, tzinfo=timezone.utc), timedelta(seconds=30)
    _items(pg_sessions, 1000, now)
    with pg_sessions.begin() as s:
        a = [i.item_id for i in work.claim_items(s, "A", "v1", now=now, lease=lease, limit=400)]
    with pg_sessions.begin() as s:
        b = [i.item_id for i in work.claim_items(s, "B", "v1", now=now + timedelta(seconds=20), lease=lease,
                                                 limit=400)]
    assert a == list(range(1, 401)) and b == list(range(401, 801))  # nothing claimed twice
    later = now + lease + timedelta(seconds=1)  # A died: its claims ran out, B's have not
    with pg_sessions.begin() as s:
        c = [i.item_id for i in work.claim_items(s, "C", "v1", now=later, lease=lease, limit=1000)]
    assert c == list(range(1, 401)) + list(range(801, 1001))  # B's claims still hold
    with pg_sessions.begin() as s:
        from store.records import Cause, Label, Sentiment

        label = Label(False, (), Cause.NONE, Sentiment.NEUTRAL)
        assert work.save_claimed(s, "A", "v1", dict.fromkeys(a, label), now=later) == set()  # A's late answer: C's
        assert work.save_claimed(s, "C", "v1", dict.fromkeys(c, label), now=later) == set(c)
        assert work.save_claimed(s, "C", "v1", dict.fromkeys(c, label), now=later) == set()  # saved once


def test_the_concurrent_claims_of_two_sessions_skip_each_others_rows(pg_sessions):
    from store import work

    now, lease = datetime(2026, 12, 7, tzinfo=timezone.utc), timedelta(seconds=30)
    _items(pg_sessions, 100, now)
    first = pg_sessions()
    try:
        mine = [i.item_id for i in work.claim_items(first, "A", "v1", now=now, lease=lease, limit=60)]  # not committed
        with pg_sessions.begin() as s:
            theirs = [i.item_id for i in work.claim_items(s, "B", "v1", now=now, lease=lease, limit=100)]
        assert mine == list(range(1, 61)) and theirs == list(range(61, 101))
        first.commit()
    finally:
        first.close()


def test_sources_are_shared_fairly_and_a_dead_collectors_go_to_the_living(pg_sessions):
    from store import work

    now, lease = datetime(2026, 12, 7, tzinfo=timezone.utc), timedelta(seconds=30)
    names = [f"source:s{i}" for i in range(7)]
    with pg_sessions.begin() as s:
        for h in ("h1:1:a", "h2:2:b"):
            work.heartbeat(s, h, "collect", now=now, lease=lease)
        one = work.balance_leases(s, "h1:1:a", names, now=now, lease=lease)
        two = work.balance_leases(s, "h2:2:b", names, now=now, lease=lease)
    assert len(one.held) == 4 and len(two.held) == 3 and not set(one.held) & set(two.held)
    later = now + timedelta(seconds=20)  # h2 beats on, h1 is silent
    with pg_sessions.begin() as s:
        work.heartbeat(s, "h2:2:b", "collect", now=later, lease=lease)
        two = work.balance_leases(s, "h2:2:b", names, now=later, lease=lease)
    assert len(two.held) == 3  # h1's leases have not run out yet
    later += timedelta(seconds=15)
    with pg_sessions.begin() as s:
        work.heartbeat(s, "h2:2:b", "collect", now=later, lease=lease)
        two = work.balance_leases(s, "h2:2:b", names, now=later, lease=lease)
    assert sorted(two.held) == names and sorted(two.taken) == sorted(one.held)


def test_one_leader_at_a_time_and_the_lock_goes_with_its_connection(pg_sessions):
    from store.work import Leader

    engine = pg_sessions.kw["bind"]
    first, second = Leader(engine), Leader(engine)
    try:
        assert first.leads() and not second.leads() and first.leads()
        first.close()  # as when its process dies: the server frees the lock with the connection
        assert second.leads() and not first.leads()
    finally:
        first.close()
        second.close()


def test_threads_asking_for_the_lead_at_once_share_one_lock_connection(pg_sessions):
    """The scheduler's jobs ask ``leads()`` from several threads at once: one connection takes the lock, and
    when the leader stops, nothing of this process keeps holding it (no pooled session with the lock)."""
    import threading

    from sqlalchemy import text

    from store.work import Leader

    engine = pg_sessions.kw["bind"]
    first = Leader(engine)
    start, answers = threading.Barrier(8), []

    def ask() -> None:
        start.wait()
        answers.append(first.leads())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with engine.connect() as c:
        holders = c.execute(text("SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted")).scalar()
    second = Leader(engine)
    try:
        assert answers == [True] * 8 and holders == 1
        first.close()
        assert second.leads()  # the lock went with the one connection that held it
    finally:
        first.close()
        second.close()


def test_a_new_lead_is_announced_by_the_next_step_that_gets_through(pg_url):
    """Whichever thread takes the lead (a job's ``leads()``, or the step's own), the team step says "newly
    leading" once, so the new leader's jobs start at once; a step whose heartbeat failed says it at the next."""
    from store.db import make_sessions
    from store.work import Leader, Team

    sessions = make_sessions(pg_url)
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    broken = sessionmaker(bind=create_engine("postgresql+psycopg://postgres@127.0.0.1:9/closed_port"))
    now, lease = datetime(2026, 12, 7, tzinfo=timezone.utc), timedelta(seconds=30)
    other = Leader(sessions.kw["bind"])
    team = Team(sessions, "alerts", lease=lease, names=[])
    try:
        assert other.leads()
        assert team.step(now=now) == ((), False)
        other.close()
        assert team.leads()  # a job asked first, and took the lead
        assert team.step(now=now) == ((), True)
        assert team.step(now=now) == ((), False)  # said once
        team.leader.close()
        team.sessions = broken  # the heartbeat cannot be written: the step fails after taking the lead
        with pytest.raises(Exception):
            team.step(now=now)
        team.sessions = sessions
        assert team.step(now=now) == ((), True)
    finally:
        other.close()
        team.leader.close()
        sessions.kw["bind"].dispose()
        broken.kw["bind"].dispose()
