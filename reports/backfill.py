"""Alerts for hours nobody evaluated: a store filled from archives (``alerts backfill``), or the hours
``run`` missed while it was down (``catch_up``).

The detector runs once over the whole range (it is causal: an hour's verdict depends only on the hours
before it), and every hour boundary of the range is then evaluated in order with what the detector knew
at that hour: the episodes that had fired by then, cut at that hour, ended only once their quiet hours
had passed. The alert lifecycle (``plan_alerts``) advances hour by hour exactly as hourly evaluations
would have advanced it. Nothing is notified for those hours: a new alert is marked ``backfilled``, and
one that ended before the range's end is closed without a notice. Only the stored alerts that differ
at the end are written, so running a backfill again changes nothing.

``catch_up`` then evaluates ``now`` as a live evaluation does and queues its notifications: alerts
still firing (first notice, or a repeat that is due), and the resolve notice of an alert notified before
the downtime. Trouble that began and ended while the monitor was down is recorded, not notified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reports.alerts import AlertPolicy, Event, no_data_alert, plan_alerts
from reports.evidence import gather_evidence
from reports.jobs import NOTIFY_WINDOW, RECORD_WINDOW, series_name
from reports.outbox import Channels, alert_messages, queue
from reports.spikes import HOUR, Episode, SpikeParams, detect_spikes, floor_hour
from store import alerts as store_alerts
from store import health as store_health
from store import maintenance as store_maintenance
from store import signals as store_signals
from store.alerts import OPEN, AlertView
from store.clock import day_bounds, today

KNOWN_WINDOW = RECORD_WINDOW + timedelta(days=1)  # the alerts a live evaluation matches episodes against


@dataclass(frozen=True)
class Replayed:
    """What a backfill or a catch-up did."""

    hours: int  # hour boundaries evaluated
    new: list[AlertView]  # alerts recorded for the first time, as saved
    changed: list[AlertView]  # stored alerts the replay updated, as saved
    events: list[Event]  # catch-up: what was queued for notification (a backfill queues nothing)


@dataclass(frozen=True)
class _Detector:
    params: SpikeParams
    per_series: dict[str, SpikeParams]

    @classmethod
    def of(cls, params: SpikeParams, params_for: dict[str, SpikeParams] | None) -> _Detector:
        return cls(params, {series_name(k): v for k, v in (params_for or {}).items()})

    def quiet(self, series: str) -> int:
        return self.per_series.get(series, self.params).resolve_after_hours

    def max_gap(self) -> int:
        return max([self.params.resolve_after_hours] + [p.resolve_after_hours for p in self.per_series.values()])

    def gaps(self) -> dict[str, int]:
        return {k: p.resolve_after_hours for k, p in self.per_series.items()}

    def scan(self, session: Session, model_version: str, since: datetime, now: datetime) -> list[Episode]:
        """Every episode over [history needed for ``since``, ``now``), one pass."""
        first = store_signals.first_item_at(session)
        if first is None or first >= now:
            return []
        days = max([self.params.baseline_days] + [p.baseline_days for p in self.per_series.values()])
        midnight = day_bounds(today(since) - timedelta(days=days + 2))[0]  # like a live evaluation: a Tokyo midnight
        start = floor_hour(max(first, midnight))
        counts = store_signals.trouble_series(session, model_version, start, now)
        series = {series_name(service): hours for service, hours in counts.items()}
        return detect_spikes(series, start=start, now=now, params=self.params, params_for=self.per_series,
                             warm_from=first)


def seen_at(ep: Episode, when: datetime, quiet_hours: int) -> Episode | None:
    """The episode as an evaluation at ``when`` saw it: None before its first firing hour had passed; its
    hours before ``when``; ended once ``quiet_hours`` quiet hours had passed."""
    if ep.fired >= when:
        return None
    hours = tuple(h for h in ep.hours if h.hour < when)
    return Episode(ep.series, hours, ended=ep.ended and ep.end + quiet_hours * HOUR < when)


def _silent(a: AlertView, before: AlertView | None) -> AlertView:
    """``a`` as a past hour leaves it: no notice queued, a new alert marked backfilled. An alert that ended
    without ever being notified is closed for good; one notified before keeps its resolve notice due."""
    notified_at = before.notified_at if before else None
    resolve_notified = before.resolve_notified if before else False
    if a.status == "resolved" and notified_at is None:
        resolve_notified = True
    return replace(a, notified_at=notified_at, resolve_notified=resolve_notified,
                   backfilled=before.backfilled if before else True)


class _Replay:
    """The alerts in memory while hours are evaluated in order; saved once at the end."""

    def __init__(self, session: Session, detector: _Detector, policy: AlertPolicy, since: datetime, until: datetime):
        self.session, self.detector, self.policy = session, detector, policy
        self.stored = {a.dedup_key: a for a in store_alerts.recent_alerts(session, since - KNOWN_WINDOW)}
        self.alerts = dict(self.stored)
        self.windows = store_maintenance.windows_between(session, since - timedelta(days=35), until + HOUR)
        self.silences = store_alerts.silences(session, now=since, include_expired=True)

    def known(self, when: datetime) -> list[AlertView]:
        """What a live evaluation at ``when`` matches against: open alerts and those seen lately; of a store
        replayed before, not the alerts that begin later (an episode can reach them only across a gap)."""
        ahead = when + timedelta(hours=self.detector.max_gap())
        return [a for a in self.alerts.values() if a.started_at <= ahead
                and (a.status in OPEN or a.last_seen_at >= when - KNOWN_WINDOW)]

    def plan(self, episodes: list[Episode], when: datetime, *, notify: bool, extra: tuple[AlertView, ...] = ()):
        near = [ep for ep in episodes if ep.fired < when and ep.stop > when - RECORD_WINDOW]
        seen = [s for ep in near if (s := seen_at(ep, when, self.detector.quiet(ep.series))) is not None]
        seen = [ep for ep in seen if ep.stop > when - RECORD_WINDOW]
        plan = plan_alerts(seen, self.known(when), windows=self.windows, silences=self.silences, now=when,
                           policy=self.policy, gap_for=self.detector.gaps(),
                           default_gap=self.detector.params.resolve_after_hours, extra=extra,
                           notify_since=when - NOTIFY_WINDOW if notify else None)
        for a in plan.alerts:
            self.alerts[a.dedup_key] = a if notify else _silent(a, self.alerts.get(a.dedup_key))
        return plan

    def save(self, *, now: datetime) -> tuple[list[AlertView], list[AlertView]]:
        new = [a for k, a in self.alerts.items() if k not in self.stored]
        changed = [a for k, a in self.alerts.items() if k in self.stored and a != self.stored[k]]
        for a in sorted(new + changed, key=lambda a: (a.started_at, a.dedup_key)):
            store_alerts.save_alert(self.session, a, now=now)
        return new, changed


def _boundaries(since: datetime, until: datetime) -> list[datetime]:
    """Every hour boundary in (since, until]: the end of each whole hour of the range."""
    out, h = [], floor_hour(since) + HOUR
    while h <= until:
        out.append(h)
        h += HOUR
    return out


def backfill_alerts(session: Session, *, since: datetime, until: datetime, now: datetime, model_version: str,
                    params: SpikeParams = SpikeParams(), params_for: dict[str, SpikeParams] | None = None,
                    policy: AlertPolicy = AlertPolicy(), progress=None) -> Replayed:
    """Evaluate every hour of [since, until] in order and record the alerts, notifying nothing (``progress(done,
    total, step)`` told once a simulated day). ``now`` (the
    real time) stamps the records; an alert still open at ``until`` that ended long enough before ``now`` that
    a live evaluation would not announce it is closed for good, so no later evaluation sends old history."""
    until = min(until, now)
    detector = _Detector.of(params, params_for)
    hours = _boundaries(since, until)
    replay = _Replay(session, detector, policy, since, until)
    episodes = detector.scan(session, model_version, since, floor_hour(until)) if hours else []
    for done, h in enumerate(hours, 1):
        replay.plan(episodes, h, notify=False)
        if progress and (done % 24 == 0 or done == len(hours)):
            progress(done, len(hours), "backfill (hours)")
    for key, a in replay.alerts.items():
        if a.backfilled and a.status in OPEN and a.notified_at is None and a.last_seen_at + HOUR <= now - NOTIFY_WINDOW:
            replay.alerts[key] = replace(a, resolve_notified=True)
    new, changed = replay.save(now=now)
    return Replayed(len(hours), new, changed, [])


def catch_up(session: Session, *, since: datetime, now: datetime, model_version: str,
             params: SpikeParams = SpikeParams(), params_for: dict[str, SpikeParams] | None = None,
             policy: AlertPolicy = AlertPolicy(), channels: Channels = Channels()) -> Replayed:
    """After downtime: evaluate every hour since the last evaluation (``since``) in order without notifying,
    then ``now`` as a live evaluation does, queueing (not sending) its notifications in this transaction:
    alerts still firing, and resolve notices of alerts notified before the downtime. Deliver afterwards."""
    detector = _Detector.of(params, params_for)
    hours = [h for h in _boundaries(since, now) if h < now]
    replay = _Replay(session, detector, policy, since, now)
    episodes = detector.scan(session, model_version, since, now)
    for h in hours:
        replay.plan(episodes, h, notify=False)
    nodata = no_data_alert(store_health.last_success(session), replay.known(now), now=now, policy=policy)
    plan = replay.plan(episodes, now, notify=True, extra=(nodata,) if nodata else ())
    new, changed = replay.save(now=now)
    evidence = gather_evidence(session, [e.alert for e in plan.events], model_version=model_version,
                               base_url=policy.base_url)
    queue(session, alert_messages(plan.events, channels, now=now, evidence=evidence), now=now)
    return Replayed(len(hours) + 1, new, changed, plan.events)
