"""Emails: the daily digest (text + HTML with the charts inline) and alert notices, built as
``EmailMessage`` objects (UTF-8, RFC 2047 subjects), then sent over SMTP as a separate step."""

from __future__ import annotations

import hashlib
import re
import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape

from collector.deadline import Deadline, deadline
from reports.daily import DailyReport
from reports.notices import TOKYO, alert_line, display_name
from reports.rendering import FONT, render_html, render_text
from store.alerts import AlertView

DOMAIN = "mynawatch.local"
EVENT_NAMES = {"firing": "発生", "repeat": "継続中", "resolved": "解消"}


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "mynawatch@localhost"
    recipients: tuple[str, ...] = ()
    timeout: float = 30.0


@dataclass(frozen=True)
class Chart:
    name: str  # trend | hourly (see reports.rendering.CHARTS)
    png: bytes


def message_id(key: str) -> str:
    """A Message-ID derived from what is sent, so a retried message is recognisably the same one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{DOMAIN}>"


def _headers(msg: EmailMessage, *, subject: str, sender: str, recipient: str, key: str) -> None:
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = recipient
    msg["Date"] = format_datetime(datetime.now(TOKYO))  # +0900, the time the reader lives in
    msg["Message-ID"] = message_id(f"{key}|{recipient}")


def digest_subject(report: DailyReport) -> str:
    alerts = [a for a in report.alerts if a.status in ("firing", "resolved")]
    return f"【mynawatch】{report.title}" + (f"（アラート{len(alerts)}件）" if alerts else "")


def build_digest(report: DailyReport, *, charts: list[Chart], sender: str, recipient: str) -> EmailMessage:
    """The digest: multipart/alternative of text and HTML; the HTML is multipart/related with the charts by cid:."""
    cids = {c.name: make_msgid(c.name, domain=DOMAIN) for c in charts}
    msg = EmailMessage()
    _headers(msg, subject=digest_subject(report), sender=sender, recipient=recipient, key=f"digest|{report.day}")
    msg.set_content(render_text(report), charset="utf-8")
    msg.add_alternative(render_html(report, {name: f"cid:{cid[1:-1]}" for name, cid in cids.items()}),
                        subtype="html", charset="utf-8")
    html = msg.get_payload()[1]
    for c in charts:
        html.add_related(c.png, maintype="image", subtype="png", cid=cids[c.name], disposition="inline",
                         filename=f"{c.name}-{report.day.isoformat()}.png")  # shown in the HTML, not a download
    return msg


def alert_subject(service: str, events: list[tuple[str, AlertView]]) -> str:
    kinds = [k for k, _ in events]
    kind = next((k for k in ("firing", "repeat", "resolved") if k in kinds), kinds[0])
    what = "情報収集の停止" if service == "collection" else f"{display_name(service)}の障害報告が急増"
    return f"【mynawatch】{EVENT_NAMES[kind]}: {what}"


def build_alert_email(service: str, events: list[tuple[str, AlertView]], *, sender: str, recipient: str,
                      key: str) -> EmailMessage:
    """One notice for one group (one service): every event of this evaluation, text and HTML."""
    msg = EmailMessage()
    _headers(msg, subject=alert_subject(service, events), sender=sender, recipient=recipient, key=key)
    lines = [f"[{EVENT_NAMES[k]}] {alert_line(a)}" for k, a in events]
    msg.set_content("\n".join(lines) + "\n\nmynawatch のアラートです。時刻は日本時間。\n", charset="utf-8")
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    msg.add_alternative(f'<!DOCTYPE html><html lang="ja"><body style="{FONT}"><ul>{items}</ul>'
                        '<p style="color:#666;font-size:12px">mynawatch のアラートです。時刻は日本時間。</p>'
                        "</body></html>\n", subtype="html", charset="utf-8")
    return msg


def _connect(settings: SmtpSettings, limit: Deadline) -> smtplib.SMTP:
    """Connected (and logged in); ``limit`` shuts the socket when the whole exchange outlasts the timeout."""
    smtp = smtplib.SMTP(timeout=settings.timeout)
    limit.watch_socket(lambda: getattr(smtp, "sock", None))
    try:
        smtp.connect(settings.host, settings.port)
        if settings.starttls:
            smtp.starttls()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def send_message(msg: EmailMessage, settings: SmtpSettings) -> None:
    """Deliver over SMTP. Raises smtplib.SMTPException or OSError when the server is unreachable (TimeoutError
    when the whole exchange takes longer than ``settings.timeout``)."""
    with deadline(settings.timeout) as limit, _connect(settings, limit) as smtp:
        smtp.send_message(msg)


def wire_bytes(msg: EmailMessage) -> bytes:
    """The message as it goes over SMTP (CRLF line ends): what the outbox keeps."""
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def send_bytes(data: bytes, recipient: str, settings: SmtpSettings) -> None:
    """Deliver an already built message (the outbox keeps the exact bytes) to one recipient."""
    data = re.sub(rb"(?<!\r)\n", b"\r\n", data)  # SMTP lines end in CRLF; a bare LF would make one endless line
    with deadline(settings.timeout) as limit, _connect(settings, limit) as smtp:
        smtp.sendmail(settings.sender, [recipient], data)


def is_permanent(exc: Exception) -> bool:
    """A 5xx answer about the sender, recipient or message: retrying will not help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", None)
    return isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) and code is not None and code >= 500
