"""`mynawatch spikes detect PATH`: the alert detector over a CSV of hourly counts; `spikes export` writes one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from mynawatch.cli import main
from reports.countfile import CountFileError, read_counts

JST = timezone(timedelta(hours=9))
START = datetime(2024, 9, 1, tzinfo=JST)


def _csv(tmp_path, rows: list[tuple[datetime, str, int]], name="counts.csv"):
    path = tmp_path / name
    path.write_text("time,series,count\n" + "".join(f"{t.isoformat()},{s},{n}\n" for t, s, n in rows), encoding="utf-8")
    return path


def _history(days=30, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(days * 24):
        t = START + timedelta(hours=h)
        rows.append((t, "portal", int(rng.poisson(0.4))))
        rows.append((t, "health_insurance", int(rng.poisson(1.0))))
    return rows


def test_detect_prints_one_json_line_per_episode(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mynawatch.toml here: default thresholds
    rows = [r for r in _history() if not (r[1] == "portal" and START + timedelta(days=25, hours=9) <= r[0]
                                          < START + timedelta(days=25, hours=13))]
    rows += [(START + timedelta(days=25, hours=9 + h), "portal", n) for h, n in enumerate([7, 12, 9, 6])]
    assert main(["spikes", "detect", str(_csv(tmp_path, rows))]) == 0
    lines = capsys.readouterr().out.splitlines()
    (episode,) = [json.loads(line) for line in lines]
    assert list(episode) == ["series", "start", "end", "peak_count", "score"]
    assert episode["series"] == "portal" and episode["peak_count"] == 12 and episode["score"] > 6
    assert episode["start"] == "2024-09-26T09:00:00+09:00"
    assert "2024-09-26T13:00:00+09:00" <= episode["end"] <= "2024-09-26T16:00:00+09:00"


def test_per_service_thresholds_from_the_settings_apply(tmp_path, capsys):
    spike = START + timedelta(days=29, hours=10)
    path = _csv(tmp_path, [(t, s, 9 if (s, t) == ("health_insurance", spike) else n) for t, s, n in _history()])
    config = tmp_path / "m.toml"
    config.write_text("[alerts.services.health_insurance]\nmin_score = 40.0\ncusum_score = 40.0\n", encoding="utf-8")
    assert main(["spikes", "detect", str(path)]) == 0
    assert [json.loads(x)["series"] for x in capsys.readouterr().out.splitlines()] == ["health_insurance"]
    assert main(["--config", str(config), "spikes", "detect", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_detect_reads_standard_input_in_a_real_process(tmp_path):
    data = _csv(tmp_path, _history(days=5)).read_bytes()
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "spikes", "detect", "-"], input=data,
                          capture_output=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""


@pytest.mark.parametrize("text, reason", [
    ("time,count\n", "header"),
    ("time,series,count\n2024-09-01T00:00:00,portal,1\n", "no offset"),
    ("time,series,count\n2024-09-01T00:30:00+09:00,portal,1\n", "not on the hour"),
    ("time,series,count\n2024-09-01T00:00:00+09:00,portal,-1\n", "whole number"),
    ("time,series,count\nyesterday,portal,1\n", "not ISO 8601"),
    ("time,series,count\n2024-09-01T00:00:00+09:00,portal,1\n2024-08-31T15:00:00Z,portal,2\n", "already given on line 2"),
])
def test_bad_input_is_refused_with_the_line_and_reason(text, reason, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CountFileError, match=reason):
        read_counts(text.splitlines(keepends=True), name="bad.csv")
    assert main(["spikes", "detect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and reason in err and "Traceback" not in err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["spikes", "detect", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_export_writes_the_alert_signal_that_detect_reads_back(tmp_path, capsys, model):
    from test_alerts import SPIKE_DAY, _burst, _history, at
    from test_reports_data import add_items

    from store.db import make_sessions

    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///s.sqlite"\n', encoding="utf-8")
    sessions = make_sessions(f"sqlite:///{tmp_path / 's.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10, 11]), model="human")  # a person's labels
    config = ["--config", str(tmp_path / "mynawatch.toml")]
    assert main(config + ["spikes", "export", "--since", "2024-09-01", "--until", "2024-09-15"]) == 0
    csv_text = capsys.readouterr().out
    series, _ = read_counts(csv_text.splitlines(keepends=True))
    assert set(series) == {"portal", "health_insurance"} and len(series["portal"]) == 15 * 24
    assert series["portal"][at(SPIKE_DAY, 10)] == 6
    (tmp_path / "counts.csv").write_text(csv_text, encoding="utf-8")
    assert main(config + ["spikes", "detect", str(tmp_path / "counts.csv")]) == 0
    (episode,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert episode["series"] == "portal" and episode["start"] == "2024-09-15T09:00:00+09:00"
    assert main(config + ["spikes", "export", "--since", "2024-09-15", "--until", "2024-09-15", "--signal", "publishers",
                          "--service", "portal"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "time,series,count" and "2024-09-15T10:00:00+09:00,portal,6" in rows and len(rows) == 25
