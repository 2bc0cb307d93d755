"""The one clock: Tokyo time, the day bounds reports use, and how a time is shown to a person.

Every package reads time through here (``store`` is the package they all share), so that Tokyo is
spelled once. Asia/Tokyo has had no daylight saving time since 1951, which is why SQL may add a
fixed nine hours (``SQL_OFFSET``); Python code uses the zone itself.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")
OFFSET_HOURS = 9  # Tokyo's offset from UTC, the same all year
SQL_OFFSET = f"+{OFFSET_HOURS} hours"  # SQLite's date modifier for Tokyo time
SQL_INTERVAL = f"interval '{OFFSET_HOURS} hours'"  # PostgreSQL's


def now() -> datetime:
    """The current time, aware, in UTC (what the store keeps)."""
    return datetime.now(timezone.utc)


def tokyo(when: datetime) -> datetime:
    """``when`` in Tokyo time; a naive time is taken to be Tokyo time already."""
    return when.replace(tzinfo=TOKYO) if when.tzinfo is None else when.astimezone(TOKYO)


def today(when: datetime | None = None) -> date:
    """The Tokyo date of ``when`` (default: now)."""
    return tokyo(when or now()).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The Tokyo day ``day`` as [start, end) in UTC."""
    start = datetime.combine(day, time(), TOKYO)
    return start.astimezone(timezone.utc), (start + timedelta(days=1)).astimezone(timezone.utc)


def shown(when: datetime) -> str:
    """A time for a person: Tokyo date, minute and offset (``2024-10-02 09:00 +09:00``)."""
    local = tokyo(when)
    return f"{local:%Y-%m-%d %H:%M} {local.isoformat()[-6:]}"


def parse_local(text: str) -> datetime:
    """An ISO date or time typed by a person; without an offset it is Tokyo time. Raises ValueError."""
    return tokyo(datetime.fromisoformat(text.strip()))
