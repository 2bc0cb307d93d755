"""The stream adapters, the prefilter, the status table and the settings, on hand-made frames in the shapes
of each protocol's documentation."""

from __future__ import annotations

import json
import random
import re
from dataclasses import fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.streams import jetstream, misskey
from collector.streams.config import StreamConfig
from collector.streams.events import DELETE, OTHER, POST, REPOST, UNREPOST, FrameMalformed, Post
from collector.streams.intake import Intake
from collector.streams.prefilter import keep_reason
from collector.streams.runner import Backoff
from collector.streams.status import describe_streams, stream_flags
from store.streams import StreamRow

BSKY = StreamConfig(name="bsky", endpoint="wss://jetstream.example/subscribe", max_frame_bytes=2000)
MISSKEY = StreamConfig(name="mk", kind="misskey", endpoint="wss://misskey.example/streaming",
                       channels=("localTimeline", "hashtag"), tags=("#マイナ保険証", "マイナポータル"), token_env="MK_TOKEN")
T = 1727856000123456


def commit(operation="create", collection="app.bsky.feed.post", record=None, **extra):
    c = {"rev": "3l", "operation": operation, "collection": collection, "rkey": "3labc", **extra}
    if record is not None:
        c["record"] = record
    return json.dumps({"did": "did:plc:abc", "time_us": T, "kind": "commit", "commit": c}, ensure_ascii=False)


def test_jetstream_frames():
    post = jetstream.decode(commit(record={"text": "マイナ保険証が使えない", "langs": ["ja"], "reply": {"root": {}}}),
                            web=BSKY.web)
    assert post.kind == POST and post.cursor == str(T) and post.at == datetime(2024, 10, 2, 8, 0, 0, 123456, timezone.utc)
    assert post.post.url == "https://bsky.app/profile/did:plc:abc/post/3labc" and post.post.reply
    assert post.post.key == "at://did:plc:abc/app.bsky.feed.post/3labc" and post.post.author == "did:plc:abc"
    assert jetstream.decode(commit("delete"), web=BSKY.web).kind == DELETE
    repost = jetstream.decode(commit(collection="app.bsky.feed.repost", record={
        "subject": {"uri": "at://did:plc:x/app.bsky.feed.post/1", "cid": "b"}}), web=BSKY.web)
    assert (repost.kind, repost.subject, repost.key) == (REPOST, "at://did:plc:x/app.bsky.feed.post/1",
                                                         "at://did:plc:abc/app.bsky.feed.repost/3labc")
    assert jetstream.decode(commit("delete", "app.bsky.feed.repost"), web=BSKY.web).kind == UNREPOST
    assert jetstream.decode(commit(collection="app.bsky.feed.like", record={}), web=BSKY.web).kind == OTHER
    identity = json.dumps({"did": "did:plc:abc", "time_us": T + 1, "kind": "identity", "identity": {"handle": "a"}})
    assert (jetstream.decode(identity, web=BSKY.web).kind, jetstream.decode(identity, web=BSKY.web).cursor) == (OTHER, str(T + 1))


@pytest.mark.parametrize("frame", [
    '{"did": "did:plc:a", "time_us": 17', "[1, 2]", "null", '{"did": "did:plc:a", "kind": "commit"}',
    '{"did": "did:plc:a", "time_us": true, "kind": "identity"}', '{"did": "did:plc:a", "time_us": -5, "kind": "x"}',
    '{"did": "did:plc:a", "time_us": 99999999999999999999, "kind": "x"}', '{"did": 5, "time_us": 1, "kind": "x"}',
    '{"did": "did:plc:a", "time_us": 1, "kind": "commit"}',
    '{"did": "did:plc:a", "time_us": 1, "kind": "commit", "commit": {"operation": "create", "rkey": "a/b"}}',
    '{"did": "did:plc:a", "time_us": 1, "kind": "commit", "commit": {"operation": "create", '
    '"collection": "app.bsky.feed.post", "rkey": "a", "record": {"text": 5}}}',
    '{"did": "did:plc:a", "time_us": 1, "kind": "commit", "commit": {"operation": "create", '
    '"collection": "app.bsky.feed.repost", "rkey": "a", "record": {"subject": "x"}}}',
    "[" * 100_000, b"\xff\xfe\x00", ""])
def test_malformed_jetstream_frames_raise_one_error(frame):
    with pytest.raises(FrameMalformed):
        jetstream.decode(frame, web=BSKY.web)


def test_subscribe_url_and_resume():
    url = jetstream.subscribe_url(replace(BSKY, dids=("did:plc:a",)), str(T), rewind_seconds=5)
    assert url.startswith("wss://jetstream.example/subscribe?wantedCollections=app.bsky.feed.post&"
                          "wantedCollections=app.bsky.feed.repost&wantedDids=did%3Aplc%3Aa&maxMessageSizeBytes=2000")
    assert url.endswith(f"&cursor={T - 5_000_000}") and "compress" not in url
    assert "cursor" not in jetstream.subscribe_url(BSKY, None)
    assert misskey.subscribe_url(MISSKEY, None, environ={"MK_TOKEN": "s3cret"}) == \
        "wss://misskey.example/streaming?i=s3cret"
    assert misskey.subscribe_url(MISSKEY, None, environ={}) == "wss://misskey.example/streaming"


def note(**kw):
    base = {"id": "9xa1", "createdAt": "2024-10-02T08:00:00.000Z", "userId": "u1", "text": "マイナポータルが重い",
            "cw": None, "user": {"id": "u1", "username": "taro", "host": None}, "visibility": "public",
            "renoteId": None, "renote": None, "replyId": None, "fileIds": []}
    return base | kw


def channel(body, channel_id="mynawatch-localTimeline"):
    return json.dumps({"type": "channel", "body": {"id": channel_id, "type": "note", "body": body}}, ensure_ascii=False)


def test_misskey_messages():
    hello = [json.loads(m) for m in misskey.hello(MISSKEY)]
    assert hello == [{"type": "connect", "body": {"channel": "localTimeline", "id": "mynawatch-localTimeline", "params": {}}},
                     {"type": "connect", "body": {"channel": "hashtag", "id": "mynawatch-hashtag",
                                                  "params": {"q": [["マイナ保険証"], ["マイナポータル"]]}}}]
    assert json.loads(misskey.goodbye(MISSKEY)[0]) == {"type": "disconnect", "body": {"id": "mynawatch-localTimeline"}}
    assert json.loads(misskey.watch("9xa1")) == {"type": "subNote", "body": {"id": "9xa1"}}
    web = MISSKEY.web
    event = misskey.decode(channel(note()), web=web)
    assert event.kind == POST and event.cursor == "9xa1" and event.post.url == "https://misskey.example/notes/9xa1"
    assert event.post.author == "@taro@misskey.example"
    remote = misskey.decode(channel(note(user={"username": "hanako", "host": "other.example"},
                                         uri="https://other.example/notes/77")), web=web)
    assert remote.post.author == "@hanako@other.example" and remote.post.url == "https://other.example/notes/77"
    cw = misskey.decode(channel(note(cw="マイナ保険証の話", text="ネタバレ")), web=web)
    assert (cw.post.cw, cw.post.text) == ("マイナ保険証の話", "ネタバレ")
    renote = misskey.decode(channel(note(id="9xb2", text=None, renoteId="9xa1", renote=note())), web=web)
    assert renote.kind == REPOST and renote.subject == "https://misskey.example/notes/9xa1" and renote.post.key == \
        "https://misskey.example/notes/9xa1"
    quote = misskey.decode(channel(note(id="9xb3", text="これ本当？", renoteId="9xa1", renote=note())), web=web)
    assert quote.kind == POST  # a quote is a post of its own
    for visibility in ("home", "followers", "specified"):
        assert misskey.decode(channel(note(visibility=visibility)), web=web).kind == OTHER
    assert misskey.decode(channel(note(), "someone-else"), web=web).kind == OTHER
    deleted = misskey.decode(json.dumps({"type": "noteUpdated", "body": {"id": "9xa1", "type": "deleted",
                                                                           "body": {"deletedAt": "x"}}}), web=web)
    assert (deleted.kind, deleted.key) == (DELETE, "https://misskey.example/notes/9xa1")
    reacted = json.dumps({"type": "noteUpdated", "body": {"id": "9xa1", "type": "reacted", "body": {}}})
    assert misskey.decode(reacted, web=web).kind == OTHER
    requests = misskey.backfill_requests(MISSKEY, "9xa1", "9xz9", environ={"MK_TOKEN": "t"})
    assert requests == [("https://misskey.example/api/notes/local-timeline",
                         {"sinceId": "9xa1", "untilId": "9xz9", "limit": 100, "i": "t"}),
                        ("https://misskey.example/api/notes/search-by-tag",
                         {"sinceId": "9xa1", "untilId": "9xz9", "limit": 100, "query": [["マイナ保険証"], ["マイナポータル"]],
                          "i": "t"})]


@pytest.mark.parametrize("frame", ["{not json", '{"type": "channel"}', channel("oops"), channel(note(id=5)),
                                   channel(note(createdAt="yesterday")), channel(note(user=None)),
                                   channel(note(text=["x"]))])
def test_malformed_misskey_messages_raise_one_error(frame):
    with pytest.raises(FrameMalformed):
        misskey.decode(frame, web=MISSKEY.web)


def post(text, langs=("ja",)):
    return Post(key="k", url="https://bsky.app/x", author="a", text=text, created=datetime.now(timezone.utc),
                langs=tuple(langs))


@pytest.mark.parametrize("text,langs,reason", [
    ("マイナ保険証が使えない", ("ja",), None), ("マイナンバーカードを更新した", (), None),
    ("マイナポータルにつながらない", ("ja-JP",), None), ("ｺﾝﾋﾞﾆ交付で住民票", (), None),
    ("マイナスイオン最高", ("ja",), "names none"), ("マイナビで就活中", ("ja",), "names none"),
    ("マイナーな曲が好き", (), "names none"), ("気温がマイナス3度", ("ja",), "names none"),
    ("マイナ保険証 is broken", ("en",), "language"), ("the portal is down", (), "language"),
    ("电子证明书", (), "language"), ("今日は雨", ("ja",), "names none")])
def test_prefilter(text, langs, reason):
    got = keep_reason(post(text, langs), ("ja",))
    assert got == reason if reason is None else got.startswith(reason)


def test_intake_counts_errors_and_skips_the_overlap():
    intake = Intake(BSKY)
    intake.resume = str(T)
    intake.take(commit(record={"text": "マイナ保険証が使えない", "langs": ["ja"]}))  # replayed: processed, not counted
    intake.take("x" * 2001)  # over max_frame_bytes
    intake.take("{broken")
    later = json.loads(commit(record={"text": "hello", "langs": ["en"]}))
    later["time_us"] = T + 10
    intake.take(json.dumps(later))
    b = intake.cut()
    assert (b.frames, b.messages, b.kept, b.errors, len(b.posts), b.cursor) == (4, 1, 0, 2, 1, str(T + 10))
    assert "malformed frame" in b.last_error and not intake.batch


def test_backoff_doubles_with_jitter_and_is_capped():
    b = Backoff(1.0, 8.0, random.Random(1))
    delays = [b.next() for _ in range(6)]
    for d, top in zip(delays, (1, 2, 4, 8, 8, 8)):
        assert top / 2 <= d <= top
    b.reset()
    assert b.next() <= 1.0


def test_status_table():
    now = datetime(2024, 10, 2, 1, 0, tzinfo=timezone.utc)
    row = StreamRow("bsky", "jetstream", "wss://x", "dropping behind", "1", now - timedelta(seconds=42), now, now, 3,
                    1000, 10, 2, 0, 18000.0, 1.5, None, now - timedelta(minutes=10), 7)
    text = describe_streams([row], now=now)
    assert "dropping behind" in text and "42 s" in text and "18,000" in text and "DROPPING BEHIND" in text
    assert "is the reader running?" in text
    assert stream_flags(replace(row, state="connected", updated_at=now), now=now) == []


def test_every_stream_setting_is_documented():
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", docs))
    assert {f.name for f in fields(StreamConfig)} | {"signal"} <= documented
