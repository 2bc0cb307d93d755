"""A loopback HTTP server that replays feed files on a simulated clock (for the demo and the tests).

Each file holds a whole month of items in its real format. At simulated time T the server answers
with the same document, trimmed to the newest ``keep`` items published at or before T, in the
file's own encoding, with an ETag so unchanged feeds get 304.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lxml import etree

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_CONTENT_TYPES = {".xml": "application/rss+xml", ".rdf": "application/rdf+xml", ".atom": "application/atom+xml"}


def _local(el) -> str:
    return el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""


def item_date(el) -> datetime | None:
    """The publication date of an RSS item, RDF item or Atom entry."""
    for child in el:
        name, text = _local(child), (child.text or "").strip()
        if not text:
            continue
        if name == "pubDate":
            return parsedate_to_datetime(text).astimezone(timezone.utc)
        if name in ("date", "published", "updated"):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    return None


@dataclass
class ReplayFeed:
    """One feed file, parsed once; ``render(now)`` gives the bytes a real server would send at ``now``."""

    path: Path
    keep: int = 40

    def __post_init__(self):
        self.tree = etree.parse(str(self.path), etree.XMLParser(resolve_entities=False, no_network=True))
        self.encoding = self.tree.docinfo.encoding or "utf-8"
        root = self.tree.getroot()
        self.items = [el for el in root.iter() if _local(el) in ("item", "entry")]
        self.dates = [item_date(el) for el in self.items]
        if any(d is None for d in self.dates):
            raise ValueError(f"{self.path}: every item needs a date to be replayed")
        self._cache: dict[tuple[int, ...], bytes] = {}

    def render(self, now: datetime) -> bytes:
        visible = sorted((i for i, d in enumerate(self.dates) if d <= now), key=lambda i: self.dates[i])[-self.keep:]
        key = tuple(visible)
        if key not in self._cache:
            self._cache[key] = self._trimmed(set(visible))
        return self._cache[key]

    def _trimmed(self, keep: set[int]) -> bytes:
        tree = copy.deepcopy(self.tree)
        items = [el for el in tree.getroot().iter() if _local(el) in ("item", "entry")]
        dropped = set()
        for i, el in enumerate(items):
            if i not in keep:
                dropped.add(el.get(f"{{{RDF}}}about"))
                el.getparent().remove(el)
        for li in [el for el in tree.getroot().iter() if _local(el) == "li"]:  # RSS 1.0 channel <items> list
            if li.get(f"{{{RDF}}}resource") in dropped:
                li.getparent().remove(li)
        return etree.tostring(tree, xml_declaration=True, encoding=self.encoding)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops simultaneous connects (SYN retried a second later)


class FeedServer:
    """Serves ``/feeds/<name>`` from ReplayFeeds at ``self.now`` on 127.0.0.1 in a background thread."""

    def __init__(self, feeds: dict[str, ReplayFeed], now: datetime):
        self.feeds, self.now, self.requests = feeds, now, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stall

            def do_GET(self):  # noqa: N802
                server.requests += 1
                name = self.path.split("?", 1)[0].removeprefix("/feeds/")
                feed = server.feeds.get(name)
                if feed is None:
                    return self._send(404, b"not found", "text/plain")
                body = feed.render(server.now)
                etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag:
                    return self._send(304, b"", None, etag)
                self._send(200, body, _CONTENT_TYPES.get(feed.path.suffix, "application/xml"), etag)

            def _send(self, status, body, content_type, etag=None):
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Date", format_datetime(datetime.now(timezone.utc), usegmt=True))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/feeds/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
