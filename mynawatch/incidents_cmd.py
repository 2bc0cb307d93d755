"""`mynawatch incidents list|show|recompute`: incidents derived from the store, and one incident's timeline
in the terminal. Times in Tokyo time with their offset; `--format json` (and csv for the list)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import datetime, timedelta

from typing import TYPE_CHECKING

from store.clean import one_line
from store.clock import parse_local, shown, tokyo, typed_form

if TYPE_CHECKING:  # the command line starts without loading the reports
    from reports.timeline import Timeline
    from store.incidents import Incident

BAR = "█"
MOMENT_NAMES = {"first": "first report", "official": "acknowledged", "recovery": "recovered"}


def register_incidents(sub, *, load_settings, user_error: type[Exception]) -> None:
    """Add `incidents` and its actions to the command line's subparsers. ``load_settings(args)`` and
    ``user_error`` (printed as one line, status 2) come from the command line, which this module never imports."""

    def run(args) -> int:
        return cmd_incidents(args, settings=load_settings(args), user_error=user_error)

    p = sub.add_parser("incidents", help="incidents: the trouble of services over time, from the first report to "
                                         "the official acknowledgement and recovery")
    a = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = a.add_parser("list", help="incidents, oldest first")
    c.add_argument("--since", help="only incidents still going on at or after this day or time (Tokyo time unless "
                                   "an offset is given), e.g. 2024-10-01")
    c.add_argument("--format", choices=("text", "json", "jsonl", "csv"), default="text",
                   help="text (default), json (one JSON document), jsonl (one JSON object per line) or csv")
    c.set_defaults(func=run)
    c = a.add_parser("show", help="one incident's timeline: hourly trouble per service, first report, "
                                  "official acknowledgement, recovery, items")
    c.add_argument("id", help="the incident's id, as `incidents list` shows it")
    c.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    c.set_defaults(func=run)
    c = a.add_parser("recompute", help="derive the incidents from the store again (what `run` does after each "
                                       "alert evaluation)")
    c.add_argument("--since", help="only incidents starting at or after this day or time (default: all)")
    c.set_defaults(func=run)


class IncidentsError(ValueError):
    """Bad input to `mynawatch incidents` (printed as one line)."""


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_local(text)
    except ValueError:
        raise IncidentsError(f"--since {text!r}: expected "
                              f"{typed_form('a day (2024-10-01) or a time (2024-10-01T09:00)')}") from None


def cmd_incidents(args, *, settings, user_error: type[Exception]) -> int:
    from mynawatch.pipeline import Pipeline
    from reports.timeline import build_timeline
    from store import incidents as store_incidents
    from store.clock import now as clock_now

    try:
        since = _since(getattr(args, "since", None))
    except IncidentsError as exc:
        raise user_error(str(exc)) from None
    with Pipeline(settings) as pipeline:
        sessions = pipeline.sessions
        if args.action == "recompute":
            found = pipeline.recompute_incidents(now=clock_now(), since=since, everything=since is None)
            print(f"{len(found)} incident(s) derived from the store" + (f" since {shown(since)}" if since else ""))
            return 0
    with sessions.begin() as session:
        if args.action == "list":
            print(render_list(store_incidents.incidents_between(session, since), args.format), end="")
            return 0
        incident = store_incidents.get_incident(session, args.id)
        if incident is None:
            raise user_error(f"no incident {one_line(args.id)!r} in the store (`mynawatch incidents list` shows the ids)")
        timeline = build_timeline(incident, store_incidents.timeline_rows(session, incident.id))
    print(render_show(timeline, args.format), end="")
    return 0


def _time(when: datetime | None) -> str | None:
    return None if when is None else tokyo(when).isoformat(timespec="seconds")


def _minutes(delta: timedelta | None) -> int | None:
    return None if delta is None else int(delta.total_seconds() // 60)


def incident_json(i: Incident) -> dict:
    """An incident as plain JSON values: times in Tokyo time with their offset, durations in minutes."""
    out = {k: (_time(v) if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v)
           for k, v in asdict(i).items()}
    out.update(minutes_to_acknowledge=_minutes(i.to_acknowledge), minutes_to_recover=_minutes(i.to_recover),
               minutes=_minutes(i.duration))
    return out


def _json(value) -> str:
    from store.sql import safe_json

    return safe_json(value) + "\n"


def _list_line(i: Incident) -> str:
    from reports.timeline import duration_short

    end = "ongoing" if i.ongoing else shown(i.end)
    return (f"{i.id}  {','.join(i.services)}  {shown(i.start)} -> {end}  peak {i.peak_count}/h  "
            f"stories {i.stories}  ack {'+' + duration_short(i.to_acknowledge) if i.first_official else '-'}  "
            f"recovered {'+' + duration_short(i.to_recover) if i.recovered else '-'}  causes {','.join(i.causes) or '-'}")


def render_list(incidents: list[Incident], fmt: str = "text") -> str:
    if fmt == "json":
        return _json([incident_json(i) for i in incidents])
    if fmt == "jsonl":
        return "".join(_json(incident_json(i)) for i in incidents)
    if fmt == "csv":
        buf = io.StringIO()
        if incidents:
            names = list(incident_json(incidents[0]))
            w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
            w.writeheader()
            for i in incidents:
                row = incident_json(i)
                w.writerow({k: ",".join(v) if isinstance(v, list) else v for k, v in row.items()})
        else:
            buf.write("id\n")
        return buf.getvalue()
    if not incidents:
        return "no incidents in the store (`mynawatch run` derives them after each alert evaluation; " \
               "`mynawatch incidents recompute` does it now)\n"
    return "".join(_list_line(i) + "\n" for i in incidents)


def render_show(t: Timeline, fmt: str = "text") -> str:
    from reports.timeline import duration_short

    i = t.incident
    if fmt == "json":
        return _json({**incident_json(i),
                      "moments": [{"kind": m.kind, "at": _time(m.at), "title": m.title, "publisher": m.publisher,
                                   "url": m.url} for m in t.moments],
                      "hourly": {s: {_time(h): n for h, n in sorted(hours.items())} for s, hours in t.hourly.items()},
                      "items": [{"item_id": r.item_id, "role": r.role, "official": r.official,
                                 "published_at": _time(r.published_at), "publisher": r.publisher, "title": r.title,
                                 "url": r.url, "source": r.source, "services": list(r.services), "cause": r.cause,
                                 "sentiment": r.sentiment} for r in t.rows]})
    lines = [f"incident {i.id}", f"  services      {', '.join(i.services)}",
             f"  first report  {shown(i.start)}",
             f"  peak          {shown(i.peak_at)}  {i.peak_count} trouble stories in the hour",
             f"  end           {'ongoing' if i.ongoing else shown(i.end)}  (signal back at its baseline; "
             f"{duration_short(i.duration)} after the first report)",
             f"  causes        {', '.join(i.causes) or '-'}",
             f"  size          {i.stories} stories, {i.items} items, {i.publishers} publishers"]
    for kind in ("first", "official", "recovery"):
        m = t.moment(kind)
        if m is None:
            lines.append(f"  {MOMENT_NAMES[kind]:13} none")
        else:
            after = f" +{duration_short(m.at - i.start)}" if kind != "first" else ""
            lines.append(f"  {MOMENT_NAMES[kind]:13} {shown(m.at)}{after}  {one_line(m.publisher)}: {one_line(m.title)[:70]}")
    if i.alerts:
        lines.append(f"  alerts        {', '.join(i.alerts)}")
    lines += ["", "timeline (trouble stories per hour, Tokyo time)"] + _bars(t)
    lines += ["", "items"]
    for r in t.rows:
        flag = "official " if r.official else ""
        lines.append(f"  {shown(r.published_at)}  {r.role:8} {flag}{one_line(r.publisher)[:20]}: {one_line(r.title)[:60]}")
    return "\n".join(lines) + "\n"


def _bars(t: Timeline) -> list[str]:
    i = t.incident
    marks: dict[datetime, list[str]] = {}
    for m in t.moments:
        marks.setdefault(m.at.replace(minute=0, second=0, microsecond=0), []).append(f"<- {MOMENT_NAMES[m.kind]}")
    last = max([i.end] + [m.at for m in t.moments])
    hour = i.start.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= last:
        cells = [f"{s} {BAR * n}{n}" for s in i.services if (n := t.hourly.get(s, {}).get(hour, 0))]
        note = " ".join(marks.get(hour, []))
        if cells or note:
            out.append(f"  {shown(hour)}  {'  '.join(cells) or '.':40} {note}".rstrip())
        hour += timedelta(hours=1)
    return out


def cmd_monthly_report(args, settings, *, user_error: type[Exception]) -> int:
    """`mynawatch report --month YYYY-MM`: the monthly summary into the report folder (or --out)."""
    from pathlib import Path

    from mynawatch.pipeline import Pipeline
    from reports.monthly import MonthError, parse_month

    if args.date or args.send:
        raise user_error("--month writes the monthly summary: leave out --date and --send")
    try:
        month = parse_month(args.month)
    except MonthError as exc:
        raise user_error(str(exc)) from None
    with Pipeline(settings) as pipeline:  # a full or read-only folder: main() names it
        paths = pipeline.write_monthly_report(month=month, out_dir=Path(args.out) if args.out else None)
    for kind, path in paths.items():
        print(f"{kind:9} {path}")
    return 0
