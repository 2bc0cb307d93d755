"""The labeled corpus: every line in the taxonomy, coverage per code, no story across splits."""

from __future__ import annotations

from collections import Counter, defaultdict

from classifier.corpus import load_corpus
from store.records import Cause, Sentiment, Service


def test_corpus_is_valid_and_covers_every_code():
    examples = load_corpus()  # raises CorpusError on any malformed line
    assert len(examples) >= 2000
    assert len({e.id for e in examples}) == len(examples)
    assert sum(not e.label.relevant for e in examples) >= 500
    services = Counter(s for e in examples for s in e.label.services)
    causes = Counter(e.label.cause for e in examples)
    sentiments = Counter(e.label.sentiment for e in examples)
    assert all(services[s] >= 40 for s in Service), services
    assert all(causes[c] >= 40 for c in Cause), causes
    assert all(sentiments[s] >= 40 for s in Sentiment), sentiments


def test_no_story_straddles_two_splits():
    splits = defaultdict(set)
    for e in load_corpus():
        splits[e.story].add(e.split)
    assert all(len(s) == 1 for s in splits.values())
    counts = Counter(e.split for e in load_corpus())
    assert counts["test"] >= 300 and counts["dev"] >= 150


def test_sample_month_is_not_in_the_training_corpus():
    import json
    from pathlib import Path

    sample = set()
    for path in (Path(__file__).parent.parent / "mynawatch" / "sample" / "truth").glob("*.jsonl"):
        sample.update(json.loads(line)["title"] for line in path.open(encoding="utf-8"))
    # a bare search term ("マイナポータル") may be both a trend and a corpus item; a sentence may not
    assert not {t for t in sample & {e.title for e in load_corpus()} if len(t) >= 12}
