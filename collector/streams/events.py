"""What a stream frame says, once decoded: a post, a repost of one, a delete, or nothing we use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.errors import SOFT, CollectorError

POST, REPOST, DELETE, UNREPOST, OTHER = "post", "repost", "delete", "unrepost", "other"


class StreamError(CollectorError):
    """A stream frame or connection we cannot use."""

    kind = SOFT


class FrameMalformed(StreamError):
    """A frame that is not the protocol's JSON (truncated, not an object, a field of the wrong type)."""

    def __init__(self, reason: str):
        super().__init__(f"malformed frame: {reason}")
        self.reason = reason


class FrameTooLarge(StreamError):
    """A frame larger than the stream's ``max_frame_bytes``: skipped unread."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"frame of {size} bytes over the limit of {limit}")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class Post:
    """A public post as the store sees it: its identity, canonical address, author and text."""

    key: str  # the network's identity of the post (an at:// URI, a Misskey note id)
    url: str  # its canonical web address
    author: str  # handle or DID (Bluesky), @user@host (Misskey)
    text: str
    created: datetime  # aware UTC: when the network saw it
    langs: tuple[str, ...] = ()  # declared languages (Bluesky), empty when none were declared
    cw: str = ""  # content warning (Misskey): shown text before the body, kept with it
    reply: bool = False


@dataclass(frozen=True)
class Event:
    """One decoded frame. ``cursor`` is where a resumed stream would start after it (None: the frame
    moves no cursor); ``at`` the time the frame stands for."""

    kind: str  # post | repost | delete | unrepost | other
    cursor: str | None
    at: datetime | None
    post: Post | None = None  # post: the post; repost: the original when the frame carries it (Misskey)
    key: str = ""  # delete: the deleted post's key; repost / unrepost: the repost's own key
    subject: str = ""  # repost: the original post's key
    author: str = ""  # repost: who reposted
