"""Collection jobs: fetch -> parse -> dedup -> store, one source at a time, one transaction each."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session, sessionmaker

from collector import dedup
from collector.errors import CollectorError
from collector.fetch import FetchPolicy, fetch_feed
from collector.gate import gate_reason
from collector.parse import parse_feed, parse_trends
from collector.sources import SourceConfig
from store import items as store_items
from store.records import Entry

log = logging.getLogger(__name__)
STORY_WINDOW = timedelta(days=3)


@dataclass(frozen=True)
class SourceOutcome:
    source: str
    outcome: str  # new | unchanged | not_modified | failed
    new_items: int = 0
    error: str | None = None


def collect_round(sessions: sessionmaker[Session], sources: list[SourceConfig], client: httpx.Client,
                  policy: FetchPolicy, *, now: datetime, workers: int = 4) -> list[SourceOutcome]:
    """Fetch every source (network in parallel); one failing source never stops the others."""
    with sessions.begin() as session:
        states = {s.name: store_items.upsert_source(session, name=s.name, url=s.url, kind=s.kind,
                                                    publisher=s.publisher, interval_minutes=s.interval_minutes)
                  for s in sources}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        fetched = list(pool.map(lambda s: _fetch(client, states[s.name], policy, now), sources))
    outcomes = []
    for source, (result, error) in zip(sources, fetched):
        try:
            outcomes.append(_store(sessions, source, states[source.name], result, error, now=now))
        except Exception as exc:  # job boundary: record, move on to the next source
            log.exception("collecting %s failed", source.name)
            with sessions.begin() as session:
                store_items.record_fetch(session, states[source.name].id, started_at=now, http_status=None,
                                         outcome="failed", error=f"internal error: {exc}")
            outcomes.append(SourceOutcome(source.name, "failed", error=str(exc)))
    return outcomes


def _fetch(client, state, policy, now):
    try:
        return fetch_feed(client, state.url, etag=state.etag, last_modified=state.last_modified,
                          policy=policy, now=now), None
    except CollectorError as exc:
        return None, exc


def _store(sessions, source: SourceConfig, state, result, error, *, now: datetime) -> SourceOutcome:
    if error is not None:
        with sessions.begin() as session:
            store_items.record_fetch(session, state.id, started_at=now, http_status=getattr(error, "status", None),
                                     outcome="failed", error=str(error))
        return SourceOutcome(source.name, "failed", error=str(error))
    if result.body is None:
        with sessions.begin() as session:
            store_items.record_fetch(session, state.id, started_at=now, http_status=304, outcome="not_modified",
                                     duration_ms=result.elapsed_ms)
        return SourceOutcome(source.name, "not_modified")
    body_hash = hashlib.sha256(result.body).hexdigest()
    if body_hash == state.body_hash:  # some servers never answer 304: skip an identical body ourselves
        with sessions.begin() as session:
            store_items.record_fetch(session, state.id, started_at=now, http_status=result.status,
                                     outcome="unchanged", duration_ms=result.elapsed_ms,
                                     etag=result.etag, last_modified=result.last_modified)
        return SourceOutcome(source.name, "unchanged")
    try:
        if source.kind == "google_trends":
            trends, entries = parse_trends(result.body, url=source.url, now=now), []
        else:
            trends, entries = [], parse_feed(result.body, url=source.url, content_type=result.content_type,
                                             kind=source.kind, now=now)
    except CollectorError as exc:
        with sessions.begin() as session:
            store_items.record_fetch(session, state.id, started_at=now, http_status=result.status,
                                     outcome="failed", error=str(exc), duration_ms=result.elapsed_ms)
        return SourceOutcome(source.name, "failed", error=str(exc))
    with sessions.begin() as session:
        if trends:
            new = store_items.save_trends(session, state.id, trends, fetched_at=now)
        else:
            new = save_entries(session, state.id, source, entries, now=now)
        store_items.record_fetch(session, state.id, started_at=now, http_status=result.status,
                                 outcome="new" if new else "unchanged", new_items=new,
                                 duration_ms=result.elapsed_ms, etag=result.etag,
                                 last_modified=result.last_modified, body_hash=body_hash)
    return SourceOutcome(source.name, "new" if new else "unchanged", new_items=new)


def prepare(source: SourceConfig, entry: Entry, *, now: datetime) -> store_items.NewItem:
    """Identity, publisher, date and gate decision for one parsed entry."""
    url = dedup.canonical_url(entry.url)
    publisher = entry.publisher or source.publisher or (urlsplit(url).hostname or source.name)
    reason = gate_reason(entry.title, entry.summary, entry.categories)
    return store_items.NewItem(
        entry=entry, canonical_url=url, publisher=publisher, title_key=dedup.title_key(publisher, entry.title),
        published=entry.published or now, gate="rejected" if reason else "pass", gate_reason=reason,
    )


def save_entries(session: Session, source_id: int, source: SourceConfig, entries: list[Entry], *,
                 now: datetime) -> int:
    """Store the entries not seen before, each attached to a story cluster. Returns how many were new."""
    prepared = [prepare(source, e, now=now) for e in entries]
    social = {p.canonical_url: p.entry.social_count for p in prepared if p.entry.social_count is not None}
    store_items.update_social_counts(session, social)
    known = store_items.known_keys(session, [p.canonical_url for p in prepared], [p.title_key for p in prepared])
    fresh, seen = [], set(known)
    for p in sorted(prepared, key=lambda p: p.published):
        if p.canonical_url in seen or p.title_key in seen:
            continue
        seen.update((p.canonical_url, p.title_key))
        fresh.append(p)
    if not fresh:
        return 0
    since = min(p.published for p in fresh) - STORY_WINDOW
    candidates = [(c.story_id, dedup.shingles(c.title))
                  for c in store_items.recent_stories(session, since)]
    inserted = 0
    for p in fresh:
        story_id = dedup.match_story(p.entry.title, candidates)
        if story_id is None:
            story_id = store_items.add_story(session, p.entry.title, p.published)
            candidates.append((story_id, dedup.shingles(p.entry.title)))
        inserted += store_items.save_item(session, source_id, p, story_id, fetched_at=now)
    return inserted
