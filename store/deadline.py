"""A total time limit for one network exchange: resolving, connecting, TLS, headers and body together. Shared by
the collector's fetches and the reports' mail and webhook, so it lives where the stages meet.

Per-operation timeouts (httpx's, smtplib's) restart at every read, so a server that sends a header line or
a few bytes just before each timeout holds a request for ever. Inside ``with deadline(seconds):``

- every HTTP request made through a client built with ``deadline_transport()`` is bounded at the socket
  layer: each connect, read and write waits at most the time left, and fails at once when none is left
  (``httpx.ConnectTimeout`` / ``ReadTimeout`` / ``WriteTimeout``); host names are resolved in a helper
  thread, so a slow resolver is bounded too;
- any socket registered with ``Deadline.watch_socket`` (smtplib's, say) is shut down when time is up,
  and the block then raises ``TimeoutError`` (an ``OSError``) instead of whatever the client made of the
  closed connection.

A ``connect_check`` set with ``guard_connects`` sees every address a connection is about to be made to,
after resolution (so a host name that resolves to a private address cannot slip past a check made on
the name).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

_END: ContextVar[float | None] = ContextVar("mynawatch_deadline_end", default=None)
_CONNECT_CHECK: ContextVar[Callable[[str, int, str], None] | None] = ContextVar("mynawatch_connect_check",
                                                                                default=None)


class Deadline:
    """The end of one ``deadline`` block (monotonic clock)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + max(0.0, seconds)
        self.fired = False
        self._timers: list[threading.Timer] = []

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch_socket(self, get_socket: Callable[[], socket.socket | None]) -> None:
        """Shut down ``get_socket()`` (looked up when time is up: it may have been wrapped in TLS since)."""

        def expire():
            self.fired = True
            sock = get_socket()
            if sock is not None:
                shutdown_socket(sock)

        timer = threading.Timer(self.remaining(), expire)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Bound everything network inside the block to ``seconds`` in total (nested blocks: the earlier end)."""
    limit = Deadline(seconds)
    outer = _END.get()
    token = _END.set(limit.end if outer is None else min(limit.end, outer))
    try:
        yield limit
    except Exception as exc:
        if limit.fired and not isinstance(exc, TimeoutError):
            raise TimeoutError(f"no answer within {seconds:g} s in total") from exc
        raise
    finally:
        limit._cancel()
        _END.reset(token)


@contextmanager
def guard_connects(check: Callable[[str, int, str], None] | None) -> Iterator[None]:
    """``check(host, port, address)`` runs before every connection made in the block; it raises to refuse."""
    token = _CONNECT_CHECK.set(check)
    try:
        yield
    finally:
        _CONNECT_CHECK.reset(token)


def time_left() -> float | None:
    """Seconds left before the current deadline (None outside any ``deadline`` block)."""
    end = _END.get()
    return None if end is None else max(0.0, end - time.monotonic())


def shutdown_socket(sock: socket.socket) -> None:
    """End a connection another thread may be blocked reading (works on TLS sockets too: it acts on a
    duplicate of the descriptor, so the TLS object is not touched from this thread)."""
    try:
        fd = sock.fileno()
        if fd < 0:
            return
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    left = time_left()
    if left is None:
        return timeout
    if left <= 0:
        raise error("the request's total time limit has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname,
                                                      _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with every operation bounded by the current deadline and every address
    shown to the current connect check before connecting to it."""

    def __init__(self):
        self._sync = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        addresses = _resolve(host, port, _bounded(timeout, httpcore.ConnectTimeout))
        check = _CONNECT_CHECK.get()
        if check is not None:
            for address in addresses:
                check(host, port, address)
        error: Exception | None = None
        for address in addresses:  # connect to the checked address itself: no second resolution
            try:
                stream = self._sync.connect_tcp(address, port, _bounded(timeout, httpcore.ConnectTimeout),
                                                local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        raise error or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        left = time_left()
        time.sleep(seconds if left is None else min(seconds, left))


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of ``host``; the lookup runs in a helper thread so it cannot outlast ``timeout``."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    answer: dict = {}

    def lookup():
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            answer["error"] = exc

    worker = threading.Thread(target=lookup, name="resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than the time left")
    if "error" in answer:
        raise httpcore.ConnectError(f"cannot resolve {host}: {answer['error']}")
    return list(dict.fromkeys(info[4][0] for info in answer["infos"]))


def deadline_transport(**kwargs) -> httpx.HTTPTransport:
    """An httpx transport whose sockets obey ``deadline`` and ``guard_connects`` (arguments: httpx's)."""
    transport = httpx.HTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version does not let the deadline backend in; pin httpx 0.28")
    pool._network_backend = DeadlineBackend()
    return transport
