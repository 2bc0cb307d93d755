"""The alert lifecycle, like Alertmanager's, as a pure function of episodes, known alerts and ``now``.

pending -> firing once ``pending_hours`` hours of an episode were above threshold (default one:
fire at once) -> resolved once the episode has ended (``resolve_after_hours`` quiet hours, the
detector's hysteresis). One alert per episode, identified by a dedup key (series @ first hour); an
episode that grows backwards or forwards (late items) keeps its alert. Hours inside a maintenance
window of the alert's own service do not count: an episode made only of such hours is ``inhibited``
and never notified. Silences mute notifications (not the alert): a firing alert whose silence ends is
notified then. Firing alerts are re-notified every ``repeat_hours``; resolving sends one notice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from reports.spikes import HOUR, Episode
from store.alerts import OPEN, AlertView, SilenceView
from store.maintenance import Window

NODATA = "nodata"
INHIBITED = "メンテナンス中のため抑制"
COLLECTION = "collection"


@dataclass(frozen=True)
class AlertPolicy:
    pending_hours: int = 1
    repeat_hours: int = 12
    send_resolved: bool = True
    maintenance_grace_hours: int = 1
    no_data_hours: int = 6
    send_email: bool = False  # email alerts to the [smtp] recipients
    base_url: str = ""  # where an alert links to (generatorURL, the email's link): the report archive, a Datasette

    def __post_init__(self):
        if not isinstance(self.base_url, str) or (self.base_url and not self.base_url.startswith(("http://", "https://"))):
            raise ValueError(f"base_url = {self.base_url!r}: expected an http:// or https:// address, or nothing")
        for name in ("pending_hours", "repeat_hours", "no_data_hours"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r}: expected a whole number of hours, at least 1")
        if isinstance(self.maintenance_grace_hours, bool) or not isinstance(self.maintenance_grace_hours, int) \
                or self.maintenance_grace_hours < 0:
            raise ValueError(f"maintenance_grace_hours = {self.maintenance_grace_hours!r}: expected a whole number >= 0")
        for name in ("send_resolved", "send_email"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} = {getattr(self, name)!r}: expected true or false")


@dataclass(frozen=True)
class Event:
    """Something to notify: an alert started firing, is still firing (repeat), or resolved."""

    kind: str  # firing | repeat | resolved
    alert: AlertView


@dataclass(frozen=True)
class Plan:
    alerts: list[AlertView]  # every alert whose record changed
    events: list[Event]


def dedup_key(series: str, start: datetime) -> str:
    """``series@first hour`` in UTC with its ``Z`` (whatever zone ``start`` comes in)."""
    return f"{series}@{start.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%MZ')}"


def service_of(series: str) -> str:
    return series.split(":", 1)[1] if ":" in series else series


def inhibiting_window(service: str, hour: datetime, windows: list[Window], grace: timedelta) -> Window | None:
    """The maintenance window of this service that covers this hour (ending ``grace`` late), if any."""
    for w in windows:
        if w.service == service and w.starts_at < hour + HOUR and hour < w.ends_at + grace:
            return w
    return None


def _match(ep: Episode, known: list[AlertView], gap: timedelta) -> AlertView | None:
    for a in known:
        if a.series == ep.series and ep.start <= a.last_seen_at + gap and a.started_at <= ep.end + gap:
            return a
    return None


def _from_episode(ep: Episode, old: AlertView | None, *, windows: list[Window], policy: AlertPolicy) -> AlertView:
    service = service_of(ep.series)
    grace = timedelta(hours=policy.maintenance_grace_hours)
    counted = [h for h in ep.hours if inhibiting_window(service, h.hour, windows, grace) is None]
    fired_at = old.fired_at if old else None
    if fired_at is None and len(counted) >= policy.pending_hours:
        fired_at = counted[policy.pending_hours - 1].hour + HOUR
    if fired_at is not None:
        status = "resolved" if ep.ended else "firing"
    else:
        status = ("expired" if ep.ended else "pending") if counted else "inhibited"
    note = old.note if old and not old.note.startswith(INHIBITED) else ""
    if not counted:
        w = inhibiting_window(service, ep.start, windows, grace)
        note = f"{INHIBITED}: {w.title}" if w else ""
    start = min(ep.start, old.started_at) if old else ep.start
    peak = max(ep.hours, key=lambda h: h.count)
    return AlertView(
        dedup_key=old.dedup_key if old else dedup_key(ep.series, ep.start), series=ep.series, service=service,
        status=status, started_at=start, last_seen_at=max(ep.end, old.last_seen_at) if old else ep.end,
        resolved_at=ep.stop if status == "resolved" else None,
        peak_count=max(ep.peak_count, old.peak_count if old else 0), score=max(ep.score, old.score if old else 0.0),
        fired_at=fired_at, flagged_hours=len(counted), notified_at=old.notified_at if old else None,
        resolve_notified=old.resolve_notified if old else False, note=note,
        peak_expected=peak.expected if not old or ep.peak_count >= old.peak_count else old.peak_expected,
        total_count=sum(h.count for h in ep.hours), total_expected=round(sum(h.expected for h in ep.hours), 3),
        backfilled=old.backfilled if old else False)


def _overdue(a: AlertView, now: datetime, gap: timedelta) -> AlertView:
    """An open alert no episode accounts for any more (its items were relabeled, say): close it once quiet."""
    if a.status not in OPEN or now < a.last_seen_at + HOUR + gap:
        return a
    if a.status == "firing":
        return replace(a, status="resolved", resolved_at=a.last_seen_at + HOUR)
    return replace(a, status="expired")


def _notify(a: AlertView, *, now: datetime, silences: list[SilenceView], policy: AlertPolicy) -> tuple[AlertView, list[str]]:
    """What to notify about this alert now, and the alert with its notification state updated."""
    silenced = any(s.covers(a.service, now) for s in silences)
    a = replace(a, silenced=silenced)
    if a.status == "firing" and not silenced:
        if a.notified_at is None:
            return replace(a, notified_at=now), ["firing"]
        if now - a.notified_at >= timedelta(hours=policy.repeat_hours):
            return replace(a, notified_at=now), ["repeat"]
    if a.status == "resolved" and not a.resolve_notified:
        if silenced:
            return replace(a, resolve_notified=True), []
        kinds = ["firing"] if a.notified_at is None else []  # it fired and ended between two evaluations
        kinds += ["resolved"] if policy.send_resolved else []
        return replace(a, notified_at=a.notified_at or now, resolve_notified=True), kinds
    return a, []


def plan_alerts(episodes: list[Episode], known: list[AlertView], *, windows: list[Window],
                silences: list[SilenceView], now: datetime, policy: AlertPolicy,
                gap_for: dict[str, int] | None = None, default_gap: int = 3, extra: tuple[AlertView, ...] = (),
                notify_since: datetime | None = None) -> Plan:
    """The alerts after this evaluation, and what to notify.

    ``gap_for``: resolve_after_hours per series; ``extra``: alerts decided elsewhere (no data);
    ``notify_since``: an episode first seen already over before this time (the monitor was not
    running, or old items arrived) is recorded for the reports but not notified.
    """
    def gap(series: str) -> timedelta:
        return timedelta(hours=(gap_for or {}).get(series, default_gap))

    updated: dict[str, AlertView] = {a.dedup_key: a for a in known}
    for ep in episodes:
        old = _match(ep, list(updated.values()), gap(ep.series))
        new = _from_episode(ep, old, windows=windows, policy=policy)
        if old is None and ep.ended and notify_since is not None and ep.stop < notify_since:
            new = replace(new, resolve_notified=True, note=(new.note + " " if new.note else "") + "（事後に検出、通知なし）")
        updated[new.dedup_key] = new
    updated.update({a.dedup_key: a for a in extra})
    changed, events = [], []
    for key, a in updated.items():
        if a.series != NODATA:
            a = _overdue(a, now, gap(a.series))
        a, kinds = _notify(a, now=now, silences=silences, policy=policy)
        events += [Event(kind, a) for kind in kinds]
        if a != next((k for k in known if k.dedup_key == key), None):
            changed.append(a)
    return Plan(changed, events)


def no_data_alert(last_success: datetime | None, known: list[AlertView], *, now: datetime,
                  policy: AlertPolicy) -> AlertView | None:
    """The "collection stopped" alert: firing while no source has answered for ``no_data_hours``."""
    current = next((a for a in known if a.series == NODATA and a.status == "firing"), None)
    if last_success is None:
        return current
    silent = now - last_success >= timedelta(hours=policy.no_data_hours)
    if silent and current is None:
        return AlertView(dedup_key(NODATA, last_success), NODATA, COLLECTION, "firing", last_success, now, None, 0, 0.0,
                         fired_at=now, note=f"{policy.no_data_hours} 時間以上、どの情報源からも取得できていません")
    if silent:
        return replace(current, last_seen_at=now)
    if current is not None:
        return replace(current, status="resolved", resolved_at=last_success, last_seen_at=last_success)
    return None
