"""Hostile servers against the fetch limits: trickled headers and bodies, compression bombs, redirects into
private addresses, IPv6 sources; and the same deadline on webhook and SMTP calls. Real loopback servers."""

from __future__ import annotations

import gzip
import socket
import smtplib
import threading
import time
import tracemalloc
import zlib
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from store.deadline import deadline, deadline_transport, guard_connects
from collector.errors import FetchFailed, FetchRefused
from collector.fetch import FetchPolicy, check_address, fetch_feed, fetch_page, make_client
from collector.jobs import Collector
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from reports.mail import SmtpSettings, send_bytes
from reports.webhook import WebhookFailed, post_webhook
from store.tables import Item
from tests.conftest import LoopbackServer, Route, send

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
FEED = (Path(__file__).parent / "fixtures" / "feeds" / "nhk_rss2.xml").read_bytes()
NOW = datetime(2024, 10, 16, tzinfo=timezone.utc)
POLICY = FetchPolicy(timeout_seconds=1.0, max_bytes=1_000_000, host_interval_seconds=0, per_host_connections=8)


class RawServer:
    """A TCP server on 127.0.0.1 that reads a request's head, then runs ``script(conn)`` to answer it."""

    def __init__(self, script):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script, self.requests = script, 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        self.requests += 1
        try:
            self.script(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, path="/feed"):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.sock.close()


def _read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        got = conn.recv(4096)
        if not got:
            return data
        data += got
    return data


def _trickle_headers(conn):
    _read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for n in range(100_000):  # a header line every 0.2 s, for ever (until the client hangs up)
        time.sleep(0.2)
        conn.sendall(f"X-Line-{n}: still coming\r\n".encode())


def _trickle_body(conn):
    _read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(100_000):
        time.sleep(0.2)
        conn.sendall(b" ")


def _silent(conn):
    _read_head(conn)
    time.sleep(30)


def _timed(call, limit=8.0):
    """Run ``call`` in a thread; (seconds it took, what it raised). Fails if it is still running after ``limit``."""
    box = {}

    def run():
        started = time.monotonic()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            box["error"] = exc
        box["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"still running after {limit} s: no total deadline"
    return box["seconds"], box.get("error")


@pytest.mark.parametrize("script", [_trickle_headers, _trickle_body, _silent], ids=["headers", "body", "silent"])
def test_a_fetch_never_outlasts_its_deadline(script):
    server = RawServer(script)
    with make_client(POLICY) as client:
        seconds, error = _timed(lambda: fetch_feed(client, server.url(), etag=None, last_modified=None,
                                                   policy=POLICY, now=NOW))
    server.close()
    assert isinstance(error, FetchFailed) and "timed out after 1 s" in str(error)
    assert error.network and seconds < POLICY.timeout_seconds + 0.8


def test_a_collect_round_with_a_header_trickler_ends_on_time_and_stores_the_good_source(sessions):
    server, good = RawServer(_trickle_headers), LoopbackServer()
    good.routes["/feed"] = Route(FEED)
    sources = [SourceConfig("slow", server.url()), SourceConfig("good", good.url("/feed"), publisher="NHK")]
    with make_client(POLICY) as client, Collector(sessions, client, POLICY, CollectPolicy()) as collector:
        seconds, error = _timed(lambda: collector.collect_round(sources, now=NOW))
    server.close()
    good.close()
    assert error is None and seconds < POLICY.timeout_seconds + 1.5
    with sessions.begin() as s:
        assert len(s.scalars(select(Item.id)).all()) == 2


def _serve_encoded(server, path, body, encodings):
    def answer(handler):  # one header line per value: "gzip, gzip" or two lines of "gzip"
        send(handler, 200, body, [("Content-Type", "application/rss+xml")]
             + [("Content-Encoding", value) for value in encodings])

    server.routes[path] = Route(answer)
    return server.url(path)


def _zeros_deflate(megabytes: int, wbits: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = b"\0" * (1 << 20)
    return b"".join(z.compress(chunk) for _ in range(megabytes)) + z.flush()


BOMBS = {
    "gzip,gzip 4 KB -> 2.5 GiB (fixture)": (lambda: (HOSTILE / "bomb_gzip_gzip.bin").read_bytes(), ["gzip, gzip"]),
    "two header lines": (lambda: gzip.compress(_zeros_deflate(64, 31)), ["gzip", "gzip"]),
    "deflate": (lambda: _zeros_deflate(64, zlib.MAX_WBITS), ["deflate"]),
    "raw deflate": (lambda: _zeros_deflate(64, -zlib.MAX_WBITS), ["deflate"]),
    "deflate, gzip": (lambda: gzip.compress(_zeros_deflate(64, zlib.MAX_WBITS)), ["deflate, gzip"]),
    "gzip members": (lambda: _zeros_deflate(40, 31) * 2, ["gzip"]),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_compression_bomb_never_grows_past_the_cap_in_memory(server, name):
    make, encodings = BOMBS[name]
    url = _serve_encoded(server, "/bomb", make(), encodings)
    with make_client(POLICY) as client:
        tracemalloc.start()
        try:
            with pytest.raises(FetchFailed, match="cap") as caught:
                fetch_feed(client, url, etag=None, last_modified=None, policy=POLICY, now=NOW)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert caught.value.kind == "soft"
    assert peak < 4 * POLICY.max_bytes, f"{peak} bytes held at once"


@pytest.mark.parametrize("encodings", [["gzip"], ["x-gzip"], ["deflate"], ["gzip, gzip"], ["gzip", "deflate"],
                                       ["identity"], []])
def test_honest_compressed_feeds_are_read_whole(server, encodings):
    body = FEED
    for name in [n.strip() for value in encodings for n in value.split(",")]:
        body = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress,
                "identity": lambda b: b}[name](body)
    url = _serve_encoded(server, "/feed", body, encodings)
    with make_client(POLICY) as client:
        result = fetch_feed(client, url, etag=None, last_modified=None, policy=POLICY, now=NOW)
    assert result.body == FEED


@pytest.mark.parametrize("encodings, reason", [
    (["br"], "unsupported Content-Encoding br"), (["zstd"], "unsupported Content-Encoding zstd"),
    (["gzip, gzip, gzip, gzip, gzip"], "layers of Content-Encoding"), (["gzip"], "not valid gzip"),
])
def test_encodings_we_cannot_undo_safely_fail_the_fetch_softly(server, encodings, reason):
    url = _serve_encoded(server, "/feed", FEED, encodings)
    with make_client(POLICY) as client, pytest.raises(FetchFailed, match=reason) as caught:
        fetch_feed(client, url, etag=None, last_modified=None, policy=POLICY, now=NOW)
    assert caught.value.kind == "soft"


def test_the_client_asks_only_for_encodings_it_can_undo(server):
    server.routes["/feed"] = Route(FEED)
    with make_client(POLICY) as client:
        fetch_feed(client, server.url("/feed"), etag=None, last_modified=None, policy=POLICY, now=NOW)
    assert server.requests[0][1]["Accept-Encoding"] == "gzip, deflate"


# Redirects of sources: the source's own host is trusted; any other private address is refused.

@pytest.fixture
def other():
    s = LoopbackServer()
    yield s
    s.close()


def _fetch(url, policy=POLICY):
    with make_client(policy) as client:
        return fetch_feed(client, url, etag=None, last_modified=None, policy=policy, now=NOW)


def test_a_source_on_a_loopback_address_is_fetched_and_may_redirect_within_its_host(server):
    server.routes["/a"] = Route(b"", status=301, headers={"Location": "/b"})
    server.routes["/b"] = Route(b"", status=302, headers={"Location": server.url("/feed")})
    server.routes["/feed"] = Route(FEED)
    result = _fetch(server.url("/a"))
    assert result.body == FEED and result.url == server.url("/feed")


def test_a_source_redirect_to_another_private_service_is_refused_before_it_is_requested(server, other):
    other.routes["/secret"] = Route(b"internal")
    server.routes["/a"] = Route(b"", status=301, headers={"Location": "/b"})
    server.routes["/b"] = Route(b"", status=302, headers={"Location": other.url("/secret")})
    with pytest.raises(FetchRefused, match="non-public address"):
        _fetch(server.url("/a"))
    assert other.requests == []


@pytest.mark.parametrize("location", [
    "http://10.0.0.1/", "http://192.168.1.1/admin", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/feed", "http://localhost:{port}/feed", "http://0.0.0.0:{port}/feed",
    "http://[::ffff:127.0.0.1]:{port}/feed", "http://127.0.0.2:{port}/feed", "http://100.64.0.1/",
    "http://[fe80::1]/", "http://[fd00::1]/", "file:///etc/passwd", "gopher://127.0.0.1:{port}/",
    # IPv6 addresses that carry a private IPv4 one, reached through a translator or relay on the way:
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "http://[64:ff9b::7f00:1]:{port}/feed",  # NAT64
    "http://[64:ff9b:1::a00:1]/", "http://[2002:a00:1::1]/", "http://[2002:7f00:1::]:{port}/",  # local NAT64, 6to4
    "http://[::ffff:0:a00:1]/", "http://[::127.0.0.1]:{port}/feed",  # SIIT, IPv4-compatible
])
def test_a_source_redirect_into_private_address_space_is_refused(server, location):
    server.routes["/feed"] = Route(b"", status=302, headers={"Location": location.format(port=server.httpd.server_address[1])})
    with pytest.raises(FetchRefused):
        _fetch(server.url("/feed"))
    assert [p for p, _ in server.requests] == ["/feed"]


def test_a_source_redirect_to_a_public_address_is_allowed(server):
    server.routes["/feed"] = Route(b"", status=302, headers={"Location": "http://93.184.216.34:81/feed"})
    with pytest.raises(FetchFailed) as caught:  # no network here: the attempt fails, but it was not refused
        _fetch(server.url("/feed"), FetchPolicy(timeout_seconds=0.5, host_interval_seconds=0))
    assert not isinstance(caught.value, FetchRefused)
    check_address("http://93.184.216.34/", allow_loopback=False)
    for public in ("http://[64:ff9b::5db8:d822]/", "http://[2002:5db8:d822::1]/", "http://[::ffff:93.184.216.34]/"):
        check_address(public, allow_loopback=False)  # the same public address through NAT64, 6to4, mapped


def test_allow_loopback_links_lets_a_source_redirect_to_another_loopback_server(server, other):
    other.routes["/feed"] = Route(FEED)
    server.routes["/feed"] = Route(b"", status=302, headers={"Location": other.url("/feed")})
    policy = FetchPolicy(timeout_seconds=1.0, host_interval_seconds=0, allow_loopback_links=True)
    assert _fetch(server.url("/feed"), policy).body == FEED


def test_an_unreadable_redirect_is_a_soft_failure_not_an_internal_error(server):
    server.routes["/feed"] = Route(b"", status=302, headers={"Location": "http://[::1"})
    with pytest.raises(FetchFailed, match="unreadable address") as caught:
        _fetch(server.url("/feed"))
    assert caught.value.kind == "soft"


def test_a_refused_redirect_fails_the_source_hard_in_a_round(server, other, sessions):
    server.routes["/feed"] = Route(b"", status=302, headers={"Location": other.url("/feed")})
    other.routes["/feed"] = Route(FEED)
    source = SourceConfig("moved", server.url("/feed"), publisher="NHK")
    with make_client(POLICY) as client, Collector(sessions, client, POLICY, CollectPolicy()) as collector:
        (outcome,) = collector.collect_round([source], now=NOW)
    assert outcome.outcome == "failed" and outcome.failure_kind == "hard" and "refused" in outcome.error
    assert other.requests == []


def test_connections_are_checked_on_the_address_actually_used(server):
    """A name that passed a check and resolves elsewhere the second time (DNS rebinding) is refused at connect."""
    server.routes["/feed"] = Route(FEED)
    seen = []

    def refuse(host, port, address):
        seen.append((host, address))
        raise FetchRefused(f"http://{host}:{port}/", f"{address} refused")

    with make_client(POLICY) as client, guard_connects(refuse), pytest.raises(FetchRefused):
        client.get(f"http://localhost:{server.httpd.server_address[1]}/feed")
    assert seen and server.requests == []
    page_policy = FetchPolicy(timeout_seconds=1.0, host_interval_seconds=0, allow_loopback_links=False)
    with make_client(page_policy) as client, pytest.raises(FetchRefused):
        fetch_page(client, server.url("/feed"), policy=page_policy, now=NOW)


# IPv6: a source on [::1] and links with bracketed hosts keep their brackets through the store.

class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def test_an_ipv6_source_is_fetched_and_its_ipv6_links_keep_their_brackets(sessions):
    v4 = LoopbackServer()  # only for its handler class
    handler = v4.httpd.RequestHandlerClass
    v4.close()
    try:
        httpd = _V6Server(("::1", 0), handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    feed = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>v6</title>'
            f'<item><title>マイナポータル 一時停止</title><link>http://[2001:db8::1]:8080/a?x=1</link></item>'
            f'<item><title>マイナ保険証 トラブル</title><link>http://[::1]:{port}/b</link></item>'
            f'</channel></rss>').encode()
    v4.routes["/feed"] = Route(feed)
    source = SourceConfig("v6", f"http://[::1]:{port}/feed", publisher="v6")
    try:
        with make_client(POLICY) as client, Collector(sessions, client, POLICY, CollectPolicy()) as collector:
            (outcome,) = collector.collect_round([source], now=NOW)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert outcome.outcome == "new", outcome
    with sessions.begin() as s:
        urls = set(s.scalars(select(Item.canonical_url)).all())
    assert urls == {"http://[2001:db8::1]:8080/a?x=1", f"http://[::1]:{port}/b"}


# The same deadline for webhook and SMTP calls.

def test_a_webhook_receiver_trickling_its_answer_is_cut_off_at_the_timeout():
    server = RawServer(_trickle_headers)
    seconds, error = _timed(lambda: post_webhook(server.url("/alerts"), b"{}", timeout=1.0))
    server.close()
    assert isinstance(error, WebhookFailed) and seconds < 1.8


def _trickle_smtp_greeting(conn):
    for _ in range(100_000):  # a multi-line greeting that never ends
        conn.sendall(b"220-still greeting\r\n")
        time.sleep(0.2)


def test_an_smtp_server_trickling_its_greeting_is_cut_off_at_the_timeout():
    server = RawServer(_trickle_smtp_greeting)
    settings = SmtpSettings(host="127.0.0.1", port=server.port, timeout=1.0, sender="a@example.jp")
    seconds, error = _timed(lambda: send_bytes(b"Subject: x\r\n\r\nbody\r\n", "b@example.jp", settings))
    server.close()
    assert isinstance(error, OSError) and seconds < 1.8, (seconds, error)
    assert isinstance(error, TimeoutError) or isinstance(error, smtplib.SMTPException)


def test_the_deadline_helper_bounds_any_httpx_client_made_with_its_transport():
    server = RawServer(_trickle_headers)
    with httpx.Client(transport=deadline_transport(), timeout=5.0) as client:
        def call():
            with deadline(0.6):
                client.get(server.url())
        seconds, error = _timed(call)
    server.close()
    assert isinstance(error, httpx.TimeoutException) and seconds < 1.3
