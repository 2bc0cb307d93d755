"""SIGKILL in the middle of a round, then run again: no duplicate and no half-written item."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Route

SOURCES, ITEMS = 12, 150
WIRE = ["マイナ保険証の資格確認でエラー相次ぐ", "マイナポータルにつながりにくい状態", "コンビニ交付サービスが一時停止",
        "電子証明書の更新手続きで障害", "公金受取口座の誤登録を公表"]


def _feed(n: int) -> bytes:
    """A feed of ITEMS entries; a share of them are wire stories every outlet carries (story clustering)."""
    items = []
    for i in range(ITEMS):
        day, hour = 1 + i // 24, i % 24
        wire = WIRE[i % len(WIRE)] if i % 3 == 0 else None
        title = f"{wire}　第{i}報" if wire else f"媒体{n}の独自記事 {i} 号：自治体窓口の様子"
        items.append(f"<item><title>{title}</title><link>https://outlet{n}.example.jp/news/{i}?utm_source=rss</link>"
                     f"<pubDate>{day:02d} Oct 2024 {hour:02d}:00:00 +0900</pubDate>"
                     f"<description>{title}。デジタル庁によると調査中。</description></item>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>outlet {n}</title>'
            + "".join(items) + "</channel></rss>").encode()


def _config(tmp_path: Path, server, db: Path) -> Path:
    lines = [f'[store]\nurl = "sqlite:///{db}"\n',
             "[fetch]\ntimeout_seconds = 10\nconnections = 2\nper_host_connections = 2\nhost_interval_seconds = 0\n",
             "[collect]\narticle_pages = false\n"]
    for n in range(SOURCES):
        server.routes[f"/f{n}"] = Route(_feed(n), delay=0.25)
        lines.append(f'[[sources]]\nname = "outlet{n}"\nurl = "{server.url(f"/f{n}")}"\npublisher = "媒体{n}"\n')
    path = tmp_path / f"{db.stem}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _collect(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "collect", "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def _stored_sources(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=0.2) as c:
            return c.execute("SELECT count(DISTINCT source_id) FROM items").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def _check_whole(db: Path) -> list[str]:
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    urls = [r[0] for r in c.execute("SELECT canonical_url FROM items")]
    assert len(urls) == len(set(urls)), "an item was stored twice"
    assert c.execute("SELECT count(*) FROM stories WHERE id NOT IN (SELECT story_id FROM items)").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM items WHERE title = '' OR story_id IS NULL OR publisher = ''").fetchone()[0] == 0
    # a source whose body is recorded as seen has all of its items: the two are written in one transaction
    for source_id, count in c.execute("""SELECT s.id, count(i.id) FROM sources s LEFT JOIN items i ON i.source_id = s.id
                                         WHERE s.body_hash IS NOT NULL GROUP BY s.id"""):
        assert count == ITEMS, (source_id, count)
    return sorted(urls)


def test_sigkill_mid_round_then_rerun_leaves_no_duplicate_and_no_half_item(tmp_path, server):
    killed_db, clean_db = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    killed_cfg, clean_cfg = _config(tmp_path, server, killed_db), _config(tmp_path, server, clean_db)
    proc = _collect(killed_cfg)
    deadline = time.monotonic() + 60
    while _stored_sources(killed_db) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the round ended before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    partial = _check_whole(killed_db)
    assert 0 < len(partial) < SOURCES * ITEMS
    rerun = _collect(killed_cfg)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    clean = _collect(clean_cfg)
    _, err = clean.communicate(timeout=120)
    assert clean.returncode == 0, err.decode()
    assert _check_whole(killed_db) == _check_whole(clean_db)
    assert len(_check_whole(clean_db)) == SOURCES * ITEMS
