"""The daily report's social panel: per service the stream posts of the day, their distinct authors and the
reposts of them (store/stream_signals.py, read by reports/archive.py), and the bursts whose stream alert
fired that day; nothing at all for a store that reads no stream. Text and HTML, on a real SQLite store."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html.parser import HTMLParser

from sqlalchemy import select
from test_reports_data import MODEL, Row, add_items

from reports.archive import read_day
from reports.daily import DayInputs, build_daily_report
from reports.rendering import render_html, render_text
from store import streams as store_streams
from store.clock import TOKYO
from store.db import make_sessions
from store.stream_signals import Burst, StreamCount
from store.tables import Item

DAY = date(2024, 10, 2)
NOW = datetime(2024, 10, 3, 7, 30, tzinfo=TOKYO)
HEAD = "■ ソーシャル（ストリームの投稿 / 投稿者 / リポスト）"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO)


def _post(title: str, when: datetime, author: str, **kw) -> Row:
    return Row(title, when, publisher=author, source="bluesky", **kw)


def _store(tmp_path, *, stream: bool):
    sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
    rows = [Row("マイナポータル、つながりにくく", at(DAY, 9, 10), publisher="共同通信")]
    if stream:
        with sessions.begin() as s:
            store_streams.register_stream(s, name="bluesky", url="wss://jetstream.example/subscribe",
                                          kind="jetstream", now=NOW)
        rows += [
            _post("マイナポータルにつながらない", at(DAY, 7, 45), "did:plc:a"),
            _post("マイナポータル落ちてる", at(DAY, 7, 50), "did:plc:b"),
            _post("マイナポータル まだつながらない", at(DAY, 8, 5), "did:plc:a"),  # a second post of one author
            _post("マイナ保険証で受診した", at(DAY, 10), "did:plc:c", services=("health_insurance",), cause="none"),
            _post("マイナスイオン", at(DAY, 11), "did:plc:d", relevant=False),  # not counted
            _post("マイナポータル 昨日の話", at(DAY - timedelta(days=1), 23, 50), "did:plc:e"),  # the day before
        ]
    add_items(sessions, rows, kinds={"bluesky": "jetstream"})
    if stream:
        with sessions.begin() as s:
            ids = dict(s.execute(select(Item.title, Item.id)).all())
            store_streams.add_reposts(s, [
                (ids["マイナポータルにつながらない"], "at://did:plc:f/app.bsky.feed.repost/1", "did:plc:f", at(DAY, 8)),
                (ids["マイナポータルにつながらない"], "at://did:plc:g/app.bsky.feed.repost/2", "did:plc:g", at(DAY, 8, 1)),
                (ids["マイナポータル 昨日の話"], "at://did:plc:h/app.bsky.feed.repost/3", "did:plc:h", at(DAY, 0, 5)),
                (ids["マイナポータル落ちてる"], "at://did:plc:i/app.bsky.feed.repost/4", "did:plc:i",
                 at(DAY + timedelta(days=1), 0, 5)),  # the next day's
            ])
    return sessions


def _report(sessions):
    with sessions.begin() as s:
        return build_daily_report(read_day(s, model_version=MODEL, day=DAY, now=NOW))


def _panel(text: str) -> list[str]:
    return text.split(HEAD + "\n", 1)[1].split("\n\n", 1)[0].splitlines()


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.h2: list[str] = []
        self.rows: list[list[str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "td", "th"):
            self._in = tag
        if tag == "tr":
            self.rows.append([])

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.h2.append(data)
        elif self._in in ("td", "th"):
            self.rows[-1].append(data)


def test_the_panel_counts_posts_distinct_authors_and_reposts_of_the_day(tmp_path):
    report = _report(_store(tmp_path, stream=True))
    assert [(r.service, r.posts, r.authors, r.reposts) for r in report.streams] == [
        ("portal", 3, 2, 3), ("health_insurance", 1, 1, 0)]
    assert _panel(render_text(report)) == ["- マイナポータル: 3 / 2 / 3", "- マイナ保険証: 1 / 1 / 0"]
    html = Cells()
    html.feed(render_html(report))
    assert "ソーシャル（ストリームの投稿 / 投稿者 / リポスト）" in html.h2
    assert ["サービス", "投稿", "投稿者", "リポスト"] in html.rows
    assert ["マイナポータル", "3", "2", "3"] in html.rows and ["マイナ保険証", "1", "1", "0"] in html.rows


def test_a_store_without_streams_says_nothing_of_them(tmp_path):
    report = _report(_store(tmp_path, stream=False))
    assert report.streams is None
    assert "ソーシャル" not in render_text(report) and "ソーシャル" not in render_html(report)


def test_a_stream_with_nothing_that_day_says_none(tmp_path):
    sessions = _store(tmp_path, stream=False)
    with sessions.begin() as s:
        store_streams.register_stream(s, name="bluesky", url="wss://jetstream.example/subscribe", kind="jetstream",
                                      now=NOW)
    report = _report(sessions)
    assert report.streams == [] and _panel(render_text(report)) == ["- なし"]
    assert "<h2" in render_html(report).split("ソーシャル")[0][-80:] and "<p>なし</p>" in render_html(report)


def test_a_burst_is_shown_against_the_first_news():
    inputs = DayInputs(day=DAY, collected=1, relevant=1, per_day=[], causes=[], sentiment=[], items=[], hourly={},
                       streams=[StreamCount("portal", 72, 72, 19)],
                       bursts=[Burst("portal", at(DAY, 7, 45), at(DAY, 7, 55), at(DAY, 8, 31)),
                               Burst("card", at(DAY, 7, 50), at(DAY, 8, 0), None)])
    report = build_daily_report(inputs)
    assert _panel(render_text(report)) == [
        "- マイナポータル: 72 / 72 / 19",
        "- 急増 マイナポータル: 最初の投稿 10/02 07:45 → ストリームのアラート 10/02 07:55 → 最初のニュース 10/02 08:31（ニュースの36分前）",
        "- 急増 マイナンバーカード: 最初の投稿 10/02 07:50 → ストリームのアラート 10/02 08:00 → 当日のニュースなし",
    ]
    html = render_html(report)
    assert "急増 マイナポータル: 最初の投稿 10/02 07:45 → ストリームのアラート 10/02 07:55" in html
