"""Classifier throughput on the same texts, in one run: the whole `tag` path vs raw SudachiPy vs spaCy.

Prints items per second for headline-sized (~80 characters) and article-sized (~2,000 characters)
inputs, peak memory, and (with --retag N) the time to re-tag N stored items in a SQLite store.
Run: .venv/bin/python bench/classifier_speed.py [--items 2000] [--retag 100000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from classifier.corpus import load_corpus  # noqa: E402
from classifier.cache import load_or_train  # noqa: E402
from classifier.text import nlp  # noqa: E402


def texts(n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    corpus = load_corpus()
    heads = []
    for e in corpus:
        t = (e.title + "。" + e.text)[:80]
        heads.append((t[:40], t[40:]))
    articles, buf = [], []
    for e in corpus:
        buf.append(e.title + "。" + e.text)
        if sum(map(len, buf)) >= 2000:
            body = "".join(buf)[:2000]
            articles.append((body[:40], body[40:]))
            buf = []
    cycle = lambda xs: [xs[i % len(xs)] for i in range(n)]  # noqa: E731
    return cycle(heads), cycle(articles)


def rate(fn, items) -> float:
    started = time.perf_counter()
    fn(items)
    return len(items) / (time.perf_counter() - started)


def rates(runs: dict, rounds: int) -> dict[str, float]:
    """Median items/s of each (function, inputs), measured in interleaved rounds so that load on a
    shared machine hits them alike (single runs differ by a third from one minute to the next); every
    other round runs them in reverse order, so that none always runs right after the same other."""
    seen = {name: [] for name in runs}
    for round_ in range(rounds):
        for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
            fn, items = runs[name]
            seen[name].append(rate(fn, items))
    return {name: statistics.median(values) for name, values in seen.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is printed")
    parser.add_argument("--retag", type=int, default=0, help="also re-tag this many items in a real SQLite store")
    args = parser.parse_args()
    model = load_or_train()
    sudachi = nlp().tokenizer.tokenizer
    heads, articles = texts(max(args.items, args.articles))
    heads, articles = heads[:args.items], articles[:args.articles]
    model.predict(heads[:50])  # warm up
    print(f"model {model.version}; one process, one core")
    for name, items in (("headline (~80 chars)", heads), ("article (~2000 chars)", articles)):
        joined = [t + "\n" + x for t, x in items]
        got = rates({"raw": (lambda xs: [sudachi.tokenize(x) for x in xs], joined),
                     "tag": (model.predict, items)}, args.rounds)
        # spaCy's pass in rounds of its own: it grows the shared vocabulary and churns the heap, and
        # whichever of the two compared paths ran right after it was slowed by a tenth or more
        got |= rates({"spacy": (lambda xs: list(nlp().pipe(xs, batch_size=64)), joined)}, args.rounds)
        raw, whole = got["raw"], got["tag"]
        print(f"{name:22}  tag path {whole:8.0f}/s   raw SudachiPy {raw:8.0f}/s   spaCy blank('ja') pipe "
              f"{got['spacy']:8.0f}/s   tag/raw {whole / raw:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this benchmark process (max RSS, spaCy's pass included): {peak:.0f} MiB")
    print(f"peak memory of `mynawatch tag` on the same {len(heads)} headlines and {len(articles)} articles "
          f"(max RSS of its process): {tag_peak(heads + articles):.0f} MiB")
    if args.retag:
        retag(model, heads, args.retag)


def tag_peak(items: list[tuple[str, str]]) -> float:
    """Peak RSS in MiB of a `mynawatch tag` process over ``items`` (the command users run, on its own):
    its VmHWM, read by the process itself as it ends (getrusage's figure for a child is no use: the
    high-water mark of the process it was forked from survives exec)."""
    import json
    import subprocess

    report = ("import sys; from mynawatch.cli import main; code = main(sys.argv[1:]); "
              "sys.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(code)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            for i, (title, text) in enumerate(items):
                fh.write(json.dumps({"id": i, "title": title, "text": text}, ensure_ascii=False) + "\n")
        done = subprocess.run([sys.executable, "-c", report, "tag", path], cwd=tmp, check=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(done.stderr.strip().splitlines()[-1].split()[1]) / 1024


def retag(model, heads, n: int) -> None:
    from classifier.jobs import tag_items
    from collector.jobs import save_entries
    from collector.sources import SourceConfig
    from store import items as store_items
    from store.db import make_sessions
    from store.records import Entry

    with tempfile.TemporaryDirectory() as tmp:
        sessions = make_sessions(f"sqlite:///{os.path.join(tmp, 'bench.sqlite')}")
        now = datetime(2024, 10, 1, tzinfo=timezone.utc)
        source = SourceConfig("bench", "http://127.0.0.1/bench", publisher="bench")
        with sessions.begin() as s:
            state = store_items.upsert_source(s, name="bench", url=source.url, kind="feed", publisher="bench",
                                              interval_minutes=60)
        from store.tables import Item, Story

        with sessions.begin() as s:  # bulk rows: the benchmark is about tagging, not about collecting
            story = Story(title="bench", first_seen_at=now)
            s.add(story)
            s.flush()
            s.bulk_insert_mappings(Item, [
                {"source_id": state.id, "story_id": story.id, "canonical_url": f"https://example.jp/{i}",
                 "title": heads[i % len(heads)][0] + f" {i}", "summary": heads[i % len(heads)][1],
                 "publisher": "bench", "title_key": f"k{i}", "published_at": now, "fetched_at": now, "gate": "pass"}
                for i in range(n)])
        started = time.perf_counter()
        done = tag_items(sessions, model, now=now, everything=True)
        elapsed = time.perf_counter() - started
        print(f"re-tagged {done} stored items in {elapsed:.1f} s ({done / elapsed:.0f}/s)")


if __name__ == "__main__":
    main()
