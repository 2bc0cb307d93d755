"""Misskey streaming through a loopback server that speaks its protocol (connect messages with a channel and
an id, channel notes, subNote and noteUpdated) and its HTTP API (notes/local-timeline with sinceId): a
recorded-style timeline with a burst about マイナ保険証, renotes, a CW note, non-public notes, malformed and
huge frames; a drop mid-burst (the live stream moves on meanwhile), a stall and a server close."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlalchemy import select

from collector.streams.config import StreamConfig
from collector.streams.runner import StreamRunner
from store.tables import Item, StreamRepost, StreamState

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "streams"))
from loopback import MisskeyServer, load  # noqa: E402
from test_streams_jetstream import wait_for  # noqa: E402


def _index(frames: list[str], key: str) -> int:
    note_id = key.rsplit("/", 1)[1]
    return next(i for i, f in enumerate(frames) if f'"id": "{note_id}"' in f)


def test_the_timeline_is_stored_once_with_its_gaps_filled(sessions):
    frames, expect = load("misskey")
    deleted = expect["burst"][10]
    server = MisskeyServer(frames, deletes=(deleted.rsplit("/", 1)[1],), pace=0.02, chunk=50)
    server.faults = {_index(frames, expect["burst"][50]): ("drop", 40), 500: ("stall", 2.5),
                     _index(frames, expect["burst"][120]): ("close", 0)}
    config = StreamConfig(name="misskey", kind="misskey", endpoint=server.url, api_url=server.api_url,
                          web_url=expect["web"], stall_seconds=1.0, backoff_seconds=0.05, max_backoff_seconds=0.2,
                          batch_seconds=0.2)
    runner = StreamRunner(config, sessions)
    runner.start()

    def done():
        with sessions.begin() as s:
            return server.position >= len(frames) and s.scalar(select(Item.id).where(Item.guid == deleted)) is None \
                and s.scalar(select(StreamState.cursor)) is not None
    try:
        wait_for(done, what="the end of the timeline and the deletion")
    finally:
        runner.stop()
        server.close()
    with sessions.begin() as s:
        posts = list(s.scalars(select(Item.guid)))
        renotes = set(s.scalars(select(StreamRepost.repost_key)))
        state = s.scalar(select(StreamState))
    assert len(posts) == len(set(posts))
    assert set(posts) == set(expect["stored"]) - {deleted}  # the gap read from the API; nothing irrelevant
    assert not set(posts) & set(expect["non_public"])
    assert renotes == {r for r in expect["renotes"]} - _renotes_of(frames, deleted)  # buzz on the originals
    # skipped and counted; a frame still unread when the connection dropped went with it (its notes come back
    # from the API, a malformed frame does not), so a slow reader may count fewer
    assert 1 <= state.errors <= expect["malformed"] + expect["huge"]
    assert state.reconnects >= 3
    connects = [m for m in server.messages if m["type"] == "connect"]
    assert {m["body"]["channel"] for m in connects} == {"localTimeline"} and len(connects) >= 4
    assert any(m["type"] == "subNote" for m in server.messages)
    assert server.api_requests and all(p == "/api/notes/local-timeline" and b["sinceId"] for p, b in server.api_requests)


def _renotes_of(frames: list[str], key: str) -> set[str]:
    note_id = key.rsplit("/", 1)[1]
    out = set()
    for f in frames:
        try:
            note = json.loads(f)["body"]["body"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(note, dict) and note.get("renoteId") == note_id:
            out.add(key.rsplit("/", 1)[0] + "/" + note["id"])
    return out
