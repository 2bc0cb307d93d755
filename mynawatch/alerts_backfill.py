"""`mynawatch alerts backfill --since DATE [--until DATE]`: alerts (and incidents) for history.

Every past hour of the range is evaluated in order, as `run` would have evaluated it (``reports/backfill.py``);
the alerts found are recorded, marked backfilled, and nothing is sent. Running it again changes nothing.
Times shown in Tokyo time with their offset.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime

BACKFILL_HELP = "evaluate every past hour of a range in order and record its alerts (and incidents), sending nothing"


def register_backfill(actions, *, open_pipeline: Callable, print_json: Callable,
                      progress: Callable = lambda: None) -> None:
    """Add `backfill` to the `alerts` actions; ``open_pipeline(args)``, ``print_json(value)`` and ``progress()``
    (a progress display on a terminal, else None) are the command line's (passed in, so this module does not
    import the CLI back)."""
    c = actions.add_parser("backfill", help=BACKFILL_HELP)
    c.add_argument("--since", required=True, help="first day (YYYY-MM-DD, Tokyo) or time (ISO 8601; Tokyo time "
                                                  "unless an offset is given)")
    c.add_argument("--until", help="last day, included (YYYY-MM-DD, Tokyo), or a time; default: now")
    c.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json: one JSON document")
    c.set_defaults(func=lambda args: cmd_backfill(args, open_pipeline=open_pipeline, print_json=print_json,
                                                  progress=progress()))


class BackfillError(ValueError):
    """Bad input to `alerts backfill` (printed as one line)."""


def _when(text: str, option: str, *, end_of_day: bool) -> datetime:
    """A Tokyo day (its start, or with ``end_of_day`` its end) or a time."""
    from store.clock import day_bounds, parse_local, typed_day, typed_form

    try:
        if len(text.strip()) == 10:
            return day_bounds(typed_day(text))[1 if end_of_day else 0]
        return parse_local(text)
    except ValueError:
        raise BackfillError(f"{option} {text!r}: expected "
                            f"{typed_form('a day (2024-10-01) or a time (2024-10-01T09:00)')}") from None


def time_range(since: str, until: str | None, *, now: datetime) -> tuple[datetime, datetime]:
    """[since, until] from the command line; ``until`` defaults to now and never passes it."""
    start = _when(since, "--since", end_of_day=False)
    end = min(_when(until, "--until", end_of_day=True), now) if until else now
    if start >= now:
        raise BackfillError(f"--since {since!r} is not in the past: a backfill evaluates hours that are over")
    if end <= start:
        raise BackfillError(f"--until {until!r} is not after --since {since!r}")
    return start, end


def run_backfill(pipeline, *, since: datetime, until: datetime, now: datetime, progress=None):
    """The backfill step on the pipeline's store and settings, then the incidents of the range recomputed."""
    from mynawatch.serving import served_version
    from reports.backfill import backfill_alerts

    s = pipeline.settings
    model_version = served_version(pipeline.sessions)
    with pipeline.sessions.begin() as session:
        done = backfill_alerts(session, since=since, until=until, now=now, model_version=model_version,
                               params=s.spikes, params_for=dict(s.spikes_for), policy=s.alerting,
                               progress=progress)
    return done, len(pipeline.recompute_incidents(now=now, since=since))


def cmd_backfill(args, *, open_pipeline: Callable, print_json: Callable, progress=None) -> int:
    from store.clean import clean_text
    from store.clock import now as clock_now

    now = clock_now()
    try:
        since, until = time_range(args.since, args.until, now=now)
    except BackfillError as exc:
        print(f"mynawatch: {clean_text(str(exc))}", file=sys.stderr)
        return 2
    with open_pipeline(args) as pipeline:
        done, incidents = run_backfill(pipeline, since=since, until=until, now=now, progress=progress)
    if args.format == "json":
        print_json({"since": since, "until": until, "hours": done.hours, "new": done.new, "updated": done.changed,
                     "incidents": incidents, "sent": 0})
        return 0
    print(render_backfill(done, incidents, since=since, until=until), end="")
    return 0


def render_backfill(done, incidents: int, *, since: datetime, until: datetime) -> str:
    """What a backfill did, for a person: the range, each alert recorded or updated, the incidents."""
    from reports.notices import display_name
    from store.clock import shown

    lines = [f"evaluated {done.hours} hour(s) from {shown(since)} to {shown(until)}: {len(done.new)} new alert(s), "
             f"{len(done.changed)} updated, nothing sent"]
    for label, alerts in (("new", done.new), ("updated", done.changed)):
        for a in alerts:
            end = f" – {shown(a.resolved_at)}" if a.resolved_at else " (still open)"
            lines.append(f"  {label:7} {a.status:9} {display_name(a.service)}: {shown(a.started_at)}{end}, "
                         f"peak {a.peak_count}/h, score {a.score:.1f}")
    lines.append(f"{incidents} incident(s) derived from the store since {shown(since)}")
    return "\n".join(lines) + "\n"
