"""`mynawatch review`: the queue and the answers as pure functions, then the real command in a real
terminal (a pty): help, skip, an answer recorded, quit, and the next report counting the answer."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from classifier.jobs import tag_items
from collector.jobs import save_entries
from collector.sources import SourceConfig
from mynawatch.serving import served_version
from mynawatch.review import (HELP, Answer, choose, parse_answer, queue_of, reasons_for, render_item, review_queue,
                              run_review)
from reports.archive import read_day
from reports.daily import build_daily_report
from store import items as store_items
from store import labels as store_labels
from store.records import Cause, Entry, Label, LabeledItem, Sentiment, Service

ROOT = Path(__file__).parent.parent
DAY = date(2024, 10, 2)
NOW = datetime(2024, 10, 3, tzinfo=timezone.utc)


def label(relevant=True, services=(Service.PORTAL,), cause=Cause.LOAD, sentiment=Sentiment.NEGATIVE, *,
          rel_conf=0.99, cause_conf=0.95, sentiment_conf=0.95, service_p=None) -> Label:
    scores = {"relevant": {"p": rel_conf, "confidence": rel_conf},
              "services": service_p or {str(s): 0.97 for s in services},
              "cause": {"label": str(cause), "confidence": cause_conf},
              "sentiment": {"label": str(sentiment), "confidence": sentiment_conf}}
    return Label(relevant, tuple(services) if relevant else (), cause if relevant else Cause.NONE, sentiment, scores)


def item(n: int, lab: Label) -> LabeledItem:
    return LabeledItem(n, n, f"見出し{n}", f"https://example.jp/{n}", "テスト新聞",
                       datetime(2024, 10, 2, 3, n, tzinfo=timezone.utc), lab)


def test_sure_labels_that_the_rules_agree_with_wait_for_nobody():
    assert reasons_for(label(), ["T:svc:portal", "B:cause:load", "T:trouble"]) == []
    assert reasons_for(label(), ["T:svc:general", "H:svc:card", "H:cause:attack"]) == []  # general, hashtags aside
    assert reasons_for(label(False), ["T:svc:drivers_license", "T:lookalike:other_outage"]) == []


def test_an_unsure_axis_or_a_rule_against_the_model_queues_an_item():
    assert reasons_for(label(cause_conf=0.41), []) == ["unsure of the cause (0.41)"]
    assert reasons_for(label(sentiment_conf=0.5, rel_conf=0.55), []) == [
        "unsure whether it is about the systems (0.55)", "unsure of the tone (0.50)"]
    assert reasons_for(label(service_p={"portal": 0.9, "card": 0.48}), []) == ["unsure whether it is about card (0.48)"]
    assert reasons_for(label(), ["T:svc:convenience_store", "B:svc:portal"]) == [
        "the rules name convenience_store, not listed"]
    assert reasons_for(label(cause=Cause.DEFECT), ["B:cause:load"]) == ["a rule says cause load, the model defect"]
    assert reasons_for(label(cause=Cause.LOAD), ["T:cause:load", "B:cause:defect"]) == []  # the title agrees
    assert reasons_for(label(cause=Cause.LOAD), ["B:cause:load", "T:cause:defect", "T:cause:attack"]) == [
        "a rule says cause attack or defect, the model load"]  # the title names others
    assert reasons_for(label(False), ["T:svc:portal"]) == ["the rules name portal, the model says not about the systems"]


def test_the_queue_keeps_the_order_it_is_given_and_filters_by_service():
    rows = [(item(3, label(cause_conf=0.3)), "本文3"), (item(2, label()), ""),
            (item(1, label(services=(Service.CARD,), cause_conf=0.2)), "")]
    rules = [[], [], ["B:svc:portal"]]
    queue = review_queue(rows, rules)
    assert [q.item.item_id for q in queue] == [3, 1]
    assert [q.item.item_id for q in review_queue(rows, rules, service="card")] == [1]
    assert [q.item.item_id for q in review_queue(rows, rules, service="portal")] == [3, 1]  # 1: a rule names it
    shown = render_item(queue[0], 1, 2)
    assert "[1/2] #3  2024-10-02 12:03+09:00  テスト新聞" in shown and "本文3" in shown
    assert "queued: unsure of the cause (0.30)" in shown


def test_answers_parse_into_labels_or_clear_errors():
    cur = label()
    assert parse_answer("", cur).kind == "confirm" and parse_answer("y", cur).label == cur
    assert [parse_answer(k, cur).kind for k in ("n", "q", "?", "h", "help", "skip")] == [
        "skip", "quit", "help", "help", "help", "skip"]
    off = parse_answer("r", cur)
    assert off.kind == "set" and off.label.relevant is False and off.label.services == () \
        and off.label.cause == Cause.NONE and off.label.scores == {"human": True}
    assert parse_answer("r", off.label) == Answer("ask", axis="services")
    assert parse_answer("s 1 3", cur).label.services == (Service.HEALTH_INSURANCE, Service.CARD)
    assert parse_answer("s portal,card", cur).label.services == (Service.PORTAL, Service.CARD)
    on = parse_answer("s 2", off.label).label
    assert on.relevant and on.services == (Service.PORTAL,)
    assert parse_answer("c 2", cur).label.cause == Cause.DEFECT
    assert parse_answer("c attack", cur).label.cause == Cause.ATTACK
    assert parse_answer("t neutral", cur).label.sentiment == Sentiment.NEUTRAL
    assert parse_answer("c", cur).kind == "ask" and parse_answer("c", cur).axis == "cause"
    for bad in ("c flood", "c 11", "c 1 2", "x", "s 0", "y now"):
        assert parse_answer(bad, cur).kind == "error", bad
    assert "relevance on" in choose("cause", "defect", off.label).message


def test_the_loop_records_each_answer_at_once_and_says_what_is_left():
    queue = review_queue([(item(n, label(cause_conf=0.3)), "") for n in (3, 2, 1)], [[], [], []])
    answers = iter(["?", "n", "c", "7", "", "q"])
    recorded, said = [], []
    tally = run_review(queue, lambda i, lab: recorded.append((i, lab)), ask=lambda _p: next(answers),
                       say=said.append)
    assert [(i, lab.cause) for i, lab in recorded] == [(2, Cause.ATTACK)]
    assert (tally.recorded, tally.skipped, tally.waiting) == (1, 1, 2)
    assert said[0] == "3 item(s) waiting for review (? for help)" and HELP in said
    assert said[-1].startswith("1 answer(s) recorded, 1 skipped, 2 still waiting")
    said.clear()
    assert run_review([], recorded.append, ask=lambda _p: "q", say=said.append).waiting == 0
    assert said == ["no item is waiting for review"]
    answers = iter(["c", None])  # end of input in the middle of a choice: quit, nothing recorded
    assert run_review(queue, lambda *a: recorded.append(a), ask=lambda _p: next(answers), say=said.append).recorded == 0


# Headlines written for this test: most name a service or a cause the rest of the text argues against.
TEXTS = [
    ("マイナポータルで障害、原因はクラウド事業者側か", "デジタル庁によると、委託先のクラウドで通信障害があった。アクセス集中ではないという。"),
    ("マイナ保険証のトラブル、コンビニ交付にも影響", "カードリーダーの不具合で資格確認ができず、住民票のコンビニ交付も止まった。"),
    ("マイナンバーカードの交付窓口、混雑続く", "申請が殺到し、暗証番号の再設定にも時間がかかっている。"),
    ("公金受取口座の誤登録、職員の入力ミスも", "別人の口座が登録された例のほか、窓口での確認不足もあった。"),
    ("マイナポイントの付与が遅れる　システム改修で", "一部の利用者でポイントの付与が遅れている。原因を調査中としている。"),
    ("電子証明書の更新、スマホでもできるように", "iPhoneとAndroidで電子証明書の更新手続きができるようになった。"),
]


def fill(sessions) -> None:
    source = SourceConfig("t", "http://127.0.0.1/t", publisher="テスト新聞")
    entries = [Entry(url=f"https://example.jp/r{i}", title=t, summary=x,
                     published=datetime(2024, 10, 2, 1, tzinfo=timezone.utc) + timedelta(minutes=7 * i))
               for i, (t, x) in enumerate(TEXTS)]
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name="t", url=source.url, kind="feed", publisher="テスト新聞",
                                          interval_minutes=60)
        save_entries(s, state.id, source, entries, now=NOW)


class Terminal:
    """A command on the far side of a pseudo-terminal: ``expect`` what it prints, ``send`` what one types."""

    def __init__(self, args, **kw):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, **kw)
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} on the terminal; it shows:\n{self.seen}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the command ended
                chunk = b""
            if not chunk:
                raise AssertionError(f"the command ended without {text!r}; it showed:\n{self.seen}")
            self.seen += chunk.decode("utf-8", "replace")
        before, _, self.seen = self.seen.partition(text)
        return before + text

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")  # what the Enter key sends

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=60)
        finally:
            os.close(self.master)


def test_review_in_a_real_terminal_records_an_answer_the_next_report_counts(tmp_path, sessions, model):
    fill(sessions)
    tag_items(sessions, model, now=NOW)
    version = served_version(sessions)
    queue = queue_of(sessions, version, since=NOW - timedelta(days=30))
    assert len(queue) >= 2, [(q.item.title, q.item.label) for q in queue]
    target = queue[1].item  # the first is skipped
    with sessions.begin() as s:
        before = build_daily_report(read_day(s, model_version=version, day=DAY, now=NOW))
    cfg = tmp_path / "mynawatch.toml"
    cfg.write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    term = Terminal([sys.executable, "-m", "mynawatch.cli", "--config", str(cfg), "review", "--days", "3650"],
                    cwd=ROOT, env=dict(os.environ, LANG="C.UTF-8", PYTHONIOENCODING="utf-8"))
    try:
        term.expect(f"{len(queue)} item(s) waiting for review")
        term.expect(f"[1/{len(queue)}] #{queue[0].item.item_id}")
        term.expect("> ")
        term.send("?")
        term.expect("keys (then Enter)")
        term.expect("> ")
        term.send("n")
        shown = term.expect("> ")
        assert f"[2/{len(queue)}] #{target.item_id}" in shown and "+09:00" in shown and "queued:" in shown
        if target.label.relevant:
            cause = Cause.ATTACK if target.label.cause != Cause.ATTACK else Cause.NETWORK
            term.send("c")
            term.expect("cause: 1:load  2:defect")
            term.send(str(list(Cause).index(cause) + 1))
        else:
            term.send("r")
            term.expect("services: 1:health_insurance  2:portal")
            term.send("2")
        term.expect("recorded:")
        term.expect("> ")
        term.send("q")
        term.expect("1 answer(s) recorded, 1 skipped")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    with sessions.begin() as s:
        after = build_daily_report(read_day(s, model_version=served_version(sessions), day=DAY, now=NOW))
        (human,) = [h for h in store_labels.human_labels(s)]
    assert human[0] == target.item_id
    if target.label.relevant:
        assert after.relevant == before.relevant
        assert cause in [s.cause for s in after.top_stories if s.title == target.title]
    else:
        assert after.relevant == before.relevant + 1 and human[3].services == (Service.PORTAL,)
