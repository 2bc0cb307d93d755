"""Alerts on stream signals, within minutes: the project's seasonal detector (``reports.spikes``, its own
defaults and thresholds) run on five-minute bins.

At each evaluation the five-minute bins are rolled up into hours that end at the last complete bin (a
moving hour), and ``detect_spikes`` runs on those hours exactly as it does on the news signal's clock
hours: the same hour-of-day and weekday baseline (shifted by less than an hour, which its smoothing over
neighbouring hours absorbs), the same tail and cumulative tests, the same warm-up and hysteresis. So a
burst is judged as soon as a bin closes, not when a clock hour ends, and one evaluation's false-alert
budget is the hourly one (evaluating every five minutes tests overlapping hours, which are strongly
correlated; tests/test_streams_alerts.py measures a week of ordinary chatter).

``[alerts] signal`` chooses what alerts watch: ``trouble`` (the default: distinct news stories of
trouble reports per clock hour, ``reports.jobs``), or one of the stream signals (``stream_trouble``:
distinct authors of trouble posts; ``stream_authors``, ``stream_posts``, ``stream_reposts``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, time, timedelta

from sqlalchemy.orm import Session, sessionmaker

from reports.alerts import AlertPolicy, Event, plan_alerts
from reports.jobs import NOTIFY_WINDOW, RECORD_WINDOW, detection_start
from reports.notices import TOKYO, alert_line
from reports.outbox import Channels, alert_messages, deliver_due, queue
from reports.spikes import MAX_WINDOW, Episode, SpikeParams, detect_spikes, floor_hour
from store import alerts as store_alerts
from store import maintenance as store_maintenance
from store import stream_signals

log = logging.getLogger(__name__)
BIN = timedelta(minutes=5)
EVERY_MINUTES = 5  # how often `run` evaluates alerts on a stream signal: each bin as it closes
SIGNALS = ("trouble", "stream_trouble", "stream_authors", "stream_posts", "stream_reposts")


def series_name(signal: str, service: str) -> str:
    return f"{signal}:{service}"


def bin_end(now: datetime) -> datetime:
    """The end of the last complete five-minute bin at ``now``."""
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)


def moving_hours(bins: dict[datetime, int], offset: timedelta) -> dict[datetime, int]:
    """Five-minute bins summed into hours that start ``offset`` after the clock hour, keyed by the clock hour
    they are shifted onto (the detector works on hour starts)."""
    out: dict[datetime, int] = {}
    for start, n in bins.items():
        hour = floor_hour(start - offset)
        out[hour] = out.get(hour, 0) + n
    return out


def detect_bins(series: dict[str, dict[datetime, int]], *, start: datetime, now: datetime,
                params: SpikeParams = SpikeParams(), params_for: dict[str, SpikeParams] | None = None,
                warm_from: datetime | None = None) -> list[Episode]:
    """Episodes of five-minute series over [start, now): ``detect_spikes`` on the moving hours that end at
    the last complete bin. Episode hours are given back on the real clock (they start at that offset)."""
    end = bin_end(now)
    offset = end - floor_hour(end)
    shifted = {name: moving_hours(bins, offset) for name, bins in series.items()}
    episodes = detect_spikes(shifted, start=floor_hour(start - offset), now=end - offset, params=params,
                             params_for=params_for, warm_from=None if warm_from is None else warm_from - offset)
    if not offset:
        return episodes
    return [replace(e, hours=tuple(replace(h, hour=h.hour + offset) for h in e.hours)) for e in episodes]


def detect_recent(session: Session, *, model_version: str, signal: str, now: datetime, params: SpikeParams,
                  params_for: dict[str, SpikeParams]) -> list[Episode]:
    """Episodes of the stream signal of every service that reach into the last RECORD_WINDOW."""
    first = stream_signals.first_post_at(session)
    if first is None:
        return []
    start = detection_start(first, now=now, params=params, params_for=params_for)
    counts = stream_signals.stream_series(session, model_version, start, bin_end(now),
                                          signal=signal.removeprefix("stream_"))
    series = {series_name(signal, service): bins for service, bins in counts.items()}
    episodes = detect_bins(series, start=start, now=now, params=params, params_for=params_for, warm_from=first)
    return [e for e in episodes if e.stop > now - RECORD_WINDOW]


def evaluate_stream_alerts(sessions: sessionmaker[Session], *, model_version: str, now: datetime,
                           signal: str = "stream_trouble", params: SpikeParams = SpikeParams(),
                           params_for: dict[str, SpikeParams] | None = None, policy: AlertPolicy = AlertPolicy(),
                           channels: Channels = Channels(), deliver: bool = True) -> list[Event]:
    """One evaluation of the stream alerts (every five minutes under ``run``): alert state and the
    notifications it implies in one transaction, then the outbox is delivered. Only this signal's alerts
    are touched; the news alerts are ``reports.jobs``'s."""
    if signal not in SIGNALS or signal == "trouble":
        raise ValueError(f"stream alert signal {signal!r}: one of {', '.join(SIGNALS[1:])}")
    per_series = {series_name(signal, k): v for k, v in (params_for or {}).items()}
    with sessions.begin() as session:
        episodes = detect_recent(session, model_version=model_version, signal=signal, now=now, params=params,
                                 params_for=per_series)
        known = [a for a in store_alerts.recent_alerts(session, now - RECORD_WINDOW - timedelta(days=1))
                 if a.series.startswith(signal + ":")]
        plan = plan_alerts(
            episodes, known, now=now, policy=policy,
            windows=store_maintenance.windows_between(session, now - timedelta(days=35), now + timedelta(hours=1)),
            silences=store_alerts.silences(session, now=now),
            gap_for={k: p.resolve_after_hours for k, p in per_series.items()}, default_gap=params.resolve_after_hours,
            notify_since=now - NOTIFY_WINDOW)
        for alert in plan.alerts:
            store_alerts.save_alert(session, alert, now=now)
        queue(session, alert_messages(plan.events, channels, now=now), now=now)
    for event in plan.events:
        log.info("stream alert %s: %s", event.kind, alert_line(event.alert))
    if deliver:
        deliver_due(sessions, channels, now=now)
    return plan.events


def firings(series: dict[str, dict[datetime, int]], *, start: datetime, end: datetime,
            params: SpikeParams = SpikeParams(), params_for: dict[str, SpikeParams] | None = None,
            warm_from: datetime | None = None) -> list[tuple[str, datetime]]:
    """(series, when) each burst of [start, end) first fired, as evaluations every five minutes would have
    seen it: ``detect_bins`` is causal, so one scan per alignment of the moving hour (twelve in all) finds
    what every evaluation with that alignment finds. Firings of one series less than ``resolve_after_hours``
    apart are one burst. For the demo's summary and for backtests."""
    fired: dict[str, list[datetime]] = {}
    for k in range(12):
        for e in detect_bins(series, start=start, now=bin_end(end) - k * BIN, params=params, params_for=params_for,
                             warm_from=warm_from):
            for h in e.hours:
                if h.fire:
                    fired.setdefault(e.series, []).append(h.hour + timedelta(hours=1))
    out = []
    for name, times in sorted(fired.items()):
        gap = timedelta(hours=(params_for or {}).get(name, params).resolve_after_hours)
        last = None
        for when in sorted(set(times)):
            if last is None or when - last > gap:
                out.append((name, when))
            last = when
    return sorted(out, key=lambda x: (x[1], x[0]))


def stream_bursts(session: Session, *, model_version: str, since: datetime, until: datetime,
                  params: SpikeParams = SpikeParams(),
                  params_for: dict[str, SpikeParams] | None = None) -> list[stream_signals.Burst]:
    """The bursts of trouble posts whose stream alert fired in [since, until), as evaluations every five
    minutes on ``stream_trouble`` would have fired it (``firings``, on the baseline before ``since``): each
    with its first post (the first trouble post of the moving hour the detector judged) and the first news
    report of that service the same Tokyo day. For the daily report's social panel and the demo's summary."""
    first = stream_signals.first_post_at(session)
    if first is None or first >= until:
        return []
    days = max([params.baseline_days] + [p.baseline_days for p in (params_for or {}).values()])
    start = max(first, since - timedelta(days=days) - RECORD_WINDOW)
    counts = stream_signals.stream_series(session, model_version, start, until, signal="trouble")
    reach = since - timedelta(hours=MAX_WINDOW + 1)  # the longest window the detector scores, and the moving hour

    def may_fire(service: str, bins: dict[datetime, int]) -> bool:  # a series with fewer posts cannot: not scanned
        p = (params_for or {}).get(service, params)
        return sum(n for t, n in bins.items() if reach <= t < until) >= p.min_count

    series = {series_name("stream_trouble", k): v for k, v in counts.items() if may_fire(k, v)}
    if not series:
        return []
    per_series = {series_name("stream_trouble", k): p for k, p in (params_for or {}).items()}
    out = []
    for name, fired in firings(series, start=start, end=until, params=params, params_for=per_series, warm_from=first):
        if not since <= fired < until:
            continue
        service = name.split(":", 1)[1]
        first_post = stream_signals.first_stream_trouble_at(session, model_version, service, fired - timedelta(hours=1),
                                                            fired) or fired
        midnight = datetime.combine(fired.astimezone(TOKYO).date(), time(0), tzinfo=TOKYO)
        news = stream_signals.first_news_at(session, model_version, service, midnight, midnight + timedelta(days=1))
        out.append(stream_signals.Burst(service, first_post, fired, news))
    return out
