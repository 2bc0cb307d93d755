"""The relevance gate: marks items that are clearly not about the My Number systems.

Marked items are kept (analysts can audit them); the classifier makes the final call on the rest.
The gate is deliberately loose: it only rejects items that name none of the systems at all.
"""

from __future__ import annotations

import re
import unicodedata

from store.records import NEAR, SERVICE_WORDS

_ANCHORS = [r"マイナ(?!ス|ビ|ー|ン(?!バー))", r"マイナンバー"]  # マイナ保険証, マイナポータル; not マイナス/マイナビ/マイナー


def _pattern() -> re.Pattern[str]:
    """The anchors, every service's names and its near pairs (store.records.SERVICE_WORDS), as one pattern."""
    names = sorted({re.escape(n) for words in SERVICE_WORDS.values() for n in words.names}, key=len, reverse=True)
    near = [f"{re.escape(a)}.{{0,{NEAR}}}{re.escape(b)}" for words in SERVICE_WORDS.values() for a, b in words.near]
    return re.compile("|".join(_ANCHORS + names + near), re.IGNORECASE)


_MYNUMBER = _pattern()


def gate_reason(title: str, text: str, categories: tuple[str, ...] = ()) -> str | None:
    """None when the item may be about the systems; otherwise why it was rejected."""
    raw = " ".join((title, text, *categories))
    if _MYNUMBER.search(raw) or _MYNUMBER.search(unicodedata.normalize("NFKC", raw)):  # ＪＰＫＩ, ﾏｲﾅ ...
        return None
    return "names none of the My Number systems"
