"""Hostile stored text on its way out: only http(s) links become links (HTML report, digest, alert mail),
no control characters or bidi overrides reach a text output or the terminal, and a line break inside a
title or a publisher name cannot start a line of its own (a fake header)."""

from __future__ import annotations

import csv
import email
import io
import json
import re
from datetime import date, datetime, timezone
from email import policy
from html.parser import HTMLParser

import pytest
from sqlalchemy import text

from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from reports.daily import DailyReport, SourceRow, StoryRow, TrendRow
from reports.mail import build_alert_email, build_digest
from reports.rendering import render_html, render_text
from store import items as store_items
from store.alerts import AlertView
from store.clean import clean_text
from store.maintenance import Window
from store.records import Cause, Entry, Sentiment, Service

ESC, RLO = "\x1b", "\u202e"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
HEADER_LIKE = re.compile(r"^\s*(bcc|cc|to|from|subject|reply-to|content-type)\s*:", re.IGNORECASE | re.MULTILINE)
T0 = datetime(2024, 10, 2, 2, 0, tzinfo=timezone.utc)

TITLE = f"マイナポータル障害{ESC}[2J{ESC}]0;owned\x07 {RLO}gpj.exe\r\nBcc: victim@example.com\u2028Subject: x"
PUBLISHER = "共同通信\nBcc: everyone@example.com\n\rTo: x@example.com"
BAD_LINKS = [
    "javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "vbscript:msgbox(1)", "file:///etc/passwd",
    "//evil.example/x", "http:alert(1)", "https://ok.example/\x1b[31m", "mailto:a@example.com",
]
IPV6 = "http://[2001:db8::1]:8080/news/1"


def _report(links: list[str]) -> DailyReport:
    svc = (Service.PORTAL,)
    stories = [StoryRow(TITLE, svc, Cause.LOAD, Sentiment.NEGATIVE, 2, ((PUBLISHER, url), ("NHK", IPV6)), url, T0)
               for url in links]
    alert = AlertView("trouble:portal@x", "trouble:portal", "portal", "firing", T0, T0, None, 9, 12.0,
                      fired_at=T0, note=f"メンテナンス中のため抑制: {TITLE}")
    window = Window("portal", T0, T0, TITLE, "javascript:alert(2)")
    notice = StoryRow(TITLE, svc, Cause.MAINTENANCE, Sentiment.NEUTRAL, 1, ((PUBLISHER, "data:,x"),), "data:,x", T0)
    return DailyReport(
        day=date(2024, 10, 2), collected=10, relevant=5, services=[], causes=[(Cause.LOAD, 1)], sentiment=[],
        top_stories=stories, alerts=[alert], maintenance=[window], notices=[notice],
        trends=[TrendRow(TITLE, f"2万+{ESC}[0m\nBcc: t@example.com", ("portal",))],
        sources=[SourceRow(PUBLISHER, "failing", f"error: {TITLE}")], sources_ok=1)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "href":
                self.hrefs.append(value or "")
            if name == "src":
                self.srcs.append(value or "")


def _hrefs(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def _assert_text_safe(text: str) -> None:
    assert ESC not in text and RLO not in text and "\u2028" not in text
    assert not UNSAFE.search(text), repr(UNSAFE.search(text).group(0))
    assert not HEADER_LIKE.search(text), HEADER_LIKE.search(text).group(0)


def test_html_report_links_only_http_and_keeps_ipv6_brackets():
    html = render_html(_report(BAD_LINKS + ["https://ok.example/a?b=1&c=2"]))
    hrefs = _hrefs(html)
    assert hrefs, "the good links are still links"
    assert all(h.lower().startswith(("http://", "https://")) for h in hrefs), hrefs
    assert "https://ok.example/a?b=1&c=2" in hrefs and IPV6 in hrefs
    for bad in ("javascript:", "data:", "vbscript:", "file:"):
        assert not any(bad in h.lower() for h in hrefs)
    assert "javascript:alert(document.cookie)" in html  # shown as text, so a reader sees where it pointed
    assert ESC not in html and RLO not in html


def test_text_report_has_no_control_characters_or_injected_header_lines():
    text = render_text(_report(BAD_LINKS))
    _assert_text_safe(text)
    assert "マイナポータル障害" in text and "共同通信 Bcc: everyone@example.com" in text  # kept, on one line
    assert "[2001:db8::1]:8080" in text


def test_digest_parsed_as_mail_has_no_bcc_no_escape_and_only_web_links():
    msg = build_digest(_report(BAD_LINKS), charts=[], sender="mynawatch@example.com", recipient="ops@example.com")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    assert parsed["To"] == "ops@example.com"
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    _assert_text_safe(text)
    assert ESC not in html and RLO not in html
    assert all(h.lower().startswith(("http://", "https://")) for h in _hrefs(html))
    assert IPV6 in _hrefs(html)


def test_alert_mail_parsed_has_one_line_per_event_and_no_injection():
    alert = AlertView("trouble:portal@x", "trouble:portal", f"portal\r\nBcc: x@example.com{ESC}[2J", "firing", T0, T0,
                      None, 9, 12.0, fired_at=T0, note=TITLE)
    msg = build_alert_email(alert.service, [("firing", alert)], sender="mynawatch@example.com",
                            recipient="ops@example.com", key="k")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None and "\n" not in str(parsed["Subject"])
    text = parsed.get_body(("plain",)).get_content()
    _assert_text_safe(text)
    assert len([line for line in text.splitlines() if line.startswith("[")]) == 1
    html = parsed.get_body(("html",)).get_content()
    assert ESC not in html and RLO not in html and not _hrefs(html)


@pytest.fixture
def hostile_store(tmp_path, sessions, monkeypatch):
    """A store whose rows hold hostile text, written past the collector (as an old store or a hand edit would)."""
    with sessions.begin() as s:
        source = SourceConfig("src", "http://127.0.0.1/feed", publisher="NHK")
        state = store_items.upsert_source(s, name="src", url=source.url, kind="feed", publisher="NHK",
                                          interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url="https://example.com/1", title="マイナポータル障害 アクセス集中",
                                                 summary="つながりにくい", published=T0)], now=T0)
        s.execute(text("UPDATE items SET title = :t, publisher = :p, canonical_url = 'javascript:alert(1)'"),
                  {"t": TITLE, "p": PUBLISHER})
        s.execute(text("UPDATE sources SET name = :p, status = :s"), {"p": PUBLISHER, "s": f"error: {TITLE}"})
    path = tmp_path / "store.sqlite"
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "sqlite:///{path}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


def test_search_prints_stored_text_safely(hostile_store, capsys):
    assert main(["search", "障害"]) == 0
    out = capsys.readouterr().out
    _assert_text_safe(out)
    assert out.splitlines()[-1] == "1 item(s) (title matches first, newest first)"
    assert len(out.splitlines()) == 4  # date/publisher, title, url, count: nothing split into more lines


def test_sql_table_and_csv_are_clean_and_json_escapes_losslessly(hostile_store, capsys):
    q = "SELECT id, title, publisher FROM items"
    assert main(["sql", q]) == 0
    table = capsys.readouterr().out
    _assert_text_safe(table)
    assert len(table.splitlines()) == 4  # header, rule, one row, count
    assert main(["sql", q, "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert ESC not in csv_text and RLO not in csv_text and not UNSAFE.search(csv_text)
    (row,) = list(csv.reader(io.StringIO(csv_text)))[1:]
    assert row[1] == clean_text(TITLE) and "\n" in row[2]  # line breaks stay inside the quoted cell
    assert main(["sql", q, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert ESC not in out and RLO not in out and len(out.splitlines()) == 1
    assert json.loads(out)["title"] == TITLE and json.loads(out)["publisher"] == PUBLISHER


def test_sources_listing_keeps_one_line_per_source(hostile_store, capsys):
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    _assert_text_safe(out)
    header, row, *reason = out.splitlines()
    assert not row.startswith(" ") and all(line.startswith("    ") for line in reason)  # one source, one row:
    assert "".join(line.strip() for line in reason).startswith("error:")  # its reason under it, wrapped, indented


def test_error_messages_quoting_input_carry_no_control_characters(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv in (["spikes", "detect", str(tmp_path / f"{ESC}]0;owned\x07{RLO}.csv")],
                 ["tag", str(tmp_path / f"{ESC}[2J\udcff.jsonl")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no such file" in err and ESC not in err and RLO not in err and "\x07" not in err


def test_webhook_payload_text_is_one_clean_line():
    from reports.webhook import alertmanager_payload

    alert = AlertView("trouble:portal@x", "trouble:portal", "portal", "firing", T0, T0, None, 9, 12.0, fired_at=T0,
                      note=TITLE)
    body = alertmanager_payload("portal", [(alert, "firing")], receiver="hook")
    for key in ("summary", "description"):
        value = body["alerts"][0]["annotations"][key]
        assert not UNSAFE.search(value) and "\n" not in value and "\u2028" not in value
