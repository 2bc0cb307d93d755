"""Ingest benchmark: entries per second through parse -> dedup -> store for a 100,000-entry backlog,
against feedparser's own parse-only speed on the same feed bodies.

    .venv/bin/python bench/ingest.py [--entries 100000] [--per-feed 100]

The backlog is synthetic but shaped like the real thing: 1,000 feed documents (RSS 2.0 and RSS 1.0/RDF)
from 60 outlets over a year, Japanese headlines, a quarter of them wire stories that several outlets
carry (so story clustering has work to do), tracking parameters on links. Ingest is the collector's own
path: ``parse_feed`` (charset handling, feedparser, dates) then ``save_entries`` (canonical URLs, title
keys, GUIDs, relevance gate, story clustering, maintenance notices, one transaction per feed) into a
fresh SQLite store. The store's Japanese search index is filled afterwards in batches (by the classify
job, as in production): its rate is printed on its own line, not folded into ingest.
Target: ingest >= 70% of feedparser's parse-only rate.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import feedparser  # noqa: E402

from collector.jobs import save_entries  # noqa: E402
from collector.parse import parse_feed  # noqa: E402
from collector.sources import SourceConfig  # noqa: E402
from collector.stories import StoryIndex  # noqa: E402
from store import sources as store_sources  # noqa: E402
from store.db import make_sessions  # noqa: E402
from store.search import index_pending  # noqa: E402

START = datetime(2023, 10, 1, tzinfo=timezone.utc)
DAYS = 365  # a year of backlog: about 270 entries a day
SUBJECTS = ["全国", "東京都", "大阪市", "札幌市", "福岡県", "横浜市", "名古屋市", "広島県", "仙台市", "那覇市", "デジタル庁",
            "厚労省", "総務省", "J-LIS", "日銀", "政府", "与党", "野党", "県警", "医師会", "薬剤師会", "市教委", "気象庁",
            "国交省", "経産省", "消費者庁", "金融庁", "知事", "市長", "首相"]
TOPICS = ["マイナポータル", "マイナ保険証", "マイナンバーカード", "電子証明書", "コンビニ交付", "公金受取口座", "マイナポイント",
          "オンライン資格確認", "スマホ用電子証明書", "マイナ免許証", "日経平均", "台風", "障害者雇用", "マイナス金利", "新型車",
          "鉄道ダイヤ", "転職市場", "プロ野球", "大統領選", "円相場", "物価", "最低賃金", "インフルエンザ", "半導体", "観光客",
          "米価", "電気料金", "地震対策", "少子化対策", "防衛費"]
EVENTS = ["つながりにくい状態続く", "システム障害で停止", "一時停止を発表", "利用登録が急増", "誤登録が判明", "更新に遅れ",
          "新機能を発表", "利用率が上昇", "窓口が混雑", "不具合で再発行", "説明会を開催", "申請が殺到", "見直しを検討",
          "過去最高を更新", "前年を下回る", "対策を強化", "原因を調査", "復旧の見通し立たず", "運用を再開", "負担増に懸念",
          "方針を転換", "調査結果を公表", "値上げへ", "導入を延期", "批判が相次ぐ", "支援策を拡充", "影響が拡大", "期限を延長"]
DETAILS = ["専門家「丁寧な説明を」", "住民から戸惑いの声", "来月から運用", "年内に結論", "来年度予算に計上", "現場は困惑",
           "利用者に注意呼びかけ", "週明けにも判断", "関係者への取材で判明", "影響は限定的", "詳細は調査中", "改善策を提示",
           "前例のない対応", "自治体に通知", "夜間も対応", "担当者が謝罪", "市民団体が要望", "業界団体が反発"]
NOUNS = list("山川田中村林森池橋本石井上下町港駅港湾空港市場工場学校病院役所公園図書館")


def headline(rng: random.Random, n: int) -> str:
    return (f"{rng.choice(SUBJECTS)}、{rng.choice(TOPICS)}{rng.choice(['で', 'が', 'の'])}{rng.choice(EVENTS)}"
            f"　{rng.choice(DETAILS)}（{''.join(rng.sample(NOUNS, 2))}{n % 97}）")


def make_backlog(total: int, per_feed: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(outlet, body) feed documents holding ``total`` entries."""
    rng = random.Random(seed)
    outlets = [f"outlet{n:02d}" for n in range(60)]
    entries: dict[str, list[tuple[str, str, datetime]]] = {o: [] for o in outlets}
    n = 0
    while n < total:
        when = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        title = headline(rng, n)
        carriers = rng.sample(outlets, rng.randint(3, 6)) if rng.random() < 0.08 else [rng.choice(outlets)]
        for outlet in carriers:  # a wire story: each outlet trims or decorates the headline its own way
            variant = title if outlet == carriers[0] else rng.choice([title, f"【速報】{title}", title.replace("、", " "),
                                                                        title.rsplit(" ", 1)[0]])
            entries[outlet].append((variant, f"https://{outlet}.example.jp/news/{n}?utm_source=rss&amp;ref=rss",
                                    when + timedelta(minutes=rng.randint(0, 90))))
            n += 1
    feeds = []
    for outlet, rows in entries.items():
        rows.sort(key=lambda r: r[2])
        for i in range(0, len(rows), per_feed):
            feeds.append((outlet, (_rdf if len(feeds) % 5 == 0 else _rss)(outlet, rows[i:i + per_feed])))
    return feeds


def _rss(outlet, rows) -> bytes:
    items = "".join(
        f"<item><title>{t}</title><link>{u}</link><guid isPermaLink=\"true\">{u.split('?')[0]}</guid>"
        f"<pubDate>{w.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>"
        f"<description><![CDATA[<p>{t}。関係者によると、詳しい原因を調べている。</p>]]></description></item>"
        for t, u, w in rows)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{outlet}</title>'
            f"<link>https://{outlet}.example.jp/</link><description>{outlet}</description>{items}</channel></rss>").encode()


def _rdf(outlet, rows) -> bytes:
    lis = "".join(f'<rdf:li rdf:resource="{u}"/>' for _, u, _ in rows)
    items = "".join(
        f'<item rdf:about="{u}"><title>{t}</title><link>{u}</link><description>{t}。詳しく調べている。</description>'
        f"<dc:date>{w.isoformat()}</dc:date></item>" for t, u, w in rows)
    return ('<?xml version="1.0" encoding="UTF-8"?><rdf:RDF xmlns="http://purl.org/rss/1.0/" '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<channel rdf:about="https://{outlet}.example.jp/"><title>{outlet}</title><link>https://{outlet}.example.jp/</link>'
            f"<description>{outlet}</description><items><rdf:Seq>{lis}</rdf:Seq></items></channel>{items}</rdf:RDF>").encode()


def parse_only(feeds) -> tuple[int, float]:
    started, count = time.perf_counter(), 0
    for _outlet, body in feeds:
        parsed = feedparser.parse(io.BytesIO(body), response_headers={"content-type": "application/xml; charset=utf-8",
                                                                       "content-location": "https://example.jp/"})
        count += len(parsed.entries)
    return count, time.perf_counter() - started


def ingest(feeds, sessions) -> tuple[int, int, float]:
    now = START + timedelta(days=DAYS + 1)
    stories = StoryIndex()
    with sessions.begin() as s:
        ids = {o: store_sources.upsert_source(s, name=o, url=f"https://{o}.example.jp/rss", kind="feed", publisher=o,
                                              interval_minutes=60).id for o in {o for o, _ in feeds}}
    started, seen, stored = time.perf_counter(), 0, 0
    for outlet, body in feeds:
        source = SourceConfig(outlet, f"https://{outlet}.example.jp/rss", publisher=outlet)
        entries = parse_feed(body, url=source.url, content_type="application/rss+xml", now=now)
        seen += len(entries)
        with sessions.begin() as s:
            stored += save_entries(s, ids[outlet], source, entries, now=now, stories=stories)
    return seen, stored, time.perf_counter() - started


def count_stories(db: Path) -> tuple[int, int]:
    import sqlite3

    c = sqlite3.connect(db)
    stories = c.execute("SELECT count(*) FROM stories").fetchone()[0]
    multi = c.execute("SELECT count(*) FROM (SELECT story_id FROM items GROUP BY story_id "
                      "HAVING count(DISTINCT publisher) > 1)").fetchone()[0]
    return stories, multi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--per-feed", type=int, default=100)
    args = ap.parse_args()
    feeds = make_backlog(args.entries, args.per_feed)
    total_bytes = sum(len(b) for _, b in feeds)
    print(f"backlog: {sum(b.count(b'<item>') + b.count(b'<item ') for _, b in feeds):,} entries in {len(feeds):,} feeds, "
          f"{total_bytes / 1e6:.1f} MB")
    n, seconds = parse_only(feeds)
    parse_rate = n / seconds
    print(f"feedparser, parse only:                 {parse_rate:9,.0f} entries/s ({n:,} in {seconds:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        sessions = make_sessions(f"sqlite:///{db}")
        seen, stored, seconds = ingest(feeds, sessions)
        stories, multi = count_stories(db)
        started = time.perf_counter()
        indexed = index_pending(sessions)
        index_seconds = time.perf_counter() - started
    rate = seen / seconds
    print(f"mynawatch ingest (parse, dedup, store):  {rate:9,.0f} entries/s ({seen:,} in {seconds:.1f} s; "
          f"{stored:,} items, {stories:,} stories, {multi:,} with several publishers)")
    print(f"then the search index, batch step:       {indexed / index_seconds:9,.0f} items/s ({indexed:,} in "
          f"{index_seconds:.1f} s; run by the classify job and by `mynawatch search`)")
    n, seconds = parse_only(feeds)  # again: the machine may be shared, take the mean of both runs
    parse_rate = (parse_rate + n / seconds) / 2
    print(f"feedparser, parse only (second run):    {n / seconds:9,.0f} entries/s; mean {parse_rate:,.0f}")
    ratio = rate / parse_rate
    print(f"ingest / parse-only: {ratio:.0%} (target >= 70%): {'ok' if ratio >= 0.7 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
