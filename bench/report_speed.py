"""How long the daily report takes on a big store: builds a store of 1,000,000 items (a year of a busy
feed mix: about 2,700 items a day, 60% relevant, story clusters, はてブ and Mastodon sources, trend
points), then times ``write_daily_report`` (SQL aggregation, build, text + HTML, two charts, the digest
.eml, files written) and one alert evaluation. Target: the report in under 2 seconds.

    .venv/bin/python bench/report_speed.py [--items 1000000] [--db /tmp/mynawatch-bench.sqlite] [--rebuild]

The store is kept between runs (rebuilt when the item count differs or with --rebuild).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select  # noqa: E402

from reports.archive import write_daily_report  # noqa: E402
from reports.jobs import evaluate_alerts  # noqa: E402
from reports.mail import SmtpSettings  # noqa: E402
from store.db import make_sessions  # noqa: E402
from store.records import Cause, Sentiment, Service  # noqa: E402
from store.tables import Classification, ClassificationService, Item, Source, Story, TrendPoint  # noqa: E402

TOKYO = ZoneInfo("Asia/Tokyo")
MODEL = "bench-model"
LAST_DAY = date(2024, 10, 2)
DAYS = 365
CHUNK = 50_000
SOURCES = [("google-news", "google_news"), ("nhk", "feed"), ("yahoo", "yahoo"), ("itmedia", "feed"),
           ("impress", "feed"), ("hatena", "hatena"), ("mastodon", "mastodon"), ("trends", "google_trends")]
PUBLISHERS = ["共同通信", "時事通信", "NHK", "朝日新聞", "読売新聞", "毎日新聞", "日経", "東京新聞", "ITmedia", "Impress Watch",
              "Yahoo!ニュース", "はてな匿名ダイアリー", "mstdn.jp"] + [f"地方紙{i}" for i in range(40)]


def _rows(n_items: int, rng: random.Random):
    """Items, their classifications and services, in chunks (ids assigned here, contiguous)."""
    start = datetime.combine(LAST_DAY - timedelta(days=DAYS - 1), dtime(0), tzinfo=TOKYO)
    span = DAYS * 86400
    services, causes, sentiments = list(Service), list(Cause), list(Sentiment)
    story = 0
    for base in range(0, n_items, CHUNK):
        items, labels, links, stories = [], [], [], []
        for i in range(base + 1, min(base + CHUNK, n_items) + 1):
            when = start + timedelta(seconds=int(span * (i / n_items) + rng.random() * 600))
            if story == 0 or rng.random() < 0.62:  # about 1.6 items per story
                story += 1
                stories.append({"id": story, "title": f"記事群 {story}", "first_seen_at": when})
            src = rng.randrange(len(SOURCES) - 1) + 1
            items.append({"id": i, "source_id": src, "story_id": story, "canonical_url": f"https://example.jp/a/{i}",
                          "title": f"マイナ関連の記事 {i}", "summary": "", "publisher": rng.choice(PUBLISHERS),
                          "title_key": f"k{i}", "published_at": when, "fetched_at": when, "gate": "pass",
                          "social_count": rng.randrange(500) if SOURCES[src - 1][1] == "hatena" else None})
            relevant = rng.random() < 0.6
            labels.append({"id": i, "item_id": i, "model_version": MODEL, "relevant": relevant,
                           "cause": rng.choice(causes) if relevant else "none", "sentiment": rng.choice(sentiments),
                           "confidence": 0.9, "scores": "{}", "created_at": when})
            if relevant:
                for s in rng.sample(services, 1 + (rng.random() < 0.3)):
                    links.append({"classification_id": i, "service": str(s)})
        yield stories, items, labels, links


def build_store(url: str, n_items: int) -> None:
    sessions = make_sessions(url)
    rng = random.Random(7)
    with sessions.begin() as s:
        s.execute(insert(Source), [{"id": i, "name": n, "url": f"https://example.jp/{n}", "kind": k, "status": "ok",
                                    "last_success_at": datetime.combine(LAST_DAY, dtime(23), tzinfo=TOKYO)}
                                   for i, (n, k) in enumerate(SOURCES, 1)])
    done = 0
    for stories, items, labels, links in _rows(n_items, rng):
        with sessions.begin() as s:
            if stories:
                s.execute(insert(Story), stories)
            s.execute(insert(Item), items)
            s.execute(insert(Classification), labels)
            s.execute(insert(ClassificationService), links)
        done += len(items)
        print(f"\r  {done:,} items", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with sessions.begin() as s:
        s.execute(insert(TrendPoint), [{"source_id": len(SOURCES), "term": f"マイナ {d}", "traffic": 2000, "traffic_raw": "2000+",
                                        "published_at": datetime.combine(LAST_DAY - timedelta(days=d), dtime(12), tzinfo=TOKYO),
                                        "fetched_at": datetime.combine(LAST_DAY, dtime(12), tzinfo=TOKYO),
                                        "relevant": True, "services": "portal"} for d in range(DAYS)])


def count_items(url: str) -> int:
    with make_sessions(url).begin() as s:
        return s.scalar(select(func.count(Item.id)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "mynawatch-bench-report.sqlite"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    path = Path(args.db)
    url = f"sqlite:///{path}"
    if args.rebuild or not path.exists() or count_items(url) != args.items:
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
        started = time.monotonic()
        build_store(url, args.items)
        print(f"built a store of {args.items:,} items in {time.monotonic() - started:.0f} s: {path} "
              f"({path.stat().st_size / 1e6:.0f} MB)")
    sessions = make_sessions(url)
    now = datetime.combine(LAST_DAY + timedelta(days=1), dtime(7, 30), tzinfo=TOKYO)
    smtp = SmtpSettings(sender="bench@localhost", recipients=("analyst@example.jp",))
    with tempfile.TemporaryDirectory() as out:
        times = []
        for _ in range(args.runs):
            started = time.monotonic()
            files = write_daily_report(sessions, model_version=MODEL, day=LAST_DAY, out_dir=Path(out), smtp=smtp, now=now)
            times.append(time.monotonic() - started)
        text = files.paths["text"].read_text(encoding="utf-8")
    started = time.monotonic()
    evaluate_alerts(sessions, model_version=MODEL, now=now, deliver=False)
    alert_time = time.monotonic() - started
    print(f"store: {count_items(url):,} items; the report day holds {text.split('収集 ')[1].split(' 件')[0]} items")
    print(f"daily report (read + build + text + HTML + 2 charts + digest + files): median {statistics.median(times):.2f} s "
          f"over {args.runs} runs (min {min(times):.2f} s, max {max(times):.2f} s); target < 2 s")
    print(f"alert evaluation (every service, 30 days of hourly signals): {alert_time:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
