"""Stream benchmark: messages per second through the stream path (decode, prefilter, store) on a
Jetstream-shaped replay, and the reader's memory (RSS) sampled over the run.

    .venv/bin/python bench/stream.py [--seconds 30] [--mode both|direct|websocket]

The replay is synthetic but shaped like Jetstream with wantedCollections = post + repost: 55% new posts
(80% of them not Japanese, 19.9% Japanese chatter naming no My Number system, look-alikes マイナス /
マイナビ among it, 0.1% about the systems), 30% reposts, 10% deletes, 5% identity and account events;
texts of 20 to 280 characters. ``direct`` runs the reader's own code (``Intake``: size check, JSON decode,
prefilter, cursor; ``save_batch``: posts through the feed items' path, reposts, deletes and the cursor,
one transaction per batch of 500) on frames made as fast as it takes them, into a fresh SQLite store.
``websocket`` does the same through a loopback WebSocket server (another process) and the real
``StreamRunner`` (threads, bounded queue), for as long as the server can send. RSS is read from
/proc every second; a flat line means no memory grows with the stream. Target: >= 5,000 messages/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.stories import StoryIndex  # noqa: E402
from collector.streams.config import StreamConfig  # noqa: E402
from collector.streams.intake import Intake  # noqa: E402
from collector.streams.save import save_batch  # noqa: E402
from store import clock  # noqa: E402
from store import streams as store_streams  # noqa: E402
from store.db import make_sessions  # noqa: E402

START_US = 1_727_856_000_000_000  # 2024-10-02 08:00 UTC
FOREIGN = ["just finished my coffee, what a morning", "the new album is out today and it is so good",
           "bom dia a todos, hoje vai chover o dia inteiro", "heute ist das Wetter wirklich schön, endlich",
           "오늘 점심 뭐 먹지 고민된다", "my card got declined at the store lol", "portal 2 is still the best puzzle game",
           "el partido de anoche fue increíble, qué golazo"]
JAPANESE = ["今日は雨なので家でのんびりしてる", "マイナスイオンで癒やされたい", "マイナビで就活の情報を見てる",
            "電車が遅れてて困る、会議に間に合うかな", "コンビニの新作スイーツおいしい", "新しいゲーム買ったので週末は引きこもる"]
RELEVANT = ["マイナ保険証が読み取れなかった", "マイナポータルにつながらない", "マイナンバーカードの更新に行ってきた"]


def frames(seed: int = 15, relevant: float = 0.001):
    """An endless Jetstream-shaped replay (strings, as they come off the socket); ``relevant``: the share of
    Japanese posts about the systems among new posts."""
    rng = random.Random(seed)
    posts: list[str] = []
    n, t = 0, START_US
    while True:
        n += 1
        t += rng.randint(50, 400)
        did = f"did:plc:{rng.randrange(10**6):024x}"
        r = rng.random()
        if r < 0.55:
            p = rng.random()
            if p < 0.8:
                text, langs = rng.choice(FOREIGN), ["en"]
            elif p < 1 - relevant:
                text, langs = rng.choice(JAPANESE), ["ja"]
            else:
                text, langs = rng.choice(RELEVANT), ["ja"]
            text = (text + " ") * rng.randint(1, 4) + str(n)
            rkey = f"3l{n:011d}"
            posts.append(f"at://{did}/app.bsky.feed.post/{rkey}")
            if len(posts) > 10_000:
                del posts[:5_000]
            yield json.dumps({"did": did, "time_us": t, "kind": "commit", "commit": {
                "rev": rkey, "operation": "create", "collection": "app.bsky.feed.post", "rkey": rkey,
                "record": {"$type": "app.bsky.feed.post", "createdAt": "2024-10-02T08:00:00.000Z", "langs": langs,
                           "text": text}, "cid": "bafyreib2rxk3rh6kzwq"}}, ensure_ascii=False)
        elif r < 0.85 and posts:
            rkey = f"3r{n:011d}"
            yield json.dumps({"did": did, "time_us": t, "kind": "commit", "commit": {
                "rev": rkey, "operation": "create", "collection": "app.bsky.feed.repost", "rkey": rkey,
                "record": {"$type": "app.bsky.feed.repost", "createdAt": "2024-10-02T08:00:00.000Z",
                           "subject": {"uri": rng.choice(posts), "cid": "bafyreib2rxk3rh6kzwq"}},
                "cid": "bafyreib2rxk3rh6kzwq"}})
        elif r < 0.95 and posts:
            _, _, pdid, _, rkey = rng.choice(posts).split("/")
            yield json.dumps({"did": pdid, "time_us": t, "kind": "commit", "commit": {
                "rev": "3ldel", "operation": "delete", "collection": "app.bsky.feed.post", "rkey": rkey}})
        else:
            yield json.dumps({"did": did, "time_us": t, "kind": "identity",
                              "identity": {"did": did, "handle": "someone.bsky.social", "seq": n,
                                           "time": "2024-10-02T08:00:00Z"}})


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Sampler(threading.Thread):
    def __init__(self, every: float = 1.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self):
        while not self.stop.wait(self.every):
            self.samples.append(rss_mib())


def report(name: str, messages: int, kept: int, seconds: float, samples: list[float]) -> None:
    print(f"{name}: {messages:,} messages in {seconds:.1f} s = {messages / seconds:,.0f} messages/s "
          f"({kept:,} posts kept)")
    if samples:
        third = max(1, len(samples) // 3)
        first, last = sum(samples[:third]) / third, sum(samples[-third:]) / third
        print(f"  RSS MiB, one sample a second: start {samples[0]:.0f}, min {min(samples):.0f}, max {max(samples):.0f}, "
              f"end {samples[-1]:.0f}; mean of the first third {first:.1f}, of the last third {last:.1f} "
              f"({last - first:+.1f})")
        step = max(1, len(samples) // 20)
        print("  RSS over the run: " + " ".join(f"{s:.0f}" for s in samples[::step]))


def direct(seconds: float, folder: Path, relevant: float) -> None:
    config = StreamConfig(name="bench", endpoint="wss://jetstream.example/subscribe")
    sessions = make_sessions(f"sqlite:///{folder / 'direct.sqlite'}")
    with sessions.begin() as s:
        source_id = store_streams.register_stream(s, name="bench", url=config.endpoint, kind="jetstream",
                                                  now=clock.now())
    intake, sampler, stories = Intake(config), Sampler(), StoryIndex()
    messages = kept = 0
    sampler.start()
    started = time.perf_counter()
    deadline = started + seconds
    source = frames(relevant=relevant)
    while time.perf_counter() < deadline:
        for _ in range(500):
            intake.take(next(source))
        batch = intake.cut()
        with sessions.begin() as s:
            save_batch(s, source_id, config, batch, now=clock.now(), stories=stories)
        messages, kept = messages + batch.messages, kept + batch.kept
    elapsed = time.perf_counter() - started
    sampler.stop.set()
    report("direct (decode, prefilter, store)", messages, kept, elapsed, sampler.samples)
    print(f"  stories held in memory {len(stories):,}")


def _serve(port_out, seconds: float, relevant: float) -> None:  # the loopback server, in a process of its own
    from websockets.sync.server import serve

    from websockets.exceptions import ConnectionClosed

    def handle(ws):
        deadline = time.monotonic() + seconds + 5
        try:
            for n, frame in enumerate(frames(relevant=relevant)):
                ws.send(frame)
                if n % 1000 == 0 and time.monotonic() > deadline:
                    break
            for _ in ws:
                pass
        except ConnectionClosed:
            pass  # the reader stopped

    with serve(handle, "127.0.0.1", 0, compression=None) as server:
        port_out.put(server.socket.getsockname()[1])
        server.serve_forever()


def websocket(seconds: float, folder: Path, relevant: float) -> None:
    from collector.streams.runner import StreamRunner

    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports, seconds, relevant), daemon=True)
    server.start()
    url = f"ws://127.0.0.1:{ports.get(timeout=30)}/subscribe"
    sessions = make_sessions(f"sqlite:///{folder / 'websocket.sqlite'}")
    runner = StreamRunner(StreamConfig(name="bench", endpoint=url, stall_seconds=30), sessions)
    sampler = Sampler()
    sampler.start()
    started = time.perf_counter()
    runner.start()
    time.sleep(seconds)
    runner.stop()
    elapsed = time.perf_counter() - started
    sampler.stop.set()
    server.terminate()
    with sessions.begin() as s:
        row = store_streams.stream_rows(s)[0]
    report("websocket (loopback server, StreamRunner: read, decode, prefilter, queue, store)", row.messages, row.kept,
           elapsed, sampler.samples)
    print(f"  reconnects {row.reconnects}, errors {row.errors}, dropped {row.dropped}, last rate "
          f"{row.messages_per_min / 60:,.0f} messages/s; stories held in memory {len(runner.stories):,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run (600 for the 10-minute check)")
    parser.add_argument("--mode", choices=("both", "direct", "websocket"), default="both")
    parser.add_argument("--relevant", type=float, default=0.001,
                        help="share of new posts that are Japanese and about the systems (default 0.001)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode in ("both", "direct"):
            direct(args.seconds, Path(tmp), args.relevant)
        if args.mode in ("both", "websocket"):
            websocket(args.seconds, Path(tmp), args.relevant)


if __name__ == "__main__":
    main()
