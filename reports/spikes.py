"""Spike detection on sparse, overdispersed hourly counts. Pure: counts and ``now`` in, episodes out.

Hour by hour, each series is compared with its seasonal baseline (``reports/baseline.py``: hour of
the Tokyo day and weekday, from the last ``baseline_days`` of history without flagged hours,
re-estimated at each Tokyo midnight) through a negative binomial whose spread covers both the
series' overdispersion and the uncertainty of the baseline itself. Two tests start an episode:

- **tail**: the hour's count is at least ``min_count`` and ``-log10 P(X >= count)`` reaches
  ``min_score``;
- **cumulative**: a CUSUM of the log-likelihood ratio "rate x 4" against the baseline marks where
  the current rise began; among the windows of two to 24 hours that end at this hour and start
  inside the rise, the best tail score of the window's total (at least ``min_count``) reaches
  ``cusum_score``. This catches sustained moderate rises no single hour shows.

An episode opened by the cumulative test starts at the first rising hour of the window that tipped
it. An open episode continues through hours that are above their expected count with a score (of the
hour, or of the last three hours together) of at least ``keep_score`` (hysteresis), and ends after
``resolve_after_hours`` hours in a row without one. Nothing starts before ``warmup_hours`` of history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone

import numpy as np

from reports.baseline import fit_baseline
from store.clock import TOKYO

HOUR = timedelta(hours=1)
MAX_SCORE = 50.0
KEEP_WINDOW = 3  # hours an open episode's keep test may pool
MAX_WINDOW = 24  # longest window the cumulative test scores
CUSUM_RATIO = 4.0  # the rise the CUSUM looks for; it only decides where a rise began (the backtest is insensitive to it)
# The hours the detector works on: far enough from the ends of the calendar (datetime stops at the years
# 1 and 9999) that every hour, the hour after it and its Tokyo day exist. Counts files are checked against it.
EARLIEST = datetime(2, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9998, 12, 31, 23, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SpikeParams:
    min_count: int = 3
    min_score: float = 6.0
    cusum_score: float = 6.0
    keep_score: float = 2.0
    baseline_days: int = 28
    weekly: bool = True
    floor_rate: float = 0.05
    warmup_hours: int = 72
    resolve_after_hours: int = 3

    def __post_init__(self):
        for f in fields(self):
            value, (kind, name) = getattr(self, f.name), _KINDS[f.type]
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
                raise ValueError(f"{f.name} = {value!r}: expected {name}")
        checks = {"min_count": self.min_count >= 1, "min_score": self.min_score > 0, "cusum_score": self.cusum_score > 0,
                  "keep_score": 0 <= self.keep_score <= self.min_score, "baseline_days": self.baseline_days >= 1,
                  "floor_rate": self.floor_rate > 0, "warmup_hours": self.warmup_hours >= 0,
                  "resolve_after_hours": self.resolve_after_hours >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"out of range: {', '.join(f'{n} = {getattr(self, n)!r}' for n in bad)}")


_KINDS = {"int": (int, "a whole number"), "float": ((int, float), "a number"), "bool": (bool, "true or false")}


@dataclass(frozen=True)
class HourFlag:
    """One hour inside an episode."""

    hour: datetime
    count: int
    expected: float
    score: float
    fire: bool  # strong enough on its own to start an episode


@dataclass(frozen=True)
class Episode:
    """A detected spike: the flagged hours of one series, no more than ``resolve_after_hours`` apart."""

    series: str
    hours: tuple[HourFlag, ...]
    ended: bool = False  # resolve_after_hours quiet hours have followed it before ``now``

    @property
    def start(self) -> datetime:
        return self.hours[0].hour

    @property
    def end(self) -> datetime:
        """The start of the last flagged hour."""
        return self.hours[-1].hour

    @property
    def stop(self) -> datetime:
        """The end of the last flagged hour (exclusive end of the episode)."""
        return self.hours[-1].hour + HOUR

    @property
    def fired(self) -> datetime:
        """The first hour that passed a test on its own (detection time is the end of that hour)."""
        return next(h.hour for h in self.hours if h.fire)

    @property
    def peak_count(self) -> int:
        return max(h.count for h in self.hours)

    @property
    def score(self) -> float:
        return round(max(h.score for h in self.hours), 2)


def floor_hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def tail_score(count: float, mean: float, inverse_size: float = 0.0) -> float:
    """-log10 P(X >= count) for X negative binomial (mean, 1/size); Poisson when inverse_size is 0."""
    if count <= 0:
        return 0.0
    # here, not at the top: scipy.special takes a quarter of a second to import, and every command loads
    # this module through the settings, most of them (and every bad-input error) without scoring anything
    from scipy.special import betainc, gammainc

    if inverse_size < 1e-9:
        p = float(gammainc(count, mean))
    else:
        size = 1 / inverse_size
        p = float(betainc(count, size, mean / (size + mean)))
    return MAX_SCORE if p <= 10**-MAX_SCORE else min(MAX_SCORE, -math.log10(p))


def _tail_scores(counts: np.ndarray, mean: np.ndarray, inv: np.ndarray) -> np.ndarray:
    from scipy.special import betainc  # see tail_score

    size = 1 / inv
    p = np.where(counts > 0, betainc(np.maximum(counts, 1), size, mean / (size + mean)), 1.0)
    return np.minimum(-np.log10(np.maximum(p, 10**-MAX_SCORE)), MAX_SCORE)


def _llr(count: int, mu: float, inv: float, rho: float) -> float:
    """Log-likelihood ratio of rate rho*mu against mu for one negative binomial count (size 1/inv)."""
    k = 1 / inv
    return count * math.log(rho * (k + mu) / (k + rho * mu)) + k * math.log((k + mu) / (k + rho * mu))


def hour_grid(start: datetime, now: datetime) -> list[datetime]:
    """Hour starts from ``start``'s hour up to the hour holding ``now`` (a partial last hour is included)."""
    hours, hour = [], floor_hour(start)
    while hour < now:
        hours.append(hour)
        hour += HOUR
    return hours


@dataclass
class _Run:
    """The CUSUM of "rate x CUSUM_RATIO" against the baseline, and where the current rise began."""

    cusum: float = 0.0
    start: int = 0

    def step(self, t: int, count: int, mu: float, inv: float, rho: float) -> None:
        if self.cusum <= 0:
            self.start = t
        self.cusum = max(0.0, self.cusum + _llr(count, mu, inv, rho))

    def reset(self) -> None:
        self.cusum = 0.0


@dataclass
class _Builder:
    """Groups flagged hours into episodes with the quiet-hours rule."""

    series: str
    quiet_limit: int
    episodes: list[Episode] = field(default_factory=list)
    current: list[HourFlag] = field(default_factory=list)
    quiet: int = 0

    @property
    def open(self) -> bool:
        return bool(self.current)

    def add(self, flag: HourFlag) -> None:
        self.current.append(flag)
        self.quiet = 0

    def pass_quiet_hour(self) -> bool:
        """Count a quiet hour; True when that closes the open episode."""
        self.quiet += 1
        if self.quiet >= self.quiet_limit:
            self.episodes.append(Episode(self.series, tuple(self.current), ended=True))
            self.current = []
            return True
        return False

    def finish(self) -> list[Episode]:
        if self.current:
            self.episodes.append(Episode(self.series, tuple(self.current), ended=False))
        return self.episodes


@dataclass
class _Frame:
    """One series on the hour grid, with each hour's baseline filled in day by day."""

    hours: list[datetime]
    x: np.ndarray
    hod: np.ndarray
    dow: np.ndarray
    mu: np.ndarray
    inv: np.ndarray
    day: np.ndarray
    phi: np.ndarray
    v: np.ndarray
    flagged: np.ndarray
    mu0: np.ndarray  # the baseline's expected count, before the day's own level is taken into account
    dphi: np.ndarray  # the baseline's day-level dispersion

    @classmethod
    def build(cls, counts: dict[datetime, int], start: datetime, now: datetime) -> _Frame:
        hours = hour_grid(start, now)
        local = [h.astimezone(TOKYO) for h in hours]
        n = len(hours)
        return cls(hours=hours, x=np.array([counts.get(h, 0) for h in hours], dtype=float),
                   hod=np.array([t.hour for t in local], dtype=int), dow=np.array([t.weekday() for t in local], dtype=int),
                   day=np.array([t.toordinal() for t in local], dtype=int), mu=np.zeros(n), inv=np.ones(n),
                   phi=np.zeros(n), v=np.zeros(n), flagged=np.zeros(n, dtype=bool), mu0=np.zeros(n), dphi=np.zeros(n))

    def days(self) -> list[tuple[int, int]]:
        """Index ranges of the local (Tokyo) days."""
        cuts = [0] + [i for i in range(1, len(self.hours)) if self.hod[i] == 0] + [len(self.hours)]
        return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]

    def fit(self, lo: int, hi: int, params: SpikeParams) -> None:
        """Baseline for hours [lo, hi) from the unflagged hours of the preceding baseline_days."""
        past = slice(max(0, lo - params.baseline_days * 24), lo)
        keep = ~self.flagged[past]
        base = fit_baseline(self.x[past][keep], self.hod[past][keep], self.dow[past][keep], self.day[past][keep],
                            floor=params.floor_rate, weekly=params.weekly)
        h, w = self.hod[lo:hi], self.dow[lo:hi]
        self.mu[lo:hi], self.inv[lo:hi] = base.expected(h, w), base.inverse_size(h, w)
        self.phi[lo:hi], self.v[lo:hi] = base.dispersion, base.uncertainty(h, w) + base.day_dispersion
        self.mu0[lo:hi], self.dphi[lo:hi] = self.mu[lo:hi], base.day_dispersion

    def adapt(self, t: int, lo: int, since: int) -> None:
        """Hour t's expected count and spread given the level its day has shown so far: the day's
        unflagged hours before ``since`` (where a current rise began), against the gamma prior of a
        day's level that the baseline's day dispersion describes. A busy news day then raises the
        afternoon's expectation instead of alerting; at the start of a day nothing changes."""
        if self.dphi[t] <= 1e-6:
            return
        keep = ~self.flagged[lo:since]
        shape = 1 / self.dphi[t]
        seen = float(self.x[lo:since][keep].sum())
        level = (shape + seen) / (shape + float(self.mu0[lo:since][keep].sum()))
        v = self.v[t] - self.dphi[t] + 1 / (shape + seen)
        self.mu[t], self.v[t] = max(self.mu0[t] * level, 1e-9), v
        self.inv[t] = self.phi[t] + v + self.phi[t] * v

    def window_score(self, first: int, t: int, min_count: int, min_len: int = 1) -> tuple[float, int]:
        """Best tail score among windows ending at t and starting at or after ``first`` (at least
        min_len hours), and where that window starts."""
        if t - first + 1 < min_len:
            return 0.0, t
        x, mu = self.x[first:t + 1][::-1].cumsum(), self.mu[first:t + 1][::-1].cumsum()
        sq = (self.phi[first:t + 1] * self.mu[first:t + 1] ** 2)[::-1].cumsum()
        x, mu, sq = x[min_len - 1:], mu[min_len - 1:], sq[min_len - 1:]
        ok = np.flatnonzero(x >= min_count)
        if not len(ok):
            return 0.0, t
        scores = _tail_scores(x[ok], mu[ok], sq[ok] / mu[ok] ** 2 + self.v[t])
        best = int(np.argmax(scores))
        return float(scores[best]), t - (int(ok[best]) + min_len - 1)

    def flag(self, t: int, score: float, fire: bool) -> HourFlag:
        self.flagged[t] = True
        return HourFlag(self.hours[t], int(self.x[t]), round(float(self.mu[t]), 3), round(score, 2), fire)


def scan_series(name: str, counts: dict[datetime, int], *, start: datetime, now: datetime,
                params: SpikeParams, warm_from: datetime | None = None) -> list[Episode]:
    """Episodes of one series over [start, now). Warm-up counts from ``warm_from`` (where the history
    really begins; default ``start``)."""
    frame = _Frame.build(counts, start, now)
    warm = params.warmup_hours - max(0, int((floor_hour(start) - floor_hour(warm_from or start)) / HOUR))
    run, build = _Run(), _Builder(name, params.resolve_after_hours)
    for lo, hi in frame.days():
        frame.fit(lo, hi, params)
        for t in range(lo, hi):
            frame.adapt(t, lo, max(lo, run.start) if run.cusum > 0 else t)
            single = tail_score(float(frame.x[t]), float(frame.mu[t]), float(frame.inv[t]))
            _scan_hour(frame, t, single, params, run, build, warm)
    return build.finish()


def _scan_hour(f: _Frame, t: int, single: float, params: SpikeParams, run: _Run, build: _Builder, warm: int) -> None:
    count, mu = int(f.x[t]), float(f.mu[t])
    run.step(t, count, mu, float(f.inv[t]), CUSUM_RATIO)
    rising = count > mu
    cumulative, since = 0.0, t
    if rising and run.cusum > 0:
        cumulative, since = f.window_score(max(run.start, t - MAX_WINDOW + 1), t, params.min_count, min_len=2)
    by_tail = count >= params.min_count and single >= params.min_score
    fire = t >= warm and count > 0 and (by_tail or cumulative >= params.cusum_score)
    score = max(single, cumulative)
    if fire and not build.open and cumulative >= params.keep_score:  # the rise began where its best window starts
        for s in range(since, t):
            if f.x[s] > f.mu[s]:
                build.add(f.flag(s, cumulative, False))
    if fire or (build.open and rising and max(score, f.window_score(max(0, t - KEEP_WINDOW + 1), t, 1)[0]) >= params.keep_score):
        build.add(f.flag(t, score, fire))
    elif build.open and build.pass_quiet_hour():
        run.reset()


def detect_spikes(series: dict[str, dict[datetime, int]], *, start: datetime, now: datetime,
                  params: SpikeParams = SpikeParams(), params_for: dict[str, SpikeParams] | None = None,
                  warm_from: datetime | None = None) -> list[Episode]:
    """Episodes of every series over [start, now), ordered by start. ``params_for`` overrides per series.
    ValueError when [start, now) reaches outside ``EARLIEST`` .. ``LATEST``."""
    if start < now and (start < EARLIEST or now > LATEST + HOUR):
        raise ValueError(f"detect_spikes: {start} to {now} is not an interval between {EARLIEST} and {LATEST}")
    episodes = []
    for name, counts in sorted(series.items()):
        p = (params_for or {}).get(name, params)
        episodes += scan_series(name, counts, start=start, now=now, params=p, warm_from=warm_from)
    return sorted(episodes, key=lambda e: (e.start, e.series))
