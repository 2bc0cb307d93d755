"""Which model the commands use: the version the store serves. A correction changes no model; the
model learns the corrections at a retrain, an explicit (`mynawatch classifier retrain`) or scheduled
step that re-tags the store and switches the served version in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from classifier.cache import key_for, load_cached, load_or_train, version_of
from classifier.corpus import CORPUS_DIR, Example
from classifier.jobs import Progress, retag_all
from store import labels as store_labels

if TYPE_CHECKING:  # the model's libraries load with a model: commands that only read the store start at once
    from classifier.model import Classifier

log = logging.getLogger(__name__)


def corrections(sessions: sessionmaker[Session] | None) -> list[Example]:
    """The store's human corrections as training examples."""
    if sessions is None:
        return []
    with sessions.begin() as session:
        rows = store_labels.human_labels(session)
    return [Example(f"item-{i}", f"item-{i}", title, text, label) for i, title, text, label in rows]


def served(sessions: sessionmaker[Session]) -> store_labels.Serving | None:
    with sessions.begin() as session:
        return store_labels.served_model(session)


def served_version(sessions: sessionmaker[Session], *, corpus_dir: Path = CORPUS_DIR) -> str:
    """The model version whose labels reports, alerts and counts read: the store's served version, or
    the corpus model's when the store serves none yet. Loads no model."""
    serving = served(sessions)
    return serving.model_version if serving else version_of(key_for(corpus_dir=corpus_dir))


def served_model(sessions: sessionmaker[Session], *, corpus_dir: Path = CORPUS_DIR) -> Classifier | None:
    """The served model itself, when its file is in the cache and it was trained on today's corpus and
    code (after an upgrade, or on another machine, it is not: a retrain makes a new one)."""
    serving = served(sessions)
    if serving is None or serving.model_key is None or serving.basis != key_for(corpus_dir=corpus_dir):
        return None
    model = load_cached(serving.model_key)
    if model is not None:
        model.info.update(basis=serving.basis, corrections=serving.corrections)
    return model


def current_model(sessions: sessionmaker[Session] | None = None, *, force: bool = False,
                  progress: Progress | None = None) -> Classifier:
    """The model to tag text with outside the store's own labels (tag, evaluate, explain): the served
    one when it can be loaded, else the corpus model (trained once, then cached)."""
    if sessions is not None and not force and (model := served_model(sessions)) is not None:
        return model
    serving = served(sessions) if sessions is not None else None
    return load_or_train(force=force, progress=progress, keep=[serving.model_key] if serving else [])


@dataclass(frozen=True)
class Retrained:
    model: Classifier
    previous: str | None  # the version served before
    tagged: int  # items re-tagged (0 when nothing changed)
    corrections: int  # corrections the model learned from
    changed: bool  # False: the served model had already learned from exactly these corrections


def retrain(sessions: sessionmaker[Session], *, now: datetime, force: bool = False, progress: Progress | None = None,
            corpus_dir: Path = CORPUS_DIR) -> Retrained:
    """Train on the corpus + the store's corrections (or load that model from the cache), re-tag every
    item and switch the served version, the last two in one transaction (``retag_all``). Nothing is done
    when the served model was trained on the same corpus, code and corrections, unless ``force``."""
    examples = corrections(sessions)
    key = key_for(examples, corpus_dir=corpus_dir)
    serving = served(sessions)
    previous = serving.model_version if serving else None
    if not force and serving is not None and serving.model_key == key and (model := load_cached(key)) is not None:
        model.info.update(basis=serving.basis, corrections=serving.corrections)
        return Retrained(model, previous, 0, len(examples), False)
    model = load_or_train(extra_examples=examples, force=force, progress=progress, corpus_dir=corpus_dir,
                          keep=[serving.model_key] if serving else [])
    tagged = retag_all(sessions, model, now=now, progress=progress)
    log.info("retrained on %d corrections: %s serves %d items (was %s)", len(examples), model.version, tagged, previous)
    return Retrained(model, previous, tagged, len(examples), True)


def classify_model(sessions: sessionmaker[Session], *, now: datetime, progress: Progress | None = None,
                   corpus_dir: Path = CORPUS_DIR) -> tuple[Classifier, Retrained | None]:
    """The model `classify` tags new items with: the served one; the corpus model when the store serves
    none yet; when the served model cannot be used (its file is gone, or the corpus or code changed
    since it was trained), a retrain first, which re-tags the store and switches in one transaction."""
    serving = served(sessions)
    if serving is None:
        return load_or_train(progress=progress, corpus_dir=corpus_dir), None
    if (model := served_model(sessions, corpus_dir=corpus_dir)) is not None:
        return model, None
    log.warning("the served model %s cannot be loaded or was trained on another corpus or code: retraining",
                serving.model_version)
    result = retrain(sessions, now=now, progress=progress, corpus_dir=corpus_dir)
    return result.model, result


class ServedVersion:
    """What a correction needs of the model: the served version (read from the store, no model loaded)
    and, only for an item not tagged yet, a prediction (the model is loaded then)."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self.version = served_version(sessions)

    def predict(self, items):
        return current_model(self.sessions).predict(items)
