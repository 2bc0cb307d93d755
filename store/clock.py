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


# Days and times a person may type: far enough from year 1 and 9999 that a day, a week or the years of a
# silence added to them stay inside what datetime and the store hold.
TYPED_YEARS = (1900, 9000)


def typed_form(form: str) -> str:
    """What a person is asked to type, with the years accepted: ``YYYY-MM-DD in the years 1900 to 9000``."""
    return f"{form} in the years {TYPED_YEARS[0]} to {TYPED_YEARS[1]}"


def typed_day(text: str) -> date:
    """A Tokyo day typed by a person (YYYY-MM-DD). Raises ValueError, also for a year outside TYPED_YEARS."""
    return _in_typed_years(date.fromisoformat(text.strip()))


def parse_local(text: str) -> datetime:
    """An ISO date or time typed by a person; without an offset it is Tokyo time. Raises ValueError, also for
    a year outside TYPED_YEARS."""
    return tokyo(_in_typed_years(datetime.fromisoformat(text.strip())))


def _in_typed_years(when):
    if not TYPED_YEARS[0] <= when.year <= TYPED_YEARS[1]:
        raise ValueError(f"year {when.year} is outside the years {TYPED_YEARS[0]} to {TYPED_YEARS[1]}")
    return when
