"""Frames in, batches out: size check, decode, prefilter, cursor. Pure (no network, no store), so the
runner, the tests and bench/stream.py run the same code.

A batch holds what the store must do for its frames: posts that passed the prefilter, reposts and deletes
(the store keeps those that concern stored posts), and the cursor after its last frame. Frames of a
replayed overlap (after a reconnect rewound the cursor) are processed again, since the store ignores what
it has, but not counted again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from collector.streams import ADAPTERS
from collector.streams.config import StreamConfig
from collector.streams.events import DELETE, POST, REPOST, UNREPOST, Event, FrameTooLarge, Post, StreamError
from collector.streams.prefilter import keep


@dataclass
class Batch:
    posts: list[Post] = field(default_factory=list)
    reposts: list[Event] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    unreposts: list[str] = field(default_factory=list)
    cursor: str | None = None
    cursor_at: datetime | None = None
    frames: int = 0  # every frame taken (the size of the batch)
    messages: int = 0  # frames counted (not those of a replayed overlap)
    kept: int = 0
    errors: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_frame_at: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.frames or self.dropped)


class Intake:
    """One stream's decoding state: its adapter, the cursor a replay started from, the batch being filled."""

    def __init__(self, config: StreamConfig):
        self.config, self.adapter, self.web = config, ADAPTERS[config.kind], config.web
        self.resume: str | None = None  # frames up to this cursor were counted before a reconnect
        self.batch = Batch()

    def take(self, frame: bytes | str, *, received: datetime | None = None) -> Event | None:
        """Add one frame to the batch. Returns its event, or None when it was skipped (counted as an error)."""
        b = self.batch
        b.frames += 1
        b.last_frame_at = received or b.last_frame_at
        if len(frame) > self.config.max_frame_bytes:
            return self._error(FrameTooLarge(len(frame), self.config.max_frame_bytes))
        try:
            event = self.adapter.decode(frame, web=self.web)
        except StreamError as exc:
            return self._error(exc)
        return self.add(event, fresh=self.adapter.after(event.cursor, self.resume))

    def add(self, event: Event, *, fresh: bool = True) -> Event:
        """Add a decoded event (a frame's, or a note read from an API to fill a gap)."""
        b = self.batch
        if event.cursor is not None:
            b.cursor, b.cursor_at = event.cursor, event.at
        b.messages += fresh
        kind = event.kind
        if kind == POST:
            if keep(event.post, self.config.languages):
                b.posts.append(event.post)
                b.kept += fresh
        elif kind == REPOST:
            if event.post is not None and keep(event.post, self.config.languages):
                b.posts.append(event.post)  # a renote carries its original: stored once, if relevant
            b.reposts.append(event)
        elif kind == DELETE:
            b.deletes.append(event.key)
        elif kind == UNREPOST:
            b.unreposts.append(event.key)
        return event

    def fill(self, event: Event) -> Event:
        """A note read from an API to fill a gap, added as if it were a frame."""
        self.batch.frames += 1
        return self.add(event)

    def _error(self, exc: StreamError) -> None:
        self.batch.errors += 1
        self.batch.last_error = str(exc)[:300]
        return None

    def cut(self) -> Batch:
        """The batch so far; a new one starts."""
        batch, self.batch = self.batch, Batch()
        return batch
