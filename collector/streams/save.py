"""A batch into the store, in the caller's one transaction: posts through the feed items' path (identity,
author as publisher, story clustering, relevance gate), reposts of stored posts, deletes, and the cursor
that covers them all. A crash before the commit leaves the cursor where the last stored batch ended."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from collector.ingest import DEFAULT_POLICY, save_entries
from collector.policy import CollectPolicy
from collector.sanitize import clean_line
from collector.stories import StoryIndex
from collector.streams.config import StreamConfig
from collector.streams.events import Post
from collector.streams.intake import Batch
from store import streams as store_streams
from store.records import Entry

FUTURE_TOLERANCE = timedelta(days=1)  # a stream's clock and ours may differ (and ``now`` may lag the frames)
TITLE_CHARS = 120  # a post has no title: its first characters stand in (stories cluster on them)


def to_entry(post: Post, *, now: datetime) -> Entry:
    """A post as a feed entry: the content warning before the text, the author as publisher, the key as GUID.
    A post dated more than FUTURE_TOLERANCE ahead (a Misskey note's createdAt comes from the server it was
    written on, whatever its clock says) is dated now, as a feed's item is."""
    body = f"{post.cw}\n{post.text}" if post.cw else post.text
    published, note = post.created, None
    if published > now + FUTURE_TOLERANCE:
        published, note = now, f"future date {post.created.isoformat()} clamped to fetch time"
    return Entry(url=post.url, title=clean_line(body, TITLE_CHARS), summary=body, guid=post.key,
                 published=published, publisher=post.author, date_note=note)


def save_batch(session: Session, source_id: int, config: StreamConfig, batch: Batch, *, now: datetime,
               stories: StoryIndex | None = None, policy: CollectPolicy = DEFAULT_POLICY,
               rates: tuple[float, float] | None = None) -> int:
    """Store one batch and move the cursor past it. Returns how many posts were new."""
    skipped: list[str] = []
    new = 0
    if batch.posts:
        new = save_entries(session, source_id, config.as_source(), [to_entry(p, now=now) for p in batch.posts], now=now,
                           stories=stories, policy=policy, skipped=skipped)
    if batch.reposts:
        originals = store_streams.item_ids(session, source_id, [e.subject for e in batch.reposts])
        store_streams.add_reposts(session, [(originals[e.subject], e.key, e.author, e.at) for e in batch.reposts
                                            if e.subject in originals])
    if batch.unreposts:
        store_streams.remove_reposts(session, batch.unreposts)
    if batch.deletes and store_streams.delete_posts(session, source_id, batch.deletes) and stories is not None:
        stories.clear()  # it may hold a story that was just removed with its last post
    error = batch.last_error or (skipped[0] if skipped else None)
    store_streams.save_progress(session, source_id, store_streams.Progress(
        cursor=batch.cursor, cursor_at=batch.cursor_at, messages=batch.messages, kept=batch.kept,
        errors=batch.errors + len(skipped), dropped=batch.dropped, last_frame_at=batch.last_frame_at,
        messages_per_min=rates[0] if rates else None, kept_per_min=rates[1] if rates else None,
        last_error=error), now=now)
    return new
