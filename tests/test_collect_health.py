"""Source health: weighted failures and linear backoff, Retry-After, "this machine is offline", per-host
limits, staleness and `mynawatch sources`."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.errors import HARD, SOFT, TEMPORARY
from collector.fetch import USER_AGENT, FetchPolicy, HostLimiter, make_client
from collector.health import FAILURE_WEIGHTS, Connectivity, after_failure, stale_reason
from collector.jobs import Collector
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from mynawatch.cli import main
from store.tables import FetchLog, Source
from tests.conftest import Route

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
POLICY = FetchPolicy(timeout_seconds=2, host_interval_seconds=0, per_host_connections=8)
NOW = datetime(2024, 10, 16, tzinfo=timezone.utc)


def test_failures_weigh_by_kind_and_back_off_linearly_never_for_good():
    policy, rng = CollectPolicy(), random.Random(1)
    assert [FAILURE_WEIGHTS[k] for k in (TEMPORARY, SOFT, HARD)] == [1, 2, 4]
    waits = [(after_failure(score, None, interval_minutes=30, policy=policy, now=NOW, rng=rng).hold_until - NOW)
             for score in (1, 2, 4, 8, 500)]
    assert waits == [timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2),
                     timedelta(hours=24)]


def test_retry_after_wins_when_longer_with_bounded_jitter():
    policy = CollectPolicy()
    holds = {after_failure(1, 7200, interval_minutes=60, policy=policy, now=NOW, rng=random.Random(seed)).hold_until
             for seed in range(20)}
    assert len(holds) > 1  # jittered: clients told the same time do not return in step
    assert all(NOW + timedelta(hours=2) <= h <= NOW + timedelta(hours=2, seconds=720) for h in holds)


def test_offline_needs_most_of_several_hosts_failing_unanswered():
    c, policy = Connectivity(), CollectPolicy()
    c.record("a.jp", unanswered=True, now=NOW)
    c.record("b.jp", unanswered=True, now=NOW)
    assert not c.offline(policy, now=NOW)  # two hosts are not enough to tell
    c.record("c.jp", unanswered=True, now=NOW)
    assert c.offline(policy, now=NOW)
    assert not c.offline(policy, now=NOW + timedelta(hours=1))  # old attempts age out
    c.record("d.jp", unanswered=False, now=NOW)
    assert not c.offline(policy, now=NOW)  # 3 of 4 is under 80%
    assert not Connectivity().offline(policy, now=NOW)


def _sources(names_hosts):
    return [SourceConfig(name, f"http://{host}:9/feed.xml") for name, host in names_hosts]


def test_when_the_machine_is_offline_failures_are_not_counted(sessions):
    """Nothing listens on port 9 of these loopback addresses: every host fails without an answer."""
    sources = _sources([(f"s{n}", f"127.0.0.{n + 2}") for n in range(4)])
    with make_client(POLICY) as client, Collector(sessions, client, POLICY) as collector:
        outcomes = collector.collect_round(sources, now=NOW)
    assert {o.outcome for o in outcomes} == {"offline"}
    with sessions.begin() as s:
        assert set(s.scalars(select(Source.failure_score))) == {0.0}
        assert set(s.scalars(select(Source.hold_until))) == {None}
        assert set(s.scalars(select(FetchLog.outcome))) == {"offline"}
        assert all(st.startswith("offline (not counted)") for st in s.scalars(select(Source.status)))


def test_one_dead_host_among_answering_ones_is_counted(server, sessions):
    body = (FEEDS / "nhk_rss2.xml").read_bytes()
    server.routes["/ok"] = Route(body)
    port = server.httpd.server_address[1]
    sources = [SourceConfig(f"ok{n}", f"http://127.0.0.{n + 1}:{port}/ok", publisher=f"p{n}") for n in range(3)]
    sources.append(SourceConfig("dead", "http://127.0.0.9:9/feed.xml"))
    with make_client(POLICY) as client, Collector(sessions, client, POLICY) as collector:
        outcomes = {o.source: o for o in collector.collect_round(sources, now=NOW)}
    assert outcomes["dead"].outcome == "failed" and outcomes["dead"].failure_kind == TEMPORARY
    with sessions.begin() as s:
        assert s.scalar(select(Source.failure_score).where(Source.name == "dead")) == 1.0


def test_a_source_in_backoff_waits_and_force_fetches_it(server, sessions):
    server.routes["/down"] = Route(b"down", status=503, headers={"Retry-After": "600"})
    source = SourceConfig("down", server.url("/down"))
    with make_client(POLICY) as client, Collector(sessions, client, POLICY) as collector:
        (first,) = collector.collect_round([source], now=NOW)
        (second,) = collector.collect_round([source], now=NOW + timedelta(minutes=5))
        (third,) = collector.collect_round([source], now=NOW + timedelta(minutes=5), force=True)
        (fourth,) = collector.collect_round([source], now=NOW + timedelta(minutes=40))
    assert [o.outcome for o in (first, second, third, fourth)] == ["failed", "waiting", "failed", "failed"]
    assert server.routes["/down"].hits == 3
    assert all(h.get("User-Agent") == USER_AGENT for _, h in server.requests)
    assert "mynawatch" in USER_AGENT


def test_per_host_limit_and_minimum_interval_hold_under_load():
    limiter, lock = HostLimiter(2, 0.1), threading.Lock()
    running, peak, starts = {"a": 0, "b": 0}, {"a": 0, "b": 0}, {"a": [], "b": []}

    def fetch(host):
        with limiter.slot(f"https://{host}.example.jp/feed"):
            with lock:
                running[host] += 1
                peak[host] = max(peak[host], running[host])
                starts[host].append(time.monotonic())
            time.sleep(0.25)  # longer than the interval: a second fetch to the host starts while one runs
            with lock:
                running[host] -= 1

    threads = [threading.Thread(target=fetch, args=(h,)) for h in "ab" * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"a": 2, "b": 2}
    for host in "ab":
        gaps = [b - a for a, b in zip(starts[host], starts[host][1:])]
        assert min(gaps) >= 0.08, gaps  # 0.1 s apart; a busy machine delays the time stamps by a few ms


@pytest.mark.parametrize("ages_hours,answering,stale", [
    ([1, 2, 3, 4], True, None),  # fresh
    ([60, 61, 62, 63], True, "stale"),  # hourly source silent for 60 hours
    ([24 * 366, 24 * 367, 24 * 368], True, "stale"),  # the year-old feed
    ([24 * 20, 24 * 50, 24 * 80], True, None),  # a monthly source, 20 days after its last notice
    ([24 * 200, 24 * 230, 24 * 260], True, "stale"),  # ... and after 200 days
    ([60, 61], False, None),  # failing sources are reported as failing, not stale
    ([], True, None),
])
def test_stale_means_no_new_item_for_much_longer_than_usual(ages_hours, answering, stale):
    published = [NOW - timedelta(hours=h) for h in ages_hours]
    reason = stale_reason(published, answering=answering, policy=CollectPolicy(), now=NOW)
    assert (reason is not None) == (stale is not None), reason


def test_sources_command_lists_health_with_stale_and_backoff_flags(server, tmp_path, capsys):
    server.routes["/old"] = Route((FEEDS / "nhk_legacy_year_old.xml").read_bytes())
    server.routes["/fresh"] = Route(_fresh_feed())
    server.routes["/gone"] = Route(b"", status=404)
    config = tmp_path / "m.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "s.sqlite"}"\n[fetch]\nhost_interval_seconds = 0\n'
        f'[collect]\narticle_pages = false\n'
        + "".join(f'[[sources]]\nname = "{n}"\nurl = "{server.url("/" + n)}"\npublisher = "NHK"\n'
                  for n in ("old", "fresh", "gone")), encoding="utf-8")
    assert main(["--config", str(config), "collect", "--once"]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 sources answered" in out and "HTTP 404" in out
    assert main(["--config", str(config), "sources"]) == 0
    lines = _blocks(capsys.readouterr().out)
    assert "STALE" in lines["old"] and "days old" in lines["old"]
    assert "STALE" not in lines["fresh"] and lines["fresh"].split()[1] == "ok"
    assert "error (hard): " in lines["gone"] and "backing off until" in lines["gone"] and " 4.0 " in lines["gone"]


def _blocks(out: str) -> dict[str, str]:
    """`mynawatch sources` output: each source's line and the indented lines under it, joined."""
    blocks: dict[str, str] = {}
    name = None
    for line in out.splitlines()[1:]:
        if line.startswith(" "):
            blocks[name] += " " + line.strip()
        else:
            name = line.split()[0]
            blocks[name] = line
    return blocks


def test_sources_shows_the_whole_reason_wrapped_to_the_terminal():
    from collector.health import describe_sources
    from store.sources import SourceRow

    reason = "error (soft): HTTP 503 from https://example.jp/a/very/long/path/feed.xml " + "and more words " * 12 + "END"
    row = SourceRow(**{**{f: None for f in SourceRow.__dataclass_fields__}, "name": "slow", "status": reason,
                       "failure_score": 2.0, "newest": ()})
    text = describe_sources([row], policy=CollectPolicy(), now=NOW, width=60)
    assert all(len(line) <= 60 for line in text.splitlines()[2:])
    assert " ".join(line.strip() for line in text.splitlines()[2:]) == reason  # nothing cut off
    assert text.splitlines()[1].split()[:2] == ["slow", "error"]


def _fresh_feed() -> bytes:
    now = datetime.now(timezone.utc)
    items = "".join(f"<item><title>マイナ保険証のニュース{n}</title><link>https://ex.jp/fresh/{n}</link>"
                    f"<pubDate>{(now - timedelta(hours=n)).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
                    for n in range(5))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>f</title>{items}</channel></rss>'.encode()
