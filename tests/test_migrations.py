"""Migrations: the first schema upgrades to the latest without losing rows; models never drift from them."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from store.db import make_sessions, open_engine
from store.dialect import SQLite
from store.migrations import head, migrate
from store.search import index_pending
from store.tables import Base

T = "2024-10-02 00:00:00.000000"


def _fill_first_schema(path):
    c = sqlite3.connect(path)
    c.executescript(f"""
        INSERT INTO sources (id, name, url, kind, publisher, interval_minutes, failure_score, status)
            VALUES (1, 'nhk', 'https://example.jp/rss', 'feed', 'NHK', 60, 0, 'ok');
        INSERT INTO fetch_log (id, source_id, started_at, http_status, outcome, new_items, duration_ms)
            VALUES (1, 1, '{T}', 200, 'new', 2, 10);
        INSERT INTO stories (id, title, first_seen_at) VALUES (1, 'マイナポータルつながりにくく', '{T}');
        INSERT INTO items (id, source_id, story_id, canonical_url, title, summary, publisher, title_key, published_at,
                           fetched_at, gate) VALUES
            (1, 1, 1, 'https://example.jp/1', 'マイナポータルつながりにくく', 'アクセス集中', 'NHK', 'k1', '{T}', '{T}', 'pass'),
            (2, 1, 1, 'https://example.jp/2', 'マイナポータル障害', '', 'NHK', 'k2', '{T}', '{T}', 'pass');
        INSERT INTO classifications (id, item_id, model_version, relevant, cause, sentiment, confidence, scores, created_at)
            VALUES (1, 1, 'm-1', 1, 'load', 'negative', 0.9, '{{}}', '{T}');
        INSERT INTO classification_services (classification_id, service) VALUES (1, 'portal');
        INSERT INTO trend_points (id, source_id, term, traffic, traffic_raw, published_at, fetched_at, news_titles, services)
            VALUES (1, 1, 'マイナポータル', 20000, '20000+', '{T}', '{T}', '', '');
        INSERT INTO alerts (id, dedup_key, series, service, status, started_at, last_seen_at, peak_count, score)
            VALUES (1, 'trouble:portal@x', 'trouble:portal', 'portal', 'firing', '{T}', '{T}', 5, 8.0);
        INSERT INTO sent_digests (id, report_date, recipient, message_id, sent_at)
            VALUES (1, '2024-10-02', 'a@example.jp', '<m@x>', '{T}');
    """)
    c.commit()
    c.close()


def test_the_first_schema_upgrades_to_the_latest_and_keeps_every_row(tmp_path):
    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    engine.dialect  # noqa: B018
    from sqlalchemy import event

    event.listen(engine, "connect", lambda conn, _r: SQLite().on_connect(conn))
    assert migrate(engine, to="0001")[1] == "0001"
    engine.dispose()
    _fill_first_schema(path)
    open_engine(f"sqlite:///{path}")  # upgrades on open
    assert index_pending(make_sessions(f"sqlite:///{path}")) == 2  # the search index is filled in a batch step
    c = sqlite3.connect(path)
    assert c.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head()
    counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("sources", "fetch_log", "stories", "items", "classifications", "classification_services",
                        "trend_points", "alerts", "sent_digests")}
    assert counts == {"sources": 1, "fetch_log": 1, "stories": 1, "items": 2, "classifications": 1,
                      "classification_services": 1, "trend_points": 1, "alerts": 1, "sent_digests": 1}
    assert c.execute("SELECT title FROM items WHERE id = 1").fetchone()[0] == "マイナポータルつながりにくく"
    assert c.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH '\"アクセス 集中\"'").fetchall() == [(1,)]
    assert c.execute("SELECT service, stories FROM daily_service_counts").fetchall() == [("portal", 1)]


def test_migrations_build_exactly_the_schema_of_the_models(tmp_path):
    """Change a model without writing a migration and this fails."""
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    from sqlalchemy import event

    event.listen(engine, "connect", lambda conn, _r: SQLite().on_connect(conn))
    migrate(engine, to="0001")
    migrate(engine)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    diff = [d for d in diff if not _is_search_index(d)]
    assert diff == [], diff


def _is_search_index(change) -> bool:
    text = str(change)
    return "items_fts" in text or "alembic_version" in text
