"""[alerts], [alerts.services.<code>] and [[webhooks]]: loaded, checked and documented."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from mynawatch.cli import TEMPLATE
from mynawatch.settings import SettingsError, load_settings
from reports.alerts import AlertPolicy
from reports.spikes import SpikeParams
from reports.webhook import WebhookSettings

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_every_alert_and_webhook_setting_is_documented():
    documented = set(re.findall(r"`([a-z_]+)`", DOCS.read_text(encoding="utf-8")))
    for cls in (AlertPolicy, WebhookSettings, SpikeParams):
        assert {f.name for f in fields(cls)} - documented == set(), cls.__name__


def test_the_template_holds_the_backtested_defaults():
    settings = load_settings(TEMPLATE)
    assert settings.spikes == SpikeParams() and settings.alerting == AlertPolicy()
    assert settings.webhooks == () and settings.spikes_for == ()


def test_per_service_thresholds_and_webhooks_load(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("""
[alerts]
min_score = 5.5
repeat_hours = 6
send_email = true
[alerts.services.health_insurance]
min_score = 7.0
[[webhooks]]
name = "chat"
url = "http://127.0.0.1:9094/alerts"
send_resolved = false
""", encoding="utf-8")
    s = load_settings(path)
    assert s.spikes.min_score == 5.5 and s.alerting.repeat_hours == 6 and s.alerting.send_email
    (code, params), = s.spikes_for
    assert code == "health_insurance" and params.min_score == 7.0 and params.cusum_score == s.spikes.cusum_score
    assert s.webhooks == (WebhookSettings(url="http://127.0.0.1:9094/alerts", name="chat", send_resolved=False),)


@pytest.mark.parametrize("text, message", [
    ("[alerts.services.portl]\nmin_score = 6.0\n", "portl"),
    ("[alerts.services.portal]\nmin_scor = 6.0\n", "min_scor"),
    ("[alerts]\nrepeat_hours = 0\n", "repeat_hours"),
    ("[alerts]\nweekly = \"yes\"\n", "weekly"),
    ("[[webhooks]]\nurl = \"ftp://example.jp\"\n", "http"),
    ("[[webhooks]]\nname = \"x\"\n", "url"),
])
def test_bad_alert_settings_are_named(tmp_path, text, message):
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=message):
        load_settings(path)
