"""Shared fixtures: real SQLite files, a real loopback HTTP server, one trained model per session."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pg import engine_sessions, pg_module_url, pg_store_url, pg_url, store_url, summary_line  # noqa: F401 E402

FIXTURES = Path(__file__).parent / "fixtures"


# Modules that read the demo month (``demo_month``): under pytest-xdist they run on one worker, which builds it once.
DEMO_MODULES = {"test_demo.py", "test_incidents.py", "test_backfill_demo.py", "test_demo_streams.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on pytest-xdist workers with ``--dist loadgroup``: each module is one
    group, so its module fixtures are built once, and the demo month's modules are one group, so the demo
    runs once. The demo's group goes first: it is the longest, and a long group started last would keep
    one worker busy alone at the end."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("demo-month" if name in DEMO_MODULES else name))
    items.sort(key=lambda item: item.path.name not in DEMO_MODULES)  # stable: the rest keep their order


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


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Train at most once per test session, in a cache folder of the session's own."""
    if "MYNAWATCH_CACHE" not in os.environ:
        os.environ["MYNAWATCH_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    return Path(os.environ["MYNAWATCH_CACHE"])


@pytest.fixture(scope="session")
def model(model_cache):
    from classifier.cache import load_or_train

    return load_or_train()


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory, model_cache):
    """The demo run once per test process on the sample month (the pipeline end to end, about half a minute):
    its output folder, store and reports. Never written: a module that reads or changes it takes its own
    copy with ``copy_demo``."""
    from mynawatch.demo import run_demo

    out = tmp_path_factory.mktemp("demo-month") / "out"
    run_demo(out, say=lambda *_: None)
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
