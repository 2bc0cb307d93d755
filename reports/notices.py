"""How alerts read in Japanese: names, one-line summaries and time spans (shared by mail, webhook, report)."""

from __future__ import annotations

from datetime import datetime

from store.alerts import AlertView
from store.clean import one_line
from store.clock import TOKYO
from store.records import SERVICE_NAMES, Service

STATUS_NAMES = {"pending": "保留中", "firing": "継続中", "resolved": "解消", "inhibited": "通知抑制",
                "expired": "短時間で収束"}


def display_name(service: str) -> str:
    """The Japanese name of a service code ("collection" is the collector itself)."""
    try:
        return SERVICE_NAMES[Service(service)]
    except ValueError:
        return "情報収集" if service == "collection" else one_line(service)


def jst(when: datetime, fmt: str = "%m/%d %H:%M") -> str:
    return when.astimezone(TOKYO).strftime(fmt)


def alert_summary(a: AlertView) -> str:
    if a.series == "nodata":
        return "情報収集が止まっています（どの情報源からも取得できていません）"
    return f"{display_name(a.service)}: 障害報告が急増（ピーク {a.peak_count} 件/時、スコア {a.score:.1f}）"


def alert_line(a: AlertView) -> str:
    """One line for reports and emails: service, span (JST), peak, score and state. Stored text in it (the
    note may quote a maintenance notice's title) is kept to one line without control characters."""
    end = a.resolved_at or a.last_seen_at
    state = STATUS_NAMES.get(a.status, a.status) + ("（サイレンス中）" if a.silenced else "")
    if a.series == "nodata":
        return f"情報収集の停止: {jst(a.started_at)} 以降取得なし（{state}）"
    span = f"{jst(a.started_at)}〜{jst(end) if a.resolved_at else ''}"
    return (f"{display_name(a.service)}: {span} ピーク {a.peak_count} 件/時（スコア {a.score:.1f}、{state}）"
            + (f" {one_line(a.note)}" if a.note else ""))
