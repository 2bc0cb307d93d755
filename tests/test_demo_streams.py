"""The demo's stream source: the sample month's recorded Bluesky stream, read by the real stream reader
(``Pipeline.start_streams``) from a loopback Jetstream on the simulated clock. Asserted on the demo's own
output: every relevant post stored once, a burst of trouble posts ahead of the news at each incident (its
first post, the stream alert within 15 minutes, the first news report after it), none on quiet days, and
the same bursts in the summary, summary.json and each day's report."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.streams import jetstream
from collector.streams.events import POST
from collector.streams.prefilter import keep
from mynawatch.demo import describe
from mynawatch.demo_streams import SAMPLE_STREAM
from store.records import Service

INCIDENTS = {"2024-09-24": {"certificate", "card"}, "2024-10-02": {"portal"},
             "2024-10-09": {"health_insurance"}, "2024-10-14": {"convenience_store"}}
QUIET = ["2024-09-17", "2024-09-18", "2024-09-19", "2024-09-20", "2024-09-21", "2024-09-22", "2024-09-28",
         "2024-09-29", "2024-09-30", "2024-10-05", "2024-10-06", "2024-10-08", "2024-10-11", "2024-10-13"]


@pytest.fixture(scope="module")
def demo(demo_month) -> Path:
    """The demo's output (conftest's ``demo_month``, built once per test process): read only here."""
    return demo_month


@pytest.fixture(scope="module")
def stream(demo) -> dict:
    return json.loads((demo / "summary.json").read_text(encoding="utf-8"))["stream"]


def _frames() -> list[str]:
    return [x for x in gzip.decompress(SAMPLE_STREAM.read_bytes()).decode("utf-8").split("\n") if x]


def test_every_frame_is_read_and_every_relevant_post_stored_once(stream):
    frames = _frames()
    posts = [e.post for e in (jetstream.decode(f, web="https://bsky.app") for f in frames) if e.kind == POST]
    relevant = {p.key for p in posts if keep(p, ("ja",))}
    assert stream["messages"] == len(frames) and stream["errors"] == 0
    assert 0 < stream["posts_stored"] == len(relevant) < len(posts) // 4  # most of the stream is never stored


def test_each_incident_has_a_burst_that_alerts_before_the_news(stream):
    bursts = stream["bursts"]
    by_day: dict[str, set[str]] = {}
    for b in bursts:
        first, fired = datetime.fromisoformat(b["first_post_at"]), datetime.fromisoformat(b["stream_alert_at"])
        news = datetime.fromisoformat(b["first_news_at"])
        assert first < fired < news, b
        assert b["lead_minutes"] == round((news - fired).total_seconds() / 60) > 0
        by_day.setdefault(b["first_post_at"][:10], set()).add(b["service"])
        if b["service"] in INCIDENTS.get(b["first_post_at"][:10], ()):
            assert fired - first <= timedelta(minutes=25), b
    assert set(by_day) == set(INCIDENTS)  # a burst on each incident day, none on any other day
    for day, services in INCIDENTS.items():
        assert by_day[day] & services, (day, by_day[day])
    within = [b for b in bursts if datetime.fromisoformat(b["stream_alert_at"])
              - datetime.fromisoformat(b["first_post_at"]) <= timedelta(minutes=15)]
    assert {b["first_post_at"][:10] for b in within} == set(INCIDENTS)  # each incident: alerted within 15 minutes
    assert not set(QUIET) & set(by_day)


def test_the_summary_prints_each_burst_against_the_news(demo, stream):
    from mynawatch.demo import DemoResult

    summary = json.loads((demo / "summary.json").read_text(encoding="utf-8"))
    text = describe(DemoResult(demo, collected=summary["collected"], kept=summary["kept"],
                               rejected=summary["rejected"], stories=summary["stories"], stream=stream))
    assert f"Bluesky stream (replayed Jetstream): {stream['messages']:,} messages read, " \
           f"{stream['posts_stored']} posts stored" in text
    for b in stream["bursts"]:
        line = (f"  {b['first_post_at'][:10]}  {b['first_post_at'][11:16]} / {b['stream_alert_at'][11:16]} / "
                f"{b['first_news_at'][11:16]}  {Service(b['service']).display}: alert {b['lead_minutes']} min "
                f"before the news")
        assert line in text.splitlines()


def _panel(text: str) -> list[str]:
    """The lines of a text report's social panel."""
    return text.split("■ ソーシャル（ストリームの投稿 / 投稿者 / リポスト）\n", 1)[1].split("\n\n", 1)[0].splitlines()


def test_each_days_report_shows_its_social_panel_and_bursts(demo, stream):
    reports = demo / "reports"
    for b in stream["bursts"]:
        day = b["first_post_at"][:10]
        text = (reports / f"report-{day}.txt").read_text(encoding="utf-8")
        md = f"{day[5:7]}/{day[8:10]}"
        line = (f"- 急増 {Service(b['service']).display}: 最初の投稿 {md} {b['first_post_at'][11:16]} → ストリームのアラート "
                f"{md} {b['stream_alert_at'][11:16]} → 最初のニュース {md} {b['first_news_at'][11:16]}"
                f"（ニュースの{b['lead_minutes']}分前）")
        assert line in _panel(text), (day, line)
        html = (reports / f"report-{day}.html").read_text(encoding="utf-8")
        assert "ソーシャル（ストリームの投稿 / 投稿者 / リポスト）</h2>" in html and "最初の投稿" in html
    for day in QUIET:  # a quiet day's panel has its counts and no burst
        panel = _panel((reports / f"report-{day}.txt").read_text(encoding="utf-8"))
        assert panel and all(line == "- なし" or line.count(" / ") == 2 for line in panel), panel
    panel = _panel((reports / "report-2024-10-02.txt").read_text(encoding="utf-8"))
    row = next(x for x in panel if x.startswith("- マイナポータル: "))
    posts, authors, reposts = map(int, row.split(": ", 1)[1].split(" / "))
    assert posts >= 70 and authors >= 70 and reposts > 0  # the burst's 70 posts from 70 accounts, reposted
