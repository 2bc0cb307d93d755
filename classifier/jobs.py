"""Classification jobs: tag stored items, re-tag the whole store under a new model, record a correction."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from sqlalchemy.orm import Session, sessionmaker

from store import items as store_items
from store import labels as store_labels
from store import work as store_work
from store.records import Cause, Label, Sentiment, Service

if TYPE_CHECKING:  # the model's libraries (spaCy, scikit-learn) load with the model, not with the jobs
    from classifier.model import Classifier

log = logging.getLogger(__name__)
BATCH = 512
Progress = Callable[..., None]  # progress(done, total, step)


class ServedModelChanged(Exception):
    """Another process switched the store to another model version while this one was tagging."""


def serving_of(model: Classifier, now: datetime) -> store_labels.Serving:
    info = model.info or {}
    return store_labels.Serving(model.version, info.get("key"), info.get("basis"), int(info.get("corrections", 0)), now)


def tag_items(sessions: sessionmaker[Session], model: Classifier, *, now: datetime, everything: bool = False,
              progress: Progress | None = None) -> int:
    """Classify the stored items this model version has not tagged yet (or all), a batch per transaction.
    A store that serves no model yet starts serving this one; once the store serves another version
    (a retrain elsewhere switched it), the batch is rolled back and tagging stops. Returns how many."""
    with sessions.begin() as session:
        store_labels.serve(session, serving_of(model, now), only_if_none=True)
        todo = store_items.items_to_classify(session, model.version, everything=everything)
    done = 0
    for start in range(0, len(todo), BATCH):
        chunk = todo[start:start + BATCH]
        labels = model.predict([(i.title, i.text) for i in chunk])
        try:
            with sessions.begin() as session:
                store_labels.save_labels(session, model.version, {i.item_id: lab for i, lab in zip(chunk, labels)},
                                         now=now)
                served = store_labels.served_model(session)  # read under the write lock taken above
                if served is not None and served.model_version != model.version:
                    raise ServedModelChanged(served.model_version)
        except ServedModelChanged as exc:
            log.info("the store switched to model %s while %s was tagging: stopped after %d items",
                     exc, model.version, done)
            return done
        done += len(chunk)
        if progress:
            progress(done, len(todo), f"tagging with {model.version}")
    return done


def tag_claimed(sessions: sessionmaker[Session], model: Classifier, *, worker: str, now: datetime,
                lease: timedelta, full: bool = False) -> int:
    """``tag_items`` beside other workers on one store: a claimed batch at a time (store/work.py), so each item
    is tagged once by one worker; a batch whose claim ran out and went to another worker is dropped, not saved
    twice. Ends when nothing is left to claim (once more from the first id, for the claims of a worker that
    died), or when the store serves another version. A pass starts near the newest tagged items
    (``store.work.scan_start``), or at the first item when ``full``. Returns how many items this worker tagged."""
    started = time.monotonic()

    def clock() -> datetime:  # claims run from the time they are made, however long the run has taken
        return now + timedelta(seconds=time.monotonic() - started)

    with sessions.begin() as session:
        store_labels.serve(session, serving_of(model, now), only_if_none=True)
        first = 0 if full else store_work.scan_start(session, model.version)
    done, after, restarted = 0, first, False
    while True:
        with sessions.begin() as session:
            chunk = store_work.claim_items(session, worker, model.version, now=clock(), lease=lease, limit=BATCH,
                                           after=after)
        if not chunk:
            if after == first or restarted:
                return done
            after, restarted = first, True
            continue
        labels = model.predict([(i.title, i.text) for i in chunk])
        try:
            with sessions.begin() as session:
                keep = store_work.save_claimed(session, worker, model.version,
                                               {i.item_id: lab for i, lab in zip(chunk, labels)}, now=clock())
                served = store_labels.served_model(session)
                if served is not None and served.model_version != model.version:
                    raise ServedModelChanged(served.model_version)
        except ServedModelChanged as exc:
            with sessions.begin() as session:
                store_work.release_claims(session, worker)
            log.info("the store switched to model %s while %s was tagging: stopped after %d items",
                     exc, model.version, done)
            return done
        done, after = done + len(keep), chunk[-1].item_id


def retag_all(sessions: sessionmaker[Session], model: Classifier, *, now: datetime,
              progress: Progress | None = None) -> int:
    """Tag every stored item with ``model``, then in ONE transaction replace every model label with the
    new ones and make ``model`` the served version: reports see the old labels until the commit and
    the new ones after it, never a mixture or an empty store; a killed run leaves the old ones served.
    A person's corrections stay. Returns how many items were tagged."""
    with sessions.begin() as session:
        todo = store_items.items_to_classify(session, model.version, everything=True)
    rows = []
    for start in range(0, len(todo), BATCH):
        chunk = todo[start:start + BATCH]
        labels = model.predict([(i.title, i.text) for i in chunk])
        rows += [store_labels.label_row(i.item_id, lab) for i, lab in zip(chunk, labels)]
        if progress:
            progress(len(rows), len(todo), f"tagging with {model.version}")
    step = f"writing the labels of {model.version}"
    with sessions.begin() as session:
        store_labels.replace_model_labels(session, model.version, rows, now=now,
                                          progress=(lambda d, t: progress(d, t, step)) if progress else None)
        store_labels.serve(session, serving_of(model, now))
    return len(rows)


def tag_trends(sessions: sessionmaker[Session], model: Classifier) -> int:
    """Decide which trending search terms are about the systems (term + its news titles)."""
    with sessions.begin() as session:
        todo = store_items.trends_to_classify(session)
        labels = model.predict([(term, titles) for _id, term, titles in todo])
        store_items.save_trend_labels(session, {
            tid: (lab.relevant, [str(s) for s in lab.services]) for (tid, _t, _n), lab in zip(todo, labels)})
    return len(todo)


def human_label(sessions: sessionmaker[Session], model, item_id: int, *, relevant: bool | None,
                services: list[str] | None, cause: str | None, sentiment: str | None, now: datetime) -> Label:
    """Store a person's correction; axes not given keep the current label (a person's earlier correction,
    else the served model's). ``model`` needs a ``version`` and, only for an item it has not tagged,
    ``predict``. The latest correction of an item replaces the one before. ValueError on a bad code."""
    given_services = tuple(_code(Service, s) for s in services or ())
    # an empty code given is a mistake like any other unknown one (`--cause ''` was taken as "keep the cause")
    given_cause = None if cause is None else _code(Cause, cause)
    given_sentiment = None if sentiment is None else _code(Sentiment, sentiment)
    with sessions.begin() as session:
        title, text, current = store_labels.current_label(session, item_id, model.version)
        if current is None:
            (current,) = model.predict([(title, text)])
        is_relevant = current.relevant if relevant is None else relevant
        if not is_relevant and (given_services or given_cause not in (None, "", Cause.NONE)):
            raise ValueError("an item not about the systems has no services and cause none (add --relevant)")
        label = Label(
            is_relevant, (given_services or current.services) if is_relevant else (),
            given_cause or (current.cause if is_relevant else Cause.NONE),
            given_sentiment or current.sentiment, {"human": True})
        if label.relevant and not label.services:
            raise ValueError("a relevant item needs at least one --service")
        store_labels.save_labels(session, store_labels.HUMAN, {item_id: label}, now=now)
    return label


def _code(kind, value: str):
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{value!r}: not a {kind.__name__.lower()} code ({', '.join(kind)})") from None
