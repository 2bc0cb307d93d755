"""Reports tell the truth about collection: a day on which every fetch failed is a gap (not zero mentions, no
source "正常"), hours without a successful fetch are named, the sources that failed are listed with their
reasons and counts, and the charts shade the gap and break their lines there.

The store is filled by the collector, round by round on a simulated clock, against a real loopback HTTP
server: day 1 answers, on day 2 two sources answer 500 and one refuses connections, on day 3 the two come
back at 10:00 and the third keeps refusing. On both engines."""

from __future__ import annotations

import email
import math
import socket
from datetime import date, datetime, time, timedelta
from email import policy

import pytest
from sqlalchemy import select

from collector.fetch import FetchPolicy, make_client
from collector.jobs import Collector
from collector.sources import SourceConfig
from reports.archive import read_day, write_daily_report
from reports.charts import hourly_figure, mentions_figure
from reports.coverage import GAP_LABEL, Coverage, find_gaps
from reports.daily import build_daily_report
from reports.mail import SmtpSettings
from reports.rendering import render_html, render_text
from store.clock import TOKYO, day_bounds
from store.labels import save_labels
from store.records import Cause, Label, Sentiment, Service
from store.tables import Item
from tests.conftest import Route

MODEL = "gaps-test"
DAY1, DAY2, DAY3 = date(2024, 10, 1), date(2024, 10, 2), date(2024, 10, 3)
POLICY = FetchPolicy(timeout_seconds=2, host_interval_seconds=0, per_host_connections=8)
SMTP = SmtpSettings(sender="mw@example.jp", recipients=("ops@example.jp",))


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), TOKYO)


def _feed(name: str, rounds: list[datetime]) -> bytes:
    """A feed carrying the items of the last three rounds (one new item each round)."""
    items = "".join(
        f"<item><title>マイナ保険証 {name} {r:%d日%H時} の話題</title><link>https://example.jp/{name}/{r:%d%H}</link>"
        f"<pubDate>{(r - timedelta(minutes=10)).strftime('%a, %d %b %Y %H:%M:%S %z')}</pubDate></item>"
        for r in rounds[-3:])
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>{items}</channel></rss>'.encode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


def _answering(day: date, hour: int) -> bool:
    return day == DAY1 or (day == DAY3 and hour >= 10) or day > DAY3


@pytest.fixture
def gap_store(server, engine_sessions, tmp_path):
    """The store after the three days; day 2's report was written at 07:30 on day 3, as `run` does, to
    ``tmp_path / "day2"`` (the store's sources then still failing)."""
    sessions = engine_sessions
    for name in ("a", "b"):
        server.routes[f"/{name}"] = Route()
    sources = [SourceConfig("a", server.url("/a"), publisher="A新聞"),
               SourceConfig("b", server.url("/b"), publisher="B通信"),
               SourceConfig("c", f"http://127.0.0.1:{_closed_port()}/feed.xml", publisher="C放送")]
    done: list[datetime] = []
    with make_client(POLICY) as client, Collector(sessions, client, POLICY) as collector:
        for day, hour in [(d, h) for d in (DAY1, DAY2, DAY3) for h in range(24)] + [(DAY3 + timedelta(days=1), 0)]:
            now = at(day, hour)
            if (day, hour) == (DAY3, 8):
                _label(sessions)
                write_daily_report(sessions, model_version=MODEL, day=DAY2, out_dir=tmp_path / "day2", smtp=SMTP,
                                   now=at(DAY3, 7, 30))
            if _answering(day, hour):
                done.append(now)
            for name in ("a", "b"):
                route = server.routes[f"/{name}"]
                route.status, route.body = (200, _feed(name, done)) if _answering(day, hour) else (500, b"oops")
            collector.collect_round(sources, now=now, force=True)  # force: every hour, backoff or not
    _label(sessions)
    return sessions


def _label(sessions) -> None:
    """The classifier's part: every collected item is about マイナ保険証 trouble."""
    with sessions.begin() as s:
        ids = list(s.scalars(select(Item.id)))
        label = Label(True, (Service.HEALTH_INSURANCE,), Cause.DEFECT, Sentiment.NEGATIVE)
        save_labels(s, MODEL, {i: label for i in ids}, now=at(DAY3, 23))


def _report(sessions, day: date):
    with sessions.begin() as s:  # made at 07:30 the next morning, as `run` does
        return build_daily_report(read_day(s, model_version=MODEL, day=day, now=at(day + timedelta(days=1), 7, 30)))


def test_a_day_without_any_successful_fetch_is_a_gap_not_zero_mentions(gap_store, tmp_path):
    """Day 2's report, digest and charts as written at 07:30 on day 3."""
    text = (tmp_path / "day2" / f"report-{DAY2}.txt").read_text(encoding="utf-8")
    assert "収集なし（欠測）: この日は 00:00–24:00 に収集できていません（全ソース）\n" in text
    assert "収集 0 件" not in text and "正常" not in text
    assert "■ サービス別の言及（記事群数 / 記事数 / 媒体数）\n- 欠測（この日は収集できていません）\n" in text
    assert ("■ この日の収集（取得の記録）\n- この日は 00:00–24:00 に収集できていません（全ソース）\n"
            "- a: 取得失敗 24 回、成功 0 回（HTTP 500 ×24）\n- b: 取得失敗 24 回、成功 0 回（HTTP 500 ×24）\n"
            "- c: 取得失敗 24 回、成功 0 回（") in text
    c_line = next(line for line in text.splitlines() if line.startswith("- c: "))
    assert "refused" in c_line.lower() and c_line.endswith("×24）")
    html = (tmp_path / "day2" / f"report-{DAY2}.html").read_text(encoding="utf-8")
    assert "この日は 00:00–24:00 に収集できていません（全ソース）" in html and "正常" not in html
    assert "a: 取得失敗 24 回、成功 0 回（HTTP 500 ×24）" in html and "収集 0 件" not in html
    digest = email.message_from_bytes((tmp_path / "day2" / f"digest-{DAY2}.eml").read_bytes(), policy=policy.default)
    plain = digest.get_body(("plain",)).get_content()
    assert "収集なし（欠測）: この日は 00:00–24:00 に収集できていません（全ソース）" in plain and "正常" not in plain
    assert "収集できていません" in digest.get_body(("html",)).get_content()
    for chart in ("chart", "hourly"):
        assert (tmp_path / "day2" / f"{chart}-{DAY2}.png").read_bytes()[:4] == b"\x89PNG"


def test_the_days_around_the_gap(gap_store):
    day1, day3 = _report(gap_store, DAY1), _report(gap_store, DAY3)
    # day 1: every round answered (23 items a source: the 00:00 round brings one of 23:50 the day before); its
    # last hour was not followed by a success (the next one is day 3, 10:00)
    text1 = render_text(day1)
    assert "この日は 23:00–24:00 に収集できていません（全ソース）" in text1 and not day1.coverage.whole_day
    assert day1.collected == 46 and "- 正常: 2 件（この日の取得がすべて成功）" in text1
    assert "- c: 取得失敗 24 回、成功 0 回（" in text1
    # day 3: hours missing, the failed sources with their reasons and counts, and real counts for the rest
    text3 = render_text(day3)
    assert text3.splitlines()[3] == ("収集 30 件（関連 30 件、関連なし 0 件）。この日は 00:00–10:00 に収集できていません"
                                     "（全ソース）。この間の件数は欠けています")
    section = text3.split("■ この日の収集（取得の記録）\n")[1].split("\n\n")[0].splitlines()
    assert section[:3] == ["- この日は 00:00–10:00 に収集できていません（全ソース）",
                           "- a: 取得失敗 10 回、成功 14 回（HTTP 500 ×10）", "- b: 取得失敗 10 回、成功 14 回（HTTP 500 ×10）"]
    assert section[3].startswith("- c: 取得失敗 24 回、成功 0 回（") and len(section) == 4  # none of the three is 正常
    rows = {r.service: r for r in day3.services}
    # the 7- and 28-day averages leave day 2 out (nothing collected) instead of counting it as 0
    assert rows[Service.HEALTH_INSURANCE].avg7 > 0 and day3.coverage.known
    assert "マイナ保険証: " in text3 and "欠測（この日は" not in text3
    html = render_html(day3)
    assert "この日は 00:00–10:00 に収集できていません（全ソース）" in html


def test_the_charts_shade_the_gap_and_break_the_line(gap_store):
    report = _report(gap_store, DAY3)
    gaps = list(report.coverage.gaps)
    fig = mentions_figure(report.per_day, start=DAY3 - timedelta(days=27), end=DAY3, gaps=gaps)
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    points = dict(zip([x.date() for x in line.get_xdata()], line.get_ydata()))
    assert math.isnan(points[DAY2]) and points[DAY1] > 0 and points[DAY3] > 0  # broken on day 2, not 0
    shaded = [p for p in ax.patches if p.get_label() == GAP_LABEL]
    assert len(shaded) == 1
    box = shaded[0].get_bbox()
    assert (box.x0, box.x1) == pytest.approx((_x(at(DAY1, 23)), _x(at(DAY3, 10))))
    assert GAP_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]
    hourly = hourly_figure(report.hourly, day=DAY3, title="t", gaps=gaps).axes[0]
    (span,) = [p for p in hourly.patches if p.get_label() == GAP_LABEL]
    assert (span.get_bbox().x0, span.get_bbox().x1) == pytest.approx((-0.5, 9.5))  # hours 0-9 of day 3
    assert GAP_LABEL in [t.get_text() for t in hourly.get_legend().get_texts()]
    empty = hourly_figure({}, day=DAY2, title="t", gaps=gaps).axes[0]
    assert [t.get_text() for t in empty.texts] == [GAP_LABEL]  # not 障害報告なし


def _x(when: datetime) -> float:
    import matplotlib.dates as mdates

    return mdates.date2num(when.astimezone(TOKYO).replace(tzinfo=None))


def test_gaps_from_successes():
    """A late round is no gap; the stretch after the last success to the next one is; nothing before the history."""
    start, end = day_bounds(DAY2)
    hourly = [(start + timedelta(hours=h, minutes=5 + (h % 3) * 9), 60) for h in range(24)]
    assert find_gaps(hourly, known_from=start - timedelta(days=9), since=start, until=end) == []
    broken = [s for s in hourly if not 3 <= (s[0] - start).total_seconds() / 3600 < 9]
    (gap,) = find_gaps(broken, known_from=start - timedelta(days=9), since=start, until=end)
    assert gap == (hourly[2][0], hourly[9][0])
    assert find_gaps([], known_from=None, since=start, until=end) == []  # no fetch history: nothing claimed
    assert find_gaps([], known_from=start + timedelta(hours=20), since=start, until=end) == [
        (start + timedelta(hours=20), end)]
    c = Coverage(start, end, ((start - timedelta(hours=2), end + timedelta(hours=1)),), known=True)
    assert c.whole_day and c.day_gaps() == [(start, end)]
