"""Identity (canonical URLs, title keys, GUIDs) and story clustering across publishers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.dedup import canonical_url, normalize_title, shingles, similarity, title_key
from collector.jobs import save_entries
from collector.sources import SourceConfig
from collector.stories import StoryIndex
from store import items as store_items
from store.records import Entry
from store.tables import Item, Story

T = datetime(2024, 10, 2, 1, 30, tzinfo=timezone.utc)
SAMPLE_TRUTH = Path(__file__).parent.parent / "mynawatch" / "sample" / "truth"


@pytest.mark.parametrize("url,canonical", [
    ("https://Example.JP:443/n/1?utm_source=rss&utm_medium=feed#top", "https://example.jp/n/1"),
    ("https://www.watch.impress.co.jp/docs/news/1629001.html?ref=rss", "https://www.watch.impress.co.jp/docs/news/1629001.html"),
    ("https://news.yahoo.co.jp/pickup/6515113?source=rss", "https://news.yahoo.co.jp/pickup/6515113"),
    ("https://example.jp/a?id=3&from=rss&fbclid=x", "https://example.jp/a?id=3"),
    ("https://www.google.com/url?rct=j&url=https%3A%2F%2Fexample.jp%2Fn%2F2%3Futm_source%3Dx&ct=ga", "https://example.jp/n/2"),
    ("https://rd.yahoo.co.jp/rss/l/headlines/soci/?url=https://news.yahoo.co.jp/articles/abc", "https://news.yahoo.co.jp/articles/abc"),
    ("https://rdsig.yahoo.co.jp/rss/l/topics/RV=1/RU=x*https://news.yahoo.co.jp/pickup/123", "https://news.yahoo.co.jp/pickup/123"),
    ("https://news.google.com/rss/articles/CBMiAbc?oc=5", "https://news.google.com/rss/articles/CBMiAbc"),
    ("https://example.jp/search?q=マイナ&page=2", "https://example.jp/search?page=2&q=%E3%83%9E%E3%82%A4%E3%83%8A"),
])
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


def test_titles_normalize_across_width_spacing_and_a_leading_tag():
    assert normalize_title("【速報】マイナポータル、つながりにくく　ＡＢＣ") == normalize_title("マイナポータル つながりにくく abc")
    assert title_key("NHK", "マイナ保険証　トラブル") == title_key("NHK", "マイナ保険証 トラブル")
    assert title_key("NHK", "マイナ保険証 トラブル") != title_key("共同通信", "マイナ保険証 トラブル")


def _entry(n, title, url=None, guid=None, when=T):
    return Entry(url=url or f"https://outlet.example.jp/{n}", title=title, guid=guid, published=when)


def _save(sessions, source, entries, now=T):
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name=source.name, url=source.url, kind=source.kind,
                                          publisher=source.publisher, interval_minutes=60)
        return save_entries(s, state.id, source, entries, now=now)


def test_the_same_guid_with_a_new_link_is_not_a_new_item(sessions):
    source = SourceConfig("mastodon", "http://127.0.0.1/m.rss", publisher="@a@mstdn.jp")
    assert _save(sessions, source, [_entry(1, "マイナ保険証のこと", guid="tag:1")]) == 1
    assert _save(sessions, source, [_entry(2, "マイナ保険証のこと（追記）", url="https://outlet.example.jp/1b",
                                           guid="tag:1")]) == 0


def test_one_publisher_repeating_a_headline_is_one_item(sessions):
    source = SourceConfig("nhk", "http://127.0.0.1/nhk", publisher="NHK")
    entries = [_entry(1, "マイナポータル つながりにくく"), _entry(2, "マイナポータル　つながりにくく")]
    assert _save(sessions, source, entries) == 1


def test_five_outlets_one_story_and_a_different_story_apart(sessions):
    outlets = {"共同通信": "マイナポータル、つながりにくい状態続く　アクセス集中か",
               "東京新聞": "マイナポータルつながりにくい状態続く　アクセス集中か",
               "京都新聞": "【速報】マイナポータル、つながりにくい状態が続く",
               "神戸新聞": "マイナポータル つながりにくい状態続く、アクセス集中か　デジタル庁",
               "中日新聞": "マイナポータル、つながりにくい状態続く"}
    for n, (publisher, title) in enumerate(outlets.items()):
        _save(sessions, SourceConfig(f"s{n}", f"http://127.0.0.1/{n}", publisher=publisher),
              [_entry(n, title, when=T + timedelta(minutes=7 * n))])
    _save(sessions, SourceConfig("x", "http://127.0.0.1/x", publisher="日経"),
          [_entry(9, "マイナ保険証の利用率、9月は13％に"),
           _entry(10, "マイナポータル、つながりにくい状態続く", when=T + timedelta(days=5))])  # too late to join
    with sessions.begin() as s:
        assert s.scalar(select(func.count(Story.id))) == 3
        story = s.scalar(select(Item.story_id).where(Item.publisher == "共同通信"))
        assert set(s.scalars(select(Item.publisher).where(Item.story_id == story))) == set(outlets)
        assert s.get(Story, story).first_seen_at == T


def test_an_earlier_copy_moves_the_story_back_in_time(sessions):
    _save(sessions, SourceConfig("a", "http://127.0.0.1/a", publisher="A"), [_entry(1, "電子証明書の更新が停止", when=T)])
    _save(sessions, SourceConfig("b", "http://127.0.0.1/b", publisher="B"),
          [_entry(2, "電子証明書の更新が停止", when=T - timedelta(hours=2))])
    with sessions.begin() as s:
        (story,) = s.scalars(select(Story)).all()
        assert story.first_seen_at == T - timedelta(hours=2)


def test_story_index_agrees_with_comparing_every_pair_on_the_sample_month():
    """MinHash-LSH only picks candidates; the decision is the exact similarity: on the sample month's
    titles it must cluster exactly as an exhaustive comparison does."""
    rows = []
    for path in sorted(SAMPLE_TRUTH.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            r = json.loads(line)
            if r["feed"] != "google_trends":
                title = re.sub(r" - [^-]+$", "", r["title"]) if r["feed"] == "google_news" else r["title"]
                rows.append((datetime.fromisoformat(r["published"]), title))
    rows.sort()
    assert len(rows) > 300
    lsh, exhaustive = _pairs(_lsh(rows)), _pairs(_exhaustive(rows))
    assert len(exhaustive) > 100
    agreement = len(lsh & exhaustive) / len(lsh | exhaustive)
    assert agreement >= 0.97, (agreement, sorted(lsh ^ exhaustive))  # a rare pair may escape the bands


def _lsh(rows):
    index, out = StoryIndex(), []
    for when, title in rows:
        probe = index.probe(title)
        story = index.match(probe, when)
        if story is None:
            story = len(index)
            index.add(story, probe, when)
        out.append(story)
    return out


def _exhaustive(rows, window=timedelta(hours=72), threshold=0.6):
    stories, out = [], []
    for when, title in rows:
        mine, best, best_score = shingles(title), None, threshold
        for sid, (theirs, first) in enumerate(stories):
            score = similarity(mine, theirs)
            if abs(first - when) <= window and (score > best_score or score == best_score and best is None):
                best, best_score = sid, score
        if best is None:
            best = len(stories)
            stories.append((mine, when))
        out.append(best)
    return out


def _pairs(labels):
    groups = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return {p for g in groups.values() for p in combinations(g, 2)}


def test_a_pruned_index_forgets_old_stories_and_asks_the_store_again():
    index = StoryIndex()
    index.add(1, "マイナポータル障害", T - timedelta(days=30))
    index.add(2, "マイナ保険証の資格確認でエラー", T)
    index.loaded_since = T - timedelta(days=40)
    index.prune(T - timedelta(days=6))
    assert len(index) == 1 and index.match("マイナ保険証の資格確認でエラー", T) == 2
    assert index.match("マイナポータル障害", T - timedelta(days=30)) is None
    assert index.needs(T - timedelta(days=10)) and not index.needs(T - timedelta(days=5))
