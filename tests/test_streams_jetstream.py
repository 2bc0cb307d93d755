"""Bluesky Jetstream through a loopback WebSocket server that speaks its protocol: a recorded-style
stream of thousands of frames (most of them irrelevant) with a burst about マイナ保険証, replayed with an
abrupt drop mid-burst, a stall and a server close; malformed and huge frames; a delete and an unrepost."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.streams.config import StreamConfig
from collector.streams.runner import StreamRunner
from store.tables import Item, Source, StreamRepost, StreamState

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "streams"))
from loopback import JetstreamServer, load  # noqa: E402


def stream_config(url: str, **kw) -> StreamConfig:
    fast = dict(stall_seconds=1.0, backoff_seconds=0.05, max_backoff_seconds=0.2, batch_seconds=0.2)
    return StreamConfig(name="bsky", endpoint=url, kind="jetstream", **(fast | kw))


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cursor(sessions) -> str | None:
    with sessions.begin() as s:
        return s.scalar(select(StreamState.cursor))


def stored_posts(sessions) -> list[str]:
    with sessions.begin() as s:
        return list(s.scalars(select(Item.guid).join(Source, Source.id == Item.source_id)
                              .where(Source.kind == "jetstream")))


def frame_of(frames: list[str], key: str) -> int:
    rkey = key.rsplit("/", 1)[1]
    return next(i for i, f in enumerate(frames) if f'"rkey": "{rkey}"' in f)


@pytest.fixture(scope="module")
def recorded():
    return load("jetstream")


def test_the_burst_is_stored_once_across_a_drop_a_stall_and_a_server_close(sessions, recorded):
    frames, expect = recorded
    server = JetstreamServer(frames)
    server.faults = {frame_of(frames, expect["burst"][60]): ("drop", 0), 600: ("stall", 2.5),
                     frame_of(frames, expect["burst"][120]): ("close", 0), 3000: ("drop", 0)}
    runner = StreamRunner(stream_config(server.url), sessions)
    runner.start()
    try:
        wait_for(lambda: cursor(sessions) == str(expect["last_time_us"]), what="the end of the stream")
    finally:
        runner.stop()
        server.close()
    posts = stored_posts(sessions)
    assert len(posts) == len(set(posts))  # once each
    assert set(posts) == set(expect["stored"])  # every relevant post, nothing irrelevant, the deleted one gone
    assert set(expect["burst"]) - set(expect["deleted"]) <= set(posts)
    with sessions.begin() as s:
        reposts = set(s.scalars(select(StreamRepost.repost_key)))
        state = s.scalar(select(StreamState))
        gated = s.scalar(select(func.count(Item.id)).where(Item.gate != "pass"))
    assert reposts == set(expect["reposts"])  # buzz on stored originals; the unrepost and the deleted post's gone
    assert gated == 0
    assert state.errors == expect["malformed"] + expect["huge"]  # skipped, counted
    assert state.messages == expect["frames"] - expect["malformed"] - expect["huge"]  # the overlap not twice
    assert state.reconnects >= 4 and state.state == "stopped"
    resumed = [p for p in server.connections[1:]]
    assert len(server.connections) >= 5 and all("cursor=" in p for p in resumed)
    assert "wantedCollections=app.bsky.feed.post" in server.connections[0]


def test_a_restart_resumes_from_the_stored_cursor_rewound_a_few_seconds(sessions, recorded):
    frames, expect = recorded
    server = JetstreamServer(frames[:1000])
    runner = StreamRunner(stream_config(server.url), sessions)
    runner.start()
    wait_for(lambda: cursor(sessions) is not None and int(cursor(sessions)) == server.times[999], what="frame 1000")
    runner.stop()
    server.close()
    first = set(stored_posts(sessions))
    server = JetstreamServer(frames)
    runner = StreamRunner(stream_config(server.url, rewind_seconds=5.0), sessions)
    runner.start()
    try:
        wait_for(lambda: cursor(sessions) == str(expect["last_time_us"]), what="the end of the stream")
    finally:
        runner.stop()
        server.close()
    resumed_at = int(server.connections[0].split("cursor=")[1].split("&")[0])
    assert resumed_at == server.times[999] - 5_000_000
    posts = stored_posts(sessions)
    assert len(posts) == len(set(posts)) and set(posts) == set(expect["stored"]) and first <= set(posts)


def test_a_store_slower_than_the_stream_drops_behind_then_catches_up_without_loss(sessions, recorded, tmp_path,
                                                                                 caplog):
    """Another process holds the store's write lock for a while: the queue fills, the reader holds back, then
    lets the connection go ("dropping behind") and resumes from the stored cursor once the store is free."""
    import sqlite3

    frames, expect = recorded
    server = JetstreamServer(frames, pace=0.01, chunk=50)
    config = stream_config(server.url, queue_batches=2, batch_messages=50, batch_seconds=0.1,
                           backpressure_seconds=0.3, stall_seconds=5.0)
    runner = StreamRunner(config, sessions)
    states = []
    runner.start()
    try:
        wait_for(lambda: cursor(sessions) is not None, what="a first batch")
        blocker = sqlite3.connect(tmp_path / "store.sqlite", timeout=30)
        blocker.execute("BEGIN IMMEDIATE")  # the store is busy: no writer gets in
        time.sleep(4.0)
        with sessions.begin() as s:  # readers still can
            states.append(s.scalar(select(StreamState.state)))
        blocker.rollback()
        blocker.close()
        wait_for(lambda: cursor(sessions) == str(expect["last_time_us"]), timeout=90, what="the end of the stream")
    finally:
        runner.stop()
        server.close()
    assert states == ["connected"] or states == ["dropping behind"]
    assert any("dropping behind" in r.getMessage() for r in caplog.records)
    posts = stored_posts(sessions)
    assert len(posts) == len(set(posts)) and set(posts) == set(expect["stored"])
    with sessions.begin() as s:
        assert s.scalar(select(StreamState.dropped)) == 0  # a resumable stream loses nothing
    assert len(server.connections) >= 2 and "cursor=" in server.connections[-1]
