"""Incidents from spans and labeled items (the pure part of reports/incidents.py) and their rendering."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from classifier.rules import RULES
from reports.incidents import (IncidentPolicy, Span, build_incident, cluster_spans, is_official, is_recovery,
                               members_of)
from reports.timeline import build_timeline, duration_ja, headline, timeline_html, timeline_text
from store.incidents import TimelineRow
from store.records import Cause, Label, LabeledItem, Sentiment, Service

T0 = datetime(2024, 10, 1, 23, tzinfo=timezone.utc)  # 2024-10-02 08:00 in Tokyo
H = timedelta(hours=1)
GAP, FOLLOWUP = 3 * H, 24 * H
WORDS = tuple(RULES["pos:recovery"])  # what the pipeline hands in


def item(n: int, minutes: int, services: str, cause: str = "load", sentiment: str = "negative", *, story: int | None = None,
         title: str = "マイナポータル つながりにくい", url: str = "", publisher: str = "NHK") -> LabeledItem:
    return LabeledItem(n, story or n, title, url or f"https://news.example.jp/{n}", publisher, T0 + timedelta(minutes=minutes),
                       Label(True, tuple(Service(s) for s in services.split(",")), Cause(cause), Sentiment(sentiment)))


def build(spans, items, sources=None, *, official=frozenset(), now=T0 + 48 * H):
    [cluster] = cluster_spans(spans, gap=GAP, followup=FOLLOWUP)
    return build_incident(cluster, items, sources or {}, policy=IncidentPolicy(), official_sources=official,
                          min_count={"portal": 3, "health_insurance": 3, "card": 3, "certificate": 3},
                          gap=GAP, until=now, now=now, recovery_words=WORDS)


def test_a_service_named_only_beside_the_lead_is_a_co_mention_not_a_member():
    spans = [Span("portal", T0, T0 + 10 * H, True, ("trouble:portal@a",)),
             Span("health_insurance", T0 + H, T0 + 5 * H, True, ("trouble:health_insurance@b",))]
    items = [item(n, 30 + 20 * n, "portal") for n in range(1, 9)]
    items += [item(20 + n, 60 + 20 * n, "portal,health_insurance") for n in range(4)]
    incident, _ = build(spans, items)
    assert incident.services == ("portal",)
    assert set(incident.alerts) == {"trouble:portal@a", "trouble:health_insurance@b"}  # the co-mention's alert is listed


def test_two_services_with_trouble_of_their_own_make_one_incident():
    spans = [Span("certificate", T0, T0 + 8 * H), Span("card", T0 + H, T0 + 9 * H)]
    items = [item(n, 40 + 10 * n, "card,certificate", "unknown") for n in range(1, 7)]
    items += [item(10 + n, 90 + 15 * n, "card", "unknown") for n in range(3)]
    items += [item(20 + n, 95 + 15 * n, "certificate", "unknown") for n in range(3)]
    incident, _ = build(spans, items)
    assert incident.services == ("card", "certificate")
    assert incident.id == "2024-10-02T08-card+certificate"
    assert incident.start == T0 + timedelta(minutes=50)  # the first trouble report, not the first flagged hour
    assert incident.causes == ("unknown",)


def test_a_rise_of_the_same_service_the_next_morning_is_a_follow_up():
    spans = [Span("portal", T0, T0 + 10 * H, True, ("a",)), Span("portal", T0 + 24 * H, T0 + 27 * H, True, ("b",))]
    clusters = cluster_spans(spans, gap=GAP, followup=FOLLOWUP)
    assert len(clusters) == 1 and len(clusters[0].followups) == 1
    other = [Span("portal", T0, T0 + 10 * H), Span("card", T0 + 24 * H, T0 + 27 * H)]
    assert len(cluster_spans(other, gap=GAP, followup=FOLLOWUP)) == 2  # another service is another incident


def test_recovery_is_the_first_report_that_recovery_stories_outnumber_and_official_is_first_official_item():
    spans = [Span("portal", T0, T0 + 10 * H)]
    items = [item(n, 10 + 30 * n, "portal") for n in range(1, 16)]  # trouble all day, every half hour
    items.append(item(50, 7 * 60 + 5, "portal", "load", "positive", title="3回目でやっと入れた"))  # mid-outage: not the recovery
    items.append(item(51, 11 * 60, "portal", "load", "positive", title="マイナポータルが復旧"))
    items.append(item(52, 11 * 60 + 10, "portal", "none", "neutral", title="マイナポータル 夕方に回復"))  # a recovery word
    items.append(item(53, 11 * 60 + 20, "portal", "load", "positive", publisher="www.digital.go.jp",
                      url="https://www.digital.go.jp/news/1", title="つながりにくい状態について（解消）"))
    incident, entries = build(spans, items)
    assert incident.recovered == T0 + 11 * H
    assert incident.recovery_item_id == 51
    assert incident.first_official == T0 + timedelta(hours=11, minutes=20)  # a page on go.jp
    assert incident.to_acknowledge == incident.first_official - incident.start
    roles = {e.item_id: e.role for e in entries}
    assert roles[50] == "recovery" and roles[1] == "trouble"
    assert {e.item_id for e in entries if e.official} == {53}


def test_an_official_source_acknowledges_and_a_negative_recovery_word_is_not_a_recovery():
    it = item(1, 0, "portal", title="午後も復旧せず")
    assert not is_recovery(it, WORDS)
    assert is_recovery(item(2, 0, "portal", "unknown", "positive", title="電子証明書システムが復旧"), WORDS)
    assert is_recovery(item(7, 0, "portal", "unknown", "neutral", title="午後1時ごろ復旧"), WORDS)
    assert not is_recovery(item(8, 0, "portal", "unknown", "neutral", title="午後1時ごろ復旧"))  # no words given
    assert not is_recovery(item(3, 0, "portal", "maintenance", "positive", title="メンテナンス終了、再開"), WORDS)
    kw = {"official_sources": frozenset({"sakura-city"}), "domains": ("go.jp", "lg.jp")}
    assert is_official(it, "sakura-city", **kw)
    assert is_official(item(4, 0, "portal", url="https://www.city.kitaura.lg.jp/x.html"), "hatena", **kw)
    assert not is_official(item(5, 0, "portal", url="https://notgo.jp.example.com/x"), "hatena", **kw)
    assert not is_official(item(6, 0, "portal", url="https://example.jp/go.jp"), "nhk", **kw)


def test_members_need_trouble_of_their_own():
    [cluster] = cluster_spans([Span("portal", T0, T0 + 4 * H), Span("card", T0, T0 + 4 * H)], gap=GAP, followup=FOLLOWUP)
    items = [item(n, 10 * n, "portal") for n in range(1, 5)] + [item(9, 30, "card")]
    assert members_of(cluster, items, min_count={"portal": 3, "card": 3}) == ["portal"]


def test_timeline_lines_and_html_show_the_moments_with_their_offsets():
    spans = [Span("portal", T0, T0 + 10 * H)]
    items = [item(n, 31 + 30 * n, "portal") for n in range(1, 6)]
    items.append(item(60, 11 * 60, "portal", "load", "positive", title="<復旧> & done"))
    incident, entries = build(spans, items)
    rows = [TimelineRow(i.item_id, e.role, e.official, i.published, i.publisher, i.title, i.url, i.story_id, "nhk",
                        tuple(str(s) for s in i.label.services), str(i.label.cause), str(i.label.sentiment))
            for i, e in zip(sorted(items, key=lambda i: i.published), entries)]
    t = build_timeline(incident, rows)
    assert sum(t.hourly["portal"].values()) == 5
    text = "\n".join(timeline_text(t))
    assert "最初の障害報告: 2024-10-02 09:01 +09:00" in text
    assert "最初の復旧報告: 2024-10-02 19:00 +09:00（+9時間59分）" in text
    assert "公式の発表: なし" in text
    html = "\n".join(timeline_html(t, "incident1-2024-10-02.png"))
    assert "&lt;復旧&gt; &amp; done" in html and "<復旧>" not in html
    assert 'src="incident1-2024-10-02.png"' in html
    assert headline(incident).startswith("マイナポータル: 2024-10-02 09:01 +09:00〜2024-10-02 18:00 +09:00")
    assert duration_ja(timedelta(minutes=75)) == "1時間15分" and duration_ja(None) == "—"
