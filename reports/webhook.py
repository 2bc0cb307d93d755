"""Webhook notifications in Alertmanager's JSON shape (version 4), so existing receivers work as they are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from reports.evidence import Evidence, figure
from reports.notices import alert_summary, display_name
from store.alerts import AlertView
from store.clean import one_line
from store.deadline import deadline, deadline_transport

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt for an alert still firing
USER_AGENT = "mynawatch/0.1 (alert webhook)"


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    name: str = "webhook"
    send_resolved: bool = True
    timeout_seconds: float = 10.0

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook {self.name!r}: url {self.url!r} must start with http:// or https://")


class WebhookFailed(Exception):
    """The receiver did not accept the notification."""

    def __init__(self, url: str, reason: str, *, permanent: bool = False):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.permanent = url, reason, permanent


def _rfc3339(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_labels(a: AlertView) -> dict[str, str]:
    name = "MynaCollectionStopped" if a.series == "nodata" else "MynaTroubleSpike"
    return {"alertname": name, "service": a.service, "series": a.series, "severity": "warning"}


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def describe(a: AlertView, ev: Evidence) -> str:
    """The ``description``: counts against the baseline, cause, incident and the top stories, in one
    paragraph. Times in UTC with ``Z``, like every time of the payload."""
    if a.series == "nodata":
        return f"{_rfc3339(a.started_at)} 以降、どの情報源からも取得できていません。" + (f" {one_line(a.note)}" if a.note else "")
    parts = [f"{display_name(a.service)}: ピーク {a.peak_count} 件/時"
             + (f"（平常 {figure(a.peak_expected)} 件/時）" if a.peak_expected is not None else "")
             + (f"、期間計 {a.total_count} 件" if a.total_count is not None else "")
             + (f"（平常 {figure(a.total_expected)} 件）" if a.total_expected is not None else "")
             + f"、{_rfc3339(a.started_at)} から。"]
    if ev.cause is not None:
        parts.append(f"主な原因: {ev.cause.display}。")
    if ev.incident is not None:
        i = ev.incident
        parts.append(f"インシデント #{one_line(i.id)}（{_rfc3339(i.start)} から"
                     + (f"、公式発表 {_rfc3339(i.first_official)}" if i.first_official else "")
                     + (f"、復旧 {_rfc3339(i.recovered)}" if i.recovered else "") + "）。")
    if ev.headlines:
        parts.append("主な報道: " + " ".join(f"{n}) {one_line(h.title)}（{'、'.join(one_line(p) for p in h.publishers)}）"
                                              f" {one_line(h.url)}" for n, h in enumerate(ev.headlines, 1)))
    if a.note:
        parts.append(one_line(a.note))
    return " ".join(parts)


def _evidence_annotations(a: AlertView, ev: Evidence) -> dict[str, str]:
    out = {"service_name": display_name(a.service)}
    if a.peak_expected is not None:
        out["peak_expected"] = figure(a.peak_expected)
    if a.total_count is not None:
        out["total_count"] = str(a.total_count)
    if a.total_expected is not None:
        out["total_expected"] = figure(a.total_expected)
    if ev.cause is not None:
        out["cause"], out["cause_name"] = str(ev.cause), ev.cause.display
    for n, h in enumerate(ev.headlines, 1):
        out[f"headline_{n}"] = one_line(h.title)
        out[f"headline_{n}_url"] = one_line(h.url)
        out[f"headline_{n}_publishers"] = "、".join(one_line(p) for p in h.publishers)
        out[f"headline_{n}_at"] = _rfc3339(h.first_seen)
    if ev.incident is not None:
        i = ev.incident
        out["incident"], out["incident_start"] = one_line(i.id), _rfc3339(i.start)
        out["incident_services"] = ",".join(i.services)
        if i.first_official:
            out["incident_first_official"] = _rfc3339(i.first_official)
        if i.recovered:
            out["incident_recovered"] = _rfc3339(i.recovered)
    return out


def _alert(a: AlertView, status: str, ev: Evidence) -> dict:
    labels = alert_labels(a)
    ends = (a.resolved_at or a.last_seen_at) if status == "resolved" else None
    return {
        "status": status, "labels": labels,
        "annotations": {"summary": alert_summary(a), "description": describe(a, ev), "dedup_key": a.dedup_key,
                        "peak_count": str(a.peak_count), "score": f"{a.score:.1f}", **_evidence_annotations(a, ev)},
        "startsAt": _rfc3339(a.started_at), "endsAt": _rfc3339(ends) if ends else ZERO_TIME,
        "generatorURL": ev.link, "fingerprint": fingerprint(labels),
    }


def group_key(service: str, alerts: list[AlertView]) -> str:
    """Alertmanager's group key, narrowed to the episodes notified: the same for every notice about one episode
    (firing, repeats, resolved) and for every copy of a notice, another for the next episode of the service."""
    episodes = ",".join(sorted({a.dedup_key for a in alerts}))
    return f'{{}}:{{episode="{episodes}", service="{service}"}}'


def idempotency_key(key: str, url: str) -> str:
    """The Idempotency-Key header of one notification to one webhook: the same on every copy, so a receiver can
    drop a repeat (delivery is at least once). A quoted string, as the IETF draft for the header has it."""
    return '"' + hashlib.sha256(f"{key}|{url}".encode()).hexdigest()[:32] + '"'


def alertmanager_payload(service: str, alerts: list[tuple[AlertView, str]], *, receiver: str,
                         external_url: str = "", evidence: dict[str, Evidence] | None = None) -> dict:
    """The body Alertmanager posts to a webhook for one group (the alerts of one service), each alert with
    its evidence (``evidence`` by dedup key) in its annotations."""
    items = [_alert(a, status, (evidence or {}).get(a.dedup_key, Evidence())) for a, status in alerts]
    common_labels, common_ann = _common(items, "labels"), _common(items, "annotations")
    status = "firing" if any(s == "firing" for _, s in alerts) else "resolved"
    return {
        "version": "4", "groupKey": group_key(service, [a for a, _ in alerts]), "truncatedAlerts": 0, "status": status,
        "receiver": receiver, "groupLabels": {"service": service}, "commonLabels": common_labels,
        "commonAnnotations": common_ann, "externalURL": external_url, "alerts": items,
    }


def _common(items: list[dict], field: str) -> dict[str, str]:
    """What every alert shares in ``field``, in the first alert's order (the body is the same bytes every time)."""
    if not items:
        return {}
    return {k: v for k, v in items[0][field].items() if all(i[field].get(k) == v for i in items[1:])}


def post_webhook(url: str, body: bytes, *, timeout: float, idempotency_key: str | None = None) -> None:
    """POST the JSON body, all within ``timeout`` seconds (connecting, sending, the answer). Raises WebhookFailed
    (``permanent`` for a 4xx other than 408 and 429)."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    try:
        client = httpx.Client(transport=deadline_transport(), timeout=timeout, trust_env=False)
        with deadline(timeout), client:
            response = client.post(url, content=body, follow_redirects=False, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise WebhookFailed(url, f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise WebhookFailed(url, f"HTTP {response.status_code}", permanent=permanent)
