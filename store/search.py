"""Japanese full-text search over items (titles first, then bodies; newest first within each)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy.orm import Session, sessionmaker

from store.clean import clean_text
from store.dialect import dialect_for, phrase_query
from store.records import Service

MAX_LIMIT = 100_000  # hits one search returns
_CJK_GAP = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef\]\[…]) (?=[\u3000-\u9fff\uff00-\uffef\[\]…])")


@dataclass(frozen=True)
class SearchHit:
    item_id: int
    title: str
    publisher: str
    published: datetime
    url: str
    snippet: str  # with [matches] bracketed
    in_title: bool


def index_pending(sessions: sessionmaker[Session], *, batch: int = 2000) -> int:
    """Put every item not yet in the search index into it, ``batch`` items per transaction (so the
    collectors never wait long for the write lock); how many were indexed."""
    done = 0
    while True:
        with sessions.begin() as session:
            n = dialect_for(session.get_bind()).index_pending(session.connection(), batch)
        done += n
        if n < batch:
            return done


def pending_count(session: Session) -> int:
    """Items that ``index_pending`` has not indexed yet (search does not find them until it has)."""
    return dialect_for(session.get_bind()).pending_count(session.connection())


def search_items(session: Session, query: str, *, service: str | None = None, since: datetime | None = None,
                 limit: int = 20) -> list[SearchHit]:
    """Items matching every word of ``query`` (each a phrase of short units) among the indexed ones
    (run ``index_pending`` first for the newest). ValueError on an empty query, a limit outside 1 to
    ``MAX_LIMIT`` or a service that is not a taxonomy code."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"--limit {limit!r}: expected a whole number of at least 1, at most {MAX_LIMIT:,}")
    query = clean_text(query)  # no control characters or lone surrogates (bytes that were not UTF-8) in the words
    if service is not None and service not in {str(s) for s in Service}:
        raise ValueError(f"--service {service!r}: not a service code (one of {', '.join(str(s) for s in Service)})")
    fts = phrase_query(query)
    dialect = dialect_for(session.get_bind())
    connection = session.connection()
    hits = []
    for in_title in (True, False):
        rows = dialect.search(connection, fts, title_only=in_title, exclude_title=not in_title, since=since,
                              service=service, limit=limit - len(hits))
        hits += [_hit(row, in_title) for row in rows]
        if len(hits) >= limit:
            break
    return hits


def _hit(row, in_title: bool) -> SearchHit:
    item_id, title, publisher, published, url, title_snip, body_snip = row
    if isinstance(published, str):
        published = datetime.fromisoformat(published)
    if published.tzinfo is None:
        published = published.replace(tzinfo=timezone.utc)
    return SearchHit(item_id, title, publisher, published, url, readable(title_snip if in_title else body_snip), in_title)


def highlight(text: str, query: str) -> str:
    """``text`` with each word of ``query`` bracketed where it occurs (NFKC, case-insensitive)."""
    import unicodedata

    out = unicodedata.normalize("NFKC", text)
    for word in sorted(set(unicodedata.normalize("NFKC", query).split()), key=len, reverse=True):
        out = re.sub(re.escape(word), lambda m: f"[{m.group(0)}]", out, flags=re.IGNORECASE)
    return out


def readable(snippet: str) -> str:
    """Join the short units back together: no spaces between Japanese characters."""
    return _CJK_GAP.sub("", snippet or "")
