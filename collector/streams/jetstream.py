"""Bluesky Jetstream: JSON over WebSocket, one frame per event of the network. Pure: URL in, frames in,
events out.

Subscribing: ``/subscribe`` with ``wantedCollections`` and ``wantedDids`` (repeated parameters), a
``cursor`` in unix microseconds to replay from, and ``maxMessageSizeBytes`` so the server leaves out what
we would skip anyway. Compression (zstd with Jetstream's own dictionary) is optional and not asked for.
Frames: ``{"did", "time_us", "kind": "commit" | "identity" | "account", ...}``; a commit carries
``{"operation": "create" | "update" | "delete", "collection", "rkey", "record"}``. Posts are
``app.bsky.feed.post`` records (``text``, ``langs``, ``reply``), reposts ``app.bsky.feed.repost`` records
(``subject.uri``). Every frame moves the cursor to its ``time_us``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import urlencode

from collector.streams.config import StreamConfig
from collector.streams.events import DELETE, OTHER, POST, REPOST, UNREPOST, Event, FrameMalformed, Post

POST_NSID, REPOST_NSID = "app.bsky.feed.post", "app.bsky.feed.repost"
RESUMABLE = True  # a cursor replays what was missed
MAX_TIME_US = 253_402_300_799_000_000  # 9999-12-31: beyond it no datetime exists


def subscribe_url(config: StreamConfig, cursor: str | None, *, rewind_seconds: float = 0.0) -> str:
    """The address to connect to: collections, accounts, size limit and (when resuming) the cursor,
    ``rewind_seconds`` earlier so nothing at the edge is missed (the overlap is deduplicated by the store)."""
    params = [("wantedCollections", c) for c in config.collections] + [("wantedDids", d) for d in config.dids]
    params.append(("maxMessageSizeBytes", str(config.max_frame_bytes)))
    if cursor is not None:
        params.append(("cursor", str(max(0, int(cursor) - int(rewind_seconds * 1_000_000)))))
    return f"{config.endpoint}{'&' if '?' in config.endpoint else '?'}{urlencode(params)}"


def hello(config: StreamConfig) -> list[str]:
    """Messages to send once connected: none (the subscription is in the URL)."""
    return []


def after(cursor: str | None, resume: str | None) -> bool:
    """True when ``cursor`` lies past ``resume`` (a frame of the rewound overlap is not counted twice)."""
    return resume is None or cursor is None or int(cursor) > int(resume)


def decode(frame: bytes | str, *, web: str) -> Event:
    """One frame as an event. Raises FrameMalformed when it is not a Jetstream event."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise FrameMalformed(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise FrameMalformed("not a JSON object")
    did, time_us, kind = data.get("did"), data.get("time_us"), data.get("kind")
    if not isinstance(time_us, int) or isinstance(time_us, bool) or not 0 < time_us < MAX_TIME_US:
        raise FrameMalformed("time_us missing or out of range")
    if not isinstance(did, str) or not did.startswith("did:"):
        raise FrameMalformed("did missing")
    cursor, at = str(time_us), datetime.fromtimestamp(time_us / 1_000_000, timezone.utc)
    if kind != "commit":
        return Event(OTHER, cursor, at)  # identity, account: nothing to store
    commit = data.get("commit")
    if not isinstance(commit, dict):
        raise FrameMalformed("commit missing")
    operation, collection, rkey = commit.get("operation"), commit.get("collection"), commit.get("rkey")
    if not isinstance(rkey, str) or not rkey or "/" in rkey:
        raise FrameMalformed("commit without a record key")
    key = f"at://{did}/{collection}/{rkey}"
    if collection == POST_NSID:
        if operation == "delete":
            return Event(DELETE, cursor, at, key=key)
        if operation == "create":
            return Event(POST, cursor, at, post=_post(commit.get("record"), did, rkey, key, at, web))
    elif collection == REPOST_NSID:
        if operation == "delete":
            return Event(UNREPOST, cursor, at, key=key)
        if operation == "create":
            record = commit.get("record")
            subject = record.get("subject") if isinstance(record, dict) else None
            uri = subject.get("uri") if isinstance(subject, dict) else None
            if not isinstance(uri, str) or not uri.startswith("at://"):
                raise FrameMalformed("repost without a subject")
            return Event(REPOST, cursor, at, key=key, subject=uri, author=did)
    return Event(OTHER, cursor, at)


def _post(record, did: str, rkey: str, key: str, at: datetime, web: str) -> Post:
    if not isinstance(record, dict):
        raise FrameMalformed("post without a record")
    text, langs = record.get("text", ""), record.get("langs") or []
    if not isinstance(text, str) or not isinstance(langs, list):
        raise FrameMalformed("post text or langs of the wrong type")
    # dated by when the network saw it: createdAt is set by the client and may be any time
    return Post(key=key, url=f"{web}/profile/{did}/post/{rkey}", author=did, text=text, created=at,
                langs=tuple(x for x in langs if isinstance(x, str))[:3], reply=isinstance(record.get("reply"), dict))
