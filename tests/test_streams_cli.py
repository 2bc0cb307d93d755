"""`mynawatch sources` shows each stream: state, cursor age, messages and kept posts per minute, reconnects,
dropping behind; text and JSON."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from mynawatch.cli import main
from store import clock
from store import streams as store_streams
from store.db import make_sessions


def test_sources_lists_the_streams(tmp_path, capsys):
    settings = tmp_path / "mynawatch.toml"
    settings.write_text('[store]\nurl = "sqlite:///store.sqlite"\n\n[[streams]]\nname = "bluesky"\n'
                        'endpoint = "wss://jetstream.example/subscribe"\n', encoding="utf-8")
    sessions = make_sessions(f"sqlite:///{tmp_path / 'store.sqlite'}")
    now = clock.now()
    with sessions.begin() as s:
        sid = store_streams.register_stream(s, name="bluesky", url="wss://jetstream.example/subscribe",
                                            kind="jetstream", now=now)
        store_streams.set_state(s, sid, "connected", now=now)
        store_streams.save_progress(s, sid, store_streams.Progress(
            cursor="1", cursor_at=now - timedelta(seconds=12), messages=90_000, kept=40, errors=3,
            messages_per_min=18_000.0, kept_per_min=8.0), now=now)
        store_streams.set_state(s, sid, "reconnecting", now=now, error="stalled: no frame for 60 s", reconnected=True)
        store_streams.set_state(s, sid, "dropping behind", now=now, error="the store took no batch for 30 s")
    assert main(["--config", str(settings), "sources"]) == 0
    out = capsys.readouterr().out
    header, row = out.strip().splitlines()
    assert header.split()[:6] == ["stream", "kind", "state", "cursor", "age", "msgs/min"]
    assert row.startswith("bluesky") and "jetstream" in row and "dropping behind" in row
    assert 12 <= int(re.search(r"(\d+) s ", row).group(1)) <= 60  # the cursor's age
    assert "18,000" in row and "DROPPING BEHIND" in row
    assert main(["--config", str(settings), "sources", "--format", "json"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["name"] == "bluesky" and record["dropping_behind"] is True and record["reconnects"] == 1
    assert record["messages"] == 90_000 and record["kept_per_min"] == 8.0 and 11 <= record["cursor_age_seconds"] <= 60
