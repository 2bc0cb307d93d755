"""The daily report: build a data object from labeled items, then render it (text, HTML). Pure."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape

from reports.signals import TOKYO, daily_stories, local_day
from store.alerts import AlertView
from store.records import CAUSE_NAMES, SENTIMENT_NAMES, Cause, LabeledItem, Sentiment, Service


@dataclass(frozen=True)
class ServiceRow:
    service: Service
    stories: int
    items: int
    publishers: int
    avg7: float
    avg28: float


@dataclass(frozen=True)
class StoryRow:
    title: str
    services: tuple[Service, ...]
    cause: Cause
    items: int
    publishers: tuple[str, ...]
    url: str
    first_seen: datetime


@dataclass(frozen=True)
class TrendRow:
    term: str
    traffic_raw: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class DailyReport:
    day: date
    collected: int
    relevant: int
    irrelevant: int
    services: list[ServiceRow]
    causes: list[tuple[Cause, int]]
    sentiment: list[tuple[Sentiment, int]]
    top_stories: list[StoryRow]
    alerts: list[AlertView]
    maintenance: list[StoryRow]
    trends: list[TrendRow] = field(default_factory=list)
    chart_cid: str | None = None

    @property
    def title(self) -> str:
        return f"マイナ関連 日次レポート {self.day:%Y年%m月%d日}"


def build_daily_report(items: list[LabeledItem], *, day: date, alerts: list[AlertView],
                       trends: list[TrendRow] = (), top: int = 10) -> DailyReport:
    """``items`` must cover the 28 days before ``day`` and ``day`` itself (Tokyo days)."""
    today = [it for it in items if local_day(it.published) == day]
    relevant = [it for it in today if it.label.relevant]
    per_day = daily_stories(items)

    def avg(service: Service, days: int) -> float:
        return sum(per_day.get(day - timedelta(d), {}).get(service, 0) for d in range(1, days + 1)) / days

    rows = []
    for service in Service:
        mine = [it for it in relevant if service in it.label.services]
        row = ServiceRow(service, len({it.story_id for it in mine}), len(mine), len({it.publisher for it in mine}),
                         round(avg(service, 7), 2), round(avg(service, 28), 2))
        if row.items or row.avg7 or row.avg28:
            rows.append(row)
    rows.sort(key=lambda r: (-r.stories, -r.avg7, r.service))
    stories = _stories(relevant)
    by_cause = Counter(s.cause for s in stories)
    return DailyReport(
        day=day, collected=len(today), relevant=len(relevant), irrelevant=len(today) - len(relevant),
        services=rows,
        causes=sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0])),
        sentiment=[(s, sum(1 for it in relevant if it.label.sentiment == s)) for s in Sentiment],
        top_stories=[s for s in stories if s.cause != Cause.MAINTENANCE][:top],
        alerts=alerts, maintenance=[s for s in stories if s.cause == Cause.MAINTENANCE],
        trends=list(trends),
    )


def _stories(items: list[LabeledItem]) -> list[StoryRow]:
    """One row per story cluster: syndicated copies folded together, biggest stories first."""
    groups: dict[int, list[LabeledItem]] = defaultdict(list)
    for it in items:
        groups[it.story_id].append(it)
    rows = []
    for members in groups.values():
        first = min(members, key=lambda it: it.published)
        causes = Counter(it.label.cause for it in members)
        services = tuple(dict.fromkeys(s for it in members for s in it.label.services))
        rows.append(StoryRow(first.title, services, causes.most_common(1)[0][0], len(members),
                             tuple(sorted({it.publisher for it in members})), first.url, first.published))
    rows.sort(key=lambda r: (-len(r.publishers), -r.items, r.first_seen))
    return rows


def _jst(when: datetime) -> str:
    return when.astimezone(TOKYO).strftime("%m/%d %H:%M")


def _alert_line(a: AlertView) -> str:
    state = "継続中" if a.status == "firing" else "解消"
    return (f"{Service(a.service).display}: {_jst(a.started_at)}〜{_jst(a.last_seen_at + timedelta(hours=1))} "
            f"ピーク {a.peak_count} 件/時（スコア {a.score:.1f}、{state}）")


def render_text(report: DailyReport) -> str:
    lines = [report.title, "=" * 40, "",
             f"収集 {report.collected} 件（関連 {report.relevant} 件、関連なし {report.irrelevant} 件）", "",
             "■ アラート"]
    lines += [f"- {_alert_line(a)}" for a in report.alerts] or ["- なし"]
    lines += ["", "■ サービス別の言及（記事群数 / 記事数 / 媒体数、7日平均・28日平均）"]
    lines += [f"- {r.service.display}: {r.stories} / {r.items} / {r.publishers}（7日平均 {r.avg7:.1f}、28日平均 {r.avg28:.1f}）"
              for r in report.services] or ["- なし"]
    lines += ["", "■ 原因（記事群数）"]
    lines += [f"- {CAUSE_NAMES[c]}: {n}" for c, n in report.causes] or ["- なし"]
    lines += ["", "■ 感情（記事数）", "- " + "、".join(f"{SENTIMENT_NAMES[s]} {n}" for s, n in report.sentiment)]
    lines += ["", "■ 主な記事"]
    for s in report.top_stories:
        names = "・".join(sv.display for sv in s.services)
        lines.append(f"- {s.title}（{names}／{CAUSE_NAMES[s.cause]}／{len(s.publishers)}媒体: {'、'.join(s.publishers)}）")
        lines.append(f"  {s.url}")
    if not report.top_stories:
        lines.append("- なし")
    lines += ["", "■ 計画メンテナンス"]
    lines += [f"- {s.title}（{s.url}）" for s in report.maintenance] or ["- なし"]
    lines += ["", "■ 検索トレンド（Google トレンド）"]
    lines += [f"- {t.term}（{t.traffic_raw}）" for t in report.trends] or ["- なし"]
    return "\n".join(lines) + "\n"


_CELL = 'style="border:1px solid #ccc;padding:4px 8px;text-align:left"'


def render_html(report: DailyReport) -> str:
    """HTML with inline styles only (mail clients drop <style>); every feed-supplied string escaped."""
    e = escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ja"><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title></head>",
        '<body style="font-family:sans-serif;color:#222;max-width:760px">',
        f'<h1 style="font-size:20px">{e(report.title)}</h1>',
        f"<p>収集 {report.collected} 件（関連 {report.relevant} 件、関連なし {report.irrelevant} 件）</p>",
        '<h2 style="font-size:16px">アラート</h2>',
    ]
    if report.alerts:
        parts.append("<ul>" + "".join(f'<li style="color:#b00">{e(_alert_line(a))}</li>' for a in report.alerts) + "</ul>")
    else:
        parts.append("<p>なし</p>")
    if report.chart_cid:
        parts.append(f'<p><img src="cid:{e(report.chart_cid)}" alt="サービス別の言及の推移" width="720"></p>')
    parts.append('<h2 style="font-size:16px">サービス別の言及</h2>')
    parts.append(f'<table style="border-collapse:collapse"><tr><th {_CELL}>サービス</th><th {_CELL}>記事群</th>'
                 f"<th {_CELL}>記事</th><th {_CELL}>媒体</th><th {_CELL}>7日平均</th><th {_CELL}>28日平均</th></tr>")
    for r in report.services:
        parts.append(f"<tr><td {_CELL}>{e(r.service.display)}</td><td {_CELL}>{r.stories}</td><td {_CELL}>{r.items}</td>"
                     f"<td {_CELL}>{r.publishers}</td><td {_CELL}>{r.avg7:.1f}</td><td {_CELL}>{r.avg28:.1f}</td></tr>")
    parts.append("</table>")
    parts.append('<h2 style="font-size:16px">原因</h2><ul>')
    parts += [f"<li>{e(CAUSE_NAMES[c])}: {n}</li>" for c, n in report.causes] or ["<li>なし</li>"]
    parts.append('</ul><h2 style="font-size:16px">感情</h2><p>')
    parts.append("、".join(f"{e(SENTIMENT_NAMES[s])} {n}" for s, n in report.sentiment))
    parts.append('</p><h2 style="font-size:16px">主な記事</h2><ol>')
    for s in report.top_stories:
        names = "・".join(sv.display for sv in s.services)
        parts.append(f'<li><a href="{e(s.url)}">{e(s.title)}</a><br><small>{e(names)}／{e(CAUSE_NAMES[s.cause])}／'
                     f"{len(s.publishers)}媒体: {e('、'.join(s.publishers))}</small></li>")
    if not report.top_stories:
        parts.append("<li>なし</li>")
    parts.append('</ol><h2 style="font-size:16px">計画メンテナンス</h2><ul>')
    parts += [f'<li><a href="{e(s.url)}">{e(s.title)}</a></li>' for s in report.maintenance] or ["<li>なし</li>"]
    parts.append('</ul><h2 style="font-size:16px">検索トレンド（Google トレンド）</h2><ul>')
    parts += [f"<li>{e(t.term)}（{e(t.traffic_raw)}）</li>" for t in report.trends] or ["<li>なし</li>"]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
