"""Text and links made safe to keep and to show: no control characters, no bidi overrides, only web links.

Every stage may use these (they import nothing of the others): the collector cleans text at ingest, the
reports and the CLI clean it again on output, since a store may hold rows written before the cleaning
existed or by hand.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# C0 controls but tab and newline, DEL, C1 controls, and the Unicode format characters that reorder or
# hide text (bidi embeddings, overrides and isolates, the line/paragraph separators, BOM, interlinear marks).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff\ufff9-\ufffb]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]+")


def clean_text(text: str | None, *, keep_newlines: bool = True) -> str:
    """``text`` without control and bidi-override characters (tab and newline kept unless told otherwise;
    a carriage return becomes a newline). Lone surrogates become U+FFFD."""
    if not text:
        return ""
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not keep_newlines:
        text = _LINE_BREAKS.sub(" ", text)
    return _UNSAFE.sub("", text)


def one_line(text: str | None) -> str:
    """``clean_text`` on one line: every line break or tab becomes a space (for headers, names, titles in
    text bodies, where a newline could start a line that looks like a header)."""
    return clean_text(text, keep_newlines=False)


def web_link(url: str | None) -> str | None:
    """``url`` when it is an http(s) link that can be shown as one, else None (javascript:, data:, file:,
    relative or broken links are shown as text, never as links)."""
    if not url:
        return None
    url = url.strip()
    if _UNSAFE.search(url) or any(ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url
