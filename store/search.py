"""Japanese full-text search over items (titles first, then bodies; newest first within each)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy.orm import Session, sessionmaker

from store.clean import clean_text
from store.dialect import dialect_for, query_parts, search_units, unit_spans
from store.records import Service

MAX_LIMIT = 100_000  # hits one search returns


@dataclass(frozen=True)
class SearchHit:
    item_id: int
    title: str
    publisher: str
    published: datetime
    url: str
    snippet: str  # the title (a title match) or a piece of the summary, as written, [matches] bracketed
    in_title: bool


def index_pending(sessions: sessionmaker[Session], *, batch: int = 2000, progress=None) -> int:
    """Put every item not yet in the search index into it, ``batch`` items per transaction (so the
    collectors never wait long for the write lock); how many were indexed. ``progress(done, total,
    step)`` is told after each batch when more than one batch is waiting."""
    done, total = 0, None
    while True:
        with sessions.begin() as session:
            if progress and total is None:
                total = pending_count(session)
            n = dialect_for(session.get_bind()).index_pending(session.connection(), batch)
        done += n
        if progress and n and total and total > batch:
            progress(min(done, total), total, "search index")
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
    parts = query_parts(query)
    dialect = dialect_for(session.get_bind())
    connection = session.connection()
    hits = []
    for in_title in (True, False):
        rows = dialect.search(connection, parts, title_only=in_title, exclude_title=not in_title, since=since,
                              service=service, limit=limit - len(hits))
        hits += [_hit(row, in_title, query) for row in rows]
        if len(hits) >= limit:
            break
    return hits


def _hit(row, in_title: bool, query: str) -> SearchHit:
    item_id, title, publisher, published, url, summary = row
    if isinstance(published, str):
        published = datetime.fromisoformat(published)
    if published.tzinfo is None:
        published = published.replace(tzinfo=timezone.utc)
    snippet = highlight(title, query) if in_title else variant_snippet(summary or "", query)
    return SearchHit(item_id, title, publisher, published, url, snippet, in_title)


def match_spans(text: str, query: str) -> list[tuple[int, int]]:
    """(start, end) in ``text`` of each place a word of ``query`` occurs, as written or as a spelling
    variant (the same Sudachi normalized forms), in text order and not overlapping."""
    units = unit_spans(text)
    found = []
    for word in set(query.split()):
        wanted = search_units(word)
        if not wanted:
            continue
        n = len(wanted)
        for i in range(len(units) - n + 1):
            if all(u[2] == w[0] or u[3] == w[1] for u, w in zip(units[i:i + n], wanted)):
                found.append((units[i][0], units[i + n - 1][1]))
    spans: list[tuple[int, int]] = []
    for start, end in sorted(found, key=lambda se: (se[0], -se[1])):
        if not spans or start >= spans[-1][1]:
            spans.append((start, end))
    return spans


def highlight(text: str, query: str) -> str:
    """``text`` as written, with each word of ``query`` bracketed where it occurs (spelling variants too)."""
    return _bracket(text, match_spans(text, query))


def variant_snippet(text: str, query: str, *, width: int = 40) -> str:
    """About ``width`` characters of ``text`` as written around its first match, the matches bracketed."""
    spans = match_spans(text, query)
    start = max(0, spans[0][0] - width // 3) if spans else 0
    end = min(len(text), start + width)
    inside = [(s - start, e - start) for s, e in spans if s >= start and e <= end]
    return ("…" if start else "") + _bracket(text[start:end], inside) + ("…" if end < len(text) else "")


def _bracket(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], "[", text[start:end], "]"]
        last = end
    return "".join(out) + text[last:]
