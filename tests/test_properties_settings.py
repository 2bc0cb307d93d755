"""Property-based tests (hypothesis) of settings loading: whatever a settings file holds, loading it gives
Settings or one SettingsError line naming the file, never another exception; good values survive as typed.

Bounded for `make test`; MYNAWATCH_PROPERTY_SCALE=50 hunts longer."""

from __future__ import annotations

import os
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.fetch import FetchPolicy
from collector.policy import CollectPolicy
from mynawatch.settings import Schedule, Settings, SettingsError, load_settings
from reports.alerts import AlertPolicy
from reports.mail import SmtpSettings
from reports.spikes import SpikeParams

SCALE = int(os.environ.get("MYNAWATCH_PROPERTY_SCALE", "1"))
RUNS = settings(max_examples=120 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECTIONS = {"fetch": FetchPolicy, "collect": CollectPolicy, "schedule": Schedule, "smtp": SmtpSettings,
            "alerts": SpikeParams}
KEYS = {section: [f.name for f in fields(cls) if f.name != "password"] for section, cls in SECTIONS.items()}
KEYS["alerts"] += [f.name for f in fields(AlertPolicy)]


def _toml(value) -> str:
    """A TOML literal of a Python value (strings escaped as TOML basic strings)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    escaped = "".join(ch if ch.isprintable() and ch not in '"\\' else f"\\u{ord(ch):04x}" for ch in value)
    return f'"{escaped}"'


scalars = st.one_of(st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.one_of(scalars, st.lists(scalars, max_size=3))


@st.composite
def settings_files(draw) -> str:
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(KEYS)), unique=True, max_size=4)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(KEYS[section]), unique=True, max_size=4)):
            lines.append(f"{key} = {_toml(draw(values))}")
    return "\n".join(lines) + "\n"


@RUNS
@given(settings_files())
def test_any_settings_file_loads_or_gives_one_line_naming_the_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("settings") / "m.toml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_settings(path, environ={})
    except SettingsError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return
    assert isinstance(loaded, Settings)
    for section in ("fetch", "collect", "schedule", "smtp"):
        for f in fields(SECTIONS[section]):
            value = getattr(getattr(loaded, section), f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert value == value and value >= 0 and value not in (float("inf"),)


@RUNS
@given(st.binary(max_size=300))
def test_any_bytes_as_a_settings_file_load_or_give_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("settings") / "m.toml"
    path.write_bytes(data)
    try:
        load_settings(path, environ={})
    except SettingsError as exc:
        assert "\n" not in str(exc)
