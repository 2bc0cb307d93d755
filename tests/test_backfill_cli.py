"""`mynawatch alerts backfill` in its own process on a store holding a past month: alerts recorded, nothing
sent to the configured SMTP server and webhook (both real, on 127.0.0.1), a second run changes nothing,
bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from test_backfill import BURSTS, _month
from test_reports import _free_port, _Sink, _smtp
from test_reports_data import MODEL, add_items
from test_webhook import Receiver

from store import alerts as store_alerts
from store.db import make_sessions
from store.labels import Serving, serve


def _cli(config, *args):
    return subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "alerts", "backfill", *args],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))


@pytest.fixture
def setup(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 'mynawatch.sqlite'}")
    add_items(sessions, _month())
    with sessions.begin() as session:
        serve(session, Serving(MODEL, None, None, 0, datetime(2024, 9, 1, tzinfo=timezone.utc)))
    sink, port = _Sink(), _free_port()
    controller, receiver = _smtp(port, sink), Receiver()
    config = tmp_path / "mynawatch.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{tmp_path / 'mynawatch.sqlite'}"

[alerts]
send_email = true
base_url = "https://reports.example.jp/report-{{date}}.html"

[smtp]
host = "127.0.0.1"
port = {port}
sender = "mw@example.jp"
recipients = ["a@example.jp"]

[[webhooks]]
name = "chat"
url = "{receiver.url}"
""", encoding="utf-8")
    yield config, sessions, sink, receiver
    controller.stop()
    receiver.close()


def test_backfill_records_the_month_sends_nothing_and_a_second_run_changes_nothing(setup):
    config, sessions, sink, receiver = setup
    done = _cli(config, "--since", "2024-09-01", "--until", "2024-10-02")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"evaluated {32 * 24} hour(s) from 2024-09-01 00:00 +09:00 to 2024-10-03 00:00 +09:00: "
                        f"{len(BURSTS)} new alert(s), 0 updated, nothing sent")
    assert sum(line.lstrip().startswith("new") for line in lines) == len(BURSTS)
    assert any("マイナ保険証: 2024-09-21 13:00 +09:00 – 2024-09-21 17:00 +09:00" in line for line in lines), lines
    with sessions.begin() as session:
        alerts = store_alerts.all_alerts(session)
    assert len(alerts) == len(BURSTS) and all(a.backfilled and a.status == "resolved" for a in alerts)
    assert sink.messages == [] and receiver.hits == 0

    again = _cli(config, "--since", "2024-09-01", "--until", "2024-10-02", "--format", "json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["new"] == [] and doc["updated"] == [] and doc["sent"] == 0 and doc["hours"] == 32 * 24
    assert doc["since"] == "2024-09-01T00:00:00+09:00"
    assert sink.messages == [] and receiver.hits == 0


@pytest.mark.parametrize("args, says", [
    (["--since", "2024-02-30"], "--since '2024-02-30': expected a day (2024-10-01) or a time"),
    (["--since", "2024-10-01", "--until", "2024-09-01"], "--until '2024-09-01' is not after --since '2024-10-01'"),
    (["--since", "2999-01-01"], "--since '2999-01-01' is not in the past"),
])
def test_bad_input_is_one_line(setup, args, says):
    config, *_ = setup
    done = _cli(config, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and says in done.stderr and "Traceback" not in done.stderr
