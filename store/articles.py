"""Queries on article pages: which relevant items still need their page read, and saving what was read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import column, select, table
from sqlalchemy.orm import Session

from store.dialect import insert_for
from store.tables import Article, Item

# The current label of each item (a person's correction, else the newest model's): a view of store/views.py.
_CURRENT = table("item_labels_current", column("item_id"), column("relevant"))


@dataclass(frozen=True)
class ArticleTodo:
    item_id: int
    url: str
    published: datetime


@dataclass(frozen=True)
class ArticleRecord:
    url: str
    status: str  # ok | failed | refused
    title: str | None = None
    publisher: str | None = None
    published: datetime | None = None
    text: str = ""
    error: str | None = None


def items_needing_article(session: Session, *, since: datetime, limit: int) -> list[ArticleTodo]:
    """Relevant items (by their current label) published since ``since`` whose page was never read, newest first."""
    rows = session.execute(
        select(Item.id, Item.canonical_url, Item.published_at)
        .join(_CURRENT, _CURRENT.c.item_id == Item.id)
        .outerjoin(Article, Article.item_id == Item.id)
        .where(_CURRENT.c.relevant.is_(True), Article.id.is_(None),
               Item.gate == "pass", Item.published_at >= since)
        .order_by(Item.published_at.desc()).limit(limit))
    return [ArticleTodo(*row) for row in rows]


def save_article(session: Session, item_id: int, record: ArticleRecord, *, fetched_at: datetime) -> None:
    session.execute(insert_for(session, Article).values(
        item_id=item_id, url=record.url, status=record.status, title=record.title, publisher=record.publisher,
        published_at=record.published, text=record.text, error=record.error, fetched_at=fetched_at,
    ).on_conflict_do_nothing())


def article_of(session: Session, item_id: int) -> ArticleRecord | None:
    a = session.scalar(select(Article).where(Article.item_id == item_id))
    if a is None:
        return None
    return ArticleRecord(a.url, a.status, a.title, a.publisher, a.published_at, a.text, a.error)
