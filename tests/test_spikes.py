"""Spike detection on sparse, overdispersed hourly counts (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from reports.baseline import fit_baseline
from reports.spikes import SpikeParams, detect_spikes, scan_series, tail_score

START = datetime(2024, 8, 31, 15, tzinfo=timezone.utc)  # 2024-09-01 00:00 in Tokyo, a Sunday
H = timedelta(hours=1)
DAYS = 35


def _cycle(hours: int) -> np.ndarray:
    """A daily news cycle in Tokyo time: quiet at night, busiest in the early afternoon (mean 1)."""
    hod = np.arange(hours) % 24
    return 1 + 0.8 * np.cos(2 * np.pi * (hod - 13) / 24)


def _series(rate: float, seed: int, *, days: int = DAYS, weekly: bool = False) -> dict[datetime, int]:
    rng = np.random.default_rng(seed)
    lam = rate * _cycle(days * 24)
    if weekly:
        dow = (np.arange(days * 24) // 24) % 7  # day 0 is a Sunday
        lam = lam * np.where((dow == 0) | (dow == 6), 0.4, 1.25)
    return {START + i * H: int(c) for i, c in enumerate(rng.poisson(lam)) if c}


def _detect(counts, *, days: int = DAYS, params: SpikeParams = SpikeParams()):
    return detect_spikes({"trouble:portal": counts}, start=START, now=START + days * 24 * H, params=params)


def test_quiet_series_with_a_daily_cycle_raise_nothing():
    for seed in range(12):
        for rate in (0.1, 0.5, 3.0):
            assert _detect(_series(rate, seed)) == [], (seed, rate)


def test_weekend_dips_and_weekday_rises_are_not_spikes():
    for seed in range(8):
        assert _detect(_series(2.0, seed, weekly=True)) == [], seed


def test_an_outage_is_one_episode_flagged_from_its_first_hour():
    counts = _series(0.3, 1)
    outage = START + (30 * 24 + 9) * H
    for h, n in enumerate([4, 7, 6, 0, 5, 3]):  # a quiet hour inside is bridged
        counts[outage + h * H] = counts.get(outage + h * H, 0) + n
    (episode,) = _detect(counts)
    assert episode.series == "trouble:portal"
    assert episode.start == outage and episode.end >= outage + 5 * H and episode.end <= outage + 7 * H
    assert episode.peak_count >= 7 and episode.score >= 6
    assert episode.fired <= outage + H and episode.ended  # known by the end of its second hour


def test_a_sustained_moderate_rise_is_caught_by_the_cumulative_test():
    counts = _series(1.0, 3)
    rise = START + (30 * 24 + 8) * H
    extra = np.random.default_rng(5).poisson(2.0 * _cycle(24)[8:20])  # about three times the usual for 12 hours
    for h, n in enumerate(extra):
        counts[rise + h * H] = counts.get(rise + h * H, 0) + int(n)
    hours = range(8, 20)
    single_best = max(tail_score(counts.get(rise + (h - 8) * H, 0), 1.0 * _cycle(24)[h]) for h in hours)
    assert single_best < SpikeParams().min_score  # no single hour would do
    (episode,) = _detect(counts)
    assert rise - 2 * H <= episode.start <= rise + 2 * H and episode.fired <= rise + 8 * H


def test_below_the_minimum_count_nothing_fires_even_if_unlikely():
    counts = {START + (10 * 24 + 5) * H: 2}
    assert _detect(counts, days=12) == []


def test_warm_up_suppresses_alerts_on_short_history():
    counts = {START + 10 * H: 9}
    assert _detect(counts, days=2) == []
    assert _detect(counts, days=2, params=SpikeParams(warmup_hours=0))
    # warm-up counts from where the history begins, not from where the scan starts
    later = START + 30 * 24 * H
    found = detect_spikes({"s": {later + 5 * H: 9}}, start=later, now=later + 24 * H, warm_from=START)
    assert found and found[0].start == later + 5 * H


def test_flagged_hours_do_not_raise_the_baseline():
    counts = _series(0.2, 2, days=20)
    for day in (10, 11, 12):  # three long outages on consecutive days
        for h in range(10):
            counts[START + (day * 24 + 8 + h) * H] = 8
    episodes = _detect(counts, days=20)
    assert [e.start for e in episodes] == [START + (d * 24 + 8) * H for d in (10, 11, 12)]


def test_flapping_counts_make_one_episode():
    counts = _series(0.3, 4)
    start = START + (30 * 24 + 6) * H
    for h in range(16):  # above, quiet, above, quiet ...
        counts[start + h * H] = 6 if h % 2 == 0 else 0
    (episode,) = _detect(counts)
    assert episode.start == start and episode.end == start + 14 * H


def test_an_ongoing_episode_is_not_ended():
    counts = _series(0.3, 6)
    outage = START + (34 * 24 + 20) * H
    counts.update({outage: 6, outage + H: 8})
    (episode,) = detect_spikes({"s": counts}, start=START, now=outage + 2 * H + 10 * 60 * timedelta(seconds=1))
    assert not episode.ended and episode.stop == outage + 2 * H


def test_tail_score_grows_with_surprise_and_shrinks_with_overdispersion():
    assert tail_score(3, 0.05) > tail_score(3, 0.5) > tail_score(1, 0.5)
    assert tail_score(10, 2.0) > tail_score(10, 2.0, 0.5) > 0
    assert tail_score(0, 1.0) == 0.0


def test_baseline_learns_the_daily_cycle_and_overdispersion():
    hours = 28 * 24
    hod, dow, day = np.arange(hours) % 24, (np.arange(hours) // 24) % 7, np.arange(hours) // 24
    rng = np.random.default_rng(0)
    lam = 3 * _cycle(hours)
    poisson = fit_baseline(rng.poisson(lam).astype(float), hod, dow, day, floor=0.05)
    assert poisson.expected(np.array([13]), np.array([2]))[0] > 3 * poisson.expected(np.array([1]), np.array([2]))[0]
    assert poisson.dispersion < 0.1
    noisy = rng.negative_binomial(2, 2 / (2 + lam)).astype(float)
    assert fit_baseline(noisy, hod, dow, day, floor=0.05).dispersion > 0.25


@pytest.mark.parametrize("bad", [{"min_count": 0}, {"min_score": "high"}, {"weekly": 1}, {"keep_score": 9.0}])
def test_out_of_range_thresholds_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SpikeParams(**bad)


def test_scan_is_deterministic_and_pure():
    counts = _series(1.0, 9)
    counts[START + (31 * 24 + 10) * H] = 15
    a = scan_series("s", counts, start=START, now=START + DAYS * 24 * H, params=SpikeParams())
    b = scan_series("s", dict(counts), start=START, now=START + DAYS * 24 * H, params=SpikeParams())
    assert a == b and len(a) == 1


def test_a_busy_news_day_raises_its_own_expectation_instead_of_alerting():
    rng = np.random.default_rng(11)
    days = 35
    level = np.repeat(rng.gamma(8.0, 1 / 8.0, days), 24)
    level[30 * 24:31 * 24] = 2.2  # one day at more than twice the usual level, every hour of it
    lam = 3.0 * _cycle(days * 24) * level
    counts = {START + i * H: int(c) for i, c in enumerate(rng.negative_binomial(4, 4 / (4 + lam))) if c}
    assert _detect(counts) == []
    busy_afternoon = START + (30 * 24 + 15) * H
    counts[busy_afternoon] = counts.get(busy_afternoon, 0) + 40  # an outage on that day still fires
    (episode,) = _detect(counts)
    assert episode.start <= busy_afternoon <= episode.end
