"""TF-IDF vectorizers with fast transforms, for the tagging hot path.

Both fit with scikit-learn's ``TfidfVectorizer`` (vocabulary, document frequencies, idf) and
transform to exactly what it would give (sublinear tf, idf, l2 norm), only faster:
``CharNgrams`` encodes each n-gram of up to three characters as one 64-bit integer (21 bits per
code point) and ``TokenNgrams`` each token and token pair as integers, and both find them in a
NumPy hash table (``IntTable``) instead of building a Python string per feature; ``tfidf_matrix``
sums repeated (row, column) pairs by sorting one integer per occurrence instead of a sort per row.
``CharNgrams`` can also count the n-grams that start in a text's head (a title) more than once,
which equals repeating the head in the text without the cost of scanning it twice.
"""

from __future__ import annotations

from itertools import chain, repeat

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

BITS = 21  # every Unicode code point fits in 21 bits, so a trigram fits in 63
NUL = 0x110000  # what U+0000 is encoded as (above every code point), so that no n-gram's code is 0
END = 0x110001  # the end of a text: in no n-gram of the vocabulary
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the slot is the top bits of key x this


class IntTable:
    """An open-addressing hash table from non-zero 64-bit integer keys to int64 values, built and
    read in bulk with NumPy (linear probing; at most half full)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        keys = np.asarray(keys, dtype=np.uint64)
        if len(keys) and not keys.all():
            raise ValueError("0 marks an empty slot and cannot be a key")
        bits = max(4, int(2 * len(keys)).bit_length())
        self._shift, self._mask = np.uint64(64 - bits), np.uint64((1 << bits) - 1)
        self._keys = np.zeros(1 << bits, dtype=np.uint64)
        self._values = np.full(1 << bits, -1, dtype=np.int64)
        slot, pending = self._slots(keys), np.arange(len(keys))
        while len(pending):  # each key claims its slot; of keys that collide one wins, the others move on
            s = slot[pending]
            free = self._keys[s] == 0
            self._keys[s[free]] = keys[pending[free]]
            won = self._keys[s] == keys[pending]
            self._values[s[won]] = np.asarray(values)[pending[won]]
            pending = pending[~won]
            slot[pending] = (s[~won] + np.uint64(1)) & self._mask

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return (keys * _GOLDEN) >> self._shift

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where a key is absent."""
        keys = np.asarray(keys, dtype=np.uint64)
        slot = self._slots(keys)
        found = self._keys[slot]
        out = self._values[slot]  # right where the first probe found the key or an empty slot (-1)
        pending = np.flatnonzero((found != keys) & (found != 0))  # the rest probe on: most end at once
        while len(pending):
            slot[pending] = (slot[pending] + np.uint64(1)) & self._mask
            s = slot[pending]
            found = self._keys[s]
            hit = found == keys[pending]
            out[pending] = np.where(hit, self._values[s], -1)
            pending = pending[~hit & (found != 0)]  # an empty slot ends the search: absent
        return out


def _codes(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate (JSON input may hold one) is a code like any other, as for scikit-learn
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    codes[codes == 0] = NUL
    return codes


class CharNgrams:
    def __init__(self, *, ngram_range: tuple[int, int] = (1, 3), min_df: int = 2, max_features: int | None = None):
        if ngram_range[1] > 3:
            raise ValueError("at most trigrams: longer n-grams do not fit a 64-bit code")
        self.ngram_range, self.min_df, self.max_features = ngram_range, min_df, max_features

    def fit(self, texts: list[str]) -> "CharNgrams":
        sk = TfidfVectorizer(analyzer="char", ngram_range=self.ngram_range, sublinear_tf=True, lowercase=False,
                             min_df=self.min_df, max_features=self.max_features).fit(texts)
        self.idf_ = sk.idf_
        self.names_ = sk.get_feature_names_out()
        keys = [0] * len(self.names_)
        for i, gram in enumerate(self.names_):
            for code in _codes(gram).tolist():
                keys[i] = (keys[i] << BITS) | code
        self.table_ = IntTable(np.array(keys, dtype=np.uint64), np.arange(len(keys)))
        return self

    def get_feature_names_out(self):
        return self.names_

    def transform(self, texts: list[str], heads: list[int] | None = None, head_weight: float = 2.0) -> csr_matrix:
        """TF-IDF rows for ``texts``; n-grams starting in the first ``heads[i]`` characters of text i
        count ``head_weight`` times."""
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        # One array of every text's codes, each text followed by END: an n-gram that spans two texts
        # holds END, which no vocabulary n-gram does, so it is simply not found.
        ends = np.cumsum(lengths + 1)
        codes = np.full(int(ends[-1]) if len(ends) else 0, END, dtype=np.uint64)
        inside = np.ones(len(codes), dtype=bool)
        inside[ends - 1] = False
        codes[inside] = _codes("".join(texts))
        lo, hi = self.ngram_range
        at, cols, value = [], [], codes
        for n in range(1, hi + 1):
            if n > 1:  # the n-gram at i is the (n-1)-gram at i and the character at i + n - 1
                value = (value[:-1] << np.uint64(BITS)) | codes[n - 1:]
            if n >= lo:
                found = self.table_.get(value)
                hit = np.flatnonzero(found >= 0)
                at.append(hit)
                cols.append(found[hit])
        at = np.concatenate(at)
        doc = np.repeat(np.arange(len(texts)), lengths + 1)[at]
        heavy = None
        if heads is not None:  # the n-gram starts in its text's head
            heavy = at - (ends - lengths - 1)[doc] < np.asarray(heads, dtype=np.int64)[doc]
        return tfidf_matrix(doc, np.concatenate(cols), len(texts), self.idf_, heavy, head_weight)


def token_features(title: list[str], body: list[str], rules: list[str], tags: list[str] = ()) -> list[str]:
    """What ``TokenNgrams`` counts, as strings: tokens and token bigrams of the title (t:) and the body
    (b:), tokens of the hashtags (h:), and each rule that fired (r:), once with where it fired
    (T:/B:/H:) and once without."""
    out = []
    for prefix, words in (("t:", title), ("b:", body)):
        unigrams = [prefix + w for w in words]
        out += unigrams
        out += [u + "_" + w for u, w in zip(unigrams, words[1:])]  # "t:a" + "_" + "b" = "t:a_b"
    out += ["h:" + w for w in tags]
    out += ["r:" + r for r in rules]
    out += ["r:" + r[2:] for r in rules]
    return out


class TokenNgrams:
    """TF-IDF over ``token_features`` of (title tokens, body tokens, rule ids, hashtag tokens), unknown
    features ignored.

    Fits on the feature strings; transforms without building them: each token is looked up once in a
    dict of the tokens seen in training, and unigrams and bigrams are found from token ids."""

    PARTS = ("t:", "b:", "h:")  # bigrams only in the first two: a hashtag list is no sentence

    def fit(self, docs: list[tuple[list[str], list[str], list[str], list[str]]]) -> "TokenNgrams":
        sk = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, min_df=1).fit(
            [token_features(*d) for d in docs])
        vocab, self.idf_ = sk.vocabulary_, sk.idf_
        self.names_ = np.empty(len(vocab), dtype=object)
        for name, i in vocab.items():
            self.names_[i] = name
        words = sorted({w for t, b, _, h in docs for w in chain(t, b, h)})
        self.token_ids_ = {w: i for i, w in enumerate(words)}
        self.unigrams_ = np.array([[vocab.get(p + w, -1) for p in self.PARTS] for w in words],
                                  dtype=np.int64).reshape(-1, len(self.PARTS))
        pairs = {}
        for t, b, _, _ in docs:
            for part, seq in enumerate((t, b)):
                for x, y in zip(seq, seq[1:]):
                    key = self._pair_key(part, self.token_ids_[x], self.token_ids_[y])
                    pairs[key] = vocab["tb"[part] + ":" + x + "_" + y]
        self.pairs_ = IntTable(np.fromiter(pairs, dtype=np.uint64, count=len(pairs)),
                               np.fromiter(pairs.values(), dtype=np.int64, count=len(pairs)))
        self.rules_ = {name[2:]: i for name, i in vocab.items() if name.startswith("r:")}
        return self

    BLOCKS = ("t:", "b:", "h:", "r:")

    def blocks(self) -> np.ndarray:
        """Per column, its block: 0 title, 1 body, 2 hashtags, 3 rules (``BLOCKS``)."""
        return np.array([self.BLOCKS.index(name[:2]) for name in self.names_], dtype=np.int64)

    def _pair_key(self, part, first, second):
        n = len(self.token_ids_)
        return (part * n + first) * n + second + 1  # + 1: never 0, the table's empty mark

    def get_feature_names_out(self):
        return self.names_

    def transform(self, docs: list[tuple[list[str], list[str], list[str], list[str]]]) -> csr_matrix:
        k = len(self.PARTS)
        parts = [seq for t, b, _, h in docs for seq in (t, b, h)]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        ids = np.fromiter(map(self.token_ids_.get, chain.from_iterable(parts), repeat(-1)),
                          dtype=np.int64, count=int(lengths.sum()))
        segment = np.repeat(np.arange(len(parts)), lengths)
        part = segment % k
        known = np.flatnonzero(ids >= 0)
        uni = self.unigrams_[ids[known], part[known]]
        rows, cols = [segment[known] // k], [uni]
        pair = np.flatnonzero((segment[:-1] == segment[1:]) & (part[:-1] < 2) & (ids[:-1] >= 0) & (ids[1:] >= 0))
        if len(pair):
            keys = self._pair_key(part[pair].astype(np.uint64), ids[pair].astype(np.uint64),
                                  ids[pair + 1].astype(np.uint64))
            rows.append(segment[pair] // k)
            cols.append(self.pairs_.get(keys))
        get = self.rules_.get
        rule_rows, rule_cols = [], []
        for i, (_, _, rules, _) in enumerate(docs):
            for r in rules:
                for name in (r, r[2:]):
                    if (col := get(name)) is not None:
                        rule_rows.append(i)
                        rule_cols.append(col)
        rows.append(np.array(rule_rows, dtype=np.int64))
        cols.append(np.array(rule_cols, dtype=np.int64))
        r, c = np.concatenate(rows), np.concatenate(cols)
        ok = c >= 0
        return tfidf_matrix(r[ok], c[ok], len(docs), self.idf_)


def _identity(x):
    return x
def tfidf_matrix(rows: np.ndarray, cols: np.ndarray, n_docs: int, idf: np.ndarray,
                 heavy: np.ndarray | None = None, heavy_weight: float = 2.0) -> csr_matrix:
    """Counts at (row, col) -> sublinear tf x idf, each row l2-normalized (TfidfVectorizer's defaults).

    Each (row, col) occurrence adds 1 to that cell's count, or ``heavy_weight`` where ``heavy`` is true."""
    X = _counted(rows, cols, n_docs, len(idf), heavy, heavy_weight)
    X.data = (np.log(X.data) + 1.0) * idf[X.indices]
    per_row = np.diff(X.indptr)
    norms = np.sqrt(np.bincount(np.repeat(np.arange(n_docs), per_row), weights=X.data ** 2, minlength=n_docs))
    norms[norms == 0] = 1.0
    X.data /= np.repeat(norms, per_row)
    return X


def _counted(rows, cols, n_docs: int, n_cols: int, heavy, heavy_weight: float) -> csr_matrix:
    # Each occurrence becomes one integer: its row, its column and, in the lowest bit, whether it is
    # heavy. Sorting the integers puts the cells in row-major order and a cell's occurrences side by
    # side, so a few linear passes count them. 32-bit keys (2,000 items x 500,000 columns fit) sort
    # fastest; wider ones are sorted as 64-bit.
    if not len(rows):
        return csr_matrix((n_docs, n_cols))
    col_bits = max(n_cols - 1, 1).bit_length()
    dtype = np.uint32 if n_docs << (col_bits + 1) <= 1 << 32 else np.uint64
    key = rows.astype(dtype) << dtype(col_bits + 1)
    key |= cols.astype(dtype) << dtype(1)
    if heavy is not None:
        key |= heavy.astype(dtype)
    key.sort(kind="stable")  # timsort: the occurrences arrive as runs already in row order
    # Runs of equal keys; a cell is one run, or two (its light then its heavy occurrences).
    first = np.empty(len(key), dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    runs = np.flatnonzero(first)
    counts = np.diff(runs, append=len(key)).astype(np.float64)
    run_key = key[runs]
    if heavy is not None:
        counts[(run_key & dtype(1)).astype(bool)] *= heavy_weight
    cell = run_key >> dtype(1)
    second = np.zeros(len(runs), dtype=bool)  # the heavy run of a cell that has a light one too
    np.equal(cell[1:], cell[:-1], out=second[1:])
    if second.any():
        at = np.flatnonzero(second)
        counts[at - 1] += counts[at]
        keep = ~second
        counts, cell = counts[keep], cell[keep]
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell >> dtype(col_bits), minlength=n_docs), out=indptr[1:])
    indices = (cell & dtype((1 << col_bits) - 1)).astype(np.int64)
    return csr_matrix((counts, indices, indptr), shape=(n_docs, n_cols))


def block_view(X: csr_matrix, block_of: np.ndarray, weights: np.ndarray) -> csr_matrix:
    """``X`` with each row's features of each block (``block_of[column]``) l2-normalized on their own and
    scaled by that block's weight: the title's few words weigh as much as a long body's many, whatever the
    body's length (a whole-row norm lets a long flat lead drown a headline's tone)."""
    if not X.nnz:
        return X.copy()
    blocks = block_of[X.indices]
    cell = np.repeat(np.arange(X.shape[0]) * len(weights), np.diff(X.indptr)) + blocks
    norms = np.sqrt(np.bincount(cell, weights=X.data ** 2, minlength=X.shape[0] * len(weights)))
    norms[norms == 0] = 1.0
    # the same indices and row pointers as X (shared, not copied): only the values differ
    return csr_matrix((X.data / norms[cell] * weights[blocks], X.indices, X.indptr), shape=X.shape)
