"""Spike detection on sparse hourly counts. Pure: counts and ``now`` in, episodes out.

For each hour, the baseline rate is the mean count of the same series over the previous
``baseline_days`` (hours already flagged excluded, floored at ``floor_rate``). An hour is flagged
when its count reaches ``min_count`` and the Poisson tail probability of a count at least that
large under the baseline is below ``10 ** -min_score``. Flagged hours no more than ``merge_gap_hours``
apart form one episode. Nothing is flagged until ``warmup_hours`` of history exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from scipy.stats import poisson

from store.records import Episode

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class SpikeParams:
    min_count: int = 3
    min_score: float = 4.0  # -log10 of the tail probability
    baseline_days: int = 7
    floor_rate: float = 0.02  # per hour: a quiet series is not "zero forever"
    warmup_hours: int = 72
    merge_gap_hours: int = 3


def floor_hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def tail_score(count: int, rate: float) -> float:
    """-log10 P(X >= count) for X ~ Poisson(rate)."""
    p = poisson.sf(count - 1, rate)
    return 60.0 if p <= 0 else -math.log10(p)


def flag_hours(counts: dict[datetime, int], *, start: datetime, now: datetime,
               params: SpikeParams) -> dict[datetime, tuple[int, float]]:
    """Flagged hours in [start, now) with (count, score). ``counts`` maps hour starts (UTC) to counts."""
    window = params.baseline_days * 24
    history: list[int] = []  # counts of unflagged hours, oldest first
    flagged: dict[datetime, tuple[int, float]] = {}
    hour, end = floor_hour(start), floor_hour(now)
    seen = 0
    while hour < end:
        count = counts.get(hour, 0)
        recent = history[-window:]
        rate = max(sum(recent) / len(recent) if recent else 0.0, params.floor_rate)
        score = tail_score(count, rate) if count else 0.0
        if seen >= params.warmup_hours and count >= params.min_count and score >= params.min_score:
            flagged[hour] = (count, score)
        else:
            history.append(count)
        seen += 1
        hour += HOUR
    return flagged


def detect_spikes(series: dict[str, dict[datetime, int]], *, start: datetime, now: datetime,
                  params: SpikeParams = SpikeParams()) -> list[Episode]:
    """Episodes per series over [start, now), ordered by start."""
    episodes = []
    for name, counts in sorted(series.items()):
        flagged = flag_hours(counts, start=start, now=now, params=params)
        current: list[datetime] = []
        for hour in sorted(flagged):
            if current and hour - current[-1] > HOUR * (params.merge_gap_hours + 1):
                episodes.append(_episode(name, current, flagged))
                current = []
            current.append(hour)
        if current:
            episodes.append(_episode(name, current, flagged))
    return sorted(episodes, key=lambda e: (e.start, e.series))


def _episode(name: str, hours: list[datetime], flagged) -> Episode:
    peak = max(hours, key=lambda h: flagged[h][0])
    return Episode(series=name, start=hours[0], end=hours[-1], peak_count=flagged[peak][0],
                   score=round(max(flagged[h][1] for h in hours), 2))
