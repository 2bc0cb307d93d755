"""The collector's exceptions. Each carries its context as attributes."""

from __future__ import annotations


class CollectorError(Exception):
    """Something went wrong collecting one source."""


class FetchFailed(CollectorError):
    """The source could not be fetched (network error, timeout, bad status, body too large)."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.status, self.retry_after = url, reason, status, retry_after


class FeedMalformed(CollectorError):
    """The body is not a feed we can read (not XML, truncated, HTML instead of a feed)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason
