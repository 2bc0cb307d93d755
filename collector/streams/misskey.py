"""Misskey streaming: one WebSocket (``/streaming``, a token as ``i`` when the instance wants one), channels
joined by message. Pure: URL and messages out, frames in, events out.

Joining: ``{"type": "connect", "body": {"channel": "localTimeline" | "hashtag" | ..., "id": <ours>,
"params": {...}}}`` (the hashtag channel's ``q`` is a list of lists of tags: any of the inner lists, all
tags of one); leaving: ``{"type": "disconnect", "body": {"id": <ours>}}``. Notes arrive as
``{"type": "channel", "body": {"id": <ours>, "type": "note", "body": <note>}}``. A note has ``id``,
``createdAt``, ``user`` (``username``, ``host``: null when local), ``text`` (null for a pure renote),
``cw``, ``visibility`` (public, home, followers, specified), ``renoteId``/``renote``, ``replyId``/``reply``,
``uri``/``url`` when it came from another server. Deletions are heard by subscribing to a note
(``{"type": "subNote", "body": {"id": <note id>}}``): ``{"type": "noteUpdated", "body": {"id", "type":
"deleted"}}``. Only public notes are kept. The stream has no replay: the cursor records the last note, and
after a reconnect the gap is read from the HTTP API (POST ``notes/local-timeline``, ``notes/global-timeline``
or ``notes/search-by-tag`` with ``sinceId`` and ``untilId``: from the stored cursor to the first note of the
new connection, 100 notes a page), as the same events.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

from collector.streams.config import StreamConfig
from collector.streams.events import DELETE, OTHER, POST, REPOST, Event, FrameMalformed, Post

RESUMABLE = False  # no cursor to replay from: a gap while disconnected is lost (see docs/operations.md)
PREFIX = "mynawatch-"  # our channel ids


def subscribe_url(config: StreamConfig, cursor: str | None, *, rewind_seconds: float = 0.0,
                  environ=os.environ) -> str:
    """The streaming address, with the access token from the environment when ``token_env`` names one."""
    token = environ.get(config.token_env, "") if config.token_env else ""
    return f"{config.endpoint}{'&' if '?' in config.endpoint else '?'}{urlencode({'i': token})}" if token else config.endpoint


def hello(config: StreamConfig) -> list[str]:
    """The connect messages of the configured channels (the hashtag channel with its tags)."""
    out = []
    for channel in config.channels:
        params = {"q": [[tag.lstrip("#")] for tag in config.tags]} if channel == "hashtag" else {}
        out.append(json.dumps({"type": "connect", "body": {"channel": channel, "id": PREFIX + channel,
                                                           "params": params}}, ensure_ascii=False))
    return out


def goodbye(config: StreamConfig) -> list[str]:
    return [json.dumps({"type": "disconnect", "body": {"id": PREFIX + c}}) for c in config.channels]


def watch(note_id: str) -> str:
    """Subscribe to one note (to hear of its deletion)."""
    return json.dumps({"type": "subNote", "body": {"id": note_id}})


def after(cursor: str | None, resume: str | None) -> bool:
    return True  # nothing is replayed


def decode(frame: bytes | str, *, web: str) -> Event:
    """One frame as an event. Raises FrameMalformed when it is not a Misskey streaming message."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise FrameMalformed(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
        raise FrameMalformed("not a message with a body")
    body = data["body"]
    if data.get("type") == "noteUpdated":
        if body.get("type") == "deleted" and isinstance(body.get("id"), str):
            return Event(DELETE, None, None, key=_key(web, body["id"]))
        return Event(OTHER, None, None)
    if data.get("type") != "channel" or not str(body.get("id", "")).startswith(PREFIX) or body.get("type") != "note":
        return Event(OTHER, None, None)
    note = body.get("body")
    if not isinstance(note, dict):
        raise FrameMalformed("note is not an object")
    at = _time(note.get("createdAt"))
    note_id = note.get("id")
    if not isinstance(note_id, str) or not note_id:
        raise FrameMalformed("note without an id")
    cursor = note_id
    if note.get("visibility", "public") != "public":
        return Event(OTHER, cursor, at)
    if note.get("renoteId") and note.get("text") is None and not note.get("fileIds") and not note.get("poll"):
        original = note.get("renote")
        post = _post(original, web) if isinstance(original, dict) and original.get("visibility", "public") == "public" \
            else None
        return Event(REPOST, cursor, at, post=post, key=_key(web, note_id),
                     subject=_key(web, str(note["renoteId"])), author=_author(note, web))
    return Event(POST, cursor, at, post=_post(note, web))


def note_event(note, *, web: str) -> Event:
    """A note as the API returns it, as the event its streaming message would be."""
    return decode(json.dumps({"type": "channel", "body": {"id": PREFIX, "type": "note", "body": note}}), web=web)


BACKFILL = {"localTimeline": "notes/local-timeline", "globalTimeline": "notes/global-timeline",
            "hashtag": "notes/search-by-tag"}


def backfill_requests(config: StreamConfig, since_id: str, until_id: str, *,
                      environ=os.environ) -> list[tuple[str, dict]]:
    """(address, JSON body) of the first page of notes after ``since_id`` and before ``until_id``, per channel."""
    token = environ.get(config.token_env, "") if config.token_env else ""
    out = []
    for channel in config.channels:
        body: dict = {"sinceId": since_id, "untilId": until_id, "limit": 100}
        if channel == "hashtag":
            body["query"] = [[tag.lstrip("#")] for tag in config.tags]
        if token:
            body["i"] = token
        out.append((f"{config.api}/{BACKFILL[channel]}", body))
    return out


def _post(note: dict, web: str) -> Post:
    note_id, text, cw = note.get("id"), note.get("text") or "", note.get("cw") or ""
    if not isinstance(note_id, str) or not isinstance(text, str) or not isinstance(cw, str):
        raise FrameMalformed("note id, text or cw of the wrong type")
    remote = note.get("url") or note.get("uri")
    url = remote if isinstance(remote, str) and remote.startswith(("https://", "http://")) else f"{web}/notes/{note_id}"
    return Post(key=_key(web, note_id), url=url, author=_author(note, web), text=text,
                created=_time(note.get("createdAt")), cw=cw, reply=bool(note.get("replyId")))


def _key(web: str, note_id: str) -> str:
    """A note's identity: its id on this instance."""
    return f"{web}/notes/{note_id}"


def _author(note: dict, web: str) -> str:
    user = note.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("username"), str):
        raise FrameMalformed("note without a user")
    host = user.get("host") if isinstance(user.get("host"), str) else urlsplit(web).hostname
    return f"@{user['username']}@{host}"


def _time(value) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise FrameMalformed(f"createdAt {str(value)[:40]!r} is not a time") from None
    if when.tzinfo is None:
        raise FrameMalformed("createdAt without an offset")
    try:
        return when.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # 0001-01-01T00:00+09:00, 9999-12-31T23:59-14:00: no such UTC time
        raise FrameMalformed(f"createdAt {str(value)[:40]!r} is out of range") from None
