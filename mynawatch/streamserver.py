"""A loopback Jetstream that replays a recorded stream on a simulated clock (for the demo).

``/subscribe?cursor=...`` sends every frame from the cursor on whose ``time_us`` is at or before the
simulated ``now``, then waits for the clock to move; frames are sent in order, once per connection. Only
frames the reader asked for (``wantedCollections``) are sent, as Jetstream does.
"""

from __future__ import annotations

import bisect
import gzip
import json
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve


class StreamServer:
    def __init__(self, path: Path, *, now: datetime):
        lines = [x for x in gzip.decompress(path.read_bytes()).decode("utf-8").split("\n") if x]
        decoded = [json.loads(x) for x in lines]
        self.frames = lines
        self.times = [d["time_us"] for d in decoded]
        self.collections = [d.get("commit", {}).get("collection") for d in decoded]
        self._now = now
        self._moved = threading.Condition()
        self._closing = False
        self.server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StreamServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._moved:
            self._closing = True
            self._moved.notify_all()
        self.server.shutdown()
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/subscribe"

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        with self._moved:
            self._now = value
            self._moved.notify_all()

    def last_cursor(self, now: datetime) -> str | None:
        """The cursor of the last frame at or before ``now`` (what a caught-up reader has stored)."""
        i = bisect.bisect_right(self.times, int(now.timestamp() * 1_000_000))
        return str(self.times[i - 1]) if i else None

    def _handle(self, ws) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        wanted = set(query.get("wantedCollections", []))
        i = bisect.bisect_left(self.times, int(query["cursor"][0])) if "cursor" in query else 0
        try:
            while True:
                with self._moved:
                    limit = int(self._now.timestamp() * 1_000_000)
                    while not self._closing and (i >= len(self.times) or self.times[i] > limit):
                        self._moved.wait(1.0)
                        limit = int(self._now.timestamp() * 1_000_000)
                    if self._closing:
                        return
                end = bisect.bisect_right(self.times, limit)
                for j in range(i, end):
                    if not wanted or self.collections[j] in wanted or self.collections[j] is None:
                        ws.send(self.frames[j])
                i = end
        except ConnectionClosed:
            return
