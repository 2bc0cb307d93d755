"""The demo's stream source: the sample month's recorded Bluesky stream, replayed by a loopback Jetstream
on the simulated clock and read by the real stream reader (``Pipeline.start_streams``), and what the
summary says of it: each burst of trouble posts (its first post), when a stream alert fired on it
(evaluated every five minutes, as `run` does with ``[alerts] signal = "stream_trouble"``), and the first
news report of it (``reports.stream_alerts.stream_bursts``, as the daily report's social panel shows them)."""

from __future__ import annotations

import time as clock_time
from datetime import datetime
from pathlib import Path

from collector.streams.config import StreamConfig
from mynawatch.streamserver import StreamServer
from reports.stream_alerts import stream_bursts
from store import streams as store_streams
from store.clock import TOKYO
from store.records import Service

SAMPLE_STREAM = Path(__file__).parent / "sample" / "streams" / "bluesky.jsonl.gz"
NAME = "bluesky"


def sample_stream(now: datetime) -> StreamServer:
    return StreamServer(SAMPLE_STREAM, now=now)


def stream_config(url: str) -> StreamConfig:
    """The demo's stream: batches cut at once (the replay sends an hour's frames together), no stall on the
    simulated clock's pauses (the classify and report steps)."""
    return StreamConfig(name=NAME, kind="jetstream", endpoint=url, batch_seconds=0.002, stall_seconds=600.0)


def catch_up(sessions, server: StreamServer, now: datetime, timeout: float = 60.0) -> None:
    """Wait until the reader has stored every frame the stream sent up to ``now``."""
    want = server.last_cursor(now)
    deadline = clock_time.monotonic() + timeout
    while want is not None:
        with sessions.begin() as session:
            if store_streams.cursor_of(session, NAME) == want:
                return
        if clock_time.monotonic() > deadline:
            raise TimeoutError(f"the demo's stream reader did not catch up with {now:%Y-%m-%d %H:%M}")
        clock_time.sleep(0.002)


def stream_summary(sessions, model_version: str, start: datetime, end: datetime, *, params, params_for) -> dict:
    """What the stream brought: frames read, posts stored, and each burst against the first news (summary.json)."""
    with sessions.begin() as session:
        [row] = [r for r in store_streams.stream_rows(session) if r.name == NAME]
        bursts = stream_bursts(session, model_version=model_version, since=start, until=end, params=params,
                               params_for=params_for)
    return {"name": NAME, "messages": row.messages, "posts_stored": row.items, "errors": row.errors,
            "bursts": [{"service": b.service, "first_post_at": _iso(b.first_post), "stream_alert_at": _iso(b.fired),
                        "first_news_at": _iso(b.first_news), "lead_minutes": b.lead_minutes} for b in bursts]}


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(TOKYO).isoformat(timespec="seconds") if when else None


def describe_stream(stream: dict) -> list[str]:
    """The summary's lines on the stream: what was read and kept, then each burst against the first news."""
    if not stream:
        return []
    lines = [f"Bluesky stream (replayed Jetstream): {stream['messages']:,} messages read, "
             f"{stream['posts_stored']} posts stored (the rest not Japanese or not about the systems)",
             f"social bursts: {len(stream['bursts'])} (first post / stream alert / first news report, Tokyo; the "
             "stream alert as evaluations every five minutes raise it)"]
    for b in stream["bursts"]:
        news = b["first_news_at"][11:16] if b["first_news_at"] else "  -  "
        lead = b["lead_minutes"]
        lead = "" if lead is None else f": alert {abs(lead)} min {'before' if lead >= 0 else 'after'} the news"
        lines.append(f"  {b['first_post_at'][:10]}  {b['first_post_at'][11:16]} / {b['stream_alert_at'][11:16]} / "
                     f"{news}  {Service(b['service']).display}{lead}")
    return lines
