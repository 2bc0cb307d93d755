"""Scale-out figures (issue 14), in one run on the same data, PostgreSQL beside SQLite:

- items/s tagged by 1 and by 2 classifier worker processes (``tag_claimed``, the `run --role classify` path)
  on PostgreSQL, and by the single classify process on SQLite (`tag_items`; a SQLite store has one `run`): one
  and two workers measured back to back ``--rounds`` times (the median ratio of each pair is the figure), the
  load average beside each (the machine may be shared);
- Japanese search on the whole store: median and max over a set of queries (`search_items`, 20 hits);
- the daily report of the last day (`write_daily_report`: read, build, text, HTML, charts, digest, files).

Targets: 2 workers >= 1.7x one; search median < 100 ms and the report < 2 s on 1,000,000 items.

    .venv/bin/python bench/scale.py [--items 1000000] [--tag 20000] [--pg postgresql+psycopg://postgres@127.0.0.1/postgres]

The store is synthetic and fast to build: every item is a corpus example (title, text and its label) under
its own URL and title key, spread over a year, bulk-loaded (COPY on PostgreSQL, one executemany transaction
on SQLite) with its search document, which is computed once per corpus example. The newest ``--tag`` items
are left untagged for the tagging runs; the rest carry their corpus labels under the served model's version.
A database ``mynawatch_scale_<pid>`` is created on the server and dropped at the end (unless ``--keep``).
Worker processes run with one BLAS/OpenMP thread each (scale by processes, not threads), each in a session of
its own, as separately started `run --role classify` processes are: Linux's autogroup scheduler shares the CPU
per session, so workers forked into the bench's one session would share one process's CPU time between them.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import date, datetime, time as dtime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKYO = ZoneInfo("Asia/Tokyo")
LAST_DAY = date(2026, 11, 30)
DAYS = 365
CHUNK = 50_000
SOURCES = ["nhk", "kyodo", "jiji", "google-news", "yahoo", "itmedia", "hatena", "mastodon"]
QUERIES = ["障害", "停止", "マイナ保険証", "マイナポータル 障害", "システム障害", "コンビニ交付 停止", "電子証明書 更新",
           "誤登録", "つながらない", "エラー", "公金受取口座", "資格確認 エラー", "個人情報", "返納", "マイナポイント",
           "窓口 混雑", "デジタル庁", "暗証番号", "誤交付", "メンテナンス"]


def corpus() -> list[dict]:
    rows = []
    for path in sorted(Path(__file__).resolve().parent.parent.joinpath("classifier/data/corpus").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [dict(r, text=r.get("text") or "") for r in rows if r.get("title")]


def search_columns(examples: list[dict]) -> list[tuple[str, str, str, str, str]]:
    """Per corpus example: the PostgreSQL tsvector text and SQLite's four FTS5 columns (computed once each)."""
    from store.dialect import search_tokens, tsvector_text, variant_tokens

    return [(tsvector_text(e["title"], e["text"]), search_tokens(e["title"]), search_tokens(e["text"]),
             variant_tokens(e["title"]), variant_tokens(e["text"])) for e in examples]


def rows(n: int, tag: int, examples: list[dict], version: str, rng: random.Random):
    """Chunks of (stories, items, labels, services, search): plain tuples, ids from 1, times naive UTC."""
    start = datetime.combine(LAST_DAY - timedelta(days=DAYS - 1), dtime(0), tzinfo=TOKYO).astimezone(timezone.utc)
    start, span, story = start.replace(tzinfo=None), DAYS * 86400, 0
    for base in range(0, n, CHUNK):
        stories, items, labels, services, search = [], [], [], [], []
        for i in range(base + 1, min(base + CHUNK, n) + 1):
            when = start + timedelta(seconds=int(span * (i - 1) / n + rng.random() * 300))
            k = rng.randrange(len(examples))
            e = examples[k]
            if story == 0 or rng.random() < 0.62:
                story += 1
                stories.append((story, e["title"], when))
            src = 1 + i % len(SOURCES)
            items.append((i, src, story, f"https://example.jp/{SOURCES[src - 1]}/{i}", e["title"], e["text"],
                          SOURCES[src - 1], f"k{i:x}", when, when, "pass"))
            search.append((i, k))
            if i <= n - tag:
                labels.append((i, i, version, bool(e["relevant"]), e["cause"], e["sentiment"], 0.9, "{}", when))
                services += [(i, s) for s in dict.fromkeys(e.get("services") or ())] if e["relevant"] else []
        yield stories, items, labels, services, search


ITEM_COLUMNS = ("id, source_id, story_id, canonical_url, title, summary, publisher, title_key, published_at, "
                "fetched_at, gate")
LABEL_COLUMNS = "id, item_id, model_version, relevant, cause, sentiment, confidence, scores, created_at"


def load_postgresql(url: str, n: int, tag: int, examples, columns, version: str) -> None:
    import psycopg

    from store.dialect import libpq_url

    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("DROP INDEX IF EXISTS ix_items_fts_doc")
        conn.execute("INSERT INTO sources (id, name, url, kind, interval_minutes, failure_score, status) "
                     "SELECT g, 'src' || g, 'https://example.jp/' || g, 'feed', 60, 0, 'ok' FROM generate_series(1, %s) g",
                     (len(SOURCES),))
        for stories, items, labels, services, search in rows(n, tag, examples, version, random.Random(7)):
            with conn.cursor() as cur:
                for table, cols, values in (("stories", "id, title, first_seen_at", stories), ("items", ITEM_COLUMNS, items),
                                            ("classifications", LABEL_COLUMNS, labels),
                                            ("classification_services", "classification_id, service", services),
                                            ("items_fts", "item_id, doc", [(i, columns[k][0]) for i, k in search])):
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
            conn.commit()
            print(f"\r  PostgreSQL: {items[-1][0]:,} items", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        for table in ("items", "stories", "classifications", "sources"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("CREATE INDEX ix_items_fts_doc ON items_fts USING gin (doc)")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def load_sqlite(url: str, n: int, tag: int, examples, columns, version: str) -> None:
    from sqlalchemy.engine import make_url

    fmt = "%Y-%m-%d %H:%M:%S.%f"
    conn = sqlite3.connect(make_url(url).database)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany("INSERT INTO sources (id, name, url, kind, interval_minutes, failure_score, status) "
                         "VALUES (?, ?, ?, 'feed', 60, 0, 'ok')",
                         [(i, f"src{i}", f"https://example.jp/{i}") for i in range(1, len(SOURCES) + 1)])
        for stories, items, labels, services, search in rows(n, tag, examples, version, random.Random(7)):
            conn.executemany("INSERT INTO stories (id, title, first_seen_at) VALUES (?, ?, ?)",
                             [(i, t, w.strftime(fmt)) for i, t, w in stories])
            conn.executemany(f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                             [r[:8] + (r[8].strftime(fmt), r[9].strftime(fmt), r[10]) for r in items])
            conn.executemany(f"INSERT INTO classifications ({LABEL_COLUMNS}) VALUES ({', '.join('?' * 9)})",
                             [r[:8] + (r[8].strftime(fmt),) for r in labels])
            conn.executemany("INSERT INTO classification_services (classification_id, service) VALUES (?, ?)", services)
            conn.executemany("INSERT INTO items_fts (rowid, title, body, title_norm, body_norm) VALUES (?, ?, ?, ?, ?)",
                             [(i, *columns[k][1:]) for i, k in search])
            print(f"\r  SQLite: {items[-1][0]:,} items", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    conn.execute("ANALYZE")
    conn.close()


def _worker(url: str, name: str, key: str | None, ready, go, out) -> None:
    """One classifier worker process: load the bench's model (by its cache key: the corpus may have changed
    since the bench started), wait for the start, drain the claims."""
    from sqlalchemy import select

    from classifier.cache import load_cached, load_or_train
    from classifier.jobs import tag_claimed
    from store.db import make_sessions

    os.setsid()  # a session (so an autogroup) of its own, like a worker started by a service manager or a shell
    model, sessions = (key and load_cached(key)) or load_or_train(), make_sessions(url)
    model.predict([("マイナポータルに障害", "ログインできない")])  # the tokenizer and vectors loaded before the start
    with sessions.begin() as s:  # the connection made before the start
        s.execute(select(1))
    ready.put(name)
    go.wait()
    started, cpu = time.monotonic(), time.process_time()
    n = tag_claimed(sessions, model, worker=name, now=datetime.now(timezone.utc), lease=timedelta(minutes=5))
    out.put((n, started, time.monotonic(), time.process_time() - cpu))


def tag_with_workers(url: str, workers: int, key: str | None = None) -> tuple[int, float]:
    """Items tagged and the seconds from the start to the last worker's end, ``workers`` processes at once."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, f"bench:{os.getpid()}:{w}", key, ready, go, out)) for w in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:  # every worker imported and loaded the model
        ready.get(timeout=600)
    start = time.monotonic()
    go.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results), max(r[2] for r in results) - start


def load_average() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def compare_workers(url: str, n: int, tag: int, rounds: int, key: str | None) -> tuple[str, str]:
    """One worker, then two, on the same ``tag`` untagged items, ``rounds`` times back to back: the figures of
    the round with the median ratio, the ratio of every round and the load average at each measurement."""
    runs = []
    for r in range(rounds):
        pair = []
        for workers in (1, 2):
            untag(url, n, tag)
            before = load_average()
            done, seconds = tag_with_workers(url, workers, key)
            pair.append((done / seconds, f"{before}-{os.getloadavg()[0]:.1f}"))
            print(f"  round {r + 1}, {workers} worker(s): {done / seconds:,.0f} items/s ({pair[-1][1]})", flush=True)
        runs.append((pair[1][0] / pair[0][0], pair))
    ratio, ((one, load1), (two, load2)) = sorted(runs)[len(runs) // 2]
    ratios = ", ".join(f"{r:.2f}" for r, _ in runs)
    return (f"{one:,.0f} items/s ({load1})", f"{two:,.0f} items/s, {ratio:.2f}x ({load2}; rounds {ratios})")


def untag(url: str, n: int, tag: int) -> None:
    from sqlalchemy import delete, select

    from store.db import make_sessions
    from store.tables import Classification, ClassificationService

    sessions = make_sessions(url)
    with sessions.begin() as s:
        ids = select(Classification.id).where(Classification.item_id > n - tag)
        s.execute(delete(ClassificationService).where(ClassificationService.classification_id.in_(ids)))
        s.execute(delete(Classification).where(Classification.item_id > n - tag))
    engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":  # every run starts on tables without the last one's dead rows
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE classifications, classification_services, work_claims")
    engine.dispose()


def time_search(url: str, runs: int = 3) -> list[float]:
    from store.db import make_sessions
    from store.search import search_items

    sessions = make_sessions(url)
    times = []
    for _ in range(runs):
        for q in QUERIES:
            with sessions.begin() as s:
                started = time.monotonic()
                search_items(s, q, limit=20)
                times.append(time.monotonic() - started)
    sessions.kw["bind"].dispose()
    return times


def time_report(url: str, version: str, runs: int = 3) -> list[float]:
    from reports.archive import write_daily_report
    from reports.mail import SmtpSettings
    from store.db import make_sessions

    sessions = make_sessions(url)
    now = datetime.combine(LAST_DAY + timedelta(days=1), dtime(7, 30), tzinfo=TOKYO)
    smtp = SmtpSettings(sender="bench@localhost", recipients=("analyst@example.jp",))
    times = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(runs):
            started = time.monotonic()
            write_daily_report(sessions, model_version=version, day=LAST_DAY, out_dir=Path(out), smtp=smtp, now=now)
            times.append(time.monotonic() - started)
    sessions.kw["bind"].dispose()
    return times


def serve(url: str, model) -> None:
    from classifier.jobs import serving_of
    from store.db import make_sessions
    from store.labels import serve as serve_model

    sessions = make_sessions(url)
    with sessions.begin() as s:
        serve_model(s, serving_of(model, datetime.now(timezone.utc)))
    sessions.kw["bind"].dispose()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--tag", type=int, default=20_000, help="items left untagged for the tagging runs")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="the server (admin URL)")
    ap.add_argument("--sqlite", default=str(Path(tempfile.gettempdir()) / "mynawatch-scale.sqlite"))
    ap.add_argument("--keep", action="store_true", help="keep both stores")
    ap.add_argument("--rounds", type=int, default=3, help="1-worker and 2-worker runs back to back, this many times")
    args = ap.parse_args(argv)
    if not 0 < args.tag < args.items:
        ap.error("--tag: between 1 and --items")

    import psycopg
    from sqlalchemy.engine import make_url

    from classifier.cache import load_or_train
    from store.db import make_sessions
    from store.dialect import libpq_url

    model = load_or_train()
    examples = corpus()
    started = time.monotonic()
    columns = search_columns(examples)
    print(f"{len(examples):,} corpus examples tokenized in {time.monotonic() - started:.0f} s")
    name = f"mynawatch_scale_{os.getpid()}"
    with psycopg.connect(libpq_url(args.pg), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    pg_url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    sqlite_path = Path(args.sqlite)
    for p in (sqlite_path, Path(f"{sqlite_path}-wal"), Path(f"{sqlite_path}-shm")):
        p.unlink(missing_ok=True)
    sqlite_url = f"sqlite:///{sqlite_path}"
    figures: dict[str, dict[str, str]] = {"PostgreSQL": {}, "SQLite": {}}
    try:
        for url, load, engine in ((pg_url, load_postgresql, "PostgreSQL"), (sqlite_url, load_sqlite, "SQLite")):
            make_sessions(url).kw["bind"].dispose()  # the schema, search index and views
            started = time.monotonic()
            load(url, args.items, args.tag, examples, columns, model.version)
            serve(url, model)
            figures[engine]["load"] = f"{time.monotonic() - started:.0f} s"
            print(f"{engine}: {args.items:,} items loaded in {figures[engine]['load']}")

        figures["PostgreSQL"]["tag 1"], figures["PostgreSQL"]["tag 2"] = compare_workers(
            pg_url, args.items, args.tag, args.rounds, (model.info or {}).get("key"))
        from classifier.jobs import tag_items

        sessions = make_sessions(sqlite_url)
        model.predict([("マイナポータルに障害", "ログインできない")])
        started, before = time.monotonic(), load_average()
        n = tag_items(sessions, model, now=datetime.now(timezone.utc))
        figures["SQLite"]["tag 1"] = f"{n / (time.monotonic() - started):,.0f} items/s ({before})"
        figures["SQLite"]["tag 2"] = "- (one process per store)"
        sessions.kw["bind"].dispose()

        for url, engine in ((pg_url, "PostgreSQL"), (sqlite_url, "SQLite")):
            before = load_average()
            times = [t * 1000 for t in time_search(url)]
            figures[engine]["search"] = f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms ({before})"
            before = load_average()
            times = time_report(url, model.version)
            figures[engine]["report"] = f"median {statistics.median(times):.2f} s, max {max(times):.2f} s ({before})"
    finally:
        if not args.keep:
            with psycopg.connect(libpq_url(args.pg), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for p in (sqlite_path, Path(f"{sqlite_path}-wal"), Path(f"{sqlite_path}-shm")):
                p.unlink(missing_ok=True)
        else:
            print(f"kept: {pg_url} and {sqlite_url}")

    rows_ = [("load (bulk, with search documents)", "load"), (f"tagging, 1 worker ({args.tag:,} items)", "tag 1"),
             ("tagging, 2 worker processes", "tag 2"), (f"search, {len(QUERIES)} queries x 3 (20 hits)", "search"),
             ("daily report of the last day (3 runs)", "report")]
    print(f"\n{args.items:,} items, {os.cpu_count()} CPUs")
    print(f"| {'':40} | {'PostgreSQL':60} | {'SQLite':44} |\n|{'-' * 42}|{'-' * 62}|{'-' * 46}|")
    for label, key in rows_:
        print(f"| {label:40} | {figures['PostgreSQL'].get(key, '-'):60} | {figures['SQLite'].get(key, '-'):44} |")
    print("targets: 2 workers >= 1.7x one; search median < 100 ms; report < 2 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
