"""Queries on classifications: save the model's labels and a person's corrections, read each item's
current label, and record which model version the store serves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.orm import Session

from store.dialect import dialect_for, insert_for
from store.records import Cause, Label, LabeledItem, Sentiment, Service, cause_of, sentiment_of, services_of
from store.tables import Classification, ClassificationService, Item, ServedModel

HUMAN = "human"
CHUNK = 2000  # rows per INSERT statement, and per progress step of a re-tag


@dataclass(frozen=True)
class Serving:
    """The model version a store serves, and what it was trained on."""

    model_version: str
    model_key: str | None  # its file in the model cache; None when unknown
    basis: str | None  # key of the corpus and code, corrections aside
    corrections: int
    served_since: datetime


def served_model(session: Session) -> Serving | None:
    row = session.get(ServedModel, 1, populate_existing=True)
    if row is None:
        return None
    return Serving(row.model_version, row.model_key, row.basis, row.corrections, row.served_since)


def serve(session: Session, serving: Serving, *, only_if_none: bool = False) -> bool:
    """Make ``serving`` the served model (or only when the store serves none yet). True when it was written."""
    values = {"id": 1, "model_version": serving.model_version, "model_key": serving.model_key,
              "basis": serving.basis, "corrections": serving.corrections, "served_since": serving.served_since}
    stmt = insert_for(session, ServedModel).values(**values)
    if only_if_none:
        stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
    else:
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"})
    # a row returned, not rowcount: an INSERT's rowcount is -1 through SQLAlchemy on psycopg
    return session.execute(stmt.returning(ServedModel.id)).first() is not None


def save_labels(session: Session, model_version: str, labels: dict[int, Label], *, now: datetime) -> None:
    """Store (or replace) this model version's label for each item id.

    A label is replaced child first (its services, then the classification, then the new rows), so no
    statement can leave a service without its classification, however many times an item is relabeled.

    The items' rows are locked first (PostgreSQL; in id order, as a classifier worker's ``save_claimed`` locks
    them), so two processes labeling one item with one version (a one-shot `mynawatch classify` beside
    `run --role classify` workers, two people correcting one item) take turns: the later one's delete finds
    the label the first committed and replaces it, instead of both inserting and one failing on the unique key."""
    if not labels:
        return
    items = sorted(labels)
    lock = dialect_for(session.get_bind()).lock_rows("i", skip_locked=False)
    if lock:
        for start in range(0, len(items), 1000):
            session.execute(text("SELECT i.id FROM items i WHERE i.id IN :ids ORDER BY i.id" + lock)
                            .bindparams(bindparam("ids", expanding=True)), {"ids": items[start:start + 1000]}).all()
    for start in range(0, len(items), 500):
        ids = select(Classification.id).where(Classification.model_version == model_version,
                                              Classification.item_id.in_(items[start:start + 500]))
        session.execute(delete(ClassificationService).where(ClassificationService.classification_id.in_(ids)))
        session.execute(delete(Classification).where(Classification.id.in_(ids)))
    _insert(session, model_version, [label_row(i, lab) for i, lab in labels.items()], now=now)


def add_labels(session: Session, model_version: str, labels: dict[int, Label], *, now: datetime) -> set[int]:
    """Store this model version's label for each item that has none from it yet (one that has keeps it).
    Returns the items stored. The caller holds the items' row locks (``store.work.save_claimed``)."""
    rows = [label_row(i, lab) for i, lab in labels.items()]
    saved: set[int] = set()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        stmt = insert_for(session, Classification).on_conflict_do_nothing(index_elements=["item_id", "model_version"])
        ids = dict(session.execute(stmt.returning(Classification.item_id, Classification.id),
                                   [dict(values, model_version=model_version, created_at=now) for values, _ in chunk]).all())
        services = [{"classification_id": ids[values["item_id"]], "service": s}
                    for values, codes in chunk if values["item_id"] in ids for s in dict.fromkeys(codes)]
        if services:
            session.execute(insert(ClassificationService), services)
        saved.update(ids)
    return saved


def replace_model_labels(session: Session, model_version: str, rows: list[tuple[dict, list[str]]], *,
                         now: datetime, progress: Callable[[int, int], None] | None = None) -> int:
    """Every model label in the store replaced by ``rows`` (see ``label_row``) of one version; a person's
    corrections stay. Meant to run in the transaction that switches the served model."""
    ids = select(Classification.id).where(Classification.model_version != HUMAN)
    session.execute(delete(ClassificationService).where(ClassificationService.classification_id.in_(ids)))
    session.execute(delete(Classification).where(Classification.model_version != HUMAN))
    return _insert(session, model_version, rows, now=now, progress=progress)


def label_row(item_id: int, label: Label) -> tuple[dict, list[str]]:
    """A label as the values of its classification row and its service codes (compact enough to hold a
    whole store's labels in memory while a re-tag waits to write them)."""
    confidence = min(_axis_confidences(label.scores), default=1.0)
    return ({"item_id": item_id, "relevant": label.relevant, "cause": str(label.cause),
             "sentiment": str(label.sentiment), "confidence": confidence,
             "scores": json.dumps(label.scores, ensure_ascii=False)}, [str(s) for s in label.services])


def _insert(session: Session, model_version: str, rows: list[tuple[dict, list[str]]], *, now: datetime,
            progress: Callable[[int, int], None] | None = None) -> int:
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        session.execute(insert(Classification), [dict(values, model_version=model_version, created_at=now)
                                                 for values, _services in chunk])
        wanted = [values["item_id"] for values, _services in chunk]
        ids = dict(session.execute(select(Classification.item_id, Classification.id).where(
            Classification.model_version == model_version, Classification.item_id.in_(wanted))).all())
        services = [{"classification_id": ids[values["item_id"]], "service": s}
                    for values, codes in chunk for s in dict.fromkeys(codes)]
        if services:
            session.execute(insert(ClassificationService), services)
        if progress:
            progress(min(start + CHUNK, len(rows)), len(rows))
    return len(rows)


def _axis_confidences(scores: dict):
    for value in scores.values():
        if isinstance(value, dict) and "confidence" in value:
            yield float(value["confidence"])


def _services(c: Classification) -> tuple[Service, ...]:
    """A label's services by code (the order SQLite's key gives them; PostgreSQL's rows come in any order)."""
    return services_of(sorted(s.service for s in c.services))


def _label(c: Classification) -> Label:
    return Label(c.relevant, _services(c), cause_of(c.cause), sentiment_of(c.sentiment),
                 json.loads(c.scores))


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
        label = Label(False, (), Cause.NONE, Sentiment.NEUTRAL) if c is None or item.gate != "pass" else _label(c)
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
    return item.title, item.summary, None if c is None else _label(c)


def human_labels(session: Session) -> list[tuple[int, str, str, Label]]:
    """Every human correction, with the item's text: (item id, title, text, label)."""
    rows = session.execute(select(Item.id, Item.title, Item.summary, Classification)
                           .join(Classification, Classification.item_id == Item.id)
                           .where(Classification.model_version == HUMAN).order_by(Item.id))
    return [(i, t, x, Label(c.relevant, _services(c), cause_of(c.cause),
                            sentiment_of(c.sentiment))) for i, t, x, c in rows]


def model_labeled(session: Session, model_version: str, since: datetime) -> Iterable[tuple[LabeledItem, str]]:
    """Items published since ``since`` that passed the gate and carry this version's label but no
    person's, newest first, with their text: what a review can ask about."""
    human = select(Classification.item_id).where(Classification.model_version == HUMAN)
    rows = session.execute(
        select(Item, Classification).join(Classification, Classification.item_id == Item.id)
        .where(Classification.model_version == model_version, Item.gate == "pass", Item.published_at >= since,
               Item.id.not_in(human))
        .order_by(Item.published_at.desc(), Item.id.desc()))
    for item, c in rows:
        yield (LabeledItem(item.id, item.story_id, item.title, item.canonical_url, item.publisher,
                           item.published_at, _label(c)), item.summary)
