"""What an insert that may find its row already there reports, on SQLite and PostgreSQL alike (through SQLAlchemy
on psycopg an INSERT's rowcount is -1, so the store reads RETURNING instead); and labels saved by two processes
at once: a one-shot `mynawatch classify` beside `run --role classify` workers on one PostgreSQL store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from store import items as store_items
from store import labels as store_labels
from store import notifications as store_out
from store import sources as store_sources
from store.publishers import record_publisher
from store.records import Cause, Label, Sentiment, Service, TrendEntry
from store.tables import Classification, Item, PublisherHost, Source, Story

ROOT = Path(__file__).parent.parent
T = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)


def test_inserts_that_ignore_duplicates_say_whether_they_wrote(engine_sessions):
    sessions = engine_sessions
    first = store_labels.Serving("m-1", None, None, 0, T)
    with sessions.begin() as s:
        assert store_labels.serve(s, first, only_if_none=True)  # none served yet: written
        assert not store_labels.serve(s, store_labels.Serving("m-2", None, None, 0, T), only_if_none=True)
        assert store_labels.served_model(s).model_version == "m-1"
        assert store_labels.serve(s, store_labels.Serving("m-3", None, None, 0, T))  # switched
        assert store_labels.served_model(s).model_version == "m-3"
    message = store_out.Outgoing("k1", "webhook", "http://127.0.0.1:9/h", "firing", "s", b"{}")
    with sessions.begin() as s:
        assert store_out.enqueue(s, message, now=T)
        assert not store_out.enqueue(s, message, now=T)  # the same key again: not queued twice
    with sessions.begin() as s:
        assert record_publisher(s, "www.47news.jp", "47NEWS", learned_from="google_news", now=T)
        assert not record_publisher(s, "47news.jp", "よんななニュース", learned_from="source", now=T)
        assert s.scalar(select(func.count()).select_from(PublisherHost)) == 1
    trend = TrendEntry("マイナ保険証", 20000, "20000+", T)
    with sessions.begin() as s:
        source = store_sources.upsert_source(s, name="trends", url="http://127.0.0.1:9/t", kind="google_trends",
                                             publisher="Google", interval_minutes=60)
        assert store_items.save_trends(s, source.id, [trend, TrendEntry("電子証明書", None, "", T)], fetched_at=T) == 2
        assert store_items.save_trends(s, source.id, [trend], fetched_at=T) == 0


def _store(url: str, n: int) -> None:
    from store.db import make_sessions

    sessions = make_sessions(url)
    titles = ["マイナポータルで障害、ログインできず", "マイナ保険証の利用登録の説明会", "コンビニ交付サービスが停止",
              "マイナンバーカードの交付率が上昇", "電子証明書の更新手続きで窓口が混雑"]
    with sessions.begin() as s:
        s.add(Source(id=1, name="a", url="http://127.0.0.1:9/a", kind="feed"))
        s.add(Story(id=1, title="t", first_seen_at=T))
        s.flush()
        s.add_all(Item(id=i, source_id=1, story_id=1, canonical_url=f"https://example.jp/{i}",
                       title=f"{titles[i % len(titles)]}（{i}）", summary=titles[(i * 7) % len(titles)], publisher="p",
                       title_key=f"k{i}", published_at=T - timedelta(minutes=i), fetched_at=T, gate="pass")
                  for i in range(1, n + 1))
    sessions.kw["bind"].dispose()


def test_a_one_shot_classify_beside_classifier_workers(tmp_path, pg_url, model):
    """`mynawatch classify` while two `run --role classify` workers tag the same items: no unique violation, every
    process ends well, every item carries exactly one label of the served version."""
    n = 6000
    _store(pg_url, n)
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "{pg_url}"\n[reports]\ndir = "{tmp_path / "reports"}"\n'
                      "[schedule]\nlease_seconds = 6\nclaim_seconds = 30\nclassify_minutes = 30\n", encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def start(*args: str, name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w+", encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "-v", *args], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        proc.log = log
        return proc

    from store.db import make_sessions

    sessions = make_sessions(pg_url)

    def tagged() -> int:
        with sessions.begin() as s:
            return s.scalar(select(func.count(Classification.id)))

    workers = [start("run", "--role", "classify", name=f"worker{w}") for w in range(2)]
    try:
        deadline = time.monotonic() + 180
        while tagged() < 300:  # the workers are tagging: start the one-shot run in the middle of it
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "the workers did not tag"
            time.sleep(0.1)
        one_shot = start("classify", name="classify")
        assert one_shot.wait(timeout=300) == 0, Path(one_shot.log.name).read_text(encoding="utf-8")
        while tagged() < n:
            assert time.monotonic() < deadline + 120, "not every item was tagged"
            time.sleep(0.2)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    logs = "".join(Path(p.log.name).read_text(encoding="utf-8") for p in workers + [one_shot])
    assert all(w.returncode == 0 for w in workers), logs
    assert "Traceback" not in logs and "UniqueViolation" not in logs and "duplicate key" not in logs, logs
    with sessions.begin() as s:
        versions = s.execute(select(Classification.model_version, func.count(), func.count(func.distinct(
            Classification.item_id))).group_by(Classification.model_version)).all()
    assert versions == [(model.version, n, n)], versions
    sessions.kw["bind"].dispose()


def test_two_people_correcting_one_item_take_turns(pg_url):
    """Two sessions saving a person's label for the same item: the second waits for the first, then replaces it."""
    from store.db import make_sessions

    _store(pg_url, 3)
    sessions = make_sessions(pg_url)
    first, second = sessions(), sessions()
    label = Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE)
    try:
        store_labels.save_labels(first, store_labels.HUMAN, {2: label}, now=T)  # not committed yet
        import threading

        done = threading.Event()

        def later() -> None:
            store_labels.save_labels(second, store_labels.HUMAN, {2: label, 3: label}, now=T + timedelta(minutes=1))
            second.commit()
            done.set()

        thread = threading.Thread(target=later)
        thread.start()
        assert not done.wait(1.0)  # waiting for the first one's lock on item 2
        first.commit()
        thread.join(timeout=30)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    with sessions.begin() as s:
        rows = s.execute(select(Classification.item_id, Classification.created_at)
                         .where(Classification.model_version == store_labels.HUMAN).order_by(Classification.item_id)).all()
    assert rows == [(2, T + timedelta(minutes=1)), (3, T + timedelta(minutes=1))]
    sessions.kw["bind"].dispose()


def test_a_one_shot_save_waits_for_a_worker_saving_the_same_items_then_replaces_their_labels(pg_url):
    """A worker saved labels for its claimed batch and has not committed yet; a one-shot run (`mynawatch classify`,
    which does not claim) saves labels for some of the same items: it waits for the worker, then finds the
    worker's labels and replaces them (one label per item and version), instead of failing on the unique key."""
    import threading

    from store import work
    from store.db import make_sessions

    _store(pg_url, 10)
    sessions = make_sessions(pg_url)
    with sessions.begin() as s:
        claimed = [i.item_id for i in work.claim_items(s, "w", "m-1", now=T, lease=timedelta(minutes=5), limit=10)]
    label = Label(False, (), Cause.NONE, Sentiment.NEUTRAL)
    worker, one_shot = sessions(), sessions()
    done: list[str] = []
    try:
        keep = work.save_claimed(worker, "w", "m-1", {i: label for i in claimed}, now=T)  # not committed yet

        def save() -> None:
            try:
                store_labels.save_labels(one_shot, "m-1", {i: label for i in claimed[4:]}, now=T + timedelta(minutes=1))
                one_shot.commit()
                done.append("saved")
            except Exception as exc:  # noqa: BLE001 - what the test reports
                done.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

        thread = threading.Thread(target=save)
        thread.start()
        thread.join(timeout=1.0)
        assert not done  # waiting for the worker's row locks
        worker.commit()
        thread.join(timeout=30)
    finally:
        worker.close()
        one_shot.close()
    assert keep == set(claimed) and done == ["saved"], done
    with sessions.begin() as s:
        rows = s.execute(select(Classification.item_id, Classification.created_at).order_by(Classification.item_id)).all()
    assert rows == [(i, T if i in claimed[:4] else T + timedelta(minutes=1)) for i in claimed]
    sessions.kw["bind"].dispose()


def test_two_processes_registering_one_stream_at_once_share_its_rows(pg_url):
    """Two collectors (or stream readers) creating the same source at once: the second waits for the first's
    row instead of failing on the unique name, and both get the same source and stream state."""
    import threading

    from store import streams as store_streams
    from store.db import make_sessions
    from store.tables import StreamState

    sessions = make_sessions(pg_url)
    with sessions.begin() as s:
        s.execute(select(func.count(Source.id)))  # the schema is there
    first, second = sessions(), sessions()
    ids: list[int] = []
    try:
        ids.append(store_streams.register_stream(first, name="bsky", url="ws://a/subscribe", kind="jetstream", now=T))

        def later() -> None:
            ids.append(store_streams.register_stream(second, name="bsky", url="ws://a/subscribe", kind="jetstream",
                                                     now=T))
            second.commit()

        thread = threading.Thread(target=later)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive()  # waiting on the first one's uncommitted row
        first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    assert len(ids) == 2 and ids[0] == ids[1]
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Source.id)).where(Source.name == "bsky")) == 1
        assert s.scalar(select(func.count(StreamState.source_id))) == 1
    sessions.kw["bind"].dispose()
