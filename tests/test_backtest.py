"""A small backtest (bench/backtest.py): the detector against the oracle that knows each simulated
series' true baseline, at the false-alert budget of 0.1 per 30 days per series."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from reports.spikes import SpikeParams

BENCH = Path(__file__).parent.parent / "bench" / "backtest.py"


@pytest.fixture(scope="module")
def backtest():
    spec = importlib.util.spec_from_file_location("backtest", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["backtest"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["backtest"]


class Serial:
    """The pool run_family expects, in this process."""

    @staticmethod
    def map(fn, jobs, chunksize=1):
        return map(fn, jobs)


@pytest.mark.parametrize("family", ["poisson", "overdispersed"])
def test_the_detector_finds_nearly_what_the_oracle_finds_within_the_budget(backtest, family):
    r = backtest.run_family(family, 48, 150, 3, SpikeParams(), Serial())  # about 330 outages
    assert r["outages"] > 300
    assert r["recall"] >= 0.95 * r["oracle"]["recall"] and r["recall"] >= 0.93
    assert r["false_per_30d"] <= 0.15 and r["precision"] >= 0.9
    assert r["median_delay"] <= 1


def test_the_oracle_spends_its_budget_on_quiet_series(backtest):
    seeds = list(range(40))
    threshold = backtest.calibrate_oracle("poisson", seeds, 60, SpikeParams(), Serial())
    scores = [backtest.quiet_scores((s, 60, "poisson", ())) for s in seeds]
    false = sum(len(backtest.oracle_spans(s, threshold, 72, 3)) for s in scores)
    months = len(seeds) * (60 * 24 - 72) / (30 * 24)
    assert 0 < false <= backtest.BUDGET * months
    assert sum(len(backtest.oracle_spans(s, threshold - 0.05, 72, 3)) for s in scores) > false


def test_oracle_scores_are_the_true_tail_probabilities(backtest):
    counts, truth = np.array([0, 1, 5]), np.array([1.0, 1.0, 1.0])
    scores = backtest.oracle_scores(counts, truth, "poisson")
    assert scores[0] == 0 and scores[1] == pytest.approx(-np.log10(1 - np.exp(-1)))
    assert scores[2] == pytest.approx(-np.log10(1 - np.exp(-1) * (1 + 1 + 1 / 2 + 1 / 6 + 1 / 24)))
