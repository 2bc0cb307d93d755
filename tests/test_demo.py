"""End to end: `mynawatch demo` over the sample month, asserting concrete results."""

from __future__ import annotations

import email
import json
import sqlite3
from collections import defaultdict
from email import policy
from pathlib import Path

import pytest
from conftest import copy_demo

from collector.dedup import canonical_url
from mynawatch.demo import SAMPLE

INCIDENTS = {"2024-09-24": {"certificate", "card"}, "2024-10-02": {"portal"},
             "2024-10-09": {"health_insurance"}, "2024-10-14": {"convenience_store"}}
QUIET = ["2024-09-17", "2024-09-18", "2024-09-19", "2024-09-20", "2024-09-21", "2024-09-22", "2024-09-28",
         "2024-09-29", "2024-09-30", "2024-10-05", "2024-10-06", "2024-10-08", "2024-10-11", "2024-10-13"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_month):
    return copy_demo(demo_month, tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def summary(demo):
    return json.loads((demo / "summary.json").read_text(encoding="utf-8"))


def _truth() -> list[dict]:
    rows = []
    for path in sorted((SAMPLE / "truth").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.open(encoding="utf-8")]
    return rows


def _stored(demo) -> dict[str, dict]:
    """Stored items with their label and story, keyed by canonical URL and by title."""
    db = sqlite3.connect(demo / "mynawatch.sqlite")
    rows = db.execute("""
        SELECT i.canonical_url, i.title, i.story_id, i.gate, c.relevant
        FROM items i LEFT JOIN classifications c ON c.item_id = i.id""").fetchall()
    out = {}
    for url, title, story, gate, relevant in rows:
        row = {"story": story, "relevant": bool(relevant) and gate == "pass", "title": title}
        out[url] = out[title] = row
    return out


def _find(stored, truth_row):
    hit = stored.get(canonical_url(truth_row["key"])) or stored.get(truth_row["title"])
    if hit is None:  # Google News titles lose their " - 媒体名"; Mastodon truth titles are the first 40 characters
        hit = next((v for k, v in stored.items() if truth_row["title"].startswith(k) or k.startswith(truth_row["title"])), None)
    return hit


def test_every_incident_day_raises_an_alert_for_its_service(summary):
    raised = defaultdict(set)
    for alert in summary["alerts"]:
        raised[alert["day"]].add(alert["service"])
    for day, services in INCIDENTS.items():
        assert raised[day] & services, (day, raised[day])


def test_quiet_days_raise_no_alert(summary):
    days = {a["day"] for a in summary["alerts"]}
    assert not days & set(QUIET), sorted(days & set(QUIET))


def test_the_sample_is_collected_whole_and_once(demo, summary):
    truth = _truth()
    stored = _stored(demo)
    trend_rows = [t for t in truth if t["feed"] == "google_trends"]
    items = [t for t in truth if t["feed"] != "google_trends"]
    missing = [t["title"] for t in items if _find(stored, t) is None]
    assert not missing
    # every stored item is unique by canonical URL; the same page bookmarked on はてブ is not a second item
    assert summary["collected"] <= len(items)
    db = sqlite3.connect(demo / "mynawatch.sqlite")
    assert db.execute("SELECT count(*) FROM trend_points").fetchone()[0] == len(trend_rows)


def test_distractors_are_not_counted(demo, summary):
    stored = _stored(demo)
    distractors = [t for t in _truth() if t["kind"] == "distractor"]
    wrong = [t["title"] for t in distractors if (_find(stored, t) or {}).get("relevant")]
    assert len(distractors) >= 100
    assert len(wrong) <= 0.05 * len(distractors), wrong
    for word in ("マイナス金利", "マイナビ", "障害者"):
        named = [t for t in distractors if word in t["title"]]
        assert named and all(not _find(stored, t)["relevant"] for t in named), word
    # the ATM outage day is not a マイナ incident in the chart
    assert sum(summary["stories_per_day"].get("2024-09-27", {}).values()) <= 6


def test_syndicated_copies_count_once_per_story(demo, summary):
    stored = _stored(demo)
    copies = [_find(stored, t) for t in _truth() if t["story"] == "I2-wire"]
    assert len(copies) >= 5
    clusters = {c["story"] for c in copies}
    assert len(clusters) <= 2, clusters  # the wire copies fold into one story (a rewrite may stand apart)
    db = sqlite3.connect(demo / "mynawatch.sqlite")
    items_on_day = db.execute("""
        SELECT count(*) FROM items i JOIN classifications c ON c.item_id = i.id
        JOIN classification_services s ON s.classification_id = c.id
        WHERE c.relevant AND s.service = 'portal' AND i.gate = 'pass'
          AND i.published_at >= '2024-10-01 15:00' AND i.published_at < '2024-10-02 15:00'""").fetchone()[0]
    stories_on_day = summary["stories_per_day"]["2024-10-02"]["portal"]
    assert stories_on_day <= items_on_day - (len(copies) - len(clusters))


def test_reports_digests_and_chart_are_written(demo, summary):
    reports = demo / "reports"
    assert len(list(reports.glob("report-*.html"))) == 30 and len(list(reports.glob("report-*.txt"))) == 30
    text = (reports / "report-2024-10-02.txt").read_text(encoding="utf-8")
    html = (reports / "report-2024-10-02.html").read_text(encoding="utf-8")
    portal = summary["stories_per_day"]["2024-10-02"]["portal"]
    assert "マイナ関連 日次レポート 2024年10月02日" in text and "■ アラート" in text
    assert f"- マイナポータル: {portal} /" in text
    assert "<h2" in html and "マイナポータル" in html and "主な記事" in html
    quiet = (reports / "report-2024-09-18.txt").read_text(encoding="utf-8")
    assert "■ アラート\n- なし" in quiet
    msg = email.message_from_bytes((reports / "digest-2024-10-02.eml").read_bytes(), policy=policy.default)
    assert "2024年10月02日" in msg["Subject"] and msg.get_body(("html",)) and msg.get_body(("plain",))
    assert (demo / "mentions-month.png").read_bytes()[:4] == b"\x89PNG"
    log = (demo / "alerts.log").read_text(encoding="utf-8")
    assert log.count("FIRING") == len(summary["alerts"])
