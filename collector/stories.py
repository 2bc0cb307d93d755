"""Story clustering across publishers: a MinHash-LSH index over character bigrams of NFKC-normalized titles.

Japanese has no spaces to split words on, so titles are compared as sets of character bigrams. MinHash
signatures, cut into bands, find the few stories a new title may belong to without comparing it with every
story; the candidates are then checked exactly (``dedup.similarity``) and limited to stories close in time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from collector.dedup import normalize_title, shingles, similarity

MAX_CANDIDATES = 64  # stories checked exactly per title, those sharing the most bands first
SEED = 20241002  # fixed: the same hash functions in every index and every process
_SHIFT = np.uint64(32)
_FOLD = np.uint64(0x9E3779B97F4A7C15)
_SLOT_MIX = 0x9E3779B97F4A7C15 << 1  # spreads slot numbers over the key space
_POINT = np.uint64(0x110000)  # above every code point: (first, second) -> one number per bigram


@dataclass(frozen=True)
class Probe:
    """A title ready for the index: its bigrams and its band keys (computed once, used to match and to add)."""

    grams: frozenset[str]
    keys: tuple[int, ...]


class StoryIndex:
    """Recent stories by title, for attaching new items to the story they tell.

    Band keys are filed per time slot (two windows wide), so a match only meets stories of its own slot
    and the neighbouring one; older stories never become candidates.
    """

    def __init__(self, *, hours: float = 72.0, threshold: float = 0.6, bands: int = 16, rows: int = 2):
        self.window, self.threshold, self.bands, self.rows = timedelta(hours=hours), threshold, bands, rows
        self._width = max(2 * self.window.total_seconds(), 1.0)
        size, rng = bands * rows, np.random.default_rng(SEED)
        self._a = rng.integers(1, 1 << 63, size=size, dtype=np.uint64) | np.uint64(1)  # multiply-shift hashes
        self._b = rng.integers(0, 1 << 63, size=size, dtype=np.uint64)
        self.loaded_since: datetime | None = None  # stories from the store at or after this are in the index
        self.clear()

    def clear(self) -> None:
        """Forget everything (after a rolled-back write, the index may hold stories that do not exist)."""
        self._ids: list[int] = []
        self._times: list[datetime] = []
        self._stamps: list[float] = []
        self._sets: list[frozenset[str]] = []
        self._row_keys: list[tuple[int, ...]] = []
        self._row_of: dict[int, int] = {}
        self._buckets: dict[int, list[int]] = {}  # band key mixed with its time slot -> rows
        self.loaded_since = None

    def prune(self, before: datetime) -> None:
        """Forget stories older than ``before`` (a long-running process would otherwise keep every story);
        they are read from the store again if an older item ever needs them."""
        kept = [row for row, when in enumerate(self._times) if when >= before]
        rows = [(self._ids[r], self._times[r], self._sets[r], self._row_keys[r]) for r in kept]
        loaded = self.loaded_since
        self.clear()
        for story_id, when, grams, keys in rows:
            self.add(story_id, Probe(grams, keys), when)
        self.loaded_since = before if loaded is None else max(loaded, before)

    def __len__(self) -> int:
        return len(self._ids)

    def needs(self, since: datetime) -> bool:
        """True when stories from ``since`` on must be loaded from the store first."""
        return self.loaded_since is None or since < self.loaded_since

    def probe(self, title: str) -> Probe:
        return self.probes([title])[0]

    def probes(self, titles: list[str]) -> list[Probe]:
        """Probes of many titles, their signatures computed together (one set of array operations)."""
        texts = [normalize_title(t) for t in titles]
        keys = self._batch_keys(texts)
        return [Probe(shingles(t, normalized=x), k) for t, x, k in zip(titles, texts, keys)]

    def add(self, story_id: int, title: str | Probe, when: datetime) -> None:
        if story_id in self._row_of:
            return
        probe = title if isinstance(title, Probe) else self.probe(title)
        row = len(self._ids)
        self._ids.append(story_id)
        self._times.append(when)
        self._stamps.append(when.timestamp())
        self._sets.append(probe.grams)
        self._row_keys.append(probe.keys)
        self._row_of[story_id] = row
        self._file(row, probe.keys, when)

    def rename(self, ids: dict[int, int]) -> None:
        """Stories added under provisional ids got their real ones (inserted in one statement)."""
        for old, new in ids.items():
            row = self._row_of.pop(old, None)
            if row is not None:
                self._ids[row] = new
                self._row_of[new] = row

    def touch(self, story_id: int, when: datetime) -> None:
        """An earlier item joined the story: its time moves back (and it is filed under that time too)."""
        row = self._row_of.get(story_id)
        if row is not None and when < self._times[row]:
            if self._slots(when)[0] != self._slots(self._times[row])[0]:
                self._file(row, self._row_keys[row], when)
            self._times[row], self._stamps[row] = when, when.timestamp()

    def _slots(self, when: datetime) -> tuple[int, int]:
        """The slot of ``when``, and the neighbouring slot its window reaches into."""
        position = when.timestamp() / self._width
        slot = int(position // 1)
        return slot, slot + 1 if position - slot >= 0.5 else slot - 1

    def _file(self, row: int, keys: tuple[int, ...], when: datetime) -> None:
        mix, buckets = self._slots(when)[0] * _SLOT_MIX, self._buckets
        for key in keys:
            hit = buckets.get(key ^ mix)
            if hit is None:
                buckets[key ^ mix] = [row]
            else:
                hit.append(row)

    def match(self, title: str | Probe, when: datetime) -> int | None:
        """The story this title most likely tells (within the time window and threshold), or None."""
        probe = title if isinstance(title, Probe) else self.probe(title)
        grams = probe.grams
        if not grams:
            return None
        hits: Counter[int] = Counter()
        buckets = self._buckets
        for slot in self._slots(when):
            mix = slot * _SLOT_MIX
            for key in probe.keys:
                rows = buckets.get(key ^ mix)
                if rows:
                    hits.update(rows)
        # the most alike first (more bands in common); past MAX_CANDIDATES, the rest share too little to win
        candidates = [row for row, _ in hits.most_common(MAX_CANDIDATES)] if len(hits) > MAX_CANDIDATES else hits
        best, best_score = None, self.threshold
        stamp, window, stamps, sets = when.timestamp(), self.window.total_seconds(), self._stamps, self._sets
        for row in candidates:
            if abs(stamps[row] - stamp) > window:
                continue
            score = similarity(grams, sets[row])
            if score > best_score or score == best_score and (best is None or row < best):  # ties: the oldest
                best, best_score = row, score
        return None if best is None else self._ids[best]

    def _batch_keys(self, texts: list[str]) -> list[tuple[int, ...]]:
        """Band keys of the MinHash signatures of the bigrams of normalized titles. Bigrams are hashed from
        code points, all titles at once; a one-character title is its own only gram."""
        sizes = np.array([len(t) for t in texts])
        points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        if points.size == 0:
            return [() for _ in texts]
        ends = np.cumsum(sizes)
        pairs = points[:-1] * _POINT + points[1:]
        keep = np.ones(pairs.size, dtype=bool)
        cuts = ends[:-1]
        keep[cuts[(cuts > 0) & (cuts < points.size)] - 1] = False  # no bigram across two titles
        grams, owner = pairs[keep], np.repeat(np.arange(len(texts)), np.maximum(sizes - 1, 0))
        singles = np.flatnonzero(sizes == 1)
        if singles.size:
            grams = np.concatenate([grams, points[ends[singles] - 1]])
            owner = np.concatenate([owner, singles])
        order = np.argsort(owner, kind="stable")
        grams, owner = grams[order], owner[order]
        hashed = (np.outer(self._a, grams) + self._b[:, None]) >> _SHIFT
        present = np.flatnonzero(sizes > 0)
        starts = np.searchsorted(owner, present)
        signatures = np.minimum.reduceat(hashed, starts, axis=1).T.reshape(len(present), self.bands, self.rows)
        key = signatures[:, :, 0]
        for r in range(1, self.rows):  # the rows of a band folded into one number
            key = key * _FOLD + signatures[:, :, r]
        out: list[tuple[int, ...]] = [() for _ in texts]
        for i, row in zip(present.tolist(), key.tolist()):
            out[i] = tuple(row)
        return out
