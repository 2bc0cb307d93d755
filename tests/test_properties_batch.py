"""Properties of the batch readers over inputs hypothesis makes up (bounded: the file runs in seconds).

`tag`: whatever the bytes, every input line gets exactly one output line, in order; each output line is
strict JSON (no NaN) holding a label with the id as given, or an error naming that line; nothing a
terminal acts on is written raw. The counts CSV: whatever the lines, ``read_counts`` returns clean
series or raises CountFileError naming lines of the input, never anything else; and what
``write_counts`` writes reads back the same.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.batch import parse_line, read_lines, tag_lines
from reports.countfile import MAX_COUNT, CountFileError, read_counts, write_counts
from reports.spikes import EARLIEST, LATEST

SCALE = int(os.environ.get("MYNAWATCH_PROPERTY_SCALE", "1"))  # e.g. 50 for a long hunt; 1 in make test
FAST = settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40 * SCALE, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff\ud800-\udfff]")
LABEL_KEYS = {"id", "relevant", "services", "cause", "sentiment", "scores"}

hostile_chars = st.sampled_from(list("\x00\x07\x1b\x7f\x85\u202e\u2066\u2028\ufeff\ud800\udfff\"\\[]{} \t\r")
                                + ["NaN", "Infinity", "-Infinity", "1e999", "\\ud800", "\\u0000", "\xff"])
hostile_text = st.lists(st.one_of(st.text(max_size=6), hostile_chars), max_size=12).map("".join)
ids = st.one_of(st.text(max_size=10), hostile_text, st.integers(), st.floats(), st.booleans(), st.none(),
                st.lists(st.integers(), max_size=2))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates as bytes that are not UTF-8


def _object_line(id_, title, text, keep_id: bool) -> bytes:
    obj = {"title": title, "text": text} | ({"id": id_} if keep_id else {})
    try:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):
        return b"{}"


object_lines = st.builds(_object_line, ids, hostile_text, hostile_text, st.booleans())
raw_lines = st.one_of(st.binary(max_size=40), hostile_text.map(_encode), st.just(b""), st.just(b"[" * 300),
                      st.just(b'{"id": NaN, "title": "x"}'), st.just(b'{"id": 1e999, "title": "x"}'))
input_lines = st.lists(st.one_of(object_lines, raw_lines), min_size=1, max_size=12)


def _no_constants(name):
    raise AssertionError(f"{name} in the output")


def _good_id(value) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    return isinstance(value, (str, int)) or (isinstance(value, float) and math.isfinite(value))


def _split(data: bytes) -> list[bytes]:
    """Lines as the reader counts them: split at LF, a last line without one still a line."""
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


@FAST
@given(st.lists(st.one_of(object_lines, raw_lines), max_size=20), st.sampled_from([b"\n", b"\r\n"]),
       st.booleans(), st.integers(min_value=8, max_value=64))
def test_the_line_reader_keeps_every_line_in_order(lines, end, final_newline, limit):
    lines = [line.replace(b"\n", b" ") for line in lines]
    data = end.join(lines) + (end if final_newline and lines else b"")
    read = list(read_lines(io.BytesIO(data), limit=limit))
    expected = _split(data)
    assert [n for n, _ in read] == list(range(1, len(expected) + 1))
    for (n, raw), line in zip(read, expected):
        if len(line) > limit:
            assert raw is None or (len(line) == limit + 1 and line.endswith(b"\r"))
        else:
            assert raw == line.removesuffix(b"\r")


@FAST
@given(st.one_of(object_lines, raw_lines), st.integers(min_value=1, max_value=10**6))
def test_a_line_parses_to_an_item_or_a_refusal_naming_it(raw, number):
    try:
        id_, title, text = parse_line(number, raw)
    except ValueError as exc:
        assert str(exc).startswith(f"line {number}: ")
        return
    assert _good_id(id_) or id_ == str(number)
    assert not RAW.search(title.replace("\t", "").replace("\n", "")) and not RAW.search(text.replace("\t", "").replace("\n", ""))


@SLOW
@given(input_lines, st.booleans())
def test_tag_answers_every_line_once_in_order(model, lines, final_newline):
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"\n" if final_newline else b"")
    out = io.StringIO()
    result = tag_lines(model, io.BytesIO(data), out, chunk=5)
    written = out.getvalue()
    assert not RAW.search(written.replace("\n", ""))
    answers = [json.loads(line, parse_constant=_no_constants) for line in written.splitlines()]
    assert len(answers) == len(_split(data)) == result.tagged + result.refused
    for n, (answer, line) in enumerate(zip(answers, _split(data)), 1):
        if "error" in answer:
            assert answer["line"] == n and answer["error"].startswith(f"line {n}: ")
            continue
        assert set(answer) == LABEL_KEYS
        given_id = json.loads(line.decode("utf-8").removeprefix("\ufeff")).get("id", str(n))
        assert answer["id"] == given_id and _good_id(answer["id"])
    assert [n for n, a in enumerate(answers, 1) if "error" in a][:len(result.bad_lines)] == result.bad_lines


# The counts CSV

offsets = st.integers(min_value=-14, max_value=14).map(lambda h: timezone(timedelta(hours=h)))
hours = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2020, 3, 1)).map(
    lambda d: d.replace(minute=0, second=0, microsecond=0))
edge_times = st.sampled_from(["0001-01-01T00:00:00+09:00", "9999-12-31T23:00:00-14:00", "0002-01-01T00:00:00Z",
                              "9998-12-31T23:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00+05:30",
                              "2024-01-01T00:00:00", "2024-01-01T24:00:00Z", "\ufeff2024-01-01T00:00:00Z", ""])
counts = st.one_of(st.integers(min_value=0, max_value=50).map(str), st.sampled_from(
    ["-1", "1.0", "1e3", "9" * 400, "١٢", "２", " 3 ", "", "0x10", str(MAX_COUNT), str(MAX_COUNT + 1), "NaN"]))
names = st.one_of(st.sampled_from(["portal", "trouble:card", "health_insurance"]), hostile_text)
good_rows = st.builds(lambda h, z, s, c: f"{h.replace(tzinfo=timezone.utc).astimezone(z).isoformat()},{s},{c}",
                      hours, offsets, st.sampled_from(["portal", "card"]), st.integers(min_value=0, max_value=30))
bad_rows = st.builds(lambda t, s, c: f"{t},{s},{c}", st.one_of(edge_times, hostile_text), names, counts)
csv_lines = st.lists(st.one_of(good_rows, bad_rows, hostile_text), max_size=15)


@FAST
@given(csv_lines, st.booleans(), st.booleans())
def test_read_counts_returns_clean_series_or_names_input_lines(rows, bom, as_bytes):
    text = ("\ufeff" if bom else "") + "time,series,count\n" + "".join(r.replace("\n", " ") + "\n" for r in rows)
    lines = [_encode(line) for line in text.splitlines(keepends=True)] if as_bytes else \
        text.splitlines(keepends=True)
    total = len(text.splitlines())
    try:
        series, zone = read_counts(lines, name="prop.csv")
    except CountFileError as exc:
        assert exc.problems and all(1 <= n <= max(total, 2) for n, _ in exc.problems), exc.problems
        assert "Traceback" not in str(exc) and "\x1b" not in str(exc) and "\u202e" not in str(exc)
        return
    assert zone.utcoffset(None) is not None
    for name, by_hour in series.items():
        assert name and not RAW.search(name)
        for hour, count in by_hour.items():
            assert hour.tzinfo == timezone.utc and hour.minute == hour.second == 0
            assert EARLIEST <= hour <= LATEST and 0 <= count <= MAX_COUNT


@FAST
@given(st.dictionaries(st.sampled_from(["portal", "trouble:card", "マイナ"]),
                       st.dictionaries(st.integers(min_value=0, max_value=47), st.integers(0, 10**6), max_size=6),
                       min_size=1, max_size=3), offsets)
def test_written_counts_read_back_the_same(data, zone):
    start = datetime(2024, 9, 1, tzinfo=timezone.utc)
    series = {name: {start + timedelta(hours=h): n for h, n in by_hour.items()} for name, by_hour in data.items()}
    out = io.StringIO()
    write_counts(series, out, zone=zone, start=start, end=start + timedelta(hours=48))
    read, read_zone = read_counts(io.BytesIO(out.getvalue().encode()), name="round-trip")
    assert read_zone.utcoffset(None) == zone.utcoffset(None)
    for name in series:
        assert {h: n for h, n in read[name].items() if n} == {h: n for h, n in series[name].items() if n}
