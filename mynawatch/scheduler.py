"""The composition root for the daemon: one APScheduler job per source, plus classify, alert and report jobs."""

from __future__ import annotations

import logging
import signal
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from classifier.jobs import tag_items, tag_trends
from classifier.model import load_or_train
from collector.fetch import make_client
from collector.jobs import collect_round
from mynawatch.settings import Settings
from reports.jobs import evaluate_alerts, format_alert_change, write_daily_report
from store.db import make_sessions

log = logging.getLogger(__name__)
TOKYO = ZoneInfo("Asia/Tokyo")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def build_scheduler(settings: Settings) -> BlockingScheduler:
    sessions = make_sessions(settings.database_url)
    client = make_client(settings.fetch)
    model = load_or_train()
    sched = settings.schedule
    scheduler = BlockingScheduler(timezone=timezone.utc, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": sched.misfire_grace_seconds})

    def collect(source):
        for outcome in collect_round(sessions, [source], client, settings.fetch, now=_now(), workers=1):
            log.info("collected %s: %s %s", outcome.source, outcome.outcome, outcome.error or outcome.new_items)

    for source in settings.sources:
        scheduler.add_job(collect, IntervalTrigger(minutes=source.interval_minutes, jitter=sched.jitter_seconds),
                          args=[source], id=f"collect:{source.name}", name=f"collect {source.name}",
                          next_run_time=_now())

    def classify():
        n = tag_items(sessions, model, now=_now())
        tag_trends(sessions, model)
        log.info("classified %d items", n)

    def alerts():
        for change in evaluate_alerts(sessions, model_version=model.version, now=_now(), params=settings.spikes,
                                      resolve_after_hours=settings.resolve_after_hours):
            log.warning("alert %s", format_alert_change(change))

    def report():
        day = _now().astimezone(TOKYO).date() - timedelta(days=1)
        write_daily_report(sessions, model_version=model.version, day=day, out_dir=settings.report_dir,
                           smtp=settings.smtp, send=settings.send_digest, now=_now())

    scheduler.add_job(classify, IntervalTrigger(minutes=sched.classify_minutes), id="classify")
    scheduler.add_job(alerts, IntervalTrigger(minutes=sched.alerts_minutes), id="alerts")
    hour, minute = (int(x) for x in sched.report_time.split(":"))
    scheduler.add_job(report, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="report")
    return scheduler


def run_forever(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; the job under way finishes (each write is one transaction)."""
    scheduler = build_scheduler(settings)

    def stop(signum, _frame):
        log.warning("signal %s: stopping after the current job", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"mynawatch: {len(settings.sources)} sources scheduled; Ctrl-C to stop")
    scheduler.start()
