"""Planned-maintenance notices -> maintenance windows: in feed items, in watched pages, in the sample month."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.fetch import FetchPolicy, make_client
from collector.jobs import Collector
from collector.maintenance import find_windows
from collector.sources import SourceConfig
from mynawatch.feedserver import FeedServer, ReplayFeed
from store.maintenance import windows_between
from store.tables import Item, MaintenanceWindow
from tests.conftest import Route

JST = timezone(timedelta(hours=9))
SAMPLE = Path(__file__).parent.parent / "mynawatch" / "sample"
POLICY = FetchPolicy(timeout_seconds=5, host_interval_seconds=0, per_host_connections=16)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=JST).astimezone(timezone.utc)


CASES = [  # (title, text, notice date JST, expected [(service, start JST, end JST)])
    ("マイナポータルの計画停止について", "10月12日（土）1時〜6時、全サービスを停止します。", "2024-10-07",
     [("portal", "2024-10-12 01:00", "2024-10-12 06:00")]),
    ("システムメンテナンスに伴うコンビニ交付サービスの休止（10月5日 0時から8時）", "", "2024-09-27",
     [("convenience_store", "2024-10-05 00:00", "2024-10-05 08:00")]),
    ("【J-LIS】公的個人認証サービスのメンテナンスについて",
     "令和6年10月19日（土）22時00分から翌日6時00分まで、電子証明書の発行・更新ができません。", "2024-10-01",
     [("certificate", "2024-10-19 22:00", "2024-10-20 06:00")]),
    ("マイナポータルのメンテナンスのお知らせ", "1月4日（土）午前2時から午前5時まで", "2024-12-20",
     [("portal", "2025-01-04 02:00", "2025-01-04 05:00")]),
    ("コンビニ交付サービス休止のお知らせ", "10月20日（日）午後11時から翌午前5時まで休止します。", "2024-10-10",
     [("convenience_store", "2024-10-20 23:00", "2024-10-21 05:00")]),
    ("マイナポータル 計画停止", "2024/10/26(土) 1:00～5:30", "2024-10-15",
     [("portal", "2024-10-26 01:00", "2024-10-26 05:30")]),
    ("マイナポータル計画停止", "10月11日(金)22:00～10月12日(土)6:00", "2024-10-01",
     [("portal", "2024-10-11 22:00", "2024-10-12 06:00")]),
    ("オンライン資格確認システムのメンテナンス", "10月26日 午前9時から正午までマイナ保険証が使えません", "2024-10-15",
     [("health_insurance", "2024-10-26 09:00", "2024-10-26 12:00")]),
    ("コンビニ交付の休止について", "11月3日（日）は終日、コンビニ交付サービスを休止します。", "2024-10-20",
     [("convenience_store", "2024-11-03 00:00", "2024-11-04 00:00")]),
    ("マイナポータルを計画停止", "10月12日（土）1時〜6時、10月19日（土）1時〜6時の2回", "2024-10-01",
     [("portal", "2024-10-12 01:00", "2024-10-12 06:00"), ("portal", "2024-10-19 01:00", "2024-10-19 06:00")]),
    ("ﾏｲﾅﾎﾟｰﾀﾙ ﾒﾝﾃﾅﾝｽのお知らせ", "10月12日 1時〜6時", "2024-10-07",  # half-width katakana
     [("portal", "2024-10-12 01:00", "2024-10-12 06:00")]),
    # not planned maintenance, or no window: nothing
    ("マイナポータルに障害", "10月2日8時20分から18時45分まで、つながりにくい状態が続いた。", "2024-10-02", []),
    ("メンテナンス後に不具合", "10月10日8時30分から13時まで資格確認できず", "2024-10-10", []),
    ("夜中にマイナポータル開いたらメンテ中だった", "「ただいまメンテナンス中です。6時00分に再開予定」", "2024-10-12", []),
    ("マイナポータルの計画停止について", "日時は追ってお知らせします。", "2024-10-07", []),
]


@pytest.mark.parametrize("title,text,day,expected", CASES, ids=[c[0][:20] for c in CASES])
def test_find_windows(title, text, day, expected):
    notice = _at(f"{day} 10:00")
    got = [(w.service, w.starts_at, w.ends_at) for w in find_windows(title, text, notice_time=notice)]
    assert got == [(s, _at(a), _at(b)) for s, a, b in expected]
    assert all(w.title == title for w in find_windows(title, text, notice_time=notice))


def test_a_source_can_name_the_service_its_notices_are_about():
    (window,) = find_windows("システムメンテナンスのお知らせ", "10月19日（土）22時から翌6時まで停止します。",
                             notice_time=_at("2024-10-01 10:00"), default_service="certificate")
    assert window.service == "certificate"


def test_the_sample_month_yields_its_two_maintenance_windows(sessions):
    """The portal's 10-12 01:00-06:00 and the city's 10-05 00:00-08:00 convenience_store window, once each,
    though five outlets carry the portal notice; no incident becomes a window."""
    config = tomllib.loads((SAMPLE / "sources.toml").read_text(encoding="utf-8"))["sources"]
    end = datetime(2024, 10, 16, tzinfo=JST)
    feeds = {s["file"]: ReplayFeed(SAMPLE / "feeds" / s["file"], keep=1000) for s in config}
    with FeedServer(feeds, now=end) as server, make_client(POLICY) as client, \
            Collector(sessions, client, POLICY) as collector:
        sources = [SourceConfig(url=server.base_url + s["file"], **{k: v for k, v in s.items() if k != "file"})
                   for s in config]
        outcomes = collector.collect_round(sources, now=end)
    assert all(o.outcome == "new" for o in outcomes), outcomes
    with sessions.begin() as s:
        windows = windows_between(s, end - timedelta(days=60), end)
        linked = s.scalars(select(MaintenanceWindow.item_id)).all()
        assert all(s.get(Item, i) is not None for i in linked)
    assert sorted((w.service, w.starts_at, w.ends_at) for w in windows) == [
        ("convenience_store", _at("2024-10-05 00:00"), _at("2024-10-05 08:00")),
        ("portal", _at("2024-10-12 01:00"), _at("2024-10-12 06:00")),
    ]


PAGE = """<!DOCTYPE html><html lang="ja"><head><meta charset="Shift_JIS"><title>お知らせ | 公的個人認証サービス</title></head>
<body><header>現在時刻 {clock}</header><h1>お知らせ</h1>
<main id="notices"><ul>
<li>2024年10月7日 <a href="/news/20241007.html">【10月12日（土）1時〜6時】マイナポータルの計画停止のお知らせ</a></li>
<li>令和6年10月1日 <a href="/news/20241001.html">システムメンテナンスのお知らせ</a>
<p>令和6年10月19日（土）22時00分から翌日6時00分まで、システムメンテナンスのため発行・更新を停止します。</p></li>
{extra}</ul></main></body></html>"""


def test_a_watched_page_gives_items_windows_and_skips_changes_outside_its_region(server, sessions, now):
    state = {"clock": "09:00", "extra": ""}
    server.routes["/jlis"] = Route(lambda h: None if _page(h, state) else None)
    source = SourceConfig("jlis", server.url("/jlis"), kind="page", selector="#notices", service="certificate",
                          publisher="J-LIS")
    with make_client(POLICY) as client, Collector(sessions, client, POLICY) as collector:
        (first,) = collector.collect_round([source], now=now)
        state["clock"] = "10:00"  # outside the watched region
        (second,) = collector.collect_round([source], now=now + timedelta(hours=1))
        state["extra"] = '<li>2024年10月15日 <a href="/news/20241015.html">マイナンバーカード交付窓口の臨時休止</a></li>'
        (third,) = collector.collect_round([source], now=now + timedelta(hours=2))
    assert (first.outcome, first.new_items) == ("new", 2)
    assert second.outcome == "unchanged"
    assert (third.outcome, third.new_items) == ("new", 1)
    with sessions.begin() as s:
        items = dict(s.execute(select(Item.title, Item.published_at)).all())
        windows = {(w.service, w.starts_at, w.ends_at) for w in windows_between(s, now - timedelta(days=30), now + timedelta(days=30))}
    # Shift_JIS has no 〜 (U+301C): the page's wave dash comes back as ～ (U+FF5E), as on real pages
    assert items["【10月12日（土）1時～6時】マイナポータルの計画停止のお知らせ"] == _at("2024-10-07 00:00")
    assert items["システムメンテナンスのお知らせ"] == _at("2024-10-01 00:00")
    assert windows == {("portal", _at("2024-10-12 01:00"), _at("2024-10-12 06:00")),
                       ("certificate", _at("2024-10-19 22:00"), _at("2024-10-20 06:00"))}


def _page(handler, state) -> None:
    body = PAGE.format(**state).encode("cp932")
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")  # no charset: the page's own <meta charset> decides
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
