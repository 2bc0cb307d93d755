"""Mail and pages as a reader meets them: inline charts shown inline, dates in Tokyo time, a Japanese
font named in the HTML, Datasette metadata that applies whatever the store's file is called."""

from __future__ import annotations

import email
import json
from datetime import timedelta
from email import policy
from email.utils import parsedate_to_datetime

import pytest
from test_reports import DAY, MODEL, NOW, _report, store  # noqa: F401 (the store fixture)

from mynawatch.cli import main
from reports.archive import write_daily_report
from reports.mail import SmtpSettings
from reports.mail import build_alert_email, build_digest, wire_bytes
from reports.rendering import render_html
from store.alerts import AlertView

FONTS = ("Hiragino Sans", "Yu Gothic", "Noto Sans CJK JP", "IPAexGothic")


def _parsed(msg) -> email.message.EmailMessage:
    return email.message_from_bytes(wire_bytes(msg), policy=policy.default)


def test_the_digests_charts_are_inline_parts_not_attachments(store, tmp_path):  # noqa: F811
    write_daily_report(store, model_version=MODEL, day=DAY, out_dir=tmp_path, smtp=SmtpSettings(), now=NOW)
    got = email.message_from_bytes((tmp_path / f"digest-{DAY}.eml").read_bytes(), policy=policy.default)
    images = [p for p in got.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 2
    for part in images:
        assert part.get_content_disposition() == "inline"
        assert part["Content-ID"] and part.get_filename().endswith(".png")
    assert list(got.iter_attachments()) == []  # nothing a mail client offers as a download
    related = got.get_body(("related",))
    assert related.get_content_type() == "multipart/related"


def _alert() -> AlertView:
    return AlertView("trouble:portal@x", "trouble:portal", "portal", "firing", NOW - timedelta(hours=2),
                     NOW - timedelta(hours=1), None, 6, 8.0, fired_at=NOW - timedelta(hours=1))


def test_digest_and_alert_mails_are_dated_in_tokyo_time(store):  # noqa: F811
    digest = _parsed(build_digest(_report(store), charts=[], sender="mw@example.jp", recipient="a@example.jp"))
    alert = _parsed(build_alert_email("portal", [("firing", _alert())], sender="mw@example.jp",
                                      recipient="a@example.jp", key="k"))
    for msg in (digest, alert):
        assert msg["Date"].endswith("+0900"), msg["Date"]
        assert parsedate_to_datetime(msg["Date"]).utcoffset() == timedelta(hours=9)


def test_the_html_names_japanese_fonts_with_a_generic_fallback(store):  # noqa: F811
    html = render_html(_report(store))
    body = html[html.index("<body"):html.index(">", html.index("<body"))]
    family = body.split("font-family:", 1)[1].split(";", 1)[0]
    names = [n.strip().strip("'") for n in family.split(",")]
    assert all(f in names for f in FONTS) and names[-1] == "sans-serif"
    assert '"' not in family  # inside style="...": the attribute stays whole
    alert = _parsed(build_alert_email("portal", [("firing", _alert())], sender="mw@example.jp",
                                      recipient="a@example.jp", key="k"))
    assert "Hiragino Sans" in alert.get_body(("html",)).get_content()


@pytest.mark.parametrize("file_name, expected", [("mynawatch.sqlite", "mynawatch"), ("観測 2024.db", "観測 2024"),
                                                 ("store.sqlite3", "store")])
def test_datasette_metadata_is_keyed_by_the_stores_file_name(tmp_path, capsys, file_name, expected):
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{file_name}"\n', encoding="utf-8")
    assert main(["--config", str(config), "db", "datasette"]) == 0
    metadata = json.loads(capsys.readouterr().out)
    assert list(metadata["databases"]) == [expected]
    database = metadata["databases"][expected]
    assert "items_labeled" in database["tables"] and database["queries"]
    assert database["tables"]["items_fts"] == {"hidden": True}
    assert main(["--config", str(config), "db", "datasette", "--name", "copy"]) == 0
    assert list(json.loads(capsys.readouterr().out)["databases"]) == ["copy"]
