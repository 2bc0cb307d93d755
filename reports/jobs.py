"""The alert job: read the signals, detect, advance the alert lifecycle, queue and deliver notifications."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from sqlalchemy.orm import Session, sessionmaker

from reports.alerts import AlertPolicy, Event, no_data_alert, plan_alerts
from reports.evidence import gather_evidence
from reports.notices import TOKYO, alert_line
from reports.outbox import Channels, Delivery, alert_messages, deliver_due, queue
from reports.spikes import Episode, SpikeParams, detect_spikes
from store import alerts as store_alerts
from store import health as store_health
from store import maintenance as store_maintenance
from store import signals as store_signals

log = logging.getLogger(__name__)
RECORD_WINDOW = timedelta(hours=48)  # episodes that reach into this window are recorded (and matched)
NOTIFY_WINDOW = timedelta(hours=24)  # episodes first seen already over before this are recorded, not notified


def series_name(service: str) -> str:
    return f"trouble:{service}"


def detection_start(first: datetime, *, now: datetime, params: SpikeParams,
                    params_for: dict[str, SpikeParams]) -> datetime:
    """Where a detection of recent episodes reads its signal from: the longest baseline before today's
    Tokyo midnight and the record window before that, but not before the signal's first data."""
    days = max([params.baseline_days] + [p.baseline_days for p in params_for.values()])
    midnight = datetime.combine(now.astimezone(TOKYO).date(), time(0), tzinfo=TOKYO)
    return max(first, midnight - timedelta(days=days) - RECORD_WINDOW)


def detect_recent(session: Session, *, model_version: str, now: datetime, params: SpikeParams,
                  params_for: dict[str, SpikeParams]) -> list[Episode]:
    """Episodes of the trouble signal of every service that reach into the last RECORD_WINDOW."""
    first = store_signals.first_item_at(session)
    if first is None:
        return []
    start = detection_start(first, now=now, params=params, params_for=params_for)
    counts = store_signals.trouble_series(session, model_version, start, now)
    series = {series_name(service): hours for service, hours in counts.items()}
    episodes = detect_spikes(series, start=start, now=now, params=params, params_for=params_for, warm_from=first)
    return [e for e in episodes if e.stop > now - RECORD_WINDOW]


def evaluate_alerts(sessions: sessionmaker[Session], *, model_version: str, now: datetime,
                    params: SpikeParams = SpikeParams(), params_for: dict[str, SpikeParams] | None = None,
                    policy: AlertPolicy = AlertPolicy(), channels: Channels = Channels(),
                    deliver: bool = True) -> list[Event]:
    """One evaluation: alert state and the notifications it implies are written in one transaction
    (so a crash never leaves one without the other), then the outbox is delivered."""
    per_series = {series_name(k): v for k, v in (params_for or {}).items()}
    with sessions.begin() as session:
        episodes = detect_recent(session, model_version=model_version, now=now, params=params, params_for=per_series)
        known = store_alerts.recent_alerts(session, now - RECORD_WINDOW - timedelta(days=1))
        nodata = no_data_alert(store_health.last_success(session), known, now=now, policy=policy)
        plan = plan_alerts(
            episodes, known, now=now, policy=policy,
            windows=store_maintenance.windows_between(session, now - timedelta(days=35), now + timedelta(hours=1)),
            silences=store_alerts.silences(session, now=now),
            gap_for={k: p.resolve_after_hours for k, p in per_series.items()}, default_gap=params.resolve_after_hours,
            extra=(nodata,) if nodata else (), notify_since=now - NOTIFY_WINDOW)
        for alert in plan.alerts:
            store_alerts.save_alert(session, alert, now=now)
        evidence = gather_evidence(session, [e.alert for e in plan.events], model_version=model_version,
                                   base_url=policy.base_url)
        queue(session, alert_messages(plan.events, channels, now=now, evidence=evidence), now=now)
    for event in plan.events:
        log.info("alert %s: %s", event.kind, alert_line(event.alert))
    if deliver:
        deliver_due(sessions, channels, now=now)
    return plan.events


def deliver_notifications(sessions: sessionmaker[Session], channels: Channels, *, now: datetime) -> Delivery:
    """The retry job: send whatever the outbox holds that is due."""
    return deliver_due(sessions, channels, now=now)


def format_event(event: Event) -> str:
    """One line for logs: time (JST), kind, service, peak and score, dedup key."""
    a = event.alert
    when = a.started_at if event.kind == "firing" else (a.resolved_at or a.last_seen_at)
    return (f"{when.astimezone(TOKYO).isoformat(timespec='minutes')} {event.kind.upper():8} "
            f"{a.service} ({alert_line(a)}) key={a.dedup_key}")
