"""The collector's exceptions. Each carries its context as attributes.

Every failure has a ``kind`` that weighs it in the source's failure score (see ``collector.health``):
``temporary`` (network trouble, timeouts, 5xx, 429), ``soft`` (the answer came but is unusable:
malformed, HTML, too large, redirect loops) and ``hard`` (the address is wrong: 404, 410, 401, 403).
"""

from __future__ import annotations

TEMPORARY, SOFT, HARD = "temporary", "soft", "hard"


class CollectorError(Exception):
    """Something went wrong collecting one source."""

    kind = SOFT
    network = False  # True when no HTTP answer came at all (the machine may be offline)
    status: int | None = None
    retry_after: float | None = None


class FetchFailed(CollectorError):
    """The source could not be fetched (network error, timeout, bad status, body too large)."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 kind: str = TEMPORARY, network: bool = False):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.status, self.retry_after = url, reason, status, retry_after
        self.kind, self.network = kind, network


class FetchRefused(CollectorError):
    """The address is not one we may fetch (a private, loopback or link-local address, or not http/https)."""

    kind = HARD

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: refused: {reason}")
        self.url, self.reason = url, reason


class FeedMalformed(CollectorError):
    """The body is not a feed we can read (not XML, truncated, HTML instead of a feed)."""

    kind = SOFT

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason
