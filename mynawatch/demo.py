"""`mynawatch demo`: the whole pipeline over the bundled sample month, offline, on a simulated clock."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from classifier.cache import load_or_train
from collector.fetch import make_client
from collector.sources import SourceConfig
from mynawatch.demo_streams import catch_up, describe_stream, sample_stream, stream_config, stream_summary
from mynawatch.feedserver import FeedServer, ReplayFeed
from mynawatch.pipeline import Pipeline
from mynawatch.settings import Settings, load_settings
from reports.charts import render_mentions_chart
from reports.daily import stories_per_day
from reports.jobs import format_event
from store import incidents as store_incidents
from store import items as store_items
from store import signals as store_signals
from store import streams as store_streams
from store.clock import TOKYO, shown
from store.records import Service

SAMPLE = Path(__file__).parent / "sample"
SETTINGS = SAMPLE / "demo.toml"
FIRST_DAY, DAYS = date(2024, 9, 16), 30


@dataclass
class DemoResult:
    out_dir: Path
    collected: int = 0
    kept: int = 0
    rejected: int = 0
    stories: int = 0
    alerts: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)
    requests: int = 0
    stream: dict = field(default_factory=dict)  # the Bluesky stream: messages, posts stored, bursts
    summary: dict = field(default_factory=dict)  # summary.json, but the stream


def _sample_config() -> list[dict]:
    return tomllib.loads((SAMPLE / "sources.toml").read_text(encoding="utf-8"))["sources"]


def sample_feeds() -> dict[str, ReplayFeed]:
    """The sample month's feed files, ready to replay (Google News keeps more items, as it does)."""
    return {s["file"]: ReplayFeed(SAMPLE / "feeds" / s["file"], keep=60 if s["kind"] == "google_news" else 30)
            for s in _sample_config()}


def _clear_earlier_demo(out_dir: Path) -> None:
    """Remove an earlier demo's output; refuse any other folder (a mistyped --out must never wipe one)."""
    if not out_dir.is_dir():
        raise DemoFolderError(f"{out_dir}: exists and is not a folder; choose another --out")
    made_by_demo = (out_dir / MARKER).exists() or (out_dir / "summary.json").exists()  # summary: older demos
    if any(out_dir.iterdir()) and not made_by_demo:
        raise DemoFolderError(f"{out_dir}: not empty and not an earlier demo's output (no {MARKER}); "
                              "choose another --out or empty it yourself")
    shutil.rmtree(out_dir)


def sample_sources(base_url: str) -> list[SourceConfig]:
    return [SourceConfig(url=base_url + s["file"], **{k: v for k, v in s.items() if k != "file"})
            for s in _sample_config()]


MARKER = ".mynawatch-demo"  # marks a folder the demo made, which a later run may replace


class DemoFolderError(ValueError):
    """The demo's output folder holds something other than an earlier demo's output."""


def demo_settings(out_dir: Path, base_url: str, stream_url: str | None = None) -> Settings:
    """The demo's settings: its own shipped file, with the store, report folder, sources and stream of this run."""
    settings = load_settings(SETTINGS)
    return dataclasses.replace(settings, database_url=f"sqlite:///{out_dir / 'mynawatch.sqlite'}",
                               report_dir=out_dir / "reports", sources=tuple(sample_sources(base_url)),
                               streams=(stream_config(stream_url),) if stream_url else ())


def run_demo(out_dir: Path, *, days: int = DAYS, say=print) -> DemoResult:
    if out_dir.exists():
        _clear_earlier_demo(out_dir)
    out_dir.mkdir(parents=True)
    marker = out_dir / MARKER
    try:
        marker.write_text("written by `mynawatch demo`; the next demo run may replace this folder\n", encoding="utf-8")
    except OSError as exc:  # a full disk fails the write, not the open: name the file, as an open would
        raise OSError(exc.errno, exc.strerror, str(marker)) from None
    start = datetime.combine(FIRST_DAY, time(0), tzinfo=TOKYO)
    say("training the classifier on the shipped corpus (cached after the first run) ...")
    load_or_train()  # here, so the message comes before the wait (the first classify step then finds it cached)
    result = DemoResult(out_dir)
    alerts_log = (out_dir / "alerts.log").open("w", encoding="utf-8")
    feeds = sample_feeds()
    with FeedServer(feeds, now=start) as server, sample_stream(start) as stream:
        settings = demo_settings(out_dir, server.base_url, stream.url)
        with make_client(settings.fetch) as client, Pipeline(settings, client=client) as pipeline:
            pipeline.start_streams(now=lambda: stream.now)  # the stream reader of `run`, on the simulated clock
            say(f"serving {len(feeds)} sample feeds on {server.base_url} and a Bluesky stream on {stream.url}, "
                f"collecting hour by hour from {FIRST_DAY} for {days} days ...")
            version = _replay(pipeline, server, stream, start, days, result, alerts_log)
        result.requests = server.requests
    alerts_log.close()
    _summarize(pipeline.sessions, version, start, days, result)
    result.stream = stream_summary(pipeline.sessions, version, start, start + timedelta(days=days),
                                   params=settings.spikes, params_for=dict(settings.spikes_for))
    (out_dir / "summary.json").write_text(json.dumps(_summary_json(result), ensure_ascii=False, indent=2),
                                          encoding="utf-8")
    return result


def _replay(pipeline: Pipeline, server: FeedServer, stream, start: datetime, days: int, result: DemoResult,
            alerts_log) -> str:
    """The month, hour by hour: what `run`'s jobs do (the same pipeline steps), on the simulated clock. The
    stream's posts up to each hour are stored before that hour's round of the feeds."""
    version = ""
    for day_index in range(days):
        day = FIRST_DAY + timedelta(days=day_index)
        for hour in range(1, 25):
            now = start + timedelta(days=day_index, hours=hour)
            server.now = stream.now = now
            catch_up(pipeline.sessions, stream, now)
            pipeline.collect(now=now)
        end_of_day = start + timedelta(days=day_index + 1)
        version = pipeline.classify(now=end_of_day).model_version
        for event in pipeline.check_alerts(now=end_of_day):
            alerts_log.write(format_event(event) + "\n")
            if event.kind == "firing":
                a = event.alert
                result.alerts.append({"service": a.service, "started_at": a.started_at.astimezone(TOKYO).isoformat(),
                                      "day": a.started_at.astimezone(TOKYO).date().isoformat(),
                                      "peak_count": a.peak_count, "score": a.score})
        pipeline.write_report(day=day, now=end_of_day)
    return version


def _summarize(sessions, version: str, start: datetime, days: int, result: DemoResult) -> None:
    """The month's counts and chart, and summary.json."""
    out_dir, end = result.out_dir, start + timedelta(days=days)
    with sessions.begin() as session:
        counts = store_items.count_items(session)
        stream_posts, stream_stories = store_streams.stream_share(session)  # the news figures leave them out
        per_day = stories_per_day(store_signals.count_relevant(session, version, start, end))
        kept = store_signals.count_collected(session, version, start, end)[1]
        result.incidents = [{"id": i.id, "services": list(i.services), "start": shown(i.start),
                             "acknowledged": shown(i.first_official) if i.first_official else None,
                             "recovered": shown(i.recovered) if i.recovered else None, "end": shown(i.end)}
                            for i in store_incidents.incidents_between(session, start, end)]
    alert_days = sorted({date.fromisoformat(a["day"]) for a in result.alerts})
    (out_dir / "mentions-month.png").write_bytes(render_mentions_chart(
        per_day, start=FIRST_DAY, end=FIRST_DAY + timedelta(days=days - 1),
        title=f"サービス別の言及（記事群数／日） {FIRST_DAY:%Y/%m/%d}〜", marks=alert_days))
    result.collected, result.stories = counts["items"] - stream_posts, counts["stories"] - stream_stories
    result.kept = kept
    result.rejected = result.collected - result.kept
    result.summary = {
        "collected": result.collected, "kept": result.kept, "rejected": result.rejected,
        "gate_rejected": counts["gate_rejected"], "stories": result.stories, "alerts": result.alerts,
        "incidents": result.incidents,
        "stories_per_day": {d.isoformat(): {str(s): n for s, n in per.items()} for d, per in sorted(per_day.items())},
        "model_version": version, "http_requests": result.requests,
    }


def _summary_json(result: DemoResult) -> dict:
    return {**result.summary, "stream": result.stream}


def describe(result: DemoResult) -> str:
    lines = [
        f"items collected: {result.collected} ({result.stories} stories)",
        f"kept as relevant: {result.kept}; rejected as irrelevant: {result.rejected}",
        f"alerts raised: {len(result.alerts)}",
    ]
    lines += [f"  {a['started_at'][:16].replace('T', ' ')} JST  {Service(a['service']).display} "
              f"(peak {a['peak_count']} stories/hour, score {a['score']:.1f})" for a in result.alerts]
    lines.append(f"incidents: {len(result.incidents)} (first report / official acknowledgement / recovery report, Tokyo)")
    def hm(shown_time):
        return shown_time[11:16] if shown_time else "-"

    lines += [f"  {i['id']:32} {hm(i['start'])} / {hm(i['acknowledged'])} / {hm(i['recovered'])}"
              for i in result.incidents]
    lines += describe_stream(result.stream)
    out = result.out_dir
    lines += [
        "look at:",
        f"  {out / 'reports'}/report-YYYY-MM-DD.html and .txt   daily reports",
        f"  {out / 'reports'}/digest-YYYY-MM-DD.eml             digest emails",
        f"  {out / 'mentions-month.png'}                        mentions per service over the month",
        f"  {out / 'alerts.log'}                                 alerts raised and resolved",
        f"  {out / 'mynawatch.sqlite'}                          the store (sqlite3 it)",
    ]
    return "\n".join(lines)
