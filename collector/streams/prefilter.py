"""Which stream posts may be stored: Japanese, and naming the My Number systems (the relevance gate's own
words, ``collector.gate``, read from ``store.records.SERVICE_WORDS``). Everything else is never stored.

Cheapest test first: most of a Jetstream is not Japanese, so the declared language and a kana check
reject it before the gate's pattern runs; the gate's anchors reject look-alikes (マイナス, マイナビ,
マイナー) there. Pure.
"""

from __future__ import annotations

import re

from collector.gate import gate_reason
from collector.streams.events import Post

_KANA = re.compile(r"[\u3041-\u309f\u30a1-\u30fa\u30fc\uff66-\uff9d]")  # hiragana, katakana, half-width katakana


def written_in(post: Post, languages: tuple[str, ...]) -> bool:
    """True when the post is in one of ``languages``: declared so, or (declaring nothing) written in kana
    when Japanese is wanted. An empty ``languages`` keeps every language."""
    if not languages:
        return True
    if post.langs:
        return any(lang.split("-")[0].lower() in languages for lang in post.langs)
    return "ja" in languages and _KANA.search(post.cw + post.text) is not None


def keep_reason(post: Post, languages: tuple[str, ...]) -> str | None:
    """None when the post may be stored; otherwise why not (language, or names none of the systems)."""
    if not written_in(post, languages):
        return "language"
    return gate_reason(post.cw, post.text)


def keep(post: Post, languages: tuple[str, ...]) -> bool:
    return keep_reason(post, languages) is None
