"""The daily report rendered as plain text and as HTML for mail clients (inline styles only, every
feed-supplied string escaped). Pure: a ``DailyReport`` in, a string out.

Stored text is shown on one line each (a line break in a title or publisher name cannot start a line
of its own, say a fake header), without control characters or bidi overrides; only http(s) links
become links, any other link (javascript:, data:, ...) is shown as text."""

from __future__ import annotations

from html import escape

from reports.coverage import coverage_lines, gap_sentence
from reports.daily import DailyReport, ServiceRow, StoryRow
from reports.notices import TOKYO, alert_line, display_name, jst
from reports.timeline import chart_name, timeline_html, timeline_text
from store.clean import one_line, web_link
from store.maintenance import Window
from store.records import CAUSE_NAMES, SENTIMENT_NAMES

SOURCE_STATES = {"failing": "取得失敗", "silent": "応答なし", "stale": "更新停止の疑い"}
CHARTS = {"trend": "サービス別の言及（28日間）", "hourly": "障害報告の時間帯別推移（当日）"}
SHOWN_URL = 200  # characters of a link shown as text


def _summary(r: DailyReport) -> str:
    """The day's counts, and the hours nothing was collected: a day without any successful fetch is a gap,
    never "0 件" (items published that day and found later are still counted)."""
    gap = gap_sentence(r.coverage, r.day)
    if r.coverage and r.coverage.whole_day:
        later = f"。後の取得で見つかったこの日の記事 {r.collected} 件（関連 {r.relevant} 件）" if r.collected else ""
        return f"収集なし（欠測）: {gap}{later}"
    counts = f"収集 {r.collected} 件（関連 {r.relevant} 件、関連なし {r.irrelevant} 件）"
    return f"{counts}。{gap}。この間の件数は欠けています" if gap else counts


MISSING = "欠測（この日は収集できていません）"


def _gap_day(r: DailyReport) -> bool:
    return bool(r.coverage and r.coverage.whole_day)


def _nothing(r: DailyReport) -> str:
    """What an empty count of the day reads as: nothing found, or nothing collected."""
    return "欠測" if _gap_day(r) else "なし"


def _sentiment_rows(r: DailyReport) -> list:
    return [] if _gap_day(r) and not any(n for _, n, _, _ in r.sentiment) else r.sentiment


def _service_line(row: ServiceRow) -> str:
    ratio = f"、28日比 ×{row.ratio}" if row.ratio is not None else ""
    cause = f"、主な原因 {CAUSE_NAMES[row.top_cause]}" if row.top_cause else ""
    social = f"、はてブ {row.bookmarks}・投稿 {row.posts}" if row.bookmarks or row.posts else ""
    return (f"{row.service.display}: {row.stories} / {row.items} / {row.publishers}"
            f"（7日平均 {row.avg7:.1f}、28日平均 {row.avg28:.1f}{ratio}{cause}{social}）")


SOCIAL = "ソーシャル（ストリームの投稿 / 投稿者 / リポスト）"


def _burst_line(b) -> str:
    """A burst of trouble posts against the news: its first post, the stream alert, the first news report."""
    lead = b.lead_minutes
    ahead = "" if lead is None else f"（ニュースの{lead}分前）" if lead >= 0 else f"（ニュースの{-lead}分後）"
    news = f"最初のニュース {jst(b.first_news)}{ahead}" if b.first_news else "当日のニュースなし"
    return (f"急増 {display_name(b.service)}: 最初の投稿 {jst(b.first_post)} → ストリームのアラート {jst(b.fired)}"
            f" → {news}")


def _social_text(r: DailyReport) -> list[str]:
    """The social panel: per service stream posts, distinct authors and reposts of the day, and the bursts whose
    stream alert fired that day. Nothing at all when the store reads no stream."""
    if r.streams is None:
        return []
    lines = ["", f"■ {SOCIAL}"]
    lines += [f"- {row.service.display}: {row.posts} / {row.authors} / {row.reposts}" for row in r.streams]
    lines += [f"- {_burst_line(b)}" for b in r.bursts]
    return lines if r.streams or r.bursts else lines + ["- なし"]


def _social_html(r: DailyReport) -> list[str]:
    if r.streams is None:
        return []
    out = [f"<h2 {H2}>{escape(SOCIAL)}</h2>"]
    if r.streams:
        out.append('<table style="border-collapse:collapse;font-size:13px"><tr>'
                   + "".join(f"<th {CELL}>{h}</th>" for h in ("サービス", "投稿", "投稿者", "リポスト")) + "</tr>")
        out += [f"<tr><td {CELL}>{escape(row.service.display)}</td><td {NUM}>{row.posts}</td>"
                f"<td {NUM}>{row.authors}</td><td {NUM}>{row.reposts}</td></tr>" for row in r.streams]
        out.append("</table>")
    if r.bursts:
        out += _list([f'<span style="color:#b00">{escape(_burst_line(b))}</span>' for b in r.bursts])
    return out if r.streams or r.bursts else out + ["<p>なし</p>"]


def _story_meta(s: StoryRow) -> str:
    names = "・".join(sv.display for sv in s.services)
    return f"{names}／{CAUSE_NAMES[s.cause]}／{SENTIMENT_NAMES[s.sentiment]}／{len(s.publishers)}媒体・{s.items}記事"


def _window_line(w: Window, r: DailyReport) -> str:
    when = "予定" if w.starts_at.astimezone(TOKYO).date() > r.day else "当日"
    return f"[{when}] {display_name(w.service)}: {jst(w.starts_at)}〜{jst(w.ends_at)} {one_line(w.title)}"


def _url_text(url: str | None) -> str:
    """A link as text, on one line: a web link whole, anything else (a data: link may be megabytes) cut at
    SHOWN_URL characters."""
    url = one_line(url)
    return url if len(url) <= SHOWN_URL or web_link(url) else url[:SHOWN_URL] + "…"


def render_text(r: DailyReport) -> str:
    lines = [r.title, "=" * 40, "", _summary(r), "", "■ アラート"]
    lines += [f"- {alert_line(a)}" for a in r.alerts] or ["- なし"]
    lines += ["", "■ インシデント（最初の報告から公式発表・復旧報告まで）"]
    lines += [line for t in r.incidents for line in timeline_text(t)] or ["- なし"]
    lines += ["", "■ サービス別の言及（記事群数 / 記事数 / 媒体数）"]
    lines += [f"- {MISSING}"] if _gap_day(r) else [f"- {_service_line(row)}" for row in r.services] or ["- なし"]
    lines += _social_text(r)
    lines += ["", "■ 主な記事"]
    for s in r.top_stories:
        lines += [f"- {one_line(s.title)}（{_story_meta(s)}）"]
        lines += [f"    {one_line(name)}: {_url_text(url)}" for name, url in s.publishers]
    if not r.top_stories:
        lines.append(f"- {_nothing(r)}")
    lines += ["", "■ 原因（記事群数）"]
    lines += [f"- {CAUSE_NAMES[c]}: {n}" for c, n in r.causes] or [f"- {_nothing(r)}"]
    lines += ["", "■ 感情（記事数、当日の割合／過去7日の割合）"]
    lines += [f"- {SENTIMENT_NAMES[s]}: {n}（{share:.0%}／{week:.0%}）" for s, n, share, week in _sentiment_rows(r)]
    lines += [] if _sentiment_rows(r) else [f"- {_nothing(r)}"]
    lines += ["", "■ 計画メンテナンス"]
    lines += [f"- {_window_line(w, r)}" for w in r.maintenance]
    lines += [f"- 関連: {one_line(s.title)}（{_url_text(s.url)}）" for s in r.notices]
    if not r.maintenance and not r.notices:
        lines.append("- なし")
    lines += ["", "■ 検索トレンド（Google トレンド）"]
    lines += [f"- {one_line(t.term)}（{one_line(t.traffic_raw)}）" for t in r.trends] or [f"- {_nothing(r)}"]
    lines += ["", "■ この日の収集（取得の記録）"] + [f"- {line}" for line in coverage_lines(r.coverage, r.day)]
    lines += ["", "■ 情報源の状態（作成時点）"]
    lines += [f"- {one_line(s.name)}: {SOURCE_STATES[s.state]}（{one_line(s.detail)}）" for s in r.sources]
    if r.sources_ok or not r.sources:
        lines.append(f"- 正常: {r.sources_ok} 件" if r.sources_ok else "- 情報源の記録なし")
    return "\n".join(lines) + "\n"


# A Japanese font the reader's system has: macOS and iOS (Hiragino), Windows (Yu Gothic, Meiryo), Linux and
# Android (Noto Sans CJK JP, IPAex Gothic); the browser's sans-serif last. Single quotes: it sits in style="...".
FONT = ("font-family:'Hiragino Sans','Hiragino Kaku Gothic ProN','Yu Gothic',YuGothic,Meiryo,"
        "'Noto Sans CJK JP','Noto Sans JP','IPAexGothic',sans-serif")
H2 = 'style="font-size:16px;margin:20px 0 6px;border-bottom:1px solid #ddd"'
CELL = 'style="border:1px solid #ccc;padding:3px 6px;text-align:left"'
NUM = 'style="border:1px solid #ccc;padding:3px 6px;text-align:right"'
MUTED = 'style="color:#666;font-size:12px"'


def _img(name: str, images: dict[str, str] | None) -> list[str]:
    if not images or name not in images:
        return []
    return [f'<p><img src="{escape(images[name])}" alt="{escape(CHARTS[name])}" width="720" '
            f'style="max-width:100%;height:auto"></p>']


def _services_table(r: DailyReport) -> list[str]:
    head = ["サービス", "記事群", "記事", "媒体", "7日平均", "28日平均", "28日比", "主な原因", "はてブ", "投稿"]
    out = ['<table style="border-collapse:collapse;font-size:13px"><tr>'
           + "".join(f"<th {CELL}>{h}</th>" for h in head) + "</tr>"]
    for row in r.services:
        cells = [f"<td {CELL}>{escape(row.service.display)}</td>"]
        cells += [f"<td {NUM}>{v}</td>" for v in (row.stories, row.items, row.publishers, f"{row.avg7:.1f}",
                                                  f"{row.avg28:.1f}", f"×{row.ratio}" if row.ratio is not None else "-")]
        cells.append(f"<td {CELL}>{escape(CAUSE_NAMES[row.top_cause]) if row.top_cause else '-'}</td>")
        cells += [f"<td {NUM}>{row.bookmarks}</td>", f"<td {NUM}>{row.posts}</td>"]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</table>"] if r.services else ["<p>なし</p>"]


def _t(text: str | None) -> str:
    """Stored text for HTML: one line, no control characters or bidi overrides, escaped."""
    return escape(one_line(text))


def _link(url: str | None, label_html: str) -> str:
    """``label_html`` as a link when ``url`` is an http(s) link; else the label and the link as plain text."""
    web = web_link(url)
    if web:
        return f'<a href="{escape(web)}">{label_html}</a>'
    return f"{label_html}（{escape(_url_text(url))}）" if url else label_html


def _story_html(s: StoryRow) -> str:
    others = "、".join(_link(url, _t(name)) for name, url in s.publishers)
    return (f'<li style="margin-bottom:6px">{_link(s.url, _t(s.title))}<br>'
            f"<span {MUTED}>{escape(_story_meta(s))}: {others}</span></li>")


def _list(items: list[str], empty: str = "なし") -> list[str]:
    return ["<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"] if items else [f"<p>{empty}</p>"]


def render_html(r: DailyReport, images: dict[str, str] | None = None) -> str:
    """HTML with inline styles only (mail clients drop <style>). ``images``: chart name -> src (cid: or a file)."""
    e = escape
    parts = ["<!DOCTYPE html>", '<html lang="ja"><head><meta charset="utf-8">', f"<title>{e(r.title)}</title></head>",
             f'<body style="{FONT};color:#222;max-width:760px;margin:0 auto;padding:8px">',
             f'<h1 style="font-size:20px">{e(r.title)}</h1>', f"<p>{e(_summary(r))}</p>", f"<h2 {H2}>アラート</h2>"]
    colour = {"firing": "#b00", "resolved": "#b00", "inhibited": "#777"}
    parts += (["<ul>" + "".join(f'<li style="color:{colour.get(a.status, "#222")}">{e(alert_line(a))}</li>'
                                for a in r.alerts) + "</ul>"] if r.alerts else ["<p>なし</p>"])
    parts += [f"<h2 {H2}>インシデント</h2>"] + ([p for n, t in enumerate(r.incidents) for p in timeline_html(
        t, (images or {}).get(chart_name(n)))] or ["<p>なし</p>"])
    parts += _img("trend", images)
    parts += [f"<h2 {H2}>サービス別の言及</h2>"] + ([f"<p>{MISSING}</p>"] if _gap_day(r) else _services_table(r))
    parts += _social_html(r)
    parts += _img("hourly", images)
    parts += [f"<h2 {H2}>主な記事</h2>"]
    parts += (["<ol>" + "".join(_story_html(s) for s in r.top_stories) + "</ol>"] if r.top_stories
              else [f"<p>{_nothing(r)}</p>"])
    parts += [f"<h2 {H2}>原因（記事群数）</h2>"] + _list([f"{e(CAUSE_NAMES[c])}: {n}" for c, n in r.causes], _nothing(r))
    parts += [f"<h2 {H2}>感情（当日の割合／過去7日の割合）</h2>"]
    parts += _list([f"{e(SENTIMENT_NAMES[s])}: {n} 件（{share:.0%}／{week:.0%}）"
                    for s, n, share, week in _sentiment_rows(r)], _nothing(r))
    parts += [f"<h2 {H2}>計画メンテナンス</h2>"]
    parts += _list([_link(w.url, e(_window_line(w, r))) for w in r.maintenance]
                   + [f"関連: {_link(s.url, _t(s.title))}" for s in r.notices])
    parts += [f"<h2 {H2}>検索トレンド（Google トレンド）</h2>"] + _list([f"{_t(t.term)}（{_t(t.traffic_raw)}）" for t in r.trends],
                                                                       _nothing(r))
    parts += [f"<h2 {H2}>この日の収集（取得の記録）</h2>"] + _list([e(line) for line in coverage_lines(r.coverage, r.day)])
    parts += [f"<h2 {H2}>情報源の状態（作成時点）</h2>"]
    parts += _list([f'<span style="color:#b60">{_t(s.name)}: {e(SOURCE_STATES[s.state])}（{_t(s.detail)}）</span>'
                    for s in r.sources] + ([f"正常: {r.sources_ok} 件"] if r.sources_ok else []))
    parts += [f"<p {MUTED}>mynawatch が収集・分類した記事から作成。記事群 = 同じ出来事を伝える記事のまとまり"
              "（配信記事の転載は1つに数えます）。時刻は日本時間。</p>", "</body></html>"]
    return "\n".join(parts) + "\n"
