"""Story-grouped cross-validation on train + dev: how model settings were chosen, without the test split.

Prints the four headline figures (relevance F1, services micro-F1, cause and sentiment macro-F1)
averaged over K folds, where every story falls in exactly one fold. Tokenization runs once.
Run: .venv/bin/python bench/classifier_cv.py [--folds 5] [--c 4 8 16] [--char-range 1 3] [--threshold 0.4 0.5]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from classifier.corpus import load_corpus  # noqa: E402
from classifier.evaluate import HEADLINES, evaluate  # noqa: E402
from classifier.model import Hyper, analyze_all, train  # noqa: E402


def fold_of(story: str, folds: int) -> int:
    return int(hashlib.md5(story.encode()).hexdigest(), 16) % folds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--c", type=float, nargs="*", default=[Hyper.c_services])
    parser.add_argument("--char-range", type=int, nargs=2, default=list(Hyper.char_range))
    parser.add_argument("--threshold", type=float, nargs="*", default=[Hyper.service_threshold],
                        help="probability a service needs to be listed")
    args = parser.parse_args()
    examples = [e for e in load_corpus() if e.split != "test"]
    started = time.perf_counter()
    docs = analyze_all([(e.title, e.text) for e in examples])
    print(f"{len(examples)} train+dev items, analyzed in {time.perf_counter() - started:.1f} s; {args.folds} folds by story")
    for c, threshold in [(c, t) for c in args.c for t in args.threshold]:
        hyper = Hyper(c, c, c, c, tuple(args.char_range), threshold)
        scores = {h: [] for h in HEADLINES}
        for k in range(args.folds):
            fit = [i for i, e in enumerate(examples) if fold_of(e.story, args.folds) != k]
            held = [i for i, e in enumerate(examples) if fold_of(e.story, args.folds) == k]
            model = train([examples[i] for i in fit], docs=[docs[i] for i in fit], hyper=hyper, calibrate=False)
            ev = evaluate([examples[i] for i in held], model.predict_docs([docs[i] for i in held]))
            for h, v in ev.headline.items():
                scores[h].append(v)
        figures = "  ".join(f"{h} {statistics.mean(v):.3f}" for h, v in scores.items())
        print(f"C={c:g} chars={tuple(args.char_range)} threshold={threshold:g}  {figures}")


if __name__ == "__main__":
    main()
