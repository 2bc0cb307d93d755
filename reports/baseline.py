"""Seasonal baselines for hourly counts: a level, an hour-of-day profile, a weekday profile and the
dispersion around them, estimated from recent history. Pure (numpy in, numpy out).

Sparse series get honest baselines: each profile cell is shrunk towards the flat level by a prior
of a few counts, so a cell that saw nothing in four weeks is "like the rest", not "zero forever";
and the predictive spread grows with how little history there is (a gamma-Poisson mixture), so a
short or quiet history cannot make a single count look impossible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIOR = 2.0  # pseudo-counts pulling each profile cell towards the flat level
SMOOTH = np.array([0.25, 0.5, 0.25])  # neighbouring hours of the day share their counts
SMOOTH_GAIN = 1 / float((SMOOTH**2).sum())  # effective counts per smoothed count (the smoothing averages noise)
MAX_DISPERSION = 10.0
PRIOR_PHI = 0.1  # news counts are rarely pure Poisson
PRIOR_DAYS = 7.0
PRIOR_WEIGHT = 20.0
WEEKDAY_SPREAD = 0.1  # prior variance of weekday effects: how different a weekday may plausibly be


@dataclass(frozen=True, eq=False)
class Baseline:
    """What an hour usually looks like: expected count and the spread around it (1/size of a negative binomial)."""

    level: float
    hour_factor: np.ndarray  # 24 multipliers, by hour of the local day
    weekday_factor: np.ndarray  # 7 multipliers, Monday first
    dispersion: float  # overdispersion of single hours around their day (0: Poisson)
    day_dispersion: float  # variance of a whole day's level (busy news days): shared by the hours of a day
    hour_counts: np.ndarray  # smoothed counts behind each hour-of-day cell
    weekday_var: np.ndarray  # relative variance of each weekday factor
    level_var: float  # relative variance of the level (day-to-day noise over the days seen)
    floor: float

    def expected(self, hod: np.ndarray, dow: np.ndarray) -> np.ndarray:
        return np.maximum(self.level * self.hour_factor[hod] * self.weekday_factor[dow], self.floor)

    def uncertainty(self, hod: np.ndarray, dow: np.ndarray) -> np.ndarray:
        """Relative variance of the expected count itself (how unsure the estimate is)."""
        return 1 / (SMOOTH_GAIN * self.hour_counts[hod] + PRIOR + 1) + self.level_var + self.weekday_var[dow]

    def inverse_size(self, hod: np.ndarray, dow: np.ndarray) -> np.ndarray:
        """1/k of the negative binomial predicting one hour: overdispersion and estimation error combined."""
        v = self.uncertainty(hod, dow) + self.day_dispersion
        return self.dispersion + v + self.dispersion * v


def fit_baseline(counts: np.ndarray, hod: np.ndarray, dow: np.ndarray, day: np.ndarray, *, floor: float,
                 weekly: bool = True) -> Baseline:
    """A baseline from history hours (already stripped of flagged hours): counts with their local hour,
    weekday and day number."""
    total, hours = float(counts.sum()), len(counts)
    level = total / hours if hours else 0.0
    s_h = _smooth(np.bincount(hod, weights=counts, minlength=24))
    n_h = _smooth(np.bincount(hod, minlength=24).astype(float))
    hour_factor = (s_h + PRIOR) / (level * n_h + PRIOR)
    s_w = np.bincount(dow, weights=counts, minlength=7)
    e_w = np.bincount(dow, weights=level * hour_factor[hod], minlength=7)
    raw_w = (s_w + PRIOR) / (e_w + PRIOR) if weekly else np.ones(7)
    mu = np.maximum(level * hour_factor[hod] * raw_w[dow], floor)
    hourly, daily = _dispersion(counts, mu, day)
    days_w = np.bincount((np.unique(day) - 1) % 7, minlength=7)  # day ordinals: 1 is a Monday
    noise_w = 1 / (s_w + 1) + daily / np.maximum(days_w, 1)
    shrink = WEEKDAY_SPREAD / (WEEKDAY_SPREAD + noise_w) if weekly else np.zeros(7)
    level_var = daily / max(len(np.unique(day)), 1)
    return Baseline(level, hour_factor, 1 + (raw_w - 1) * shrink, hourly, daily, s_h, noise_w * shrink, level_var, floor)


def _smooth(cells: np.ndarray) -> np.ndarray:
    return SMOOTH[0] * np.roll(cells, 1) + SMOOTH[1] * cells + SMOOTH[2] * np.roll(cells, -1)


def _dispersion(counts: np.ndarray, mu: np.ndarray, day: np.ndarray) -> tuple[float, float]:
    """Method-of-moments overdispersion of hours within their day and of whole days, shrunk to a prior.

    Model: count ~ Poisson(mu * G_day * H_hour), Var G = phi_day, Var H = phi_hour, so that
    sum((x - mu)^2 - x) ~ (phi_hour + phi_day) * sum(mu^2) over hours and
    sum((D - E)^2 - D) ~ phi_day * sum(E^2) + phi_hour * sum(mu^2) over days. On sparse counts or a
    few days of history the raw estimates are mostly noise, so each is pulled towards PRIOR_PHI with
    the weight of PRIOR_DAYS days (day level) or PRIOR_WEIGHT (hour level, in units of sum(mu^2) / 2,
    the inverse variance of the estimate under Poisson).
    """
    m2 = float((mu**2).sum())
    if m2 <= 0:
        return PRIOR_PHI, PRIOR_PHI
    both = float(((counts - mu) ** 2 - counts).sum()) / m2
    _, d = np.unique(day, return_inverse=True)
    totals, expected = np.bincount(d, weights=counts), np.bincount(d, weights=mu)
    e2 = float((expected**2).sum())
    raw_day = (float(((totals - expected) ** 2 - totals).sum()) - both * m2) / (e2 - m2) if e2 > m2 else PRIOR_PHI
    days = len(totals)
    day_phi = (days * raw_day + PRIOR_DAYS * PRIOR_PHI) / (days + PRIOR_DAYS)
    w = m2 / 2
    hour_phi = (w * (both - max(day_phi, 0.0)) + PRIOR_WEIGHT * PRIOR_PHI) / (w + PRIOR_WEIGHT)
    return min(max(hour_phi, 0.0), MAX_DISPERSION), min(max(day_phi, 0.0), MAX_DISPERSION)
