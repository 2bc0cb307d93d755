"""Helpers (no tests here): fill a real SQLite store with labeled items, sources and trend points."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import insert, select

from store.tables import Classification, ClassificationService, Item, Source, Story

MODEL = "test-model-1"
UTC = timezone.utc


@dataclass(frozen=True)
class Row:
    title: str
    published: datetime
    services: tuple[str, ...] = ("portal",)
    cause: str = "load"
    sentiment: str = "negative"
    relevant: bool = True
    story: str | None = None  # items with the same story key join one story cluster
    publisher: str = "NHK"
    source: str = "nhk"
    social_count: int | None = None


def source_id(session, name: str, *, kind: str = "feed", status: str = "ok", last_success: datetime | None = None,
              last_new: datetime | None = None) -> int:
    found = session.scalar(select(Source.id).where(Source.name == name))
    if found is not None:
        return found
    src = Source(name=name, url=f"https://example.jp/{name}.xml", kind=kind, publisher=None, status=status,
                 last_success_at=last_success, last_new_item_at=last_new)
    session.add(src)
    session.flush()
    return src.id


def add_items(sessions, rows: list[Row], *, model: str = MODEL, kinds: dict[str, str] | None = None) -> None:
    """Store the rows as items with one classification each; same story key, same story."""
    with sessions.begin() as session:
        stories: dict[str, int] = {}
        for n, r in enumerate(rows):
            key = r.story or f"{r.title}#{n}"
            if key not in stories:
                story = Story(title=r.title, first_seen_at=r.published)
                session.add(story)
                session.flush()
                stories[key] = story.id
            sid = source_id(session, r.source, kind=(kinds or {}).get(r.source, "feed"))
            digest = hashlib.sha256(f"{r.publisher}|{r.title}|{n}|{r.published}".encode()).hexdigest()
            item = session.execute(insert(Item).returning(Item.id), [dict(
                source_id=sid, story_id=stories[key], canonical_url=f"https://example.jp/{digest[:16]}", title=r.title,
                summary="", publisher=r.publisher, title_key=digest[:64], published_at=r.published,
                fetched_at=r.published, social_count=r.social_count, gate="pass")]).scalar_one()
            c = Classification(item_id=item, model_version=model, relevant=r.relevant, cause=r.cause if r.relevant else "none",
                               sentiment=r.sentiment, confidence=0.9, scores="{}", created_at=r.published,
                               services=[ClassificationService(service=s) for s in (r.services if r.relevant else ())])
            session.add(c)
