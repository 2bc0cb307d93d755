"""Search speed on a large store: builds (or reuses) a store of N items and times `search_items`.

Run: .venv/bin/python bench/search_speed.py [--items 1000000] [--db /tmp/mynawatch-search-bench.sqlite]
Building a million items takes a few minutes (every title and text is tokenized into the index by
the store's own trigger); the store is kept for later runs.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from classifier.corpus import load_corpus  # noqa: E402
from store.db import make_sessions  # noqa: E402
from store.search import search_items  # noqa: E402

QUERIES = [("障害", None), ("停止", None), ("マイナ保険証", None), ("アクセス集中", "portal"),
           ("資格確認 エラー", "health_insurance"), ("コンビニ交付", None), ("紐付け誤り", None),
           ("障害", "drivers_license"), ("マイナ免許証 停止", "drivers_license")]


def build(path: Path, n: int) -> None:
    sessions = make_sessions(f"sqlite:///{path}")  # schema, index triggers and views
    del sessions
    corpus = load_corpus()
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    db = sqlite3.connect(path)
    from store.dialect import SQLite

    SQLite().on_connect(db)
    db.execute("INSERT INTO sources (id, name, url, kind, publisher, interval_minutes, failure_score, status) "
               "VALUES (1, 'bench', 'http://127.0.0.1/', 'feed', 'bench', 60, 0, 'ok')")
    batch = 20000
    for first in range(0, n, batch):
        rows, stories, labels, services = [], [], [], []
        for i in range(first, min(n, first + batch)):
            e = corpus[rng.randrange(len(corpus))]
            when = (start + timedelta(seconds=i * 30)).strftime("%Y-%m-%d %H:%M:%S.%f")
            stories.append((i + 1, e.title, when))
            rows.append((i + 1, 1, i + 1, f"https://example.jp/{i}", e.title, e.text, "bench", f"k{i}", when, when, "pass"))
            labels.append((i + 1, i + 1, "m-bench", int(e.label.relevant), str(e.label.cause), str(e.label.sentiment),
                           0.9, "{}", when))
            services += [(i + 1, str(s)) for s in e.label.services]
        with db:
            db.executemany("INSERT INTO stories (id, title, first_seen_at) VALUES (?, ?, ?)", stories)
            db.executemany("INSERT INTO items (id, source_id, story_id, canonical_url, title, summary, publisher, "
                           "title_key, published_at, fetched_at, gate) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany("INSERT INTO classifications (id, item_id, model_version, relevant, cause, sentiment, "
                           "confidence, scores, created_at) VALUES (?,?,?,?,?,?,?,?,?)", labels)
            db.executemany("INSERT INTO classification_services (classification_id, service) VALUES (?, ?)", services)
        print(f"\r{min(n, first + batch)} items", end="", flush=True)
    print()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/mynawatch-search-bench.sqlite")
    args = parser.parse_args()
    path = Path(args.db)
    have = 0
    if path.exists():
        have = sqlite3.connect(path).execute("SELECT count(*) FROM items").fetchone()[0]
    if have != args.items:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        started = time.perf_counter()
        build(path, args.items)
        print(f"built a store of {args.items} items in {time.perf_counter() - started:.0f} s")
    sessions = make_sessions(f"sqlite:///{path}")
    since = datetime(2024, 6, 1, tzinfo=timezone.utc)
    print(f"{'query':24} {'service':18} {'hits':>5} {'median ms':>10} {'max ms':>8}")
    for query, service in QUERIES:
        times = []
        for run in range(7):
            with sessions.begin() as s:
                t = time.perf_counter()
                hits = search_items(s, query, service=service, since=since if run % 2 else None, limit=20)
                times.append((time.perf_counter() - t) * 1000)
        print(f"{query:24} {service or '-':18} {len(hits):5d} {statistics.median(times):10.1f} {max(times):8.1f}")


if __name__ == "__main__":
    main()
