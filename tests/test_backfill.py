"""Alerts for history: a backfill over a past month records what hourly evaluations would have recorded,
marked backfilled, sending nothing (a real SMTP server and a real webhook receiver get nothing); a second
backfill changes nothing; a catch-up after downtime notifies only what still fires."""

from __future__ import annotations

import email
from datetime import datetime, timedelta
from email import policy

import pytest
from sqlalchemy import select
from test_alerts import at
from test_reports import _free_port, _Sink, _smtp, _wait
from test_reports_data import MODEL, Row, add_items
from test_webhook import Receiver

from reports.backfill import backfill_alerts, catch_up
from reports.jobs import deliver_notifications, evaluate_alerts
from reports.mail import SmtpSettings
from reports.outbox import Channels
from reports.webhook import WebhookSettings
from store import alerts as store_alerts
from store import notifications as store_out
from store.clock import today
from store.db import make_sessions
from store.tables import Alert

DAYS = 32
BURSTS = {("portal", 14): [9, 10, 11], ("health_insurance", 20): [14, 15, 16], ("portal", 26): [20, 21],
          ("card", 26): [20, 21, 22]}
FIELDS = ("dedup_key", "series", "status", "started_at", "last_seen_at", "fired_at", "resolved_at", "peak_count",
          "score", "flagged_hours", "peak_expected", "total_count", "total_expected")


def _month() -> list[Row]:
    rows = []
    for d in range(DAYS):
        for n, svc in enumerate(("portal", "health_insurance", "card")):
            rows.append(Row(f"{svc} の不具合報告 {d}", at(d, 10 + 3 * n, 7), services=(svc,), cause="defect"))
    for (svc, d), hours in BURSTS.items():
        rows += [Row(f"{svc} 障害 {d}-{h}-{k}", at(d, h, 5 + 7 * k), services=(svc,), publisher=f"媒体{k}")
                 for h in hours for k in range(6)]
    return rows


@pytest.fixture
def month(engine_sessions):
    """The month in a fresh store, once on SQLite and once on PostgreSQL."""
    add_items(engine_sessions, _month())
    return engine_sessions


@pytest.fixture
def channels():
    sink, port = _Sink(), _free_port()
    controller, receiver = _smtp(port, sink), Receiver()
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="mw@example.jp", recipients=("a@example.jp",))
    yield Channels.of(smtp, send_email=True, webhooks=(WebhookSettings(url=receiver.url, name="chat"),)), sink, receiver
    controller.stop()
    receiver.close()


def _backfill(sessions, since, until, now):
    with sessions.begin() as session:
        return backfill_alerts(session, since=since, until=until, now=now, model_version=MODEL)


def _rows(sessions):
    with sessions.begin() as session:
        return [tuple(r) for r in session.execute(select(Alert.__table__).order_by(Alert.id))]


def test_a_backfill_records_the_months_alerts_silently_and_a_second_one_changes_nothing(month, channels):
    sessions = month
    chans, sink, receiver = channels
    now = at(DAYS + 400, 12)  # long after the month
    done = _backfill(sessions, at(0, 0), at(DAYS, 0), now)
    assert done.hours == DAYS * 24 and done.changed == [] and done.events == []
    with sessions.begin() as session:
        alerts = store_alerts.all_alerts(session)
    found = {(a.service, today(a.started_at)): a.started_at for a in alerts}
    assert len(found) == len(alerts) == len(BURSTS)
    for (svc, d), hours in BURSTS.items():  # a daily story just before a burst may join its episode
        assert at(d, hours[0] - 1) <= found[(svc, today(at(d, 0)))] <= at(d, hours[0])
    for a in alerts:
        assert a.backfilled and a.status == "resolved" and a.notified_at is None and a.resolve_notified
        assert a.total_count >= 12 and a.total_expected < 2 and a.peak_expected < 1
    deliver_notifications(sessions, chans, now=now)
    evaluate_alerts(sessions, model_version=MODEL, now=now, channels=chans)  # a live evaluation after it: nothing old
    assert sink.messages == [] and receiver.hits == 0
    with sessions.begin() as session:
        assert store_out.notifications(session) == []

    before = _rows(sessions)
    again = _backfill(sessions, at(0, 0), at(DAYS, 0), now + timedelta(hours=5))
    assert again.new == [] and again.changed == []
    assert _rows(sessions) == before  # not even updated_at moved


def test_a_backfill_records_what_hourly_evaluations_would_have(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 'month.sqlite'}")
    add_items(sessions, _month())
    live = make_sessions(f"sqlite:///{tmp_path / 'live.sqlite'}")
    add_items(live, _month())
    for h in range(13 * 24, 27 * 24 + 1):  # every burst, and the quiet hours that end the last one
        evaluate_alerts(live, model_version=MODEL, now=at(0, h), deliver=False)
    _backfill(sessions, at(13, 0), at(27, 0), at(27, 0))
    with live.begin() as a, sessions.begin() as b:
        hourly = [tuple(getattr(x, f) for f in FIELDS) for x in store_alerts.all_alerts(a)]
        replayed = [tuple(getattr(x, f) for f in FIELDS) for x in store_alerts.all_alerts(b)]
    assert len(hourly) == len(BURSTS)
    assert replayed == hourly


def test_a_backfill_up_to_now_leaves_a_firing_alert_to_the_next_evaluation(month, channels):
    """Trouble still going on when the backfill ends is news: the next live evaluation notifies it."""
    sessions = month
    chans, sink, receiver = channels
    now = at(26, 21, 30)
    _backfill(sessions, at(0, 0), now, now)
    with sessions.begin() as session:
        firing = {a.service: a for a in store_alerts.all_alerts(session) if a.status == "firing"}
        assert store_out.notifications(session) == []
    assert set(firing) == {"portal", "card"} and all(a.backfilled and a.notified_at is None for a in firing.values())
    events = evaluate_alerts(sessions, model_version=MODEL, now=now, channels=chans)
    assert sorted((e.kind, e.alert.service) for e in events) == [("firing", "card"), ("firing", "portal")]


def test_catch_up_after_downtime_notifies_only_what_still_fires(month, channels):
    """Down from day 20 08:00 to day 26 21:30: health insurance's trouble (day 20, over) is recorded silently;
    portal and card, firing when the monitor is back, are notified; nothing before the downtime is repeated."""
    sessions = month
    chans, sink, receiver = channels
    for h in range(13 * 24, 20 * 24 + 8 + 1):  # hourly evaluations until the downtime
        evaluate_alerts(sessions, model_version=MODEL, now=at(0, h), channels=chans)
    _wait(sink, 2)
    before = len(sink.messages)
    assert before == 2  # portal on day 14: firing, then resolved
    sink.messages.clear()
    receiver.bodies.clear()

    back = at(26, 21, 30)
    with sessions.begin() as session:
        done = catch_up(session, since=at(20, 8), now=back, model_version=MODEL, channels=chans)
    assert sorted((e.kind, e.alert.service) for e in done.events) == [("firing", "card"), ("firing", "portal")]
    deliver_notifications(sessions, chans, now=back)
    _wait(sink, 2)
    subjects = sorted(m["Subject"] for m in _parsed(sink))
    assert subjects == ["【mynawatch】発生: マイナポータルの障害報告が急増", "【mynawatch】発生: マイナンバーカードの障害報告が急増"]
    assert sorted(b["groupLabels"]["service"] for b in receiver.bodies) == ["card", "portal"]
    assert all(b["status"] == "firing" for b in receiver.bodies)
    with sessions.begin() as session:
        alerts = {(a.service, today(a.started_at).day): a for a in store_alerts.all_alerts(session)}
    missed = alerts[("health_insurance", 21)]  # Tokyo day 20 after DAY0 (2024-09-01) is the 21st
    assert missed.backfilled and missed.status == "resolved" and missed.notified_at is None
    assert alerts[("portal", 27)].backfilled and alerts[("portal", 27)].notified_at == back
    assert not alerts[("portal", 15)].backfilled and alerts[("portal", 15)].resolve_notified

    # the next hour's live evaluation sends nothing new; a second catch-up over the same hours changes nothing
    assert evaluate_alerts(sessions, model_version=MODEL, now=back + timedelta(minutes=30), channels=chans,
                           deliver=False) == []
    with sessions.begin() as session:
        again = catch_up(session, since=at(20, 8), now=back + timedelta(minutes=40), model_version=MODEL, channels=chans)
    assert again.events == [] and again.new == []


def test_catch_up_sends_the_resolve_notice_of_an_alert_notified_before_the_downtime(month, channels):
    sessions = month
    chans, sink, receiver = channels
    for h in range(13 * 24, 14 * 24 + 10 + 1):  # portal fires at 10:00 on day 14, then the monitor goes down
        evaluate_alerts(sessions, model_version=MODEL, now=at(0, h), channels=chans)
    _wait(sink, 1)
    assert len(sink.messages) == 1
    sink.messages.clear()
    back = at(17, 9, 15)
    with sessions.begin() as session:
        done = catch_up(session, since=at(14, 10), now=back, model_version=MODEL, channels=chans)
    assert [(e.kind, e.alert.service) for e in done.events] == [("resolved", "portal")]


def _parsed(sink):
    return [email.message_from_bytes(m, policy=policy.default) for m in sink.messages]


def test_catch_up_on_an_empty_store_does_nothing(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 'e.sqlite'}")
    with sessions.begin() as session:
        done = catch_up(session, since=datetime.fromisoformat("2024-10-01T00:00+09:00"),
                        now=datetime.fromisoformat("2024-10-02T00:00+09:00"), model_version=MODEL)
    assert done.new == [] and done.events == [] and done.hours == 24  # 23 hour boundaries, then now


def test_a_backfill_tells_its_progress_once_a_simulated_day(month):
    seen = []
    with month.begin() as session:
        done = backfill_alerts(session, since=at(0, 0), until=at(3, 0), now=at(40, 0), model_version=MODEL,
                               progress=lambda *a: seen.append(a))
    assert done.hours == 72 and seen == [(24, 72, "backfill (hours)"), (48, 72, "backfill (hours)"),
                                         (72, 72, "backfill (hours)")]
