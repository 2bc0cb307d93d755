"""Incidents derived from the store: the trouble of one or more services that overlaps in time.

The pure part (``cluster_spans``, ``build_incident``) takes the detector's episodes, the recorded alerts
and the labeled items; ``recompute_incidents`` reads them from the store and saves the result, leaving
rows that did not change untouched (so recomputing twice changes nothing).

- **Spans**: the episodes of each service's trouble signal (the detector of ``reports/spikes.py`` over
  the whole history) and the alerts that fired for it; overlapping spans of one service are one span.
- **Clusters**: spans of any services that overlap (or lie within ``resolve_after_hours`` of each other).
- **Services**: the service with the most trouble stories leads; another joins when it has trouble
  stories of its own (at least its ``min_count``) that name none of the services already in. A
  service whose trouble stories all name the lead (マイナ保険証 named in every マイナポータル story) is
  a co-mention: its alert is listed with the incident, the service is not.
- **Follow-ups**: a cluster of the same services starting within ``followup_hours`` of an incident's
  end (the cause explained the next morning) is part of it; its alerts are listed, its items are
  follow-ups, and the incident's end stays where its signal came back to baseline.
- **Start**: the first trouble report, looking back from the first flagged hour over trouble hours
  no more than ``resolve_after_hours`` apart. **End**: the end of the last flagged hour.
- **Acknowledgement**: the first item from an official source (a source with ``official = true``, or
  a page on an official domain such as ``go.jp`` or ``lg.jp``).
- **Recovery**: the first recovery report (official or not): a relevant item about the incident's
  services that is positive with a failure cause, or not negative and with a recovery word of the
  classifier's lexicon (``recovery_words``, handed in by the pipeline), confirmed by the next ``confirm_hours``: recovery stories outnumber trouble
  stories there (a patient who got through once mid-outage is not the recovery).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from reports.alerts import service_of
from reports.spikes import HOUR, Episode, SpikeParams, detect_spikes, floor_hour
from store import alerts as store_alerts
from store import incidents as store_incidents
from store import signals as q
from store.alerts import AlertView
from store.incidents import Incident, IncidentEntry, incident_id
from store.records import TROUBLE_CAUSES, Cause, LabeledItem, Sentiment

INCIDENT_DAYS = 14  # what `run` recomputes each time: incidents that started this recently (older ones stay)
MAX_LEAD = timedelta(hours=12)  # the first trouble report is looked for at most this long before the first flagged hour


@dataclass(frozen=True)
class IncidentPolicy:
    """[incidents] of mynawatch.toml."""

    followup_hours: int = 24  # items and alerts this long after an incident's end still belong to it
    confirm_hours: int = 2  # a recovery report counts when recovery stories outnumber trouble stories this long after it
    official_domains: tuple[str, ...] = ("go.jp", "lg.jp")  # pages on these domains (and their subdomains) are official

    def __post_init__(self):
        for name in ("followup_hours", "confirm_hours"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r}: expected a whole number of hours, at least 1")


@dataclass(frozen=True)
class Span:
    """Trouble of one service over [start, stop): an episode, an alert, or several of them merged."""

    service: str
    start: datetime
    stop: datetime
    ended: bool = True
    alerts: tuple[str, ...] = ()


@dataclass
class Cluster:
    spans: list[Span]
    followups: list["Cluster"] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return min(s.start for s in self.spans)

    @property
    def stop(self) -> datetime:
        return max(s.stop for s in self.spans)

    @property
    def services(self) -> set[str]:
        return {s.service for s in self.spans}


def spans_of(episodes: list[Episode], alerts: list[AlertView]) -> list[Span]:
    """One span per episode and per fired trouble alert, then merged per service where they overlap."""
    raw = [Span(service_of(e.series), e.start, e.stop, e.ended) for e in episodes if e.series.startswith("trouble:")]
    for a in alerts:
        if a.series.startswith("trouble:") and a.ever_fired and a.status != "inhibited":
            raw.append(Span(a.service, a.started_at, a.resolved_at or a.last_seen_at + HOUR,
                            a.status == "resolved", (a.dedup_key,)))
    merged: list[Span] = []
    for s in sorted(raw, key=lambda s: (s.service, s.start, s.stop)):
        last = merged[-1] if merged else None
        if last and last.service == s.service and s.start < last.stop:
            merged[-1] = Span(s.service, last.start, max(last.stop, s.stop),
                              last.ended and s.ended if s.stop >= last.stop else last.ended,
                              tuple(sorted(set(last.alerts + s.alerts))))
        else:
            merged.append(s)
    return sorted(merged, key=lambda s: (s.start, s.service))


def cluster_spans(spans: list[Span], *, gap: timedelta, followup: timedelta) -> list[Cluster]:
    """Spans that overlap (within ``gap``) in clusters; a later cluster of no other services that starts
    within ``followup`` of one's end becomes its follow-up."""
    clusters: list[Cluster] = []
    for s in sorted(spans, key=lambda s: (s.start, s.service)):
        if clusters and s.start <= clusters[-1].stop + gap:
            clusters[-1].spans.append(s)
        else:
            clusters.append(Cluster([s]))
    out: list[Cluster] = []
    for c in clusters:
        lead = next((o for o in reversed(out) if c.services <= o.services
                     and c.start <= max([o.stop] + [f.stop for f in o.followups]) + followup), None)
        if lead is not None:
            lead.followups.append(c)
        else:
            out.append(c)
    return out


def is_trouble(item: LabeledItem) -> bool:
    """The alert signal's item: a failure cause and a tone that is not positive."""
    return item.label.cause in TROUBLE_CAUSES and item.label.sentiment != Sentiment.POSITIVE


def _has_recovery_word(item: LabeledItem, words: tuple[str, ...]) -> bool:
    return any(w in item.title for w in words)


def is_recovery(item: LabeledItem, words: tuple[str, ...] = ()) -> bool:
    """A recovery report: positive with a failure cause, or not negative with one of ``words`` (the
    classifier's recovery lexicon, handed in by the composition root)."""
    if item.label.cause == Cause.MAINTENANCE:
        return False
    if item.label.sentiment == Sentiment.POSITIVE and item.label.cause in TROUBLE_CAUSES:
        return True
    return item.label.sentiment != Sentiment.NEGATIVE and _has_recovery_word(item, words)


def is_official(item: LabeledItem, source: str, *, official_sources: frozenset[str], domains: tuple[str, ...]) -> bool:
    if source in official_sources:
        return True
    host = (urlsplit(item.url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in domains)


def _names(item: LabeledItem, services: set[str]) -> bool:
    return bool({str(s) for s in item.label.services} & services)


def _stories(items: list[LabeledItem]) -> int:
    return len({i.story_id for i in items})


def members_of(cluster: Cluster, items: list[LabeledItem], *, min_count: dict[str, int]) -> list[str]:
    """The services of a cluster: the one with the most trouble stories, then each with enough of its own."""
    trouble = [i for i in items if is_trouble(i) and cluster.start - MAX_LEAD <= i.published < cluster.stop]
    by_service = {s: [i for i in trouble if _names(i, {s})] for s in cluster.services}
    order = sorted(cluster.services, key=lambda s: (-_stories(by_service[s]), s))
    members: list[str] = []
    for s in order:
        own = [i for i in by_service[s] if not _names(i, set(members))]
        if not members and own or members and _stories(own) >= min_count.get(s, 3):
            members.append(s)
    return members


def _first_report(start: datetime, trouble: list[LabeledItem], gap: timedelta) -> datetime:
    """Looking back from ``start`` over trouble reports no more than ``gap`` apart (at most MAX_LEAD)."""
    times = sorted((i.published for i in trouble if start - MAX_LEAD <= i.published < start), reverse=True)
    lo = start
    for t in times:
        if lo - t > gap:
            break
        lo = t
    return lo


def _confirmed(candidate: LabeledItem, items: list[LabeledItem], window: timedelta, words: tuple[str, ...]) -> bool:
    later = [i for i in items if candidate.published <= i.published < candidate.published + window]
    recovered = {i.story_id for i in later if is_recovery(i, words)}
    troubled = {i.story_id for i in later if is_trouble(i) and not _has_recovery_word(i, words)} - recovered
    return len(recovered) > len(troubled)


def build_incident(cluster: Cluster, items: list[LabeledItem], sources: dict[int, str], *, policy: IncidentPolicy,
                   official_sources: frozenset[str], min_count: dict[str, int], gap: timedelta,
                   until: datetime, now: datetime,
                   recovery_words: tuple[str, ...] = ()) -> tuple[Incident, list[IncidentEntry]] | None:
    """One incident from a cluster and the relevant items around it (published before ``until``: the next
    incident of these services, or now). None when no trouble report of its services is found."""
    members = members_of(cluster, items, min_count=min_count)
    if not members:
        return None
    wanted = set(members)
    spans = [s for s in cluster.spans if s.service in wanted]
    core_start, core_stop = min(s.start for s in spans), max(s.stop for s in spans)
    mine = [i for i in items if _names(i, wanted)]
    trouble_all = [i for i in mine if is_trouble(i)]
    start = _first_report(core_start, trouble_all, gap)
    extent = max([core_stop] + [f.stop for f in cluster.followups]) + timedelta(hours=policy.followup_hours)
    mine = [i for i in mine if start <= i.published < min(extent, until)]
    trouble = [i for i in mine if is_trouble(i) and i.published < core_stop]
    if not trouble:
        return None
    first = min(trouble, key=lambda i: (i.published, i.item_id))
    per_hour: dict[datetime, set[int]] = defaultdict(set)
    for i in trouble:
        per_hour[floor_hour(i.published)].add(i.story_id)
    peak_at, peak = min(per_hour.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    causes = Counter()
    for story, cause in {(i.story_id, i.label.cause) for i in mine if i.label.cause in TROUBLE_CAUSES}:
        causes[str(cause)] += 1
    official = {i.item_id for i in mine if is_official(i, sources.get(i.item_id, ""), official_sources=official_sources,
                                                       domains=policy.official_domains)}
    window = timedelta(hours=policy.confirm_hours)
    words = recovery_words
    recovery = next((i for i in mine if is_recovery(i, words) and _confirmed(i, mine, window, words)), None)
    ack = next((i for i in mine if i.item_id in official), None)
    trouble_ids = {i.item_id for i in trouble}
    entries = [IncidentEntry(i.item_id, "trouble" if i.item_id in trouble_ids else "recovery" if is_recovery(i, words)
                             else "followup", i.item_id in official) for i in mine]
    alerts = sorted({a for s in cluster.spans for a in s.alerts} | {a for f in cluster.followups for s in f.spans for a in s.alerts})
    services = tuple(sorted(members))
    incident = Incident(
        id=incident_id(first.published, services), services=services, start=first.published, end=core_stop,
        peak_at=peak_at, peak_count=len(peak), causes=tuple(c for c, _ in sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))[:3]),
        stories=_stories(trouble), items=len(trouble), publishers=len({i.publisher for i in trouble}),
        first_item_id=first.item_id, first_official=ack.published if ack else None,
        official_item_id=ack.item_id if ack else None, recovered=recovery.published if recovery else None,
        recovery_item_id=recovery.item_id if recovery else None,
        ongoing=not all(s.ended for s in spans) and core_stop >= floor_hour(now), alerts=tuple(alerts))
    return incident, entries


def recompute_incidents(session: Session, *, model_version: str, now: datetime, params: SpikeParams = SpikeParams(),
                        params_for: dict[str, SpikeParams] | None = None, policy: IncidentPolicy = IncidentPolicy(),
                        official_sources: frozenset[str] = frozenset(), recovery_words: tuple[str, ...] = (),
                        since: datetime | None = None) -> list[Incident]:
    """Derive the incidents from the store and save them: those starting at or after ``since`` (every one when
    None) become exactly what the store now says. Returns the incidents derived."""
    first = q.first_item_at(session)
    if first is None:
        store_incidents.save_incidents(session, [], since=since)
        return []
    params_for = params_for or {}
    days = max([params.baseline_days] + [p.baseline_days for p in params_for.values()])
    detect_from = first if since is None else max(first, since - timedelta(days=days + 2))
    detect_from = floor_hour(detect_from)
    # past the newest item every series is quiet: an episode open then has ended a few hours later
    quiet = max([params.resolve_after_hours] + [p.resolve_after_hours for p in params_for.values()]) + 2
    until = min(now, floor_hour(store_incidents.last_item_at(session)) + quiet * HOUR)
    series = {f"trouble:{s}": hours for s, hours in q.trouble_series(session, model_version, detect_from, until).items()}
    per_series = {f"trouble:{s}": p for s, p in params_for.items()}
    episodes = detect_spikes(series, start=detect_from, now=until, params=params, params_for=per_series, warm_from=first)
    alerts = store_alerts.alerts_between(session, detect_from, now)
    gap = timedelta(hours=params.resolve_after_hours)
    clusters = cluster_spans(spans_of(episodes, alerts), gap=gap, followup=timedelta(hours=policy.followup_hours))
    min_count = {s: p.min_count for s, p in params_for.items()} | {"": params.min_count}
    min_count = defaultdict(lambda: params.min_count, min_count)
    built: list[tuple[Incident, list[IncidentEntry]]] = []
    for n, cluster in enumerate(clusters):
        later = [c.start for c in clusters[n + 1:] if c.services & cluster.services]
        until = min(later + [now])
        lo = cluster.start - MAX_LEAD
        hi = min(until, max([cluster.stop] + [f.stop for f in cluster.followups]) + timedelta(hours=policy.followup_hours))
        items = q.relevant_items(session, model_version, lo, hi)
        sources = store_incidents.sources_of(session, [i.item_id for i in items])
        one = build_incident(cluster, items, sources, policy=policy, official_sources=official_sources,
                             min_count=min_count, gap=gap, until=until, now=now, recovery_words=recovery_words)
        if one is not None:
            built.append(one)
    store_incidents.save_incidents(session, built, since=since)
    return [inc for inc, _ in built]
