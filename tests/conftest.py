"""Shared fixtures: real SQLite files, a real loopback HTTP server, one trained model per session."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pg import engine_sessions, pg_module_url, pg_store_url, pg_url, store_url, summary_line  # noqa: F401 E402

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_terminal_summary(terminalreporter):
    """Say once (not per test) that the PostgreSQL half was skipped, and why."""
    if (line := summary_line(terminalreporter.stats)) is not None:
        terminalreporter.write_line(line)


class QuietServer(ThreadingHTTPServer):
    """A loopback server that does not print a traceback when a client hangs up mid-request (the
    collector's deadlines and size caps do that on purpose)."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def shared_root(tmp_path_factory) -> Path:
    """A folder of this test run: under pytest-xdist (`make test` runs two workers), the one all workers share."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@contextmanager
def run_lock(root: Path, name: str):
    """Held by one process of the test run at a time: what it builds, the others wait for and reuse."""
    with open(root / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Train at most once per test run, in a cache folder of the run's own (shared by its workers)."""
    if "MYNAWATCH_CACHE" not in os.environ:
        cache = shared_root(tmp_path_factory) / "model-cache"
        cache.mkdir(exist_ok=True)
        os.environ["MYNAWATCH_CACHE"] = str(cache)
    return Path(os.environ["MYNAWATCH_CACHE"])


@pytest.fixture(scope="session")
def model(tmp_path_factory, model_cache):
    from classifier.cache import load_or_train

    with run_lock(shared_root(tmp_path_factory), "model"):
        return load_or_train()


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory, model_cache):
    """The demo run once per test run on the sample month (the pipeline end to end, about half a minute):
    its output folder, store and reports. Never written: a module that reads or changes it takes its own
    copy with ``copy_demo``."""
    from classifier.cache import load_or_train
    from mynawatch.demo import run_demo

    root = shared_root(tmp_path_factory)
    out = root / "demo-month" / "out"
    with run_lock(root, "model"):  # the model first, trained once for the run
        load_or_train()
    with run_lock(root, "demo-month"):  # the first worker to need it builds it, the others wait and reuse it
        if not (out.parent / "done").exists():
            shutil.rmtree(out.parent, ignore_errors=True)
            out.parent.mkdir()
            run_demo(out, say=lambda *_: None)
            (out.parent / "done").touch()
    return out


def copy_demo(demo_month: Path, folder: Path) -> Path:
    """A copy of the demo's output folder in ``folder``: the same store, summary and reports."""
    return Path(shutil.copytree(demo_month, folder / "out"))


@pytest.fixture
def sessions(tmp_path):
    from store.db import make_sessions

    return make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")


@pytest.fixture
def now():
    return datetime(2024, 10, 16, 0, 0, tzinfo=timezone.utc)


def wait_until(what: str, check, timeout: float, *, procs=(), tails=lambda: "", every: float = 0.2,
               tolerate: tuple[type[BaseException], ...] = ()):
    """Poll ``check`` until it returns something true (returned), failing the test after ``timeout`` seconds
    or as soon as one of ``procs`` has exited, with ``tails()`` (the processes' logs) in the message. Errors
    of the ``tolerate`` kinds count as not yet (a store the processes are still creating)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except tolerate:
            value = None
        if value:
            return value
        if any(p.poll() is not None for p in procs):
            pytest.fail(f"{what}: a process exited early:\n{tails()}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{tails()}")


class Route:
    """What the loopback server answers on one path: a status, headers and a body (or a callable)."""

    def __init__(self, body=b"", status=200, headers=None, delay=0.0):
        self.body, self.status, self.headers, self.delay = body, status, dict(headers or {}), delay
        self.hits = 0


def send(handler, status: int, body: bytes, headers) -> None:
    """Answer one request with a status, headers (a dict, or (name, value) pairs when a name repeats) and a
    body (a client that hung up is fine)."""
    handler.send_response(status)
    for k, v in (headers.items() if isinstance(headers, dict) else headers):
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass


class LoopbackServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                import time

                outer.requests.append((self.path, dict(self.headers)))
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route.hits += 1
                if route.delay:
                    time.sleep(route.delay)
                body = route.body(self) if callable(route.body) else route.body
                if body is None:
                    return
                send(self, route.status, body, route.headers)

            def log_message(self, *args):
                pass

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = LoopbackServer()
    yield s
    s.close()
