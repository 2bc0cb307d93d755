"""The operator's view: --version, empty lists that say so, `alerts check` that says what it looked at,
JSON output that parses, unknown codes refused with the valid ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from test_alerts import SPIKE_DAY, _burst, _evaluate, _history, at
from test_reports_data import add_items

from collector.jobs import save_entries
from tests.conftest import Route
from collector.sources import SourceConfig
from mynawatch import __version__, cli
from mynawatch.cli import main
from mynawatch.serving import served_version
from reports.jobs import evaluate_alerts
from store import items as store_items
from store.db import make_sessions
from store.records import Cause, Entry, Sentiment, Service


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mynawatch.toml"
    path.write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    return path


def _run(config, capsys, *args) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_printed_by_the_installed_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--version"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ}, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"mynawatch {__version__}"


@pytest.mark.parametrize("args, says", [
    (["alerts", "list"], "no alerts yet"),
    (["alerts", "outbox"], "the outbox is empty"),
    (["alerts", "deliver"], "nothing to deliver"),
    (["silence", "list"], "no silences in force"),
    (["silence", "list", "--all"], "no silences"),
    (["sources"], "no sources in the store yet"),
    (["search", "障害"], "0 item(s): nothing indexed matches '障害'"),
])
def test_every_list_says_when_it_is_empty(config, capsys, args, says):
    code, out, _ = _run(config, capsys, *args)
    assert code == 0 and says in out, out


def _served_store(config):
    """A store and the model version `alerts check` reads (the corpus model's, none being served yet)."""
    sessions = make_sessions(f"sqlite:///{config.parent / 'store.sqlite'}")
    return sessions, served_version(sessions)


def test_alerts_check_says_what_it_evaluated_and_why_nothing_fired(config, capsys, model):
    sessions, version = _served_store(config)
    add_items(sessions, _history(), model=version)  # a quiet history: nothing above its threshold
    code, out, _ = _run(config, capsys, "alerts", "check")
    summary = next(line for line in out.splitlines() if "evaluated" in line)
    assert code == 0
    assert summary.startswith(f"0 notification event(s); evaluated {len(Service)} services over the 48 hours ending ")
    assert summary.endswith(": no series above its threshold")
    assert "+09:00" in summary and str(datetime.now(timezone.utc).year) in summary


def test_alerts_check_names_what_is_firing_already(config, capsys, model, monkeypatch):
    sessions, version = _served_store(config)
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10]), model=version)
    assert evaluate_alerts(sessions, model_version=version, now=at(SPIKE_DAY, 10, 30), deliver=False)
    monkeypatch.setattr(cli, "_now", lambda: at(SPIKE_DAY, 11, 30))  # an hour later, the same episode
    code, out, _ = _run(config, capsys, "alerts", "check")
    assert code == 0
    assert "2024-09-15 11:30 +09:00: nothing new to notify: 1 firing already (notified before)" in out, out


def test_alerts_list_as_json(config, capsys):
    sessions = make_sessions(f"sqlite:///{config.parent / 'store.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10, 11]))
    _evaluate(sessions, at(SPIKE_DAY, 10, 30))
    code, out, _ = _run(config, capsys, "alerts", "list", "--format", "json")
    (alert,) = json.loads(out)
    assert code == 0 and alert["service"] == "portal" and alert["status"] == "firing"
    assert alert["started_at"].endswith("+09:00") and "マイナポータル" in alert["line"]


def _add_source_with_item(config) -> None:
    sessions = make_sessions(f"sqlite:///{config.parent / 'store.sqlite'}")
    t0 = datetime(2024, 10, 1, 23, 30, tzinfo=timezone.utc)
    with sessions.begin() as s:
        source = SourceConfig("nhk", "http://127.0.0.1/nhk", publisher="NHK")
        state = store_items.upsert_source(s, name=source.name, url=source.url, kind="feed", publisher="NHK",
                                          interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url="https://nhk.example/1", title="マイナポータルで障害",
                                                 summary="午前から繋がらない状態が続いた。", published=t0)], now=t0)


def test_sources_and_search_as_json(config, capsys):
    assert json.loads(_run(config, capsys, "sources", "--format", "json")[1]) == []
    assert json.loads(_run(config, capsys, "search", "障害", "--format", "json")[1]) == []
    _add_source_with_item(config)
    code, out, _ = _run(config, capsys, "sources", "--format", "json")
    (source,) = json.loads(out)
    assert code == 0 and source["name"] == "nhk" and source["items"] == 1 and isinstance(source["flags"], list)
    code, out, _ = _run(config, capsys, "search", "つながらない", "--format", "json")
    (hit,) = json.loads(out)
    assert code == 0 and hit["title"] == "マイナポータルで障害" and hit["snippet"] == "午前から[繋がらない]状態が続いた。"
    assert hit["published"] == "2024-10-02T08:30:00+09:00" and hit["in_title"] is False


def test_classifier_evaluate_as_json(config, capsys, model):
    code, out, _ = _run(config, capsys, "classifier", "evaluate", "--format", "json")
    doc = json.loads(out)
    assert code in (0, 1) and doc["model"] == model.version and doc["items"] > 0
    assert set(doc["headline"]) == {"relevance_f1", "services_micro_f1", "cause_macro_f1", "sentiment_macro_f1"}
    assert doc["below_floors"] == [k for k, v in doc["headline"].items() if v < doc["floors"].get(k, 0)]
    assert set(doc["evaluation"]["axes"]) >= {"relevant", "services", "cause", "sentiment"}
    assert code == (1 if doc["below_floors"] else 0)


CODES = {"service": [str(s) for s in Service], "cause": [str(c) for c in Cause],
         "sentiment": [str(s) for s in Sentiment]}


@pytest.mark.parametrize("args, kind", [
    (["silence", "add", "portl"], "service"),
    (["label", "1", "--relevant", "--service", "portl"], "service"),
    (["label", "1", "--relevant", "--service", "portal", "--cause", "lod"], "cause"),
    (["label", "1", "--sentiment", "angry"], "sentiment"),
    (["search", "障害", "--service", "portl"], "service"),
    (["review", "--service", "portl"], "service"),
])
def test_unknown_codes_are_refused_with_the_valid_ones(config, capsys, args, kind):
    _add_source_with_item(config)
    code, out, err = _run(config, capsys, *args)
    assert code == 2 and "Traceback" not in err
    assert "not a" in err and all(c in err for c in CODES[kind]), err


def test_json_output_escapes_what_a_terminal_would_act_on(config, capsys):
    sessions = make_sessions(f"sqlite:///{config.parent / 'store.sqlite'}")
    with sessions.begin() as s:
        s.connection().exec_driver_sql(
            "INSERT INTO sources (name, url, kind, interval_minutes, failure_score, status) "
            "VALUES ('evil\u202e\x1b[2J', 'http://127.0.0.1/e', 'feed', 60, 0, 'ok')")
    code, out, _ = _run(config, capsys, "sources", "--format", "json")
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and len(out.splitlines()) == 1
    assert json.loads(out)[0]["name"] == "evil\u202e\x1b[2J"


def test_logs_are_quiet_by_default_own_steps_at_v_and_libraries_at_vv(tmp_path, server):
    server.routes["/feed"] = Route(b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>')
    runs = {}
    for flags in ((), ("-v",), ("-vv",)):
        config = tmp_path / f"m{len(flags)}.toml"
        config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / f"s{len(flags)}.sqlite"}"\n'
                          '[fetch]\nhost_interval_seconds = 0\n[collect]\narticle_pages = false\n'
                          f'[[sources]]\nname = "nhk"\nurl = "{server.url("/feed")}"\npublisher = "NHK"\n',
                          encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(config), *flags, "collect"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs[flags] = done.stderr
    assert runs[()] == ""
    assert "mynawatch.pipeline: collect round: 1 source(s), 0 new item(s)" in runs[("-v",)]
    assert "alembic" not in runs[("-v",)] and "httpx" not in runs[("-v",)]
    assert "alembic" in runs[("-vv",)] and "collect round" in runs[("-vv",)]


@pytest.mark.parametrize("args", [["sources"], ["search", "障害"], ["alerts", "list"], ["alerts", "outbox"],
                                  ["silence", "list", "--all"]])
def test_every_list_command_answers_json_and_jsonl(config, capsys, args):
    assert json.loads(_run(config, capsys, *args, "--format", "json")[1]) == []
    assert _run(config, capsys, *args, "--format", "jsonl")[1] == ""  # no rows: no lines


def test_jsonl_is_one_object_per_line_and_silences_show_tokyo_time(config, capsys):
    _add_source_with_item(config)
    assert _run(config, capsys, "silence", "add", "portal", "--from", "2030-01-02T09:00", "--for", "2h")[0] == 0
    assert _run(config, capsys, "silence", "add", "card", "--from", "2030-01-03T00:00", "--for", "1h")[0] == 0
    lines = _run(config, capsys, "silence", "list", "--format", "jsonl")[1].splitlines()
    assert [json.loads(line)["service"] for line in lines] == ["portal", "card"]
    assert json.loads(lines[0])["starts_at"] == "2030-01-02T09:00:00+09:00"
    out = _run(config, capsys, "silence", "list")[1]
    assert "2030-01-02 09:00 +09:00 → 2030-01-02 11:00 +09:00" in out
    (line,) = _run(config, capsys, "sources", "--format", "jsonl")[1].splitlines()
    assert json.loads(line)["name"] == "nhk"
