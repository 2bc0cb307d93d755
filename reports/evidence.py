"""What an alert carries: the trouble stories of its episode (best first, with links and publishers),
the leading cause and the incident it belongs to, read from the store when a notification is built.

The counts against the baseline travel on the alert itself (``peak_expected``, ``total_count``,
``total_expected``); this module adds what the items say. Mail and webhook render it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlalchemy.orm import Session

from reports.daily import story_rows
from reports.spikes import HOUR
from store.alerts import AlertView
from store.clock import tokyo
from store.labels import labeled_items
from store.records import TROUBLE_CAUSES, Cause, LabeledItem, Sentiment

TOP = 3  # headlines an alert carries


@dataclass(frozen=True)
class Headline:
    """One trouble story of the episode: its first item's title and link, and every outlet that carried it."""

    title: str
    url: str
    publishers: tuple[str, ...]  # in order of publication
    first_seen: datetime


@dataclass(frozen=True)
class IncidentRef:
    """The incident an alert belongs to (``store.incidents``), as far as a notice tells it."""

    id: str
    services: tuple[str, ...]
    start: datetime
    first_official: datetime | None
    recovered: datetime | None


@dataclass(frozen=True)
class Evidence:
    headlines: tuple[Headline, ...] = ()
    stories: int = 0  # trouble stories of the episode, all of them
    cause: Cause | None = None  # the leading cause among them
    incident: IncidentRef | None = None
    link: str = ""  # the configured base URL, filled in for this alert


def figure(value: float) -> str:
    """An expected count for people: two decimals under 10 (``0.42``, ``1.3``), one above, no trailing zeros."""
    text = f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def span(a: AlertView) -> tuple[datetime, datetime]:
    """The alert's hours as [start, end) in UTC."""
    return a.started_at, a.resolved_at or a.last_seen_at + HOUR


def link_for(base_url: str, a: AlertView) -> str:
    """``base_url`` with ``{date}`` (the Tokyo day the alert started) and ``{key}`` (its dedup key) filled in."""
    if not base_url:
        return ""
    return (base_url.replace("{date}", tokyo(a.started_at).date().isoformat())
            .replace("{key}", quote(a.dedup_key, safe="")))


def is_trouble(item: LabeledItem, service: str) -> bool:
    """A trouble report about ``service``: what the alert signal counts."""
    label = item.label
    return (label.relevant and service in {str(s) for s in label.services} and label.cause in TROUBLE_CAUSES
            and label.sentiment != Sentiment.POSITIVE)


def leading_cause(causes: list[Cause]) -> Cause | None:
    """The most frequent cause; a tie goes to the taxonomy's order, and ``unknown`` only when nothing else is given."""
    counts = Counter(causes)
    known = {c: n for c, n in counts.items() if c != Cause.UNKNOWN} or dict(counts)
    if not known:
        return None
    order = list(Cause)
    return min(known, key=lambda c: (-known[c], order.index(c)))


def evidence_of(session: Session, a: AlertView, *, model_version: str, base_url: str = "", top: int = TOP) -> Evidence:
    """The evidence of one alert (the collection alert has only its link)."""
    link = link_for(base_url, a)
    if a.series == "nodata":
        return Evidence(link=link)
    since, until = span(a)
    rows = story_rows([it for it in labeled_items(session, model_version, since, until) if is_trouble(it, a.service)])
    headlines = tuple(Headline(r.title, r.url, tuple(p for p, _ in r.publishers), r.first_seen) for r in rows[:top])
    return Evidence(headlines, len(rows), leading_cause([r.cause for r in rows]),
                    incident_of(session, a.service, a.started_at), link)


def gather_evidence(session: Session, alerts: list[AlertView], *, model_version: str,
                    base_url: str = "") -> dict[str, Evidence]:
    """Evidence per dedup key, for the alerts about to be notified."""
    out: dict[str, Evidence] = {}
    for a in alerts:
        if a.dedup_key not in out:
            out[a.dedup_key] = evidence_of(session, a, model_version=model_version, base_url=base_url)
    return out


def incident_of(session: Session, service: str, when: datetime) -> IncidentRef | None:
    """The incident of ``service`` at ``when`` when the store keeps incidents (``store.incidents``), else None."""
    try:
        from store.incidents import incident_for  # incidents are optional: a store without them still alerts
    except ModuleNotFoundError as exc:
        if exc.name != "store.incidents":
            raise
        return None
    incident = incident_for(session, service, when)
    if incident is None:
        return None
    return IncidentRef(str(incident.id), tuple(str(s) for s in incident.services), _time(incident.start),
                       _time(incident.first_official), _time(incident.recovered))


def _time(value) -> datetime | None:
    """A time, or the time of an item-like record (``.at`` / ``.published_at``)."""
    if value is None or isinstance(value, datetime):
        return value
    return getattr(value, "at", None) or getattr(value, "published_at", None)
