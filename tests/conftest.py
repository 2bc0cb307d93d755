"""Shared fixtures: real SQLite files, a real loopback HTTP server, one trained model per session."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pg import engine_sessions, pg_module_url, pg_store_url, pg_url, store_url, summary_line  # noqa: F401 E402
from warmup import build_demo_month

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


def _cache_for(root: Path) -> Path:
    """The model cache of the run: MYNAWATCH_CACHE when it is set, else a folder of the run's own."""
    return Path(os.environ.get("MYNAWATCH_CACHE") or root / "model-cache")


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Train at most once per test run, in a cache folder of the run's own (shared by its workers)."""
    cache = _cache_for(shared_root(tmp_path_factory))
    cache.mkdir(exist_ok=True)
    os.environ["MYNAWATCH_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def model(tmp_path_factory, model_cache):
    from classifier.cache import load_or_train

    with run_lock(shared_root(tmp_path_factory), "model"):  # free once the warm-up (below) has trained it
        return load_or_train()


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory, model_cache):
    """The demo run once per test run on the sample month (the pipeline end to end, about half a minute):
    its output folder, store and reports. Never written: a module that reads or changes it takes its own
    copy with ``copy_demo``."""
    from classifier.cache import load_or_train

    root = shared_root(tmp_path_factory)
    with run_lock(root, "model"):  # the model first, trained once for the run
        load_or_train()
    with run_lock(root, "demo-month"):  # the first to need it builds it (the warm-up), the others wait and reuse it
        return build_demo_month(root)


# --- the warm-up: the model and the demo month built beside the tests that need neither ----------------------

# The files that run longest (seconds of one worker, measured): started first within their group so that no
# worker is left with one long file at the end while the other idles.
LONG_FILES = ("test_no_traceback.py", "test_kill_stages.py", "test_hostile_audit.py", "test_incidents.py",
              "test_hostile_batch.py", "test_hostile_sql.py", "test_concurrency.py", "test_backfill.py",
              "test_notify_crash.py")
_warmup: subprocess.Popen | None = None


def _needs(item, *names: str) -> bool:
    return any(name in item.fixturenames for name in names)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(session, config, items):
    """Order the files: those that need neither the model nor the demo month first, the longest first within
    each group (`make test` hands out whole files, in this order, with --no-loadscope-reorder); and start
    the warm-up once per run."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.path.name, []).append(item)
    heavy = {name for name, its in files.items() if any(_needs(i, "model", "demo_month") for i in its)}

    def rank(name: str):
        return (name in heavy, LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES),
                -len(files[name]))

    items[:] = [item for name in sorted(files, key=rank) for item in files[name]]
    if heavy:
        _start_warmup(config, demo=any(_needs(i, "demo_month") for i in items))


def _start_warmup(config, *, demo: bool) -> None:
    global _warmup
    base = config._tmp_path_factory.getbasetemp()  # what shared_root gives the fixtures, before any fixture runs
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    try:  # one warm-up per run: the first worker to get here starts it
        os.close(os.open(root / "warmup.started", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    cache = _cache_for(root)
    cache.mkdir(exist_ok=True)
    locks = [open(root / f"{name}.lock", "w") for name in ("model", *(["demo-month"] if demo else []))]
    for fh in locks:
        fcntl.flock(fh, fcntl.LOCK_EX)  # taken before any test starts; held by the warm-up until it is done
    fds = [fh.fileno() for fh in locks] + [-1]
    with open(root / "warmup.log", "w") as log:
        _warmup = subprocess.Popen([sys.executable, str(Path(__file__).with_name("warmup.py")), str(root),
                                    str(fds[0]), str(fds[1])], pass_fds=fds[:-1], stdout=log, stderr=log,
                                   env=dict(os.environ, MYNAWATCH_CACHE=str(cache)))
    for fh in locks:
        fh.close()  # the warm-up's copies keep the locks


def pytest_sessionfinish(session):
    if _warmup is not None and _warmup.poll() is None:  # a run that ended early (-x, Ctrl-C) stops it too
        _warmup.kill()
        _warmup.wait()


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


def one_error_line(capsys) -> str:
    """The one line a command wrote to standard error (``mynawatch: ...``), with no traceback: what a command says
    when it refuses bad input or meets trouble."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mynawatch: "), err
    return lines[0]
