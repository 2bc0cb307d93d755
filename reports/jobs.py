"""Report and alert jobs: read the store, run the pure builders, write or send the results."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from reports.charts import render_mentions_chart
from reports.daily import DailyReport, TrendRow, build_daily_report, render_html, render_text
from reports.mail import SmtpSettings, build_digest, send_message
from reports.signals import TOKYO, daily_stories, trouble_series
from reports.spikes import SpikeParams, detect_spikes
from store import alerts as store_alerts
from store import items as store_items
from store import labels as store_labels
from store.records import Service

log = logging.getLogger(__name__)
HISTORY = timedelta(days=28)


@dataclass(frozen=True)
class AlertChange:
    alert: store_alerts.AlertView
    change: str  # "firing" | "resolved"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=TOKYO)
    return start, start + timedelta(days=1)


def evaluate_alerts(sessions: sessionmaker[Session], *, model_version: str, now: datetime,
                    params: SpikeParams, resolve_after_hours: int = 3,
                    history: timedelta = HISTORY) -> list[AlertChange]:
    """Detect episodes over the recent history and update alerts; returns what changed (to notify)."""
    start = now - history
    with sessions.begin() as session:
        items = store_labels.labeled_items(session, model_version, start, now)
        episodes = detect_spikes(trouble_series(items), start=start, now=now, params=params)
        changes = []
        for ep in episodes:
            ended = now - (ep.end + timedelta(hours=1)) >= timedelta(hours=resolve_after_hours)
            status = "resolved" if ended else "firing"
            view, previous = store_alerts.upsert_episode(
                session, ep, service=ep.series.split(":", 1)[1], status=status,
                resolved_at=ep.end + timedelta(hours=1) if ended else None)
            if previous is None:
                changes.append(AlertChange(view, "firing"))
            if ended and previous != "resolved":
                changes.append(AlertChange(view, "resolved"))
    return changes


def format_alert_change(change: AlertChange) -> str:
    a = change.alert
    when = a.started_at if change.change == "firing" else (a.resolved_at or a.last_seen_at)
    return (f"{when.astimezone(TOKYO).isoformat(timespec='minutes')} {change.change.upper():8} "
            f"{a.service} ({Service(a.service).display}) peak={a.peak_count}/h score={a.score:.1f} key={a.dedup_key}")


def build_report_for(session: Session, *, model_version: str, day: date) -> tuple[DailyReport, dict]:
    start, end = day_bounds(day)
    items = store_labels.labeled_items(session, model_version, start - HISTORY, end)
    alerts = store_alerts.alerts_between(session, start, end)
    trends = [TrendRow(t.term, t.traffic_raw, tuple(filter(None, t.services.split(","))))
              for t in store_items.trend_points_between(session, start, end) if t.relevant]
    return build_daily_report(items, day=day, alerts=alerts, trends=trends), daily_stories(items)


def write_daily_report(sessions: sessionmaker[Session], *, model_version: str, day: date, out_dir: Path,
                       smtp: SmtpSettings, send: bool = False, now: datetime) -> dict[str, Path]:
    """Write report-<day>.txt/.html, chart-<day>.png and digest-<day>.eml; send the digest once if asked."""
    with sessions.begin() as session:
        report, per_day = build_report_for(session, model_version=model_version, day=day)
    marks = sorted({a.started_at.astimezone(TOKYO).date() for a in report.alerts})
    chart = render_mentions_chart(per_day, start=day - timedelta(days=27), end=day,
                                  title=f"サービス別の言及（記事群数／日）〜{day:%m/%d}", marks=marks)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"text": out_dir / f"report-{day}.txt", "html": out_dir / f"report-{day}.html",
             "chart": out_dir / f"chart-{day}.png", "eml": out_dir / f"digest-{day}.eml"}
    msg = build_digest(report, chart_png=chart, sender=smtp.sender, recipients=smtp.recipients)
    _write_atomic(paths["text"], render_text(report).encode())
    _write_atomic(paths["html"], render_html(report).encode())
    _write_atomic(paths["chart"], chart)
    _write_atomic(paths["eml"], msg.as_bytes())
    if send:
        send_digest(sessions, msg, day=day, smtp=smtp, now=now)
    return paths


def send_digest(sessions, msg, *, day: date, smtp: SmtpSettings, now: datetime) -> list[str]:
    """Send to each recipient not yet sent this day's digest; record each send. Returns who got it."""
    sent = []
    for rcpt in smtp.recipients:
        with sessions.begin() as session:
            if store_alerts.digest_sent(session, day.isoformat(), rcpt):
                continue
        del msg["To"]
        msg["To"] = rcpt
        send_message(msg, smtp)
        with sessions.begin() as session:
            store_alerts.record_digest(session, day.isoformat(), rcpt, msg["Message-ID"], sent_at=now)
        sent.append(rcpt)
    return sent


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
