"""Train, cache, load and apply the four-axis classifier (scikit-learn over tokens, characters and rules)."""

from __future__ import annotations

import gc
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from scipy.sparse import hstack
from scipy.optimize import minimize_scalar
from scipy.special import expit, logsumexp, softmax

from classifier.vectors import CharNgrams, TokenNgrams, block_view
from classifier.corpus import Example
from classifier.rules import rule_hits_batch
from classifier.text import normalize, split_hashtags, tokens_of, tokens_pairs
from store.records import TROUBLE_CAUSES, Cause, Label, Sentiment, Service

log = logging.getLogger(__name__)
CONFIDENCE_FLOOR = 0.55
CHAR_WINDOW = 400  # characters of body text that feed the character n-grams
# The axes fitted on the block view of the token features (``block_view``: title, body, hashtags and rules each
# normalized on their own, weighed as below) instead of the whole-row one. Tone sits in the headline far more
# than in a long flat lead: on the real check's texts the block view finds more of the positive items, while
# the other axes read better on the whole-row view (see docs/classifier.md, "Two views").
TONE_AXES = ("sentiment",)
TONE_WEIGHTS = (1.0, 1.0, 0.4, 1.0)  # title, body, hashtags, rules
# A long text is also read as its title and lead: the body up to the first sentence end at or after
# LEAD_CHARS characters. Which services an item is about shows in its title and lead; a long page names
# others in passing further down. The services' probabilities are the whole text's and the lead's mixed,
# the lead's weighing LEAD_WEIGHT (see docs/classifier.md, "The lead").
LEAD_CHARS = 150
LEAD_WEIGHT = 0.3
# The stream is long and the corpus short: 85% of published items run over 500 characters, the corpus's
# median is 78. Training items over LONG_CHARS characters (title and text) weigh LONG_WEIGHT in the fits of
# the axes that read tone and trouble from the whole text (cause, sentiment, trouble), toward the lengths the
# classifier meets (see docs/classifier.md, "Long items weigh more").
LONG_CHARS = 250
LONG_WEIGHT = 6.0
LONG_AXES = ("cause", "sentiment", "trouble")
_SENTENCE_END = re.compile(r"[。!?]")
AXES = ("relevance", "services", "cause", "sentiment", "trouble")
SERVICES_AXIS = "services"
FIT_WORKERS = max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
_SERVICES = {str(s): s for s in Service}
_CAUSES = {str(c): c for c in Cause}
_SENTIMENTS = {str(s): s for s in Sentiment}


class Doc(NamedTuple):
    """An item as the models see it: normalized title and body (what the character n-grams read, hashtags
    included), the tokens of their prose and rule hits, and the tokens of the hashtags, kept apart
    (rules matched in them are prefixed H:): a post about コンビニ交付 tagged # マイナンバーカード does
    not name the card the way its prose would."""

    title: str
    body: str
    title_tokens: list[str]
    body_tokens: list[str]
    rules: list[str]
    tags: list[str] | tuple = ()
    lead: "Doc | None" = None  # the title and lead of a long text (``LEAD_CHARS``), None for a short one


def lead_end(body: str) -> int:
    """Where the lead of a normalized body ends: after the first sentence end at or after ``LEAD_CHARS``
    (at ``LEAD_CHARS`` when no sentence ends within twice that); 0 when the whole body is the lead."""
    if len(body) <= LEAD_CHARS:
        return 0
    found = _SENTENCE_END.search(body, LEAD_CHARS - 1, 2 * LEAD_CHARS)
    end = found.end() if found else LEAD_CHARS
    return end if end < len(body) else 0


def analyze(title: str, text: str) -> Doc:
    return analyze_all([(title, text)])[0]


def analyze_all(items: list[tuple[str, str]]) -> list[Doc]:
    """Docs of (title, text) pairs; the rules run over the whole batch at once."""
    texts, prose, tag_texts = [], [], {}
    for i, (title, text) in enumerate(items):
        title, text = normalize(title), normalize(text)
        texts.append((title, text))
        (title, title_tags), (body, body_tags) = split_hashtags(title), split_hashtags(text)
        prose.append((title, body))
        if title_tags or body_tags:  # a Mastodon post's title is its start: the same tags twice count once
            tag_texts[i] = " ".join(dict.fromkeys(title_tags + body_tags))
    # A long body is tokenized as its lead and the rest (cut at a sentence end): their tokens side by
    # side are the body's, and the lead's are had without a second pass over it.
    ends = [lead_end(body) for _, body in prose]
    pieces = tokens_of([text for (title, body), end in zip(prose, ends)
                        for text in (title, body[:end] if end else body, body[end:] if end else "")])
    tokens = [(pieces[3 * i], pieces[3 * i + 1] + pieces[3 * i + 2]) for i in range(len(prose))]
    docs = [Doc(title, body, tt, bt, rules, ())
            for (title, body), (tt, bt), rules in zip(texts, tokens, rule_hits_batch(tokens))]
    if tag_texts:
        tagged = [t for t, _ in tokens_pairs([(text, "") for text in tag_texts.values()])]
        for i, words, hits in zip(tag_texts, tagged, rule_hits_batch([(t, []) for t in tagged])):
            docs[i] = docs[i]._replace(rules=docs[i].rules + ["H:" + r[2:] for r in hits], tags=words)
    long = [i for i, end in enumerate(ends) if end]
    if long:
        heads = [(tokens[i][0], pieces[3 * i + 1]) for i in long]
        for i, (tt, lt), hits in zip(long, heads, rule_hits_batch(heads)):
            d = docs[i]  # the lead's characters are its prose's (a long post's hashtags come at its end)
            docs[i] = d._replace(lead=Doc(d.title, prose[i][1][:ends[i]], tt, lt,
                                          hits + [r for r in d.rules if r[:2] == "H:"], d.tags))
    return docs


def _token_parts(doc: Doc) -> tuple[list[str], list[str], list[str], list[str]]:
    return doc.title_tokens, doc.body_tokens, doc.rules, doc.tags


def _char_text(doc: Doc) -> str:
    return f"{doc.title} {doc.body[:CHAR_WINDOW]}"  # n-grams of the title (and the space) count twice: it weighs more


@dataclass
class Classifier:
    """The fitted models. Build with ``train``; apply with ``predict``."""

    version: str
    words: TokenNgrams
    chars: CharNgrams
    relevance: LogisticRegression
    services: dict[str, LogisticRegression]
    service_thresholds: dict[str, float]
    cause: LogisticRegression
    sentiment: LogisticRegression
    info: dict = field(default_factory=dict)
    linear: "Linear | None" = None
    trouble: LogisticRegression | None = None  # is this a trouble report (what alerts count)? decides with the axes
    trouble_threshold: float = 0.5
    tone_weights: tuple[float, ...] | None = None  # the block view's weights (None: one view for all axes)
    block_of: np.ndarray | None = None  # each token feature's block

    def parts(self, docs: list[Doc], *, blocks: bool = True):
        """The token features, the character features and the block view of the token features (None
        without one, or when not ``blocks``) of ``docs``: the whole-row view is the first two side by side,
        the block view the third and the second."""
        words = self.words.transform([_token_parts(d) for d in docs])
        chars = self.chars.transform([_char_text(d) for d in docs], [len(d.title) + 1 for d in docs])
        if self.tone_weights is None or not blocks:
            return words, chars, None
        return words, chars, block_view(words, self.block_of, np.asarray(self.tone_weights))

    def matrices(self, docs: list[Doc]):
        """The features of ``docs``: the whole-row view, and the block view (None without one)."""
        words, chars, blocks = self.parts(docs)
        return (hstack([words, chars], format="csr"),
                None if blocks is None else hstack([blocks, chars], format="csr"))

    def matrix(self, docs: list[Doc]):
        return self.matrices(docs)[0]

    def predict(self, items: list[tuple[str, str]]) -> list[Label]:
        """Labels for (title, text) pairs."""
        if not items:
            return []
        with _collector_paused():
            return self.predict_docs(analyze_all(items))

    def predict_docs(self, docs: list[Doc]) -> list[Label]:
        return self.labels(*self.probabilities(docs))

    def probabilities(self, docs: list[Doc]) -> list[np.ndarray]:
        """Each axis' probabilities of ``docs`` (as ``labels`` takes them); a long text's services mixed
        with its lead's (``LEAD_WEIGHT``)."""
        scores = self.linear.scores_of_parts(*self.parts(docs))  # every axis at once, without joining the parts
        out = [self.linear.probabilities(scores, axis) for axis in range(len(self.linear.axes))]
        long = [i for i, d in enumerate(docs) if d.lead is not None]
        if long:
            leads = [docs[i].lead for i in long]
            lead = self.linear.axis_probabilities(1, *self.parts(leads, blocks=SERVICES_AXIS in TONE_AXES))
            out[1][long] = (1 - LEAD_WEIGHT) * out[1][long] + LEAD_WEIGHT * lead
        return out

    def labels(self, p_rel: np.ndarray, p_svc: np.ndarray, p_cause: np.ndarray, p_sent: np.ndarray,
               p_trouble: np.ndarray | None = None) -> list[Label]:
        """Labels from each axis' probabilities, a row per item (columns as ``Linear.probabilities`` gives
        them: relevance P(false), P(true); services in ``self.services`` order; the models' classes;
        trouble P(no), P(yes)).

        The trouble decision: a relevant item the trouble model holds to be a trouble report gets the
        likeliest failure cause when the cause model said none (or maintenance), and a negative tone when
        the sentiment model said neutral; real items state their cause and tone indirectly far more often
        than the cause and sentiment models alone can tell."""
        names = list(self.services)
        causes, sentiments = self.cause.classes_.tolist(), self.sentiment.classes_.tolist()
        rel = p_rel[:, -1]
        relevant = rel >= 0.5
        c_rel = np.maximum(rel, 1 - rel)
        ranked = np.argsort(-p_svc, axis=1, kind="stable")
        listed = np.take_along_axis(p_svc >= [self.service_thresholds.get(s, 0.5) for s in names], ranked, axis=1)
        chosen: list[list[int]] = [[] for _ in range(len(rel))]  # listed services, likeliest first
        rows, at = np.nonzero(listed)
        for row, j in zip(rows.tolist(), ranked[rows, at].tolist()):
            chosen[row].append(j)
        top = ranked[:, :3]
        top_p = np.take_along_axis(p_svc, top, axis=1)
        cause = np.where(relevant, p_cause.argmax(axis=1), -1)
        c_cause = np.where(relevant, p_cause.max(axis=1), c_rel)
        sentiment, c_sent = p_sent.argmax(axis=1), p_sent.max(axis=1)
        p_tr = p_trouble[:, -1] if p_trouble is not None else np.zeros(len(rel))
        if p_trouble is not None:
            failure = np.array([c in TROUBLE_CAUSES for c in map(Cause, causes)])
            neutral = sentiments.index("neutral") if "neutral" in sentiments else -1
            trouble = relevant & (p_tr >= self.trouble_threshold)
            recast = trouble & ~failure[np.maximum(cause, 0)]
            if recast.any():
                masked = np.where(failure, p_cause, -1.0)
                cause = np.where(recast, masked.argmax(axis=1), cause)
                c_cause = np.where(recast, p_tr, c_cause)
            calm = trouble & (sentiment == neutral)
            if calm.any():
                sentiment = np.where(calm, sentiments.index("negative"), sentiment)
                c_sent = np.where(calm, p_tr, c_sent)
        # Plain Python values from here on: per-item work on NumPy scalars costs more than the models.
        services = [_SERVICES[s] for s in names]
        out = []
        for r, ok, cr, pick, rank, ps, c, cc, snt, cs, pt in zip(
                rel.tolist(), relevant.tolist(), c_rel.tolist(), chosen, top.tolist(), top_p.tolist(),
                cause.tolist(), c_cause.tolist(), sentiment.tolist(), c_sent.tolist(), p_tr.tolist()):
            # a relevant item is about at least one service: when none is likely enough, the likeliest
            listed_services = tuple(services[j] for j in pick or rank[:1]) if ok else ()
            cause_code = causes[c] if ok else "none"
            scores = {
                "relevant": {"p": round(r, 4), "confidence": round(cr, 4)},
                "services": {names[j]: round(p, 4) for j, p in zip(rank, ps)},
                "cause": {"label": cause_code, "confidence": round(cc, 4)},
                "sentiment": {"label": sentiments[snt], "confidence": round(cs, 4)},
                "trouble": round(pt, 4),
                "low_confidence": [axis for axis, conf in (("cause", cc), ("relevant", cr), ("sentiment", cs))
                                   if conf < CONFIDENCE_FLOOR],
                "model": self.version,
            }
            out.append(Label(ok, listed_services, _CAUSES[cause_code], _SENTIMENTS[sentiments[snt]], scores))
        return out


@dataclass(frozen=True)
class Linear:
    """The fitted logistic regressions of the four axes side by side: one sparse-by-dense product scores
    every axis (one pass over the features instead of one per model), then each axis' probabilities are
    computed as scikit-learn's ``predict_proba`` computes them (sigmoid for binary, softmax otherwise)
    from the scores divided by the axis' temperature (calibration)."""

    weights: np.ndarray  # features x scores (zero in the columns of the axes read on the second view)
    bias: np.ndarray
    axes: tuple[tuple[int, int, str], ...]  # per axis: its first score, its end, how scores become probabilities
    second: np.ndarray | None = None  # features x the scores read on the second (block) view
    second_cols: np.ndarray | None = None  # which scores those are

    def scores(self, X, X2=None) -> np.ndarray:
        """Every axis' scores of the rows of the whole-row view ``X`` (and of the block view ``X2``)."""
        out = X @ self.weights
        if self.second is not None:
            out[:, self.second_cols] = X2 @ self.second
        return out + self.bias

    def scores_of_parts(self, words, chars, blocks=None) -> np.ndarray:
        """``scores`` of the views' parts (``Classifier.parts``): the token features' rows of the weights,
        then the characters', with no matrix joined side by side."""
        n = words.shape[1]
        out = words @ self.weights[:n]
        out += chars @ self.weights[n:]
        if self.second is not None:
            second = blocks @ self.second[:n]
            second += chars @ self.second[n:]
            out[:, self.second_cols] = second
        return out + self.bias

    def axis_probabilities(self, axis: int, words, chars, blocks=None) -> np.ndarray:
        """``probabilities`` of one axis from the views' parts, scoring only that axis' columns."""
        start, end, _kind = self.axes[axis]
        n = words.shape[1]
        if self.second is not None and np.isin(np.arange(start, end), self.second_cols).any():
            return self.probabilities(self.scores_of_parts(words, chars, blocks), axis)
        z = words @ self.weights[:n, start:end]
        z += chars @ self.weights[n:, start:end]
        scores = np.zeros((words.shape[0], self.weights.shape[1]))
        scores[:, start:end] = z + self.bias[start:end]
        return self.probabilities(scores, axis)

    @classmethod
    def of(cls, relevance, services: list, cause, sentiment, trouble=None,
           temperatures: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0), second_axes: tuple[str, ...] = ()) -> "Linear":
        """Side by side, each axis' coefficients and intercepts divided by its temperature (the trouble
        model, when there is one, is the fifth axis); the axes named in ``second_axes`` score the second view."""
        axes, coefs, biases, start = [], [], [], 0
        groups = (([relevance], False), (services, True), ([cause], False), ([sentiment], False))
        groups += ((([trouble], False),) if trouble is not None else ())
        for (models, many), t in zip(groups, temperatures):
            coef = np.vstack([m.coef_ for m in models]) / t
            kind = "sigmoids" if many else "sigmoid" if len(coef) == 1 else "softmax"
            axes.append((start, start + len(coef), kind))
            coefs.append(coef)
            biases += [m.intercept_ / t for m in models]
            start += len(coef)
        weights = np.ascontiguousarray(np.vstack(coefs).T)
        cols = np.array([c for name, (a, b, _) in zip(AXES, axes) if name in second_axes for c in range(a, b)],
                        dtype=np.int64)
        if not len(cols):
            return cls(weights, np.concatenate(biases), tuple(axes))
        second = np.ascontiguousarray(weights[:, cols])
        weights[:, cols] = 0.0
        return cls(weights, np.concatenate(biases), tuple(axes), second, cols)

    def probabilities(self, scores: np.ndarray, axis: int) -> np.ndarray:
        """Per row: relevance P(false), P(true); services P(listed) of each; cause, sentiment P of each class."""
        start, end, kind = self.axes[axis]
        z = scores[:, start:end]
        if kind == "sigmoid":  # one binary model: both classes, as predict_proba gives them
            p = expit(z[:, 0])
            return np.column_stack([1 - p, p])
        return expit(z) if kind == "sigmoids" else softmax(z, axis=1)


@dataclass(frozen=True)
class Hyper:
    """Model settings, chosen by story-grouped cross-validation on train+dev (bench/classifier_cv.py)."""

    c_relevance: float = 8.0
    c_services: float = 8.0
    c_cause: float = 8.0
    c_sentiment: float = 8.0
    char_range: tuple[int, int] = (1, 3)
    service_threshold: float = 0.5
    c_trouble: float = 8.0
    trouble_threshold: float = 0.5


def _lr(seed: int, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=3000, random_state=seed, class_weight="balanced")


def train(examples: list[Example], *, seed: int = 13, version: str = "dev", hyper: Hyper = Hyper(),
          docs: list[Doc] | None = None, calibrate: bool = True) -> Classifier:
    """Fit every axis on ``examples`` (deterministic for a given seed).

    With ``calibrate``, the same models are first fitted without the dev split's stories, and the
    temperature that makes each axis' probabilities honest on those stories is learned (see
    ``temperatures``); the final models, fitted on everything, score with those temperatures."""
    docs = docs or analyze_all([(e.title, e.text) for e in examples])
    words = TokenNgrams()
    chars = CharNgrams(ngram_range=hyper.char_range, min_df=2, max_features=60000)
    words.fit([_token_parts(d) for d in docs])
    chars.fit([_char_text(d) for d in docs])
    model = Classifier(version, words, chars, None, {}, {}, None, None)
    if TONE_AXES:
        model.tone_weights, model.block_of = TONE_WEIGHTS, words.blocks()
    X, Xs = model.matrices(docs)
    temps = (1.0, 1.0, 1.0, 1.0, 1.0)
    held = np.array([e.split == "dev" for e in examples])
    if calibrate and held.any() and not held.all():
        fit, kept = np.flatnonzero(~held), np.flatnonzero(held)
        trial = _fit_axes(X[fit], [examples[i] for i in fit], seed, hyper, None if Xs is None else Xs[fit])
        views = (X[kept], None if Xs is None else Xs[kept])
        temps = temperatures(trial, *views, [examples[i] for i in kept])
        threshold = trouble_threshold(model, trial, temps, views, [examples[i] for i in kept], hyper)
    else:
        threshold = hyper.trouble_threshold
    model.relevance, model.services, model.cause, model.sentiment, model.trouble = _fit_axes(
        X, examples, seed, hyper, Xs)
    model.trouble_threshold = threshold
    # one threshold for all: tuning each service's on out-of-fold predictions lost 0.005 services
    # micro-F1 in bench/classifier_cv.py (0.918 against 0.923)
    model.service_thresholds = dict.fromkeys(model.services, hyper.service_threshold)
    model.linear = Linear.of(model.relevance, list(model.services.values()), model.cause, model.sentiment,
                             model.trouble, temps, TONE_AXES if Xs is not None else ())
    model.info = {"examples": len(examples), "seed": seed, "temperatures": temps, "trouble_threshold": threshold}
    return model


# The trouble threshold maximizes F-beta on the dev stories with recall weighed twice: a missed trouble report
# delays an alert, a false one is one count among many; and our dev stories state trouble more plainly than
# published items do (on the real check's 313 texts: by F1, 86% of trouble reports at precision 0.95;
# by F2, 91% at 0.91).
TROUBLE_BETA = 2.0
TROUBLE_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(9))  # 0.30 ... 0.70


def trouble_threshold(shell: Classifier, axes, temps, views, examples: list[Example], hyper: Hyper) -> float:
    """The P(trouble) at which the trouble decision finds trouble reports best (F-beta) on held-out
    ``examples`` (``views``: their features, as ``Classifier.matrices`` gives them), scored by models fitted
    without them (ties go to the value nearest 0.5)."""
    relevance, services, cause, sentiment, trouble = axes
    probe = Classifier(shell.version, shell.words, shell.chars, relevance, services,
                       dict.fromkeys(services, hyper.service_threshold), cause, sentiment, trouble=trouble)
    probe.linear = Linear.of(relevance, list(services.values()), cause, sentiment, trouble, temps,
                             TONE_AXES if views[1] is not None else ())
    scores = probe.linear.scores(*views)
    probabilities = [probe.linear.probabilities(scores, axis) for axis in range(5)]
    gold = np.array([_is_trouble(e.label) for e in examples])

    b2 = TROUBLE_BETA ** 2

    def f_beta(threshold: float) -> float:
        probe.trouble_threshold = threshold
        found = np.array([_is_trouble(label) for label in probe.labels(*probabilities)])
        tp = int((found & gold).sum())
        return (1 + b2) * tp / (int(found.sum()) + b2 * int(gold.sum())) if tp else 0.0

    return max(TROUBLE_THRESHOLDS, key=lambda t: (round(f_beta(t), 4), -abs(t - 0.5)))


def _fit_axes(X, examples: list[Example], seed: int, hyper: Hyper, Xs=None):
    """Relevance, per-service, cause, sentiment and trouble models (services and cause learn from relevant
    items; the axes of ``TONE_AXES`` from the block view ``Xs`` when there is one). The fits are independent:
    they run side by side on the machine's cores (each is deterministic, so the models are the same as fitted
    one after another)."""
    def view(axis: str):
        return Xs if Xs is not None and axis in TONE_AXES else X

    y_rel = np.array([e.label.relevant for e in examples])
    rel_idx = np.flatnonzero(y_rel)
    Xr = view("services")[rel_idx]
    jobs = [("relevance", view("relevance"), y_rel, hyper.c_relevance)]
    for service in Service:
        y = np.array([service in examples[i].label.services for i in rel_idx])
        if y.any() and not y.all():
            jobs.append((str(service), Xr, y, hyper.c_services))
    jobs += [("cause", view("cause")[rel_idx], np.array([str(examples[i].label.cause) for i in rel_idx]), hyper.c_cause),
             ("sentiment", view("sentiment"), np.array([str(e.label.sentiment) for e in examples]), hyper.c_sentiment),
             ("trouble", view("trouble"), np.array([_is_trouble(e.label) for e in examples]), hyper.c_trouble)]
    jobs.sort(key=lambda job: -job[1].shape[0] * (len(set(job[2].tolist())) if job[0] == "cause" else 1))
    weights = length_weights(examples)
    weighed = {"cause": weights[rel_idx], "sentiment": weights, "trouble": weights}
    fitted = dict(Parallel(n_jobs=FIT_WORKERS, prefer="processes")(
        delayed(_fit_one)(name, Xj, y, seed, c, weighed.get(name) if name in LONG_AXES else None)
        for name, Xj, y, c in jobs))
    services = {str(s): fitted[str(s)] for s in Service if str(s) in fitted}
    return fitted["relevance"], services, fitted["cause"], fitted["sentiment"], fitted["trouble"]


def length_weights(examples: list[Example]) -> np.ndarray:
    """Each training item's weight in the fits of ``LONG_AXES``: LONG_WEIGHT over LONG_CHARS characters, else 1."""
    return np.array([LONG_WEIGHT if len(e.title) + len(e.text) > LONG_CHARS else 1.0 for e in examples])


def _fit_one(name: str, X, y, seed: int, c: float, weights: np.ndarray | None = None) -> tuple[str, LogisticRegression]:
    return name, _lr(seed, c).fit(X, y, sample_weight=weights)


def _is_trouble(label: Label) -> bool:
    return bool(label.relevant) and label.cause in TROUBLE_CAUSES and label.sentiment != Sentiment.POSITIVE


def temperatures(axes, X, Xs, examples: list[Example]) -> tuple[float, ...]:
    """Per axis, the T that minimizes the log loss of probabilities computed from scores / T on held-out
    ``examples`` (temperature scaling: T > 1 tempers overconfident scores, T < 1 sharpens timid ones;
    which label wins never changes). ``Xs``: their block view (None without one)."""
    relevance, services, cause, sentiment, trouble = axes

    def view(axis: str):
        return Xs if Xs is not None and axis in TONE_AXES else X

    relevant = [i for i, e in enumerate(examples) if e.label.relevant]
    out = [_binary_temperature(relevance.decision_function(view("relevance")),
                               np.array([e.label.relevant for e in examples]))]
    if relevant and services:  # one T for all services: their binary decisions pooled
        z = np.column_stack([m.decision_function(view("services")[relevant]) for m in services.values()])
        y = np.array([[s in map(str, examples[i].label.services) for s in services] for i in relevant])
        out.append(_binary_temperature(z.ravel(), y.ravel()))
    else:
        out.append(1.0)
    for clf, axis, rows, gold in ((cause, "cause", relevant, lambda e: str(e.label.cause)),
                                  (sentiment, "sentiment", range(len(examples)), lambda e: str(e.label.sentiment))):
        classes = list(clf.classes_)
        known = [(i, classes.index(gold(examples[i]))) for i in rows if gold(examples[i]) in classes]
        if len(classes) < 3 or not known:
            out.append(1.0)
            continue
        at, y = zip(*known)
        out.append(_softmax_temperature(clf.decision_function(view(axis)[list(at)]), np.array(y)))
    out.append(_binary_temperature(trouble.decision_function(view("trouble")),
                                   np.array([_is_trouble(e.label) for e in examples])))
    return tuple(out)


def _binary_temperature(z: np.ndarray, y: np.ndarray) -> float:
    sign = np.where(y, 1.0, -1.0)
    return _best_temperature(lambda t: float(np.mean(np.logaddexp(0.0, -sign * z / t))))


def _softmax_temperature(z: np.ndarray, y: np.ndarray) -> float:
    picked = z[np.arange(len(y)), y]
    return _best_temperature(lambda t: float(np.mean(logsumexp(z / t, axis=1) - picked / t)))


def _best_temperature(loss) -> float:
    found = minimize_scalar(lambda log_t: loss(np.exp(log_t)), bounds=(-3.0, 3.0), method="bounded")
    return round(float(np.exp(found.x)), 4)


@contextmanager
def _collector_paused():
    """Tagging a batch allocates tens of thousands of small lists, dicts and labels and makes no
    reference cycles: the cycle collector's passes over them (a few us per item) find nothing, and
    refcounting frees them all the same. Paused for the batch, restored after (even on error)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _long_lived(model: Classifier) -> Classifier:
    """The model and the libraries behind it live as long as the process: take them out of the garbage
    collector's way, so that the full collections a tagging run sets off every few thousand items walk
    only new objects, not ~150,000 long-lived ones (about 80 ms each time, 10 us per tagged headline)."""
    gc.collect()
    gc.freeze()
    return model


def explain(model: Classifier, title: str, text: str, *, top: int = 8) -> dict:
    """The label, its probabilities, the rules that fired and the features that weighed most, per axis."""
    doc = analyze(title, text)
    (label,) = model.predict_docs([doc])
    X, Xs = model.matrices([doc])
    names = np.concatenate([model.words.get_feature_names_out(), [f"chars:{c}" for c in model.chars.get_feature_names_out()]])

    def drivers(clf, row: int | None = None, axis: str = "") -> list[tuple[str, float]]:
        coef = clf.coef_[0 if row is None else row]
        contrib = (Xs if Xs is not None and axis in TONE_AXES else X).multiply(coef).tocsr()
        pairs = sorted(zip(contrib.indices, contrib.data), key=lambda kv: -abs(kv[1]))[:top]
        return [(str(names[i]), round(float(v), 3)) for i, v in pairs]

    def row_of(clf, value: str) -> int | None:
        classes = list(clf.classes_)
        return classes.index(value) if len(classes) > 2 else None

    out = {"label": label.as_json(), "rules": sorted(set(doc.rules)), "tokens": doc.title_tokens + doc.body_tokens,
           "hashtags": doc.tags,
           "drivers": {"relevant": drivers(model.relevance)}}
    for service in label.services:
        out["drivers"][f"service:{service}"] = drivers(model.services[str(service)])
    if label.relevant:
        out["drivers"][f"cause:{label.cause}"] = drivers(model.cause, row_of(model.cause, str(label.cause)))
    out["drivers"][f"sentiment:{label.sentiment}"] = drivers(model.sentiment, row_of(model.sentiment, str(label.sentiment)),
                                                             "sentiment")
    return out
