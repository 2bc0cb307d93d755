"""Settings: the init template loads, errors are clear, every setting is documented."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from collector.fetch import FetchPolicy
from collector.sources import SourceConfig
from mynawatch.cli import TEMPLATE, main
from reports.mail import SmtpSettings
from reports.spikes import SpikeParams
from mynawatch.settings import Schedule, SettingsError, load_settings

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_init_writes_a_template_that_loads_with_real_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    settings = load_settings(tmp_path / "mynawatch.toml", environ={"MYNAWATCH_SMTP_PASSWORD": "s3cret"})
    kinds = {s.kind for s in settings.sources}
    assert {"google_news", "google_trends", "yahoo", "hatena", "mastodon", "feed"} <= kinds
    assert any("nhk" in s.url for s in settings.sources)
    assert settings.smtp.password == "s3cret" and "s3cret" not in (tmp_path / "mynawatch.toml").read_text()
    assert settings.database_url == f"sqlite:///{tmp_path / 'mynawatch.sqlite'}"
    assert main(["init"]) == 2  # never overwrites silently


def test_unknown_setting_is_named_in_the_error(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[alerts]\nmin_cout = 3\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="min_cout"):
        load_settings(path)


def test_bad_source_kind_is_refused(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[[sources]]\nname = "x"\nurl = "https://example.jp/rss"\nkind = "podcast"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="podcast"):
        load_settings(path)


def _template_keys() -> set[str]:
    keys = set()
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([a-z_]+)\s*=", line)
        if m:
            keys.add(m.group(1))
    return keys


def test_every_setting_is_documented():
    documented = set(re.findall(r"`([a-z_]+)`", DOCS.read_text(encoding="utf-8")))
    every = _template_keys()
    for cls in (Schedule, FetchPolicy, SpikeParams, SmtpSettings, SourceConfig):
        every |= {f.name for f in fields(cls)} - {"password"}  # the password only ever comes from the environment
    assert every - documented == set()
