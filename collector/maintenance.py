"""Planned-maintenance notices -> maintenance windows. Pure: the notice's own date is a parameter.

Reads notices such as 「マイナポータルの計画停止について 10月12日（土）1時〜6時」, 「コンビニ交付サービスの休止
（10月5日 午前0時から午前8時まで）」 or 「令和6年10月11日（金）22時00分から翌日6時00分まで」: Japanese dates
(年 optional, 令和/平成 eras, 10/12), times (午前/午後, 正午, 時半, 1:00), 〜 / から…まで, 翌日 / 翌12日 and
終日. A year left out is inferred from the notice's date. Times are Japan time; windows come out in UTC.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta, timezone

from store.clock import TOKYO
from store.maintenance import Window
from store.records import NEAR, SERVICE_WORDS, Service, ServiceWords

MAX_WINDOW = timedelta(days=14)
_PLANNED = re.compile(r"計画停止|メンテナンス|保守作業|定期点検|システム点検|休止|停止のお?知らせ|サービス停止|"
                      r"停止(?:いた)?します|停止予定|利用できなくなります|ご利用いただけません")
_HALFWIDTH = re.compile(r"[\uff61-\uff9f]")  # ﾒﾝﾃﾅﾝｽ: NFKC makes it メンテナンス
_INCIDENT = re.compile(r"障害|不具合|トラブル|復旧|つながりにくい|誤交付|不正アクセス")
_FIRM = re.compile(r"計画停止|予定|お知らせ|のため|に伴い|休止します|停止(?:いた)?します|実施")
# Services that notices about another service name in passing (「マイナンバーカードを利用したコンビニ交付の休止」):
# a notice is theirs only when it names no other service.
_BROAD = (Service.CARD, Service.GENERAL)


def _service_patterns(words: ServiceWords) -> list[re.Pattern[str]]:
    names = sorted((re.escape(n) for n in words.names), key=len, reverse=True)
    near = [f"({re.escape(a)}).{{0,{NEAR}}}({re.escape(b)})" for a, b in words.near]
    return [re.compile(f"({'|'.join(names)})", re.IGNORECASE)] + [re.compile(n, re.IGNORECASE) for n in near]


# (service code, how notices name it: store.records.SERVICE_WORDS)
_SERVICES = [(str(service), _service_patterns(words)) for service, words in SERVICE_WORDS.items()]

_DATE = (r"(?:(?P<{p}era>令和|平成)(?P<{p}eray>\d{{1,2}}|元)年|(?P<{p}year>\d{{4}})年)?\s*"
         r"(?:(?P<{p}month>\d{{1,2}})月(?P<{p}day>\d{{1,2}})日|(?P<{p}smonth>\d{{1,2}})/(?P<{p}sday>\d{{1,2}}))"
         r"(?:\s*\([^)\d]{{1,4}}\))?")
_TIME = (r"(?P<{p}same>同)?(?P<{p}ampm>午前|午後)?\s*(?:(?P<{p}noon>正午)|(?P<{p}hour>\d{{1,2}})"
         r"(?:時(?:(?P<{p}min>\d{{1,2}})分|(?P<{p}half>半))?|:(?P<{p}cmin>\d{{2}})))")
_WINDOW = re.compile(
    _DATE.format(p="s") + r"(?:[^\d\n。]{0,10}?)\s*の?\s*" + _TIME.format(p="s")
    + r"\s*(?:〜|~|から|より|-|–|—)\s*"
    + r"(?:(?P<next>翌日?)(?P<nextday>\d{1,2}日)?(?:\s*\([^)\d]{1,4}\))?|" + _DATE.format(p="e") + r")?\s*の?\s*"
    + _TIME.format(p="e")
)
_ALL_DAY = re.compile(_DATE.format(p="s") + r"\s*(?:は|の)?\s*終日")


def find_windows(title: str, text: str, *, notice_time: datetime, url: str = "",
                 default_service: str | None = None) -> list[Window]:
    """Maintenance windows announced in one notice (title + text), one per service named; [] when it is not
    a planned-maintenance notice or names no window."""
    raw = f"{title}\n{text}"
    if not _PLANNED.search(raw) and not _HALFWIDTH.search(raw):  # the common case, before normalizing
        return []
    whole = _normalize(raw)
    if not _PLANNED.search(whole) or (_INCIDENT.search(whole) and not _FIRM.search(whole)):
        return []
    services = notice_services(_normalize(title), _normalize(text)) or ([default_service] if default_service else [])
    spans = _spans(whole, notice_time.astimezone(TOKYO).date())
    label = title.strip()[:200] or whole[:200]
    return [Window(service, start, end, label, url) for service in services for start, end in spans]


def notice_services(title: str, text: str) -> list[str]:
    """Services named in the title; when none, the first one named in the text. A name inside another
    service's longer name does not count (電子証明書 in スマホ用電子証明書), nor a broad service beside another."""
    return _named(title) or _named(text)[:1]


def _named(text: str) -> list[str]:
    """Codes named in ``text``, the first named first."""
    found = [(m.start(), m.end(), code, m.regs[1:]) for code, patterns in _SERVICES for pattern in patterns
             for m in pattern.finditer(text)]
    first: dict[str, int] = {}
    for start, _end, code, words in sorted(found):
        if not any(_inside(word, (s, e), c != code) for word in words for s, e, c, _ in found):
            first.setdefault(code, start)
    named = sorted(first, key=first.get)
    specific = [code for code in named if code not in _BROAD]
    return specific or named


def _inside(word: tuple[int, int], other: tuple[int, int], other_service: bool) -> bool:
    return other_service and other[0] <= word[0] and word[1] <= other[1] and other[1] - other[0] > word[1] - word[0]


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[〜～~]", "〜", text)


def _spans(text: str, notice_day: date) -> list[tuple[datetime, datetime]]:
    spans = []
    for m in _WINDOW.finditer(text):
        try:
            span = _span(m, notice_day)
        except (OverflowError, ValueError):  # a date at the calendar's end (9999年12月31日): no window
            continue
        if span is not None:
            spans.append(span)
    for m in _ALL_DAY.finditer(text):
        try:
            day = _day(m, "s", notice_day)
            if day is not None:
                start = datetime(day.year, day.month, day.day, tzinfo=TOKYO)
                spans.append((start, start + timedelta(days=1)))
        except (OverflowError, ValueError):
            continue
    kept = []
    for start, end in spans:
        try:
            window = (start.astimezone(timezone.utc), end.astimezone(timezone.utc))
        except (OverflowError, ValueError):
            continue
        if timedelta(0) < end - start <= MAX_WINDOW and window not in kept:
            kept.append(window)
    return kept


def _span(m, notice_day: date) -> tuple[datetime, datetime] | None:
    start_day = _day(m, "s", notice_day)
    if start_day is None:
        return None
    start = _at(start_day, m, "s", None)
    end_day = _end_day(m, start_day)
    end = _at(end_day, m, "e", m.group("sampm")) if end_day else None
    if start is None or end is None:
        return None
    if end <= start and not m.group("next") and not m.group("emonth") and not m.group("esmonth"):
        end += timedelta(days=1)  # 22時〜6時 runs past midnight
    return start, end


def _day(m, p: str, notice_day: date) -> date | None:
    month, day = m.group(f"{p}month") or m.group(f"{p}smonth"), m.group(f"{p}day") or m.group(f"{p}sday")
    if not month:
        return None
    year = _explicit_year(m, p)
    try:
        if year is not None:
            return date(year, int(month), int(day))
        guess = date(notice_day.year, int(month), int(day))
    except ValueError:
        return None
    if guess < notice_day - timedelta(days=120):  # a December notice about January
        return _replace_year(guess, guess.year + 1)
    if guess > notice_day + timedelta(days=240):  # a January notice looking back at December
        return _replace_year(guess, guess.year - 1)
    return guess


def _explicit_year(m, p: str) -> int | None:
    if m.group(f"{p}year"):
        return int(m.group(f"{p}year"))
    era = m.group(f"{p}era")
    if era:
        n = 1 if m.group(f"{p}eray") == "元" else int(m.group(f"{p}eray"))
        return (2018 if era == "令和" else 1988) + n
    return None


def _replace_year(day: date, year: int) -> date | None:
    try:
        return day.replace(year=year)
    except ValueError:
        return None


def _end_day(m, start_day: date) -> date | None:
    if m.group("next"):
        if not m.group("nextday"):
            return start_day + timedelta(days=1)
        wanted = int(m.group("nextday")[:-1])
        for ahead in range(1, 8):  # 翌12日: the next day numbered 12
            candidate = start_day + timedelta(days=ahead)
            if candidate.day == wanted:
                return candidate
        return None
    if m.group("emonth") or m.group("esmonth"):
        return _day(m, "e", start_day)
    return start_day


def _at(day: date, m, p: str, start_ampm: str | None) -> datetime | None:
    if m.group(f"{p}noon"):
        hour, minute = 12, 0
    else:
        hour = int(m.group(f"{p}hour"))
        minute = int(m.group(f"{p}min") or m.group(f"{p}cmin") or (30 if m.group(f"{p}half") else 0))
        ampm = m.group(f"{p}ampm") or (start_ampm if m.group(f"{p}same") else None)
        if ampm == "午後" and hour < 12:
            hour += 12
        elif ampm == "午前" and hour == 12:
            hour = 0
    if hour > 48 or minute > 59:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=TOKYO) + timedelta(hours=hour, minutes=minute)
