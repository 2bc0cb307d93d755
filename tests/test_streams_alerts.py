"""Stream alerts on the simulated clock: posts go through the stream store path (save_batch), are labeled by
the model, counted in five-minute bins and watched by the seasonal detector. A burst of trouble posts about
one service raises its alert within 15 minutes of its first post; ten days of ordinary chatter raise none."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from classifier.jobs import tag_items
from collector.streams.config import StreamConfig
from collector.streams.events import Post
from collector.streams.intake import Batch
from collector.streams.save import save_batch
from reports.spikes import SpikeParams
from reports.stream_alerts import bin_end, detect_bins, evaluate_stream_alerts, firings, moving_hours
from store import clock
from store import streams as store_streams
from store.alerts import all_alerts
from store.stream_signals import stream_series

START = datetime(2024, 9, 20, 15, 0, tzinfo=timezone.utc)  # a Saturday, midnight in Tokyo
DAYS = 10
BURST_AT = START + timedelta(days=DAYS, hours=1, minutes=2)  # 10:02 Tokyo time on a Tuesday
CHATTER = {  # service: ordinary posts (mostly fine, some personal trouble), per daytime hour
    "health_insurance": (["マイナ保険証で受診した、スムーズだった", "マイナ保険証の登録を薬局でした"],
                         ["マイナ保険証が読み取れなかった、受付で待たされた"], 2.0, 0.25),
    "portal": (["マイナポータルで医療費の情報を見た", "マイナポータルで年金の記録を確認"],
               ["マイナポータルにログインできない、エラーが出る"], 1.5, 0.2),
    "card": (["マイナンバーカードの更新に行ってきた"], ["マイナンバーカードの暗証番号を忘れてロックされた"], 1.0, 0.1),
    "convenience_store": (["コンビニ交付で住民票を取った、便利"], [], 0.6, 0.0),
}
BURST = ["マイナポータルにつながらない、エラーばかり", "マイナポータルが落ちてる？ログインできない",
         "マイナポータル 障害 つながりにくい アクセス集中", "マイナポータルに全然つながらない、何回やってもエラーになる"]
CONFIG = StreamConfig(name="bsky", endpoint="wss://jetstream.example/subscribe")


def _rate(hour_utc: int, per_hour: float) -> float:
    local = (hour_utc + 9) % 24
    return per_hour if 8 <= local < 22 else per_hour * 0.15


class Poster:
    def __init__(self, sessions, source_id: int):
        self.sessions, self.source_id, self.n = sessions, source_id, 0

    def post(self, texts: list[tuple[str, datetime, int]]) -> None:
        batch = Batch()
        for text, when, author in texts:
            self.n += 1
            did = f"did:plc:{author:024x}"
            batch.posts.append(Post(key=f"at://{did}/app.bsky.feed.post/3k{self.n:011d}",
                                    url=f"https://bsky.app/profile/{did}/post/3k{self.n:011d}", author=did,
                                    text=f"{text} ({self.n})", created=when, langs=("ja",)))
        batch.cursor, batch.cursor_at = str(int(max(w for _, w, _ in texts).timestamp() * 1e6)), texts[-1][1]
        with self.sessions.begin() as session:
            save_batch(session, self.source_id, CONFIG, batch, now=clock.now())


def _chatter(poster: Poster, rng: random.Random, start: datetime, hours: int) -> None:
    for h in range(hours):
        hour = start + timedelta(hours=h)
        texts = []
        for fine, trouble, per_hour, trouble_per_hour in CHATTER.values():
            for pool, rate in ((fine, per_hour), (trouble, trouble_per_hour)):
                k = sum(rng.random() < _rate(hour.hour, rate) / 4 for _ in range(4)) if pool else 0
                texts += [(rng.choice(pool), hour + timedelta(seconds=rng.uniform(0, 3600)), rng.randrange(10**6))
                          for _ in range(k)]
        if texts:
            poster.post(sorted(texts, key=lambda t: t[1]))


@pytest.fixture
def chatter(sessions, model):
    with sessions.begin() as session:
        source_id = store_streams.register_stream(session, name="bsky", url=CONFIG.endpoint, kind="jetstream",
                                                  now=START)
    poster = Poster(sessions, source_id)
    _chatter(poster, random.Random(15), START, DAYS * 24 + 1)
    tag_items(sessions, model, now=START + timedelta(days=DAYS))
    return poster


def test_ten_days_of_ordinary_chatter_raise_no_stream_alert(sessions, model, chatter):
    end = START + timedelta(days=DAYS, hours=1)
    with sessions.begin() as session:
        series = {f"stream_trouble:{k}": v for k, v in
                  stream_series(session, model.version, START, end, signal="trouble").items()}
    # trouble posts are part of ordinary chatter: about seven a day about the portal and マイナ保険証 (a forgotten
    # PIN is a person's trouble, not the system's, and the model says so)
    assert sum(sum(v.values()) for v in series.values()) > 50
    assert all(sum(series[f"stream_trouble:{k}"].values()) > 20 for k in ("portal", "health_insurance"))
    # detect_spikes is causal (each hour is judged on the history before it), so one scan per alignment of the
    # moving hour finds every episode that the evaluations every five minutes of those ten days would find
    for minutes in range(0, 60, 5):
        episodes = detect_bins(series, start=START, now=end - timedelta(minutes=minutes), params=SpikeParams(),
                               warm_from=START)
        assert [e for e in episodes if any(h.fire for h in e.hours)] == []
    for step in range(0, 12 * 6):  # and the real evaluation, every five minutes, over the last six hours
        assert evaluate_stream_alerts(sessions, model_version=model.version, now=end - timedelta(minutes=5 * step),
                                      deliver=False) == []
    with sessions.begin() as session:
        assert all_alerts(session) == []


def test_a_burst_of_trouble_posts_alerts_within_15_minutes(sessions, model, chatter):
    rng = random.Random(2)
    now = BURST_AT.replace(minute=0)
    fired = None
    while fired is None and now <= BURST_AT + timedelta(minutes=30):
        # two posts a minute from different accounts, from BURST_AT on; the classify step runs, then alerts
        new = [(rng.choice(BURST), BURST_AT + timedelta(seconds=30 * i), 2_000_000 + i)
               for i in range(60) if now - timedelta(minutes=5) <= BURST_AT + timedelta(seconds=30 * i) < now]
        if new:
            chatter.post(new)
        tag_items(sessions, model, now=now)
        events = evaluate_stream_alerts(sessions, model_version=model.version, now=now, deliver=False)
        fired = next((e.alert for e in events if e.kind == "firing"), None)
        now += timedelta(minutes=5)
    assert fired is not None, "no alert within 30 minutes"
    assert fired.series == "stream_trouble:portal" and fired.service == "portal"
    assert fired.fired_at - BURST_AT <= timedelta(minutes=15)
    assert fired.started_at <= BURST_AT + timedelta(minutes=5)


def test_moving_hours_end_at_the_last_complete_bin():
    t = datetime(2024, 10, 2, 1, 0, tzinfo=timezone.utc)
    bins = {t + timedelta(minutes=5 * i): 1 for i in range(24)}  # 01:00 .. 02:55
    assert bin_end(datetime(2024, 10, 2, 2, 17, 30, tzinfo=timezone.utc)) == datetime(2024, 10, 2, 2, 15, tzinfo=timezone.utc)
    assert moving_hours(bins, timedelta(minutes=15)) == {t - timedelta(hours=1): 3, t: 12, t + timedelta(hours=1): 9}


def test_firings_give_the_first_evaluation_that_saw_each_burst():
    start = datetime(2024, 9, 1, 15, 0, tzinfo=timezone.utc)
    rng = random.Random(3)
    bins = {}
    for i in range(14 * 288):  # two weeks of quiet five-minute bins: a post now and then
        if rng.random() < 0.02:
            bins[start + timedelta(minutes=5 * i)] = 1
    burst = start + timedelta(days=12, hours=1, minutes=20)
    for i in range(6):
        bins[burst + timedelta(minutes=5 * i)] = 3
    found = firings({"stream_trouble:portal": bins}, start=start, end=start + timedelta(days=14), warm_from=start)
    assert len(found) == 1 and found[0][0] == "stream_trouble:portal"
    assert burst < found[0][1] <= burst + timedelta(minutes=15)
