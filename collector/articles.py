"""The article job: read the pages of relevant items (relevance comes from the store's current labels).

Links come from feeds, so every address (and every redirect hop) is checked: private, loopback and
link-local addresses are refused unless ``allow_loopback_links`` lets loopback through (tests, demos).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from collector.article import extract_article
from collector.errors import CollectorError, FetchRefused
from collector.fetch import fetch_page
from collector.sanitize import MAX_NAME, clean_block, clean_line, in_range
from store import articles as store_articles
from store.articles import ArticleRecord, ArticleTodo

if TYPE_CHECKING:
    from collector.jobs import Collector

log = logging.getLogger(__name__)


def fetch_articles(collector: Collector, *, now: datetime) -> dict[str, int]:
    """Fetch and read up to ``articles_per_round`` pages; returns how many ended ok / failed / refused."""
    policy = collector.policy
    counts = {"ok": 0, "failed": 0, "refused": 0}
    if not policy.article_pages or policy.articles_per_round <= 0:
        return counts
    since = now - timedelta(hours=policy.article_max_age_hours)
    with collector.sessions.begin() as session:
        todo = store_articles.items_needing_article(session, since=since, limit=policy.articles_per_round)
    if not todo:
        return counts
    records = list(collector.pool.map(lambda t: read_article(collector, t, now=now), todo))
    with collector.write_lock, collector.sessions.begin() as session:
        for t, record in zip(todo, records):
            store_articles.save_article(session, t.item_id, record, fetched_at=now)
            counts[record.status] += 1
    return counts


def read_article(collector: Collector, todo: ArticleTodo, *, now: datetime) -> ArticleRecord:
    try:
        result = fetch_page(collector.client, todo.url, policy=collector.fetch, now=now, limiter=collector.limiter)
        page = extract_article(result.body or b"", content_type=result.content_type)
    except FetchRefused as exc:
        return ArticleRecord(todo.url, "refused", error=str(exc))
    except CollectorError as exc:
        return ArticleRecord(todo.url, "failed", error=str(exc))
    except Exception as exc:  # job boundary: one unreadable page never stops the others
        log.exception("reading %s failed", todo.url)
        return ArticleRecord(todo.url, "failed", error=f"internal error: {exc!r}")
    limits = collector.policy.text_limits
    published, _note = in_range(page.published, now=now)
    return ArticleRecord(result.url, "ok", clean_line(page.title, limits.title) or None,
                         clean_line(page.publisher, MAX_NAME) or None, published, clean_block(page.text, limits.body))
