"""The fast TF-IDF transforms give what scikit-learn's TfidfVectorizer gives."""

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier.vectors import CharNgrams, Features, tfidf_matrix

TEXTS = [
    "マイナポータルにつながらない。アクセスが集中しているとみられる",
    "マイナ保険証のトラブル、マイナ保険証で資格確認できず窓口で全額負担",
    "コンビニ交付を一時停止　別人の住民票を交付",
    "",
    "ｍｙｎａ 𠮷野家 絵文字😀も数える",
    "障害者手帳の更新手続き",
]


def _sklearn_chars(texts, ngram_range=(1, 3)):
    return TfidfVectorizer(analyzer="char", ngram_range=ngram_range, sublinear_tf=True, lowercase=False,
                           min_df=1).fit(TEXTS).transform(texts)


def test_character_ngrams_match_scikit_learn():
    ours = CharNgrams(ngram_range=(1, 3), min_df=1).fit(TEXTS)
    assert np.allclose(ours.transform(TEXTS).toarray(), _sklearn_chars(TEXTS).toarray())


def test_a_weighted_head_counts_like_a_repeated_head():
    ours = CharNgrams(ngram_range=(1, 1), min_df=1).fit(TEXTS)
    head, body = "マイナ保険証", "の資格確認ができない"
    weighted = ours.transform([head + body, body], [len(head), 0])
    repeated = _sklearn_chars([head + head + body, body], (1, 1))
    assert np.allclose(weighted.toarray(), repeated.toarray())


def test_feature_lists_match_scikit_learn():
    docs = [["t:障害", "t:障害", "b:復旧"], ["r:svc:portal"], [], ["unknown-feature", "b:復旧"]]
    sk = TfidfVectorizer(analyzer=lambda x: x, sublinear_tf=True).fit(docs[:3])
    ours = Features().fit(docs[:3])
    assert np.allclose(ours.transform(docs).toarray(), sk.transform(docs).toarray())


def test_summing_repeated_cells_agrees_with_scipy_on_wide_matrices():
    rng = np.random.default_rng(5)
    n_docs, n_cols = 300, 200_000  # wider than 16 bits: columns are sorted in two passes
    rows = rng.integers(0, n_docs, 20_000)
    cols = rng.integers(0, 40, 20_000) * 4_999  # few distinct columns, so cells repeat
    idf = rng.uniform(1, 3, n_cols)
    weights = rng.choice([1.0, 2.0], 20_000)
    ours = tfidf_matrix(rows, cols, n_docs, idf, weights)
    counts = csr_matrix((weights, (rows, cols)), shape=(n_docs, n_cols))
    counts.sum_duplicates()
    counts.data = (np.log(counts.data) + 1) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1))).ravel()
    norms[norms == 0] = 1
    expected = csr_matrix(counts.multiply(1 / norms[:, None]))
    assert ours.has_canonical_format
    assert abs(ours - expected).max() < 1e-12
