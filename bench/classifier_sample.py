"""The classifier on the demo's sample month: feed items written apart from the corpus, never trained on.

Parses every sample feed (mynawatch/sample/feeds, Google Trends aside: its items are search terms),
tags each item (title and summary, as the store holds them) and compares with the month's truth
files (mynawatch/sample/truth). Prints relevance F1, services micro-F1, cause and sentiment accuracy
and macro-F1, the same axes as the corpus's test split but on text of another hand and shape
(feed titles, Google News " - 媒体名" suffixes, Mastodon posts, はてブ summaries).
Run: .venv/bin/python bench/classifier_sample.py
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifier.cache import load_or_train  # noqa: E402
from collector.dedup import canonical_url  # noqa: E402
from collector.kinds import KINDS, Stores  # noqa: E402
from collector.parse import parse_feed  # noqa: E402

SAMPLE = ROOT / "mynawatch" / "sample"


def sample_items() -> list[tuple[str, str, str]]:
    """(url, title, summary) of every item of the sample feeds but Google Trends."""
    sources = tomllib.loads((SAMPLE / "sources.toml").read_text(encoding="utf-8"))["sources"]
    now = datetime(2024, 10, 16, tzinfo=timezone.utc)
    items = []
    for source in sources:
        if KINDS[source["kind"]].stores is not Stores.ITEMS:
            continue
        body = (SAMPLE / "feeds" / source["file"]).read_bytes()
        entries = parse_feed(body, url=f"http://127.0.0.1/feeds/{source['file']}", rules=KINDS[source["kind"]].items,
                             now=now)
        items += [(e.url, e.title, e.summary) for e in entries]
    return items


def truth_rows() -> list[dict]:
    rows = []
    for path in sorted((SAMPLE / "truth").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    return [r for r in rows if r["feed"] != "google_trends"]


def match(truth: list[dict], items: list[tuple[str, str, str]]) -> list[tuple[dict, int]]:
    """Each truth row with the index of its item: by canonical URL, else by title (Google News titles
    carry " - 媒体名"; Mastodon truth titles are a post's first 40 characters)."""
    by_url = {canonical_url(url): i for i, (url, _t, _s) in enumerate(items)}
    by_title = {title: i for i, (_u, title, _s) in enumerate(items)}
    out = []
    for row in truth:
        i = by_url.get(canonical_url(row["key"]), by_title.get(row["title"]))
        if i is None:
            i = next((k for k, (_u, title, _s) in enumerate(items)
                      if title.startswith(row["title"]) or row["title"].startswith(title)), None)
        if i is not None:
            out.append((row, i))
    return out


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(gold: list[str], pred: list[str]) -> float:
    classes = sorted(set(gold) | set(pred))
    return sum(f1(sum(g == c == p for g, p in zip(gold, pred)), sum(p == c != g for g, p in zip(gold, pred)),
                  sum(g == c != p for g, p in zip(gold, pred))) for c in classes) / len(classes)


def main() -> None:
    items, truth = sample_items(), truth_rows()
    pairs = match(truth, items)
    labels = load_or_train().predict([(title, summary) for _u, title, summary in items])
    print(f"{len(items)} sample items, {len(truth)} truth rows, {len(pairs)} matched")
    rel = Counter()
    svc = Counter()
    cause_gold, cause_pred, sent_gold, sent_pred = [], [], [], []
    for row, i in pairs:
        lab = labels[i]
        rel[(row["relevant"], lab.relevant)] += 1
        if row["relevant"] and lab.relevant:
            gold, pred = set(row["services"]), {str(s) for s in lab.services}
            svc["tp"] += len(gold & pred)
            svc["fp"] += len(pred - gold)
            svc["fn"] += len(gold - pred)
            cause_gold.append(row["cause"])
            cause_pred.append(str(lab.cause))
        sent_gold.append(row["sentiment"])
        sent_pred.append(str(lab.sentiment))
    relevance = f1(rel[(True, True)], rel[(False, True)], rel[(True, False)])
    print(f"relevance F1        {relevance:.3f}   (missed {rel[(True, False)]}, wrongly kept {rel[(False, True)]})")
    print(f"services micro-F1   {f1(svc['tp'], svc['fp'], svc['fn']):.3f}   (on items both call relevant)")
    accuracy = sum(g == p for g, p in zip(cause_gold, cause_pred)) / max(len(cause_gold), 1)
    print(f"cause               accuracy {accuracy:.3f}, macro-F1 {macro_f1(cause_gold, cause_pred):.3f}")
    accuracy = sum(g == p for g, p in zip(sent_gold, sent_pred)) / max(len(sent_gold), 1)
    print(f"sentiment           accuracy {accuracy:.3f}, macro-F1 {macro_f1(sent_gold, sent_pred):.3f}")


if __name__ == "__main__":
    main()
