"""PostgreSQL for tests: a uniquely named database per test (or per module, emptied between tests), dropped
afterwards, on the server at MYNAWATCH_TEST_POSTGRES_URL (default: the local one, trust authentication).

Where no server answers, every PostgreSQL test is skipped and the session says so in one line; with
MYNAWATCH_TEST_POSTGRES=required (what .ci/run sets) they fail instead.
"""

from __future__ import annotations

import itertools
import os
import uuid
from functools import lru_cache

import pytest

ADMIN_URL = os.environ.get("MYNAWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRED = os.environ.get("MYNAWATCH_TEST_POSTGRES", "").lower() in ("required", "1", "yes", "true")
ENGINES = ("sqlite", "postgresql")
_names = itertools.count(1)


@lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why no PostgreSQL server can be used (None when one answers)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(_libpq(ADMIN_URL), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {_shown(ADMIN_URL)} ({str(exc).strip().splitlines()[0]})"
    return None


def require_server() -> None:
    """Skip (or, when required, fail) a test that needs a server when there is none."""
    reason = unavailable()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"MYNAWATCH_TEST_POSTGRES=required, but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL: {reason}")


def summary_line(stats: dict) -> str | None:
    """The one line a test session ends with when its PostgreSQL half was skipped."""
    if REQUIRED or unavailable.cache_info().currsize == 0 or unavailable() is None:
        return None  # required: each test failed with the reason already
    n = sum(1 for r in stats.get("skipped", []) if "PostgreSQL:" in str(getattr(r, "longrepr", "")))
    return (f"PostgreSQL half skipped ({n} tests): {unavailable()}; set MYNAWATCH_TEST_POSTGRES_URL to a server, "
            "or MYNAWATCH_TEST_POSTGRES=required to make this a failure")


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


@lru_cache(maxsize=1)
def _drop_leftovers() -> None:
    """Databases of test processes that were killed before they could drop theirs (named after their pid)."""
    import psycopg

    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True, connect_timeout=10) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mwtest%'")]
        for name in names:
            pid = name.split("_")[1] if name.count("_") >= 3 else ""
            if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database() -> str:
    """A new, empty database; its SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    if os.path.isdir("/proc/self"):
        _drop_leftovers()
    name = f"mwtest_{os.getpid()}_{next(_names)}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    _admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def empty_store(url: str) -> None:
    """Every table of a store emptied and its ids restarted (the schema, views and index stay)."""
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True, connect_timeout=10) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def pg_url(request):
    """A fresh PostgreSQL database for this test alone, dropped afterwards."""
    require_server()
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def pg_module_url(request):
    """One PostgreSQL database for a module's tests (use ``pg_store_url`` to get it emptied per test)."""
    require_server()
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def pg_store_url(request):
    """The module's PostgreSQL database, its tables emptied before the test."""
    url = request.getfixturevalue("pg_module_url")
    empty_store(url)
    return url


@pytest.fixture(params=ENGINES)
def store_url(request, tmp_path):
    """The URL of an empty store on each engine: a SQLite file, or the module's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_store_url")


@pytest.fixture
def engine_sessions(store_url):
    """A session factory on an empty store, once per engine."""
    from store.db import make_sessions

    sessions = make_sessions(store_url)
    yield sessions
    sessions.kw["bind"].dispose()
