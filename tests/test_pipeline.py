"""The pipeline is wired once: `run`'s scheduled jobs, the CLI and the demo call the same steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from mynawatch import demo as demo_module
from mynawatch.pipeline import Pipeline
from mynawatch.scheduler import build_daemon
from mynawatch.settings import load_settings
from tests.conftest import Route

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
STEPS = ("collect", "fetch_articles", "classify", "retrain", "check_alerts", "deliver", "write_report")


@pytest.fixture
def calls(monkeypatch):
    """Every pipeline step called, by name; each step still runs (a spy, not a stand-in)."""
    seen: list[str] = []
    for name in STEPS:
        real = getattr(Pipeline, name)

        def spy(self, *args, __real=real, __name=name, **kwargs):
            seen.append(__name)
            return __real(self, *args, **kwargs)

        monkeypatch.setattr(Pipeline, name, spy)
    return seen


def test_run_and_the_demo_call_the_same_steps(tmp_path, server, model, calls):  # model: trained once, shared
    server.routes["/nhk"] = Route((FEEDS / "nhk_rss2.xml").read_bytes())
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n[reports]\ndir = "{tmp_path / "r"}"\n'
                      '[fetch]\nhost_interval_seconds = 0\n[schedule]\nretrain_time = "03:00"\n'
                      f'[[sources]]\nname = "nhk"\nurl = "{server.url("/nhk")}"\npublisher = "NHK"\n', encoding="utf-8")
    daemon = build_daemon(load_settings(config))
    try:
        for job in sorted(daemon.scheduler.get_jobs(), key=lambda j: j.id):
            job.func(*job.args)
    finally:
        daemon.close()
    run_steps = set(calls)
    assert {"collect", "fetch_articles", "classify", "retrain", "check_alerts", "deliver", "write_report"} == run_steps

    calls.clear()
    demo_module.run_demo(tmp_path / "demo", days=2, say=lambda *_: None)
    demo_steps = set(calls)
    # the demo replays collection, classification, alerts and reports on its simulated clock, and only
    # through the pipeline: nothing the demo does is a step `run` lacks
    assert {"collect", "classify", "check_alerts", "write_report"} <= demo_steps <= run_steps
    assert (tmp_path / "demo" / "reports" / "report-2024-09-17.html").exists()


def test_the_demo_runs_on_its_own_shipped_settings_file(tmp_path):
    settings = demo_module.demo_settings(tmp_path, "http://127.0.0.1:9/")
    assert demo_module.SETTINGS.name == "demo.toml" and demo_module.SETTINGS.exists()
    assert settings.database_url == f"sqlite:///{tmp_path / 'mynawatch.sqlite'}"
    assert settings.report_dir == tmp_path / "reports"
    assert not settings.collect.article_pages and not settings.alerting.send_email and not settings.send_digest
    assert {s.url for s in settings.sources} >= {"http://127.0.0.1:9/nhk.xml", "http://127.0.0.1:9/google_news.xml"}


def test_a_collect_round_and_search_indexing_report_progress(tmp_path, server):
    for name in ("a", "b", "c"):
        server.routes[f"/{name}"] = Route((FEEDS / "nhk_rss2.xml").read_bytes())
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n[fetch]\nhost_interval_seconds = 0\n'
                      + "".join(f'[[sources]]\nname = "{n}"\nurl = "{server.url("/" + n)}"\npublisher = "NHK"\n'
                                for n in ("a", "b", "c")), encoding="utf-8")
    from datetime import datetime, timezone

    from store.search import index_pending

    seen = []
    with Pipeline(load_settings(config)) as pipeline:
        pipeline.collect(now=datetime.now(timezone.utc), progress=lambda *a: seen.append(a))
        assert seen == [(1, 3, "collect"), (2, 3, "collect"), (3, 3, "collect")]
        seen.clear()
        assert index_pending(pipeline.sessions, batch=1, progress=lambda *a: seen.append(a)) == 2
    assert seen == [(1, 2, "search index"), (2, 2, "search index")]


def test_run_catches_up_the_hours_it_missed_while_down(tmp_path, server):
    """A store whose monitor last ran three days ago: `run` schedules one catch-up at start, which evaluates
    every missed hour silently; a store that was running an hour ago (or never) gets none."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    server.routes["/nhk"] = Route((FEEDS / "nhk_rss2.xml").read_bytes())
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n[fetch]\nhost_interval_seconds = 0\n'
                      f'[[sources]]\nname = "nhk"\nurl = "{server.url("/nhk")}"\npublisher = "NHK"\n', encoding="utf-8")
    settings = load_settings(config)
    daemon = build_daemon(settings)
    try:
        assert daemon.scheduler.get_job("catch-up") is None  # a new store: nothing was missed
        daemon.pipeline.collect(now=datetime.now(timezone.utc))
    finally:
        daemon.close()
    down = datetime.now(timezone.utc) - timedelta(days=3)
    with Pipeline(settings).sessions.begin() as session:
        session.execute(text("UPDATE sources SET last_attempt_at = :t"), {"t": down})
    daemon = build_daemon(settings)
    try:
        job = daemon.scheduler.get_job("catch-up")
        assert job is not None and job.args[0].replace(tzinfo=timezone.utc) == down  # the store's last attempt
        done = daemon.pipeline.catch_up(since=job.args[0], now=datetime.now(timezone.utc))
        assert done.hours >= 72 and done.events == []  # 72 hours evaluated; nothing fired in an NHK fixture
    finally:
        daemon.close()
