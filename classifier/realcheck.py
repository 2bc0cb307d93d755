"""The real check: published items labeled by hand, kept as URLs, dates and labels only.

Their texts never enter the repository (they are other people's writing). ``mynawatch classifier
evaluate`` measures the real-check stories it can see: those whose URL is in the store (collected),
or in a file of texts the user supplies (``--real-texts``: JSONL of ``{"url", "title", "text"}``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from classifier.corpus import CorpusError, Example
from classifier.jsonline import loads
from store.records import Cause, Label, Sentiment, Service

REAL_CHECK = Path(__file__).parent / "data" / "real_check.tsv"
COLUMNS = ("url", "date", "relevant", "services", "cause", "sentiment", "register")


@dataclass(frozen=True)
class RealItem:
    url: str
    date: str
    label: Label
    register: str = ""


def read_real_check(path: Path = REAL_CHECK) -> list[RealItem]:
    """The labeled URLs (a tab-separated file with a header line of ``COLUMNS``)."""
    try:
        return _read_real_check(path)
    except csv.Error as exc:  # a field past csv's limit, a NUL byte
        raise CorpusError(f"{path}: not a tab-separated file of labeled URLs ({exc})") from None


def _read_real_check(path: Path) -> list[RealItem]:
    out = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        missing = set(COLUMNS[:6]) - set(rows.fieldnames or ())
        if missing:
            raise CorpusError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for number, row in enumerate(rows, 2):
            try:
                relevant = {"true": True, "false": False}[row["relevant"].strip().lower()]
                services = tuple(Service(s) for s in row["services"].split(",") if s.strip())
                label = Label(relevant, services, Cause(row["cause"].strip()), Sentiment(row["sentiment"].strip()))
            except (KeyError, ValueError, AttributeError) as exc:
                raise CorpusError(f"{path}:{number}: not a labeled row ({exc})") from None
            if relevant and not services or not relevant and (services or label.cause != Cause.NONE):
                raise CorpusError(f"{path}:{number}: services and cause do not fit relevant={relevant}")
            out.append(RealItem(row["url"].strip(), row["date"].strip(), label, (row.get("register") or "").strip()))
    return out


def read_texts(path: Path) -> dict[str, tuple[str, str]]:
    """url -> (title, text) from a JSONL file of ``{"url", "title", "text"}`` objects."""
    out = {}
    with path.open(encoding="utf-8-sig") as fh:  # a byte order mark is read, as `tag` reads it
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = loads(line)
                out[str(obj["url"])] = (str(obj.get("title") or ""), str(obj.get("text") or ""))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: not an object
                raise CorpusError(f"{path}:{number}: expected an object with a url ({exc})") from None
    return out


def visible(items: list[RealItem], texts: dict[str, tuple[str, str]]) -> list[Example]:
    """The real-check items whose text can be seen, as examples (one story per URL)."""
    return [Example(item.url, item.url, *texts[item.url], item.label) for item in items if item.url in texts]
