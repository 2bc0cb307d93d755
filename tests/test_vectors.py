"""The fast TF-IDF transforms give what scikit-learn's TfidfVectorizer gives."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier.vectors import CharNgrams, IntTable, TokenNgrams, tfidf_matrix, token_features

TEXTS = [
    "マイナポータルにつながらない。アクセスが集中しているとみられる",
    "マイナ保険証のトラブル、マイナ保険証で資格確認できず窓口で全額負担",
    "コンビニ交付を一時停止　別人の住民票を交付",
    "",
    "ｍｙｎａ 𠮷野家 絵文字😀も数える",
    "障害者手帳の更新手続き",
    "制御文字\x00も\x00\x00一文字",
    "孤立した\ud800サロゲート",  # JSON input can hold one
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


def test_token_ngrams_match_scikit_learn_on_their_feature_strings():
    fit = [(["マイナ保険証", "で", "障害"], ["復旧", "し", "た"], ["T:svc:health_insurance", "B:pos:recovery"], []),
           (["障害", "障害", "発生"], [], ["T:trouble", "T:trouble", "H:svc:card"], ["マイナンバーカード", "障害"]),
           ([], ["マイナポータル", "に", "障害"], ["B:svc:portal"], ["マイナポータル"]),
           ([], [], [], [])]
    seen = [(["障害", "発生", "未知語", "障害"], ["マイナ保険証", "で", "障害"], ["B:svc:health_insurance", "T:unseen"],
             ["障害", "未知語"]),
            (["未知語"], ["未知語", "復旧"], ["H:svc:card"], ["マイナポータル", "マイナポータル"]), ([], [], [], [])]
    sk = TfidfVectorizer(analyzer=lambda x: x, sublinear_tf=True).fit([token_features(*d) for d in fit])
    ours = TokenNgrams().fit(fit)
    expected = sk.transform([token_features(*d) for d in fit + seen]).toarray()
    assert np.allclose(ours.transform(fit + seen).toarray(), expected)
    assert list(ours.get_feature_names_out()) == list(sk.get_feature_names_out())
    assert {"h:マイナポータル", "r:H:svc:card", "r:svc:card"} <= set(sk.vocabulary_)


def test_the_hash_table_finds_every_key_and_no_other():
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(1, 1 << 62, 50_000, dtype=np.uint64))
    table = IntTable(keys, np.arange(len(keys)))
    assert np.array_equal(table.get(keys), np.arange(len(keys)))
    absent = np.setdiff1d(rng.integers(1, 1 << 62, 50_000, dtype=np.uint64), keys)
    assert (table.get(absent) == -1).all()
    assert (table.get(keys[:100] + np.uint64(1 << 62)) == -1).all()


@pytest.mark.parametrize("n_docs, n_cols", [(300, 200_000), (3_000, 1_000_000)])  # 32- and 64-bit sort keys
def test_summing_repeated_cells_agrees_with_scipy(n_docs, n_cols):
    rng = np.random.default_rng(5)
    rows = rng.integers(0, n_docs, 20_000)
    cols = rng.integers(0, 40, 20_000) * 4_999  # few distinct columns, so cells repeat
    idf = rng.uniform(1, 3, n_cols)
    heavy = rng.choice([False, True], 20_000)
    weights = np.where(heavy, 2.5, 1.0)
    ours = tfidf_matrix(rows, cols, n_docs, idf, heavy, 2.5)
    counts = csr_matrix((weights, (rows, cols)), shape=(n_docs, n_cols))
    counts.sum_duplicates()
    counts.data = (np.log(counts.data) + 1) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1))).ravel()
    norms[norms == 0] = 1
    expected = csr_matrix(counts.multiply(1 / norms[:, None]))
    assert ours.has_canonical_format
    assert abs(ours - expected).max() < 1e-12
