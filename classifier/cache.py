"""The model cache: trained classifiers kept as files, each keyed by what shaped it (corpus, code,
library versions, seed and the corrections it learned from). At most two files are kept: the one a
store serves and the newest."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import platform
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from classifier.corpus import CORPUS_DIR, Example, corpus_digest, load_corpus

if TYPE_CHECKING:
    from classifier.model import Classifier

log = logging.getLogger(__name__)
KEPT = 2  # model files left in the cache after a training: the served one and the newest
LIBRARIES = ("scikit-learn", "spacy", "SudachiPy")  # their versions shape the model; read without importing them
CODE = ("model.py", "vectors.py", "rules.py", "text.py", "corpus.py", "cache.py",
        "../store/records.py")  # records: the words that name each service feed the svc: rules
Progress = Callable[..., None]  # progress(done, total, step); total 0: done is the seconds elapsed


def cache_dir() -> Path:
    root = os.environ.get("MYNAWATCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mynawatch")
    return Path(root)


def model_key(extra: bytes = b"", *, corpus_dir: Path = CORPUS_DIR) -> str:
    """Changes whenever the corpus, the classifier's code or a library that shapes the model changes."""
    code = hashlib.sha256()
    for name in CODE:
        code.update((Path(__file__).parent / name).read_bytes())
    versions = "|".join([code.hexdigest(), *map(importlib.metadata.version, LIBRARIES), platform.python_version()])
    return hashlib.sha256(corpus_digest(corpus_dir, extra=versions.encode() + extra).encode()).hexdigest()


def key_for(corrections: Iterable[Example] = (), *, seed: int = 13, corpus_dir: Path = CORPUS_DIR) -> str:
    """The key of the model trained on the corpus (+ these corrections). Without corrections it is the
    default model's key, the basis that a retrained model adds its corrections to."""
    basis = model_key(str(seed).encode(), corpus_dir=corpus_dir)
    lines = [f"{e.id}|{e.title}|{e.text}|{json.dumps(e.label.as_json(), ensure_ascii=False, sort_keys=True)}"
             for e in corrections]
    if not lines:
        return basis
    return hashlib.sha256("\n".join([basis, *lines]).encode()).hexdigest()


def version_of(key: str) -> str:
    """The model version stored with its labels (``classifications.model_version``)."""
    return f"m-{key[:12]}"


def model_path(key: str) -> Path:
    return cache_dir() / f"model-{key}.pickle"


def load_cached(key: str) -> Classifier | None:
    """The cached model of ``key``, or None when it is missing or unreadable (a damaged file is never trusted)."""
    from classifier.model import _long_lived  # the model's libraries load with a model, not with the cache's keys

    path = model_path(key)
    try:
        with path.open("rb") as fh:
            model = pickle.load(fh)
        with suppress(OSError):  # a read-only cache still serves its model
            os.utime(path)  # the file's time says when it was last used: pruning keeps the recent ones
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged pickle raises, it is rebuilt
        log.warning("ignoring unreadable model cache %s: %s", path, exc)
        return None
    model.info = dict(model.info, key=key)
    return _long_lived(model)


def load_or_train(*, extra_examples: Iterable[Example] = (), seed: int = 13, force: bool = False,
                  keep: Iterable[str | None] = (), progress: Progress | None = None,
                  corpus_dir: Path = CORPUS_DIR) -> Classifier:
    """The cached model for the corpus (+ corrections), trained on its train and dev splits when it is
    not cached yet (or ``force``). A training prunes the cache to the new file and ``keep`` (the key a
    store serves), or the most recently used other file when ``keep`` is empty."""
    from classifier.model import _long_lived, train

    extra = list(extra_examples)
    key = key_for(extra, seed=seed, corpus_dir=corpus_dir)
    info = {"basis": key_for(seed=seed, corpus_dir=corpus_dir), "corrections": len(extra)}
    if not force and (model := load_cached(key)) is not None:
        model.info.update(info)
        return model
    examples = [e for e in load_corpus(corpus_dir) if e.split != "test"] + extra
    _check_writable(model_path(key))  # before a minute of training, not after it
    with _ticking(progress, f"training the classifier on {len(examples)} examples"):
        model = train(examples, seed=seed, version=version_of(key))
    model.info.update(info, key=key)
    _write(model, model_path(key))
    prune([key, *(k for k in keep if k)])
    return _long_lived(model)


def _check_writable(path: Path) -> None:
    """Raise the OSError that saving a model at ``path`` would meet (a folder that cannot be made or written:
    read-only, a system folder such as /proc/self, another user's), by making and removing a probe file
    there; the error names the model file, as a failed save does."""
    probe = path.with_name(f"{path.name}.{os.getpid()}.probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.open("xb").close()
    except OSError as exc:
        exc.filename = str(path)
        raise
    with suppress(OSError):
        probe.unlink()


def _write(model: Classifier, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two processes training at once never share one
    try:
        with tmp.open("wb") as fh:
            pickle.dump(model, fh)
        tmp.replace(path)
    except OSError as exc:  # a full or read-only cache: no temporary file stays, the error names the model file
        exc.filename = str(path)
        raise
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def prune(keep: list[str]) -> list[Path]:
    """Delete model files beyond ``KEPT``: the files of ``keep`` stay, then the most recently used others
    fill the remaining places. Also removes temporary files a killed training left behind. Returns what
    was deleted."""
    files = sorted(cache_dir().glob("model-*.pickle"), key=_mtime, reverse=True)
    wanted = {model_path(k).name for k in keep}
    kept = [p for p in files if p.name in wanted]
    kept += [p for p in files if p.name not in wanted][:max(KEPT - len(kept), 0)]
    gone = [p for p in files if p not in kept]
    an_hour_ago = time.time() - 3600
    gone += [p for p in cache_dir().glob("model-*.tmp") if _mtime(p) < an_hour_ago]
    for path in gone:
        path.unlink(missing_ok=True)
        log.info("removed %s from the model cache", path.name)
    return gone


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


@contextmanager
def _ticking(progress: Progress | None, step: str):
    """Call ``progress(seconds, 0, step)`` every second while the block runs (training has no count of
    its own to show); log the step and its time either way."""
    started = time.monotonic()
    log.info("%s ...", step)
    done = threading.Event()

    def tick():
        while not done.wait(1.0):
            progress(int(time.monotonic() - started), 0, step)

    ticker = threading.Thread(target=tick, daemon=True) if progress else None
    if ticker:
        progress(0, 0, step)
        ticker.start()
    try:
        yield
    finally:
        done.set()
        if ticker:
            ticker.join()
            progress(int(time.monotonic() - started), -1, step)  # total -1: the step is over
        log.info("%s: %.0f s", step, time.monotonic() - started)
