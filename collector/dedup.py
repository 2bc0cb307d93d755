"""Identity of items: canonical URLs, title keys and title similarity (clustering: ``collector.stories``). Pure."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = {"fbclid", "gclid", "yclid", "mc_cid", "mc_eid", "cmpid", "from"}
FEED_MARKERS = {"rss", "rss2", "rdf", "atom", "feed"}  # ?ref=rss, ?source=rss ...
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
_BRACKETED = re.compile(r"^[【\[［(（][^】\]］)）]{1,12}[】\]］)）]")  # 【速報】, [動画] ...


def canonical_url(url: str, *, _depth: int = 0) -> str:
    """Strip tracking parameters and fragments; unwrap Google/Yahoo redirect wrappers. IPv6 hosts keep their
    brackets. Never raises: an address that cannot be read is returned as given (stripped)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    host = (parts.hostname or "").lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    if _depth < 8:  # wrappers inside wrappers, but not without end
        if (host.endswith("google.com") and parts.path == "/url" or host.startswith("rd.yahoo")
                or "/redirect" in parts.path):
            for key, value in query:
                if key in ("url", "q", "u") and value.startswith("http"):
                    return canonical_url(unquote(value), _depth=_depth + 1)
        if "*http" in parts.path:  # rdsig.yahoo.co.jp/...*https://target
            return canonical_url(unquote(parts.path.split("*", 1)[1]), _depth=_depth + 1)
    kept = [(k, v) for k, v in query
            if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS
            and not (k.lower() in ("ref", "source", "from") and v.lower() in FEED_MARKERS)
            and not (host == "news.google.com" and k == "oc")]
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port and port not in (80, 443) else "")
    try:
        query_text = urlencode(sorted(kept))
    except ValueError:  # a lone surrogate (UnicodeEncodeError): the query as it came
        query_text = parts.query
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query_text, ""))


@lru_cache(maxsize=8192)  # each title is normalized for its key and again for its story
def normalize_title(title: str) -> str:
    """NFKC, lower case, without a leading 【速報】-style tag, spaces or punctuation."""
    text = unicodedata.normalize("NFKC", title).lower().strip()
    text = _BRACKETED.sub("", text)
    return _PUNCT.sub("", text)


def title_key(publisher: str, title: str, url: str = "") -> str:
    """Hash of publisher + normalized title: one publisher never tells one headline twice. An item whose title
    is empty once normalized (a feed that gave none) is keyed by its URL, so untitled items stay apart."""
    normalized = normalize_title(title)
    if not normalized and url:
        return hashlib.sha256(f"{publisher}\n\0{url}".encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256(f"{publisher}\n{normalized}".encode("utf-8", "surrogatepass")).hexdigest()


def shingles(title: str, n: int = 2, *, normalized: str | None = None) -> frozenset[str]:
    """Character n-grams of the normalized title (Japanese has no spaces to split words on)."""
    text = normalize_title(title) if normalized is None else normalized
    if len(text) <= n:
        return frozenset([text]) if text else frozenset()
    return frozenset(text[i:i + n] for i in range(len(text) - n + 1))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Overlap coefficient-weighted Jaccard: syndicated rewrites trim or extend headlines."""
    if not a or not b:
        return 0.0
    inter, la, lb = len(a & b), len(a), len(b)
    return max(inter / (la + lb - inter), 0.8 * inter / min(la, lb))
