"""Round benchmark: the wall time of one collection round over 200 sources whose servers each take one
second to answer, with the default fetch settings, and the most requests any one host saw at once.

    .venv/bin/python bench/round.py [--sources 200] [--hosts 50] [--delay 1.0]

Every host is a real HTTP server on its own loopback address (127.0.0.2, 127.0.0.3, ...), so the
collector's per-host limit applies per server, as it would across real news sites. Each host serves
``sources / hosts`` feeds and counts the requests it is answering at the same moment.
Targets: the round under 15 seconds; never more than ``per_host_connections`` requests at once on a host.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.fetch import FetchPolicy, make_client  # noqa: E402
from collector.jobs import Collector  # noqa: E402
from collector.sources import SourceConfig  # noqa: E402
from store.db import make_sessions  # noqa: E402

NOW = datetime(2024, 10, 2, 3, tzinfo=timezone.utc)


class Host:
    """One slow news site: answers every feed after ``delay`` seconds, counting requests in flight."""

    def __init__(self, address: str, delay: float):
        self.delay, self.in_flight, self.peak, self.requests = delay, 0, 0, 0
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802
                with host.lock:
                    host.in_flight += 1
                    host.requests += 1
                    host.peak = max(host.peak, host.in_flight)
                try:
                    time.sleep(host.delay)
                    body = _feed(address, self.path)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with host.lock:
                        host.in_flight -= 1

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.httpd = Server((address, 0), Handler)
        self.url = f"http://{address}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _feed(address: str, path: str) -> bytes:
    items = "".join(
        f"<item><title>{address}{path} のマイナ関連ニュース {n}</title>"
        f"<link>https://{address.replace('.', '-')}.example.jp{path}/{n}</link>"
        f"<pubDate>{(NOW - timedelta(minutes=7 * n)).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>"
        f"<description>マイナポータルの話題 {n}</description></item>" for n in range(10))
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{address}</title>'
            f"{items}</channel></rss>").encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--host-interval", type=float, help="override host_interval_seconds (0: only the limit holds)")
    args = ap.parse_args()
    policy = FetchPolicy()  # the defaults a user gets
    if args.host_interval is not None:
        policy = FetchPolicy(host_interval_seconds=args.host_interval)
    hosts = [Host(f"127.0.0.{n + 2}", args.delay) for n in range(args.hosts)]
    sources = [SourceConfig(f"s{n:03d}", f"{hosts[n % len(hosts)].url}/feed{n}.xml") for n in range(args.sources)]
    print(f"{args.sources} sources on {args.hosts} hosts, each answer after {args.delay:g} s; fetch settings: "
          f"connections={policy.connections}, per_host_connections={policy.per_host_connections}, "
          f"host_interval_seconds={policy.host_interval_seconds:g}")
    with tempfile.TemporaryDirectory() as tmp:
        sessions = make_sessions(f"sqlite:///{Path(tmp) / 'round.sqlite'}")
        with make_client(policy) as client, Collector(sessions, client, policy) as collector:
            started = time.perf_counter()
            outcomes = collector.collect_round(sources, now=NOW)
            wall = time.perf_counter() - started
    for h in hosts:
        h.close()
    ok = sum(o.outcome == "new" for o in outcomes)
    peak = max(h.peak for h in hosts)
    stored = sum(o.new_items for o in outcomes)
    print(f"round wall time: {wall:.1f} s (target < 15 s): {'ok' if wall < 15 else 'OVER TARGET'}")
    print(f"sources answered: {ok} of {len(outcomes)}; items stored: {stored:,}; requests: {sum(h.requests for h in hosts)}")
    print(f"most requests at once on one host: {peak} (limit {policy.per_host_connections}): "
          f"{'ok' if peak <= policy.per_host_connections else 'LIMIT EXCEEDED'}")
    return 0 if wall < 15 and peak <= policy.per_host_connections and ok == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
