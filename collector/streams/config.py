"""A stream source as the collector sees it (built from ``[[streams]]`` by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from collector.sources import SourceConfig

KINDS = ("jetstream", "misskey")
WEB = {"jetstream": "https://bsky.app"}  # where a Bluesky post is read by people; Misskey: its own instance


@dataclass(frozen=True)
class StreamConfig:
    name: str
    endpoint: str  # the WebSocket address: wss://jetstream2.us-east.bsky.network/subscribe, wss://misskey.io/streaming
    kind: str = "jetstream"
    collections: tuple[str, ...] = ("app.bsky.feed.post", "app.bsky.feed.repost")  # jetstream: wantedCollections
    dids: tuple[str, ...] = ()  # jetstream: wantedDids (empty: every account)
    channels: tuple[str, ...] = ("localTimeline",)  # misskey: localTimeline, hashtag, ...
    tags: tuple[str, ...] = ()  # misskey: the hashtag channel's tags (any of them)
    token_env: str = ""  # misskey: name of the environment variable holding an access token, when needed
    api_url: str = ""  # misskey: the HTTP API that fills a gap after a reconnect (default: https://<host>/api)
    backfill_pages: int = 20  # misskey: at most this many pages of 100 notes per gap
    languages: tuple[str, ...] = ("ja",)  # declared languages kept; undeclared posts are kept when written in kana
    web_url: str = ""  # where post addresses point (default: https://bsky.app, or the Misskey instance)
    stall_seconds: float = 60.0  # no frame for this long: the connection is taken as dead and made again
    rewind_seconds: float = 5.0  # jetstream: a reconnect resumes this long before the stored cursor
    max_frame_bytes: int = 262_144  # frames larger than this are skipped (counted as errors)
    queue_batches: int = 32  # batches waiting for the store before the reader holds back (backpressure)
    batch_messages: int = 500  # a batch is stored after this many frames ...
    batch_seconds: float = 1.0  # ... or this long, whichever comes first
    backpressure_seconds: float = 30.0  # the reader holds back this long before it is "dropping behind"
    backoff_seconds: float = 1.0  # first reconnect delay (jittered, doubling) ...
    max_backoff_seconds: float = 300.0  # ... up to this
    paused: bool = False  # configured but not connected

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stream {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")
        if urlsplit(self.endpoint).scheme not in ("ws", "wss"):
            raise ValueError(f"stream {self.name!r}: endpoint must start with wss:// or ws:// (got {self.endpoint!r})")
        if self.web_url and urlsplit(self.web_url).scheme not in ("http", "https"):
            raise ValueError(f"stream {self.name!r}: web_url must start with https:// or http://")
        if self.api_url and urlsplit(self.api_url).scheme not in ("http", "https"):
            raise ValueError(f"stream {self.name!r}: api_url must start with https:// or http://")
        if self.kind == "misskey" and not set(self.channels) <= {"localTimeline", "hashtag", "globalTimeline"}:
            raise ValueError(f"stream {self.name!r}: channels: localTimeline, hashtag or globalTimeline")
        if self.kind == "misskey" and "hashtag" in self.channels and not self.tags:
            raise ValueError(f"stream {self.name!r}: the hashtag channel needs tags")
        for name in ("stall_seconds", "max_frame_bytes", "queue_batches", "batch_messages", "batch_seconds",
                     "backoff_seconds", "max_backoff_seconds", "backpressure_seconds", "backfill_pages"):
            if getattr(self, name) <= 0:
                raise ValueError(f"stream {self.name!r}: {name} must be more than 0")

    @property
    def web(self) -> str:
        """The base of post addresses: the configured one, Bluesky's web app, or the Misskey instance."""
        if self.web_url:
            return self.web_url.rstrip("/")
        if self.kind in WEB:
            return WEB[self.kind]
        parts = urlsplit(self.endpoint)
        return f"{'http' if parts.scheme == 'ws' else 'https'}://{parts.netloc}"

    @property
    def api(self) -> str:
        """The Misskey HTTP API's base: the configured one, or the streaming host's /api."""
        return self.api_url.rstrip("/") if self.api_url else f"{self.web}/api"

    def as_source(self) -> SourceConfig:
        """How ingest sees the stream: a source of many authors (each post's author is its publisher) that
        teaches no host names, as a Mastodon tag feed does."""
        return SourceConfig(name=self.name, url=self.web, kind="mastodon")
