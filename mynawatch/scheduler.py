"""The composition root for the daemon: one APScheduler job per source, plus article, classify, alert,
notification and report jobs, and an optional daily retrain."""

from __future__ import annotations

import logging
import os
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
from reports.stream_alerts import EVERY_MINUTES as STREAM_ALERT_MINUTES
from store.clock import TOKYO, now as _now, shown
from store.locks import run_lock
from store.work import Team, due_sources, is_shared

log = logging.getLogger(__name__)
WORKERS = 10  # jobs running at once (fetches inside a round have their own limits: [fetch])
ROLES = ("all", "collect", "classify", "alerts")  # `run --role`: several processes share a PostgreSQL store


@dataclass
class Daemon:
    scheduler: BlockingScheduler
    executor: ThreadPoolExecutor
    pipeline: Pipeline
    team: Team | None = None  # a shared store (PostgreSQL): this process among the workers

    def close(self) -> None:
        """Wait for the jobs under way, then release the fetch pool and the HTTP client (and the leases)."""
        self.executor.shutdown(wait=True)
        if self.team is not None:
            self.team.close()
        self.pipeline.close()


def job_options(settings: Settings) -> dict:
    """Every job: missed runs coalesced into one, never two at once, skipped when later than the grace time."""
    return {"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.schedule.misfire_grace_seconds}


def build_daemon(settings: Settings, *, role: str = "all", rng: random.Random | None = None) -> Daemon:
    """The jobs of ``role``: collect (a job per source, article pages), classify, alerts (alerts, notifications,
    reports, retrain), or all. On a shared store, a team job keeps this process's leases and lead."""
    pipeline = Pipeline(settings)
    executor = ThreadPoolExecutor(WORKERS)
    scheduler = BlockingScheduler(timezone=timezone.utc, executors={"default": executor},
                                  job_defaults=job_options(settings))
    team = None
    if is_shared(pipeline.sessions):
        names = [f"source:{s.name}" for s in settings.sources] + (["articles"] if settings.collect.article_pages else [])
        team = Team(pipeline.sessions, role, lease=timedelta(seconds=settings.schedule.lease_seconds), names=names)
    jobs = Jobs(pipeline, scheduler, team)
    if role in ("all", "collect"):
        _add_collect_jobs(scheduler, jobs, settings, rng or random.Random())
    _add_report_jobs(scheduler, jobs, settings, role)
    if team is not None:
        scheduler.add_job(jobs.team_step, IntervalTrigger(seconds=max(1, settings.schedule.lease_seconds // 3)),
                          id="team", name="leases and lead", next_run_time=_now(), **job_options(settings))
    return Daemon(scheduler, executor, pipeline, team)


class Jobs:
    """The scheduled jobs: each one pipeline step at the current time, logged in a line. Bound methods,
    so that logs and `run -v` name them plainly (``Jobs.classify``), not ``<locals>``."""

    def __init__(self, pipeline: Pipeline, scheduler: BlockingScheduler, team: Team | None = None):
        self.pipeline, self.scheduler, self.team = pipeline, scheduler, team
        self._scanned = False

    def _leads(self) -> bool:  # alerts, notifications, reports: one process of a shared store at a time
        return self.team is None or self.team.leads()

    def team_step(self) -> None:  # heartbeat, fair share of the sources, the lead
        taken, leading = self.team.step(now=_now())
        with self.pipeline.sessions.begin() as session:  # sources taken over: fetched now when they are due
            due = due_sources(session, [n.split(":", 1)[1] for n in taken if n.startswith("source:")], now=_now())
        for name in due:
            if (job := self.scheduler.get_job(f"collect:{name}")) is not None:
                job.modify(next_run_time=_now())
        if leading:
            log.warning("this process leads now: alerts, notifications and reports")
            for job_id in ("alerts", "notify"):
                if (job := self.scheduler.get_job(job_id)) is not None:
                    job.modify(next_run_time=_now())

    def collect(self, source) -> None:
        if self.team is not None and not self.team.holds(f"source:{source.name}", now=_now()):
            return  # another collector holds it (or this one could not renew its lease)
        for outcome in self.pipeline.collect(now=_now(), sources=[source]):
            level = logging.WARNING if outcome.outcome in ("failed", "offline") else logging.INFO
            log.log(level, "collected %s: %s %s", outcome.source, outcome.outcome, outcome.error or outcome.new_items)

    def articles(self) -> None:  # the pages of items the classifier found relevant
        if self.team is not None and not self.team.holds("articles", now=_now()):
            return
        counts = self.pipeline.fetch_articles(now=_now())
        if any(counts.values()):
            log.info("article pages: %s", counts)

    def classify(self) -> None:
        if self.team is not None:
            return self.classify_claimed()
        done = self.pipeline.classify(now=_now())
        if done.retrained:
            log.warning("the served model %s could not be used: retrained, %s serves %d items",
                        done.retrained.previous, done.model_version, done.retrained.tagged)
        log.info("classified %d items; %d added to the search index", done.items, done.indexed)

    def classify_claimed(self) -> None:
        """One of several classifier workers: run again at once while there was work, or when a claim of a
        worker that died runs out, if that is sooner than the next regular run."""
        done = self.pipeline.classify_claimed(now=_now(), worker=self.team.holder, full=not self._scanned)
        self._scanned = True  # a worker's first pass looks at every item, later ones near the newest
        log.info("classified %d items; %d added to the search index", done.items, done.indexed)
        when = _now() if done.items else self.team.next_claim_end(now=_now())
        regular = self.scheduler.get_job("classify")
        if when is not None and regular is not None and regular.next_run_time and when < regular.next_run_time:
            self.scheduler.add_job(self.classify, DateTrigger(when + timedelta(seconds=1)), id="classify-soon",
                                   name="classify (more waiting)", replace_existing=True,
                                   **job_options(self.pipeline.settings))

    def catch_up(self, since) -> None:  # the hours missed while down, evaluated silently; what still fires notified
        if not self._leads():
            return
        done = self.pipeline.catch_up(since=since, now=_now())
        log.warning("caught up %d hour(s) missed since %s: %d alert(s) recorded, %d notified", done.hours,
                    shown(since), len(done.new), sum(e.kind == "firing" for e in done.events))

    def alerts(self) -> None:  # detect, advance the lifecycle, queue and deliver notifications
        if not self._leads():
            return
        events = self.pipeline.check_alerts(now=_now())
        for event in events:
            log.warning("alert %s", format_event(event))
        log.info("alerts evaluated: %d event(s)", len(events))
        self.wake_notify()

    def notify(self) -> None:  # retry what the outbox still holds
        if not self._leads():
            return
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
        if not self._leads():
            return
        self.pipeline.write_report(day=_now().astimezone(TOKYO).date() - timedelta(days=1), now=_now())

    def retrain(self) -> None:  # learn the corrections: nothing happens when the served model has learned them all
        if not self._leads():
            return
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


def _add_report_jobs(scheduler, jobs: Jobs, settings: Settings, role: str = "all") -> None:
    sched, options = settings.schedule, job_options(settings)
    if role in ("all", "classify"):  # a classifier worker of its own starts on what is waiting
        first = {"next_run_time": _now() + timedelta(seconds=1)} if role == "classify" else {}
        scheduler.add_job(jobs.classify, IntervalTrigger(minutes=sched.classify_minutes), id="classify",
                          name="classify", **first, **options)
    if role not in ("all", "alerts"):
        return
    every = sched.alerts_minutes if settings.alert_signal == "trouble" else STREAM_ALERT_MINUTES  # a stream signal
    scheduler.add_job(jobs.alerts, IntervalTrigger(minutes=every), id="alerts", name="alerts", **options)
    last = jobs.pipeline.last_ran()  # before this start's first round: how long the monitor was down
    if last is not None and settings.alert_signal == "trouble" and _now() - last > timedelta(minutes=every):
        scheduler.add_job(jobs.catch_up, DateTrigger(_now() + timedelta(seconds=1)), args=[last], id="catch-up",
                          name="catch up after downtime", **options)
    scheduler.add_job(jobs.notify, IntervalTrigger(minutes=sched.notify_minutes), id="notify", name="notify",
                      next_run_time=_now() + timedelta(seconds=2), **options)  # at start: left-overs
    hour, minute = (int(x) for x in sched.report_time.split(":"))
    scheduler.add_job(jobs.report, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="report",
                      name="daily report", **options)
    if sched.retrain_time:
        hour, minute = (int(x) for x in sched.retrain_time.split(":"))
        scheduler.add_job(jobs.retrain, CronTrigger(hour=hour, minute=minute, timezone=TOKYO), id="retrain",
                          name="retrain", **options)


def run_forever(settings: Settings, *, role: str = "all") -> None:
    """Run until SIGINT/SIGTERM. The jobs under way finish their current write (each write is one
    transaction, so even a harder stop leaves no half-written item); no new job starts. One `run` per
    SQLite store: a second raises store.locks.AlreadyRunning (the lock ends with the process, however it ends)."""
    with run_lock(settings.database_url, now=_now()):
        _run(settings, role)


def _run(settings: Settings, role: str = "all") -> None:
    daemon = build_daemon(settings, role=role)
    stopping = []

    def stop(signum, _frame):
        if stopping:  # a second Ctrl-C or SIGTERM: the jobs under way were waited for without end (a long fetch
            # or classification); each write is one transaction, so ending now leaves no half-written item
            print("mynawatch: a second signal: stopped without waiting for the jobs under way", flush=True)
            os._exit(128 + signum)
        log.warning("signal %s: stopping after the jobs under way (a second signal stops at once)", signum)
        stopping.append(signum)
        if daemon.scheduler.running:
            daemon.scheduler.shutdown(wait=False)  # never block inside a signal handler

    def started(_event):  # running from here on, so a signal after this line stops it; one before, at once
        what = f"{len(settings.sources)} sources scheduled" if role == "all" else f"role {role}"
        who = f" as worker {daemon.team.holder}" if daemon.team is not None else ""
        print(f"mynawatch: {what}{who}; Ctrl-C to stop", flush=True)
        if stopping and daemon.scheduler.running:
            daemon.scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.scheduler.add_listener(started, EVENT_SCHEDULER_STARTED)
    try:
        if role in ("all", "collect"):
            daemon.pipeline.start_streams()  # [[streams]]: read all the time, stopped by daemon.close()
        daemon.scheduler.start()
    finally:
        daemon.close()
    print("mynawatch: stopped", flush=True)
