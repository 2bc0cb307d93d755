"""Collection jobs: fetch -> parse -> ingest, one source at a time, one transaction each.

Fetches run in parallel (within the per-host limits); writes are serial, in the order of the sources.
A failure of one source is recorded and the round moves on.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import httpx
from sqlalchemy.orm import Session, sessionmaker

from collector.articles import OUTCOMES, articles_due, read_article, save_articles
from collector.errors import SOFT, CollectorError, FetchFailed
from collector.fetch import FetchPolicy, FetchResult, HostLimiter, fetch_feed
from collector.health import FAILURE_WEIGHTS, Connectivity, after_failure, after_success, is_held
from collector.ingest import prepare, save_entries, save_read  # noqa: F401 (prepare, save_entries: public API)
from collector.kinds import kind_of
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from collector.stories import StoryIndex
from store import sources as store_sources
from store.sources import FetchRecord, SourceState

log = logging.getLogger(__name__)
STORY_INDEX_LIMIT = 50_000  # stories kept in memory by a long-running collector before the oldest are dropped


@dataclass(frozen=True)
class SourceOutcome:
    source: str
    outcome: str  # new | unchanged | not_modified | failed | offline | waiting
    new_items: int = 0
    error: str | None = None
    http_status: int | None = None
    failure_kind: str | None = None
    skipped_items: int = 0  # items of this round that could not be read (logged once, with the first reasons)


class Collector:
    """What the collecting jobs of one process share: the HTTP client, per-host limits, the view of
    connectivity, the story index and the lock that keeps writes serial."""

    def __init__(self, sessions: sessionmaker[Session], client: httpx.Client, fetch: FetchPolicy,
                 policy: CollectPolicy = CollectPolicy(), *, rng: random.Random | None = None,
                 limiter: HostLimiter | None = None, connectivity: Connectivity | None = None):
        self.sessions, self.client, self.fetch, self.policy = sessions, client, fetch, policy
        self.rng = rng or random.Random()
        self.limiter = limiter or HostLimiter.for_policy(fetch)
        self.connectivity = connectivity or Connectivity()
        self.stories = StoryIndex(hours=policy.story_hours, threshold=policy.story_similarity)
        self.write_lock = threading.Lock()
        self._registered: dict[str, SourceConfig] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(1, fetch.connections), thread_name_prefix="fetch")

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def collect_round(self, sources: list[SourceConfig], *, now: datetime, force: bool = False,
                      progress=None) -> list[SourceOutcome]:
        """Fetch every due source (``force``: also those in backoff) and store what is new."""
        states = self._states(sources)
        due = [s for s in sources if force or not is_held(states[s.name].hold_until, now=now)]
        outcomes = {s.name: _waiting(s, states[s.name]) for s in sources if s not in due}
        outcomes.update(self._fetch_and_store(due, states, now=now, progress=progress))
        if len(self.stories) > STORY_INDEX_LIMIT:
            with self.write_lock:
                self.stories.prune(now - 2 * self.stories.window)
        return [outcomes[s.name] for s in sources]

    def _fetch_and_store(self, due: list[SourceConfig], states, *, now: datetime,
                         progress=None) -> dict[str, SourceOutcome]:
        """Fetches in parallel, stored one by one as they come, in order. Failures without any answer wait
        for the end of the round: one host failing, or the whole machine offline?"""
        outcomes, unanswered = {}, []
        order = interleave_by_host(due)
        futures = [self.pool.submit(self._fetch, states[s.name], now) for s in order]
        for done, (source, future) in enumerate(zip(order, futures)):
            result, error = future.result()
            if progress:  # (done, total, step): a progress display, on a terminal only
                progress(done + 1, len(order), "collect")
            self.connectivity.record(source.host, unanswered=bool(error and error.network), now=now)
            if error is not None and error.network:
                unanswered.append((source, error))
                continue
            outcomes[source.name] = self._store_guarded(source, states[source.name], result, error, now=now)
        offline = bool(unanswered) and self.connectivity.offline(self.policy, now=now)
        for source, error in unanswered:
            outcomes[source.name] = self._store_guarded(source, states[source.name], None, error, now=now,
                                                        offline=offline)
        return outcomes

    def _states(self, sources: list[SourceConfig]) -> dict[str, SourceState]:
        """Register new or changed sources, then read every source's state."""
        changed = [s for s in sources if self._registered.get(s.name) != s]
        with self.write_lock, self.sessions.begin() as session:
            for s in changed:
                store_sources.upsert_source(session, name=s.name, url=s.url, kind=s.kind, publisher=s.publisher,
                                            interval_minutes=s.interval_minutes)
            states = store_sources.source_states(session, [s.name for s in sources])
        self._registered.update((s.name, s) for s in changed)
        return states

    def fetch_articles(self, *, now: datetime) -> dict[str, int]:
        """Read the pages of relevant items not read yet (see ``collector.articles``); returns how many ended
        ok / failed / refused."""
        with self.sessions.begin() as session:
            todo = articles_due(session, self.policy, now=now)
        if not todo:
            return dict.fromkeys(OUTCOMES, 0)
        read = partial(read_article, self.client, fetch=self.fetch, limiter=self.limiter,
                       limits=self.policy.text_limits, now=now)
        records = list(self.pool.map(read, todo))
        with self.write_lock, self.sessions.begin() as session:
            return save_articles(session, todo, records, now=now)

    def _fetch(self, state: SourceState, now: datetime) -> tuple[FetchResult | None, CollectorError | None]:
        try:
            return fetch_feed(self.client, state.url, etag=state.etag, last_modified=state.last_modified,
                              policy=self.fetch, now=now, limiter=self.limiter), None
        except CollectorError as exc:
            return None, exc
        except Exception as exc:  # job boundary: a bug while fetching one source
            log.exception("fetching %s failed", state.url)
            return None, FetchFailed(state.url, f"internal error: {exc!r}", kind=SOFT)

    def _store_guarded(self, source, state, result, error, *, now, offline=False) -> SourceOutcome:
        with self.write_lock:
            try:
                return self._store(source, state, result, error, now=now, offline=offline)
            except Exception as exc:  # job boundary: record, move on to the next source
                log.exception("storing %s failed", source.name)
                self.stories.clear()  # it may hold stories of the rolled-back transaction
                failure = FetchFailed(source.url, f"internal error: {exc!r}", kind=SOFT)
                try:
                    return self._record_failure(source, state, failure, now=now, offline=False)
                except Exception:  # the store itself is failing (disk full, locked): say so, go on
                    log.exception("recording the failure of %s failed too", source.name)
                    return SourceOutcome(source.name, "failed", error=str(failure), failure_kind=SOFT)

    def _store(self, source, state, result, error, *, now, offline) -> SourceOutcome:
        if error is not None:
            return self._record_failure(source, state, error, now=now, offline=offline)
        if result.body is None:
            return self._record_success(source, state, result, "not_modified", now=now)
        kind = kind_of(source.kind)
        if kind.body_hash and hashlib.sha256(result.body).hexdigest() == state.body_hash:
            return self._record_success(source, state, result, "unchanged", now=now)  # servers that never say 304
        skipped: list[str] = []
        try:
            parsed, body_hash = kind.read(result.body, url=source.url, content_type=result.content_type,
                                          selector=source.selector, now=now, limits=self.policy.text_limits,
                                          skipped=skipped)
        except CollectorError as exc:
            return self._record_failure(source, state, exc, now=now, http_status=result.status)
        if body_hash == state.body_hash:  # a watched page whose region did not change
            return self._record_success(source, state, result, "unchanged", now=now)
        with self.sessions.begin() as session:
            new = save_read(session, state.id, source, parsed, now=now, stories=self.stories, policy=self.policy,
                            skipped=skipped)
            self._log(session, source, state, result, "new" if new else "unchanged", now=now, new=new,
                      body_hash=body_hash)
        if skipped:  # once per source and round, however many items
            log.warning("%s: %d unreadable item(s) skipped, the others stored (%s)", source.name, len(skipped),
                        "; ".join(skipped[:3]))
        return SourceOutcome(source.name, "new" if new else "unchanged", new, http_status=result.status,
                             skipped_items=len(skipped))

    def _record_success(self, source, state, result, outcome, *, now) -> SourceOutcome:
        with self.sessions.begin() as session:
            self._log(session, source, state, result, outcome, now=now)
        return SourceOutcome(source.name, outcome, http_status=result.status)

    def _log(self, session, source, state, result, outcome, *, now, new=0, body_hash=None) -> None:
        plan = after_success(interval_minutes=source.interval_minutes, now=now)
        store_sources.record_fetch(session, state.id, FetchRecord(
            started_at=now, outcome=outcome, http_status=result.status, new_items=new,
            duration_ms=result.elapsed_ms, etag=result.etag, last_modified=result.last_modified,
            body_hash=body_hash, hold_until=plan.hold_until, next_fetch_at=plan.next_fetch_at))

    def _record_failure(self, source, state, error: CollectorError, *, now, offline=False,
                        http_status=None) -> SourceOutcome:
        status = error.status if error.status is not None else http_status
        if offline:
            plan = after_success(interval_minutes=source.interval_minutes, now=now)
            record = FetchRecord(started_at=now, outcome="offline", http_status=status, error=str(error),
                                 failure_kind=error.kind, next_fetch_at=plan.next_fetch_at)
        else:
            score = state.failure_score + FAILURE_WEIGHTS[error.kind]
            plan = after_failure(score, error.retry_after, interval_minutes=source.interval_minutes,
                                 policy=self.policy, now=now, rng=self.rng)
            record = FetchRecord(started_at=now, outcome="failed", http_status=status, error=str(error),
                                 failure_kind=error.kind, failure_score=score, hold_until=plan.hold_until,
                                 next_fetch_at=plan.next_fetch_at)
        with self.sessions.begin() as session:
            store_sources.record_fetch(session, state.id, record)
        return SourceOutcome(source.name, record.outcome, error=str(error), http_status=status,
                             failure_kind=error.kind)


def interleave_by_host(sources: list[SourceConfig]) -> list[SourceConfig]:
    """Round-robin over hosts, so workers are not all waiting on one host's limit while others idle."""
    by_host: dict[str, list[SourceConfig]] = {}
    for s in sources:
        by_host.setdefault(s.host, []).append(s)
    queues = list(by_host.values())
    out = []
    while queues:
        out += [q.pop(0) for q in queues]
        queues = [q for q in queues if q]
    return out


def _waiting(source: SourceConfig, state: SourceState) -> SourceOutcome:
    return SourceOutcome(source.name, "waiting", error=f"backing off until {state.hold_until:%Y-%m-%d %H:%M} UTC")


def collect_round(sessions: sessionmaker[Session], sources: list[SourceConfig], client: httpx.Client,
                  policy: FetchPolicy, *, now: datetime, collect: CollectPolicy = CollectPolicy(),
                  force: bool = False) -> list[SourceOutcome]:
    """One round over ``sources`` with a fresh Collector (jobs that run often keep one Collector instead)."""
    with Collector(sessions, client, policy, collect) as collector:
        return collector.collect_round(sources, now=now, force=force)
