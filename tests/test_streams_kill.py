"""A stream reader killed outright (SIGKILL) at random points of a Jetstream replay: the restart resumes
from the cursor stored with the last committed batch, so no post is lost and none is stored twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from store.db import make_sessions
from store.tables import Item, StreamState

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "streams"))
from loopback import JetstreamServer, load  # noqa: E402

ROOT = Path(__file__).parent.parent


def _settings(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "mynawatch.toml"
    path.write_text(f"""
[store]
url = "sqlite:///store.sqlite"

[[streams]]
name = "bsky"
kind = "jetstream"
endpoint = "{url}"
stall_seconds = 2.0
backoff_seconds = 0.05
max_backoff_seconds = 0.2
batch_seconds = 0.1
batch_messages = 50
""", encoding="utf-8")
    return path


def _reader(settings: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "collector.streams", "--config", str(settings)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cursor(sessions) -> int:
    with sessions.begin() as s:
        value = s.scalar(select(StreamState.cursor))
    return int(value) if value else 0


def test_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice(tmp_path):
    frames, expect = load("jetstream")
    server = JetstreamServer(frames, pace=0.08, chunk=100)  # about 3 s for the whole replay
    settings = _settings(tmp_path, server.url)
    rng = random.Random(15)
    sessions = None
    try:
        for _ in range(3):  # killed three times at random points after its first commit
            reader = _reader(settings)
            deadline = time.monotonic() + 60
            while sessions is None and time.monotonic() < deadline:
                if (tmp_path / "store.sqlite").exists():
                    time.sleep(0.5)
                    sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
                time.sleep(0.05)
            before = _cursor(sessions)
            while _cursor(sessions) == before and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.6))
            reader.send_signal(signal.SIGKILL)
            reader.wait(10)
        assert _cursor(sessions) < expect["last_time_us"]  # killed before the end
        reader = _reader(settings)
        deadline = time.monotonic() + 60
        while _cursor(sessions) != expect["last_time_us"] and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.send_signal(signal.SIGTERM)
        _, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err.decode()[-2000:]
    finally:
        server.close()
    with sessions.begin() as s:
        posts = list(s.scalars(select(Item.guid)))
        state = s.scalar(select(StreamState))
    assert len(posts) == len(set(posts)) and set(posts) == set(expect["stored"])
    assert state.state == "stopped" and b"Traceback" not in err
    assert len(server.connections) >= 4 and all("cursor=" in p for p in server.connections[1:])
