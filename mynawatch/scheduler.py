"""The composition root for the daemon: one APScheduler job per source, plus article, classify, alert,
notification and report jobs, and an optional daily retrain."""

from __future__ import annotations

import logging
import random
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from classifier.jobs import tag_items, tag_trends
from collector.fetch import make_client
from collector.jobs import Collector
from mynawatch.models import classify_model, retrain, served, served_version
from mynawatch.settings import Settings
from reports.archive import write_daily_report
from reports.jobs import deliver_notifications, evaluate_alerts, format_event
from reports.outbox import Channels, next_delivery_at
from store.db import make_sessions
from store.locks import run_lock
from store.search import index_pending

log = logging.getLogger(__name__)
TOKYO = ZoneInfo("Asia/Tokyo")
WORKERS = 10  # jobs running at once (fetches inside a round have their own limits: [fetch])


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Daemon:
    scheduler: BlockingScheduler
    executor: ThreadPoolExecutor
    collector: Collector
    client: httpx.Client

    def close(self) -> None:
        """Wait for the jobs under way, then release the fetch pool and the HTTP client."""
        self.executor.shutdown(wait=True)
        self.collector.close()
        self.client.close()


class _Model:
    """The model the store serves, loaded on first use (so collection starts at once) and again whenever
    the store switched to another version (a retrain here or in another process). Alerts and reports
    need only the served version, read from the store; one lock keeps classify and retrain apart."""

    def __init__(self, sessions):
        self.sessions, self._model, self._lock = sessions, None, threading.Lock()

    def get(self):
        with self._lock:
            serving = served(self.sessions)
            if self._model is None or (serving is not None and serving.model_version != self._model.version):
                self._model, retrained = classify_model(self.sessions, now=_now())
                if retrained:
                    log.warning("the served model %s could not be used: retrained, %s serves %d items",
                                retrained.previous, self._model.version, retrained.tagged)
            return self._model

    def retrain(self):
        with self._lock:
            result = retrain(self.sessions, now=_now())
            self._model = result.model
            return result


def job_options(settings: Settings) -> dict:
    """Every job: missed runs coalesced into one, never two at once, skipped when later than the grace time."""
    return {"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.schedule.misfire_grace_seconds}


def build_daemon(settings: Settings, *, rng: random.Random | None = None) -> Daemon:
    sessions = make_sessions(settings.database_url)
    client = make_client(settings.fetch)
    collector = Collector(sessions, client, settings.fetch, settings.collect)
    executor = ThreadPoolExecutor(WORKERS)
    scheduler = BlockingScheduler(timezone=timezone.utc, executors={"default": executor},
                                  job_defaults=job_options(settings))
    _add_collect_jobs(scheduler, collector, settings, rng or random.Random())
    _add_report_jobs(scheduler, sessions, settings)
    return Daemon(scheduler, executor, collector, client)


def build_scheduler(settings: Settings) -> BlockingScheduler:
    return build_daemon(settings).scheduler


def _add_collect_jobs(scheduler, collector: Collector, settings: Settings, rng: random.Random) -> None:
    sched = settings.schedule

    def collect(source):
        for outcome in collector.collect_round([source], now=_now()):
            level = logging.WARNING if outcome.outcome in ("failed", "offline") else logging.INFO
            log.log(level, "collected %s: %s %s", outcome.source, outcome.outcome, outcome.error or outcome.new_items)

    start = _now()
    for source in settings.sources:  # first runs spread over the jitter, so hosts are not all hit at start
        first = start + timedelta(seconds=rng.uniform(0, min(sched.jitter_seconds, 60)))
        scheduler.add_job(collect, IntervalTrigger(minutes=source.interval_minutes, jitter=sched.jitter_seconds),
                          args=[source], id=f"collect:{source.name}", name=f"collect {source.name}",
                          next_run_time=first, **job_options(settings))

    def articles():  # the pages of items the classifier found relevant
        counts = collector.fetch_articles(now=_now())
        if any(counts.values()):
            log.info("article pages: %s", counts)

    if settings.collect.article_pages:
        scheduler.add_job(articles, IntervalTrigger(minutes=sched.classify_minutes), id="articles",
                          next_run_time=start + timedelta(minutes=1), **job_options(settings))


def _add_report_jobs(scheduler, sessions, settings: Settings) -> None:
    sched = settings.schedule
    model = _Model(sessions)

    def classify():
        served_now = model.get()
        n = tag_items(sessions, served_now, now=_now())
        tag_trends(sessions, served_now)
        indexed = index_pending(sessions)
        log.info("classified %d items; %d added to the search index", n, indexed)

    channels = Channels.of(settings.smtp, send_email=settings.alerting.send_email, webhooks=settings.webhooks)

    def alerts():  # detect, advance the lifecycle, queue and deliver notifications
        for event in evaluate_alerts(sessions, model_version=served_version(sessions), now=_now(), params=settings.spikes,
                                     params_for=dict(settings.spikes_for), policy=settings.alerting, channels=channels):
            log.warning("alert %s", format_event(event))
        wake_notify()

    def notify():  # retry what the outbox still holds (SMTP or a webhook was down, a sender died mid-claim)
        deliver_notifications(sessions, channels, now=_now())
        wake_notify()

    def wake_notify():  # the outbox's next retry or claim end, when sooner than the next regular run
        when, regular = next_delivery_at(sessions), scheduler.get_job("notify")
        if when is not None and regular is not None and regular.next_run_time and when < regular.next_run_time:
            scheduler.add_job(notify, DateTrigger(max(when, _now()) + timedelta(seconds=1)), id="notify-soon",
                              replace_existing=True, **options)

    def report():
        day = _now().astimezone(TOKYO).date() - timedelta(days=1)
        write_daily_report(sessions, model_version=served_version(sessions), day=day, out_dir=settings.report_dir,
                           smtp=settings.smtp, send=settings.send_digest, now=_now())

    options = job_options(settings)
    scheduler.add_job(classify, IntervalTrigger(minutes=sched.classify_minutes), id="classify", **options)
    scheduler.add_job(alerts, IntervalTrigger(minutes=sched.alerts_minutes), id="alerts", **options)
    scheduler.add_job(notify, IntervalTrigger(minutes=sched.notify_minutes), id="notify",  # at start: left-overs
                      next_run_time=_now() + timedelta(seconds=2), **options)
    hour, minute = (int(x) for x in sched.report_time.split(":"))
    scheduler.add_job(report, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="report", **options)

    def retrain_job():  # learn the corrections: nothing happens when the served model has learned them all
        result = model.retrain()
        if result.changed:
            log.warning("retrained on %d corrections: %s serves %d items (was %s)", result.corrections,
                        result.model.version, result.tagged, result.previous)

    if sched.retrain_time:
        hour, minute = (int(x) for x in sched.retrain_time.split(":"))
        scheduler.add_job(retrain_job, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="retrain", **options)


def run_forever(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. The jobs under way finish their current write (each write is one
    transaction, so even a harder stop leaves no half-written item); no new job starts. One `run` per
    SQLite store: a second raises store.locks.AlreadyRunning (the lock ends with the process, however it ends)."""
    with run_lock(settings.database_url, now=_now()):
        _run(settings)


def _run(settings: Settings) -> None:
    daemon = build_daemon(settings)
    stopping = []

    def stop(signum, _frame):
        log.warning("signal %s: stopping after the jobs under way", signum)
        stopping.append(signum)
        if daemon.scheduler.running:
            daemon.scheduler.shutdown(wait=False)  # never block inside a signal handler

    def started(_event):  # running from here on, so a signal after this line stops it; one before, at once
        print(f"mynawatch: {len(settings.sources)} sources scheduled; Ctrl-C to stop", flush=True)
        if stopping and daemon.scheduler.running:
            daemon.scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.scheduler.add_listener(started, EVENT_SCHEDULER_STARTED)
    try:
        daemon.scheduler.start()
    finally:
        daemon.close()
    print("mynawatch: stopped", flush=True)
