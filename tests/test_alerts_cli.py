"""`mynawatch alerts` and `mynawatch silence` on a real store."""

from __future__ import annotations

import pytest
from test_alerts import SPIKE_DAY, _burst, _history, _evaluate, at
from test_reports_data import add_items

from mynawatch.cli import main
from store.db import make_sessions


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "mynawatch.toml"
    path.write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    return path


def test_silence_add_list_and_expire(config, capsys):
    assert main(["--config", str(config), "silence", "add", "portal", "--for", "2h", "--comment", "復旧作業中"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("silence 1: portal until ")
    assert main(["--config", str(config), "silence", "list"]) == 0
    assert "復旧作業中" in capsys.readouterr().out
    assert main(["--config", str(config), "silence", "expire", "1"]) == 0
    assert main(["--config", str(config), "silence", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["silence 1 ended",  # and the list says it is empty
                                                    "no silences in force or to come (--all for expired ones)"]
    assert main(["--config", str(config), "silence", "expire", "1"]) == 2


@pytest.mark.parametrize("args, message", [
    (["silence", "add", "portl"], "not a service code"),
    (["silence", "add", "portal", "--for", "soon"], "expected a number and m, h or d"),
    (["silence", "add", "portal", "--until", "tomorrow"], "expected a time"),
    (["silence", "add", "portal", "--from", "2030-01-02T00:00", "--until", "2030-01-01T00:00"], "end before it starts"),
])
def test_bad_silences_are_refused_clearly(config, capsys, args, message):
    assert main(["--config", str(config)] + args) == 2
    assert message in capsys.readouterr().err


def test_alerts_list_and_outbox_show_the_store(config, capsys):
    sessions = make_sessions(f"sqlite:///{config.parent / 'store.sqlite'}")
    add_items(sessions, _history() + _burst("portal", SPIKE_DAY, [9, 10, 11]))
    _evaluate(sessions, at(SPIKE_DAY, 10, 30))
    assert main(["--config", str(config), "alerts", "list"]) == 0
    assert "firing    trouble:portal@2024-09-15T00:00Z" in capsys.readouterr().out
    assert main(["--config", str(config), "alerts", "outbox"]) == 0
    out = capsys.readouterr().out
    assert "pending" in out and "webhook" in out and "マイナポータル" in out


def test_alerts_check_runs_on_an_empty_store(config, capsys, model):
    assert main(["--config", str(config), "alerts", "check"]) == 0
    assert "0 notification event(s)" in capsys.readouterr().out
