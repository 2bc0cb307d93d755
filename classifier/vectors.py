"""TF-IDF vectorizers with fast transforms, for the tagging hot path.

Both fit with scikit-learn's ``TfidfVectorizer`` (vocabulary, document frequencies, idf) and
transform to exactly what it would give (sublinear tf, idf, l2 norm), only faster:
``CharNgrams`` encodes each n-gram of up to three characters as one 64-bit integer (21 bits per
code point) and finds it in the sorted vocabulary with NumPy instead of building a Python string
per n-gram; ``Features`` looks ready-made feature strings up in one dict pass; ``tfidf_matrix``
sums repeated (row, column) pairs with two linear-time radix sorts instead of a sort per row.
``CharNgrams`` can also count the n-grams that start in a text's head (a title) more than once,
which equals repeating the head in the text without the cost of scanning it twice.
"""

from __future__ import annotations

from itertools import chain, repeat

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

BITS = 21  # every Unicode code point fits in 21 bits, so a trigram fits in 63


def _code(gram: str) -> int:
    value = 0
    for ch in gram:
        value = (value << BITS) | ord(ch)
    return value


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
        self.tables_ = {}
        for n in range(self.ngram_range[0], self.ngram_range[1] + 1):
            pairs = sorted((_code(g), i) for i, g in enumerate(self.names_) if len(g) == n)
            self.tables_[n] = (np.array([c for c, _ in pairs], dtype=np.uint64),
                               np.array([i for _, i in pairs], dtype=np.int64))
        return self

    def get_feature_names_out(self):
        return self.names_

    def transform(self, texts: list[str], heads: list[int] | None = None, head_weight: float = 2.0) -> csr_matrix:
        """TF-IDF rows for ``texts``; n-grams starting in the first ``heads[i]`` characters of text i
        count ``head_weight`` times."""
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        doc = np.repeat(np.arange(len(texts)), lengths)
        weight = None
        if heads is not None:
            offset = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            weight = np.where(offset < np.repeat(np.asarray(heads, dtype=np.int64), lengths), head_weight, 1.0)
        rows, cols, weights = [], [], []
        for n, (table, ids) in self.tables_.items():
            if len(codes) < n or not len(table):
                continue
            m = len(codes) - n + 1
            same_doc = doc[:m] == doc[n - 1:]
            value = codes[:m].copy()
            for k in range(1, n):
                value = (value << np.uint64(BITS)) | codes[k:k + m]
            pos = np.searchsorted(table, value)
            pos[pos == len(table)] = 0
            hit = np.flatnonzero(same_doc & (table[pos] == value))
            rows.append(doc[hit])
            cols.append(ids[pos[hit]])
            if weight is not None:
                weights.append(weight[hit])
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        w = np.concatenate(weights) if weights else None
        return tfidf_matrix(r, c, len(texts), self.idf_, w)


class Features:
    """TF-IDF over lists of feature strings (tokens, bigrams, rule ids), unknown features ignored."""

    def fit(self, docs: list[list[str]]) -> "Features":
        sk = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, min_df=1).fit(docs)
        self.vocabulary_, self.idf_ = sk.vocabulary_, sk.idf_
        return self

    def get_feature_names_out(self):
        names = np.empty(len(self.vocabulary_), dtype=object)
        for name, i in self.vocabulary_.items():
            names[i] = name
        return names

    def transform(self, docs: list[list[str]]) -> csr_matrix:
        missing = len(self.idf_)  # what an unknown feature maps to, dropped below
        lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        cols = np.fromiter(map(self.vocabulary_.get, chain.from_iterable(docs), repeat(missing)),
                           dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(docs)), lengths)
        known = cols != missing
        return tfidf_matrix(rows[known], cols[known], len(docs), self.idf_)


def _identity(x):
    return x


def tfidf_matrix(rows: np.ndarray, cols: np.ndarray, n_docs: int, idf: np.ndarray,
                 weights: np.ndarray | None = None) -> csr_matrix:
    """Counts at (row, col) -> sublinear tf x idf, each row l2-normalized (TfidfVectorizer's defaults).

    ``weights`` (default 1 each) is what each (row, col) occurrence adds to that cell's count."""
    if weights is None:
        weights = np.ones(len(rows))
    if not len(rows) or n_docs > 1 << 16 or len(idf) > 1 << 32:
        X = csr_matrix((weights, (rows, cols)), shape=(n_docs, len(idf)))
        X.sum_duplicates()
    else:
        X = _summed(rows, cols, weights, n_docs, len(idf))
    X.data = (np.log(X.data) + 1.0) * idf[X.indices]
    per_row = np.diff(X.indptr)
    norms = np.sqrt(np.bincount(np.repeat(np.arange(n_docs), per_row), weights=X.data ** 2, minlength=n_docs))
    norms[norms == 0] = 1.0
    X.data /= np.repeat(norms, per_row)
    return X


def _summed(rows, cols, weights, n_docs: int, n_cols: int) -> csr_matrix:
    # NumPy sorts 16-bit keys stably by radix (linear time): by column (low, then high 16 bits), then
    # by row, gives row-major order with columns ascending in each row; equal neighbours are then
    # summed in one pass.
    order = np.argsort((cols & 0xFFFF).astype(np.uint16), kind="stable")
    if n_cols > 1 << 16:
        order = order[np.argsort((cols[order] >> 16).astype(np.uint16), kind="stable")]
    order = order[np.argsort(rows[order].astype(np.uint16), kind="stable")]
    r, c, w = rows[order], cols[order], weights[order]
    first = np.empty(len(r), dtype=bool)
    first[0] = True
    first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    starts = np.flatnonzero(first)
    data = np.add.reduceat(w, starts)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(r[starts], minlength=n_docs), out=indptr[1:])
    return csr_matrix((data, c[starts], indptr), shape=(n_docs, n_cols))
