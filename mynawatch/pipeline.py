"""The pipeline, wired once: everything built from ``Settings``, the steps as functions of ``now``.

``mynawatch collect|classify|alerts|report``, the scheduler's jobs (``run``) and the demo all call these
steps and nothing else, so that what the demo shows is what ``run`` does (miniflux's one ``RefreshFeed``
for its worker and its UI). Data still flows one way: collect -> store -> classify -> store -> report;
the stages meet only in the store, and only this module (with the CLI and scheduler on top) knows them all.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.orm import Session, sessionmaker

from classifier.jobs import Progress, retag_all, tag_claimed, tag_items, tag_trends
from collector.fetch import make_client
from collector.jobs import Collector, SourceOutcome
from collector.sources import SourceConfig
from collector.streams.runner import StreamRunner
from mynawatch.serving import Retrained, classify_model, retrain, served, served_version
from mynawatch.settings import Settings
from reports.alerts import Event
from reports.jobs import deliver_notifications, evaluate_alerts
from reports.outbox import Channels, Delivery
from reports.stream_alerts import evaluate_stream_alerts
from store.db import make_sessions
from store.search import index_pending

if TYPE_CHECKING:  # loaded by the steps that use them: the model's libraries and the charts' matplotlib
    from classifier.model import Classifier
    from reports.archive import ReportFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Classified:
    """What one classify step did."""

    items: int
    trends: int
    indexed: int
    model_version: str
    retrained: Retrained | None = None  # the served model could not be used: retrained first


class ServedModel:
    """The model the store serves, loaded on first use (so collection starts at once) and again whenever
    the store switched to another version (a retrain here or in another process). One lock keeps a
    classify and a retrain of this process apart."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions, self._model, self._lock = sessions, None, threading.Lock()

    def get(self, *, now: datetime, progress: Progress | None = None) -> tuple[Classifier, Retrained | None]:
        with self._lock:
            serving, retrained = served(self.sessions), None
            if self._model is None or (serving is not None and serving.model_version != self._model.version):
                self._model, retrained = classify_model(self.sessions, now=now, progress=progress)
            return self._model, retrained

    def retrain(self, *, now: datetime, force: bool = False, progress: Progress | None = None) -> Retrained:
        with self._lock:
            result = retrain(self.sessions, now=now, force=force, progress=progress)
            self._model = result.model
            return result


class Pipeline:
    """One store, one HTTP client, one collector, one served model and the notification channels, made
    from ``settings`` once. Close it (or use it as a context manager) to release the client."""

    def __init__(self, settings: Settings, *, client: httpx.Client | None = None):
        self.settings = settings
        self.sessions = make_sessions(settings.database_url)
        self.model = ServedModel(self.sessions)
        self.channels = Channels.of(settings.smtp, send_email=settings.alerting.send_email, webhooks=settings.webhooks)
        self._client, self._own_client, self._collector = client, client is None, None
        self._streams: list[StreamRunner] = []

    @property
    def collector(self) -> Collector:
        """Built on first use: commands that never fetch never open an HTTP client."""
        if self._collector is None:
            if self._client is None:
                self._client = make_client(self.settings.fetch)
            self._collector = Collector(self.sessions, self._client, self.settings.fetch, self.settings.collect)
        return self._collector

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for runner in self._streams:  # what they read is stored first
            runner.stop()
        if self._collector is not None:
            self._collector.close()
        if self._client is not None and self._own_client:
            self._client.close()

    # -- the steps ---------------------------------------------------------------------------------

    def collect(self, *, now: datetime, sources: list[SourceConfig] | None = None, force: bool = False,
                progress: Progress | None = None) -> list[SourceOutcome]:
        """One round over ``sources`` (default: every configured source)."""
        outcomes = self.collector.collect_round(list(self.settings.sources if sources is None else sources),
                                                now=now, force=force, progress=progress)
        failed = [o.source for o in outcomes if o.outcome in ("failed", "offline")]
        log.info("collect round: %d source(s), %d new item(s)%s", len(outcomes), sum(o.new_items for o in outcomes),
                 f"; failed: {', '.join(failed)}" if failed else "")
        return outcomes

    def fetch_articles(self, *, now: datetime) -> dict[str, int]:
        """The article pages of items the classifier found relevant (when ``[collect] article_pages``)."""
        return self.collector.fetch_articles(now=now)

    def classify(self, *, now: datetime, everything: bool = False, progress: Progress | None = None) -> Classified:
        """Tag what the served model has not tagged (``everything``: re-tag all in one transaction), tag
        the trend terms, and add new items to the search index."""
        model, retrained = self.model.get(now=now, progress=progress)
        if everything and not retrained:
            n = retag_all(self.sessions, model, now=now, progress=progress)
        else:
            n = tag_items(self.sessions, model, now=now, progress=progress)
        trends = tag_trends(self.sessions, model)
        return Classified(n, trends, index_pending(self.sessions, progress=progress), model.version, retrained)

    def classify_claimed(self, *, now: datetime, worker: str, full: bool = False) -> Classified:
        """``classify`` as one of several workers on a shared store: batches claimed for ``[schedule]
        claim_seconds`` (store/work.py), so each item is tagged once whichever worker takes it."""
        model, retrained = self.model.get(now=now)
        lease = timedelta(seconds=self.settings.schedule.claim_seconds)
        n = tag_claimed(self.sessions, model, worker=worker, now=now, lease=lease, full=full)
        trends = tag_trends(self.sessions, model)
        return Classified(n, trends, index_pending(self.sessions), model.version, retrained)

    def retrain(self, *, now: datetime, force: bool = False, progress: Progress | None = None) -> Retrained:
        return self.model.retrain(now=now, force=force, progress=progress)

    def start_streams(self, *, now=None) -> list[StreamRunner]:
        """Start reading the ``[[streams]]`` (each a reader and a writer thread, reconnecting on their own);
        ``close`` stops them. Paused streams only record their state. On a shared store each stream is read by
        one process at a time (a lease of ``[schedule] lease_seconds``). ``now``: the readers' clock (the
        demo's simulated one; default store.clock's)."""
        if not self._streams:
            lease = timedelta(seconds=self.settings.schedule.lease_seconds)
            self._streams = [StreamRunner(c, self.sessions, policy=self.settings.collect, lease=lease,
                                          **({"now": now} if now is not None else {})) for c in self.settings.streams]
            for runner in self._streams:
                runner.start()
        return self._streams

    def check_alerts(self, *, now: datetime, deliver: bool = True) -> list[Event]:
        """Detect, advance the alert lifecycle and queue notifications (then deliver them, by default), on
        the signal ``[alerts] signal`` names: news trouble stories, or a stream signal (its new posts
        labeled first, so a burst counts within minutes)."""
        s = self.settings
        if s.alert_signal != "trouble":
            self.classify(now=now)
            return evaluate_stream_alerts(self.sessions, model_version=served_version(self.sessions), now=now,
                                          signal=s.alert_signal, params=s.spikes, params_for=dict(s.spikes_for),
                                          policy=s.alerting, channels=self.channels, deliver=deliver)
        self.recompute_incidents(now=now)  # before: a notice can name its incident; after: it lists the alerts
        events = evaluate_alerts(self.sessions, model_version=served_version(self.sessions), now=now, params=s.spikes,
                                 params_for=dict(s.spikes_for), policy=s.alerting, channels=self.channels,
                                 deliver=deliver)
        self.recompute_incidents(now=now)
        return events

    def last_ran(self) -> datetime | None:
        """When this store's monitor last tried a source (read at start, before the first round)."""
        from store.health import last_attempt

        with self.sessions.begin() as session:
            return last_attempt(session)

    def catch_up(self, *, since: datetime, now: datetime):
        """After downtime: every hour since ``since`` evaluated in order and recorded silently (marked as
        backfilled), then ``now`` as a live check, notifying only alerts still firing (and the resolve
        notice of one notified before the downtime); incidents recomputed. reports.backfill.Replayed."""
        from reports.backfill import catch_up

        s = self.settings
        version = served_version(self.sessions)
        with self.sessions.begin() as session:
            done = catch_up(session, since=since, now=now, model_version=version, params=s.spikes,
                            params_for=dict(s.spikes_for), policy=s.alerting, channels=self.channels)
        self.deliver(now=now)
        self.recompute_incidents(now=now, since=since - timedelta(days=1))
        return done

    def recompute_incidents(self, *, now: datetime, since: datetime | None = None, everything: bool = False) -> list:
        """Derive the incidents from the store again (reports/incidents.py): those starting in the last
        INCIDENT_DAYS, or since ``since``, or (``everything``) in the whole history; older ones stay as saved."""
        from datetime import timedelta

        from classifier.rules import RULES  # the classifier's recovery words (復旧, 再開, 解消, ...)
        from reports.incidents import INCIDENT_DAYS, recompute_incidents

        s = self.settings
        if since is None and not everything:
            since = now - timedelta(days=INCIDENT_DAYS)
        with self.sessions.begin() as session:
            return recompute_incidents(session, model_version=served_version(self.sessions), now=now, params=s.spikes,
                                       params_for=dict(s.spikes_for), policy=s.incidents, since=since,
                                       official_sources=frozenset(x.name for x in s.sources if x.official),
                                       recovery_words=tuple(RULES["pos:recovery"]))

    def write_monthly_report(self, *, month: date, out_dir: Path | None = None) -> dict[str, Path]:
        """The monthly summary of ``month``'s incidents (to ``[reports] dir`` unless ``out_dir``)."""
        from reports.monthly import write_monthly_report

        return write_monthly_report(self.sessions, model_version=served_version(self.sessions), month=month,
                                    out_dir=out_dir or self.settings.report_dir)

    def deliver(self, *, now: datetime) -> Delivery:
        """Send what the outbox holds that is due (SMTP or a webhook was down, a sender died mid-claim)."""
        return deliver_notifications(self.sessions, self.channels, now=now)

    def write_report(self, *, day: date, now: datetime, out_dir: Path | None = None,
                     send: bool | None = None) -> ReportFiles:
        """The daily report of the Tokyo day ``day`` (to ``[reports] dir`` unless ``out_dir``)."""
        from reports.archive import write_daily_report

        s = self.settings
        return write_daily_report(self.sessions, model_version=served_version(self.sessions), day=day,
                                  out_dir=out_dir or s.report_dir, smtp=s.smtp,
                                  send=s.send_digest if send is None else send, now=now, params=s.spikes,
                                  params_for=dict(s.spikes_for))
