"""Source health: failure weights, linear backoff, Retry-After, offline detection and staleness. Pure."""

from __future__ import annotations

import random
import statistics
import threading
from dataclasses import dataclass
import shutil
import textwrap
from datetime import datetime, timedelta

from collector.errors import HARD, SOFT, TEMPORARY
from collector.policy import CollectPolicy
from store.clock import tokyo

FAILURE_WEIGHTS = {TEMPORARY: 1.0, SOFT: 2.0, HARD: 4.0}
MAX_RETRY_JITTER = 300.0


@dataclass(frozen=True)
class Schedule:
    """When a source may be fetched next."""

    hold_until: datetime | None  # not before this (backoff or Retry-After); None: whenever due
    next_fetch_at: datetime


def after_success(*, interval_minutes: int, now: datetime) -> Schedule:
    return Schedule(None, now + timedelta(minutes=interval_minutes))


def after_failure(failure_score: float, retry_after: float | None, *, interval_minutes: int,
                  policy: CollectPolicy, now: datetime, rng: random.Random) -> Schedule:
    """Linear backoff on the failure score, capped so a source is always tried again; Retry-After honoured
    (with jitter, so clients told the same time do not come back in step)."""
    backoff = min(failure_score * policy.backoff_minutes * 60, policy.max_backoff_hours * 3600)
    hold = now + timedelta(seconds=backoff)
    if retry_after is not None:
        jitter = rng.uniform(0, min(MAX_RETRY_JITTER, max(1.0, retry_after * 0.1)))
        hold = max(hold, now + timedelta(seconds=retry_after + jitter))
    return Schedule(hold, max(hold, now + timedelta(minutes=interval_minutes)))


def is_held(hold_until: datetime | None, *, now: datetime) -> bool:
    return hold_until is not None and hold_until > now


class Connectivity:
    """Recent fetch attempts by host, across rounds and scheduler jobs, to tell "this machine is offline"
    (most hosts failing at once without any answer) from one failing source."""

    def __init__(self, window: timedelta = timedelta(minutes=15)):
        self.window = window
        self._last: dict[str, tuple[datetime, bool]] = {}
        self._lock = threading.Lock()

    def record(self, host: str, *, unanswered: bool, now: datetime) -> None:
        with self._lock:
            self._last[host] = (now, unanswered)

    def offline(self, policy: CollectPolicy, *, now: datetime) -> bool:
        with self._lock:
            recent = [unanswered for when, unanswered in self._last.values() if now - when <= self.window]
        if len(recent) < policy.offline_min_hosts:
            return False
        return sum(recent) >= policy.offline_fraction * len(recent)


def stale_reason(published: list[datetime], *, answering: bool, policy: CollectPolicy, now: datetime) -> str | None:
    """Why a source that answers looks stale (no new item for much longer than usual), or None.

    ``published`` are its newest items' dates, newest first. The usual gap is the median gap between them.
    """
    if not answering or not published:
        return None
    age = now - published[0]
    gaps = [(a - b).total_seconds() for a, b in zip(published, published[1:]) if a > b]
    usual = statistics.median(gaps) if gaps else 0.0
    limit = max(policy.stale_factor * usual, policy.stale_min_hours * 3600)
    if age.total_seconds() <= limit:
        return None
    return f"stale: newest item {_span(age.total_seconds())} old (usually one every {_span(usual)})"


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(seconds, 60) / 60:.0f} minutes"


def _when(d: datetime | None) -> str:
    return f"{tokyo(d):%Y-%m-%d %H:%M}" if d else "-"


def describe_sources(rows, *, policy: CollectPolicy, now: datetime, width: int | None = None) -> str:
    """The `mynawatch sources` table: status, last success, failure score, newest item, next fetch; under
    each source, its whole status (a failure's reason, never cut off) and flags (stale, backing off),
    wrapped to the terminal's ``width``. ``rows`` are store.sources.SourceRow. Times in Tokyo time."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    lines = [f"{'source':24} {'status':8} {'last success':16} {'failures':>8} {'newest item':16} {'next fetch':16}"
             "   (times Asia/Tokyo, +09:00)"]
    for r in rows:
        newest = r.newest[0] if r.newest else None
        state = r.status.split(":", 1)[0].split()[0] if r.status.strip() else "-"
        lines.append(f"{r.name[:24]:24} {state[:8]:8} {_when(r.last_success_at):16} {r.failure_score:8.1f} "
                     f"{_when(newest):16} {_when(r.next_fetch_at):16}")
        detail = [r.status] if r.status.strip() and r.status.strip() != state else []
        detail += source_flags(r, policy=policy, now=now)
        for text in detail:
            lines += textwrap.wrap(text, width=max(40, width), initial_indent="    ", subsequent_indent="      ",
                                   break_on_hyphens=False) or []
    return "\n".join(lines)


def source_flags(row, *, policy: CollectPolicy, now: datetime) -> list[str]:
    """What `mynawatch sources` flags on a source (a store.sources.SourceRow): stale, backing off."""
    flags = []
    stale = stale_reason(list(row.newest), answering=not row.status.startswith(("error", "offline", "new")),
                         policy=policy, now=now)
    if stale:
        flags.append("STALE (" + stale.removeprefix("stale: ") + ")")
    if is_held(row.hold_until, now=now):
        flags.append(f"backing off until {_when(row.hold_until)}")
    return flags
