"""The store on PostgreSQL answers as on SQLite: the analysts' views, the signals reports and alerts read,
source health, the batch search index; `db check`, `db backup` (pg_dump) and `db upgrade` on a server."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.cli import main
from store import items as store_items
from store import labels as store_labels
from store import signals
from store import sources as store_sources
from store.db import make_sessions
from store.records import Cause, Entry, Label, Sentiment, Service, TrendEntry
from store.search import index_pending, pending_count, search_items

T0 = datetime(2024, 10, 1, 0, 0, tzinfo=timezone.utc)
CORPUS = Path(__file__).parent.parent / "classifier" / "data" / "corpus"
VIEW_COLUMNS = {
    "item_labels_current": ["item_id", "relevant", "cause", "sentiment", "confidence", "model_version",
                            "labeled_by", "classification_id"],
    "items_labeled": ["item_id", "published_at", "day", "publisher", "title", "url", "story_id", "source", "gate",
                      "relevant", "services", "cause", "sentiment", "labeled_by", "confidence"],
    "daily_service_counts": ["day", "service", "items", "stories", "publishers"],
    "stories_with_publishers": ["story_id", "title", "first_seen_at", "items", "publishers", "first_published_at",
                                "last_published_at"],
}


def _fill(sessions, every: int = 40) -> None:
    """Corpus items over three days from three kinds of source, labeled as the corpus says (a person's label
    on a few), with bookmarks and trend points: what the signals read."""
    rows = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[::every] if line.strip()]
    codes = {str(s) for s in Service}
    with sessions.begin() as s:
        for kind in ("feed", "hatena", "mastodon"):
            source = SourceConfig(f"src-{kind}", f"http://127.0.0.1/{kind}", publisher=f"pub-{kind}")
            state = store_sources.upsert_source(s, name=source.name, url=source.url, kind=kind,
                                                publisher=source.publisher, interval_minutes=60)
            mine = rows[("feed", "hatena", "mastodon").index(kind)::3]
            save_entries(s, state.id, source, [
                Entry(url=f"https://c.example/{r['id']}", title=r["title"], summary=r.get("text", ""),
                      published=T0 + timedelta(minutes=97 * n), social_count=n % 7 if kind == "hatena" else None)
                for n, r in enumerate(mine)], now=T0 + timedelta(days=3))
        store_items.save_trends(s, state.id, [TrendEntry("マイナ保険証", 20000, "20000+", T0 + timedelta(hours=5),
                                                         [("t", "u", "s")])], fetched_at=T0)
        s.execute(text("UPDATE trend_points SET relevant = :t, services = 'health_insurance'"), {"t": True})
        ids = dict(s.connection().exec_driver_sql("SELECT canonical_url, id FROM items").all())
        labels, human = {}, {}
        for n, r in enumerate(rows):
            item = ids.get(f"https://c.example/{r['id']}")
            services = tuple(Service(x) for x in r.get("services", []) if x in codes)
            if item is None:
                continue
            label = Label(bool(r.get("relevant")) and bool(services), services if r.get("relevant") else (),
                          Cause(r.get("cause", "none")), Sentiment(r.get("sentiment", "neutral")))
            (human if n % 9 == 0 else labels)[item] = label
        store_labels.save_labels(s, "m-test", labels, now=T0)
        store_labels.save_labels(s, store_labels.HUMAN, human, now=T0)
    index_pending(sessions)


def _signals(sessions) -> dict:
    since, until = T0, T0 + timedelta(days=4)
    out = {}
    with sessions.begin() as s:
        for signal in signals.SIGNALS:
            out[signal] = signals.hourly_signal(s, "m-test", since, until, signal)
        for keys in (("service",), ("cause",), ("sentiment",), ("service", "cause")):
            out[f"day{keys}"] = sorted(signals.count_relevant(s, "m-test", since, until, by="day", keys=keys),
                                       key=repr)
        out["social"] = sorted(signals.count_social(s, "m-test", since, until), key=repr)
        out["trends"] = signals.count_trends(s, since, until)
        out["collected"] = signals.count_collected(s, "m-test", since, until)
        out["relevant"] = signals.relevant_items(s, "m-test", since, until)
        out["labeled"] = store_labels.labeled_items(s, "m-test", since, until)
        out["first"] = signals.first_item_at(s)
        out["sources"] = [(r.name, r.items) for r in store_sources.source_rows(s)]
        out["views"] = {v: [tuple(map(_normal, r)) for r in s.execute(text(f"SELECT * FROM {v} ORDER BY 1, 2"))]
                        for v in ("daily_service_counts", "daily_cause_counts", "daily_sentiment_counts",
                                  "story_publishers", "items_labeled")}
    return out


def _normal(value):
    """A view's value as SQLite gives it: times as stored text, booleans as 0 and 1."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


def test_signals_and_views_are_the_same_on_both_engines(tmp_path, pg_store_url):
    lite = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
    postgres = make_sessions(pg_store_url)
    _fill(lite)
    _fill(postgres)
    a, b = _signals(lite), _signals(postgres)
    assert a["collected"][1] > 5 and a["trouble"] and a["relevant"] and a["views"]["daily_service_counts"]
    assert a["bookmarks"] and a["posts"] and a["trends"]
    for key in a:
        assert b[key] == a[key], key
    postgres.kw["bind"].dispose()


NEWS_KEYS = ("trouble", "stories", "items", "publishers", "bookmarks", "posts", "trends", "day('service',)",
             "day('cause',)", "day('sentiment',)", "day('service', 'cause')", "social", "collected", "relevant", "first")


def test_stream_posts_count_in_no_news_signal(engine_sessions):
    """Trouble posts pushed by a stream (Bluesky, Misskey) in the same hours leave every news signal as it was:
    the alert's trouble signal, the report's stories, items, collected and relevant counts, its top stories,
    the detector's warm-up start; the stream signals count them."""
    from collector.streams.config import StreamConfig
    from collector.streams.events import Post
    from collector.streams.intake import Batch
    from collector.streams.save import save_batch
    from store import streams as store_streams
    from store.stream_signals import stream_series

    sessions = engine_sessions
    _fill(sessions)
    before = _signals(sessions)
    assert before["trouble"] and before["collected"][1] > 5
    config = StreamConfig(name="bsky", endpoint="wss://jetstream.example/subscribe")
    start = T0 - timedelta(hours=3)  # earlier than any news item: not where the news history begins
    posts = [Post(key=f"at://did:plc:{n:024x}/app.bsky.feed.post/{n}", url=f"https://bsky.app/p/{n}",
                  author=f"did:plc:{n % 40:024x}", text=f"マイナポータルにつながらない {n}",
                  created=start + timedelta(minutes=13 * n), langs=("ja",)) for n in range(300)]
    trouble = Label(True, (Service.PORTAL, Service.HEALTH_INSURANCE), Cause.LOAD, Sentiment.NEGATIVE)
    with sessions.begin() as s:
        source_id = store_streams.register_stream(s, name="bsky", url=config.endpoint, kind="jetstream", now=T0)
        batch = Batch(posts=posts, reposts=[], cursor="1", cursor_at=T0, frames=300, messages=300, kept=300)
        assert save_batch(s, source_id, config, batch, now=T0) == 300
        ids = list(store_streams.item_ids(s, source_id, [p.key for p in posts]).values())
        store_labels.save_labels(s, "m-test", {i: trouble for i in ids}, now=T0)
        store_labels.save_labels(s, store_labels.HUMAN, {i: trouble for i in ids[::10]}, now=T0)
    after = _signals(sessions)
    for key in NEWS_KEYS:
        assert after[key] == before[key], key
    with sessions.begin() as s:  # the stream's own signal has them
        posts_per_hour = stream_series(s, "m-test", T0, T0 + timedelta(days=4), signal="posts", minutes=60)
        assert sum(posts_per_hour["portal"].values()) == sum(1 for p in posts if p.created >= T0)


def test_the_current_label_is_a_persons_over_the_models_on_both_engines(engine_sessions):
    """Each item counts once, under a person's label where there is one, else the served model's; an item with
    neither (or only another version's) does not count."""
    sessions = engine_sessions
    source = SourceConfig("f", "http://127.0.0.1/f", publisher="紙")
    yes = Label(True, (Service.PORTAL,), Cause.LOAD, Sentiment.NEGATIVE)
    no = Label(False, (), Cause.NONE, Sentiment.NEUTRAL)
    with sessions.begin() as s:
        state = store_sources.upsert_source(s, name="f", url=source.url, kind="feed", publisher="紙", interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url=f"https://f.example/{n}", title=f"マイナポータル記事{n}",
                                                 published=T0 + timedelta(minutes=n)) for n in range(6)], now=T0)
        ids = [i for (i,) in s.execute(text("SELECT id FROM items ORDER BY published_at"))]
        store_labels.save_labels(s, "m-test", {ids[0]: yes, ids[1]: yes, ids[2]: no}, now=T0)
        store_labels.save_labels(s, "m-old", {ids[4]: yes}, now=T0)
        store_labels.save_labels(s, store_labels.HUMAN, {ids[1]: no, ids[2]: yes, ids[3]: yes}, now=T0)
    with sessions.begin() as s:
        items = signals.relevant_items(s, "m-test", T0, T0 + timedelta(hours=1))
        counts = signals.count_relevant(s, "m-test", T0, T0 + timedelta(hours=1), by="hour")
        assert [i.item_id for i in items] == [ids[0], ids[2], ids[3]]
        assert signals.count_collected(s, "m-test", T0, T0 + timedelta(hours=1)) == (6, 3)
        assert [(c.service, c.items) for c in counts] == [("portal", 3)]
        if s.get_bind().dialect.name == "postgresql":  # mynawatch's own queries are never JIT-compiled
            assert s.execute(text("SHOW jit")).scalar() == "off"


def test_views_keep_their_columns_on_postgresql(pg_store_url):
    sessions = make_sessions(pg_store_url)
    _fill(sessions, every=200)
    with sessions.begin() as s:
        for view, columns in VIEW_COLUMNS.items():
            assert list(s.execute(text(f"SELECT * FROM {view} LIMIT 0")).keys()) == columns, view
        day = s.execute(text("SELECT day FROM items_labeled ORDER BY published_at LIMIT 1")).scalar()
        assert day == "2024-10-01"  # 00:00 UTC is 09:00 in Tokyo: the same day
    sessions.kw["bind"].dispose()


def test_the_batch_index_follows_edits_and_deletes_on_postgresql(pg_store_url):
    sessions = make_sessions(pg_store_url)
    with sessions.begin() as s:
        source = SourceConfig("b", "http://127.0.0.1/b", publisher="紙")
        state = store_sources.upsert_source(s, name="b", url=source.url, kind="feed", publisher="紙", interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url="https://b.example/1", title="マイナポータルで障害", summary="",
                                                 published=T0)], now=T0)

    def found(query: str) -> list[int]:
        with sessions.begin() as s:
            return [h.item_id for h in search_items(s, query)]

    assert found("障害") == []
    with sessions.begin() as s:
        assert pending_count(s) == 1
    assert index_pending(sessions) == 1
    (item,) = found("障害")
    with sessions.begin() as s:
        s.execute(text("UPDATE items SET title = 'マイナポータルが復旧' WHERE id = :i"), {"i": item})
        s.execute(text("UPDATE items SET social_count = 3 WHERE id = :i"), {"i": item})  # not the text: stays indexed
        assert pending_count(s) == 1  # an edited text waits for the next batch, as a new item does
    assert index_pending(sessions) == 1
    assert found("障害") == [] and found("復旧") == [item]
    with sessions.begin() as s:
        s.execute(text("DELETE FROM items WHERE id = :i"), {"i": item})
        assert s.execute(text("SELECT count(*) FROM items_fts")).scalar() == 0
    sessions.kw["bind"].dispose()


@pytest.fixture
def pg_cli(pg_store_url, tmp_path, monkeypatch):
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{pg_store_url}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    sessions = make_sessions(pg_store_url)
    _fill(sessions, every=200)
    sessions.kw["bind"].dispose()
    return pg_store_url


def test_db_check_finds_what_sqlite_check_finds(pg_cli, capsys):
    assert main(["db", "check"]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    sessions = make_sessions(pg_cli)
    with sessions.begin() as s:  # rows whose reference leads nowhere (as a restore without constraints leaves)
        s.execute(text("SET LOCAL session_replication_role = replica"))
        s.execute(text("UPDATE items SET story_id = 999999 WHERE id = (SELECT min(id) FROM items)"))
        s.execute(text("DROP INDEX ix_items_fts_doc"))
    sessions.kw["bind"].dispose()
    assert main(["db", "check"]) == 1
    out = capsys.readouterr().out
    assert "foreign key: items row" in out and "-> stories" in out and "problem(s)" in out


def test_db_backup_through_pg_dump_restores(pg_cli, tmp_path, capsys, monkeypatch):
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump and pg_restore are not on the PATH")
    target = tmp_path / "store.dump"
    assert main(["db", "backup", str(target)]) == 0
    assert target.stat().st_size > 0 and not list(tmp_path.glob("*.tmp"))
    listing = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public items" in listing and "items_fts" in listing
    assert main(["db", "backup", str(target)]) == 2
    assert "exists" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert main(["db", "backup", str(tmp_path / "other.dump"), "--force"]) == 2
    err = capsys.readouterr().err
    assert "pg_dump is not on the PATH" in err and len(err.strip().splitlines()) == 1


def test_db_upgrade_and_search_and_sources_commands_on_postgresql(pg_cli, capsys):
    assert main(["db", "upgrade"]) == 0
    assert "->" in capsys.readouterr().out
    assert main(["search", "障害", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert main(["sources"]) == 0
    assert "src-feed" in capsys.readouterr().out
    assert main(["sql", "SELECT day, service, items FROM daily_service_counts ORDER BY 1, 2", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("day,service,items\n2024-10-0")


def test_a_store_that_cannot_be_reached_is_one_line(tmp_path, monkeypatch, capsys):
    import pg

    pg.require_server()
    for url in ("postgresql+psycopg://postgres@127.0.0.1:1/mynawatch", pg.ADMIN_URL.rsplit("/", 1)[0] + "/no_such_db_mw"):
        (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        for command in (["sources"], ["collect"], ["search", "障害"], ["db", "check"]):
            assert main(command) == 1, command
            err = capsys.readouterr().err
            assert err.startswith("mynawatch: cannot reach the PostgreSQL store") and len(err.splitlines()) == 1, err
            assert "Traceback" not in err


def test_sessions_reconnect_after_the_server_drops_them(pg_store_url):
    import pg

    sessions = make_sessions(pg_store_url)
    with sessions.begin() as s:
        assert s.execute(text("SELECT count(*) FROM items")).scalar() == 0
    pg._admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_store_url.rsplit('/', 1)[1]}' "
              "AND pid <> pg_backend_pid()")  # a restart, a failover, an idle timeout
    with sessions.begin() as s:  # the pool checks its connection before use and opens a new one
        assert s.execute(text("SELECT count(*) FROM items")).scalar() == 0
    sessions.kw["bind"].dispose()
