"""Queries on stream sources: their position (cursor) and health, reposts of stored posts, and deleted posts.
Functions take the session first and never commit: a batch of posts, its reposts and deletes and the cursor
that covers them are written in the caller's one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from store.dialect import insert_for
from store.items import _chunks, drop_empty_stories
from store.sources import upsert_source
from store.tables import Base, Item, Source, StreamRepost, StreamState


@dataclass(frozen=True)
class Progress:
    """What one stored batch moves: the cursor after it, and counts to add."""

    cursor: str | None
    cursor_at: datetime | None
    messages: int = 0
    kept: int = 0
    errors: int = 0
    dropped: int = 0
    messages_per_min: float | None = None
    kept_per_min: float | None = None
    last_frame_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class StreamRow:
    """A stream's state as `mynawatch sources` shows it."""

    name: str
    kind: str
    url: str
    state: str
    cursor: str | None
    cursor_at: datetime | None
    connected_since: datetime | None
    last_frame_at: datetime | None
    reconnects: int
    messages: int
    kept: int
    errors: int
    dropped: int
    messages_per_min: float
    kept_per_min: float
    last_error: str | None
    updated_at: datetime
    items: int


def register_stream(session: Session, *, name: str, url: str, kind: str, now: datetime) -> int:
    """The stream's source row (created or updated) and its state row; returns the source id."""
    state = upsert_source(session, name=name, url=url, kind=kind, publisher=None, interval_minutes=1)
    if session.get(StreamState, state.id) is None:  # ON CONFLICT: two readers may register it at once
        session.execute(insert_for(session, StreamState).values(
            source_id=state.id, state="new", reconnects=0, messages=0, kept=0, errors=0, dropped=0,
            messages_per_min=0.0, kept_per_min=0.0, updated_at=now).on_conflict_do_nothing())
    return state.id


def position(session: Session, source_id: int) -> tuple[str | None, datetime | None]:
    """The stored cursor (and its time): where a (re)started stream resumes."""
    row = session.execute(select(StreamState.cursor, StreamState.cursor_at)
                          .where(StreamState.source_id == source_id)).first()
    return (row[0], row[1]) if row else (None, None)


def cursor_of(session: Session, name: str) -> str | None:
    """The stored cursor of the stream called ``name`` (None when it has none yet)."""
    return session.scalar(select(StreamState.cursor).join(Source, Source.id == StreamState.source_id)
                          .where(Source.name == name))


def save_progress(session: Session, source_id: int, p: Progress, *, now: datetime) -> None:
    """Move the cursor and add the batch's counts (in the transaction of the batch's posts)."""
    s = StreamState
    values = {"messages": s.messages + p.messages, "kept": s.kept + p.kept, "errors": s.errors + p.errors,
              "dropped": s.dropped + p.dropped, "updated_at": now}
    if p.cursor is not None:
        values.update(cursor=p.cursor, cursor_at=p.cursor_at)
    if p.messages_per_min is not None:
        values.update(messages_per_min=p.messages_per_min, kept_per_min=p.kept_per_min or 0.0)
    if p.last_frame_at is not None:
        values["last_frame_at"] = p.last_frame_at
    if p.last_error is not None:
        values["last_error"] = p.last_error[:500]
    session.execute(update(s).where(s.source_id == source_id).values(**values))
    session.execute(update(Source).where(Source.id == source_id)
                    .values(last_attempt_at=now, last_success_at=now,
                            **({"last_new_item_at": now} if p.kept else {})))


def set_state(session: Session, source_id: int, state: str, *, now: datetime, error: str | None = None,
              reconnected: bool = False) -> None:
    """The connection's state: connected, reconnecting (with why), dropping behind, paused, stopped."""
    s = StreamState
    values: dict = {"state": state, "updated_at": now}
    if state == "connected":
        values["connected_since"] = now
    elif state in ("reconnecting", "paused", "stopped"):
        values["connected_since"] = None
    if error is not None:
        values["last_error"] = error[:500]
    if reconnected:
        values["reconnects"] = s.reconnects + 1
    session.execute(update(s).where(s.source_id == source_id).values(**values))
    status = state if error is None or state == "connected" else f"{state}: {error}"
    session.execute(update(Source).where(Source.id == source_id).values(status=status[:200], last_attempt_at=now))


def stored_keys(session: Session, source_id: int, since: datetime) -> tuple[set[str], set[str]]:
    """The keys of this stream's posts published since ``since``, and of the reposts of them."""
    posts = set(session.scalars(select(Item.guid).where(Item.source_id == source_id, Item.published_at >= since)))
    reposts = set(session.scalars(select(StreamRepost.repost_key).join(Item, Item.id == StreamRepost.item_id)
                                  .where(Item.source_id == source_id, StreamRepost.reposted_at >= since)))
    return {k for k in posts if k}, reposts


def recent_keys(session: Session, source_id: int, since: datetime, limit: int) -> list[str]:
    """The keys of this stream's posts published since ``since``, newest first, at most ``limit``."""
    return [k for k in session.scalars(select(Item.guid).where(Item.source_id == source_id, Item.published_at >= since)
                                       .order_by(Item.published_at.desc()).limit(limit)) if k]


def item_ids(session: Session, source_id: int, keys: list[str]) -> dict[str, int]:
    """post key -> item id, for the keys of this stream's stored posts."""
    out: dict[str, int] = {}
    for chunk in _chunks(keys):
        out.update(session.execute(select(Item.guid, Item.id).where(Item.source_id == source_id,
                                                                    Item.guid.in_(chunk))).all())
    return out


def add_reposts(session: Session, rows: list[tuple[int, str, str, datetime]]) -> int:
    """(item id of the original, repost key, author, time); a repost seen before is ignored. Returns how many were new."""
    if not rows:
        return 0
    # the new rows are counted from RETURNING: an INSERT's rowcount is -1 through SQLAlchemy on psycopg
    stmt = insert_for(session, StreamRepost).on_conflict_do_nothing().returning(StreamRepost.repost_key)
    values = [{"item_id": i, "repost_key": k, "author": a[:200], "reposted_at": t} for i, k, a, t in rows]
    return len(session.execute(stmt, values).all())


def remove_reposts(session: Session, keys: list[str]) -> int:
    removed = 0
    for chunk in _chunks(keys):
        removed += session.execute(delete(StreamRepost).where(StreamRepost.repost_key.in_(chunk))).rowcount
    return removed


def delete_posts(session: Session, source_id: int, keys: list[str]) -> list[int]:
    """Remove this stream's posts with these keys, and every row that refers to them (labels, reposts,
    search index, stories left empty): a deleted post leaves the store and the counts. Returns the
    story ids that lost an item."""
    found = []
    for chunk in _chunks(keys):
        found += session.execute(select(Item.id, Item.story_id).where(Item.source_id == source_id,
                                                                       Item.guid.in_(chunk))).all()
    if not found:
        return []
    ids = [i for i, _ in found]
    for chunk in _chunks(ids):
        _forget(session, Base.metadata.tables["items"], chunk)
        session.execute(delete(Item).where(Item.id.in_(chunk)))
    stories = sorted({s for _, s in found})
    drop_empty_stories(session, stories)
    return stories


def _forget(session: Session, table: Table, ids: list[int]) -> None:
    """Rows of every table that refer to these rows of ``table``: a nullable reference is cleared, any other
    row is deleted (after the rows that refer to it in turn, one level down)."""
    for other in Base.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is not table or other is table:
                continue
            column = fk.parent
            if column.nullable:
                session.execute(update(other).where(column.in_(ids)).values({column.name: None}))
                continue
            keys = list(other.primary_key.columns)
            if len(keys) == 1:
                inner = list(session.scalars(select(keys[0]).where(column.in_(ids))))
                for chunk in _chunks(inner):
                    _forget(session, other, chunk)
            session.execute(delete(other).where(column.in_(ids)))


def stream_rows(session: Session) -> list[StreamRow]:
    """Every stream source with its state and counts, by name."""
    counts = dict(session.execute(select(Item.source_id, func.count(Item.id))
                                  .join(StreamState, StreamState.source_id == Item.source_id)
                                  .group_by(Item.source_id)).all())
    rows = session.execute(select(Source, StreamState).join(StreamState, StreamState.source_id == Source.id)
                           .order_by(Source.name))
    return [StreamRow(src.name, src.kind, src.url, st.state, st.cursor, st.cursor_at, st.connected_since,
                      st.last_frame_at, st.reconnects, st.messages, st.kept, st.errors, st.dropped,
                      st.messages_per_min, st.kept_per_min, st.last_error, st.updated_at, counts.get(src.id, 0))
                for src, st in rows]


def stream_share(session: Session) -> tuple[int, int]:
    """(items stored from stream sources, stories that hold nothing else): what a count of the whole store
    holds beyond the news."""
    stream = select(Source.id).join(StreamState, StreamState.source_id == Source.id).scalar_subquery()
    posts = session.scalar(select(func.count(Item.id)).where(Item.source_id.in_(stream)))
    news_stories = select(Item.story_id).where(Item.source_id.not_in(stream), Item.story_id.is_not(None))
    only = session.scalar(select(func.count(func.distinct(Item.story_id))).where(
        Item.source_id.in_(stream), Item.story_id.is_not(None), Item.story_id.not_in(news_stories)))
    return int(posts or 0), int(only or 0)


def has_streams(session: Session) -> bool:
    """Whether the store has ever read a stream (a report then shows its social panel)."""
    return session.scalar(select(func.count()).select_from(StreamState)) > 0
