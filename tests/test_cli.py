"""The command line: help everywhere, the batch tag format, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mynawatch.cli import build_parser, main

COMMANDS = ["init", "collect", "classify", "report", "run", "demo", "tag", "sources"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: mynawatch" in capsys.readouterr().out


def test_every_command_is_listed():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(COMMANDS) <= set(choices)


INPUT = [
    {"id": "a", "title": "マイナポータルがつながりにくい状態、アクセス集中で", "text": "デジタル庁によると朝から利用者が集中している。"},
    {"id": "b", "title": "日銀、マイナス金利を解除", "text": ""},
    {"id": "c", "title": "障害者雇用率、過去最高に"},
]


def _check_output(lines):
    out = [json.loads(line) for line in lines]
    assert [o["id"] for o in out] == ["a", "b", "c"]
    for o in out:
        assert set(o) == {"id", "relevant", "services", "cause", "sentiment", "scores"}
    assert out[0]["relevant"] is True and "portal" in out[0]["services"]
    assert out[1]["relevant"] is False and out[1]["services"] == [] and out[1]["cause"] == "none"
    assert out[2]["relevant"] is False


def test_tag_reads_a_file(tmp_path, model, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(o, ensure_ascii=False) for o in INPUT) + "\n", encoding="utf-8")
    assert main(["tag", str(path)]) == 0
    _check_output(capsys.readouterr().out.splitlines())


def test_tag_reads_stdin_in_a_real_process(model, model_cache):
    data = "\n".join(json.dumps(o, ensure_ascii=False) for o in INPUT) + "\n"
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "tag", "-"], input=data.encode(),
                          capture_output=True, timeout=300, env={**__import__("os").environ})
    assert proc.returncode == 0, proc.stderr.decode()
    _check_output(proc.stdout.decode().splitlines())


def test_tag_keeps_line_alignment_when_a_line_is_bad(tmp_path, model, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "title": "マイナ保険証"}\nnot json\n{"id": "c", "title": "マイナビ"}\n', encoding="utf-8")
    assert main(["tag", str(path)]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["id"] for o in out] == ["a", None, "c"] and "error" in out[1]


def test_missing_config_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["collect"]) == 2
    assert "mynawatch init" in capsys.readouterr().err


def test_demo_never_wipes_a_folder_it_did_not_make(tmp_path):
    from mynawatch.cli import main

    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.txt").write_text("draft", encoding="utf-8")
    assert main(["demo", "--out", str(precious), "--days", "1"]) != 0
    assert (precious / "chapter1.txt").read_text(encoding="utf-8") == "draft"
