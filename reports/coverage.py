"""What was collected: the stretches in which no source was fetched successfully (gaps), and each source's
fetches on a report's day, read from the fetch history (``fetch_log``). Pure, beside how it reads in Japanese.

Items are counted by when they were published, and a fetch sees what was published before it. So when,
after a successful fetch at ``t``, no source succeeds again by the time the next fetch was due (``t`` plus
that source's interval, plus ``GRACE``: a late round is not a gap), the whole stretch from ``t`` to the next
success is a gap: what was published then was not seen at the time. Before the store's first fetch attempt
nothing is known, and nothing is claimed: a store filled some other way has no gaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from store.clean import one_line
from store.clock import day_bounds, tokyo
from store.health import FetchTally

Span = tuple[datetime, datetime]  # [start, end), aware
GRACE = timedelta(minutes=30)  # a round this late is not a gap
GAP_LABEL = "収集なし"  # the charts' legend entry for a gap
URL_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*://\S*?: ")  # collector errors begin with the address fetched


@dataclass(frozen=True)
class SourceDay:
    """One source's fetches on the report's day: successes, and failed attempts by reason (most first)."""

    name: str
    successes: int
    failures: tuple[tuple[str, int], ...] = ()

    @property
    def failed(self) -> int:
        return sum(n for _, n in self.failures)


@dataclass(frozen=True)
class Coverage:
    """Collection over a report's day [since, until) (``until``: the day's end, or the report's time when
    earlier), with the gaps over the charts' weeks before it too."""

    since: datetime
    until: datetime
    gaps: tuple[Span, ...] = ()
    sources: tuple[SourceDay, ...] = ()
    known: bool = False  # the fetch history reaches into the day

    def day_gaps(self) -> list[Span]:
        return clip(self.gaps, self.since, self.until)

    @property
    def whole_day(self) -> bool:
        """Nothing was collected on the day at all."""
        return self.known and self.since < self.until and self.day_gaps() == [(self.since, self.until)]

    @property
    def failing(self) -> list[SourceDay]:
        return [s for s in self.sources if s.failures]

    @property
    def ok(self) -> int:
        """Sources fetched successfully every time they were tried on the day."""
        return sum(1 for s in self.sources if s.successes and not s.failures)


def find_gaps(successes: list[tuple[datetime, int]], *, known_from: datetime | None, since: datetime,
              until: datetime, reach: timedelta = timedelta(hours=1), grace: timedelta = GRACE) -> list[Span]:
    """The gaps in [since, until). ``successes``: (when, the source's interval in minutes) in [since, until), in
    time order; ``reach``: the longest interval (the first ``reach`` after ``since`` is only a run-up, since a
    success just before ``since`` is not seen). A gap before ``known_from`` is never claimed."""
    if known_from is None or known_from >= until:
        return []
    last = max(since, known_from)
    due = since + reach if known_from <= since else known_from  # the first fetch attempt was due to succeed
    gaps = []
    for at, minutes in successes:
        if at < last or at >= until:
            continue
        if at > due + grace:
            gaps.append((last, at))
        last, due = at, max(due, at + timedelta(minutes=minutes))
    if until > due + grace:
        gaps.append((last, until))
    return gaps


def clip(spans, since: datetime, until: datetime) -> list[Span]:
    return [(max(a, since), min(b, until)) for a, b in spans if b > since and a < until]


def missing_days(spans, days) -> set[date]:
    """The Tokyo days among ``days`` that lie wholly in a gap."""
    out = set()
    for d in days:
        start, end = day_bounds(d)
        if any(a <= start and b >= end for a, b in spans):
            out.add(d)
    return out


def source_days(tallies: list[FetchTally]) -> tuple[SourceDay, ...]:
    successes: dict[str, int] = {}
    failures: dict[str, list[tuple[str, int]]] = {}
    for t in tallies:
        if t.outcome == "ok":
            successes[t.source] = successes.get(t.source, 0) + t.attempts
            continue
        reason = URL_PREFIX.sub("", one_line(t.reason)) or "理由不明"  # the source's address is known: not repeated
        if t.outcome == "offline":
            reason = f"オフライン判定（失敗に数えず）: {reason}"
        failures.setdefault(t.source, []).append((reason, t.attempts))
    names = sorted(set(successes) | set(failures))
    return tuple(SourceDay(n, successes.get(n, 0), tuple(sorted(failures.get(n, []), key=lambda rn: (-rn[1], rn[0]))))
                 for n in names)


# How it reads in the report (text, HTML and the digest alike).

def hhmm(when: datetime, day: date) -> str:
    """A time of the Tokyo day ``day``; its end is 24:00."""
    local = tokyo(when)
    return "24:00" if local.date() > day else f"{local:%H:%M}"


def gap_sentence(c: Coverage | None, day: date) -> str | None:
    """「この日は HH:MM–HH:MM に収集できていません（全ソース）」, or None when nothing is missing."""
    gaps = c.day_gaps() if c else []
    if not gaps:
        return None
    spans = "、".join(f"{hhmm(a, day)}–{hhmm(b, day)}" for a, b in gaps)
    return f"この日は {spans} に収集できていません（全ソース）"


def source_line(s: SourceDay) -> str:
    reasons = "、".join(f"{r} ×{n}" for r, n in s.failures)
    return f"{one_line(s.name)}: 取得失敗 {s.failed} 回、成功 {s.successes} 回（{reasons}）"


def coverage_lines(c: Coverage | None, day: date) -> list[str]:
    """The report's lines on the day's collection: the gaps, each source that failed, how many were fine."""
    if c is None or not c.known:
        return ["取得の記録なし"]
    lines = [s for s in [gap_sentence(c, day)] if s]
    lines += [source_line(s) for s in c.failing]
    if c.ok:
        lines.append(f"正常: {c.ok} 件（この日の取得がすべて成功）")
    return lines or ["この日は取得を試みていません"]
