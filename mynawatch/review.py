"""`mynawatch review`: a person walks through the items the model is least sure of, or where the phrase
rules and the model disagree, newest first, and answers each one; every answer is recorded as a
correction at once (it wins in the next report, count and alert).

The queue and the answers are pure functions (``review_queue``, ``parse_answer``, ``choose``); the
terminal loop (``run_review``) only reads lines, prints and records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Iterable

from reports.notices import TOKYO
from store.clean import one_line
from store.records import Cause, Label, LabeledItem, Sentiment, Service

REVIEW_FLOOR = 0.6  # an axis whose probability is below this is one the model is unsure of
AXES = {"services": list(Service), "cause": list(Cause), "sentiment": list(Sentiment)}
HELP = """keys (then Enter):
  Enter or y   the label is right: record it as shown, next item
  r            relevance: about the systems or not (turning it on asks for the services)
  s [CODES]    services: codes or numbers from the list, e.g. `s 1 3` or `s portal card`
  c [CODE]     cause: a code or a number from the list, e.g. `c 2` or `c defect`
  t [CODE]     tone (sentiment): a code or a number, e.g. `t negative`
  n            skip this item for now (it stays in the queue)
  ?            this help
  q            quit (every answer so far is recorded)
Each change is recorded at once; Enter then moves on."""


@dataclass(frozen=True)
class Queued:
    """An item waiting for review: its label and why it is asked about."""

    item: LabeledItem
    text: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """What a line typed by the reviewer means.

    kind: confirm | skip | quit | help | set (``label`` is the new label) | ask (show the list of ``axis``
    and read a choice) | error (``message`` says why)."""

    kind: str
    label: Label | None = None
    axis: str | None = None
    message: str = ""


def reasons_for(label: Label, rules: Iterable[str], *, floor: float = REVIEW_FLOOR) -> list[str]:
    """Why an item is worth a person's look: axes the model is unsure of, and phrase rules (title or
    body; hashtags aside) that name a service the label does not list, or a cause it did not choose
    (when no cause rule agrees with the model, or when one in the title names another cause)."""
    scores = label.scores or {}
    out = []
    rel = _confidence(scores, "relevant")
    if rel is not None and rel < floor:
        out.append(f"unsure whether it is about the systems ({rel:.2f})")
    if label.relevant:
        for axis, what in (("cause", "the cause"), ("sentiment", "the tone")):
            conf = _confidence(scores, axis)
            if conf is not None and conf < floor:
                out.append(f"unsure of {what} ({conf:.2f})")
        for code, p in (scores.get("services") or {}).items():
            if 1 - floor < p < floor:
                out.append(f"unsure whether it is about {code} ({p:.2f})")
    fired = {rule.split(":", 1)[1] for rule in rules if rule[:2] in ("T:", "B:")}
    named = sorted({r.split(":", 1)[1] for r in fired if r.startswith("svc:")} - {str(Service.GENERAL)})
    if label.relevant:
        missing = [code for code in named if code not in {str(s) for s in label.services}]
        if missing:
            out.append(f"the rules name {', '.join(missing)}, not listed")
        # against the model: no cause rule agrees with it, or one in the title names another cause
        causes = sorted({r.split(":", 1)[1] for r in fired if r.startswith("cause:")})
        in_title = sorted({r[len("T:cause:"):] for r in rules if r.startswith("T:cause:")} - {str(label.cause)})
        against = in_title if str(label.cause) in causes else causes
        if against:
            out.append(f"a rule says cause {' or '.join(against)}, the model {label.cause}")
    elif named and not any(r.startswith("lookalike:") for r in fired):
        out.append(f"the rules name {', '.join(named)}, the model says not about the systems")
    return out


def _confidence(scores: dict, axis: str) -> float | None:
    value = scores.get(axis)
    return float(value["confidence"]) if isinstance(value, dict) and "confidence" in value else None


def review_queue(rows: list[tuple[LabeledItem, str]], rules: list[list[str]], *, service: str | None = None,
                 floor: float = REVIEW_FLOOR) -> list[Queued]:
    """The items (in the order given: newest first) that have a reason to be reviewed; with ``service``,
    only those whose label lists it or whose rules name it."""
    out = []
    for (item, text), fired in zip(rows, rules):
        if service and service not in {str(s) for s in item.label.services} \
                and not any(r[2:] == f"svc:{service}" for r in fired):
            continue
        reasons = reasons_for(item.label, fired, floor=floor)
        if reasons:
            out.append(Queued(item, text, tuple(reasons)))
    return out


def parse_answer(line: str, label: Label) -> Answer:
    """One typed line against the label shown."""
    words = line.replace(",", " ").split()
    key, rest = (words[0].lower(), " ".join(words[1:])) if words else ("", "")
    if key in ("", "y", "yes", "ok"):
        return Answer("confirm", label) if not rest else Answer("error", message=f"{_echo(line.strip())}: y takes nothing")
    simple = {"n": "skip", "skip": "skip", "q": "quit", "quit": "quit", "?": "help", "h": "help", "help": "help"}
    if key in simple:
        return Answer(simple[key])
    if key == "r":
        if label.relevant:
            return Answer("set", _human(label, relevant=False, services=(), cause=Cause.NONE))
        return Answer("ask", axis="services")
    axis = {"s": "services", "c": "cause", "t": "sentiment"}.get(key)
    if axis is None:
        return Answer("error", message=f"{_echo(key)}: not a key (? shows them)")
    return choose(axis, rest, label) if rest else Answer("ask", axis=axis)


def choose(axis: str, text: str, label: Label) -> Answer:
    """A choice from the list of ``axis`` (codes or the numbers shown by ``render_choices``) applied to ``label``."""
    options = AXES[axis]
    picked = []
    for word in text.replace(",", " ").split():
        if word.isdecimal() and 1 <= int(word) <= len(options):  # isdigit() let ² through, which int() refuses
            picked.append(options[int(word) - 1])
        elif word in {str(o) for o in options}:
            picked.append(type(options[0])(word))
        else:
            return Answer("error", message=f"{_echo(word)}: not a {axis} code or a number from 1 to {len(options)}")
    if not picked:
        return Answer("error", message=f"no {axis} chosen")
    if axis == "services":
        return Answer("set", _human(label, relevant=True, services=tuple(dict.fromkeys(picked))))
    if len(picked) > 1:
        return Answer("error", message=f"one {axis}, not {len(picked)}")
    if axis == "cause":
        if not label.relevant and picked[0] != Cause.NONE:
            return Answer("error", message="an item not about the systems has cause none: turn relevance on (r) first")
        return Answer("set", _human(label, cause=picked[0]))
    return Answer("set", _human(label, sentiment=picked[0]))


ECHOED = 40  # characters of a bad answer shown back


def _echo(text: str) -> str:
    """A typed answer quoted back: its first ECHOED characters, control characters escaped."""
    return repr(text[:ECHOED] + "…" if len(text) > ECHOED else text)


def _human(label: Label, **changes) -> Label:
    return replace(label, scores={"human": True}, **changes)


def render_choices(axis: str) -> str:
    return "  ".join(f"{n}:{o}" for n, o in enumerate(AXES[axis], 1))


def render_label(label: Label) -> str:
    if not label.relevant:
        return f"not about the systems · tone {label.sentiment}"
    return (f"services {', '.join(str(s) for s in label.services)} · cause {label.cause} · "
            f"tone {label.sentiment}")


def render_item(q: Queued, position: int, total: int) -> str:
    item = q.item
    when = item.published.astimezone(TOKYO).isoformat(sep=" ", timespec="minutes")
    text = one_line(q.text)
    lines = [f"[{position}/{total}] #{item.item_id}  {when}  {one_line(item.publisher)}",
             f"  {one_line(item.title)}"]
    if text:
        lines.append(f"  {text[:160]}{'…' if len(text) > 160 else ''}")
    lines += [f"  label:  {render_label(item.label)}", f"  queued: {'; '.join(q.reasons)}"]
    return "\n".join(lines)


@dataclass
class Tally:
    recorded: int = 0  # answers recorded (a change, or a label confirmed)
    skipped: int = 0
    waiting: int = 0  # items of the queue with no answer yet


def run_review(queue: list[Queued], record: Callable[[int, Label], None], *, ask: Callable[[str], str | None],
               say: Callable[[str], None]) -> Tally:
    """The loop: show each queued item, read answers, ``record`` (item id, label) each one at once.
    ``ask`` returns None at the end of input (taken as quit)."""
    tally = Tally()
    answered = set()
    if not queue:
        say("no item is waiting for review")
        return tally
    say(f"{len(queue)} item(s) waiting for review (? for help)")
    for position, q in enumerate(queue, 1):
        label = q.item.label
        say(render_item(q, position, len(queue)))
        answer = Answer("help")
        while answer.kind not in ("confirm", "skip", "quit"):
            line = ask("> ")
            answer = Answer("quit") if line is None else parse_answer(line, label)
            if answer.kind == "ask":
                say(f"  {answer.axis}: {render_choices(answer.axis)}")
                picked = ask(f"{answer.axis}> ")
                answer = Answer("quit") if picked is None else choose(answer.axis, picked, label)
            if answer.kind == "help":
                say(HELP)
            elif answer.kind == "error":
                say(f"  {answer.message}")
            elif answer.kind == "set":
                label = answer.label
                record(q.item.item_id, label)
                answered.add(q.item.item_id)
                tally.recorded += 1
                say(f"  recorded: {render_label(label)} (Enter: next item)")
            elif answer.kind == "confirm" and q.item.item_id not in answered:
                record(q.item.item_id, _human(label))
                answered.add(q.item.item_id)
                tally.recorded += 1
                say("  recorded as shown")
        tally.skipped += answer.kind == "skip"
        if answer.kind == "quit":
            break
    tally.waiting = len(queue) - len(answered)
    say(f"{tally.recorded} answer(s) recorded, {tally.skipped} skipped, {tally.waiting} still waiting; "
        "reports use the answers now")
    return tally


def queue_of(sessions, version: str, *, since: datetime, service: str | None = None) -> list[Queued]:
    """The review queue of a store: its items since ``since`` labeled by ``version`` and not by a person."""
    from classifier.model import analyze_all
    from store import labels as store_labels

    with sessions.begin() as session:
        rows = list(store_labels.model_labeled(session, version, since))
    docs = analyze_all([(item.title, text) for item, text in rows])
    return review_queue(rows, [d.rules for d in docs], service=service)
