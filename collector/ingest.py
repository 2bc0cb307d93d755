"""Parsed entries -> the store: identity, publisher names, dedup, story clustering, the relevance gate and
maintenance notices.

Everything here runs inside the caller's transaction (one per source), so a crash leaves no half-written item.
Every entry is made safe here again (``collector.sanitize``: text cleaned and capped, dates in range), whoever
parsed it; an entry that still cannot be prepared is skipped, never the batch.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from collector import dedup
from collector.gate import gate_reason
from collector.kinds import Stores, kind_of
from collector.maintenance import find_windows
from collector.page import PageSnapshot
from collector.policy import CollectPolicy, TextLimits
from collector.publishers import learn_names, name_items
from collector.sanitize import MAX_NAME, clean_entry
from collector.sources import SourceConfig
from collector.stories import StoryIndex
from store import items as store_items
from store.maintenance import save_window
from store.records import Entry, TrendEntry

DEFAULT_POLICY = CollectPolicy()
MAX_WINDOWS = 100  # maintenance windows stored per source and round (official notice pages announce a few)


def prepare(source: SourceConfig, entry: Entry, *, now: datetime,
            limits: TextLimits = TextLimits()) -> store_items.NewItem:
    """Identity, publisher, date and gate decision for one parsed entry. Without a publisher of its own the item
    is under its host name here (``name_items`` gives it the host's learned name); the title key keeps that.
    Raises ItemUnreadable when the entry has no readable link."""
    entry = clean_entry(entry, limits, now=now)
    url = dedup.canonical_url(entry.url)
    if not urlsplit(url).scheme:
        url = bare_id_url(url, source)
    publisher = (entry.publisher or source.publisher or urlsplit(url).hostname or source.name)[:MAX_NAME]
    reason = gate_reason(entry.title, entry.summary, entry.categories)
    return store_items.NewItem(
        entry=entry, canonical_url=url, publisher=publisher,
        title_key=dedup.title_key(publisher, entry.title, url),
        published=entry.published or now, gate="rejected" if reason else "pass", gate_reason=reason,
    )


def bare_id_url(item_id: str, source: SourceConfig) -> str:
    """The identity of an item that has no link, only an id of its feed's own (``<guid isPermaLink="false">12345
    </guid>``): the id is unique in that feed alone, and as the item's address two feeds' item 12345 were one item,
    the second feed's lost. Named under the feed's address (a urn: no page is fetched for it); ids that are
    addresses or names of their own (``https:``, ``tag:``, ``urn:``) stay as they are."""
    return f"urn:mynawatch:item:{item_id}@{dedup.canonical_url(source.url)}"


def prepare_all(source: SourceConfig, entries: list[Entry], *, now: datetime, limits: TextLimits,
                skipped: list[str] | None = None) -> list[store_items.NewItem]:
    """``prepare`` for each entry; one that fails is skipped (its reason appended to ``skipped``)."""
    prepared = []
    for n, e in enumerate(entries, 1):
        try:
            prepared.append(prepare(source, e, now=now, limits=limits))
        except Exception as exc:  # an item boundary: one entry never costs the batch
            if skipped is not None:
                skipped.append(f"entry {n}: {type(exc).__name__}: {str(exc)[:200]}")
    return prepared


def without_shared_guids(prepared: list[store_items.NewItem]) -> list[store_items.NewItem]:
    """The items with a GUID that other items of the same feed carry under other addresses lose it: such a GUID
    (a CMS that gives every item the channel's address) names no item, and as an identity it would keep all
    but the first of them out of the store, in this round and every later one."""
    urls: dict[str, set[str]] = {}
    for p in prepared:
        if p.entry.guid:
            urls.setdefault(p.entry.guid, set()).add(p.canonical_url)
    shared = {guid for guid, seen in urls.items() if len(seen) > 1}
    if not shared:
        return prepared
    return [replace(p, entry=replace(p.entry, guid=None)) if p.entry.guid in shared else p for p in prepared]


def save_entries(session: Session, source_id: int, source: SourceConfig, entries: list[Entry], *, now: datetime,
                 stories: StoryIndex | None = None, policy: CollectPolicy = DEFAULT_POLICY,
                 skipped: list[str] | None = None) -> int:
    """Store the entries not seen before, each attached to a story cluster. Returns how many were new."""
    prepared = without_shared_guids(prepare_all(source, entries, now=now, limits=policy.text_limits, skipped=skipped))
    learn_names(session, source, [p.entry for p in prepared], now=now)
    social = {p.canonical_url: p.entry.social_count for p in prepared if p.entry.social_count is not None}
    if social:
        store_items.update_social_counts(session, social)
    fresh = name_items(session, source, _fresh(session, source_id, prepared))
    if not fresh:
        return 0
    index = stories if stories is not None else StoryIndex(hours=policy.story_hours,
                                                           threshold=policy.story_similarity)
    _load_stories(session, index, min(p.published for p in fresh) - index.window)
    rows, created, earliest = _assign_stories(index, fresh)
    new_stories = [(p.entry.title, p.published) for p in created.values()]
    real = dict(zip(created, store_items.add_stories(session, new_stories)))  # provisional id -> stored id
    index.rename(real)
    rows = [(p, real.get(story_id, story_id)) for p, story_id in rows]
    inserted = store_items.save_items(session, source_id, rows, fetched_at=now)
    store_items.move_stories_back(session, earliest)
    if inserted < len(rows):  # another writer stored some of them meanwhile
        store_items.drop_empty_stories(session, list(real.values()))
        index.clear()
    save_notices(session, source, fresh, now=now, skipped=skipped)
    return inserted


def _assign_stories(index: StoryIndex, fresh: list[store_items.NewItem]):
    """Each item's story: an indexed one it matches, or a new one under a provisional (negative) id."""
    rows, created, earliest = [], {}, {}
    for p, probe in zip(fresh, index.probes([p.entry.title for p in fresh])):
        story_id = index.match(probe, p.published)
        if story_id is None:
            story_id = -1 - len(created)
            index.add(story_id, probe, p.published)
            created[story_id] = p
        elif story_id > 0:
            index.touch(story_id, p.published)
            earliest[story_id] = min(earliest.get(story_id, p.published), p.published)
        rows.append((p, story_id))
    return rows, created, earliest


def _fresh(session: Session, source_id: int, prepared: list[store_items.NewItem]) -> list[store_items.NewItem]:
    """Entries whose URL, title key and GUID are all unseen (in the store and earlier in this batch), oldest first."""
    known = store_items.known_keys(session, [p.canonical_url for p in prepared], [p.title_key for p in prepared],
                                   source_id=source_id, guids=[p.entry.guid for p in prepared])
    urls, keys, guids = known.urls, known.title_keys, known.guids
    fresh = []
    for p in sorted(prepared, key=lambda p: p.published):
        if p.canonical_url in urls or p.title_key in keys or (p.entry.guid and p.entry.guid in guids):
            continue
        urls.add(p.canonical_url)
        keys.add(p.title_key)
        if p.entry.guid:
            guids.add(p.entry.guid)
        fresh.append(p)
    return fresh


def _load_stories(session: Session, index: StoryIndex, since: datetime) -> None:
    if index.needs(since):
        for c in store_items.recent_stories(session, since, index.loaded_since):
            index.add(c.story_id, c.title, c.first_seen_at)
        index.loaded_since = since


def save_notices(session: Session, source: SourceConfig, items: list[store_items.NewItem], *, now: datetime,
                 skipped: list[str] | None = None) -> int:
    """Maintenance windows announced in these new items. Returns how many windows were new."""
    found = []
    for p in items:
        try:
            found += [(p, w) for w in find_windows(p.entry.title, p.entry.summary, notice_time=p.published,
                                                   url=p.canonical_url, default_service=source.service)]
        except Exception as exc:  # an item boundary: an unreadable notice is still stored as an item
            if skipped is not None:
                skipped.append(f"notice {p.canonical_url[:120]}: {type(exc).__name__}: {str(exc)[:200]}")
    found = first_windows(found, skipped)
    if not found:
        return 0
    ids = store_items.item_ids(session, [p.canonical_url for p, _ in found])
    return sum(save_window(session, w, found_at=now, item_id=ids.get(p.canonical_url)) for p, w in found)


def first_windows(found: list[tuple], skipped: list[str] | None) -> list[tuple]:
    """(notice, window) pairs, each window (service, start, end) once, at most MAX_WINDOWS of them: a source that
    announces thousands (a hostile or broken one) would otherwise cost a statement each, every round, while every
    other source waits to be stored. The rest is said in ``skipped``."""
    seen, out = set(), []
    for notice, w in found:
        if (key := (w.service, w.starts_at, w.ends_at)) not in seen:
            seen.add(key)
            out.append((notice, w))
    if len(out) > MAX_WINDOWS and skipped is not None:
        skipped.append(f"{len(out) - MAX_WINDOWS} maintenance window(s) past the first {MAX_WINDOWS} of this round "
                       "not stored")
    return out[:MAX_WINDOWS]


def save_trends(session: Session, source_id: int, source: SourceConfig, trends: list[TrendEntry], *,
                now: datetime, stories: StoryIndex | None = None, policy: CollectPolicy = DEFAULT_POLICY,
                skipped: list[str] | None = None) -> int:
    """Trend terms go to the trend points, not the items (so no stories; the arguments are save_entries')."""
    return store_items.save_trends(session, source_id, trends, fetched_at=now)


def save_page(session: Session, source_id: int, source: SourceConfig, page: PageSnapshot, *, now: datetime,
              stories: StoryIndex | None = None, policy: CollectPolicy = DEFAULT_POLICY,
              skipped: list[str] | None = None) -> int:
    """A watched page that changed: its links as items, its notice blocks read for maintenance windows."""
    new = save_entries(session, source_id, source, page.entries, now=now, stories=stories, policy=policy,
                       skipped=skipped)
    found = []
    for block in page.blocks:
        try:
            found += [(block, w) for w in find_windows(block, page.heading, notice_time=now, url=source.url,
                                                       default_service=source.service)]
        except Exception as exc:  # a block boundary
            if skipped is not None:
                skipped.append(f"page block: {type(exc).__name__}: {str(exc)[:200]}")
    for _block, window in first_windows(found, skipped):
        save_window(session, window, found_at=now)
    return new


SAVES = {Stores.ITEMS: save_entries, Stores.PAGE: save_page, Stores.TRENDS: save_trends}


def save_read(session: Session, source_id: int, source: SourceConfig, read, *, now: datetime,
              stories: StoryIndex | None = None, policy: CollectPolicy = DEFAULT_POLICY,
              skipped: list[str] | None = None) -> int:
    """What a source's reader gave (``collector.kinds``), stored as its kind stores it. Returns how many
    rows were new."""
    save = SAVES[kind_of(source.kind).stores]
    return save(session, source_id, source, read, now=now, stories=stories, policy=policy, skipped=skipped)
