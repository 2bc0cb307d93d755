"""The only network code: polite HTTP fetching with conditional GET, a size cap on the decoded body, a total
deadline, per-host limits and a refusal to reach private addresses (SSRF) from links found in feeds and
from the redirects of sources.

Redirects are followed here, hop by hop, never by httpx: every hop is checked before it is requested.
A source's own address is trusted (an operator may watch a feed on an intranet host); a hop that leaves
that host is checked like a link found in a feed. The check runs again on the addresses a connection is
actually made to (``store.deadline.guard_connects``), so a name that resolves differently the second
time gains nothing."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from itertools import chain
from urllib.parse import urljoin, urlsplit

import httpx

from collector import encoding
from collector.errors import HARD, SOFT, TEMPORARY, FetchFailed, FetchRefused
from store.deadline import deadline, deadline_transport, guard_connects

USER_AGENT = "mynawatch/0.1 (+https://github.com/mynawatch/mynawatch; monitor of My Number system news)"
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
TEMPORARY_STATUSES = {408, 425, 429}
HARD_STATUSES = {400, 401, 403, 404, 405, 410, 451}
MAX_VALIDATOR = 1024  # characters of an ETag or Last-Modified kept to send back


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
    """The client every fetch goes through: its sockets obey the per-request deadline (``_get``)."""
    limits = httpx.Limits(max_connections=policy.connections * 2, max_keepalive_connections=policy.connections)
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, "Accept": FEED_ACCEPT, "Accept-Language": "ja,en;q=0.5",
                 "Accept-Encoding": encoding.ACCEPT_ENCODING},
        timeout=policy.timeout_seconds, follow_redirects=False, trust_env=False,
        transport=deadline_transport(limits=limits, trust_env=False),
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
    """GET ``url`` conditionally. Raises FetchFailed on network errors, bad statuses and oversized bodies,
    FetchRefused on a redirect to a private address other than the source's own host."""
    headers = {}
    if etag := validator(etag):
        headers["If-None-Match"] = etag
    if last_modified := validator(last_modified):
        headers["If-Modified-Since"] = last_modified
    result = _follow(client, url, headers, policy, now=now, limiter=limiter, trusted=_origin(url))
    if result.status == 304 and not headers:
        raise FetchFailed(url, "304 Not Modified to a request without validators", status=304, kind=SOFT)
    if result.status == 304:
        return FetchResult(result.url, 304, None, result.content_type, result.etag or etag,
                           result.last_modified or last_modified, result.elapsed_ms)
    return result


def fetch_page(client: httpx.Client, url: str, *, policy: FetchPolicy, now: datetime,
               limiter: HostLimiter | None = None) -> FetchResult:
    """GET a page linked from a feed. Every hop of a redirect is checked against private addresses."""
    return _follow(client, url, {"Accept": PAGE_ACCEPT}, policy, now=now, limiter=limiter, trusted=None)


def _follow(client, url, headers, policy, *, now, limiter, trusted) -> FetchResult:
    """Request ``url`` and its redirects, one checked hop at a time, all within one deadline of
    ``timeout_seconds``. ``trusted``: the (host, port) that may be private (a source's own address)."""
    first = url
    with deadline(policy.timeout_seconds), guard_connects(_connect_rule(first, policy, trusted)):
        for _hop in range(policy.max_redirects + 1):
            if trusted is None or _origin(url) != trusted:
                check_address(url, allow_loopback=policy.allow_loopback_links)
            with (limiter or _NO_LIMIT).slot(url):
                result = _get(client, url, headers, policy, now=now)
            if result.location is None:
                return result
            url = result.location
    raise FetchFailed(first, f"too many redirects (more than {policy.max_redirects})", kind=SOFT)


def _origin(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL, None when it has none or cannot be read."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    return (host, port) if host and parts.scheme.lower() in ("http", "https") else None


def _connect_rule(url: str, policy: FetchPolicy, trusted: tuple[str, int] | None):
    """The check made on each address actually connected to (see ``check_address``)."""

    def check(host: str, port: int, address: str) -> None:
        if trusted is not None and (host.strip("[]").lower(), port) == trusted:
            return
        _check_ip(url, host, address, allow_loopback=policy.allow_loopback_links)

    return check


def check_address(url: str, *, allow_loopback: bool) -> None:
    """Refuse non-http(s) URLs and hosts that resolve to private, loopback, link-local or reserved addresses."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or 80
    except ValueError as exc:
        raise FetchRefused(url, f"not a valid address ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise FetchRefused(url, "only http and https addresses are fetched")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(url, f"cannot resolve {host}: {exc}", network=True) from exc
    for info in infos:
        _check_ip(url, host, info[4][0], allow_loopback=allow_loopback)


# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits, which a translator or relay on the
# way may reach: NAT64's well-known and local-use prefixes, SIIT's, and the deprecated IPv4-compatible one.
_IPV4_IN_LAST_32 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where it embeds one (::ffff:10.0.0.1, 64:ff9b::10.0.0.1,
    2002:a00:1:: (6to4), ::10.0.0.1), else None."""
    if ip.is_loopback or ip.is_unspecified:  # ::1 and :: are in ::/96 and are themselves
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _IPV4_IN_LAST_32) and int(ip) & 0xFFFFFFFF:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _check_ip(url: str, host: str, address: str, *, allow_loopback: bool) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (v4 := _embedded_ipv4(ip)) is not None:
        ip = v4  # ::ffff:10.0.0.1, 64:ff9b::a00:1 (NAT64) and 2002:a00:1:: (6to4) reach 10.0.0.1
    if ip.is_loopback and allow_loopback:
        return
    if not ip.is_global or ip.is_multicast:
        raise FetchRefused(url, f"{host} is a non-public address ({ip})")


def _get(client, url, headers, policy, *, now) -> FetchResult:
    """One request, never following a redirect (the caller checks the next hop first)."""
    started = time.monotonic()
    phase = "connecting"
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:  # an address httpx cannot request
        raise FetchFailed(url, f"not a valid address ({exc})", kind=SOFT) from exc
    try:
        with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
            phase = "body still arriving"
            _check_status(url, response, now)
            if response.has_redirect_location:
                return _result(response, None, started, location=_next_hop(url, response))
            if response.status_code == 304:
                return _result(response, None, started)
            return _result(response, _read(url, response, policy), started)
    except httpx.TimeoutException as exc:
        raise FetchFailed(url, f"timed out after {policy.timeout_seconds:g} s ({phase})", network=True) from exc
    except httpx.RemoteProtocolError as exc:
        if "location header" not in str(exc).lower():
            raise FetchFailed(url, f"network error: {exc}", network=True) from exc
        raise FetchFailed(url, f"redirect to an unreadable address ({exc})", kind=SOFT) from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(url, f"network error: {exc or type(exc).__name__}", network=True) from exc
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:  # the address was readable: httpx could not
        # read the Location it answered (javascript:alert(1), mailto:, data:) while building the next request
        raise FetchFailed(url, f"redirect to an unreadable address ({exc})", kind=SOFT) from exc


def _next_hop(url: str, response) -> str:
    location = response.headers.get("Location", "").strip()
    try:
        target = urljoin(url, location)
        urlsplit(target).port  # noqa: B018 (raises on a port out of range)
    except ValueError as exc:
        raise FetchFailed(url, f"redirect to an unreadable address {location[:200]!r}", kind=SOFT) from exc
    return target


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


def _read(url, response, policy) -> bytes:
    """The body, every Content-Encoding layer undone, never more than ``max_bytes`` in memory (compressed
    or decoded). The deadline of ``_follow`` bounds the time: a body trickled byte by byte is cut off."""
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchFailed(url, f"body of {declared} bytes exceeds the {policy.max_bytes}-byte cap",
                          status=response.status_code, kind=SOFT)
    try:
        decode = encoding.decoder(encoding.encodings(response.headers.get_list("Content-Encoding")),
                                  policy.max_bytes)
        chunks, raw_size, size = [], 0, 0
        for raw in chain(response.iter_raw(), [None]):
            raw_size += len(raw or b"")
            if raw_size > policy.max_bytes:
                raise encoding.EncodingError(f"body exceeds the {policy.max_bytes}-byte cap", too_large=True)
            for piece in decode(raw):
                size += len(piece)
                if size > policy.max_bytes:
                    raise encoding.EncodingError(f"body exceeds the {policy.max_bytes}-byte cap", too_large=True)
                chunks.append(piece)
    except encoding.EncodingError as exc:
        raise FetchFailed(url, exc.reason, status=response.status_code, kind=SOFT) from exc
    return b"".join(chunks)


def _result(response, body, started, *, location=None) -> FetchResult:
    return FetchResult(
        url=str(response.url), status=response.status_code, body=body,
        content_type=response.headers.get("Content-Type"), etag=validator(response.headers.get("ETag")),
        last_modified=validator(response.headers.get("Last-Modified")),
        elapsed_ms=int((time.monotonic() - started) * 1000), location=location,
    )


def validator(value: str | None) -> str | None:
    """An ETag or Last-Modified that can be sent back as it came (visible ASCII and spaces), else None: a
    server's stray byte (\\xff, a control character, a line break) would otherwise make every later request
    of the source fail before it is sent."""
    if not value or len(value) > MAX_VALIDATOR or not all(" " <= c <= "~" for c in value):
        return None
    return value


def retry_after_seconds(value: str | None, *, now: datetime, cap: float = 86400.0) -> float | None:
    """Retry-After as seconds from now (it may be seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes a latin-1 ² for a digit, float() does not
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
