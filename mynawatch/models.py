"""Which model the commands use: the shipped corpus plus the store's human corrections."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from classifier.corpus import Example
from classifier.cache import load_or_train
from classifier.model import Classifier
from store import labels as store_labels


def human_examples(sessions: sessionmaker[Session] | None) -> list[Example]:
    if sessions is None:
        return []
    with sessions.begin() as session:
        rows = store_labels.human_labels(session)
    return [Example(f"item-{i}", f"item-{i}", title, text, label) for i, title, text, label in rows]


def current_model(sessions: sessionmaker[Session] | None = None, *, force: bool = False) -> Classifier:
    """The model for the corpus + corrections (trained once, then cached until either changes)."""
    return load_or_train(extra_examples=human_examples(sessions), force=force)
