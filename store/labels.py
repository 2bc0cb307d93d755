"""Queries on classifications: save the model's labels, read each item's current label."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.records import Cause, Label, LabeledItem, Sentiment, Service
from store.tables import Classification, ClassificationService, Item

HUMAN = "human"


def save_labels(session: Session, model_version: str, labels: dict[int, Label], *, now: datetime) -> None:
    """Store (or replace) this model version's label for each item id."""
    if not labels:
        return
    session.execute(delete(Classification).where(Classification.model_version == model_version,
                                                 Classification.item_id.in_(list(labels))))
    for item_id, label in labels.items():
        confidence = min((v for v in _axis_confidences(label.scores)), default=1.0)
        session.add(Classification(
            item_id=item_id, model_version=model_version, relevant=label.relevant,
            cause=str(label.cause), sentiment=str(label.sentiment), confidence=confidence,
            scores=json.dumps(label.scores, ensure_ascii=False), created_at=now,
            services=[ClassificationService(service=str(s)) for s in label.services],
        ))


def _axis_confidences(scores: dict):
    for value in scores.values():
        if isinstance(value, dict) and "confidence" in value:
            yield float(value["confidence"])


def labeled_items(session: Session, model_version: str, since: datetime, until: datetime) -> list[LabeledItem]:
    """Items published in [since, until) with their current label: a human label wins over the model's.

    Items the relevance gate rejected come back as irrelevant.
    """
    rows = session.execute(
        select(Item, Classification)
        .join(Classification, Classification.item_id == Item.id, isouter=True)
        .where(Item.published_at >= since, Item.published_at < until)
        .where((Classification.model_version.in_([model_version, HUMAN])) | (Classification.id.is_(None)))
        .order_by(Item.published_at)
    ).all()
    best: dict[int, tuple[Item, Classification | None]] = {}
    for item, c in rows:
        current = best.get(item.id)
        if current is None or current[1] is None or (c is not None and c.model_version == HUMAN):
            best[item.id] = (item, c)
    out = []
    for item, c in best.values():
        if c is None or item.gate != "pass":
            label = Label(False, (), Cause.NONE, Sentiment.NEUTRAL)
        else:
            label = Label(c.relevant, tuple(Service(s.service) for s in c.services), Cause(c.cause),
                          Sentiment(c.sentiment), json.loads(c.scores))
        out.append(LabeledItem(item.id, item.story_id, item.title, item.canonical_url, item.publisher,
                               item.published_at, label))
    out.sort(key=lambda li: (li.published, li.item_id))
    return out


def current_label(session: Session, item_id: int, model_version: str) -> tuple[str, str, Label | None]:
    """An item's title, text and current label (a person's over the model's); KeyError when no such item."""
    item = session.get(Item, item_id)
    if item is None:
        raise KeyError(item_id)
    rows = session.scalars(select(Classification).where(Classification.item_id == item_id,
                                                        Classification.model_version.in_([HUMAN, model_version])))
    by_version = {c.model_version: c for c in rows}
    c = by_version.get(HUMAN) or by_version.get(model_version)
    label = None if c is None else Label(c.relevant, tuple(Service(s.service) for s in c.services), Cause(c.cause),
                                         Sentiment(c.sentiment), json.loads(c.scores))
    return item.title, item.summary, label


def human_labels(session: Session) -> list[tuple[int, str, str, Label]]:
    """Every human correction, with the item's text: (item id, title, text, label)."""
    rows = session.execute(select(Item.id, Item.title, Item.summary, Classification)
                           .join(Classification, Classification.item_id == Item.id)
                           .where(Classification.model_version == HUMAN).order_by(Item.id))
    return [(i, t, x, Label(c.relevant, tuple(Service(s.service) for s in c.services), Cause(c.cause),
                            Sentiment(c.sentiment))) for i, t, x, c in rows]
