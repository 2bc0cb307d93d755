"""Engine, connection setup and sessions. The one place that knows the database URL."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from store.dialect import dialect_for
from store.locks import open_lock
from store.migrations import current, migrate
from store.views import create_views


log = logging.getLogger(__name__)
CONNECT_SECONDS = 10  # a PostgreSQL server that accepts and never answers is given up after this long


def connect_args(url: str) -> dict:
    """What the driver is given besides the URL: for PostgreSQL a connect timeout, unless the URL sets one
    (libpq waits for ever by default, and every command would hang on a server that never answers)."""
    if url.startswith("sqlite") or "connect_timeout" in make_url(url).query:
        return {}
    return {"connect_timeout": CONNECT_SECONDS}


def open_engine(url: str) -> Engine:
    """Open (and create, when missing) the store at ``url``: schema migrated to the latest revision,
    search index and views in place."""
    database = make_url(url).database  # the file SQLAlchemy opens: %-escapes decoded, as the engine reads them
    if url.startswith("sqlite:///") and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    with open_lock(url):  # processes starting at once: one creates or migrates, the others then find it done
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"), connect_args=connect_args(url))
        dialect = dialect_for(engine)
        event.listen(engine, "connect", lambda conn, _record: dialect.on_connect(conn))
        if dialect.name == "sqlite":
            migrate(engine)  # reads the schema's revision under the lock, so it never repeats another's work
            with engine.begin() as connection:
                dialect.create_search_index(connection)
                create_views(connection, dialect)
        else:
            with engine.connect() as lock:  # PostgreSQL: an advisory lock held by this session meanwhile
                lock.execute(text("SELECT pg_advisory_lock(7240115, 1)"))
                try:
                    migrate(engine)
                    with engine.begin() as connection:
                        dialect.create_search_index(connection)
                        create_views(connection, dialect)
                finally:
                    lock.execute(text("SELECT pg_advisory_unlock(7240115, 1)"))
                    lock.commit()
    return engine


def make_sessions(url: str) -> sessionmaker[Session]:
    """A session factory for the store; use ``with sessions.begin() as session:`` once per job."""
    return sessionmaker(open_engine(url), expire_on_commit=False)


ANALYSIS_LIMIT = 1000  # rows of each index SQLite's ANALYZE samples: milliseconds, not a scan of the store


def refresh_statistics(sessions: sessionmaker[Session]) -> None:
    """Refresh SQLite's query-planner statistics (a sampled ANALYZE). A store never analyzed is planned blind:
    the daily report's aggregates took 5 s on 1,000,000 items (bench/report_speed.py) instead of about 1 s.
    PostgreSQL's autovacuum keeps its own. A store that cannot be written (read-only, a full disk) is left as it
    is: the statistics only speed queries up."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
    except DBAPIError as exc:
        log.debug("planner statistics not refreshed: %s", exc)


def backup_store(url: str, target: Path) -> None:
    dialect_for(url).backup(url, target)


def check_store(url: str) -> list[str]:
    return dialect_for(url).check(open_engine(url))


def upgrade_store(url: str) -> tuple[str | None, str]:
    """Bring the schema up to date; returns (revision before, revision after)."""
    engine = create_engine(url)
    with engine.connect() as c:
        before = current(c)
    engine.dispose()
    open_engine(url)  # migrates, then refreshes the search index and views
    engine = create_engine(url)
    with engine.connect() as c:
        after = current(c)
    engine.dispose()
    return before, after
