"""Digest emails: one multipart message (text + HTML with the chart inline), built then sent."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from reports.daily import DailyReport, render_html, render_text


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


def build_digest(report: DailyReport, *, chart_png: bytes | None, sender: str, recipients: tuple[str, ...],
                 domain: str = "mynawatch.local") -> EmailMessage:
    """The digest for ``report``: UTF-8, RFC 2047 subject, the chart referenced by cid: and attached."""
    cid = make_msgid("chart", domain=domain)
    rendered = report if chart_png is None else _with_cid(report, cid[1:-1])
    msg = EmailMessage()
    alerts = f"（アラート{len(report.alerts)}件）" if report.alerts else ""
    msg["Subject"] = f"【mynawatch】{report.title}{alerts}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients) or sender
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(f"digest-{report.day.isoformat()}", domain=domain)
    msg.set_content(render_text(rendered), charset="utf-8")
    msg.add_alternative(render_html(rendered), subtype="html", charset="utf-8")
    if chart_png is not None:
        msg.get_payload()[1].add_related(chart_png, maintype="image", subtype="png", cid=cid,
                                         filename=f"mentions-{report.day.isoformat()}.png")
    return msg


def _with_cid(report: DailyReport, cid: str) -> DailyReport:
    from dataclasses import replace

    return replace(report, chart_cid=cid)


def send_message(msg: EmailMessage, settings: SmtpSettings) -> None:
    """Deliver over SMTP. Raises smtplib.SMTPException or OSError when the server is unreachable."""
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(msg)
