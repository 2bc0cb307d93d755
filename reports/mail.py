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

from reports.daily import DailyReport
from reports.evidence import Evidence, figure
from reports.notices import STATUS_NAMES, display_name
from reports.rendering import FONT, render_html, render_text
from store.alerts import AlertView
from store.clean import one_line, web_link
from store.clock import TOKYO, shown
from store.deadline import Deadline, deadline

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


FOOTER = "mynawatch のアラートです。時刻は日本時間（+09:00）。"


def alert_facts(kind: str, a: AlertView, ev: Evidence) -> tuple[str, list[tuple[str, str]]]:
    """The heading and the (label, value) lines of one event: span, counts against the baseline, cause,
    incident. Every time is Tokyo time with its offset."""
    state = STATUS_NAMES.get(a.status, a.status) + ("（サイレンス中）" if a.silenced else "")
    if a.series == "nodata":
        return f"[{EVENT_NAMES[kind]}] 情報収集の停止", [("期間", f"{shown(a.started_at)} 以降取得なし（{state}）")]
    end = f" 〜 {shown(a.resolved_at)}" if a.resolved_at else " 〜"
    facts = [("期間", f"{shown(a.started_at)}{end}（{state}）")]
    peak = f"ピーク {a.peak_count} 件/時" + (f"（平常 {figure(a.peak_expected)} 件/時）" if a.peak_expected is not None else "")
    if a.total_count is not None:
        peak += f"、期間計 {a.total_count} 件" + (f"（平常 {figure(a.total_expected)} 件）" if a.total_expected is not None else "")
    facts.append(("件数", f"{peak}、スコア {a.score:.1f}"))
    if ev.cause is not None:
        facts.append(("主な原因", ev.cause.display))
    if ev.incident is not None:
        i = ev.incident
        text = f"#{one_line(i.id)}（{'、'.join(display_name(s) for s in i.services)}）{shown(i.start)} から"
        text += f"、公式発表 {shown(i.first_official)}" if i.first_official else "、公式発表なし"
        text += f"、復旧 {shown(i.recovered)}" if i.recovered else ""
        facts.append(("インシデント", text))
    if a.note:
        facts.append(("備考", one_line(a.note)))
    return f"[{EVENT_NAMES[kind]}] {display_name(a.service)}の障害報告が急増", facts


def _text_block(kind: str, a: AlertView, ev: Evidence) -> str:
    heading, facts = alert_facts(kind, a, ev)
    lines = [heading] + [f"  {label}: {value}" for label, value in facts]
    if ev.headlines:
        lines.append(f"  主な報道（{ev.stories} 件中 上位 {len(ev.headlines)} 件）:")
        for n, h in enumerate(ev.headlines, 1):
            lines.append(f"    {n}. {one_line(h.title)}")
            lines.append(f"       {'、'.join(one_line(p) for p in h.publishers)} {shown(h.first_seen)}")
            lines.append(f"       {one_line(h.url)}")
    if ev.link:
        lines.append(f"  詳細: {ev.link}")
    return "\n".join(lines)


def _html_block(kind: str, a: AlertView, ev: Evidence) -> str:
    heading, facts = alert_facts(kind, a, ev)
    rows = "".join(f'<tr><th style="text-align:left;padding:2px 12px 2px 0;white-space:nowrap">{escape(label)}</th>'
                   f"<td>{escape(value)}</td></tr>" for label, value in facts)
    out = [f'<h2 style="font-size:16px;margin:16px 0 4px">{escape(heading)}</h2><table>{rows}</table>']
    if ev.headlines:
        items = []
        for h in ev.headlines:
            link = web_link(h.url)
            title = f'<a href="{escape(link)}">{escape(one_line(h.title))}</a>' if link else escape(one_line(h.title))
            items.append(f'<li>{title}<br><span style="color:#666">{escape("、".join(one_line(p) for p in h.publishers))}'
                         f" {escape(shown(h.first_seen))}</span></li>")
        out.append(f'<p style="margin:8px 0 2px">主な報道（{ev.stories} 件中 上位 {len(ev.headlines)} 件）</p>'
                   f'<ol style="margin-top:0">{"".join(items)}</ol>')
    if ev.link:
        out.append(f'<p><a href="{escape(ev.link)}">詳細</a></p>')
    return "".join(out)


def build_alert_email(service: str, events: list[tuple[str, AlertView]], *, sender: str, recipient: str,
                      key: str, evidence: dict[str, Evidence] | None = None) -> EmailMessage:
    """One notice for one group (one service): every event of this evaluation with its evidence (counts
    against the baseline, cause, incident, the top stories with links and publishers), text and HTML."""
    msg = EmailMessage()
    _headers(msg, subject=alert_subject(service, events), sender=sender, recipient=recipient, key=key)
    blocks = [(k, a, (evidence or {}).get(a.dedup_key, Evidence())) for k, a in events]
    msg.set_content("\n\n".join(_text_block(*b) for b in blocks) + f"\n\n{FOOTER}\n", charset="utf-8")
    msg.add_alternative(f'<!DOCTYPE html><html lang="ja"><body style="{FONT}">'
                        + "".join(_html_block(*b) for b in blocks)
                        + f'<p style="color:#666;font-size:12px">{escape(FOOTER)}</p></body></html>\n',
                        subtype="html", charset="utf-8")
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
    """The message as it goes over SMTP (CRLF line ends): what the outbox keeps. Where an address is not ASCII
    (運用@例え.jp) its headers are UTF-8, as SMTPUTF8 carries them: an encoded word is no address."""
    utf8 = not all(str(msg.get(name, "")).isascii() for name in ("From", "To"))
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n", utf8=utf8))


def send_bytes(data: bytes, recipient: str, settings: SmtpSettings) -> None:
    """Deliver an already built message (the outbox keeps the exact bytes) to one recipient. An address that
    is not ASCII goes through SMTPUTF8; a server without it refuses that message (SMTPNotSupportedError)."""
    data = re.sub(rb"(?<!\r)\n", b"\r\n", data)  # SMTP lines end in CRLF; a bare LF would make one endless line
    wide = [a for a in (settings.sender, recipient) if not a.isascii()]
    with deadline(settings.timeout) as limit, _connect(settings, limit) as smtp:
        if wide:
            smtp.ehlo_or_helo_if_needed()
            if not smtp.has_extn("smtputf8"):
                raise smtplib.SMTPNotSupportedError(
                    f"{wide[0]} is not an ASCII address, and the SMTP server {settings.host} does not take such "
                    "addresses (it offers no SMTPUTF8): use an ASCII address, or a server that does")
        smtp.sendmail(settings.sender, [recipient], data, mail_options=["SMTPUTF8"] if wide else [])


def is_permanent(exc: Exception) -> bool:
    """A 5xx answer about the sender, recipient or message: retrying will not help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", None)
    return isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) and code is not None and code >= 500
