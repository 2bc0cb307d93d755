"""Train, cache, load and apply the four-axis classifier (scikit-learn over tokens, characters and rules)."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import platform
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np
import sklearn
import spacy
import sudachipy
from sklearn.linear_model import LogisticRegression
from scipy.sparse import hstack

from classifier.vectors import CharNgrams, Features
from classifier.corpus import Example, corpus_digest, load_corpus
from classifier.rules import rule_hits_pair
from classifier.text import normalize, tokens_pair
from store.records import Cause, Label, Sentiment, Service

log = logging.getLogger(__name__)
CONFIDENCE_FLOOR = 0.55
CHAR_WINDOW = 400  # characters of body text that feed the character n-grams
_SERVICES = {str(s): s for s in Service}
_CAUSES = {str(c): c for c in Cause}
_SENTIMENTS = {str(s): s for s in Sentiment}


@dataclass(frozen=True)
class Doc:
    """An item as the models see it: normalized text, tokens and rule hits for title and body."""

    title: str
    body: str
    title_tokens: list[str]
    body_tokens: list[str]
    rules: list[str]


def analyze(title: str, text: str) -> Doc:
    title, body = normalize(title), normalize(text)
    tt, bt = tokens_pair(title, body)
    return Doc(title, body, tt, bt, rule_hits_pair(tt, bt))


def _word_features(doc: Doc) -> list[str]:
    """Tokens and token bigrams of the title (t:) and the body (b:), and the rules that fired (r:)."""
    out = []
    for prefix, words in (("t:", doc.title_tokens), ("b:", doc.body_tokens)):
        unigrams = [prefix + w for w in words]
        out += unigrams
        out += [u + "_" + w for u, w in zip(unigrams, words[1:])]  # "t:a" + "_" + "b" = "t:a_b"
    out += ["r:" + r for r in doc.rules]
    out += ["r:" + r[2:] for r in doc.rules]
    return out


def _char_text(doc: Doc) -> str:
    return f"{doc.title} {doc.body[:CHAR_WINDOW]}"  # n-grams of the title (and the space) count twice: it weighs more


@dataclass
class Classifier:
    """The fitted models. Build with ``train``; apply with ``predict``."""

    version: str
    words: Features
    chars: CharNgrams
    relevance: LogisticRegression
    services: dict[str, LogisticRegression]
    service_thresholds: dict[str, float]
    cause: LogisticRegression
    sentiment: LogisticRegression
    info: dict = field(default_factory=dict)

    def matrix(self, docs: list[Doc]):
        return hstack([self.words.transform([_word_features(d) for d in docs]),
                       self.chars.transform([_char_text(d) for d in docs], [len(d.title) + 1 for d in docs])],
                      format="csr")

    def predict(self, items: list[tuple[str, str]]) -> list[Label]:
        """Labels for (title, text) pairs."""
        if not items:
            return []
        docs = [analyze(t, x) for t, x in items]
        return self.predict_docs(docs)

    def predict_docs(self, docs: list[Doc]) -> list[Label]:
        X = self.matrix(docs)
        # Plain Python floats from here on: per-item work on NumPy scalars costs more than the models.
        p_rel = self.relevance.predict_proba(X)[:, 1].tolist()
        names = list(self.services)
        p_svc = np.column_stack([self.services[s].predict_proba(X)[:, 1] for s in names]).tolist()
        p_cause = self.cause.predict_proba(X).tolist()
        p_sent = self.sentiment.predict_proba(X).tolist()
        causes, sentiments = self.cause.classes_.tolist(), self.sentiment.classes_.tolist()
        return [self._label(p_rel[i], dict(zip(names, p_svc[i])), dict(zip(causes, p_cause[i])),
                            dict(zip(sentiments, p_sent[i]))) for i in range(len(docs))]

    def _label(self, p_rel: float, p_svc: dict[str, float], cause_probs: dict[str, float],
               sent_probs: dict[str, float]) -> Label:
        relevant = p_rel >= 0.5
        sentiment = max(sent_probs, key=sent_probs.get)
        ranked = sorted(p_svc.items(), key=itemgetter(1), reverse=True)
        services: tuple[Service, ...] = ()
        cause = "none"
        if relevant:
            thresholds = self.service_thresholds
            chosen = [s for s, p in ranked if p >= thresholds.get(s, 0.5)]
            # a relevant item is about at least one service: when none is likely enough, the likeliest
            services = tuple(_SERVICES[s] for s in chosen or [ranked[0][0]])
            cause = max(cause_probs, key=cause_probs.get)
        c_rel = max(p_rel, 1 - p_rel)
        c_cause = cause_probs[cause] if relevant else c_rel
        c_sent = sent_probs[sentiment]
        scores = {
            "relevant": {"p": round(p_rel, 4), "confidence": round(c_rel, 4)},
            "services": {s: round(p, 4) for s, p in ranked[:3]},
            "cause": {"label": cause, "confidence": round(c_cause, 4)},
            "sentiment": {"label": sentiment, "confidence": round(c_sent, 4)},
            "low_confidence": [axis for axis, c in (("cause", c_cause), ("relevant", c_rel), ("sentiment", c_sent))
                               if c < CONFIDENCE_FLOOR],
            "model": self.version,
        }
        return Label(relevant, services, _CAUSES[cause], _SENTIMENTS[sentiment], scores)


@dataclass(frozen=True)
class Hyper:
    """Model settings, chosen by story-grouped cross-validation on train+dev (bench/classifier_cv.py)."""

    c_relevance: float = 8.0
    c_services: float = 8.0
    c_cause: float = 8.0
    c_sentiment: float = 8.0
    char_range: tuple[int, int] = (1, 3)
    service_threshold: float = 0.5


def _lr(seed: int, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=3000, random_state=seed, class_weight="balanced")


def train(examples: list[Example], *, seed: int = 13, version: str = "dev", hyper: Hyper = Hyper(),
          docs: list[Doc] | None = None) -> Classifier:
    """Fit every axis on ``examples`` (deterministic for a given seed)."""
    docs = docs or [analyze(e.title, e.text) for e in examples]
    words = Features()
    chars = CharNgrams(ngram_range=hyper.char_range, min_df=2, max_features=60000)
    words.fit([_word_features(d) for d in docs])
    chars.fit([_char_text(d) for d in docs])
    model = Classifier(version, words, chars, None, {}, {}, None, None)
    X = model.matrix(docs)
    y_rel = np.array([e.label.relevant for e in examples])
    model.relevance = _lr(seed, hyper.c_relevance).fit(X, y_rel)
    rel_idx = np.flatnonzero(y_rel)
    Xr = X[rel_idx]
    for service in Service:
        y = np.array([service in examples[i].label.services for i in rel_idx])
        if y.any() and not y.all():
            model.services[str(service)] = _lr(seed, hyper.c_services).fit(Xr, y)
            # per service; one value for all: tuning each on out-of-fold predictions lost 0.005
            # services micro-F1 in bench/classifier_cv.py (0.918 against 0.923)
            model.service_thresholds[str(service)] = hyper.service_threshold
    model.cause = _lr(seed, hyper.c_cause).fit(Xr, [str(examples[i].label.cause) for i in rel_idx])
    model.sentiment = _lr(seed, hyper.c_sentiment).fit(X, [str(e.label.sentiment) for e in examples])
    model.info = {"examples": len(examples), "seed": seed}
    return model


def cache_dir() -> Path:
    root = os.environ.get("MYNAWATCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mynawatch")
    return Path(root)


def model_key(extra: bytes = b"") -> str:
    """Changes whenever the corpus, the classifier's code or a library that shapes the model changes."""
    code = hashlib.sha256()
    for name in ("model.py", "vectors.py", "rules.py", "text.py", "corpus.py"):
        code.update((Path(__file__).parent / name).read_bytes())
    versions = f"{code.hexdigest()}|{sklearn.__version__}|{spacy.__version__}|{sudachipy.__version__}|{platform.python_version()}"
    return hashlib.sha256(corpus_digest(extra=versions.encode() + extra).encode()).hexdigest()


def load_or_train(*, extra_examples: list[Example] = (), seed: int = 13, force: bool = False) -> Classifier:
    """The cached model for the current corpus (+ human corrections), trained on its train and dev splits."""
    extra_bytes = "\n".join(f"{e.id}|{e.title}|{e.text}|{e.label.as_json()}" for e in extra_examples).encode()
    key = model_key(extra_bytes + str(seed).encode())
    version = f"m-{key[:12]}"
    path = cache_dir() / f"model-{key}.pickle"
    if path.exists() and not force:
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring unreadable model cache %s: %s", path, exc)
    examples = [e for e in load_corpus() if e.split != "test"] + list(extra_examples)
    model = train(examples, seed=seed, version=version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(model, fh)
    tmp.replace(path)
    return model


def explain(model: Classifier, title: str, text: str, *, top: int = 8) -> dict:
    """The label, its probabilities, the rules that fired and the features that weighed most, per axis."""
    doc = analyze(title, text)
    (label,) = model.predict_docs([doc])
    X = model.matrix([doc])
    names = np.concatenate([model.words.get_feature_names_out(), [f"chars:{c}" for c in model.chars.get_feature_names_out()]])

    def drivers(clf, row: int | None = None) -> list[tuple[str, float]]:
        coef = clf.coef_[0 if row is None else row]
        contrib = X.multiply(coef).tocsr()
        pairs = sorted(zip(contrib.indices, contrib.data), key=lambda kv: -abs(kv[1]))[:top]
        return [(str(names[i]), round(float(v), 3)) for i, v in pairs]

    def row_of(clf, value: str) -> int | None:
        classes = list(clf.classes_)
        return classes.index(value) if len(classes) > 2 else None

    out = {"label": label.as_json(), "rules": sorted(set(doc.rules)), "tokens": doc.title_tokens + doc.body_tokens,
           "drivers": {"relevant": drivers(model.relevance)}}
    for service in label.services:
        out["drivers"][f"service:{service}"] = drivers(model.services[str(service)])
    if label.relevant:
        out["drivers"][f"cause:{label.cause}"] = drivers(model.cause, row_of(model.cause, str(label.cause)))
    out["drivers"][f"sentiment:{label.sentiment}"] = drivers(model.sentiment, row_of(model.sentiment, str(label.sentiment)))
    return out
