"""Alert emails: one message per service group and recipient, delivered to a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import email
from email import policy

from test_alerts import SPIKE_DAY, _burst, _history, at
from test_reports import _free_port, _smtp, _Sink, _wait
from test_reports_data import MODEL, add_items

from reports.jobs import evaluate_alerts
from reports.mail import SmtpSettings
from reports.outbox import Channels
from store.db import make_sessions


def test_alert_emails_are_grouped_by_service_and_readable(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10]) + _burst("health_insurance", SPIKE_DAY, [9, 10]))
    sink, port = _Sink(), _free_port()
    controller = _smtp(port, sink)
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=port, sender="mw@example.jp", recipients=("a@example.jp", "b@example.jp"))
        channels = Channels.of(smtp, send_email=True, webhooks=())
        events = evaluate_alerts(sessions, model_version=MODEL, now=at(SPIKE_DAY, 10, 30), channels=channels)
        evaluate_alerts(sessions, model_version=MODEL, now=at(SPIKE_DAY, 11, 30), channels=channels)  # nothing new
        _wait(sink, 4)
    finally:
        controller.stop()
    assert sorted(e.alert.service for e in events) == ["health_insurance", "portal"]
    messages = [email.message_from_bytes(m, policy=policy.default) for m in sink.messages]
    assert len(messages) == 4  # two groups x two recipients, once
    subjects = sorted({m["Subject"] for m in messages})
    assert subjects == ["【mynawatch】発生: マイナポータルの障害報告が急増", "【mynawatch】発生: マイナ保険証の障害報告が急増"]
    assert sorted(m["To"] for m in messages) == ["a@example.jp", "a@example.jp", "b@example.jp", "b@example.jp"]
    body = messages[0].get_body(("plain",)).get_content()
    assert "[発生]" in body and "ピーク 6 件/時" in body and "2024-09-15 09:00 +09:00" in body
    assert messages[0].get_body(("html",)) is not None
