"""Identity of items: canonical URLs, title keys, and story clusters across publishers. Pure."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = {"fbclid", "gclid", "yclid", "mc_cid", "mc_eid", "cmpid", "from"}
FEED_MARKERS = {"rss", "rss2", "rdf", "atom", "feed"}  # ?ref=rss, ?source=rss ...
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
_BRACKETED = re.compile(r"^[【\[［(（][^】\]］)）]{1,12}[】\]］)）]")  # 【速報】, [動画] ...


def canonical_url(url: str) -> str:
    """Strip tracking parameters and fragments; unwrap Google/Yahoo redirect wrappers."""
    url = url.strip()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    if host.endswith("google.com") and parts.path == "/url" or host.startswith("rd.yahoo") or "/redirect" in parts.path:
        for key, value in query:
            if key in ("url", "q", "u") and value.startswith("http"):
                return canonical_url(unquote(value))
    if "*http" in parts.path:  # rdsig.yahoo.co.jp/...*https://target
        return canonical_url(unquote(parts.path.split("*", 1)[1]))
    kept = [(k, v) for k, v in query
            if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
            and not (k.lower() in ("ref", "source", "from") and v.lower() in FEED_MARKERS)]
    netloc = host + (f":{parts.port}" if parts.port and parts.port not in (80, 443) else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", urlencode(sorted(kept)), ""))


def normalize_title(title: str) -> str:
    """NFKC, lower case, without a leading 【速報】-style tag, spaces or punctuation."""
    text = unicodedata.normalize("NFKC", title).lower().strip()
    text = _BRACKETED.sub("", text)
    return _PUNCT.sub("", text)


def title_key(publisher: str, title: str) -> str:
    return hashlib.sha256(f"{publisher}\n{normalize_title(title)}".encode()).hexdigest()


def shingles(title: str, n: int = 2) -> frozenset[str]:
    """Character n-grams of the normalized title (Japanese has no spaces to split words on)."""
    text = normalize_title(title)
    if len(text) <= n:
        return frozenset([text]) if text else frozenset()
    return frozenset(text[i:i + n] for i in range(len(text) - n + 1))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Overlap coefficient-weighted Jaccard: syndicated rewrites trim or extend headlines."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return max(inter / len(a | b), 0.8 * inter / min(len(a), len(b)))


def match_story(title: str, candidates: list[tuple[int, frozenset[str]]], *, threshold: float = 0.6) -> int | None:
    """The id of the most similar candidate story at or above ``threshold``, or None."""
    mine = shingles(title)
    best, best_score = None, threshold
    for story_id, theirs in candidates:
        score = similarity(mine, theirs)
        if score >= best_score:
            best, best_score = story_id, score
    return best
