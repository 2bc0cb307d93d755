"""Migrations, on SQLite and on PostgreSQL: the first schema upgrades to the latest without losing rows;
models never drift from them."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event, text

from store.db import make_sessions, open_engine
from store.dialect import dialect_for
from store.migrations import head, migrate
from store.search import index_pending, search_items
from store.tables import Base

T = "2024-10-02 00:00:00.000000"


@pytest.fixture(params=("sqlite", "postgresql"))
def empty_url(request, tmp_path):
    """A database without any table yet, on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.sqlite'}"
    return request.getfixturevalue("pg_url")


def _engine(url: str):
    engine = create_engine(url)
    dialect = dialect_for(engine)
    event.listen(engine, "connect", lambda conn, _r: dialect.on_connect(conn))
    return engine


def _fill_first_schema(engine):
    true = "1" if engine.dialect.name == "sqlite" else "true"
    statements = f"""
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
            VALUES (1, 1, 'm-1', {true}, 'load', 'negative', 0.9, '{{}}', '{T}');
        INSERT INTO classification_services (classification_id, service) VALUES (1, 'portal');
        INSERT INTO trend_points (id, source_id, term, traffic, traffic_raw, published_at, fetched_at, news_titles, services)
            VALUES (1, 1, 'マイナポータル', 20000, '20000+', '{T}', '{T}', '', '');
        INSERT INTO alerts (id, dedup_key, series, service, status, started_at, last_seen_at, peak_count, score)
            VALUES (1, 'trouble:portal@x', 'trouble:portal', 'portal', 'firing', '{T}', '{T}', 5, 8.0);
        INSERT INTO sent_digests (id, report_date, recipient, message_id, sent_at)
            VALUES (1, '2024-10-02', 'a@example.jp', '<m@x>', '{T}')"""
    with engine.begin() as c:
        for statement in statements.split(";"):
            c.execute(text(statement))


def test_the_first_schema_upgrades_to_the_latest_and_keeps_every_row(empty_url):
    engine = _engine(empty_url)
    assert migrate(engine, to="0001")[1] == "0001"
    _fill_first_schema(engine)
    engine.dispose()
    open_engine(empty_url).dispose()  # upgrades on open
    sessions = make_sessions(empty_url)
    assert index_pending(sessions) == 2  # the search index is filled in a batch step
    with sessions.begin() as s:
        c = s.connection()
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
        counts = {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("sources", "fetch_log", "stories", "items", "classifications", "classification_services",
                            "trend_points", "alerts", "sent_digests")}
        assert counts == {"sources": 1, "fetch_log": 1, "stories": 1, "items": 2, "classifications": 1,
                          "classification_services": 1, "trend_points": 1, "alerts": 1, "sent_digests": 1}
        assert c.execute(text("SELECT title FROM items WHERE id = 1")).scalar() == "マイナポータルつながりにくく"
        assert [h.item_id for h in search_items(s, "アクセス集中")] == [1]
        assert c.execute(text("SELECT service, stories FROM daily_service_counts")).all() == [("portal", 1)]
    sessions.kw["bind"].dispose()


def test_migrations_build_exactly_the_schema_of_the_models(empty_url):
    """Change a model without writing a migration and this fails."""
    engine = _engine(empty_url)
    migrate(engine, to="0001")
    migrate(engine)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    engine.dispose()
    diff = [d for d in diff if not _is_search_index(d) and not _is_comment(d)]
    assert diff == [], diff


def _is_comment(change) -> bool:
    """Column comments are documentation (SQLite keeps none); migrations written before a comment was reworded
    keep the old words on PostgreSQL."""
    return isinstance(change, list) and all(c[0] == "modify_comment" for c in change)


def _is_search_index(change) -> bool:
    words = str(change)
    return "items_fts" in words or "alembic_version" in words
