"""The alert lifecycle over a real SQLite store: restarts, flapping, maintenance, silences, repeats, no data."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from test_reports_data import MODEL, Row, add_items, source_id

from reports.alerts import AlertPolicy
from reports.jobs import evaluate_alerts
from reports.outbox import Channels
from reports.webhook import WebhookSettings
from store import alerts as store_alerts
from store import notifications as store_out
from store.db import make_sessions
from store.maintenance import Window, save_window

TOKYO = ZoneInfo("Asia/Tokyo")
DAY0 = datetime(2024, 9, 1, tzinfo=TOKYO)
H = timedelta(hours=1)
SPIKE_DAY = 14
HOOK = Channels(webhooks=(WebhookSettings(url="http://127.0.0.1:9/hook", name="test"),))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def _history(services=("portal", "health_insurance")) -> list[Row]:
    """Two weeks of a trouble story now and then for each service: the quiet baseline."""
    rows = []
    for d in range(SPIKE_DAY):
        for n, svc in enumerate(services):
            rows.append(Row(f"{svc} の不具合報告 {d}", at(d, 10 + 3 * n, 7), services=(svc,), cause="defect"))
    return rows


def _burst(service: str, day: int, hours: list[int], per_hour: int = 6) -> list[Row]:
    return [Row(f"{service} 障害 {day}-{h}-{k}", at(day, h, 5 + 7 * k), services=(service,), publisher=f"媒体{k}")
            for h in hours for k in range(per_hour)]


def _evaluate(sessions, now, **kw):
    kw.setdefault("channels", HOOK)
    return evaluate_alerts(sessions, model_version=MODEL, now=now, deliver=False, **kw)


def _kinds(events):
    return [(e.kind, e.alert.service) for e in events]


def test_an_episode_fires_once_resolves_once_and_survives_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    sessions = make_sessions(url)
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10, 11]))
    assert _kinds(_evaluate(sessions, at(SPIKE_DAY, 10, 30))) == [("firing", "portal")]
    restarted = make_sessions(url)  # a new process on the same store
    assert _evaluate(restarted, at(SPIKE_DAY, 11, 30)) == []
    assert _evaluate(restarted, at(SPIKE_DAY, 12, 30)) == []
    assert _kinds(_evaluate(make_sessions(url), at(SPIKE_DAY, 16, 30))) == [("resolved", "portal")]
    assert _evaluate(make_sessions(url), at(SPIKE_DAY, 18)) == []
    with sessions.begin() as s:
        (alert,) = store_alerts.all_alerts(s)
        queued = store_out.notifications(s)
    assert alert.status == "resolved" and alert.started_at == at(SPIKE_DAY, 9) and alert.peak_count == 6
    assert alert.resolved_at == at(SPIKE_DAY, 12)
    assert sorted(n.kind for n in queued) == ["firing", "resolved"]


def test_a_flapping_series_makes_one_alert_not_many(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    flapping = [h for h in range(6, 14) if h % 3 != 2]  # two hours on, one off, all morning
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, flapping, per_hour=5))
    events = []
    for hour in range(6, 24):  # evaluated every hour, as `mynawatch run` does
        events += _evaluate(sessions, at(SPIKE_DAY, hour, 30))
    events += _evaluate(sessions, at(SPIKE_DAY + 1, 6))
    assert _kinds(events) == [("firing", "portal"), ("resolved", "portal")]
    with sessions.begin() as s:
        assert len(store_alerts.all_alerts(s)) == 1


def test_a_maintenance_window_inhibits_alerts_for_its_service_only(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [2, 3, 4]) + _burst("health_insurance", SPIKE_DAY, [2, 3, 4]))
    with sessions.begin() as s:
        save_window(s, Window("portal", at(SPIKE_DAY, 1), at(SPIKE_DAY, 5), "マイナポータル 計画停止", "https://example.jp/m"),
                    found_at=at(SPIKE_DAY - 3, 12))
    events = _evaluate(sessions, at(SPIKE_DAY, 4, 30)) + _evaluate(sessions, at(SPIKE_DAY, 9))
    assert _kinds(events) == [("firing", "health_insurance"), ("resolved", "health_insurance")]
    with sessions.begin() as s:
        alerts = {a.service: a for a in store_alerts.all_alerts(s)}
    assert alerts["portal"].status == "inhibited" and "計画停止" in alerts["portal"].note
    assert alerts["health_insurance"].status == "resolved"


def test_trouble_outlasting_the_maintenance_window_fires(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [2, 3, 4, 5, 6, 7, 8]))
    with sessions.begin() as s:
        save_window(s, Window("portal", at(SPIKE_DAY, 1), at(SPIKE_DAY, 5), "計画停止", "https://example.jp/m"),
                    found_at=at(SPIKE_DAY - 3, 12))
    assert _evaluate(sessions, at(SPIKE_DAY, 5, 30)) == []  # inside the window and its hour of grace
    assert _kinds(_evaluate(sessions, at(SPIKE_DAY, 7, 30))) == [("firing", "portal")]


def test_silences_mute_notifications_until_they_end(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, list(range(8, 16))))
    with sessions.begin() as s:
        sid = store_alerts.add_silence(s, service="portal", starts_at=at(SPIKE_DAY, 0), ends_at=at(SPIKE_DAY, 11),
                                       comment="known, being handled", created_by="test", now=at(SPIKE_DAY, 0))
    assert _evaluate(sessions, at(SPIKE_DAY, 9, 30)) == []
    with sessions.begin() as s:
        (alert,) = store_alerts.all_alerts(s)
        assert alert.status == "firing" and alert.silenced
        assert store_alerts.silences(s, now=at(SPIKE_DAY, 9, 30))[0].id == sid
    assert _kinds(_evaluate(sessions, at(SPIKE_DAY, 11, 30))) == [("firing", "portal")]  # the silence ended


def test_a_firing_alert_is_repeated_at_the_repeat_interval_and_grouped_by_service(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, list(range(3, 20)), per_hour=4))
    policy = AlertPolicy(repeat_hours=4)
    kinds = []
    for hour in range(4, 20):
        kinds += [k for k, _ in _kinds(_evaluate(sessions, at(SPIKE_DAY, hour, 30), policy=policy))]
    assert kinds == ["firing", "repeat", "repeat", "repeat"]
    with sessions.begin() as s:
        assert [n.kind for n in store_out.notifications(s)].count("repeat") == 3


def test_pending_alerts_need_the_configured_hours_and_a_blip_never_fires(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9], per_hour=8))
    policy = AlertPolicy(pending_hours=2)
    assert _evaluate(sessions, at(SPIKE_DAY, 9, 50), policy=policy) == []
    assert _evaluate(sessions, at(SPIKE_DAY, 15), policy=policy) == []
    with sessions.begin() as s:
        (alert,) = store_alerts.all_alerts(s)
    assert alert.status == "expired" and alert.fired_at is None
    with sessions.begin() as s:
        assert store_alerts.alerts_between(s, at(SPIKE_DAY, 0), at(SPIKE_DAY + 1, 0)) == []


def test_collection_stopping_raises_a_no_data_alert_that_resolves(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history())
    with sessions.begin() as s:
        sid = source_id(s, "digital-agency", last_success=at(SPIKE_DAY, 1))
    assert _evaluate(sessions, at(SPIKE_DAY, 6)) == []
    (event,) = _evaluate(sessions, at(SPIKE_DAY, 8))
    assert (event.kind, event.alert.series, event.alert.service) == ("firing", "nodata", "collection")
    assert _evaluate(sessions, at(SPIKE_DAY, 9)) == []
    with sessions.begin() as s:
        from store.tables import Source

        s.get(Source, sid).last_success_at = at(SPIKE_DAY, 9, 30)
    assert _kinds(_evaluate(sessions, at(SPIKE_DAY, 10))) == [("resolved", "collection")]


def test_an_episode_found_long_after_it_ended_is_recorded_not_notified(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY - 1, [9, 10, 11]))
    assert _evaluate(sessions, at(SPIKE_DAY + 1, 9)) == []  # the monitor was down for two days
    with sessions.begin() as s:
        (alert,) = store_alerts.all_alerts(s)
    assert alert.status == "resolved" and "通知なし" in alert.note
