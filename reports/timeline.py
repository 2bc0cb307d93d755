"""An incident's timeline as data (built from its stored items, pure) and as text and HTML for the daily
report, the digest, the monthly summary and `mynawatch incidents show`. Times are shown in Tokyo time
with their offset (``store.clock.shown``); stored text is kept to one line and escaped in HTML."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

from reports.notices import display_name
from reports.spikes import floor_hour
from store.clean import one_line, web_link
from store.clock import shown
from store.incidents import Incident, TimelineRow
from store.records import CAUSE_NAMES, Cause


@dataclass(frozen=True)
class Moment:
    """A marked point of a timeline: the first report, the official acknowledgement, the recovery report."""

    kind: str  # first | official | recovery
    at: datetime
    title: str
    publisher: str
    url: str


@dataclass(frozen=True)
class Timeline:
    incident: Incident
    hourly: dict[str, dict[datetime, int]]  # trouble stories per service and hour (UTC), the incident's items only
    moments: tuple[Moment, ...] = ()
    rows: tuple[TimelineRow, ...] = field(default=(), compare=False)

    def moment(self, kind: str) -> Moment | None:
        return next((m for m in self.moments if m.kind == kind), None)


MOMENT_NAMES = {"first": "最初の障害報告", "official": "公式の発表", "recovery": "最初の復旧報告"}


def build_timeline(incident: Incident, rows: list[TimelineRow]) -> Timeline:
    """The hourly trouble per service (distinct stories of the incident's trouble items) and its moments."""
    stories: dict[str, dict[datetime, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        if r.role == "trouble":
            for service in set(r.services) & set(incident.services):
                stories[service][floor_hour(r.published_at)].add(r.story_id)
    hourly = {s: {h: len(ids) for h, ids in hours.items()} for s, hours in stories.items()}
    by_id = {r.item_id: r for r in rows}
    moments = []
    for kind, item_id in (("first", incident.first_item_id), ("official", incident.official_item_id),
                          ("recovery", incident.recovery_item_id)):
        r = by_id.get(item_id) if item_id is not None else None
        if r is not None:
            moments.append(Moment(kind, r.published_at, r.title, r.publisher, r.url))
    return Timeline(incident, hourly, tuple(moments), tuple(rows))


def duration_ja(delta: timedelta | None) -> str:
    """``10時間33分`` (``—`` when unknown)."""
    if delta is None:
        return "—"
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}時間{minutes:02d}分" if hours else f"{minutes}分"


def duration_short(delta: timedelta | None) -> str:
    """``10h33m`` (``-`` when unknown), for the terminal."""
    if delta is None:
        return "-"
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def services_ja(incident: Incident) -> str:
    return "・".join(display_name(s) for s in incident.services)


def causes_ja(incident: Incident) -> str:
    names = []
    for c in incident.causes:
        try:
            names.append(CAUSE_NAMES[Cause(c)])
        except ValueError:
            names.append(one_line(c))
    return "、".join(names) or "—"


def headline(incident: Incident) -> str:
    """One line: services, span, peak, time to acknowledge and to recover."""
    end = "継続中" if incident.ongoing else shown(incident.end)
    return (f"{services_ja(incident)}: {shown(incident.start)}〜{end}"
            f"（ピーク {incident.peak_count} 件/時、記事群 {incident.stories}、主な原因 {causes_ja(incident)}；"
            f"公式発表まで {duration_ja(incident.to_acknowledge)}、復旧報告まで {duration_ja(incident.to_recover)}）")


def _moment_line(m: Moment, incident: Incident) -> str:
    after = f"（+{duration_ja(m.at - incident.start)}）" if m.kind != "first" else ""
    return f"{MOMENT_NAMES[m.kind]}: {shown(m.at)}{after} {one_line(m.publisher)}「{one_line(m.title)}」"


def timeline_text(t: Timeline) -> list[str]:
    """The lines of one incident in the text report."""
    lines = [f"- {headline(t.incident)}", f"    ID: {t.incident.id}"]
    lines += [f"    {_moment_line(m, t.incident)}" for m in t.moments]
    for kind in ("official", "recovery"):
        if t.moment(kind) is None:
            lines.append(f"    {MOMENT_NAMES[kind]}: なし")
    return lines


def timeline_html(t: Timeline, image: str | None) -> list[str]:
    """One incident in the HTML report: the headline, its moments as a list, its chart (``image``: a src)."""
    out = [f'<p style="margin:8px 0 2px"><b>{escape(headline(t.incident))}</b><br>'
           f'<span style="color:#666;font-size:12px">ID: {escape(t.incident.id)}</span></p><ul>']
    for m in t.moments:
        text = escape(_moment_line(m, t.incident))
        web = web_link(m.url)
        out.append(f'<li><a href="{escape(web)}">{text}</a></li>' if web else f"<li>{text}</li>")
    for kind in ("official", "recovery"):
        if t.moment(kind) is None:
            out.append(f"<li>{escape(MOMENT_NAMES[kind])}: なし</li>")
    out.append("</ul>")
    if image:
        out.append(f'<p><img src="{escape(image)}" alt="{escape("インシデントの経過: " + services_ja(t.incident))}" '
                   'width="720" style="max-width:100%;height:auto"></p>')
    return out


def chart_name(n: int) -> str:
    """The name of the n-th incident chart of a report (its file is ``<name>-<day>.png``)."""
    return f"incident{n + 1}"
