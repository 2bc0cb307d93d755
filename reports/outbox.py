"""Notifications through the store's outbox: alert events become one message per group (service)
and target, queued with the alert state in one transaction; delivery claims, sends and records each
message, and retries with backoff when the server is down.

Delivery is at least once: nothing is lost, and a process that dies after the server took a message but
before recording it leaves the message to go again when its claim runs out. Every copy carries the same
key for the receiver to drop repeats: the email's Message-ID, the webhook's Idempotency-Key header."""

from __future__ import annotations

import json
import logging
import smtplib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from reports.alerts import Event
from reports.evidence import Evidence
from reports.mail import SmtpSettings, build_alert_email, is_permanent, send_bytes, wire_bytes
from reports.notices import alert_summary
from reports.webhook import WebhookFailed, WebhookSettings, alertmanager_payload, idempotency_key, post_webhook
from store import alerts as store_alerts
from store import notifications as store_out
from store.notifications import Outgoing

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=1)
CLAIM_MARGIN = timedelta(seconds=10)  # for the bookkeeping after a send (a busy store waits up to its busy_timeout)
RANK = ("firing", "repeat", "resolved")


@dataclass(frozen=True)
class Channels:
    """Where notifications go: alert emails to ``email_to`` over ``smtp``, and the webhooks."""

    smtp: SmtpSettings = SmtpSettings()
    email_to: tuple[str, ...] = ()
    webhooks: tuple[WebhookSettings, ...] = ()

    @classmethod
    def of(cls, smtp: SmtpSettings, *, send_email: bool, webhooks: tuple[WebhookSettings, ...]) -> Channels:
        """Alert emails go to the [smtp] recipients when ``send_email``; every webhook gets every alert."""
        return cls(smtp, smtp.recipients if send_email else (), tuple(webhooks))


@dataclass
class Delivery:
    sent: list[str] = field(default_factory=list)  # "channel target subject"
    failed: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # being sent by another process right now


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, ... minutes after each failed attempt, at most an hour."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _group_key(service: str, events: list[Event], now: datetime) -> str:
    parts = [f"{e.alert.dedup_key}:{e.kind}" + (f"@{now:%Y-%m-%dT%H:%M}" if e.kind == "repeat" else "")
             for e in events]
    return f"alert|{service}|" + "+".join(sorted(parts))


def alert_messages(events: list[Event], channels: Channels, *, now: datetime,
                   evidence: dict[str, Evidence] | None = None) -> list[Outgoing]:
    """One message per group (service) and target for this evaluation's events, each alert with its
    ``evidence`` (by dedup key; see ``reports.evidence.gather_evidence``)."""
    groups: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        groups[e.alert.service].append(e)
    out = []
    for service, evs in sorted(groups.items()):
        key = _group_key(service, evs, now)
        kind = next(k for k in RANK if any(e.kind == k for e in evs))
        pairs = [(e.kind, e.alert) for e in evs]
        subject = "; ".join(dict.fromkeys(alert_summary(e.alert) for e in evs))
        for rcpt in channels.email_to:
            msg = build_alert_email(service, pairs, sender=channels.smtp.sender, recipient=rcpt, key=key,
                                    evidence=evidence)
            out.append(Outgoing(key, "email", rcpt, kind, str(msg["Subject"]), wire_bytes(msg)))
        latest = {e.alert.dedup_key: e for e in evs}  # firing and resolved in one go: the receiver sees resolved
        for hook in channels.webhooks:
            alerts = [(e.alert, "resolved" if e.kind == "resolved" else "firing") for e in latest.values()]
            if not hook.send_resolved:
                alerts = [(a, s) for a, s in alerts if s == "firing"]
            if alerts:
                body = alertmanager_payload(service, alerts, receiver=hook.name, evidence=evidence)
                out.append(Outgoing(key, "webhook", hook.url, kind, subject,
                                    json.dumps(body, ensure_ascii=False, indent=1).encode()))
    return out


def queue(session: Session, messages: list[Outgoing], *, now: datetime) -> int:
    """Queue messages (in the caller's transaction). Returns how many were new."""
    return sum(store_out.enqueue(session, m, now=now) for m in messages)


def claim_lease(q: store_out.Queued, channels: Channels) -> timedelta:
    """How long a claim holds: the send's own deadline and a margin. A claim still unanswered after that is a
    process that died, and the message goes again."""
    seconds = channels.smtp.timeout if q.channel == "email" else _hook(q.target, channels).timeout_seconds
    return timedelta(seconds=seconds) + CLAIM_MARGIN


def deliver_due(sessions: sessionmaker[Session], channels: Channels, *, now: datetime) -> Delivery:
    """Try every message whose time has come, each in its own transactions: claim, send, record."""
    done, started = Delivery(), time.monotonic()

    def clock() -> datetime:  # ``now`` moved on by the time the sends so far took: where a claim's lease starts
        return now + timedelta(seconds=time.monotonic() - started)

    with sessions.begin() as session:
        batch = store_out.due(session, now=now)
        held = store_out.held(session, now=now)
    for q in held:
        done.held.append(f"{q.channel} {q.target} {q.subject}")
        log.warning("notification %s is being sent by another process; if that process died, it goes again at %s",
                    q.id, q.next_attempt_at.isoformat(timespec="seconds"))
    for q in batch:
        with sessions.begin() as session:
            if not store_out.claim(session, q, now=clock(), lease=claim_lease(q, channels)):
                continue
        attempt, label = q.attempts + 1, f"{q.channel} {q.target} {q.subject}"
        if q.status == "sending":
            log.warning("notification %s: the process that took it never reported back; sending it again with the "
                        "same %s", q.id, "Message-ID" if q.channel == "email" else "Idempotency-Key")
        try:
            _send(q, channels)
        except (OSError, smtplib.SMTPException, WebhookFailed) as exc:
            permanent = getattr(exc, "permanent", False) or (isinstance(exc, smtplib.SMTPException) and is_permanent(exc))
            with sessions.begin() as session:
                if permanent:
                    store_out.mark_gave_up(session, q.id, attempt, str(exc))
                else:
                    store_out.mark_failed(session, q.id, attempt, str(exc), retry_at=now + backoff(attempt))
            (done.gave_up if permanent else done.failed).append(f"{label}: {exc}")
            log.warning("notification %s not delivered (%s): %s", q.id, "giving up" if permanent else "will retry", exc)
            continue
        with sessions.begin() as session:
            store_out.mark_sent(session, q.id, now=now)
            if q.kind == "digest":
                store_alerts.record_digest(session, q.key.split("|", 1)[1], q.target,
                                           _message_id(q.body), sent_at=now)
        done.sent.append(label)
    return done


def next_delivery_at(sessions: sessionmaker[Session]) -> datetime | None:
    """When the outbox next has work: the earliest retry, or the end of a claim (None when it holds nothing)."""
    with sessions.begin() as session:
        return store_out.next_due_at(session)


def _hook(url: str, channels: Channels) -> WebhookSettings:
    return next((h for h in channels.webhooks if h.url == url), None) or WebhookSettings(url=url)


def _send(q: store_out.Queued, channels: Channels) -> None:
    if q.channel == "email":
        send_bytes(q.body, q.target, channels.smtp)
        return
    post_webhook(q.target, q.body, timeout=_hook(q.target, channels).timeout_seconds,
                 idempotency_key=idempotency_key(q.key, q.target))


def _message_id(body: bytes) -> str:
    for line in body.split(b"\n", 60):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode("ascii", "replace")
    return ""
