"""The only network code: polite HTTP fetching with conditional GET, a size cap, a deadline, per-host
limits and, for links found in feeds, a refusal to reach private addresses (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx

from collector.errors import HARD, SOFT, TEMPORARY, FetchFailed, FetchRefused

USER_AGENT = "mynawatch/0.1 (+https://github.com/mynawatch/mynawatch; monitor of My Number system news)"
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
TEMPORARY_STATUSES = {408, 425, 429}
HARD_STATUSES = {400, 401, 403, 404, 405, 410, 451}


@dataclass(frozen=True)
class FetchPolicy:
    timeout_seconds: float = 20.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    connections: int = 32  # requests in flight at once, all hosts together
    per_host_connections: int = 2
    host_interval_seconds: float = 1.0  # least time between the starts of two requests to one host
    allow_loopback_links: bool = False  # article pages on 127.0.0.1/::1 (tests and demos only)


@dataclass(frozen=True)
class FetchResult:
    url: str  # the address that answered, after redirects
    status: int
    body: bytes | None  # None when the server answered 304 Not Modified
    content_type: str | None
    etag: str | None
    last_modified: str | None
    elapsed_ms: int
    location: str | None = None  # the next hop of a redirect not followed


def make_client(policy: FetchPolicy) -> httpx.Client:
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, "Accept": FEED_ACCEPT, "Accept-Language": "ja,en;q=0.5"},
        timeout=policy.timeout_seconds, follow_redirects=True, max_redirects=policy.max_redirects,
        limits=httpx.Limits(max_connections=policy.connections * 2, max_keepalive_connections=policy.connections),
        trust_env=False,
    )


class HostLimiter:
    """At most ``per_host`` requests at once to one host, their starts at least ``interval`` seconds apart."""

    def __init__(self, per_host: int, interval: float, *, clock=time.monotonic, sleep=time.sleep):
        self.per_host, self.interval, self._clock, self._sleep = max(1, per_host), max(0.0, interval), clock, sleep
        self._lock = threading.Lock()
        self._hosts: dict[str, tuple[threading.BoundedSemaphore, list[float], threading.Lock]] = {}

    @classmethod
    def for_policy(cls, policy: FetchPolicy) -> HostLimiter:
        return cls(policy.per_host_connections, policy.host_interval_seconds)

    @contextmanager
    def slot(self, url: str):
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = (threading.BoundedSemaphore(self.per_host), [0.0], threading.Lock())
            semaphore, next_start, lock = self._hosts[host]
        with semaphore:
            with lock:
                start = max(self._clock(), next_start[0])
                next_start[0] = start + self.interval
            delay = start - self._clock()
            if delay > 0:
                self._sleep(delay)
            yield


def fetch_feed(client: httpx.Client, url: str, *, etag: str | None, last_modified: str | None,
               policy: FetchPolicy, now: datetime, limiter: HostLimiter | None = None) -> FetchResult:
    """GET ``url`` conditionally. Raises FetchFailed on network errors, bad statuses and oversized bodies."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    with (limiter or _NO_LIMIT).slot(url):
        result = _get(client, url, headers, policy, now=now, follow=True)
    if result.status == 304 and not headers:
        raise FetchFailed(url, "304 Not Modified to a request without validators", status=304, kind=SOFT)
    if result.status == 304:
        return FetchResult(result.url, 304, None, result.content_type, result.etag or etag,
                           result.last_modified or last_modified, result.elapsed_ms)
    return result


def fetch_page(client: httpx.Client, url: str, *, policy: FetchPolicy, now: datetime,
               limiter: HostLimiter | None = None) -> FetchResult:
    """GET a page linked from a feed. Every hop of a redirect is checked against private addresses."""
    for _hop in range(policy.max_redirects + 1):
        check_address(url, allow_loopback=policy.allow_loopback_links)
        with (limiter or _NO_LIMIT).slot(url):
            result = _get(client, url, {"Accept": PAGE_ACCEPT}, policy, now=now, follow=False)
        if result.location is None:
            return result
        url = result.location
    raise FetchFailed(url, f"too many redirects (more than {policy.max_redirects})", kind=SOFT)


def check_address(url: str, *, allow_loopback: bool) -> None:
    """Refuse non-http(s) URLs and hosts that resolve to private, loopback, link-local or reserved addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(url, "only http and https addresses are fetched")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(url, f"cannot resolve {parts.hostname}: {exc}", network=True) from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address.is_loopback and allow_loopback:
            continue
        if not address.is_global or address.is_multicast:
            raise FetchRefused(url, f"{parts.hostname} is a non-public address ({address})")


def _get(client, url, headers, policy, *, now, follow) -> FetchResult:
    started = time.monotonic()
    try:
        with client.stream("GET", url, headers=headers, follow_redirects=follow) as response:
            _check_status(url, response, now)
            if not follow and response.is_redirect:
                location = urljoin(url, response.headers.get("Location", ""))
                return _result(response, None, started, location=location)
            if response.status_code == 304:
                return _result(response, None, started)
            return _result(response, _read(url, response, policy, started), started)
    except httpx.TooManyRedirects as exc:
        raise FetchFailed(url, f"too many redirects (more than {policy.max_redirects})", kind=SOFT) from exc
    except httpx.TimeoutException as exc:
        raise FetchFailed(url, f"timed out after {policy.timeout_seconds:g} s", network=True) from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(url, f"network error: {exc or type(exc).__name__}", network=True) from exc


def _check_status(url, response, now) -> None:
    status = response.status_code
    if status < 400:
        return
    retry_after = retry_after_seconds(response.headers.get("Retry-After"), now=now)
    if status in TEMPORARY_STATUSES or status >= 500:
        kind = TEMPORARY
    else:
        kind = HARD if status in HARD_STATUSES else SOFT
    raise FetchFailed(url, f"HTTP {status}", status=status, retry_after=retry_after, kind=kind)


def _read(url, response, policy, started) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchFailed(url, f"body of {declared} bytes exceeds the {policy.max_bytes}-byte cap",
                          status=response.status_code, kind=SOFT)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > policy.max_bytes:
            raise FetchFailed(url, f"body exceeds the {policy.max_bytes}-byte cap", status=response.status_code,
                              kind=SOFT)
        if time.monotonic() - started > policy.timeout_seconds:  # a server trickling bytes forever
            raise FetchFailed(url, f"timed out after {policy.timeout_seconds:g} s (body still arriving)",
                              status=response.status_code, network=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _result(response, body, started, *, location=None) -> FetchResult:
    return FetchResult(
        url=str(response.url), status=response.status_code, body=body,
        content_type=response.headers.get("Content-Type"), etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        elapsed_ms=int((time.monotonic() - started) * 1000), location=location,
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
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, min((when - now).total_seconds(), cap))


class _NoLimit:
    @contextmanager
    def slot(self, url):
        yield


_NO_LIMIT = _NoLimit()
