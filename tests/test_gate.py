"""The relevance gate: clearly unrelated items are kept but marked, so analysts can audit what was set aside."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from collector.gate import gate_reason
from collector.jobs import save_entries
from collector.sources import SourceConfig
from store import items as store_items
from store.records import Entry
from store.tables import Item

T = datetime(2024, 10, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("title,text", [
    ("マイナポータル、つながりにくく", ""),
    ("医療機関で資格確認できず", "顔認証付きカードリーダーにエラー"),
    ("コンビニで住民票が取れない", "証明書のコンビニ交付が停止"),
    ("ＪＰＫＩの更新手続き", ""),  # full-width letters
    ("ﾏｲﾅ保険証の登録", ""),  # half-width katakana
    ("署名用電子証明書の有効期限", ""),
    ("運転免許証との一体化、来春から", "マイナンバーカードと免許証の一体化"),
    ("公金受取口座の誤登録", ""),
])
def test_items_about_the_systems_pass(title, text):
    assert gate_reason(title, text) is None


@pytest.mark.parametrize("title,text", [
    ("日銀、マイナス金利を解除", "マイナス金利政策の終了"),
    ("マイナビ調査：転職意向が過去最高", ""),
    ("マイナー競技の祭典が開幕", ""),
    ("障害者雇用率が過去最高", "民間企業で働く障害者"),
    ("大手銀行でATM障害", "全国の店舗でATMが使えず"),
    ("携帯電話の通信障害が復旧", ""),
])
def test_clearly_unrelated_items_are_marked(title, text):
    assert gate_reason(title, text) == "names none of the My Number systems"


def test_categories_count_as_text():
    assert gate_reason("今日の話題", "", ("マイナンバー",)) is None


def test_rejected_items_are_stored_for_audit_with_their_reason(sessions):
    source = SourceConfig("nhk", "http://127.0.0.1/nhk", publisher="NHK")
    entries = [Entry(url="https://ex.jp/1", title="マイナ保険証で資格確認できず", published=T),
               Entry(url="https://ex.jp/2", title="日銀、マイナス金利を解除", published=T)]
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name="nhk", url=source.url, kind="feed", publisher="NHK",
                                          interval_minutes=60)
        assert save_entries(s, state.id, source, entries, now=T) == 2
    with sessions.begin() as s:
        rows = dict(s.execute(select(Item.title, Item.gate_reason)).all())
        passed = [i.title for i in store_items.items_to_classify(s, "any-model")]
    assert rows == {"マイナ保険証で資格確認できず": None, "日銀、マイナス金利を解除": "names none of the My Number systems"}
    assert passed == ["マイナ保険証で資格確認できず"]  # the classifier only sees what passed
