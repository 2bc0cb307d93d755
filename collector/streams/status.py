"""How `mynawatch sources` shows stream sources: state, cursor age, messages and kept posts per minute,
reconnects, errors, frames dropped. Pure: store.streams.StreamRow in, text or plain dicts out."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from store.clock import shown

SILENT = timedelta(minutes=5)  # a reader that wrote nothing for this long is probably not running


def stream_flags(row, *, now: datetime) -> list[str]:
    """What is worth a look: dropping behind, a reader that stopped reporting, the last error."""
    flags = []
    if row.state == "dropping behind":
        flags.append("DROPPING BEHIND (the store is slower than the stream)")
    if row.state in ("connected", "dropping behind", "reconnecting") and now - row.updated_at > SILENT:
        flags.append(f"no report since {shown(row.updated_at)}: is the reader running?")
    if row.dropped:
        flags.append(f"{row.dropped:,} frames lost while behind")
    if row.state == "reconnecting" and row.last_error:
        flags.append(row.last_error[:120])
    return flags


def _age(cursor_at: datetime | None, now: datetime) -> str:
    if cursor_at is None:
        return "-"
    seconds = max(0.0, (now - cursor_at).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def describe_streams(rows, *, now: datetime) -> str:
    """The stream table of `mynawatch sources` (store.streams.StreamRow rows)."""
    lines = [f"{'stream':24} {'kind':9} {'state':16} {'cursor age':>10} {'msgs/min':>9} {'kept/min':>8} "
             f"{'reconnects':>10} {'errors':>6} {'posts':>7}  flags"]
    for r in rows:
        lines.append(f"{r.name[:24]:24} {r.kind[:9]:9} {r.state[:16]:16} {_age(r.cursor_at, now):>10} "
                     f"{r.messages_per_min:9,.0f} {r.kept_per_min:8,.1f} {r.reconnects:10,} {r.errors:6,} "
                     f"{r.items:7,}  {'; '.join(stream_flags(r, now=now))}")
    return "\n".join(lines)


def stream_record(row, *, now: datetime) -> dict:
    """One stream as a JSON-ready dict (``--format json``)."""
    out = asdict(row)
    out["cursor_age_seconds"] = None if row.cursor_at is None else round((now - row.cursor_at).total_seconds(), 1)
    out["dropping_behind"] = row.state == "dropping behind"
    out["flags"] = stream_flags(row, now=now)
    return out
