"""The classifier: quality floors on our test split, determinism, confidence, corrections, explanations."""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone

import numpy as np
import pytest

from classifier.corpus import load_corpus
from classifier.evaluate import evaluate, read_floors, render_evaluation
from classifier.jobs import human_label, tag_items
from classifier.cache import CORPUS_DIR, key_for, load_or_train, model_key, model_path
from classifier.model import (CONFIDENCE_FLOOR, TONE_AXES, Linear, _binary_temperature, _softmax_temperature, analyze_all,
                              explain, train)
from collector.jobs import save_entries
from collector.sources import SourceConfig
from store import items as store_items
from store import labels as store_labels
from store.records import Cause, Entry, Service

NOW = datetime(2024, 10, 2, 3, tzinfo=timezone.utc)


def test_quality_floors_hold_on_the_test_split(model):
    """The CI gate: only an explicit re-pin (`mynawatch classifier evaluate --pin`) can lower a floor."""
    test = [e for e in load_corpus() if e.split == "test"]
    ev = evaluate(test, model.predict([(e.title, e.text) for e in test]))
    floors = read_floors()
    assert set(floors) == set(ev.headline)
    report = render_evaluation(ev, floors=floors)
    for key, floor in floors.items():
        assert ev.headline[key] >= floor, report


def test_training_is_deterministic_for_a_seed():
    subset = load_corpus()[::40]  # every code of every axis still among them (323 items, a third of [::12])
    a, b = train(subset, seed=7), train(subset, seed=7)
    assert np.array_equal(a.relevance.coef_, b.relevance.coef_)
    assert np.array_equal(a.sentiment.coef_, b.sentiment.coef_)  # fitted on the block view
    texts = [(e.title, e.text) for e in subset[:40]]
    assert [lab.as_json() for lab in a.predict(texts)] == [lab.as_json() for lab in b.predict(texts)]


def test_irrelevant_items_get_no_services_and_no_cause(model):
    labels = model.predict([("日銀がマイナス金利を解除、17年ぶりの利上げ", ""), ("障害者雇用率が過去最高に", "厚労省の集計")])
    for lab in labels:
        assert not lab.relevant and lab.services == () and lab.cause == Cause.NONE


def test_a_lone_surrogate_from_json_input_is_tagged_not_fatal(model):
    title = json.loads('"マイナポータルに\\ud800障害"')  # valid JSON, not valid Unicode
    label, plain = model.predict([(title, ""), ("マイナポータルに障害", "")])
    assert label.relevant and "portal" in [str(s) for s in label.services]
    assert label.as_json()["services"] == plain.as_json()["services"]


def test_a_low_probability_axis_is_reported_not_hidden(model):
    n_causes, n_services = len(model.cause.classes_), len(model.services)
    (lab,) = model.labels(np.array([[0.48, 0.52]]), np.full((1, n_services), 0.1),
                          np.full((1, n_causes), 1 / n_causes), np.array([[0.34, 0.33, 0.33]]))
    assert {"relevant", "cause", "sentiment"} <= set(lab.scores["low_confidence"])
    assert len(lab.services) == 1  # relevant, so about one service at least: the likeliest
    assert CONFIDENCE_FLOOR > 0.5


def test_one_product_scores_every_axis_as_each_model_would_at_its_temperature(model):
    """Each axis scores the view it was fitted on: the whole-row features, or for ``TONE_AXES`` the block view."""
    test = [e for e in load_corpus() if e.split == "test"][:300]
    X, Xs = model.matrices(analyze_all([(e.title, e.text) for e in test]))
    assert Xs is not None and Xs.shape == X.shape and model.linear.second is not None

    def view(axis):
        return Xs if axis in TONE_AXES else X

    plain = Linear.of(model.relevance, list(model.services.values()), model.cause, model.sentiment, model.trouble,
                      second_axes=TONE_AXES)
    scores = plain.scores(X, Xs)
    expected = [model.relevance.predict_proba(view("relevance")),
                np.column_stack([m.predict_proba(view("services"))[:, 1] for m in model.services.values()]),
                model.cause.predict_proba(view("cause")), model.sentiment.predict_proba(view("sentiment")),
                model.trouble.predict_proba(view("trouble"))]
    for axis, probabilities in enumerate(expected):
        assert np.allclose(plain.probabilities(scores, axis), probabilities, rtol=0, atol=1e-12)
    widths = [end - start for start, end, _kind in plain.axes]
    temperatures = np.repeat(model.info["temperatures"], widths)
    assert np.allclose(model.linear.scores(X, Xs), scores / temperatures)
    parts = model.parts(analyze_all([(e.title, e.text) for e in test]))  # the tag path: the views never joined
    assert np.allclose(model.linear.scores_of_parts(*parts), model.linear.scores(X, Xs), rtol=0, atol=1e-9)


def test_the_block_view_weighs_each_block_of_a_row_on_its_own():
    from scipy.sparse import csr_matrix

    from classifier.vectors import block_view

    X = csr_matrix(np.array([[3.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]))
    out = block_view(X, np.array([0, 0, 1, 2]), np.array([1.0, 0.5, 2.0])).toarray()
    assert np.allclose(out, [[0.6, 0.8, 0.5, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])


def test_temperature_scaling_finds_the_temperature_that_made_the_outcomes():
    rng = np.random.default_rng(11)
    z = rng.normal(0, 4, 20_000)
    y = rng.random(20_000) < 1 / (1 + np.exp(-z / 2.5))  # outcomes as likely as scores / 2.5 say
    assert _binary_temperature(z, y) == pytest.approx(2.5, rel=0.08)
    logits = rng.normal(0, 3, (20_000, 4))
    p = np.exp(logits * 2) / np.exp(logits * 2).sum(axis=1, keepdims=True)  # sharper than the scores
    picked = np.array([rng.choice(4, p=row) for row in p])
    assert _softmax_temperature(logits, picked) == pytest.approx(0.5, rel=0.08)


def test_explain_names_the_rules_and_features_that_drove_the_label(model):
    out = explain(model, "マイナポータルがつながりにくい　アクセス集中で", "デジタル庁によると午前から")
    assert out["label"]["relevant"] and "portal" in out["label"]["services"]
    assert "T:svc:portal" in out["rules"] and "T:cause:load" in out["rules"]
    assert out["drivers"]["relevant"] and all(isinstance(v, float) for _n, v in out["drivers"]["relevant"])


def test_a_human_correction_wins_in_reports_and_joins_training(sessions, model):
    source = SourceConfig("t", "http://127.0.0.1/t", publisher="テスト新聞")
    with sessions.begin() as s:
        state = store_items.upsert_source(s, name="t", url=source.url, kind="feed", publisher="テスト新聞",
                                          interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url="https://example.jp/1", title="マイナ保険証で資格確認できず",
                                                 summary="病院の窓口で", published=NOW)], now=NOW)
    assert tag_items(sessions, model, now=NOW) == 1
    with sessions.begin() as s:
        (item,) = store_labels.labeled_items(s, model.version, NOW.replace(hour=0), NOW.replace(hour=6))
    label = human_label(sessions, model, item.item_id, relevant=None, services=["health_insurance", "card"],
                        cause="network", sentiment=None, now=NOW)
    assert label.cause == Cause.NETWORK
    with sessions.begin() as s:
        (item,) = store_labels.labeled_items(s, model.version, NOW.replace(hour=0), NOW.replace(hour=6))
        assert item.label.cause == Cause.NETWORK and set(item.label.services) == {Service.HEALTH_INSURANCE, Service.CARD}
        assert len(store_labels.human_labels(s)) == 1
    with pytest.raises(ValueError):
        human_label(sessions, model, item.item_id, relevant=None, services=None, cause="flood", sentiment=None, now=NOW)


def test_the_cache_key_follows_the_training_data_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"  # every 15th item of the corpus: the same code path, trained in seconds
    corpus.mkdir()
    for source in sorted(CORPUS_DIR.glob("*.jsonl")):
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        (corpus / source.name).write_text("".join(lines[::15]), encoding="utf-8")
    monkeypatch.setenv("MYNAWATCH_CACHE", str(tmp_path / "cache"))
    assert model_key(b"a", corpus_dir=corpus) != model_key(b"b", corpus_dir=corpus)
    assert model_key(corpus_dir=corpus) != model_key()
    model = load_or_train(corpus_dir=corpus)
    path = model_path(key_for(corpus_dir=corpus))
    assert pickle.loads(path.read_bytes()).version == model.version
    path.write_bytes(b"not a pickle")
    again = load_or_train(corpus_dir=corpus)
    assert again.version == model.version
    assert pickle.loads(path.read_bytes()).version == model.version


def test_fast_nfkc_equals_unicodedata_on_the_corpus_and_on_tricky_mixtures():
    import random
    import unicodedata

    from classifier.text import nfkc

    texts = [e.title + "\n" + e.text for e in load_corpus()]
    rng = random.Random(1)
    pool = "ｶﾞｷﾞﾊﾟかが\u3099\u309a\u309b゛ｰ－（）１２ＡＢｃ①㍿ﾞﾟe\u0301 \u3000漢字カタカナ、。!?a\u302a\u3036ゟヿ\uf900\uac00\u1161"
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    assert [t for t in texts if nfkc(t) != unicodedata.normalize("NFKC", t)] == []


def test_the_rules_find_every_occurrence_of_every_phrase():
    from classifier.rules import RULES, rule_hits_batch
    from classifier.text import normalize, tokens

    phrases = {(tuple(tokens(normalize(p))), rule) for rule, ps in RULES.items() for p in ps}
    for e in load_corpus()[::7]:
        words = tokens(normalize(f"{e.title} {e.text}"))
        every = [rule for p, rule in phrases for i in range(len(words)) if tuple(words[i:i + len(p)]) == p]
        (hits,) = rule_hits_batch([(words, [])])
        assert sorted(r.removeprefix("T:") for r in hits) == sorted(every), e.id
    words = tokens(normalize("マイナポータルにつながりにくい"))  # two spellings of one phrase fire it once
    assert rule_hits_batch([(words, [])])[0].count("T:cause:load") == 1


def test_rules_of_a_batch_are_each_items_own():
    from classifier.rules import rule_hits_batch
    from classifier.text import normalize, tokens

    items = [(tokens(normalize(e.title)), tokens(normalize(e.text))) for e in load_corpus()[::11]]
    words = tokens(normalize("マイナ保険証"))
    items += [([], []), (words, []), ([], words)]
    batch = rule_hits_batch(items)
    assert [sorted(hits) for hits in batch] == [sorted(rule_hits_batch([item])[0]) for item in items]
    assert batch[-3] == [] and "T:svc:health_insurance" in batch[-2] and "B:svc:health_insurance" in batch[-1]
    assert [h[2:] for h in batch[-2]] == [h[2:] for h in batch[-1]]
    assert sum(map(len, batch)) > len(items)  # the corpus sample fires rules


def test_hashtags_are_kept_apart_from_the_prose():
    from classifier.text import split_hashtags

    prose, tags = split_hashtags("祝日なのに使えない… # コンビニ交付 #マイナンバーカード c#の話")
    assert prose == "祝日なのに使えない… c#の話" and tags == ["コンビニ交付", "マイナンバーカード"]
    assert split_hashtags("タグなし") == ("タグなし", [])
    post = "今日もつながらない # マイナポータル # マイナンバーカード"
    (doc,) = analyze_all([(post[:80], post)])  # a Mastodon post: its start stands in for a title
    assert "ポータル" not in doc.title_tokens + doc.body_tokens and "ポータル" in doc.tags
    assert {"H:svc:portal", "H:svc:card"} <= set(doc.rules) and not any(r[2:] == "svc:card" for r in doc.rules
                                                                         if not r.startswith("H:"))


def test_long_training_items_get_the_long_weight_and_short_ones_one():
    from classifier.model import LONG_AXES, LONG_CHARS, LONG_WEIGHT, length_weights

    corpus = load_corpus()
    short = next(e for e in corpus if len(e.title) + len(e.text) <= LONG_CHARS)
    long = next(e for e in corpus if len(e.title) + len(e.text) > LONG_CHARS)
    edge = short.__class__(short.id, short.story, "題" * 50, "本" * (LONG_CHARS - 50), short.label)
    assert length_weights([short, long, edge]).tolist() == [1.0, LONG_WEIGHT, 1.0]  # over, not at, the limit
    assert set(LONG_AXES) == {"cause", "sentiment", "trouble"} and LONG_WEIGHT > 1
    weights = length_weights(corpus)
    assert 0.03 < (weights > 1).mean() < 0.3  # a minority of the corpus: its long items, not all of it


def test_a_long_text_is_also_read_as_its_title_and_lead(model):
    """A body longer than LEAD_CHARS carries its lead (cut after a sentence end): its tokens begin the body's,
    and the services' probabilities are the whole text's and the lead's mixed; a short body has no lead."""
    from classifier.model import LEAD_CHARS, LEAD_WEIGHT, lead_end
    from classifier.text import normalize, tokens

    background = "制度の経緯を振り返ると、交付が始まった当初から窓口での手続きには時間がかかっていた。" * 4
    body = ("デジタル庁は、マイナポータルに午前からつながりにくい状態が続いていると発表した。アクセスの集中が原因とみられる。"
            + background + "マイナポイントの申し込みも一部で受け付けられなかった。")
    short, long_ = analyze_all([("マイナポータル つながりにくい", "午前から。"), ("", body)])
    assert short.lead is None
    end = lead_end(normalize(body))
    assert LEAD_CHARS <= end < len(body) and normalize(body)[end - 1] == "。"
    assert long_.lead.body == normalize(body)[:end] and long_.lead.title_tokens == long_.title_tokens
    assert long_.body_tokens[:len(long_.lead.body_tokens)] == long_.lead.body_tokens
    assert long_.body_tokens == tokens(normalize(body))  # cut at a sentence end: the same tokens as one pass
    assert "B:svc:portal" in long_.lead.rules and "B:svc:points" not in long_.lead.rules

    whole = model.linear.scores_of_parts(*model.parts([long_]))
    lead = model.linear.scores_of_parts(*model.parts([long_.lead]))
    mixed = model.probabilities([long_])
    expected = (1 - LEAD_WEIGHT) * model.linear.probabilities(whole, 1) + LEAD_WEIGHT * model.linear.probabilities(lead, 1)
    assert np.allclose(mixed[1], expected)
    assert np.allclose(mixed[2], model.linear.probabilities(whole, 2))  # the other axes read the whole text
    (label,) = model.predict_docs([long_])
    assert "portal" in {str(s) for s in label.services}
