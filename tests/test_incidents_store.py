"""Incidents in the store, on SQLite and PostgreSQL: derived from labeled items, saved, found again by
incident_for, read through the views; a second recompute changes nothing, a relabel changes the incident."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, text

from reports.incidents import recompute_incidents
from store import incidents as store_incidents
from store.tables import Classification, ClassificationService, Item, ServedModel, Source, Story

T0 = datetime(2024, 10, 1, 15, tzinfo=timezone.utc)  # 2024-10-02 00:00 in Tokyo
H = timedelta(hours=1)
MODEL = "m-1"


def _fill(session) -> dict[str, int]:
    session.add(ServedModel(id=1, model_version=MODEL, served_since=T0))
    news = Source(name="news", url="https://news.example.jp/rss", kind="feed", publisher="通信社")
    city = Source(name="city", url="https://city.example.jp/rss", kind="feed", publisher="さくら市")
    session.add_all([news, city])
    session.flush()
    n = 0

    def add(when, source, title, cause, sentiment, service="portal", url=None):
        nonlocal n
        n += 1
        story = Story(title=title, first_seen_at=when)
        session.add(story)
        session.flush()
        item = Item(source_id=source.id, story_id=story.id, canonical_url=url or f"https://news.example.jp/{n}", title=title,
                    publisher=source.publisher, title_key=f"k{n}", published_at=when, fetched_at=when, gate="pass")
        session.add(item)
        session.flush()
        c = Classification(item_id=item.id, model_version=MODEL, relevant=True, cause=cause, sentiment=sentiment,
                           confidence=0.9, scores="{}", created_at=when)
        c.services.append(ClassificationService(service=service))
        session.add(c)
        session.flush()
        return item.id

    for hour in range(0, 24 * 6, 7):  # six quiet days: now and then a complaint
        add(T0 - timedelta(days=6) + hour * H, news, f"背景 {hour}", "unknown", "negative")
    ids = {}
    start = T0 + 9 * H  # 2024-10-02 09:00 Tokyo
    ids["first"] = add(start + timedelta(minutes=5), news, "マイナポータル つながらない 0", "load", "negative")
    for k in range(1, 24):
        add(start + timedelta(minutes=5 + 10 * k), news, f"マイナポータル つながりにくい {k}", "load", "negative")
    ids["official"] = add(start + timedelta(minutes=50), city, "マイナポータルが利用しにくい状況について", "load", "neutral")
    ids["recovery"] = add(start + 5 * H, news, "マイナポータル 復旧", "load", "positive")
    add(start + 5 * H + timedelta(minutes=20), news, "マイナポータル 通常どおり利用可能に", "load", "positive")
    return ids


def _snapshot(session):
    return (session.execute(text("SELECT * FROM incident_records ORDER BY id")).all(),
            session.execute(text("SELECT * FROM incident_item_records ORDER BY incident_id, item_id")).all())


def test_incidents_are_derived_saved_and_found_on_both_engines(engine_sessions):
    sessions = engine_sessions
    with sessions.begin() as s:
        ids = _fill(s)
    now = T0 + 2 * 24 * H
    with sessions.begin() as s:
        found = recompute_incidents(s, model_version=MODEL, now=now, official_sources=frozenset({"city"}))
    assert [i.id for i in found] == ["2024-10-02T09-portal"]
    with sessions.begin() as s:
        inc = store_incidents.incident_for(s, "portal", T0 + 10 * H)
        assert inc is not None and inc.services == ("portal",)
        assert inc.first_item_id == ids["first"] and inc.start == T0 + 9 * H + timedelta(minutes=5)
        assert inc.official_item_id == ids["official"] and inc.to_acknowledge == timedelta(minutes=45)
        assert inc.recovery_item_id == ids["recovery"] and inc.to_recover == timedelta(hours=4, minutes=55)
        assert not inc.ongoing and inc.end <= T0 + 20 * H
        assert store_incidents.incident_for(s, "card", T0 + 10 * H) is None
        rows = s.execute(text("SELECT incident_id, services, official_publisher FROM incidents")).all()
        assert [tuple(r) for r in rows] == [("2024-10-02T09-portal", "portal", "さくら市")]
        roles = dict(s.execute(text("SELECT role, count(*) FROM incident_items GROUP BY role")).all())
        assert roles["trouble"] == 25 and roles["recovery"] == 2  # the city's notice is a trouble report too
        assert [r.item_id for r in store_incidents.timeline_rows(s, inc.id) if r.official] == [ids["official"]]
        before = _snapshot(s)
    with sessions.begin() as s:
        recompute_incidents(s, model_version=MODEL, now=now, official_sources=frozenset({"city"}))
        assert store_incidents.save_incidents(s, [], since=now) == (0, 0, 0)
    with sessions.begin() as s:
        assert _snapshot(s) == before
    # a person relabels the first report as not trouble: the incident starts later, under a new id
    with sessions.begin() as s:
        c = s.scalar(select(Classification).where(Classification.item_id == ids["first"]))
        c.cause = "none"
    with sessions.begin() as s:
        found = recompute_incidents(s, model_version=MODEL, now=now, official_sources=frozenset({"city"}))
        assert [i.start for i in found] == [T0 + 9 * H + timedelta(minutes=15)]
        assert [r[0] for r in s.execute(text("SELECT id FROM incident_records")).all()] == [found[0].id]
