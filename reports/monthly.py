"""The monthly summary (`mynawatch report --month 2024-10`): the month's incidents, their durations, the
time from the first report to the official acknowledgement and to the first recovery report, per
service, with each incident's timeline chart and the month's mentions chart. Built as data from the
store (``read_month``), rendered to text and HTML (pure), written by ``write_monthly_report``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from pathlib import Path
from statistics import median

from sqlalchemy.orm import Session, sessionmaker

from reports.archive import _write_atomic, incident_chart, read_timelines
from reports.charts import render_mentions_chart
from reports.daily import stories_per_day
from reports.notices import display_name
from reports.rendering import FONT, H2, MUTED, NUM, CELL
from reports.timeline import (Timeline, causes_ja, chart_name, duration_ja, services_ja, timeline_html,
                              timeline_text)
from store import signals as q
from store.clock import day_bounds, shown, typed_day, typed_form
from store.records import Service


class MonthError(ValueError):
    """A --month that is not YYYY-MM."""


def parse_month(text: str) -> date:
    """The first day of ``YYYY-MM``; MonthError otherwise."""
    try:
        year, month = text.strip().split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        return typed_day(f"{year}-{month}-01")  # a year far from 1 and 9999: the month's bounds stay dates
    except ValueError:
        raise MonthError(f"--month {text!r}: expected {typed_form('YYYY-MM')}, e.g. 2024-10") from None


def month_days(first: date) -> tuple[date, date]:
    """The first and last day of ``first``'s month."""
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


@dataclass(frozen=True)
class ServiceSummary:
    service: str
    incidents: int
    hours: float  # summed durations (first report to end)
    to_acknowledge: timedelta | None  # median over the incidents that had an official item
    to_recover: timedelta | None
    acknowledged: int  # incidents with an official item


@dataclass(frozen=True)
class MonthlyReport:
    month: date  # its first day
    incidents: list[Timeline]  # that started in the month
    services: list[ServiceSummary]
    per_day: dict[date, dict[Service, int]] = field(default_factory=dict, compare=False)

    @property
    def title(self) -> str:
        return f"マイナ関連 月次レポート {self.month:%Y年%m月}"

    @property
    def incident_days(self) -> list[date]:
        from store.clock import today

        return sorted({today(t.incident.start) for t in self.incidents})


def _median(values: list[timedelta]) -> timedelta | None:
    return timedelta(seconds=median(v.total_seconds() for v in values)) if values else None


def summarize(incidents: list[Timeline]) -> list[ServiceSummary]:
    """Per service (an incident of two services counts for both): how many, how long, how fast."""
    out = []
    for service in sorted({s for t in incidents for s in t.incident.services}, key=lambda s: list(map(str, Service)).index(s)
                          if s in set(map(str, Service)) else 99):
        mine = [t.incident for t in incidents if service in t.incident.services]
        acks = [i.to_acknowledge for i in mine if i.to_acknowledge is not None]
        recs = [i.to_recover for i in mine if i.to_recover is not None]
        out.append(ServiceSummary(service, len(mine), round(sum(i.duration.total_seconds() for i in mine) / 3600, 1),
                                  _median(acks), _median(recs), len(acks)))
    return out


def build_monthly_report(month: date, incidents: list[Timeline], per_day: dict[date, dict[Service, int]]) -> MonthlyReport:
    first, last = month_days(month)
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    mine = [t for t in incidents if start <= t.incident.start < end]
    return MonthlyReport(first, mine, summarize(mine), per_day)


def read_month(session: Session, *, model_version: str, month: date) -> MonthlyReport:
    first, last = month_days(month)
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    per_day = stories_per_day(q.count_relevant(session, model_version, start, end))
    return build_monthly_report(first, read_timelines(session, start, end), per_day)


def _totals(r: MonthlyReport) -> str:
    acks = [t.incident.to_acknowledge for t in r.incidents if t.incident.to_acknowledge is not None]
    recs = [t.incident.to_recover for t in r.incidents if t.incident.to_recover is not None]
    hours = sum(t.incident.duration.total_seconds() for t in r.incidents) / 3600
    return (f"インシデント {len(r.incidents)} 件、合計 {hours:.1f} 時間；最初の報告から公式発表まで 中央値 "
            f"{duration_ja(_median(acks))}（{len(acks)} 件）、復旧報告まで 中央値 {duration_ja(_median(recs))}（{len(recs)} 件）")


def _service_line(s: ServiceSummary) -> str:
    return (f"{display_name(s.service)}: {s.incidents} 件、{s.hours:.1f} 時間、公式発表まで {duration_ja(s.to_acknowledge)}"
            f"（{s.acknowledged}/{s.incidents} 件）、復旧報告まで {duration_ja(s.to_recover)}")


def render_monthly_text(r: MonthlyReport) -> str:
    lines = [r.title, "=" * 40, "", _totals(r) if r.incidents else "インシデントはありませんでした", "",
             "■ サービス別（時間は中央値）"]
    lines += [f"- {_service_line(s)}" for s in r.services] or ["- なし"]
    lines += ["", "■ インシデント"]
    lines += [line for t in r.incidents for line in timeline_text(t)] or ["- なし"]
    lines += ["", "時刻は日本時間。記事群 = 同じ出来事を伝える記事のまとまり（配信記事の転載は1つに数えます）。"]
    return "\n".join(lines) + "\n"


def _incident_table(r: MonthlyReport) -> list[str]:
    head = ["ID", "サービス", "最初の報告", "終了", "継続", "ピーク", "公式発表まで", "復旧報告まで", "主な原因"]
    out = ['<table style="border-collapse:collapse;font-size:13px"><tr>' + "".join(f"<th {CELL}>{h}</th>" for h in head) + "</tr>"]
    for t in r.incidents:
        i = t.incident
        cells = [escape(i.id), escape(services_ja(i)), escape(shown(i.start)), "継続中" if i.ongoing else escape(shown(i.end)),
                 escape(duration_ja(i.duration))]
        out.append("<tr>" + "".join(f"<td {CELL}>{c}</td>" for c in cells)
                   + f"<td {NUM}>{i.peak_count}</td><td {NUM}>{escape(duration_ja(i.to_acknowledge))}</td>"
                   + f"<td {NUM}>{escape(duration_ja(i.to_recover))}</td><td {CELL}>{escape(causes_ja(i))}</td></tr>")
    return out + ["</table>"]


def render_monthly_html(r: MonthlyReport, images: dict[str, str] | None = None) -> str:
    e, images = escape, images or {}
    parts = ["<!DOCTYPE html>", '<html lang="ja"><head><meta charset="utf-8">', f"<title>{e(r.title)}</title></head>",
             f'<body style="{FONT};color:#222;max-width:760px;margin:0 auto;padding:8px">',
             f'<h1 style="font-size:20px">{e(r.title)}</h1>',
             f"<p>{e(_totals(r)) if r.incidents else 'インシデントはありませんでした'}</p>"]
    if "mentions" in images:
        parts.append(f'<p><img src="{e(images["mentions"])}" alt="サービス別の言及（月間）" width="720" '
                     'style="max-width:100%;height:auto"></p>')
    parts += [f"<h2 {H2}>インシデント一覧</h2>"] + (_incident_table(r) if r.incidents else ["<p>なし</p>"])
    parts += [f"<h2 {H2}>サービス別（時間は中央値）</h2>"]
    parts += ["<ul>" + "".join(f"<li>{e(_service_line(s))}</li>" for s in r.services) + "</ul>"] if r.services else ["<p>なし</p>"]
    parts += [f"<h2 {H2}>各インシデントの経過</h2>"]
    parts += [p for n, t in enumerate(r.incidents) for p in timeline_html(t, images.get(chart_name(n)))] or ["<p>なし</p>"]
    parts += [f"<p {MUTED}>mynawatch が収集・分類した記事から作成。時刻は日本時間。</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_monthly_report(sessions: sessionmaker[Session], *, model_version: str, month: date, out_dir: Path) -> dict[str, Path]:
    """Write month-YYYY-MM.txt/.html, month-YYYY-MM-mentions.png and one month-YYYY-MM-incidentN.png per incident."""
    with sessions.begin() as session:
        report = read_month(session, model_version=model_version, month=month)
    first, last = month_days(report.month)
    stem = f"month-{report.month:%Y-%m}"
    charts = {"mentions": render_mentions_chart(report.per_day, start=first, end=last, marks=report.incident_days,
                                                title=f"サービス別の言及（記事群数／日） {report.month:%Y年%m月}、赤: インシデントの日")}
    charts |= {chart_name(n): incident_chart(t) for n, t in enumerate(report.incidents)}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"text": out_dir / f"{stem}.txt", "html": out_dir / f"{stem}.html"}
    paths |= {name: out_dir / f"{stem}-{name}.png" for name in charts}
    for name, png in charts.items():
        _write_atomic(paths[name], png)
    _write_atomic(paths["text"], render_monthly_text(report).encode())
    _write_atomic(paths["html"], render_monthly_html(report, {n: paths[n].name for n in charts}).encode())
    return paths
