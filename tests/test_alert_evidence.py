"""Alerts carry their evidence: the alert email (read back with the email module from a real SMTP server)
and the webhook payload (JSON from a real HTTP receiver) name the service, the counts against the baseline,
the top three trouble stories with links and publishers, the leading cause, the incident and a link."""

from __future__ import annotations

import email
import re
from datetime import datetime, timedelta, timezone
from email import policy
from html.parser import HTMLParser

import pytest
from test_alerts import SPIKE_DAY, _history, at
from test_reports import _free_port, _Sink, _smtp, _wait
from test_reports_data import MODEL, Row, add_items
from test_webhook import Receiver

from reports.alerts import AlertPolicy, dedup_key
from reports.evidence import figure
from reports.incidents import recompute_incidents
from reports.jobs import evaluate_alerts
from reports.mail import SmtpSettings
from reports.outbox import Channels
from reports.webhook import WebhookSettings
from store import alerts as store_alerts
from store.clock import TOKYO
from store.db import make_sessions

BASE = "https://reports.example.jp/report-{date}.html"


def _episode() -> list[Row]:
    """Portal trouble at 09:00-10:59 Tokyo on the spike day: story A carried by three outlets, B by two, C by
    one (the earliest single), later singles, and a recovery note and a maintenance notice that do not count."""
    t = lambda h, m: at(SPIKE_DAY, h, m)  # noqa: E731
    rows = [Row("マイナポータルに接続できず", t(9, 5), publisher="NHK", story="A"),
            Row("マイナポータルに接続できず 利用者困惑", t(9, 20), publisher="共同通信", story="A"),
            Row("マイナポータル接続できず", t(10, 10), publisher="時事通信", story="A"),
            Row("マイナポータル ログイン障害", t(9, 30), publisher="日経", story="B"),
            Row("マイナポータル ログイン障害が続く", t(9, 40), publisher="朝日", story="B"),
            Row("マイナポータルでエラー表示 <b>", t(9, 1), publisher="読売", cause="defect"),
            Row("マイナポータル 復旧しました", t(10, 40), publisher="デジタル庁", sentiment="positive", story="R"),
            Row("マイナポータル 復旧", t(10, 41), publisher="NHK", sentiment="positive", story="R"),
            Row("マイナポータル 復旧を確認", t(10, 42), publisher="共同通信", sentiment="positive", story="R"),
            Row("マイナポータル 臨時メンテナンス", t(9, 3), publisher="デジタル庁", cause="maintenance", story="M"),
            Row("マイナポータル 臨時メンテナンス実施", t(9, 4), publisher="NHK", cause="maintenance", story="M")]
    rows += [Row(f"マイナポータル 不具合 {h}-{k}", t(h, 45 + k), publisher=f"地方紙{h}{k}") for h in (9, 10) for k in range(3)]
    return rows


@pytest.fixture
def store(engine_sessions):
    """The episode in a fresh store, once on SQLite and once on PostgreSQL."""
    add_items(engine_sessions, _history() + _episode())
    return engine_sessions


def _notify(sessions, now, *, with_incidents=True):
    sink, port = _Sink(), _free_port()
    controller, receiver = _smtp(port, sink), Receiver()
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=port, sender="mw@example.jp", recipients=("a@example.jp",))
        channels = Channels.of(smtp, send_email=True, webhooks=(WebhookSettings(url=receiver.url, name="chat"),))
        if with_incidents:
            with sessions.begin() as session:
                recompute_incidents(session, model_version=MODEL, now=now)
        events = evaluate_alerts(sessions, model_version=MODEL, now=now, channels=channels,
                                 policy=AlertPolicy(base_url=BASE))
        _wait(sink, 1)
    finally:
        controller.stop()
        receiver.close()
    return events, [email.message_from_bytes(m, policy=policy.default) for m in sink.messages], receiver.bodies


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_data(self, data):
        self.text.append(data)


def test_the_alert_email_carries_counts_headlines_cause_incident_and_link(store):
    events, messages, _ = _notify(store, at(SPIKE_DAY, 10, 30))
    assert [(e.kind, e.alert.service) for e in events] == [("firing", "portal")]
    [msg] = messages
    assert msg["Subject"] == "【mynawatch】発生: マイナポータルの障害報告が急増"
    text = msg.get_body(("plain",)).get_content()
    alert = events[0].alert
    assert alert.peak_expected is not None and alert.peak_expected < 1 and alert.total_count == 7  # 6 stories at 9, A again at 10
    assert f"ピーク {alert.peak_count} 件/時（平常 {figure(alert.peak_expected)} 件/時）" in text
    assert f"期間計 {alert.total_count} 件（平常 " in text
    assert "主な原因: アクセス集中" in text  # cause "load", most of the stories
    heads = re.findall(r"^    (\d)\. (.+)$", text, re.M)
    assert heads == [("1", "マイナポータルに接続できず"), ("2", "マイナポータル ログイン障害"),
                     ("3", "マイナポータルでエラー表示 <b>")]
    assert "NHK、共同通信、時事通信" in text and "日経、朝日" in text
    assert "復旧" not in text.split("主な報道")[1] and "メンテナンス" not in text  # not trouble reports
    assert "インシデント: #2024-09-15T09-portal" in text
    assert "詳細: https://reports.example.jp/report-2024-09-15.html" in text
    times = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d\S*(?: [+-]\d\d:\d\d)?", text)
    assert times and all(t.endswith("+09:00") for t in times), times  # Tokyo time with its offset, never Z
    assert "2024-09-15 09:00 +09:00" in text

    html = msg.get_body(("html",)).get_content()
    parser = _Links()
    parser.feed(html)
    urls = [u for u in parser.links if u.startswith("https://example.jp/")]
    assert len(urls) == 3 and "https://reports.example.jp/report-2024-09-15.html" in parser.links
    shown = "".join(parser.text)
    assert "マイナポータルでエラー表示 <b>" in shown and "<b>" not in html.replace("&lt;b&gt;", "")  # escaped
    assert "NHK、共同通信、時事通信" in shown and "2024-09-15T09-portal" in shown


def test_the_webhook_payload_carries_the_same_evidence_in_utc(store):
    events, _, bodies = _notify(store, at(SPIKE_DAY, 10, 30))
    [body] = bodies
    [item] = body["alerts"]
    ann = item["annotations"]
    alert = events[0].alert
    assert item["generatorURL"] == "https://reports.example.jp/report-2024-09-15.html"
    assert ann["dedup_key"] == "trouble:portal@2024-09-15T00:00Z" == alert.dedup_key  # 09:00 Tokyo is 00:00 UTC
    assert item["startsAt"] == "2024-09-15T00:00:00Z"
    assert ann["service_name"] == "マイナポータル" and ann["cause"] == "load"
    assert ann["total_count"] == str(alert.total_count) and float(ann["peak_expected"]) == pytest.approx(alert.peak_expected, abs=0.01)
    assert [ann[f"headline_{n}"] for n in (1, 2, 3)] == ["マイナポータルに接続できず", "マイナポータル ログイン障害",
                                                       "マイナポータルでエラー表示 <b>"]
    assert ann["headline_1_publishers"] == "NHK、共同通信、時事通信"
    assert all(ann[f"headline_{n}_url"].startswith("https://example.jp/") for n in (1, 2, 3))
    assert "headline_4" not in ann
    assert ann["incident"] == "2024-09-15T09-portal" and ann["incident_start"].endswith("Z")
    assert "マイナポータルに接続できず（NHK、共同通信、時事通信）" in ann["description"]
    assert f"ピーク {alert.peak_count} 件/時" in ann["description"] and "主な原因: " in ann["description"]
    text = str(body)
    assert "+09:00" not in text  # one zone per output: UTC with Z
    stamps = re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?\S?", text)
    assert stamps and all(s.endswith("Z") for s in stamps), stamps


def test_without_incidents_or_base_url_the_notice_still_goes(store):
    events, messages, bodies = _notify(store, at(SPIKE_DAY, 10, 30), with_incidents=False)
    [msg], [body] = messages, bodies
    assert "インシデント" not in msg.get_body(("plain",)).get_content()
    assert "incident" not in body["alerts"][0]["annotations"]
    assert "マイナポータルに接続できず" in msg.get_body(("plain",)).get_content()


def test_expected_counts_read_the_same_in_email_and_webhook():
    assert [figure(v) for v in (0.0, 0.042, 0.42, 1.3, 9.999, 12.34, 120.0)] == ["0", "0.04", "0.42", "1.3", "10", "12.3", "120"]


def test_dedup_keys_are_utc_whatever_zone_the_hour_comes_in():
    tokyo_hour = datetime(2024, 10, 2, 8, tzinfo=TOKYO)
    assert dedup_key("trouble:portal", tokyo_hour) == "trouble:portal@2024-10-01T23:00Z"
    assert dedup_key("trouble:portal", tokyo_hour.astimezone(timezone.utc)) == "trouble:portal@2024-10-01T23:00Z"


def test_a_long_store_records_utc_dedup_keys(tmp_path):
    """With more than the baseline's 28 days of history the detector starts at a Tokyo midnight: the key still
    names the UTC hour."""
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    start = datetime(2024, 8, 1, tzinfo=TOKYO)
    quiet = [Row(f"不具合 {d}", start + timedelta(days=d, hours=11), cause="defect") for d in range(40)]
    burst = [Row(f"障害 {h}-{k}", start + timedelta(days=40, hours=h, minutes=5 + k), publisher=f"媒体{k}")
             for h in (9, 10) for k in range(6)]
    add_items(sessions, quiet + burst)
    evaluate_alerts(sessions, model_version=MODEL, now=start + timedelta(days=40, hours=10, minutes=30), deliver=False)
    with sessions.begin() as session:
        [alert] = store_alerts.all_alerts(session)
    assert alert.dedup_key == f"trouble:portal@{alert.started_at.astimezone(timezone.utc):%Y-%m-%dT%H:%M}Z"
    assert alert.dedup_key.endswith("T00:00Z")
