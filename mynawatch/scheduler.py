"""The composition root for the daemon: one APScheduler job per source, plus article, classify, alert,
notification and report jobs, and an optional daily retrain."""

from __future__ import annotations

import logging
import random
import signal
from dataclasses import dataclass
from datetime import timedelta, timezone

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mynawatch.pipeline import Pipeline
from mynawatch.settings import Settings
from reports.jobs import format_event
from reports.outbox import next_delivery_at
from store.clock import TOKYO, now as _now
from store.locks import run_lock

log = logging.getLogger(__name__)
WORKERS = 10  # jobs running at once (fetches inside a round have their own limits: [fetch])


@dataclass
class Daemon:
    scheduler: BlockingScheduler
    executor: ThreadPoolExecutor
    pipeline: Pipeline

    def close(self) -> None:
        """Wait for the jobs under way, then release the fetch pool and the HTTP client."""
        self.executor.shutdown(wait=True)
        self.pipeline.close()


def job_options(settings: Settings) -> dict:
    """Every job: missed runs coalesced into one, never two at once, skipped when later than the grace time."""
    return {"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.schedule.misfire_grace_seconds}


def build_daemon(settings: Settings, *, rng: random.Random | None = None) -> Daemon:
    pipeline = Pipeline(settings)
    executor = ThreadPoolExecutor(WORKERS)
    scheduler = BlockingScheduler(timezone=timezone.utc, executors={"default": executor},
                                  job_defaults=job_options(settings))
    jobs = Jobs(pipeline, scheduler)
    _add_collect_jobs(scheduler, jobs, settings, rng or random.Random())
    _add_report_jobs(scheduler, jobs, settings)
    return Daemon(scheduler, executor, pipeline)


class Jobs:
    """The scheduled jobs: each one pipeline step at the current time, logged in a line. Bound methods,
    so that logs and `run -v` name them plainly (``Jobs.classify``), not ``<locals>``."""

    def __init__(self, pipeline: Pipeline, scheduler: BlockingScheduler):
        self.pipeline, self.scheduler = pipeline, scheduler

    def collect(self, source) -> None:
        for outcome in self.pipeline.collect(now=_now(), sources=[source]):
            level = logging.WARNING if outcome.outcome in ("failed", "offline") else logging.INFO
            log.log(level, "collected %s: %s %s", outcome.source, outcome.outcome, outcome.error or outcome.new_items)

    def articles(self) -> None:  # the pages of items the classifier found relevant
        counts = self.pipeline.fetch_articles(now=_now())
        if any(counts.values()):
            log.info("article pages: %s", counts)

    def classify(self) -> None:
        done = self.pipeline.classify(now=_now())
        if done.retrained:
            log.warning("the served model %s could not be used: retrained, %s serves %d items",
                        done.retrained.previous, done.model_version, done.retrained.tagged)
        log.info("classified %d items; %d added to the search index", done.items, done.indexed)

    def alerts(self) -> None:  # detect, advance the lifecycle, queue and deliver notifications
        for event in self.pipeline.check_alerts(now=_now()):
            log.warning("alert %s", format_event(event))
        self.wake_notify()

    def notify(self) -> None:  # retry what the outbox still holds
        self.pipeline.deliver(now=_now())
        self.wake_notify()

    def wake_notify(self) -> None:
        """Run ``notify`` at the outbox's next retry or claim end, when sooner than its next regular run."""
        when, regular = next_delivery_at(self.pipeline.sessions), self.scheduler.get_job("notify")
        if when is not None and regular is not None and regular.next_run_time and when < regular.next_run_time:
            self.scheduler.add_job(self.notify, DateTrigger(max(when, _now()) + timedelta(seconds=1)), id="notify-soon",
                                   name="notify (retry due)", replace_existing=True,
                                   **job_options(self.pipeline.settings))

    def report(self) -> None:  # yesterday's report, in Tokyo days
        self.pipeline.write_report(day=_now().astimezone(TOKYO).date() - timedelta(days=1), now=_now())

    def retrain(self) -> None:  # learn the corrections: nothing happens when the served model has learned them all
        result = self.pipeline.retrain(now=_now())
        if result.changed:
            log.warning("retrained on %d corrections: %s serves %d items (was %s)", result.corrections,
                        result.model.version, result.tagged, result.previous)


def _add_collect_jobs(scheduler, jobs: Jobs, settings: Settings, rng: random.Random) -> None:
    sched = settings.schedule
    start = _now()
    for source in settings.sources:  # first runs spread over the jitter, so hosts are not all hit at start
        first = start + timedelta(seconds=rng.uniform(0, min(sched.jitter_seconds, 60)))
        scheduler.add_job(jobs.collect, IntervalTrigger(minutes=source.interval_minutes, jitter=sched.jitter_seconds),
                          args=[source], id=f"collect:{source.name}", name=f"collect {source.name}",
                          next_run_time=first, **job_options(settings))
    if settings.collect.article_pages:
        scheduler.add_job(jobs.articles, IntervalTrigger(minutes=sched.classify_minutes), id="articles",
                          name="article pages", next_run_time=start + timedelta(minutes=1), **job_options(settings))


def _add_report_jobs(scheduler, jobs: Jobs, settings: Settings) -> None:
    sched, options = settings.schedule, job_options(settings)
    scheduler.add_job(jobs.classify, IntervalTrigger(minutes=sched.classify_minutes), id="classify", name="classify",
                      **options)
    scheduler.add_job(jobs.alerts, IntervalTrigger(minutes=sched.alerts_minutes), id="alerts", name="alerts",
                      **options)
    scheduler.add_job(jobs.notify, IntervalTrigger(minutes=sched.notify_minutes), id="notify", name="notify",
                      next_run_time=_now() + timedelta(seconds=2), **options)  # at start: left-overs
    hour, minute = (int(x) for x in sched.report_time.split(":"))
    scheduler.add_job(jobs.report, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="report",
                      name="daily report", **options)
    if sched.retrain_time:
        hour, minute = (int(x) for x in sched.retrain_time.split(":"))
        scheduler.add_job(jobs.retrain, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="retrain",
                          name="retrain", **options)


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
