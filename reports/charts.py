"""Charts (matplotlib, Agg). Japanese labels use the IPAex font shipped by matplotlib-fontja."""

from __future__ import annotations

import io
from datetime import date, timedelta

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib_fontja  # noqa: E402,F401  (registers the font and makes it the default)

from store.records import Service  # noqa: E402

matplotlib_fontja.japanize()


def render_mentions_chart(per_day: dict[date, dict[Service, int]], *, start: date, end: date,
                          title: str = "サービス別の言及（記事群数／日）", max_series: int = 6,
                          marks: list[date] = ()) -> bytes:
    """A PNG line chart of distinct stories per service per day, for the busiest services."""
    days = [start + timedelta(d) for d in range((end - start).days + 1)]
    totals = {s: sum(per_day.get(d, {}).get(s, 0) for d in days) for s in Service}
    shown = [s for s, n in sorted(totals.items(), key=lambda kv: -kv[1]) if n][:max_series]
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    for service in shown:
        ax.plot(days, [per_day.get(d, {}).get(service, 0) for d in days], marker="o", markersize=3,
                linewidth=1.5, label=service.display)
    for d in marks:
        ax.axvspan(d, d + timedelta(days=1), color="#d33", alpha=0.12, linewidth=0)
    ax.set_title(title)
    ax.set_ylabel("記事群数")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m/%d"))
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
