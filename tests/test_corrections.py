"""Corrections win at once and never break anything; retraining is its own step that switches the served
model version in the transaction that re-tags the store. Real SQLite files, real models, real processes."""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from classifier.cache import KEPT, model_path, prune
from classifier.corpus import CORPUS_DIR, corpus_files
from classifier.jobs import human_label, tag_items
from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from mynawatch.serving import ServedVersion, classify_model, retrain, served, served_model, served_version
from reports.archive import read_day
from reports.daily import build_daily_report
from store import items as store_items
from store import labels as store_labels
from store.db import make_sessions
from store.records import Cause, Entry, Sentiment, Service

ROOT = Path(__file__).parent.parent
DAY = date(2024, 10, 2)  # Tokyo
NOW = datetime(2024, 10, 3, 0, 0, tzinfo=timezone.utc)
# Headlines and leads written for these tests.
TEXTS = [
    ("マイナポータルにつながりにくい状態　アクセス集中で", "確定申告の期限を前にマイナポータルへのアクセスが集中し、ログインできない状態が続いた。"),
    ("マイナ保険証で資格確認できず　病院の窓口で混乱", "オンライン資格確認のシステムに不具合があり、患者が10割負担を求められた。"),
    ("コンビニ交付で別人の住民票　システムの不具合", "証明書コンビニ交付サービスで、別の人の住民票が発行された。"),
    ("公金受取口座、家族名義で誤登録", "公金受取口座に本人以外の家族名義の口座が登録されていた例が見つかった。"),
    ("マイナンバーカードの交付窓口が混雑　更新が集中", "電子証明書の更新時期が重なり、市役所の窓口に長い列ができた。"),
    ("マイナポイントの申込受付を再開", "一時停止していたマイナポイントの申込受付が再開された。"),
    ("マイナポータル、週末に計画停止", "デジタル庁は土曜夜から日曜朝までマイナポータルを停止すると発表した。"),
    ("スマホ用電子証明書、iPhoneで利用開始", "iPhoneにマイナンバーカードの機能を搭載できるようになった。"),
    ("マイナ免許証の運用が始まる", "マイナンバーカードと運転免許証の一体化が始まった。"),
    ("マイナンバーカードの暗証番号ロック、解除に長い列", "暗証番号を3回間違えてロックがかかった人が窓口に相次いだ。"),
    ("電子証明書の発行が停止　J-LISのシステム障害", "地方公共団体情報システム機構のシステムで障害が起き、原因を調査中。"),
    ("マイナ保険証の利用率が上昇", "厚生労働省によると、マイナ保険証の利用率は前の月より上がった。"),
]


def fill(sessions, texts=TEXTS, *, copies: int = 1) -> list[int]:
    """Store the texts as items of one source, published over ``DAY`` (Tokyo); their ids."""
    source = SourceConfig("t", "http://127.0.0.1/t", publisher="テスト新聞")
    entries = []
    start = datetime(2024, 10, 2, 0, 30, tzinfo=timezone.utc)  # 09:30 Tokyo
    for n in range(copies):
        for i, (title, summary) in enumerate(texts):
            suffix = f"（{n}）" if copies > 1 else ""
            entries.append(Entry(url=f"https://example.jp/{n}/{i}", title=title + suffix, summary=summary,
                                 published=start + timedelta(minutes=(n * len(texts) + i) % 600)))
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name="t", url=source.url, kind="feed", publisher="テスト新聞",
                                          interval_minutes=60)
        save_entries(s, state.id, source, entries, now=NOW)
    with sessions.begin() as s:
        return [i.item_id for i in store_items.items_to_classify(s, "none", everything=True)]


def report(sessions, version: str | None = None):
    with sessions.begin() as s:
        return build_daily_report(read_day(s, model_version=version or served_version(sessions), day=DAY, now=NOW))


def sql(store: Path, query: str) -> list[tuple]:
    c = sqlite3.connect(store)
    try:
        return c.execute(query).fetchall()
    finally:
        c.close()


@pytest.fixture
def own_cache(tmp_path, model, monkeypatch):
    """A model cache of the test's own, holding the corpus model: other test runs prune the shared one."""
    cache = tmp_path / "cache"
    cache.mkdir()
    source, target = model_path(model.info["key"]), cache / model_path(model.info["key"]).name
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(pickle.dumps(model))
    monkeypatch.setenv("MYNAWATCH_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    """Every 25th corpus line, plus enough lines that every code of every axis is learned: a retrain on
    it takes seconds, not minutes, and goes through the same code."""
    seen: Counter = Counter()
    kept = []
    for path in corpus_files(CORPUS_DIR):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            obj = json.loads(line)
            codes = [f"rel:{obj['relevant']}", f"cause:{obj.get('cause', 'none')}", f"sent:{obj['sentiment']}",
                     *(f"svc:{s}" for s in obj.get("services", []))]
            if n % 25 == 0 or any(seen[c] < 6 for c in codes):
                kept.append(line)
                seen.update(codes)
    folder = tmp_path_factory.mktemp("small-corpus")
    (folder / "small.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return folder


def config(tmp_path: Path) -> Path:
    path = tmp_path / "mynawatch.toml"
    path.write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    return path


def test_relabeling_the_same_item_many_times_keeps_the_latest_and_the_store_sound(sessions, model, tmp_path):
    ids = fill(sessions)
    tag_items(sessions, model, now=NOW)
    before = served(sessions)
    target = ids[0]
    for n, cause in enumerate(["network", "defect", "attack", "defect", "load", "external"]):
        label = human_label(sessions, ServedVersion(sessions), target, relevant=None,
                            services=["portal", "card"] if n % 2 else None, cause=cause,
                            sentiment="negative", now=NOW + timedelta(minutes=n))
        assert label.cause == Cause(cause)
    human_label(sessions, ServedVersion(sessions), ids[1], relevant=False, services=None, cause=None, sentiment=None,
                now=NOW)
    human_label(sessions, ServedVersion(sessions), ids[1], relevant=True, services=["health_insurance"], cause=None,
                sentiment=None, now=NOW)
    with pytest.raises(ValueError, match="'flood': not a cause code"):
        human_label(sessions, ServedVersion(sessions), target, relevant=None, services=None, cause="flood",
                    sentiment=None, now=NOW)
    with pytest.raises(ValueError, match="add --relevant"):
        human_label(sessions, ServedVersion(sessions), target, relevant=False, services=None, cause="attack",
                    sentiment=None, now=NOW)
    store = tmp_path / "store.sqlite"
    assert sql(store, f"SELECT count(*) FROM classifications WHERE item_id = {target} AND model_version = 'human'") == [(1,)]
    assert sql(store, f"SELECT cause, labeled_by FROM items_labeled WHERE item_id = {target}") == [("external", "human")]
    assert set(sql(store, f"SELECT services FROM items_labeled WHERE item_id = {target}")[0][0].split(",")) == \
        {"portal", "card"}
    assert sql(store, f"SELECT relevant, services, cause FROM items_labeled WHERE item_id = {ids[1]}") == \
        [(1, "health_insurance", "none")]
    assert sql(store, "PRAGMA foreign_key_check") == []
    assert sql(store, "SELECT count(*) FROM classification_services WHERE classification_id NOT IN "
                      "(SELECT id FROM classifications)") == [(0,)]
    with sessions.begin() as s:
        (item,) = [i for i in store_labels.labeled_items(s, model.version, NOW - timedelta(days=2), NOW)
                   if i.item_id == target]
    assert item.label.cause == Cause.EXTERNAL and set(item.label.services) == {Service.PORTAL, Service.CARD}
    assert served(sessions) == before  # no correction changes the served model


def test_classify_all_twice_on_a_tagged_store(tmp_path, own_cache, capsys):
    cfg = config(tmp_path)
    sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
    ids = fill(sessions)
    assert main(["--config", str(cfg), "classify"]) == 0
    version = served_version(sessions)
    human_label(sessions, ServedVersion(sessions), ids[2], relevant=None, services=None, cause="attack",
                sentiment=None, now=NOW)
    for _ in range(2):
        assert main(["--config", str(cfg), "classify", "--all"]) == 0
    assert f"with model {version}" in capsys.readouterr().out
    store = tmp_path / "store.sqlite"
    passed = sql(store, "SELECT count(*) FROM items WHERE gate = 'pass'")[0][0]
    assert sql(store, "SELECT model_version, count(*) FROM classifications GROUP BY 1 ORDER BY 1") == \
        [("human", 1), (version, passed)]
    assert sql(store, f"SELECT cause FROM items_labeled WHERE item_id = {ids[2]}") == [("attack",)]
    assert sql(store, "PRAGMA foreign_key_check") == []
    assert served_version(sessions) == version


def test_a_correction_wins_at_once_and_a_retrain_learns_it_keeping_two_model_files(sessions, model, own_cache,
                                                                                   small_corpus):
    fill(sessions)
    tag_items(sessions, model, now=NOW)
    first = report(sessions)
    assert first.relevant > 0
    story = first.top_stories[0]
    with sessions.begin() as s:
        (item,) = [i for i in store_labels.labeled_items(s, model.version, NOW - timedelta(days=2), NOW)
                   if i.title == story.title]
    files = sorted(own_cache.iterdir())
    new_cause = Cause.ATTACK if story.cause != Cause.ATTACK else Cause.NETWORK
    assert main_label(sessions, item.item_id, cause=str(new_cause)) == new_cause

    between = report(sessions)  # before any retrain: the same relevant count, the correction in it
    assert between.relevant == first.relevant
    assert [s.cause for s in between.top_stories if s.title == story.title] == [new_cause]
    assert dict(between.causes)[new_cause] >= 1
    assert served_version(sessions) == model.version
    assert sorted(own_cache.iterdir()) == files  # no model trained, no file written

    done = retrain(sessions, now=NOW, corpus_dir=small_corpus)
    assert done.changed and done.corrections == 1 and done.previous == model.version
    assert served_version(sessions) == done.model.version != model.version
    after = report(sessions)
    assert after.relevant > 0
    assert [s.cause for s in after.top_stories if s.title == story.title] == [new_cause]  # still the person's
    assert len(list(own_cache.glob("model-*.pickle"))) <= KEPT
    again = retrain(sessions, now=NOW, corpus_dir=small_corpus)
    assert not again.changed and again.model.version == done.model.version  # nothing new learned: nothing done
    served_now, retrained = classify_model(sessions, now=NOW, corpus_dir=small_corpus)
    assert retrained is None and served_now.version == done.model.version  # loaded from the cache
    assert served_model(sessions) is None  # trained on another corpus than today's: classify would retrain

    main_label(sessions, item.item_id, cause="defect")
    second = retrain(sessions, now=NOW, corpus_dir=small_corpus)
    assert second.changed and second.previous == done.model.version
    assert len(list(own_cache.glob("model-*.pickle"))) <= KEPT
    assert not model_path(model.info["key"]).exists()  # the corpus model is neither served nor the newest
    assert [s.cause for s in report(sessions).top_stories if s.title == story.title] == [Cause.DEFECT]


def main_label(sessions, item_id: int, **axes) -> Cause:
    label = human_label(sessions, ServedVersion(sessions), item_id, relevant=None, services=None,
                        cause=axes.get("cause"), sentiment=axes.get("sentiment"), now=NOW)
    return label.cause


KILLED = """
import sys, time
from datetime import datetime, timezone
import store.labels
store.labels.CHUNK = 3  # several INSERT steps inside the one transaction
from classifier.cache import load_cached
from classifier.jobs import retag_all
from store.db import make_sessions

model = load_cached(sys.argv[2])
model.version = "m-next"  # the same model under a new version: what a retrain switches to
def progress(done, total, step):
    if step.startswith("writing") and done >= 6:
        print("writing", done, total, flush=True)
        time.sleep(600)
retag_all(make_sessions(sys.argv[1]), model, now=datetime.now(timezone.utc), progress=progress)
print("committed", flush=True)
"""


def test_a_kill_during_the_retag_leaves_the_previous_version_served_and_every_item_labeled(tmp_path, model,
                                                                                          own_cache):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    sessions = make_sessions(url)
    ids = fill(sessions)
    tag_items(sessions, model, now=NOW)
    human_label(sessions, ServedVersion(sessions), ids[0], relevant=None, services=None, cause="attack",
                sentiment=None, now=NOW)
    before = report(sessions)
    labeled = sql(tmp_path / "store.sqlite", "SELECT item_id, relevant, cause, sentiment, services FROM items_labeled")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, url, model.info["key"]], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("writing"), (line, proc.stderr.read() if proc.poll() is not None else "")
        # the re-tag's transaction is open and half written: a report (here through the store opened
        # before it began, as the scheduler's is) still sees the old labels
        assert report(sessions) == before
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    again = make_sessions(url)
    assert served_version(again) == model.version
    assert report(again) == before
    store = tmp_path / "store.sqlite"
    assert sql(store, "SELECT item_id, relevant, cause, sentiment, services FROM items_labeled") == labeled
    assert sql(store, "SELECT count(*) FROM classifications WHERE model_version = 'm-next'") == [(0,)]
    assert sql(store, "SELECT count(*) FROM items i WHERE gate = 'pass' AND NOT EXISTS "
                      "(SELECT 1 FROM item_labels_current l WHERE l.item_id = i.id)") == [(0,)]
    assert sql(store, "PRAGMA integrity_check") == [("ok",)] and sql(store, "PRAGMA foreign_key_check") == []


def test_two_processes_classifying_the_same_store_at_once_both_succeed(tmp_path, model, own_cache):
    cfg = config(tmp_path)
    sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
    fill(sessions, copies=120)  # about 1,400 items: three batches each
    env = dict(os.environ, MYNAWATCH_CACHE=str(own_cache))
    store = tmp_path / "store.sqlite"
    for args in (["classify"], ["classify", "--all"]):
        procs = [subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(cfg), *args], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0 and "Traceback" not in err and "IntegrityError" not in err, (out, err)
        passed = sql(store, "SELECT count(*) FROM items WHERE gate = 'pass'")[0][0]
        assert sql(store, "SELECT model_version, count(*), count(DISTINCT item_id) FROM classifications GROUP BY 1") \
            == [(model.version, passed, passed)]
        assert sql(store, "PRAGMA foreign_key_check") == []


def test_pruning_keeps_the_named_file_and_the_most_recently_used(tmp_path, monkeypatch):
    monkeypatch.setenv("MYNAWATCH_CACHE", str(tmp_path))
    for n, key in enumerate("abcde"):
        path = model_path(key * 64)
        path.write_bytes(b"x")
        os.utime(path, (1000 + n, 1000 + n))
    stale = tmp_path / "model-f.pickle.123.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (1000, 1000))
    prune(["a" * 64])
    assert sorted(p.name for p in tmp_path.iterdir()) == [model_path("a" * 64).name, model_path("e" * 64).name]


def test_an_upgraded_store_serves_the_labels_it_has(tmp_path):
    """A store tagged before served_model existed keeps serving its newest model version's labels."""
    from sqlalchemy import create_engine, event

    from store.dialect import SQLite
    from store.migrations import migrate

    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda conn, _r: SQLite().on_connect(conn))
    migrate(engine, to="0003")
    engine.dispose()
    c = sqlite3.connect(path)
    t = "2024-10-02 03:00:00.000000"
    c.executescript(f"""
        INSERT INTO sources (id, name, url, kind, interval_minutes, failure_score, status) VALUES (1, 's', 'u', 'feed', 60, 0, 'ok');
        INSERT INTO stories (id, title, first_seen_at) VALUES (1, 'x', '{t}');
        INSERT INTO items (id, source_id, story_id, canonical_url, title, summary, publisher, title_key, published_at,
                           fetched_at, gate) VALUES (1, 1, 1, 'https://example.jp/1', 'マイナポータル障害', '', 'NHK', 'k', '{t}', '{t}', 'pass');
        INSERT INTO classifications (id, item_id, model_version, relevant, cause, sentiment, confidence, scores, created_at)
            VALUES (1, 1, 'm-old', 0, 'none', 'neutral', 0.9, '{{}}', '2024-10-01 00:00:00.000000'),
                   (2, 1, 'm-new', 1, 'defect', 'negative', 0.9, '{{}}', '{t}');
        INSERT INTO classification_services (classification_id, service) VALUES (2, 'portal');
    """)
    c.commit()
    c.close()
    sessions = make_sessions(f"sqlite:///{path}")
    serving = served(sessions)
    assert serving.model_version == "m-new" and serving.model_key is None
    assert served_model(sessions) is None  # its file is unknown: the next classify retrains
    assert sql(path, "SELECT relevant, services, cause FROM items_labeled") == [(1, "portal", "defect")]
    assert served_version(sessions) == "m-new"
    with sessions.begin() as s:
        (item,) = store_labels.labeled_items(s, "m-new", datetime(2024, 10, 1, tzinfo=timezone.utc), NOW)
    assert item.label.sentiment == Sentiment.NEGATIVE


def test_the_scheduler_retrains_daily_when_told_and_its_jobs_use_the_served_model(tmp_path, model, own_cache):
    from apscheduler.triggers.cron import CronTrigger

    from mynawatch.scheduler import build_daemon
    from mynawatch.settings import load_settings

    cfg = config(tmp_path)
    daemon = build_daemon(load_settings(cfg))
    try:
        assert "retrain" not in {job.id for job in daemon.scheduler.get_jobs()}
    finally:
        daemon.close()
    cfg.write_text(cfg.read_text(encoding="utf-8") + '[schedule]\nretrain_time = "03:15"\n', encoding="utf-8")
    daemon = build_daemon(load_settings(cfg))
    try:
        jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
        assert isinstance(jobs["retrain"].trigger, CronTrigger) and "hour='3', minute='15'" in str(jobs["retrain"].trigger)
        sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
        fill(sessions)
        jobs["classify"].func()  # the store serves nothing yet: the corpus model tags it and is served
        assert served_version(sessions) == model.version
        files = sorted(own_cache.iterdir())
        jobs["retrain"].func()  # no correction the served model has not learned: nothing to do
        assert served_version(sessions) == model.version and sorted(own_cache.iterdir()) == files
        store = tmp_path / "store.sqlite"
        assert sql(store, "SELECT count(*) FROM items i WHERE gate = 'pass' AND NOT EXISTS "
                          "(SELECT 1 FROM item_labels_current l WHERE l.item_id = i.id)") == [(0,)]
    finally:
        daemon.close()
