"""`mynawatch run`: one APScheduler job per source with its own interval, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from apscheduler.triggers.interval import IntervalTrigger

from mynawatch.scheduler import build_daemon
from mynawatch.settings import load_settings
from tests.conftest import Route

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def _config(tmp_path: Path, sources: list[tuple[str, str, int]], extra: str = "") -> Path:
    path = tmp_path / "mynawatch.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n'
        "[fetch]\nhost_interval_seconds = 0\ntimeout_seconds = 10\n"
        "[schedule]\njitter_seconds = 0\nmisfire_grace_seconds = 120\n" + extra
        + "".join(f'[[sources]]\nname = "{n}"\nurl = "{u}"\npublisher = "NHK"\ninterval_minutes = {i}\n'
                  for n, u, i in sources), encoding="utf-8")
    return path


def test_one_job_per_source_with_its_own_interval_and_the_stage_jobs(tmp_path):
    config = _config(tmp_path, [("nhk", "https://example.jp/nhk.xml", 30), ("gn", "https://example.jp/gn.xml", 90)])
    daemon = build_daemon(load_settings(config))
    try:
        jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
        assert {"collect:nhk", "collect:gn", "classify", "alerts", "notify", "report", "articles"} <= set(jobs)
        for name, minutes in (("nhk", 30), ("gn", 90)):
            job = jobs[f"collect:{name}"]
            assert isinstance(job.trigger, IntervalTrigger)
            assert job.trigger.interval.total_seconds() == minutes * 60
            assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 120)
        assert all(j.max_instances == 1 and j.coalesce and j.misfire_grace_time == 120 for j in jobs.values())
    finally:
        daemon.close()


def test_sigterm_lets_the_collect_under_way_finish_its_write(tmp_path, server):
    server.routes["/fast"] = Route((FEEDS / "hatena_rdf.rdf").read_bytes())
    server.routes["/slow"] = Route((FEEDS / "nhk_rss2.xml").read_bytes(), delay=2.0)
    config = _config(tmp_path, [("fast", server.url("/fast"), 60), ("slow", server.url("/slow"), 60)],
                     "[collect]\narticle_pages = false\n")
    proc = subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while server.routes["/slow"].hits == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGTERM)  # the slow source's fetch is under way
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "stopped" in out.decode()
    db = sqlite3.connect(tmp_path / "store.sqlite")
    per_source = dict(db.execute("SELECT s.name, count(i.id) FROM sources s LEFT JOIN items i ON i.source_id = s.id "
                                 "GROUP BY s.name").fetchall())
    assert per_source == {"fast": 2, "slow": 2}
    assert db.execute("SELECT count(*) FROM stories WHERE id NOT IN (SELECT story_id FROM items)").fetchone()[0] == 0
