"""`alerts backfill` over the demo's sample month: a copy of the demo's store without its alerts and
incidents gets them back hour by hour, marked backfilled; nothing reaches the configured SMTP server or
webhook (both real, on 127.0.0.1); a second backfill changes nothing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict

import pytest
from conftest import copy_demo
from test_demo import INCIDENTS, QUIET
from test_reports import _free_port, _Sink, _smtp
from test_webhook import Receiver

from store import alerts as store_alerts
from store import incidents as store_incidents
from store.clock import today
from store.db import make_sessions


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, demo_month):
    return copy_demo(demo_month, tmp_path_factory.mktemp("demo")) / "mynawatch.sqlite"


@pytest.fixture
def history(demo_store, tmp_path):
    """The demo's store with no alert, notification or incident: what a store filled from archives holds."""
    path = tmp_path / "history.sqlite"
    shutil.copy(demo_store, path)
    with sqlite3.connect(path) as c:
        for table in ("alerts", "notifications", "sent_digests", "incident_item_records", "incident_records"):
            c.execute(f"DELETE FROM {table}")
    return path


def _config(tmp_path, store, smtp_port, hook_url):
    config = tmp_path / "mynawatch.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{store}"

[alerts]
send_email = true

[smtp]
host = "127.0.0.1"
port = {smtp_port}
sender = "mw@example.jp"
recipients = ["analyst@example.jp"]

[[webhooks]]
name = "chat"
url = "{hook_url}"
""", encoding="utf-8")
    return config


def _backfill(config):
    done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "alerts", "backfill",
                           "--since", "2024-09-16", "--until", "2024-10-15"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    return done.stdout


def _table(path, table):
    with sqlite3.connect(path) as c:
        return c.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def test_the_sample_month_gets_its_alerts_and_incidents_back_and_nothing_is_sent(history, tmp_path):
    sink, port = _Sink(), _free_port()
    controller, receiver = _smtp(port, sink), Receiver()
    try:
        config = _config(tmp_path, history, port, receiver.url)
        first = _backfill(config)
        alerts_after, incidents_after = _table(history, "alerts"), _table(history, "incident_records")
        second = _backfill(config)
    finally:
        controller.stop()
        receiver.close()
    assert sink.messages == [] and receiver.hits == 0
    assert _table(history, "notifications") == []

    sessions = make_sessions(f"sqlite:///{history}")
    with sessions.begin() as session:
        alerts = store_alerts.all_alerts(session, limit=1000)
        incidents = store_incidents.incidents_between(session)
    assert alerts and all(a.backfilled and a.notified_at is None for a in alerts)
    raised = defaultdict(set)
    for a in alerts:
        if a.status in ("firing", "resolved"):
            raised[today(a.started_at).isoformat()].add(a.service)
    for day, services in INCIDENTS.items():
        assert raised[day] & services, (day, dict(raised))
    assert not set(raised) & set(QUIET), sorted(set(raised) & set(QUIET))
    for day, services in INCIDENTS.items():
        assert any(today(i.start).isoformat() == day and set(i.services) & services for i in incidents), (day, incidents)

    assert f"{len(alerts)} new alert(s), 0 updated, nothing sent" in first.splitlines()[0]
    assert "0 new alert(s), 0 updated, nothing sent" in second.splitlines()[0]
    assert _table(history, "alerts") == alerts_after  # the second backfill changed nothing
    assert _table(history, "incident_records") == incidents_after
