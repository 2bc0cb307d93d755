"""One clock: Tokyo is spelled once (store/clock.py), and every package reads time through it."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from store.clock import day_bounds, parse_local, shown, today, tokyo

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collector", "classifier", "store", "reports", "mynawatch")


def test_tokyo_is_defined_once_in_the_packages():
    """The issue's check: grep -rn 'ZoneInfo(\\|hours=9\\|+9 hours' finds one definition."""
    pattern = re.compile(r"ZoneInfo\(|hours=9|\+9 hours")
    hits = [f"{path.relative_to(ROOT)}:{n}" for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == ["store/clock.py:13"], hits


def test_times_for_people_carry_date_and_offset():
    when = datetime(2024, 10, 1, 23, 30, tzinfo=timezone.utc)
    assert shown(when) == "2024-10-02 08:30 +09:00"
    assert tokyo(datetime(2024, 10, 2, 8, 30)).utcoffset().total_seconds() == 9 * 3600  # naive: already Tokyo
    assert today(when) == date(2024, 10, 2)


def test_a_tokyo_day_in_utc_and_typed_times():
    start, end = day_bounds(date(2024, 10, 2))
    assert (start, end) == (datetime(2024, 10, 1, 15, tzinfo=timezone.utc), datetime(2024, 10, 2, 15, tzinfo=timezone.utc))
    assert parse_local("2024-10-02T09:00") == datetime(2024, 10, 2, 0, tzinfo=timezone.utc)
    assert parse_local("2024-10-02T09:00+00:00") == datetime(2024, 10, 2, 9, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        parse_local("yesterday")
