"""TF-IDF vectorizers with fast transforms, for the tagging hot path.

Both fit with scikit-learn's ``TfidfVectorizer`` (vocabulary, document frequencies, idf) and
transform to exactly what it would give (sublinear tf, idf, l2 norm), only faster:
``CharNgrams`` encodes each n-gram of up to three characters as one 64-bit integer (21 bits per
code point) and finds it in the sorted vocabulary with NumPy instead of building a Python string
per n-gram; ``Features`` looks ready-made feature strings up in one dict pass.
"""

from __future__ import annotations

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

    def transform(self, texts: list[str]) -> csr_matrix:
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        doc = np.repeat(np.arange(len(texts)), lengths)
        rows, cols = [], []
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
            hit = same_doc & (table[pos] == value)
            rows.append(doc[:m][hit])
            cols.append(ids[pos[hit]])
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        return tfidf_matrix(r, c, len(texts), self.idf_)


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
        get, rows, cols = self.vocabulary_.get, [], []
        for row, feats in enumerate(docs):
            ids = [i for i in map(get, feats) if i is not None]
            cols += ids
            rows += [row] * len(ids)
        return tfidf_matrix(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), len(docs), self.idf_)


def _identity(x):
    return x


def tfidf_matrix(rows: np.ndarray, cols: np.ndarray, n_docs: int, idf: np.ndarray) -> csr_matrix:
    """Counts at (row, col) -> sublinear tf x idf, each row l2-normalized (TfidfVectorizer's defaults)."""
    X = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_docs, len(idf)))
    X.sum_duplicates()
    X.data = (np.log(X.data) + 1.0) * idf[X.indices]
    per_row = np.diff(X.indptr)
    norms = np.sqrt(np.bincount(np.repeat(np.arange(n_docs), per_row), weights=X.data ** 2, minlength=n_docs))
    norms[norms == 0] = 1.0
    X.data /= np.repeat(norms, per_row)
    return X
