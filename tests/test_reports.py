"""Daily report rendering and the digest email, delivered to a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import email
import socket
import time
from datetime import date, datetime, timezone
from email import policy
from html.parser import HTMLParser

import pytest

from reports.charts import render_mentions_chart
from reports.daily import build_daily_report, render_html, render_text
from reports.mail import SmtpSettings, build_digest, send_message
from store.alerts import AlertView
from store.records import Cause, Label, LabeledItem, Sentiment, Service

DAY = date(2024, 10, 2)


def _item(i, story, title, publisher, hour, *, relevant=True, services=(Service.PORTAL,), cause=Cause.LOAD):
    when = datetime(2024, 10, 1, 23 + hour, 0, tzinfo=timezone.utc) if hour == 0 else datetime(2024, 10, 2, hour - 1, tzinfo=timezone.utc)
    return LabeledItem(i, story, title, f"https://example.jp/{i}", publisher, when,
                       Label(relevant, services if relevant else (), cause if relevant else Cause.NONE, Sentiment.NEGATIVE))


ITEMS = [
    _item(1, 10, "マイナポータル、つながりにくく", "共同通信", 1),
    _item(2, 10, "マイナポータル、つながりにくく", "東京新聞", 2),
    _item(3, 10, "マイナポータル、つながりにくく", "京都新聞", 2),
    _item(4, 11, "<script>alert('x')</script>マイナポータル障害", "怪しいブログ", 3),
    _item(5, 12, "マイナス金利の影響", "経済紙", 3, relevant=False),
]
ALERT = AlertView("trouble:portal@x", "trouble:portal", "portal", "firing", datetime(2024, 10, 2, 0, tzinfo=timezone.utc),
                  datetime(2024, 10, 2, 5, tzinfo=timezone.utc), None, 4, 8.2)


def test_report_counts_stories_not_copies_and_leaves_out_irrelevant_items():
    report = build_daily_report(ITEMS, day=DAY, alerts=[ALERT])
    (portal,) = [r for r in report.services if r.service == Service.PORTAL]
    assert (portal.stories, portal.items, portal.publishers) == (2, 4, 4)
    assert report.collected == 5 and report.relevant == 4 and report.irrelevant == 1
    assert report.top_stories[0].publishers == ("京都新聞", "共同通信", "東京新聞")
    text = render_text(report)
    assert "マイナ関連 日次レポート 2024年10月02日" in text
    assert "マイナポータル: 2 / 4 / 4" in text
    assert "マイナス金利" not in text


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_escapes_feed_strings():
    html = render_html(build_daily_report(ITEMS, day=DAY, alerts=[]))
    parser = _Collect()
    parser.feed(html)
    assert "script" not in parser.tags
    assert any("<script>alert('x')</script>マイナポータル障害" in t for t in parser.text)


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


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, sink
    controller.stop()


def test_digest_arrives_over_smtp_with_both_alternatives_and_the_inline_chart(smtp_server):
    controller, sink = smtp_server
    report = build_daily_report(ITEMS, day=DAY, alerts=[ALERT])
    chart = render_mentions_chart({DAY: {Service.PORTAL: 2}}, start=date(2024, 9, 20), end=DAY)
    msg = build_digest(report, chart_png=chart, sender="mw@example.jp", recipients=("a@example.jp",))
    send_message(msg, SmtpSettings(host="127.0.0.1", port=controller.port))
    for _ in range(50):
        if sink.messages:
            break
        time.sleep(0.05)
    got = email.message_from_bytes(sink.messages[0], policy=policy.default)
    assert got["Subject"] == "【mynawatch】マイナ関連 日次レポート 2024年10月02日（アラート1件）"
    assert "=?utf-8?" in sink.messages[0].decode("ascii", "replace").split("Subject:", 1)[1].splitlines()[0].lower()
    plain = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    assert "マイナポータル: 2 / 4 / 4" in plain
    assert "&lt;script&gt;" in html and "<script>" not in html
    images = [p for p in got.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f'src="cid:{images[0]["Content-ID"].strip("<>")}"' in html


def test_chart_renders_japanese_labels_without_missing_glyphs(recwarn):
    png = render_mentions_chart({DAY: {Service.HEALTH_INSURANCE: 3, Service.PORTAL: 5}},
                                start=date(2024, 9, 20), end=DAY, title="サービス別の言及")
    assert png[:4] == b"\x89PNG"
    assert not [w for w in recwarn if "Glyph" in str(w.message) or "missing from" in str(w.message)]
