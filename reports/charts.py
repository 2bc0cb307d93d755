"""Charts (matplotlib, Agg) as PNG bytes. Japanese labels use the IPAex font shipped by
matplotlib-fontja, so no system font is needed."""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib_fontja  # noqa: E402

from reports.coverage import GAP_LABEL, clip, missing_days  # noqa: E402
from reports.notices import TOKYO, display_name  # noqa: E402
from store.clock import day_bounds, tokyo  # noqa: E402
from store.records import Service  # noqa: E402

matplotlib_fontja.japanize()


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


GAP_STYLE = {"color": "#888", "alpha": 0.3, "hatch": "//", "linewidth": 0}  # no successful fetch (reports/coverage.py)


def render_mentions_chart(per_day: dict[date, dict[Service, int]], **kwargs) -> bytes:
    """``mentions_figure`` as PNG bytes."""
    return _png(mentions_figure(per_day, **kwargs))


def mentions_figure(per_day: dict[date, dict[Service, int]], *, start: date, end: date,
                    title: str = "サービス別の言及（記事群数／日）", max_series: int = 6,
                    marks: list[date] = (), gaps: list[tuple[datetime, datetime]] = ()):
    """A line chart of distinct stories per service per day, for the busiest services; ``marks``: alert days;
    ``gaps``: spans with no successful fetch, shaded, the lines broken on the days wholly in one."""
    days = [start + timedelta(d) for d in range((end - start).days + 1)]
    missing = missing_days(gaps, days)
    totals = {s: sum(per_day.get(d, {}).get(s, 0) for d in days) for s in Service}
    shown = [s for s, n in sorted(totals.items(), key=lambda kv: -kv[1]) if n][:max_series]
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    noons = [datetime.combine(d, time(12)) for d in days]  # each day's point in the middle of its shaded span
    for service in shown:
        ax.plot(noons, [float("nan") if d in missing else per_day.get(d, {}).get(service, 0) for d in days],
                marker="o", markersize=3, linewidth=1.5, label=service.display)
    for d in marks:
        ax.axvspan(d, d + timedelta(days=1), color="#d33", alpha=0.12, linewidth=0)
    shaded = clip(gaps, day_bounds(start)[0], day_bounds(end)[1])
    for n, (a, b) in enumerate(shaded):
        ax.axvspan(_local(a), _local(b), label=None if n else GAP_LABEL, **GAP_STYLE)
    ax.set_title(title)
    ax.set_ylabel("記事群数")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m/%d"))
    ax.grid(alpha=0.3)
    if shown or shaded:
        ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.autofmt_xdate()
    return fig


def _local(when: datetime) -> datetime:
    """A time as the charts' x axes take it: Tokyo wall-clock time, naive."""
    return tokyo(when).replace(tzinfo=None)


def render_hourly_chart(hourly: dict[str, dict[datetime, int]], **kwargs) -> bytes:
    """``hourly_figure`` as PNG bytes."""
    return _png(hourly_figure(hourly, **kwargs))


def hourly_figure(hourly: dict[str, dict[datetime, int]], *, day: date, title: str,
                  marks: list[tuple[datetime, datetime]] = (), max_series: int = 5,
                  gaps: list[tuple[datetime, datetime]] = ()):
    """A bar chart of trouble stories per hour (JST) of ``day`` for the busiest services; ``marks``: alert spans;
    ``gaps``: spans with no successful fetch, shaded."""
    totals = sorted(((sum(h.values()), s) for s, h in hourly.items() if sum(h.values())), reverse=True)[:max_series]
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=100)
    bottom = [0] * 24
    for _, service in totals:
        by_hour = [0] * 24
        for when, n in hourly[service].items():
            local = when.astimezone(TOKYO)
            if local.date() == day:
                by_hour[local.hour] += n
        ax.bar(range(24), by_hour, bottom=bottom, width=0.8, label=display_name(service))
        bottom = [a + b for a, b in zip(bottom, by_hour)]
    for start, stop in marks:
        a, b = start.astimezone(TOKYO), stop.astimezone(TOKYO)
        lo = a.hour if a.date() == day else 0
        hi = (b.hour or 24) if b.date() == day else 24
        if lo < hi:
            ax.axvspan(lo - 0.5, hi - 0.5, color="#d33", alpha=0.12, linewidth=0)
    midnight = datetime.combine(day, time())
    day_gaps = clip(gaps, *day_bounds(day))
    for n, (a, b) in enumerate(day_gaps):
        x0, x1 = ((_local(t) - midnight) / timedelta(hours=1) - 0.5 for t in (a, b))
        ax.axvspan(x0, x1, label=None if n else GAP_LABEL, **GAP_STYLE)
    ax.set_title(title)
    ax.set_xlim(-0.5, 23.5)
    ax.set_xticks(range(0, 24, 3), [f"{h}時" for h in range(0, 24, 3)])
    ax.set_ylabel("記事群数")
    ax.grid(alpha=0.3, axis="y")
    if totals:
        ax.set_ylim(0, max(bottom) * 1.3 + 0.5)  # room for the legend
    else:
        whole = day in missing_days(day_gaps, [day])
        ax.text(11.5, 0.5, GAP_LABEL if whole else "障害報告なし", ha="center", va="center", color="#888")
        ax.set_ylim(0, 1)
    if totals or day_gaps:
        ax.legend(loc="upper left", fontsize=8, ncol=3)
    return fig


MARKERS = {"first": ("#e67e00", "最初の報告", "--"), "official": ("#1f5fbf", "公式発表", ":"),
           "recovery": ("#1a8a3a", "復旧報告", "-.")}  # three line styles: two moments at one time stay visible


def render_incident_chart(hourly: dict[str, dict[datetime, int]], *, start: datetime, end: datetime,
                          marks: list[tuple[str, datetime]], title: str) -> bytes:
    """A PNG timeline of one incident: trouble stories per hour (JST) and service, side by side, from two hours
    before ``start`` to two hours after ``end``; ``marks``: (first | official | recovery, time) as vertical lines."""
    from store.clock import tokyo

    def local(when: datetime) -> datetime:
        return tokyo(when).replace(tzinfo=None)

    lo = local(start).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    hi = max([local(end)] + [local(t) for _, t in marks]).replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
    hours = [lo + timedelta(hours=n) for n in range(int((hi - lo) / timedelta(hours=1)))]
    fig, ax = plt.subplots(figsize=(9, 3.0), dpi=100)
    services = sorted(hourly, key=lambda s: -sum(hourly[s].values()))
    width = timedelta(minutes=48) / max(1, len(services))  # side by side: a story naming two services is in both
    tallest = 0
    for n, service in enumerate(services):
        counts = {local(h): c for h, c in hourly[service].items()}
        values = [counts.get(h, 0) for h in hours]
        ax.bar([h + timedelta(minutes=6) + width * n for h in hours], values, width=width, align="edge",
               label=display_name(service))
        tallest = max([tallest] + values)
    ax.axvspan(local(start), local(end), color="#d33", alpha=0.08, linewidth=0)
    top = max(tallest, 1) * 1.35 + 0.5
    for kind, when in marks:
        colour, name, style = MARKERS[kind]
        ax.axvline(local(when), color=colour, linewidth=2.2, linestyle=style, label=f"{name} {local(when):%H:%M}")
    ax.set_ylim(0, top)
    ax.set_xlim(lo, hi)
    ax.set_title(title)
    ax.set_ylabel("記事群数／時")
    span_days = (hi - lo).days
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H時" if span_days < 1 else "%m/%d %H時"))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    fig.autofmt_xdate()
    return _png(fig)
