"""Webhook notifications in Alertmanager's shape, posted to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_alerts import SPIKE_DAY, _burst, _history, at
from test_reports_data import MODEL, add_items

from reports.jobs import deliver_notifications, evaluate_alerts
from reports.outbox import Channels
from reports.webhook import WebhookSettings
from store import notifications as store_out
from store.db import make_sessions


class Receiver:
    """Accepts POSTs and keeps their JSON bodies; answers with the next status in ``answers`` (then 200)."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.answers: list[int] = []
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                status = outer.answers.pop(0) if outer.answers else 200
                if status == 200:
                    assert self.headers["Content-Type"] == "application/json"
                    outer.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def spiky(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10, 11]))
    return sessions


def test_firing_and_resolved_bodies_follow_alertmanager(spiky, receiver):
    channels = Channels(webhooks=(WebhookSettings(url=receiver.url, name="chat"),))
    evaluate_alerts(spiky, model_version=MODEL, now=at(SPIKE_DAY, 10, 30), channels=channels)
    evaluate_alerts(spiky, model_version=MODEL, now=at(SPIKE_DAY, 11, 30), channels=channels)
    evaluate_alerts(spiky, model_version=MODEL, now=at(SPIKE_DAY, 16), channels=channels)
    firing, resolved = receiver.bodies
    for body in (firing, resolved):
        assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                             "commonLabels", "commonAnnotations", "externalURL", "alerts"}
        assert body["version"] == "4" and body["receiver"] == "chat" and body["groupLabels"] == {"service": "portal"}
        assert body["groupKey"] == '{}:{episode="trouble:portal@2024-09-15T00:00Z", service="portal"}'
        (alert,) = body["alerts"]
        assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
        assert alert["labels"] == {"alertname": "MynaTroubleSpike", "service": "portal", "series": "trouble:portal",
                                   "severity": "warning"}
        assert alert["startsAt"] == "2024-09-15T00:00:00Z"  # 09:00 in Tokyo
        assert "マイナポータル" in alert["annotations"]["summary"]
    assert firing["status"] == "firing" and firing["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] == "2024-09-15T03:00:00Z"
    assert firing["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]


def test_a_receiver_that_fails_gets_the_notification_once_it_recovers(spiky, receiver):
    receiver.answers = [503, 500]
    channels = Channels(webhooks=(WebhookSettings(url=receiver.url),))
    now = at(SPIKE_DAY, 10, 30)
    evaluate_alerts(spiky, model_version=MODEL, now=now, channels=channels)
    assert receiver.hits == 1 and receiver.bodies == []
    assert deliver_notifications(spiky, channels, now=now).sent == []  # not due before its backoff
    assert deliver_notifications(spiky, channels, now=now + timedelta(minutes=1)).failed
    done = deliver_notifications(make_sessions(str(spiky.kw["bind"].url)), channels, now=now + timedelta(minutes=4))
    assert len(done.sent) == 1 and len(receiver.bodies) == 1
    assert deliver_notifications(spiky, channels, now=now + timedelta(hours=2)).sent == []
    assert receiver.hits == 3 and len(receiver.bodies) == 1


def test_a_refused_notification_is_kept_as_failed_not_retried_forever(spiky, receiver):
    receiver.answers = [400]
    channels = Channels(webhooks=(WebhookSettings(url=receiver.url),))
    evaluate_alerts(spiky, model_version=MODEL, now=at(SPIKE_DAY, 10, 30), channels=channels)
    assert deliver_notifications(spiky, channels, now=at(SPIKE_DAY, 12)).sent == []
    with spiky.begin() as s:
        (n,) = store_out.notifications(s)
    assert n.status == "failed" and "HTTP 400" in n.last_error and receiver.hits == 1
