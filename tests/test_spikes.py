"""Spike detection on sparse hourly counts (pure)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from reports.spikes import SpikeParams, detect_spikes, tail_score

START = datetime(2024, 9, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def _quiet(days: int, rate: float, seed: int) -> dict[datetime, int]:
    rng = random.Random(seed)
    counts = {}
    for h in range(days * 24):
        # Poisson by inversion: small rates, mostly zeros
        k, p, u = 0, pow(2.718281828, -rate), rng.random()
        s = p
        while u > s:
            k += 1
            p *= rate / k
            s += p
        if k:
            counts[START + h * H] = k
    return counts


def test_quiet_series_raise_nothing():
    for seed in range(20):
        series = {"trouble:portal": _quiet(30, 0.1, seed)}
        assert detect_spikes(series, start=START, now=START + 30 * 24 * H) == []


def test_an_outage_is_one_episode_at_the_right_hours():
    counts = _quiet(20, 0.05, 1)
    outage = START + (15 * 24 + 8) * H
    for h in range(6):
        counts[outage + h * H] = counts.get(outage + h * H, 0) + [3, 6, 5, 4, 0, 3][h]
    (episode,) = detect_spikes({"trouble:portal": counts}, start=START, now=START + 20 * 24 * H)
    assert episode.series == "trouble:portal"
    assert episode.start == outage and episode.end == outage + 5 * H  # the quiet hour inside is bridged
    assert episode.peak_count == 6 and episode.score > 4


def test_below_the_minimum_count_nothing_fires_even_if_unlikely():
    counts = {START + (10 * 24 + 5) * H: 2}
    assert detect_spikes({"s": counts}, start=START, now=START + 12 * 24 * H) == []


def test_warm_up_suppresses_alerts_on_short_history():
    counts = {START + 10 * H: 9}
    assert detect_spikes({"s": counts}, start=START, now=START + 48 * H) == []
    assert detect_spikes({"s": counts}, start=START, now=START + 48 * H, params=SpikeParams(warmup_hours=0))


def test_flagged_hours_do_not_raise_the_baseline():
    counts = {START + (5 * 24 + h) * H: 8 for h in range(10)}  # a long outage
    (episode,) = detect_spikes({"s": counts}, start=START, now=START + 7 * 24 * H)
    assert episode.end == START + (5 * 24 + 9) * H


def test_tail_score_grows_with_surprise():
    assert tail_score(3, 0.05) > tail_score(3, 0.5) > tail_score(1, 0.5)
