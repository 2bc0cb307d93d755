"""Hostile sources found by probing the collector: article pages whose JSON-LD nests past the parser's depth,
feeds and pages in UTF-16 or mislabeled as UTF-16, validators the server sent with stray bytes, redirects to
javascript: addresses, and Misskey streams whose notes or gap answers cannot be read. Real loopback servers
(HTTP and WebSocket) and real SQLite stores, one case per test."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, update
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from collector.fetch import FetchPolicy, make_client
from collector.jobs import Collector
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from collector.streams.config import StreamConfig
from collector.streams.runner import StreamRunner
from store.tables import Item, Source, StreamState
from tests.conftest import Route

POLICY = FetchPolicy(timeout_seconds=10, max_bytes=2_000_000, host_interval_seconds=0, per_host_connections=32)
TITLE = "マイナ保険証 読み取り障害 各地で"


def _rss(title: str = TITLE, link: str = "https://news.example.jp/a/1", decl: str = 'encoding="utf-8"') -> str:
    return (f'<?xml version="1.0" {decl}?><rss version="2.0"><channel><title>t</title><item><title>{title}</title>'
            f'<link>{link}</link><guid>{link}</guid><pubDate>Tue, 15 Oct 2024 10:00:00 +0900</pubDate></item>'
            f'</channel></rss>')


def _collect(sessions, sources, now, *, rounds: int = 1, fetch: FetchPolicy = POLICY):
    """``rounds`` collect rounds (the later ones forced); the outcomes of each, by source name."""
    with make_client(fetch) as client, Collector(sessions, client, fetch) as collector:
        return [{o.source: o for o in collector.collect_round(sources, now=now, force=n > 0)} for n in range(rounds)]


def _titles(sessions) -> list[str]:
    with sessions.begin() as s:
        return list(s.scalars(select(Item.title).order_by(Item.id)))


# --- article pages ---------------------------------------------------------------------------------------

def _ld_page(ld: bytes) -> bytes:
    return (b'<html><head><script type="application/ld+json">' + ld + b'</script></head><body><article>'
            + "<p>マイナ保険証の読み取り障害が続いている。</p>".encode() + b"</article></body></html>")


LD_CASES = {
    "a list nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "a @graph nested 5,000 deep": b'{"@graph":' * 5_000 + b"1" + b"}" * 5_000,
    "a @type that is a list of lists": b'{"@type": [["NewsArticle"]], "headline": "x"}',
    "a @type that is an object": b'{"@type": {"a": 1}, "headline": "x"}',
}


@pytest.fixture(params=list(LD_CASES), ids=list(LD_CASES))
def ld_page(request) -> bytes:
    return _ld_page(LD_CASES[request.param])


def _relevant_item(sessions, url: str, now) -> int:
    from collector.ingest import save_entries
    from store import items as store_items
    from store import labels as store_labels
    from store.records import Cause, Entry, Label, Sentiment, Service

    source = SourceConfig("feed", "http://127.0.0.1/feed", publisher="東西新聞")
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name="feed", url=source.url, kind="feed", publisher="東西新聞",
                                          interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url=url, title=TITLE, published=now - timedelta(hours=1))], now=now)
        item_id = s.scalar(select(Item.id))
        store_labels.save_labels(s, "m1", {item_id: Label(True, (Service.HEALTH_INSURANCE,), Cause.UNKNOWN,
                                                          Sentiment.NEGATIVE)}, now=now)
    return item_id


def _read_articles(sessions, now) -> dict[str, int]:
    loopback = replace(POLICY, allow_loopback_links=True)
    with make_client(loopback) as client, Collector(sessions, client, loopback) as collector:
        return collector.fetch_articles(now=now)


def test_an_article_page_whose_json_ld_cannot_be_walked_is_read_for_its_text(ld_page, server, sessions, now, caplog):
    from store.articles import article_of

    server.routes["/a"] = Route(ld_page, headers={"Content-Type": "text/html; charset=utf-8"})
    item_id = _relevant_item(sessions, server.url("/a"), now)
    with caplog.at_level(logging.ERROR):
        assert _read_articles(sessions, now)["ok"] == 1
    with sessions.begin() as s:
        record = article_of(s, item_id)
    assert record.text == "マイナ保険証の読み取り障害が続いている。"
    assert not caplog.records  # no "reading ... failed" traceback in the log


def test_an_article_page_mislabeled_utf16_is_read_as_what_it_is(server, sessions, now):
    from store.articles import article_of

    page = ('<html><head><meta charset="utf-16"><title>t</title></head><body><article>'
            '<p>マイナ保険証の読み取り障害が続いている。</p></article></body></html>').encode()
    server.routes["/a"] = Route(page, headers={"Content-Type": "text/html; charset=utf-16"})
    item_id = _relevant_item(sessions, server.url("/a"), now)
    assert _read_articles(sessions, now)["ok"] == 1
    with sessions.begin() as s:
        assert article_of(s, item_id).text == "マイナ保険証の読み取り障害が続いている。"


@pytest.fixture(params=["Tue, 01 Oct 2024 01:00:00 GMT", "2024-10-01T01:00:00 UTC", "2024-10-01 10:00:00 +0900"])
def page_dated_in_another_style(request) -> bytes:
    return (f'<html><head><meta property="article:published_time" content="{request.param}"></head><body><article>'
            '<p>マイナ保険証の読み取り障害が続いている。</p></article></body></html>').encode()


def test_an_article_date_in_email_style_or_named_utc_is_not_read_as_japan_time(page_dated_in_another_style, server,
                                                                                sessions, now):
    from datetime import datetime, timezone

    from store.articles import article_of

    server.routes["/a"] = Route(page_dated_in_another_style, headers={"Content-Type": "text/html; charset=utf-8"})
    item_id = _relevant_item(sessions, server.url("/a"), now)
    assert _read_articles(sessions, now)["ok"] == 1
    with sessions.begin() as s:
        assert article_of(s, item_id).published == datetime(2024, 10, 1, 1, 0, tzinfo=timezone.utc)


# --- charsets of feeds -----------------------------------------------------------------------------------

UTF16_FEEDS = {
    "UTF-16 with its byte order mark": (_rss(decl='encoding="utf-16"').encode("utf-16"), {}),
    "UTF-16LE without a mark": (_rss(decl='encoding="utf-16le"').encode("utf-16-le"), {}),
    "UTF-32 with its byte order mark": (_rss(decl='encoding="utf-32"').encode("utf-32"), {}),
    "UTF-8 declared UTF-16": (_rss(decl='encoding="utf-16"').encode(), {}),
    "UTF-8 sent as charset=utf-16": (_rss(decl="").encode(), {"Content-Type": "application/rss+xml; charset=utf-16"}),
    "UTF-8 declared UTF-16 and sent as UTF-32": (_rss(decl='encoding="UTF-16"').encode(),
                                                 {"Content-Type": "text/xml; charset=utf-32"}),
    "UTF-8 declared unicode-escape": (_rss(decl='encoding="unicode-escape"').encode(), {}),
    "UTF-8 sent as charset=raw-unicode-escape": (_rss(decl="").encode(),
                                                 {"Content-Type": "text/xml; charset=raw-unicode-escape"}),
}


@pytest.fixture(params=list(UTF16_FEEDS), ids=list(UTF16_FEEDS))
def wide_feed(request, server) -> SourceConfig:
    body, headers = UTF16_FEEDS[request.param]
    server.routes["/feed"] = Route(body, headers=headers)
    return SourceConfig("wide", server.url("/feed"), publisher="東西新聞")


def test_a_utf16_feed_or_one_mislabeled_utf16_or_as_a_python_codec_is_read_in_japanese(wide_feed, sessions, now):
    [outcomes] = _collect(sessions, [wide_feed], now)
    assert outcomes["wide"].outcome == "new", outcomes["wide"]
    assert _titles(sessions) == [TITLE]


# --- validators ------------------------------------------------------------------------------------------

VALIDATORS = {
    "an ETag with a latin-1 byte and a control character": {"ETag": '"\xff\x01"'},
    "a Last-Modified in UTF-8": {"Last-Modified": "火, 15 10月 2024 10:00:00 JST".encode().decode("latin-1")},
}


@pytest.fixture(params=list(VALIDATORS), ids=list(VALIDATORS))
def odd_validator_feed(request, server) -> SourceConfig:
    server.routes["/feed"] = Route(_rss().encode(), headers=VALIDATORS[request.param])
    return SourceConfig("odd", server.url("/feed"), publisher="東西新聞")


def test_a_validator_that_cannot_be_sent_back_never_fails_the_later_rounds(odd_validator_feed, server, sessions, now):
    rounds = _collect(sessions, [odd_validator_feed], now, rounds=3)
    assert [r["odd"].outcome for r in rounds] == ["new", "unchanged", "unchanged"], rounds
    assert all("If-None-Match" not in h and "If-Modified-Since" not in h for _p, h in server.requests)


def test_a_validator_stored_by_an_earlier_version_is_not_sent(server, sessions, now):
    server.routes["/feed"] = Route(_rss().encode(), headers={"ETag": '"v1"'})
    source = SourceConfig("odd", server.url("/feed"), publisher="東西新聞")
    _collect(sessions, [source], now)
    with sessions.begin() as s:
        s.execute(update(Source).values(etag='"\xff\x01"', last_modified="火曜日"))
    [outcomes] = _collect(sessions, [source], now)
    assert outcomes["odd"].outcome == "unchanged", outcomes["odd"]
    assert server.requests[-1][1].get("If-None-Match") is None


# --- redirects -------------------------------------------------------------------------------------------

@pytest.fixture(params=["javascript:alert(1)", "mailto:desk@example.jp", "data:text/html,hi"])
def redirect_elsewhere(request, server) -> SourceConfig:
    server.routes["/feed"] = Route(b"", status=302, headers={"Location": request.param})
    return SourceConfig("redirect", server.url("/feed"), publisher="東西新聞")


def test_a_redirect_to_an_address_that_is_not_http_blames_the_redirect_not_the_source(redirect_elsewhere, server,
                                                                                          sessions, now):
    good = SourceConfig("good", server.url("/good"), publisher="東西新聞")
    server.routes["/good"] = Route(_rss().encode())
    [outcomes] = _collect(sessions, [redirect_elsewhere, good], now)
    failed = outcomes["redirect"]
    assert failed.outcome == "failed" and failed.failure_kind == "soft"
    assert "redirect to an unreadable address" in failed.error and "not a valid address" not in failed.error
    assert outcomes["good"].outcome == "new"


# --- Misskey streams -------------------------------------------------------------------------------------

def _note(note_id: str, text: str, created: str = "2024-10-01T00:00:00.000Z") -> dict:
    return {"id": note_id, "createdAt": created, "text": text, "user": {"username": "u", "host": None},
            "visibility": "public"}


def _frame(note: dict) -> str:
    return json.dumps({"type": "channel", "body": {"id": "mynawatch-localTimeline", "type": "note", "body": note}},
                      ensure_ascii=False)


class Misskey:
    """A Misskey instance on loopback: each connection gets the frames of its turn (the last turn again for
    every later connection), then the server closes it; its API answers every page with ``api_body``."""

    def __init__(self, turns: list[list[str]], api_body: bytes = b"[]"):
        self.turns, self.api_body, self.connections, self.api_requests = turns, api_body, 0, 0
        self.ws = serve(self._handle, "127.0.0.1", 0, compression=None)
        threading.Thread(target=self.ws.serve_forever, daemon=True).start()
        outer = self

        class Api(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.api_requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.api_body)))
                self.end_headers()
                self.wfile.write(outer.api_body)

            def log_message(self, *args):
                pass

        self.api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
        self.api.daemon_threads = True
        threading.Thread(target=self.api.serve_forever, daemon=True).start()

    def _handle(self, ws) -> None:
        turn = self.turns[min(self.connections, len(self.turns) - 1)]
        self.connections += 1
        try:
            ws.recv(timeout=10)  # the connect message
            for frame in turn:
                ws.send(frame)
            time.sleep(0.3)
            ws.close(1001, "going away")
        except (ConnectionClosed, OSError, TimeoutError):
            pass

    def config(self, **kw) -> StreamConfig:
        return StreamConfig(name="misskey", kind="misskey", endpoint=f"ws://127.0.0.1:{self.ws.socket.getsockname()[1]}"
                            "/streaming", api_url=f"http://127.0.0.1:{self.api.server_address[1]}/api",
                            web_url="https://misskey.example", stall_seconds=5.0, backoff_seconds=0.05,
                            max_backoff_seconds=0.1, batch_seconds=0.1, **kw)

    def close(self) -> None:
        self.ws.shutdown()
        self.api.shutdown()


def _run_until(sessions, config: StreamConfig, check, timeout: float = 20.0) -> None:
    runner = StreamRunner(config, sessions)
    runner.start()
    try:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
    finally:
        runner.stop()


def _stored(sessions, note_id: str) -> bool:
    with sessions.begin() as s:
        return s.scalar(select(Item.id).where(Item.guid == f"https://misskey.example/notes/{note_id}")) is not None


@pytest.fixture(params=["9999-12-31T23:59:59.000-14:00", "0001-01-01T00:00:00.000+09:00"])
def misskey_bad_date(request):
    server = Misskey([[_frame(_note("n1", "マイナ保険証が使えない", request.param)),
                       _frame(_note("n2", "マイナ保険証が使えない、窓口で10割負担と言われた"))], []])
    yield server
    server.close()


def test_a_misskey_note_dated_out_of_range_costs_that_note_not_the_connection(misskey_bad_date, sessions, caplog):
    with caplog.at_level(logging.ERROR):
        _run_until(sessions, misskey_bad_date.config(), lambda: _stored(sessions, "n2"))
    assert not [r for r in caplog.records if "reader failed" in r.getMessage()]
    with sessions.begin() as s:
        state = s.scalar(select(StreamState))
    assert state.errors >= 1 and "out of range" in (state.last_error or "")


GAP_ANSWERS = {
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "larger than a page of frames": json.dumps([{"id": "z", "pad": "x" * 300_000}]).encode(),
}


@pytest.fixture(params=list(GAP_ANSWERS), ids=list(GAP_ANSWERS))
def misskey_bad_gap(request):
    first = [_frame(_note("a1", "マイナ保険証が使えない"))]
    later = [_frame(_note("c1", "マイナ保険証が使えない、窓口で10割負担と言われた"))]
    server = Misskey([first, later], api_body=GAP_ANSWERS[request.param])
    yield server
    server.close()


def test_a_misskey_gap_answer_that_cannot_be_read_is_given_up_and_the_stream_goes_on(misskey_bad_gap, sessions,
                                                                                     caplog):
    with caplog.at_level(logging.ERROR):
        _run_until(sessions, misskey_bad_gap.config(max_frame_bytes=1000), lambda: _stored(sessions, "c1"))
    assert _stored(sessions, "a1")
    assert misskey_bad_gap.api_requests == 3  # GAP_TRIES connections tried the gap, then it was given up
    assert not [r for r in caplog.records if "reader failed" in r.getMessage()]


# --- identity and notices --------------------------------------------------------------------------------

def _items(n: int, *, start: int = 0, guid: str = "https://news.example.jp/") -> str:
    return "".join(f"<item><title>マイナ保険証 記事その{i}</title><link>https://news.example.jp/a/{i}</link>"
                   f"<guid>{guid}</guid><pubDate>Tue, 15 Oct 2024 10:{i % 60:02d}:00 +0900</pubDate></item>"
                   for i in range(start, start + n))


@pytest.fixture
def shared_guid_feed(server) -> SourceConfig:
    """A feed whose CMS gives every item the same GUID (the site's address): three items, five the next time."""
    bodies = iter([_items(3), _items(5)])
    server.routes["/feed"] = Route(lambda _h: (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                                               f'<title>t</title>{next(bodies)}</channel></rss>').encode())
    return SourceConfig("shared", server.url("/feed"), publisher="東西新聞")


def test_items_sharing_one_guid_under_different_addresses_are_each_stored_once(shared_guid_feed, sessions, now):
    first, second = _collect(sessions, [shared_guid_feed], now, rounds=2)
    assert (first["shared"].new_items, second["shared"].new_items) == (3, 2)
    assert sorted(_titles(sessions)) == [f"マイナ保険証 記事その{i}" for i in range(5)]


@pytest.fixture
def thousands_of_windows_feed(server) -> SourceConfig:
    """A feed of 3,000 planned-maintenance notices, each for another hour."""
    items = "".join(f"<item><title>マイナポータル メンテナンスのお知らせ {i}</title><link>https://news.example.jp/m/{i}"
                    f"</link><description>2024年11月{i // 100 % 28 + 1}日 {i % 20}時から{i % 20 + 2}時まで"
                    f"マイナポータルを停止します。</description></item>" for i in range(3000))
    server.routes["/feed"] = Route(f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t'
                                   f'</title>{items}</channel></rss>'.encode())
    return SourceConfig("notices", server.url("/feed"), publisher="東西新聞", service="portal")


def test_a_source_announcing_thousands_of_windows_stores_the_first_hundred_and_says_so(thousands_of_windows_feed,
                                                                                         server, sessions, now,
                                                                                         caplog):
    from collector.ingest import MAX_WINDOWS
    from store.tables import MaintenanceWindow

    server.routes["/good"] = Route(_rss().encode())
    good = SourceConfig("good", server.url("/good"), publisher="西東新聞")
    with caplog.at_level(logging.WARNING, logger="collector.jobs"):
        [outcomes] = _collect(sessions, [thousands_of_windows_feed, good], now)
    assert outcomes["notices"].new_items == 3000 and outcomes["good"].outcome == "new"
    with sessions.begin() as s:
        assert s.scalar(select(func.count()).select_from(MaintenanceWindow)) == MAX_WINDOWS
    assert "maintenance window(s) past the first 100" in caplog.text


# --- relative links --------------------------------------------------------------------------------------

RELATIVE = {
    "an RSS item whose only link is a relative permalink GUID": (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title><item>'
        f'<title>{TITLE}</title><guid>/news/1.html</guid></item></channel></rss>',
        "http://127.0.0.1/news/1.html"),
    "an Atom entry whose link is relative to its xml:base": (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xml:base="https://news.example.jp/articles/"><title>t</title><entry xml:base="2024/"><id>urn:x:1</id>'
        f'<title>{TITLE}</title><link href="1.html"/><updated>2024-10-15T10:00:00+09:00</updated></entry></feed>',
        "https://news.example.jp/articles/2024/1.html"),
    "an Atom entry whose xml:base is not a web address": (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry>'
        f'<id>urn:x:1</id><title>{TITLE}</title><link xml:base="javascript:alert(1)//" href="/news/1.html"/>'
        '<updated>2024-10-15T10:00:00+09:00</updated></entry></feed>',
        "http://127.0.0.1/news/1.html"),
}


@pytest.fixture(params=list(RELATIVE), ids=list(RELATIVE))
def relative_feed(request, server) -> tuple[SourceConfig, str]:
    body, expected = RELATIVE[request.param]
    server.routes["/feed"] = Route(body.encode())
    port = server.httpd.server_address[1]
    return SourceConfig("relative", server.url("/feed"), publisher="東西新聞"), expected.replace(
        "http://127.0.0.1/", f"http://127.0.0.1:{port}/")


def test_relative_links_are_read_against_the_base_a_feed_reader_would_use(relative_feed, sessions, now):
    source, expected = relative_feed
    [outcomes] = _collect(sessions, [source], now)
    assert outcomes["relative"].outcome == "new", outcomes["relative"]
    with sessions.begin() as s:
        assert list(s.scalars(select(Item.canonical_url))) == [expected]


@pytest.fixture
def misskey_future_note():
    server = Misskey([[_frame(_note("f1", "マイナ保険証が使えない", "2999-01-01T00:00:00.000Z"))], []])
    yield server
    server.close()


def test_a_misskey_note_dated_in_the_future_is_dated_when_it_was_read(misskey_future_note, sessions):
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    _run_until(sessions, misskey_future_note.config(), lambda: _stored(sessions, "f1"))
    with sessions.begin() as s:
        published, note = s.execute(select(Item.published_at, Item.date_note)).one()
    assert started - timedelta(minutes=1) <= published.replace(tzinfo=timezone.utc) <= datetime.now(timezone.utc)
    assert note.startswith("future date 2999-01-01")


@pytest.fixture
def feeds_of_bare_ids(server) -> list[SourceConfig]:
    """Two feeds whose items have no link, only ids of their own (<guid isPermaLink="false">1</guid>): both
    number their items from 1."""
    sources = []
    for name, paper in (("east", "東西新聞"), ("west", "西東新聞")):
        items = "".join(f'<item><title>{paper} マイナ保険証 {i}</title><guid isPermaLink="false">{i}</guid>'
                        f'<pubDate>Tue, 15 Oct 2024 10:00:00 +0900</pubDate></item>' for i in (1, 2))
        server.routes[f"/{name}"] = Route(f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                                          f'<title>t</title>{items}</channel></rss>'.encode())
        sources.append(SourceConfig(name, server.url(f"/{name}"), publisher=paper))
    return sources


def test_items_known_only_by_their_feeds_own_ids_are_not_taken_for_another_feeds(feeds_of_bare_ids, sessions, now):
    first, second = _collect(sessions, feeds_of_bare_ids, now, rounds=2)
    assert [first[s.name].new_items for s in feeds_of_bare_ids] == [2, 2]  # the west's 1 and 2 were the east's
    assert [second[s.name].new_items for s in feeds_of_bare_ids] == [0, 0]
    with sessions.begin() as s:
        urls = sorted(s.scalars(select(Item.canonical_url)))
    assert urls == sorted(f"urn:mynawatch:item:{i}@{src.url}" for src in feeds_of_bare_ids for i in (1, 2))
