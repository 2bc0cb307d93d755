"""Article pages of relevant items (relevance comes from the store's current labels): which are due, reading
one, storing what was read. ``Collector.fetch_articles`` runs them as a job.

Links come from feeds, so every address (and every redirect hop) is checked: private, loopback and
link-local addresses are refused unless ``allow_loopback_links`` lets loopback through (tests, demos).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
from sqlalchemy.orm import Session

from collector.article import extract_article
from collector.errors import CollectorError, FetchRefused
from collector.fetch import FetchPolicy, HostLimiter, fetch_page
from collector.policy import CollectPolicy, TextLimits
from collector.sanitize import MAX_NAME, clean_block, clean_line, in_range
from store import articles as store_articles
from store.articles import ArticleRecord, ArticleTodo

log = logging.getLogger(__name__)
OUTCOMES = ("ok", "failed", "refused")


def articles_due(session: Session, policy: CollectPolicy, *, now: datetime) -> list[ArticleTodo]:
    """Up to ``articles_per_round`` relevant items whose page is still to be read (none when pages are off)."""
    if not policy.article_pages or policy.articles_per_round <= 0:
        return []
    since = now - timedelta(hours=policy.article_max_age_hours)
    return store_articles.items_needing_article(session, since=since, limit=policy.articles_per_round)


def save_articles(session: Session, todo: list[ArticleTodo], records: list[ArticleRecord], *,
                  now: datetime) -> dict[str, int]:
    """Store what was read of each page; returns how many ended ok / failed / refused."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for t, record in zip(todo, records):
        store_articles.save_article(session, t.item_id, record, fetched_at=now)
        counts[record.status] += 1
    return counts


def read_article(client: httpx.Client, todo: ArticleTodo, *, fetch: FetchPolicy, limiter: HostLimiter | None,
                 limits: TextLimits, now: datetime) -> ArticleRecord:
    try:
        result = fetch_page(client, todo.url, policy=fetch, now=now, limiter=limiter)
        page = extract_article(result.body or b"", content_type=result.content_type)
    except FetchRefused as exc:
        return ArticleRecord(todo.url, "refused", error=str(exc))
    except CollectorError as exc:
        return ArticleRecord(todo.url, "failed", error=str(exc))
    except Exception as exc:  # job boundary: one unreadable page never stops the others
        log.exception("reading %s failed", todo.url)
        return ArticleRecord(todo.url, "failed", error=f"internal error: {exc!r}")
    published, _note = in_range(page.published, now=now)
    return ArticleRecord(result.url, "ok", clean_line(page.title, limits.title) or None,
                         clean_line(page.publisher, MAX_NAME) or None, published, clean_block(page.text, limits.body))
