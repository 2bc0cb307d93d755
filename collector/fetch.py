"""The only network code: polite HTTP fetching with conditional GET and a size cap."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from collector.errors import FetchFailed

USER_AGENT = "mynawatch/0.1 (+https://github.com/mynawatch/mynawatch; monitor of My Number system news)"


@dataclass(frozen=True)
class FetchPolicy:
    timeout_seconds: float = 20.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: int
    body: bytes | None  # None when the server answered 304 Not Modified
    content_type: str | None
    etag: str | None
    last_modified: str | None
    elapsed_ms: int


def make_client(policy: FetchPolicy) -> httpx.Client:
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"},
        timeout=policy.timeout_seconds, follow_redirects=True, max_redirects=policy.max_redirects,
        trust_env=False,
    )


def fetch_feed(client: httpx.Client, url: str, *, etag: str | None, last_modified: str | None,
               policy: FetchPolicy, now: datetime) -> FetchResult:
    """GET ``url`` conditionally. Raises FetchFailed on network errors, bad statuses and oversized bodies."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    started = time.monotonic()
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return _result(url, response, None, started, etag, last_modified)
            if response.status_code >= 400:
                raise FetchFailed(url, f"HTTP {response.status_code}", status=response.status_code,
                                  retry_after=retry_after_seconds(response.headers.get("Retry-After"), now=now))
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchFailed(url, f"body of {declared} bytes exceeds the {policy.max_bytes}-byte cap",
                                  status=response.status_code)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise FetchFailed(url, f"body exceeds the {policy.max_bytes}-byte cap", status=response.status_code)
                chunks.append(chunk)
            return _result(url, response, b"".join(chunks), started, None, None)
    except httpx.TooManyRedirects as exc:
        raise FetchFailed(url, f"too many redirects (more than {policy.max_redirects})") from exc
    except httpx.TimeoutException as exc:
        raise FetchFailed(url, f"timed out after {policy.timeout_seconds:g} s") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(url, f"network error: {exc}") from exc


def _result(url, response, body, started, etag, last_modified) -> FetchResult:
    return FetchResult(
        url=url, status=response.status_code, body=body,
        content_type=response.headers.get("Content-Type"),
        etag=response.headers.get("ETag", etag), last_modified=response.headers.get("Last-Modified", last_modified),
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )


def retry_after_seconds(value: str | None, *, now: datetime, cap: float = 86400.0) -> float | None:
    """Retry-After as seconds from now (it may be seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, min((when - now).total_seconds(), cap))
