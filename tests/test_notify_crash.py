"""Notifications across a SIGKILL: between the claim and the send, and between the send and its bookkeeping.

Real processes (`mynawatch alerts deliver`, `mynawatch run`) against a real SMTP server (aiosmtpd) and a real
HTTP receiver on 127.0.0.1. A claim whose process died goes again once it runs out (within a minute); a message
the receiver already had goes again with the same key (Message-ID, Idempotency-Key and groupKey), so the receiver
can drop the copy: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_alerts import SPIKE_DAY, _burst, _history, at
from test_reports import _free_port
from test_reports_data import MODEL, add_items

from reports.jobs import evaluate_alerts
from reports.mail import SmtpSettings, message_id
from reports.outbox import CLAIM_MARGIN, Channels, deliver_due
from reports.webhook import WebhookSettings
from store import notifications as store_out
from store.db import make_sessions
from store.notifications import Outgoing

ROOT = Path(__file__).parent.parent
TIMEOUT = 3  # seconds: the SMTP and webhook deadline, so a claim runs out after TIMEOUT + CLAIM_MARGIN
LEASE = TIMEOUT + CLAIM_MARGIN.total_seconds()


class Gate:
    """How a server treats the next message: "ok" takes it; "stall" holds it untaken until released (the sender is
    killed after its claim, before the message is sent); "hold" takes it, then answers once released (the sender is
    killed after the send, before its bookkeeping)."""

    def __init__(self):
        self.mode = "ok"
        self.arrived, self.release, self.answered = threading.Event(), threading.Event(), threading.Event()
        self.times: list[float] = []

    def set(self, mode: str) -> None:  # new events: a handler still waiting keeps the ones it started with
        self.mode = mode
        self.arrived, self.release, self.answered = threading.Event(), threading.Event(), threading.Event()


class Receiver:
    """A webhook receiver: keeps each body it takes with its Idempotency-Key header."""

    def __init__(self):
        self.gate, self.taken = Gate(), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                gate = outer.gate
                mode, arrived, release, answered = gate.mode, gate.arrived, gate.release, gate.answered
                if mode == "stall":
                    arrived.set()
                    release.wait(60)
                    self.close_connection = True
                    return
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.taken.append((self.headers.get("Idempotency-Key"), body))
                gate.times.append(time.monotonic())
                if mode == "hold":
                    arrived.set()
                    release.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass
                answered.set()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"

    def close(self):
        self.gate.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Mailbox:
    """An SMTP server (aiosmtpd) that keeps each message it takes."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.gate, self.taken, self.port = Gate(), [], _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        gate = self.gate
        mode, arrived, release, answered = gate.mode, gate.arrived, gate.release, gate.answered
        if mode == "stall":
            arrived.set()
            while not release.is_set():
                await asyncio.sleep(0.02)
            return "451 4.3.0 not taken"
        self.taken.append(envelope.content)
        gate.times.append(time.monotonic())
        if mode == "hold":
            arrived.set()
            while not release.is_set():
                await asyncio.sleep(0.02)
        answered.set()
        return "250 OK"

    def close(self):
        self.gate.release.set()
        self.controller.stop()


class Store:
    """A store holding one alert notification by email and one by webhook, and its settings file."""

    def __init__(self, path: Path):
        path.mkdir()
        self.db, self.config = path / "store.sqlite", path / "mynawatch.toml"
        self.mail, self.hook = Mailbox(), Receiver()
        self.config.write_text(
            f'[store]\nurl = "sqlite:///{self.db}"\n[collect]\narticle_pages = false\n[alerts]\nsend_email = true\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {self.mail.port}\nsender = "mw@example.jp"\n'
            f'recipients = ["ops@example.jp"]\ntimeout = {TIMEOUT}\n'
            f'[[webhooks]]\nurl = "{self.hook.url}"\nname = "chat"\ntimeout_seconds = {TIMEOUT}\n', encoding="utf-8")
        sessions = make_sessions(f"sqlite:///{self.db}")
        add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10, 11]))
        smtp = SmtpSettings(host="127.0.0.1", port=self.mail.port, sender="mw@example.jp", recipients=("ops@example.jp",),
                            timeout=TIMEOUT)
        channels = Channels.of(smtp, send_email=True, webhooks=(WebhookSettings(url=self.hook.url, name="chat",
                                                                                timeout_seconds=TIMEOUT),))
        evaluate_alerts(sessions, model_version=MODEL, now=at(SPIKE_DAY, 10, 30), channels=channels, deliver=False)
        assert self.rows() == [("email", "pending", 0), ("webhook", "pending", 0)]

    def rows(self) -> list[tuple]:
        with sqlite3.connect(self.db) as c:
            return c.execute("SELECT channel, status, attempts FROM notifications ORDER BY id").fetchall()

    def cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(self.config), *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))

    def close(self):
        self.mail.close()
        self.hook.close()


def _kill(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    return err


def kill_after_claim(store: Store, gate: Gate) -> tuple[float, str]:
    """Start a delivery and SIGKILL it while the server has the message but has not taken it."""
    gate.set("stall")
    proc = store.cli("alerts", "deliver")
    assert gate.arrived.wait(60), proc.stderr.read() if proc.poll() is not None else "no delivery arrived"
    claimed = time.monotonic()
    err = _kill(proc)
    gate.release.set()  # the server drops the message it never took
    return claimed, err


def kill_after_send(store: Store, gate: Gate) -> tuple[float, str]:
    """Start a delivery and SIGKILL it after the server took the message and answered, before it is recorded (the
    store's write lock is held from outside meanwhile, so the bookkeeping waits)."""
    gate.set("hold")
    proc = store.cli("alerts", "deliver")
    assert gate.arrived.wait(60), proc.stderr.read() if proc.poll() is not None else "no delivery arrived"
    claimed = time.monotonic()
    lock = sqlite3.connect(store.db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        gate.release.set()
        assert gate.answered.wait(30)
        time.sleep(0.5)  # the sender reads the answer and waits for the store
        err = _kill(proc)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    gate.set("ok")
    return claimed, err


@pytest.fixture
def stores(tmp_path):
    made = [Store(tmp_path / "a"), Store(tmp_path / "b")]
    yield made
    for s in made:
        s.close()


def test_a_kill_between_claim_and_send_or_send_and_record_delivers_again_within_a_minute_with_the_same_key(stores):
    a, b = stores
    # a: the email is claimed and never sent; the webhook is taken by the receiver and never recorded
    a_email_claimed, _ = kill_after_claim(a, a.mail.gate)
    a_hook_claimed, err = kill_after_send(a, a.hook.gate)
    assert "being sent by another process" in err  # the email's claim is still live: not silent, not sent
    # b: the other way round
    b_email_claimed, _ = kill_after_send(b, b.mail.gate)
    b.mail.gate.set("ok")
    b_hook_claimed, _ = kill_after_claim(b, b.hook.gate)
    b.hook.gate.set("ok")
    a.mail.gate.set("ok")
    for s in (a, b):
        assert s.rows() == [("email", "sending", 1), ("webhook", "sending", 1)]
    assert (len(a.mail.taken), len(a.hook.taken), len(b.mail.taken), len(b.hook.taken)) == (0, 1, 1, 0)

    # b: a restarted daemon sends both when their claims run out, without waiting for notify_minutes (5)
    daemon = b.cli("run")
    try:
        # a: a delivery while the claims are live sends nothing and says why; one after they ran out sends both
        early = a.cli("alerts", "deliver")
        out1, err1 = early.communicate(timeout=60)
        if "sent " not in out1:  # (on a slow machine the claims may have run out already)
            assert "being sent by another process" in err1, (out1, err1)
        time.sleep(max(0.0, a_hook_claimed + LEASE + 0.5 - time.monotonic()))
        late = a.cli("alerts", "deliver")
        out2, err2 = late.communicate(timeout=60)
        assert early.returncode == late.returncode == 0, (err1, err2)
        assert (out1 + out2).count("sent ") == 2 and "never reported back" in err1 + err2, (out1, err1, out2, err2)
        # never before the claim ran out (the claim came a moment before the server saw the message)
        assert a.mail.gate.times[0] > a_email_claimed + LEASE - 1 and a.hook.gate.times[1] > a_hook_claimed + LEASE - 1
        deadline = time.monotonic() + 60
        while (len(b.mail.taken) < 2 or len(b.hook.taken) < 1) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert (len(b.mail.taken), len(b.hook.taken)) == (2, 1), err
    assert LEASE - 1 < b.mail.gate.times[1] - b_email_claimed < 60 and LEASE - 1 < b.hook.gate.times[0] - b_hook_claimed < 60
    for s in (a, b):
        assert s.rows() == [("email", "sent", 2), ("webhook", "sent", 2)]

    # each message reached its server once, or twice with the same key
    (mail,) = a.mail.taken
    first, again = b.mail.taken
    assert first == again
    with sqlite3.connect(b.db) as c:
        (key,) = c.execute("SELECT key FROM notifications WHERE channel = 'email'").fetchone()
    ids = {email.message_from_bytes(m, policy=policy.default)["Message-ID"] for m in (mail, first, again)}
    assert ids == {message_id(f"{key}|ops@example.jp")}  # one notification, one Message-ID, on every copy
    (key1, body1), (key2, body2) = a.hook.taken
    assert key1 == key2 and key1.startswith('"') and len(key1) == 34 and body1 == body2
    assert json.loads(body1)["groupKey"] == '{}:{episode="trouble:portal@2024-09-15T00:00Z", service="portal"}'
    (key_b, body_b), = b.hook.taken
    assert key_b != key1 and json.loads(body_b)["groupKey"] == json.loads(body1)["groupKey"]


def _outgoing(n: int) -> Outgoing:
    return Outgoing(f"k{n}", "webhook", "http://127.0.0.1:9/h", "firing", f"s{n}", b"{}")


def test_a_claim_is_a_lease_and_a_late_answer_from_a_dead_claim_changes_nothing(sessions):
    now = datetime(2024, 10, 16, tzinfo=timezone.utc)
    lease = timedelta(seconds=20)
    with sessions.begin() as s:
        store_out.enqueue(s, _outgoing(1), now=now)
        (q,) = store_out.due(s, now=now)
        assert store_out.claim(s, q, now=now, lease=lease)
        assert not store_out.claim(s, q, now=now, lease=lease)  # taken: the attempt count moved on
        assert store_out.due(s, now=now + lease - timedelta(seconds=1)) == []
        assert [h.id for h in store_out.held(s, now=now)] == [q.id]
        assert store_out.next_due_at(s) == now + lease
        (stale,) = store_out.due(s, now=now + lease)  # the claim ran out: due again
        assert stale.status == "sending" and stale.attempts == 1
        assert store_out.claim(s, stale, now=now + lease, lease=lease)
        store_out.mark_failed(s, q.id, 1, "late answer of the first claim", retry_at=now + lease)
        store_out.mark_gave_up(s, q.id, 1, "late refusal of the first claim")
        (row,) = store_out.notifications(s)
        assert (row.status, row.attempts, row.last_error) == ("sending", 2, None)
        store_out.mark_failed(s, q.id, 2, "down", retry_at=now + 2 * lease)
        (row,) = store_out.notifications(s)
        assert (row.status, row.attempts, row.last_error) == ("pending", 2, "down")
        store_out.mark_sent(s, q.id, now=now)
        assert store_out.next_due_at(s) is None


def test_the_claim_lease_follows_the_channel_deadline(sessions):
    now = datetime(2024, 10, 16, tzinfo=timezone.utc)
    channels = Channels(smtp=SmtpSettings(host="127.0.0.1", port=_free_port(), timeout=2),
                        webhooks=(WebhookSettings(url="http://127.0.0.1:9/h", timeout_seconds=1),))
    with sessions.begin() as s:
        store_out.enqueue(s, _outgoing(1), now=now)
        store_out.enqueue(s, Outgoing("k2", "email", "ops@example.jp", "firing", "s2", b"Subject: x\r\n\r\nx\r\n"), now=now)
    started = time.monotonic()
    done = deliver_due(sessions, channels, now=now)
    assert len(done.failed) == 2 and time.monotonic() - started < 10  # nothing listens: both fail fast
    with sessions.begin() as s:
        assert {n.status for n in store_out.notifications(s)} == {"pending"}
        assert store_out.next_due_at(s) == now + timedelta(minutes=1)  # the first backoff, not a claim
