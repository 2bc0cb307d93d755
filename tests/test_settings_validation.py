"""Every settings value is checked at load: a wrong type or range is one clear line naming file, section
and key, never a traceback later. Cases are files: tests/fixtures/settings/<case>.toml with the message
it must give in <case>.expect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mynawatch.settings import SettingsError, load_settings

CASES = Path(__file__).parent / "fixtures" / "settings"


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.toml")))
def test_a_bad_value_is_refused_at_load_with_file_section_and_key(case, tmp_path):
    path = tmp_path / f"{case}.toml"
    path.write_bytes((CASES / f"{case}.toml").read_bytes())
    with pytest.raises(SettingsError) as err:
        load_settings(path, environ={})
    expected = (CASES / f"{case}.expect").read_text(encoding="utf-8").strip()
    assert str(err.value).startswith(f"{path}: "), err.value
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_good_values_of_every_type_load(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[fetch]\ntimeout_seconds = 5\nconnections = 8\n[smtp]\nport = 587\nrecipients = ["ops@example.jp"]\n'
                    '[schedule]\nreport_time = "00:05"\n[[sources]]\nname = "n"\nurl = "https://[2001:db8::1]/rss"\n',
                    encoding="utf-8")
    settings = load_settings(path, environ={"MYNAWATCH_SMTP_PASSWORD": "pw"})
    assert settings.fetch.timeout_seconds == 5.0 and settings.smtp.recipients == ("ops@example.jp",)
    assert settings.smtp.password == "pw" and settings.schedule.report_time == "00:05"


def test_a_command_given_bad_settings_prints_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[fetch]\ntimeout_seconds = "fast"\n', encoding="utf-8")
    for command in (["sources"], ["collect", "--once"], ["alerts", "check"], ["report", "--date", "2024-10-02"]):
        done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(path), *command],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, command
        assert "Traceback" not in done.stderr, done.stderr
        assert "[fetch] timeout_seconds: 'fast' is not valid here: expected a number" in done.stderr


def test_a_relative_store_path_under_a_folder_with_url_characters_opens_that_file(tmp_path):
    folder = tmp_path / "we?ird #dir%41"
    folder.mkdir()
    (folder / "m.toml").write_text('[store]\nurl = "sqlite:///m.sqlite"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(folder / "m.toml"), "db", "upgrade"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder / "m.sqlite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["we?ird #dir%41"]  # nothing opened beside it
