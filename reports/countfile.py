"""Hourly counts as CSV (``time,series,count``) for backtests: read, detect, write. Pure over text streams.

``time`` is an ISO 8601 hour with its offset (``2024-10-02T08:00:00+09:00``), ``series`` a name,
``count`` a whole number. Hours a series does not list count as zero. Output is one JSON line per
episode: ``{"series", "start", "end", "peak_count", "score"}``, ``end`` being the end of the last
flagged hour, both in the offset of the file's first row.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone, tzinfo
from typing import IO, Iterable

from reports.alerts import service_of
from reports.spikes import HOUR, Episode, SpikeParams, detect_spikes

HEADER = ["time", "series", "count"]
MAX_ERRORS = 10


class CountFileError(ValueError):
    """The CSV is not in the ``time,series,count`` format; ``problems`` lists (line, reason)."""

    def __init__(self, name: str, problems: list[tuple[int, str]]):
        shown = "; ".join(f"line {n}: {why}" for n, why in problems[:MAX_ERRORS])
        more = f" (and {len(problems) - MAX_ERRORS} more)" if len(problems) > MAX_ERRORS else ""
        super().__init__(f"{name}: {shown}{more}")
        self.name, self.problems = name, problems


def _row(row: list[str]) -> tuple[datetime, str, int]:
    if len(row) != 3:
        raise ValueError(f"expected 3 fields (time,series,count), got {len(row)}")
    raw_time, series, raw_count = (x.strip() for x in row)
    try:
        when = datetime.fromisoformat(raw_time)
    except ValueError:
        raise ValueError(f"time {raw_time!r} is not ISO 8601 (e.g. 2024-10-02T08:00:00+09:00)") from None
    if when.tzinfo is None:
        raise ValueError(f"time {raw_time!r} has no offset (write +09:00 or Z)")
    if when.minute or when.second or when.microsecond:
        raise ValueError(f"time {raw_time!r} is not on the hour")
    if not series:
        raise ValueError("empty series name")
    if not raw_count.isdigit():
        raise ValueError(f"count {raw_count!r} is not a whole number >= 0")
    return when, series, int(raw_count)


def read_counts(lines: Iterable[str], *, name: str = "-") -> tuple[dict[str, dict[datetime, int]], tzinfo]:
    """Series name -> hour (UTC) -> count, and the offset of the first row. Raises CountFileError listing every bad line."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != HEADER:
        raise CountFileError(name, [(1, f"the header must be {','.join(HEADER)}, got {','.join(header or [])!r}")])
    series: dict[str, dict[datetime, int]] = {}
    seen: dict[tuple[str, datetime], int] = {}
    problems, zone = [], None
    for row in reader:
        if not row or all(not x.strip() for x in row):
            continue
        try:
            when, name_, count = _row(row)
        except ValueError as exc:
            problems.append((reader.line_num, str(exc)))
            continue
        zone = zone or when.tzinfo
        hour = when.astimezone(timezone.utc)
        if (name_, hour) in seen:
            problems.append((reader.line_num, f"{name_} at {when.isoformat()} already given on line {seen[name_, hour]}"))
            continue
        seen[name_, hour] = reader.line_num
        series.setdefault(name_, {})[hour] = count
    if problems:
        raise CountFileError(name, problems)
    if not series:
        raise CountFileError(name, [(2, "no rows after the header")])
    return series, zone


def params_by_series(names: Iterable[str], params: SpikeParams, per_service: dict[str, SpikeParams]) -> dict[str, SpikeParams]:
    """A series named after a service code (``portal`` or ``trouble:portal``) takes that service's thresholds."""
    return {n: per_service[service_of(n)] for n in names if service_of(n) in per_service}


def detect_in_counts(series: dict[str, dict[datetime, int]], *, params: SpikeParams,
                     per_service: dict[str, SpikeParams] | None = None) -> list[Episode]:
    """The alert detector over the whole file: history from its first hour to the end of its last."""
    hours = [h for counts in series.values() for h in counts]
    start, now = min(hours), max(hours) + HOUR
    return detect_spikes(series, start=start, now=now, params=params,
                         params_for=params_by_series(series, params, per_service or {}))


def episode_json(ep: Episode, zone: tzinfo) -> str:
    return json.dumps({"series": ep.series, "start": ep.start.astimezone(zone).isoformat(),
                       "end": ep.stop.astimezone(zone).isoformat(), "peak_count": ep.peak_count,
                       "score": ep.score}, ensure_ascii=False)


def write_counts(series: dict[str, dict[datetime, int]], out: IO[str], *, zone: tzinfo, start: datetime,
                 end: datetime) -> int:
    """Write every hour of [start, end) for every series (zeros included). Returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    rows = 0
    for name in sorted(series):
        hour = start
        while hour < end:
            writer.writerow([hour.astimezone(zone).isoformat(), name, series[name].get(hour, 0)])
            hour += timedelta(hours=1)
            rows += 1
    return rows
