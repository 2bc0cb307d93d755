"""Batch commands keep every line: `mynawatch tag` answers each input line with one output line in order
(an error object naming the line for a bad one), and `mynawatch spikes detect` names the line of every
bad value, in real processes, never with a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from classifier.batch import MAX_LINE_BYTES
from mynawatch.cli import main

LABEL_KEYS = {"id", "relevant", "services", "cause", "sentiment", "scores"}
GOOD = json.dumps({"id": "g", "title": "マイナポータルがつながりにくい", "text": "アクセス集中"}, ensure_ascii=False).encode()


def _run(args: list[str], data: bytes, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mynawatch.cli", *args], input=data, capture_output=True,
                          timeout=timeout, cwd=cwd, env={**os.environ})


def _strict(line: str):
    """JSON as the standard has it: NaN and Infinity are not numbers."""
    def refuse(name):
        raise ValueError(f"{name} in the output")
    return json.loads(line, parse_constant=refuse)


def _tag(data: bytes) -> tuple[int, list[dict], str]:
    proc = _run(["tag", "-"], data)
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    out = proc.stdout.decode("utf-8")  # strict: the output is always UTF-8
    assert "\x1b" not in out and "\u202e" not in out
    return proc.returncode, [_strict(line) for line in out.splitlines()], err


def test_a_non_utf8_line_after_300_good_ones_costs_only_that_line(model):
    lines = [json.dumps({"id": n, "title": f"マイナ保険証 {n}"}, ensure_ascii=False).encode() for n in range(300)]
    lines += [b'{"id": "bad", "title": "\xff\xfe\x80"}'] + [GOOD] * 5
    code, out, err = _tag(b"\n".join(lines) + b"\n")
    assert code == 1 and len(out) == 306
    assert [o["id"] for o in out[:300]] == list(range(300)) and all(LABEL_KEYS <= set(o) for o in out[:300])
    assert out[300]["line"] == 301 and "line 301" in out[300]["error"] and "UTF-8" in out[300]["error"]
    assert all(set(o) == LABEL_KEYS and o["id"] == "g" for o in out[301:])
    assert "line 301" in err and "1 of 306" in err


def test_blank_lines_get_an_error_each_so_nothing_shifts(model):
    code, out, err = _tag(GOOD + b"\n\n   \n" + GOOD.replace(b'"g"', b'"h"') + b"\r\n\n")
    assert code == 1 and len(out) == 5
    assert [o.get("line") for o in out] == [None, 2, 3, None, 5]
    assert out[0]["id"] == "g" and out[3]["id"] == "h"
    assert "blank" in out[1]["error"] and "lines 2, 3, 5" in err


def test_ids_are_echoed_as_given_and_non_numbers_refused(model):
    ids = ["a", 7, -1.5, 10**30, "", "\ud800", "\u202eevil\x1b[2J"]
    good = [json.dumps({"id": i, "title": "マイナンバーカード"}).encode() for i in ids]
    bad = [b'{"id": NaN, "title": "x"}', b'{"id": Infinity, "title": "x"}', b'{"id": -Infinity, "title": "x"}',
           b'{"id": 1e999, "title": "x"}', b'{"id": true, "title": "x"}', b'{"id": null, "title": "x"}',
           b'{"id": [1], "title": "x"}', b'{"id": {"a": 1}, "title": "x"}', b'{"id": "ok", "title": 5}',
           b'{"id": "ok2"}', b"[1, 2]", b'"just a string"', b"{not json"]
    code, out, err = _tag(b"\n".join(good + bad) + b"\n")
    assert code == 1 and len(out) == len(good) + len(bad)
    assert [o["id"] for o in out[:len(ids)]] == ids
    assert all(set(o) == LABEL_KEYS for o in out[:len(ids)])
    for n, o in enumerate(out[len(ids):], len(ids) + 1):
        assert o["line"] == n and f"line {n}" in o["error"], o
    assert out[-5]["id"] == "ok" and out[-4]["id"] == "ok2"  # the id is still given back where it was readable


def test_deep_nesting_and_oversized_lines_are_refused_for_that_line_only(model):
    deep = b"[" * 200_000
    deep_object = b'{"id": "d", "title": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    huge = json.dumps({"id": "huge", "title": "マ" * (MAX_LINE_BYTES // 3 + 10)}, ensure_ascii=False).encode()
    code, out, err = _tag(b"\n".join([GOOD, deep, deep_object, huge, GOOD]))  # no newline at the end either
    assert code == 1 and len(out) == 5
    assert "nested" in out[1]["error"] and out[1]["line"] == 2
    assert out[2]["line"] == 3
    assert "longer than" in out[3]["error"] and out[3]["line"] == 4
    assert out[0]["id"] == out[4]["id"] == "g" and set(out[4]) == LABEL_KEYS


def test_a_byte_order_mark_and_crlf_are_read(model):
    code, out, err = _tag(b"\xef\xbb\xbf" + GOOD + b"\r\n" + GOOD + b"\r\n")
    assert code == 0 and [o["id"] for o in out] == ["g", "g"], err


def test_a_file_path_reads_the_same_way(model, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD + b"\n\xff\n" + GOOD + b"\n")
    proc = _run(["tag", str(path)], b"")
    assert proc.returncode == 1 and len(proc.stdout.splitlines()) == 3
    assert b"Traceback" not in proc.stderr and b"line 2" in proc.stderr


# spikes detect: a CSV of hourly counts

HEAD = "time,series,count\n"
OK_ROWS = "".join(f"2024-09-01T{h:02d}:00:00+09:00,portal,{h % 3}\n" for h in range(24))


@pytest.mark.parametrize("body, line, reason", [
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal," + "9" * 400 + "\n", 26, "whole number"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal," + "9" * 5000 + "\n", 26, "longer than 1000"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal,-3\n", 26, "whole number"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal,2.5\n", 26, "whole number"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal,１２\n", 26, "whole number"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal,٣\n", 26, "whole number"),
    (OK_ROWS + "0001-01-01T00:00:00+09:00,portal,1\n", 26, "outside the years"),
    (OK_ROWS + "0001-01-01T00:00:00-09:00,portal,1\n", 26, "outside the years"),
    (OK_ROWS + "9999-12-31T23:00:00+00:00,portal,1\n", 26, "outside the years"),
    (OK_ROWS + "9999-12-31T23:00:00-09:00,portal,1\n", 26, "outside the years"),
    (OK_ROWS + "2024-02-30T00:00:00+09:00,portal,1\n", 26, "not ISO 8601"),
    (OK_ROWS + "2024-09-02T25:00:00+09:00,portal,1\n", 26, "not ISO 8601"),
    (OK_ROWS + "2024-09-02T00:00:00+05:30,portal,1\n", 26, "whole hours"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00:30,portal,1\n", 26, "whole hours"),
    (OK_ROWS + "2024-09-02T00:00:00+25:00,portal,1\n", 26, "not ISO 8601"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,\x1b[2Jportal,1\n", 26, "control characters"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,portal,1,extra\n", 26, "3 fields"),
    (OK_ROWS + "2024-09-02T00:00:00+09:00,\"" + "x" * 200_000 + "\",1\n", 26, "longer than"),
    ("1990-01-01T00:00:00Z,portal,1\n" + OK_ROWS, 3, "would span more than"),
])
def test_spikes_detect_names_the_line_of_every_bad_value(tmp_path, monkeypatch, capsys, body, line, reason):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "counts.csv"
    path.write_text(HEAD + body, encoding="utf-8")
    assert main(["spikes", "detect", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"line {line}:" in err and reason in err, err
    assert "\x1b" not in err


def test_spikes_detect_reads_a_bom_and_names_a_non_utf8_line_on_standard_input(tmp_path):
    proc = _run(["spikes", "detect", "-"], b"\xef\xbb\xbf" + (HEAD + OK_ROWS).encode(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    proc = _run(["spikes", "detect", "-"], (HEAD + OK_ROWS).encode() + b"2024-09-02T00:00:00+09:00,p\xff,1\n",
                cwd=tmp_path, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "line 26: not UTF-8" in err and "Traceback" not in err


def test_spikes_detect_at_the_last_supported_hours_runs(tmp_path):
    rows = "".join(f"9998-12-31T{h:02d}:00:00Z,portal,{h % 2}\n" for h in range(24))
    rows += "".join(f"0002-01-01T{h:02d}:00:00+09:00,early,1\n" for h in range(9, 12))
    for body in (rows.split("0002")[0], "0002" + rows.split("0002", 1)[1]):
        path = tmp_path / "edge.csv"
        path.write_text(HEAD + body, encoding="utf-8")
        proc = _run(["spikes", "detect", str(path)], b"", cwd=tmp_path, timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr.decode(), proc.stderr.decode()


def test_tag_into_a_closed_pipe_ends_quietly(model, tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_bytes((GOOD + b"\n") * 3000)
    proc = subprocess.run(f'"{sys.executable}" -m mynawatch.cli tag "{path}" | head -n 1', shell=True,
                          capture_output=True, timeout=300, env={**os.environ})
    assert len(proc.stdout.splitlines()) == 1 and b"Traceback" not in proc.stderr, proc.stderr.decode()
