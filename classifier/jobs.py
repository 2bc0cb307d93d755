"""Classification jobs: tag stored items (the batch file format is in ``classifier/batch.py``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from classifier.model import Classifier
from store import items as store_items
from store import labels as store_labels
from store.records import Cause, Label, Sentiment, Service

BATCH = 512


def tag_items(sessions: sessionmaker[Session], model: Classifier, *, now: datetime, everything: bool = False,
              progress=None) -> int:
    """Classify the stored items this model version has not tagged yet (or all). Returns how many."""
    with sessions.begin() as session:
        todo = store_items.items_to_classify(session, model.version, everything=everything)
    for start in range(0, len(todo), BATCH):
        chunk = todo[start:start + BATCH]
        labels = model.predict([(i.title, i.text) for i in chunk])
        with sessions.begin() as session:
            store_labels.save_labels(session, model.version, {i.item_id: lab for i, lab in zip(chunk, labels)}, now=now)
        if progress:
            progress(min(start + BATCH, len(todo)), len(todo))
    return len(todo)


def tag_trends(sessions: sessionmaker[Session], model: Classifier) -> int:
    """Decide which trending search terms are about the systems (term + its news titles)."""
    with sessions.begin() as session:
        todo = store_items.trends_to_classify(session)
        labels = model.predict([(term, titles) for _id, term, titles in todo])
        store_items.save_trend_labels(session, {
            tid: (lab.relevant, [str(s) for s in lab.services]) for (tid, _t, _n), lab in zip(todo, labels)})
    return len(todo)


def human_label(sessions: sessionmaker[Session], model: Classifier, item_id: int, *, relevant: bool | None,
                services: list[str] | None, cause: str | None, sentiment: str | None, now: datetime) -> Label:
    """Store a person's correction; axes not given keep the current label. ValueError on a bad code."""
    with sessions.begin() as session:
        title, text, current = store_labels.current_label(session, item_id, model.version)
        if current is None:
            (current,) = model.predict([(title, text)])
        is_relevant = current.relevant if relevant is None else relevant
        svc = tuple(Service(s) for s in services) if services else current.services
        label = Label(
            is_relevant, svc if is_relevant else (),
            Cause(cause) if cause else (current.cause if is_relevant else Cause.NONE),
            Sentiment(sentiment) if sentiment else current.sentiment, {"human": True})
        if label.relevant and not label.services:
            raise ValueError("a relevant item needs at least one --service")
        store_labels.save_labels(session, store_labels.HUMAN, {item_id: label}, now=now)
    return label
