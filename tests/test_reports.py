"""The daily report over a real store, its rendering, and the digest delivered to a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import email
import re
import socket
import time
from datetime import date, datetime, timedelta
from email import policy
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from test_reports_data import MODEL, Row, add_items, source_id

from reports.archive import read_day, write_daily_report
from reports.charts import render_hourly_chart, render_mentions_chart
from reports.daily import build_daily_report
from reports.mail import SmtpSettings
from reports.outbox import Channels, deliver_due
from reports.rendering import render_html, render_text
from store import alerts as store_alerts
from store.alerts import AlertView
from store.db import make_sessions
from store.maintenance import Window, save_window
from store.records import Service

TOKYO = ZoneInfo("Asia/Tokyo")
DAY = date(2024, 10, 2)
NOW = datetime(2024, 10, 3, 7, 30, tzinfo=TOKYO)
EVIL = "<script>alert('x')</script>マイナポータル障害"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO)


def _rows() -> list[Row]:
    rows = [Row(f"マイナ保険証の話題 {d}", at(DAY - timedelta(days=d), 12), services=("health_insurance",), cause="none",
                sentiment="neutral", story=f"h{d}") for d in range(1, 29)]  # one story a day for four weeks
    rows += [Row(f"マイナポータル 過去 {d}", at(DAY - timedelta(days=d), 9), story=f"p{d}") for d in range(1, 8, 2)]
    rows += [
        Row("マイナポータル、つながりにくく", at(DAY, 9, 10), publisher="共同通信", story="wire"),
        Row("マイナポータル、つながりにくく", at(DAY, 9, 40), publisher="東京新聞", story="wire"),
        Row("マイナポータル、つながりにくく", at(DAY, 10, 5), publisher="京都新聞", story="wire"),
        Row(EVIL, at(DAY, 11, 0), publisher="怪しいブログ", story="evil", cause="unknown"),
        Row("マイナポータル 計画停止のお知らせ", at(DAY, 15), cause="maintenance", sentiment="neutral",
            publisher="デジタル庁", story="notice"),
        Row("マイナポータル 復旧", at(DAY, 19), sentiment="positive", publisher="NHK", story="recovered",
            source="hatena", social_count=120),
        Row("マイナス金利の影響", at(DAY, 12), relevant=False, publisher="経済紙"),
    ]
    return rows


@pytest.fixture
def store(tmp_path):
    sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
    add_items(sessions, _rows(), kinds={"hatena": "hatena"})
    with sessions.begin() as s:
        source_id(s, "broken-feed", status="error (hard): HTTP 404", last_success=NOW - timedelta(days=3))
        source_id(s, "old-feed", status="ok", last_success=NOW - timedelta(hours=1), last_new=NOW - timedelta(days=9))
        save_window(s, Window("portal", at(DAY + timedelta(days=3), 1), at(DAY + timedelta(days=3), 6),
                              "マイナポータル 計画停止", "https://example.jp/notice"), found_at=NOW)
        store_alerts.save_alert(s, AlertView("trouble:portal@x", "trouble:portal", "portal", "resolved", at(DAY, 9),
                                             at(DAY, 11), at(DAY, 12), 4, 8.2, fired_at=at(DAY, 10)), now=NOW)
    return sessions


def _report(store):
    with store.begin() as s:
        return build_daily_report(read_day(s, model_version=MODEL, day=DAY, now=NOW))


def test_report_counts_stories_not_copies_against_its_baselines(store):
    report = _report(store)
    rows = {r.service: r for r in report.services}
    portal = rows[Service.PORTAL]
    assert (portal.stories, portal.items, portal.publishers) == (4, 6, 6)
    assert portal.avg7 == round(4 / 7, 2) and portal.avg28 == round(4 / 28, 2)
    assert (rows[Service.HEALTH_INSURANCE].avg7, rows[Service.HEALTH_INSURANCE].avg28) == (1.0, 1.0)
    assert portal.bookmarks == 120
    assert report.collected == 7 and report.relevant == 6 and report.irrelevant == 1
    top = report.top_stories[0]
    assert top.title == "マイナポータル、つながりにくく" and top.items == 3
    assert [p for p, _ in top.publishers] == ["共同通信", "東京新聞", "京都新聞"]
    assert [s.title for s in report.notices] == ["マイナポータル 計画停止のお知らせ"]
    assert dict((c, n) for c, n in report.causes)["load"] == 2


def test_text_report_sections(store):
    text = render_text(_report(store))
    assert text.startswith("マイナ関連 日次レポート 2024年10月02日\n")
    assert "- マイナポータル: 4 / 6 / 6（7日平均 0.6、28日平均 0.1" in text
    assert "■ アラート\n- マイナポータル: 10/02 09:00〜10/02 12:00 ピーク 4 件/時（スコア 8.2、解消）" in text
    assert "- [予定] マイナポータル: 10/05 01:00〜10/05 06:00 マイナポータル 計画停止" in text
    assert "- broken-feed: 取得失敗（error (hard): HTTP 404）" in text
    assert "- old-feed: 更新停止の疑い（9日間新しい記事がありません）" in text
    assert "- ネガティブ: 4（67%／36%）" in text  # 4 of 11 items over the week before were negative
    assert "- マイナポータル、つながりにくく（マイナポータル／アクセス集中／ネガティブ／3媒体・3記事）\n    共同通信: https://" in text
    assert "マイナス金利" not in text


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_html_escapes_every_feed_string_and_uses_inline_styles(store):
    html = render_html(_report(store), {"trend": "chart-2024-10-02.png", "hourly": "hourly-2024-10-02.png"})
    parser = _Collect()
    parser.feed(html)
    assert "script" not in parser.tags and "style" not in parser.tags
    assert any(EVIL in t for t in parser.text)
    assert parser.images == ["chart-2024-10-02.png", "hourly-2024-10-02.png"]


class _Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smtp(port, sink):
    from aiosmtpd.controller import Controller

    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def _wait(sink, n):
    for _ in range(100):
        if len(sink.messages) >= n:
            return
        time.sleep(0.05)


def test_digest_arrives_over_smtp_with_both_alternatives_and_the_inline_charts(store, tmp_path):
    sink, port = _Sink(), _free_port()
    controller = _smtp(port, sink)
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=port, sender="mw@example.jp", recipients=("a@example.jp",))
        files = write_daily_report(store, model_version=MODEL, day=DAY, out_dir=tmp_path / "out", smtp=smtp,
                                   send=True, now=NOW)
        _wait(sink, 1)
    finally:
        controller.stop()
    assert len(files.delivery.sent) == 1 and len(sink.messages) == 1
    raw = sink.messages[0]
    subject_line = re.search(rb"^Subject: (.*)$", raw, re.M).group(1).decode("ascii")
    assert subject_line.lower().startswith("=?utf-8?")  # RFC 2047
    got = email.message_from_bytes(raw, policy=policy.default)
    assert got["Subject"] == "【mynawatch】マイナ関連 日次レポート 2024年10月02日（アラート1件）"
    assert got["To"] == "a@example.jp"
    plain = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    assert "マイナポータル: 4 / 6 / 6" in plain and EVIL in plain
    assert "&lt;script&gt;" in html and "<script>" not in html
    images = [p for p in got.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 2 and all(p.get_content()[:8] == b"\x89PNG\r\n\x1a\n" for p in images)
    for part in images:
        assert f'src="cid:{part["Content-ID"].strip("<>")}"' in html
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "report-2024-10-02.txt", "report-2024-10-02.html", "chart-2024-10-02.png", "hourly-2024-10-02.png",
        "digest-2024-10-02.eml"}


def test_an_smtp_server_down_then_up_gets_exactly_one_copy(store, tmp_path):
    port = _free_port()  # nothing listens here yet
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="mw@example.jp", recipients=("a@example.jp",), timeout=5)
    files = write_daily_report(store, model_version=MODEL, day=DAY, out_dir=tmp_path, smtp=smtp, send=True, now=NOW)
    assert files.queued == 1 and files.delivery.sent == [] and len(files.delivery.failed) == 1
    again = write_daily_report(store, model_version=MODEL, day=DAY, out_dir=tmp_path, smtp=smtp, send=True, now=NOW)
    assert again.queued == 0  # the day's digest is queued once, ever
    sink = _Sink()
    controller = _smtp(port, sink)
    try:
        later = NOW + timedelta(minutes=5)
        restarted = make_sessions(str(store.kw["bind"].url))  # as after a restart
        assert len(deliver_due(restarted, Channels(smtp=smtp), now=later).sent) == 1
        assert deliver_due(restarted, Channels(smtp=smtp), now=later + timedelta(hours=3)).sent == []
        write_daily_report(store, model_version=MODEL, day=DAY, out_dir=tmp_path, smtp=smtp, send=True, now=later)
        _wait(sink, 1)
        time.sleep(0.2)
    finally:
        controller.stop()
    assert len(sink.messages) == 1
    with store.begin() as s:
        assert store_alerts.digest_sent(s, "2024-10-02", "a@example.jp")


def test_charts_render_japanese_labels_without_missing_glyphs(recwarn):
    png = render_mentions_chart({DAY: {Service.HEALTH_INSURANCE: 3, Service.PORTAL: 5}},
                                start=date(2024, 9, 20), end=DAY, title="サービス別の言及")
    hourly = render_hourly_chart({"portal": {at(DAY, 9): 3, at(DAY, 10): 5}}, day=DAY, title="障害報告（時間帯別）",
                                 marks=[(at(DAY, 9), at(DAY, 12))])
    assert png[:4] == b"\x89PNG" and hourly[:4] == b"\x89PNG"
    assert not [w for w in recwarn if "Glyph" in str(w.message) or "missing from" in str(w.message)]
