"""Measure a classifier against gold labels, per axis. Pure: predictions and gold in, figures out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifier.corpus import Example
from store.records import TROUBLE_CAUSES, Cause, Label, Sentiment, Service

FLOORS = Path(__file__).parent / "data" / "floors.json"
HEADLINES = ("relevance_f1", "services_micro_f1", "cause_macro_f1", "sentiment_macro_f1")


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class AxisReport:
    name: str
    classes: list[str]
    per_class: dict[str, ClassScores]
    macro_f1: float
    confusion: list[list[int]] | None  # rows gold, columns predicted (single-label axes)
    ece: float  # expected calibration error of the top probability (services: of each stated probability)
    micro_f1: float | None = None


@dataclass
class Evaluation:
    n: int
    axes: dict[str, AxisReport] = field(default_factory=dict)
    trouble: ClassScores | None = None  # trouble reports: what the alert signal counts

    @property
    def headline(self) -> dict[str, float]:
        return {
            "relevance_f1": self.axes["relevant"].per_class["true"].f1,
            "services_micro_f1": self.axes["services"].micro_f1,
            "cause_macro_f1": self.axes["cause"].macro_f1,
            "sentiment_macro_f1": self.axes["sentiment"].macro_f1,
        }


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _single(name: str, classes: list[str], gold: list[str], pred: list[str], conf: list[float]) -> AxisReport:
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for g, p in zip(gold, pred):
        matrix[index[g], index[p]] += 1
    per = {}
    for c, i in index.items():
        tp, fp, fn = matrix[i, i], matrix[:, i].sum() - matrix[i, i], matrix[i, :].sum() - matrix[i, i]
        per[c] = ClassScores(*_prf(int(tp), int(fp), int(fn)), support=int(matrix[i, :].sum()))
    present = [c for c in classes if per[c].support or matrix[:, index[c]].sum()]
    macro = float(np.mean([per[c].f1 for c in present])) if present else 0.0
    correct = [g == p for g, p in zip(gold, pred)]
    return AxisReport(name, classes, per, round(macro, 4), matrix.tolist(), expected_calibration_error(conf, correct))


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    """Mean gap between confidence and accuracy, weighted by bin size (10 equal-width bins)."""
    if not confidence:
        return 0.0
    conf, ok = np.asarray(confidence), np.asarray(correct, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi) if lo else (conf >= lo) & (conf <= hi)
        if mask.any():
            total += mask.sum() * abs(conf[mask].mean() - ok[mask].mean())
    return round(float(total / len(conf)), 4)


def _service_reliability(gold: list[Example], predicted: list[Label]) -> tuple[list[float], list[bool]]:
    """Each probability an item predicted relevant states for a service (its likeliest three), and whether
    the gold label lists that service: calibrated probabilities come true as often as they say."""
    probabilities, outcomes = [], []
    for g, p in zip(gold, predicted):
        if not p.relevant:  # service probabilities are given relevance
            continue
        listed = {str(s) for s in g.label.services}
        for service, probability in p.scores.get("services", {}).items():
            probabilities.append(float(probability))
            outcomes.append(service in listed)
    return probabilities, outcomes


def is_trouble(label: Label) -> bool:
    """A trouble report, as the alert signal counts it: relevant, a failure cause (not none, not
    maintenance) and a tone that is not positive."""
    return bool(label.relevant) and label.cause in TROUBLE_CAUSES and label.sentiment != Sentiment.POSITIVE


def evaluate(gold: list[Example], predicted: list[Label]) -> Evaluation:
    ev = Evaluation(len(gold))
    tp = sum(is_trouble(g.label) and is_trouble(p) for g, p in zip(gold, predicted))
    fp = sum(not is_trouble(g.label) and is_trouble(p) for g, p in zip(gold, predicted))
    fn = sum(is_trouble(g.label) and not is_trouble(p) for g, p in zip(gold, predicted))
    ev.trouble = ClassScores(*_prf(tp, fp, fn), support=tp + fn)
    conf = lambda lab, axis: float(lab.scores.get(axis, {}).get("confidence", 1.0))  # noqa: E731
    ev.axes["relevant"] = _single("relevant", ["false", "true"], [str(g.label.relevant).lower() for g in gold],
                                  [str(p.relevant).lower() for p in predicted], [conf(p, "relevant") for p in predicted])
    ev.axes["cause"] = _single("cause", [str(c) for c in Cause], [str(g.label.cause) for g in gold],
                               [str(p.cause) for p in predicted], [conf(p, "cause") for p in predicted])
    ev.axes["sentiment"] = _single("sentiment", [str(s) for s in Sentiment], [str(g.label.sentiment) for g in gold],
                                   [str(p.sentiment) for p in predicted], [conf(p, "sentiment") for p in predicted])
    per, tp_all, fp_all, fn_all = {}, 0, 0, 0
    for s in Service:
        tp = sum(s in g.label.services and s in p.services for g, p in zip(gold, predicted))
        fp = sum(s not in g.label.services and s in p.services for g, p in zip(gold, predicted))
        fn = sum(s in g.label.services and s not in p.services for g, p in zip(gold, predicted))
        per[str(s)] = ClassScores(*_prf(tp, fp, fn), support=tp + fn)
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    ev.axes["services"] = AxisReport(
        "services", [str(s) for s in Service], per, round(float(np.mean([c.f1 for c in per.values() if c.support])), 4),
        None, expected_calibration_error(*_service_reliability(gold, predicted)),
        micro_f1=round(_prf(tp_all, fp_all, fn_all)[2], 4))
    return ev


def render_evaluation(ev: Evaluation, *, floors: dict[str, float] | None = None) -> str:
    lines = [f"items: {ev.n}", ""]
    for key, value in ev.headline.items():
        floor = (floors or {}).get(key)
        mark = "" if floor is None else f"   (floor {floor:.3f}{'' if value >= floor else '  BELOW FLOOR'})"
        lines.append(f"{key:20} {value:.3f}{mark}")
    if ev.trouble is not None:
        t = ev.trouble
        lines.append(f"{'trouble_recall':20} {t.recall:.3f}   precision {t.precision:.3f}, F1 {t.f1:.3f}, "
                     f"{t.support} trouble report(s) in the gold labels")
    for axis in ev.axes.values():
        lines += ["", f"== {axis.name}: macro-F1 {axis.macro_f1:.3f}"
                  + (f", micro-F1 {axis.micro_f1:.3f}" if axis.micro_f1 is not None else "")
                  + f", calibration error {axis.ece:.3f}",
                  f"{'class':22} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>7}"]
        for c in axis.classes:
            s = axis.per_class[c]
            lines.append(f"{c:22} {s.precision:9.3f} {s.recall:7.3f} {s.f1:6.3f} {s.support:7d}")
        if axis.confusion:
            short = [c[:6] for c in axis.classes]
            lines += ["confusion (rows gold, columns predicted):", " " * 22 + " ".join(f"{c:>6}" for c in short)]
            lines += [f"{c:22} " + " ".join(f"{n:6d}" for n in row) for c, row in zip(axis.classes, axis.confusion)]
    return "\n".join(lines) + "\n"


def read_floors(path: Path = FLOORS) -> dict[str, float]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def pin_floors(ev: Evaluation, path: Path = FLOORS, *, margin: float = 0.01) -> dict[str, float]:
    """Write floors just under the current figures (an explicit re-pin is the only way to lower them)."""
    floors = {k: round(max(0.0, v - margin), 3) for k, v in ev.headline.items()}
    path.write_text(json.dumps(floors, indent=2) + "\n", encoding="utf-8")
    return floors
