"""The daily report job: read the day's signals from the store, build, render, chart, write the
archive files, and queue the digest email (one per recipient and day) when asked."""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import time as time_now

from sqlalchemy.orm import Session, sessionmaker

from reports.charts import render_hourly_chart, render_incident_chart, render_mentions_chart
from reports.coverage import GRACE, Coverage, find_gaps, source_days
from reports.daily import DailyReport, DayInputs, TrendRow, build_daily_report
from reports.mail import Chart, SmtpSettings, build_digest, wire_bytes
from reports.notices import TOKYO
from reports.outbox import Channels, Delivery, deliver_due, queue
from reports.rendering import render_html, render_text
from reports.spikes import SpikeParams
from reports.stream_alerts import stream_bursts
from reports.timeline import Timeline, build_timeline, chart_name, services_ja
from store import alerts as store_alerts
from store import incidents as store_incidents
from store import health as store_health
from store import items as store_items
from store import maintenance as store_maintenance
from store import signals as q
from store import stream_signals
from store import streams as store_streams
from store.db import refresh_statistics
from store.notifications import Outgoing

HISTORY_DAYS = 28
UPCOMING = timedelta(days=7)  # maintenance windows announced this far ahead are listed


@dataclass
class ReportFiles:
    paths: dict[str, Path]
    queued: int = 0
    delivery: Delivery = field(default_factory=Delivery)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=TOKYO)
    return start, start + timedelta(days=1)


def read_day(session: Session, *, model_version: str, day: date, now: datetime, params: SpikeParams = SpikeParams(),
             params_for: dict[str, SpikeParams] | None = None) -> DayInputs:
    """Everything the report for ``day`` (Tokyo) needs, aggregated in SQL (``params``: the detector's, for the
    stream bursts of the social panel)."""
    start, end = day_bounds(day)
    streams = store_streams.has_streams(session)
    collected, relevant = q.count_collected(session, model_version, start, end)
    trends = [TrendRow(t.term, t.traffic_raw, tuple(x for x in t.services.split(",") if x))
              for t in store_items.trend_points_between(session, start, end) if t.relevant]
    return DayInputs(
        day=day, collected=collected, relevant=relevant,
        per_day=q.count_relevant(session, model_version, start - timedelta(days=HISTORY_DAYS), end),
        causes=q.count_relevant(session, model_version, start, end, keys=("service", "cause")),
        sentiment=q.count_relevant(session, model_version, start - timedelta(days=7), end, keys=("sentiment",)),
        items=q.relevant_items(session, model_version, start, end),
        hourly=q.trouble_series(session, model_version, start, end),
        social=q.count_social(session, model_version, start, end),
        trends=trends, alerts=store_alerts.alerts_between(session, start, end),
        alert_days=[a.started_at.astimezone(TOKYO).date() for a in store_alerts.alerts_between(
            session, start - timedelta(days=HISTORY_DAYS), end) if a.ever_fired],
        windows=store_maintenance.windows_between(session, start, end + UPCOMING),
        sources=store_health.source_health(session), as_of=now, incidents=read_timelines(session, start, end),
        coverage=read_coverage(session, start, end, now=now),
        streams=stream_signals.stream_counts(session, model_version, start, end) if streams else None,
        bursts=stream_bursts(session, model_version=model_version, since=start, until=min(end, max(start, now)),
                             params=params, params_for=params_for) if streams else [],
    )


def read_coverage(session: Session, start: datetime, end: datetime, *, now: datetime) -> Coverage:
    """The day's collection from the fetch history: gaps over the charts' weeks and the day (up to ``now``),
    and each source's fetches on the day."""
    until = max(start, min(end, now))
    known_from = store_health.fetch_history_start(session)
    reach = timedelta(minutes=store_health.longest_interval(session))
    since, horizon = start - timedelta(days=HISTORY_DAYS) - reach, max(until, min(now, end + reach + GRACE))
    gaps = find_gaps(store_health.successful_fetches(session, since, horizon), known_from=known_from,
                     since=since, until=horizon, reach=reach)
    return Coverage(start, until, tuple(gaps), source_days(store_health.fetch_tallies(session, start, until)),
                    known=known_from is not None and known_from < until)


def read_timelines(session: Session, since: datetime, until: datetime) -> list[Timeline]:
    """The incidents that overlap [since, until), each with its timeline."""
    return [build_timeline(inc, store_incidents.timeline_rows(session, inc.id))
            for inc in store_incidents.incidents_between(session, since, until)]


def incident_chart(t: Timeline) -> bytes:
    inc = t.incident
    return render_incident_chart(t.hourly, start=inc.start, end=inc.end, marks=[(m.kind, m.at) for m in t.moments],
                                 title=f"インシデントの経過: {services_ja(inc)}（障害報告の記事群数／時）")


def render_charts(report: DailyReport) -> list[Chart]:
    gaps = list(report.coverage.gaps) if report.coverage else []
    trend = render_mentions_chart(report.per_day, start=report.day - timedelta(days=HISTORY_DAYS - 1), end=report.day,
                                  title=f"サービス別の言及（記事群数／日）〜{report.day:%m/%d}、赤: アラートの日"
                                  + ("、灰: 収集なし" if gaps else ""), marks=report.alert_days, gaps=gaps)
    spans = [(a.started_at, a.resolved_at or a.last_seen_at + timedelta(hours=1)) for a in report.alerts if a.ever_fired]
    hourly = render_hourly_chart(report.hourly, day=report.day, marks=spans, gaps=gaps,
                                 title=f"障害報告の記事群数（時間帯別） {report.day:%m/%d}")
    return [Chart("trend", trend), Chart("hourly", hourly)] + [Chart(chart_name(n), incident_chart(t))
                                                              for n, t in enumerate(report.incidents)]


def write_daily_report(sessions: sessionmaker[Session], *, model_version: str, day: date, out_dir: Path,
                       smtp: SmtpSettings, send: bool = False, now: datetime, params: SpikeParams = SpikeParams(),
                       params_for: dict[str, SpikeParams] | None = None) -> ReportFiles:
    """Write report-<day>.txt/.html, chart-<day>.png, hourly-<day>.png and digest-<day>.eml; with ``send``,
    queue the digest for each recipient (once per day and recipient, ever) and try to deliver it."""
    refresh_statistics(sessions)  # once a day: the store grows, and its aggregates are planned on the statistics
    with sessions.begin() as session:
        report = build_daily_report(read_day(session, model_version=model_version, day=day, now=now, params=params,
                                             params_for=params_for))
    charts = render_charts(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    paths = {"text": out_dir / f"report-{day}.txt", "html": out_dir / f"report-{day}.html",
             "chart": out_dir / f"chart-{day}.png", "hourly": out_dir / f"hourly-{day}.png",
             "eml": out_dir / f"digest-{day}.eml"}
    paths |= {c.name: out_dir / f"{c.name}-{day}.png" for c in charts[2:]}  # incident timelines
    archive = build_digest(report, charts=charts, sender=smtp.sender, recipient=", ".join(smtp.recipients) or smtp.sender)
    _write_atomic(paths["text"], render_text(report).encode())
    images = {"trend": paths["chart"].name, "hourly": paths["hourly"].name} | {c.name: paths[c.name].name for c in charts[2:]}
    _write_atomic(paths["html"], render_html(report, images).encode())
    _write_atomic(paths["chart"], charts[0].png)
    _write_atomic(paths["hourly"], charts[1].png)
    for c in charts[2:]:
        _write_atomic(paths[c.name], c.png)
    _write_atomic(paths["eml"], archive.as_bytes())
    files = ReportFiles(paths)
    if send:
        messages = [Outgoing(f"digest|{day}", "email", rcpt, "digest", str(archive["Subject"]),
                             wire_bytes(build_digest(report, charts=charts, sender=smtp.sender, recipient=rcpt)))
                    for rcpt in smtp.recipients]
        with sessions.begin() as session:
            files.queued = queue(session, messages, now=now)
        files.delivery = deliver_due(sessions, Channels(smtp=smtp), now=now)
    return files


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file beside ``path``, renamed when whole: a reader never sees half a file,
    and a full or read-only folder leaves no temporary file behind (the error names ``path``)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two processes writing one report never share one
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        exc.filename = str(path)
        raise


def _remove_stale_temporaries(out_dir: Path, *, older_than: float = 3600.0) -> None:
    """Temporary files a killed report job left behind (a finished or failed one removes its own)."""
    cutoff = time_now() - older_than
    for tmp in out_dir.glob("*-????-??-??.*.*.tmp"):  # report-2024-10-15.txt.<pid>.tmp and the like
        with suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
