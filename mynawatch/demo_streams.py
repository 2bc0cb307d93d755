"""The demo's stream source: the sample month's recorded Bluesky stream, replayed by a loopback Jetstream
on the simulated clock and read by the real stream reader (``Pipeline.start_streams``), and what the
summary says of it: each burst of trouble posts, when a stream alert would have fired (evaluated every
five minutes, as `run` does with ``[alerts] signal = "stream_trouble"``), and the first news report of it."""

from __future__ import annotations

import time as clock_time
from datetime import datetime, timedelta
from pathlib import Path

from collector.streams.config import StreamConfig
from mynawatch.streamserver import StreamServer
from reports.stream_alerts import firings
from store import streams as store_streams
from store.clock import TOKYO
from store.records import Service
from store.stream_signals import first_news_at, first_post_at, stream_series

SAMPLE_STREAM = Path(__file__).parent / "sample" / "streams" / "bluesky.jsonl.gz"
NAME = "bluesky"


def sample_stream(now: datetime) -> StreamServer:
    return StreamServer(SAMPLE_STREAM, now=now)


def stream_config(url: str) -> StreamConfig:
    return StreamConfig(name=NAME, kind="jetstream", endpoint=url, batch_seconds=0.05, stall_seconds=600.0)


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


def social_leads(sessions, model_version: str, start: datetime, end: datetime) -> list[dict]:
    """Each stream burst: when its alert fired, and the first news report of that service the same day."""
    with sessions.begin() as session:
        first = first_post_at(session)
        if first is None:
            return []
        series = {f"stream_trouble:{k}": v for k, v in
                  stream_series(session, model_version, start, end, signal="trouble").items()}
        out = []
        for name, fired in firings(series, start=start, end=end, warm_from=first):
            service = name.split(":", 1)[1]
            day = fired.astimezone(TOKYO).replace(hour=0, minute=0, second=0, microsecond=0)
            news = first_news_at(session, model_version, service, day, day + timedelta(days=1))
            out.append({"service": service, "stream_alert_at": fired.astimezone(TOKYO).isoformat(),
                        "first_news_at": news.astimezone(TOKYO).isoformat() if news else None,
                        "lead_minutes": round((news - fired).total_seconds() / 60) if news else None})
    return out


def describe_leads(leads: list[dict]) -> list[str]:
    if not leads:
        return []
    lines = ["social bursts (the Bluesky stream, alerts evaluated every five minutes) against the first news:"]
    for x in leads:
        when = x["stream_alert_at"][:16].replace("T", " ")
        news = (f"first news report {x['first_news_at'][11:16]}, {x['lead_minutes']} min "
                f"{'later' if x['lead_minutes'] >= 0 else 'earlier'}") if x["first_news_at"] else "no news report that day"
        lines.append(f"  {when} JST  {Service(x['service']).display}: stream alert; {news}")
    return lines
