"""Hourly counts as CSV (``time,series,count``) for backtests: read, detect, write. Pure over text streams.

``time`` is an ISO 8601 hour with its offset (``2024-10-02T08:00:00+09:00``), ``series`` a name,
``count`` a whole number. Hours a series does not list count as zero. Output is one JSON line per
episode: ``{"series", "start", "end", "peak_count", "score"}``, ``end`` being the end of the last
flagged hour, both in the offset of the file's first row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import IO, BinaryIO, Iterable, Iterator

from reports.alerts import service_of
from reports.spikes import EARLIEST, HOUR, LATEST, Episode, SpikeParams, detect_spikes
from store.clean import clean_text, one_line

HEADER = ["time", "series", "count"]
MAX_ERRORS = 10  # shown in the message
MAX_PROBLEMS = 1000  # kept; beyond, only counted
MAX_COUNT = 10**9  # per series and hour: far above anything news or posts produce
MAX_SERIES_NAME = 200
MAX_FIELD = 1000  # characters in one CSV field
MAX_LINE_BYTES = 64 * 1024
MAX_SPAN = timedelta(days=5 * 366)  # first to last hour of the file
MAX_CELLS = 2_000_000  # series x hours one run scans (about 230 series over a year; a few seconds per 100,000)
_COUNT = re.compile(r"[0-9]{1,12}")
_BOM = "\ufeff"


class CountFileError(ValueError):
    """The CSV is not in the ``time,series,count`` format; ``problems`` lists (line, reason)."""

    def __init__(self, name: str, problems: list[tuple[int, str]], *, more: int = 0):
        shown = "; ".join(f"line {n}: {why}" for n, why in problems[:MAX_ERRORS])
        hidden = len(problems) - MAX_ERRORS + more
        super().__init__(f"{one_line(name)}: {shown}" + (f" (and {hidden} more)" if hidden > 0 else ""))
        self.name, self.problems = name, problems


def _shown(value: str) -> str:
    """A field as quoted in an error message: escaped (no control or bidi characters reach the terminal), short."""
    return repr(value if len(value) <= 60 else value[:60] + "…")


def _time(raw: str) -> datetime:
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"time {_shown(raw)} is not ISO 8601 (e.g. 2024-10-02T08:00:00+09:00)") from None
    if when.tzinfo is None:
        raise ValueError(f"time {_shown(raw)} has no offset (write +09:00 or Z)")
    if when.minute or when.second or when.microsecond:
        raise ValueError(f"time {_shown(raw)} is not on the hour")
    try:
        utc = when.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(f"time {_shown(raw)} is outside the years {EARLIEST.year} to {LATEST.year} (UTC)")
    if utc.minute or utc.second:
        raise ValueError(f"time {_shown(raw)}: the offset must be whole hours (the detector works on UTC hours)")
    return when


def _row(row: list[str]) -> tuple[datetime, str, int]:
    if len(row) != 3:
        raise ValueError(f"expected 3 fields (time,series,count), got {len(row)}")
    if any(len(x) > MAX_FIELD for x in row):
        raise ValueError(f"a field longer than {MAX_FIELD} characters")
    raw_time, series, raw_count = (x.strip() for x in row)
    when = _time(raw_time)
    if not series:
        raise ValueError("empty series name")
    if clean_text(series, keep_newlines=False) != series or len(series) > MAX_SERIES_NAME:
        raise ValueError(f"series {_shown(series)}: control characters, line breaks or more than "
                         f"{MAX_SERIES_NAME} characters")
    if not _COUNT.fullmatch(raw_count) or int(raw_count) > MAX_COUNT:
        raise ValueError(f"count {_shown(raw_count)} is not a whole number from 0 to {MAX_COUNT:,}")
    return when, series, int(raw_count)


def binary_lines(stream: BinaryIO, *, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of a binary stream, each read with a bounded buffer; None stands for a line longer than ``limit``."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(limit)
            yield None
        else:
            yield line


def _decoded(lines: Iterable[str | bytes | None], problems: list[tuple[int, str]]) -> Iterator[str]:
    """Text lines; a line of bytes that is not UTF-8 (or None, too long) becomes an empty line and a problem."""
    for number, line in enumerate(lines, 1):
        if line is None:
            problems.append((number, f"longer than {MAX_LINE_BYTES} bytes"))
            line = "\n"
        elif isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append((number, f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"))
                line = "\n"
        yield line.removeprefix(_BOM) if number == 1 else line


def read_counts(lines: Iterable[str | bytes] | BinaryIO, *, name: str = "-") -> tuple[dict[str, dict[datetime, int]], tzinfo]:
    """Series name -> hour (UTC) -> count, and the offset of the first row. Lines may be text or bytes (UTF-8,
    decoded line by line; a byte-order mark is skipped). Raises CountFileError listing every bad line."""
    problems: list[tuple[int, str]] = []
    if hasattr(lines, "readline") and not isinstance(lines, io.TextIOBase):
        lines = binary_lines(lines)
    reader = csv.reader(_decoded(lines, problems))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise CountFileError(name, [(1, f"not CSV ({exc})")]) from None
    if header is None or [h.strip().lower() for h in header] != HEADER:
        got = _shown(",".join(header or [])[:200])
        raise CountFileError(name, problems[:1] or [(1, f"the header must be {','.join(HEADER)}, got {got}")])
    series: dict[str, dict[datetime, int]] = {}
    seen: dict[tuple[str, datetime], int] = {}
    zone, more, span = None, 0, None

    def problem(line: int, why: str) -> None:
        nonlocal more
        if len(problems) < MAX_PROBLEMS:
            problems.append((line, why))
        else:
            more += 1

    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problem(reader.line_num, f"not CSV ({exc})")
            continue
        if not row or all(not x.strip() for x in row):
            continue
        try:
            when, name_, count = _row(row)
        except ValueError as exc:
            problem(reader.line_num, str(exc))
            continue
        zone = zone or when.tzinfo
        hour = when.astimezone(timezone.utc)
        if (name_, hour) in seen:
            problem(reader.line_num, f"{_shown(name_)} at {when.isoformat()} already given on line {seen[name_, hour]}")
            continue
        span = span.including(hour, reader.line_num) if span else _Span(hour, reader.line_num, hour, reader.line_num)
        if span.last - span.first > MAX_SPAN:
            problem(reader.line_num, f"the file would span more than {MAX_SPAN.days} days (from line "
                                     f"{span.first_line} to line {span.last_line}); split it")
            break
        seen[name_, hour] = reader.line_num
        series.setdefault(name_, {})[hour] = count
    if problems or more:
        raise CountFileError(name, sorted(problems), more=more)
    if not series:
        raise CountFileError(name, [(2, "no rows after the header")])
    hours = (span.last - span.first) // HOUR + 1
    if len(series) * hours > MAX_CELLS:
        raise CountFileError(name, [(span.last_line, f"{len(series)} series over {hours} hours is more than the "
                                                     f"{MAX_CELLS:,} series-hours one run scans; split it")])
    return series, zone


@dataclass(frozen=True)
class _Span:
    """The first and last hour of the file so far, and the lines that gave them."""

    first: datetime
    first_line: int
    last: datetime
    last_line: int

    def including(self, hour: datetime, line: int) -> _Span:
        if hour < self.first:
            return replace(self, first=hour, first_line=line)
        if hour > self.last:
            return replace(self, last=hour, last_line=line)
        return self


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
