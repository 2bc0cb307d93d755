"""The stream store path on SQLite and PostgreSQL alike: batches with their cursor, reposts, deletes that take
a labeled post out of every count, the stream signals per five minutes and per hour, and a whole replay."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from collector.streams.config import StreamConfig
from collector.streams.events import REPOST, Event, Post
from collector.streams.intake import Batch
from collector.streams.runner import StreamRunner
from collector.streams.save import save_batch
from store import labels as store_labels
from store import streams as store_streams
from store.records import Cause, Label, Sentiment, Service
from store.stream_signals import first_post_at, stream_series
from store.tables import Classification, Item, Story, StreamRepost

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "streams"))
from loopback import JetstreamServer, load  # noqa: E402
from test_streams_jetstream import wait_for  # noqa: E402

T0 = datetime(2024, 10, 2, 1, 0, tzinfo=timezone.utc)
CONFIG = StreamConfig(name="bsky", endpoint="wss://jetstream.example/subscribe")
TROUBLE = Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE)
FINE = Label(True, (Service.PORTAL,), Cause.NONE, Sentiment.POSITIVE)


def _post(n: int, author: int, minute: float, text: str = "マイナポータルにつながらない") -> Post:
    did = f"did:plc:{author:024x}"
    return Post(key=f"at://{did}/app.bsky.feed.post/{n}", url=f"https://bsky.app/profile/{did}/post/{n}",
                author=did, text=f"{text} {n}", created=T0 + timedelta(minutes=minute), langs=("ja",))


def test_batches_reposts_deletes_and_signals(engine_sessions):
    sessions = engine_sessions
    with sessions.begin() as s:
        source_id = store_streams.register_stream(s, name="bsky", url=CONFIG.endpoint, kind="jetstream", now=T0)
    posts = [_post(1, 1, 1), _post(2, 2, 2), _post(3, 2, 3), _post(4, 3, 7), _post(5, 4, 61)]
    reposts = [Event(REPOST, None, T0 + timedelta(minutes=m), key=f"at://r/{m}", subject=posts[0].key, author=f"r{m}")
               for m in (4, 8)] + [Event(REPOST, None, T0, key="at://r/x", subject="at://unknown/post", author="x")]
    batch = Batch(posts=posts, reposts=reposts, cursor="1727830800000000", cursor_at=T0, frames=9, messages=9, kept=5)
    with sessions.begin() as s:
        assert save_batch(s, source_id, CONFIG, batch, now=T0) == 5
    with sessions.begin() as s:  # the same batch again (a replayed overlap): nothing new
        assert save_batch(s, source_id, CONFIG, batch, now=T0) == 0
        assert store_streams.position(s, source_id) == ("1727830800000000", T0)
        ids = store_streams.item_ids(s, source_id, [p.key for p in posts])
        store_labels.save_labels(s, "m-1", {ids[p.key]: (TROUBLE if i != 3 else FINE) for i, p in enumerate(posts)},
                                 now=T0)
    with sessions.begin() as s:
        assert s.scalar(select(func.count(StreamRepost.id))) == 2
        five = stream_series(s, "m-1", T0, T0 + timedelta(hours=2), signal="posts")
        assert five == {"portal": {T0: 3, T0 + timedelta(minutes=5): 1, T0 + timedelta(minutes=60): 1}}
        assert stream_series(s, "m-1", T0, T0 + timedelta(hours=2), signal="authors")["portal"][T0] == 2
        assert stream_series(s, "m-1", T0, T0 + timedelta(hours=2), signal="trouble")["portal"] == \
            {T0: 2, T0 + timedelta(minutes=60): 1}
        assert stream_series(s, "m-1", T0, T0 + timedelta(hours=2), signal="reposts")["portal"] == \
            {T0: 1, T0 + timedelta(minutes=5): 1}
        assert stream_series(s, "m-1", T0, T0 + timedelta(hours=2), signal="posts", minutes=60)["portal"] == \
            {T0: 4, T0 + timedelta(hours=1): 1}
        assert first_post_at(s) == T0 + timedelta(minutes=1)
        stories = s.scalar(select(func.count(Story.id)))
    delete = Batch(deletes=[posts[0].key, "at://never/stored"], unreposts=["at://r/8"], cursor="1727830900000000",
                   cursor_at=T0 + timedelta(minutes=9), frames=3, messages=3)
    with sessions.begin() as s:
        save_batch(s, source_id, CONFIG, delete, now=T0)
    with sessions.begin() as s:  # the deleted post, its labels and its reposts are gone, and so from the counts
        assert s.scalar(select(Item.id).where(Item.guid == posts[0].key)) is None
        assert s.scalar(select(func.count(Classification.id))) == 4
        assert s.scalar(select(func.count(StreamRepost.id))) == 0
        assert stream_series(s, "m-1", T0, T0 + timedelta(hours=2), signal="trouble")["portal"][T0] == 1
        assert s.scalar(select(func.count(Story.id))) <= stories
        row = store_streams.stream_rows(s)[0]
        assert (row.name, row.kind, row.messages, row.kept, row.items, row.cursor) == \
            ("bsky", "jetstream", 21, 10, 4, "1727830900000000")
    with sessions.begin() as s:  # reposts counted from what was inserted, on either engine (rowcount is -1 on psycopg)
        original = store_streams.item_ids(s, source_id, [posts[1].key])[posts[1].key]
        rows = [(original, "at://r/new", "someone", T0), (original, "at://r/new2", "else", T0)]
        assert store_streams.add_reposts(s, rows) == 2
        assert store_streams.add_reposts(s, rows) == 0


def test_a_replay_on_either_engine(engine_sessions):
    frames, expect = load("jetstream")
    server = JetstreamServer(frames)
    config = StreamConfig(name="bsky", endpoint=server.url, stall_seconds=2.0, backoff_seconds=0.05,
                          batch_seconds=0.2)
    runner = StreamRunner(config, engine_sessions)
    runner.start()

    def done():
        with engine_sessions.begin() as s:
            return store_streams.position(s, runner.source_id)[0] == str(expect["last_time_us"])
    try:
        wait_for(done, what="the end of the stream")
    finally:
        runner.stop()
        server.close()
    with engine_sessions.begin() as s:
        posts = list(s.scalars(select(Item.guid)))
        assert len(posts) == len(set(posts)) and set(posts) == set(expect["stored"])
        assert set(s.scalars(select(StreamRepost.repost_key))) == set(expect["reposts"])
