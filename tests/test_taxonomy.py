"""The taxonomy is declared once (store/records.py) and every service code is reachable from it: the gate
passes each name, the rules fire on it, and the maintenance parser attributes a notice naming it to its code."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from classifier.rules import RULES, rule_hits_batch
from classifier.text import normalize, tokens
from collector.gate import gate_reason
from collector.maintenance import find_windows
from store.records import CAUSE_NAMES, SENTIMENT_NAMES, SERVICE_NAMES, SERVICE_WORDS, Cause, Sentiment, Service

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "taxonomy.md"
NOTICE_TIME = datetime(2024, 10, 7, 1, tzinfo=timezone.utc)
WINDOW = "10月12日（土）1時から6時まで、システムを停止します。"

NAMES = [(service, name) for service, words in SERVICE_WORDS.items() for name in words.names]
NEAR = [(service, f"{a}の{b}") for service, words in SERVICE_WORDS.items() for a, b in words.near]
HINTS = [(service, hint) for service, words in SERVICE_WORDS.items() for hint in words.hints]


def _rules_fired(title: str) -> list[str]:
    (hits,) = rule_hits_batch([(tokens(normalize(title)), [])])
    return hits


def test_every_service_has_a_display_name_and_words():
    assert list(SERVICE_WORDS) == list(Service)
    for service in Service:
        assert SERVICE_WORDS[service].display and SERVICE_WORDS[service].names, service
        assert SERVICE_NAMES[service] == service.display == SERVICE_WORDS[service].display


def test_every_cause_and_sentiment_has_a_display_name():
    assert set(CAUSE_NAMES) == set(Cause) and all(CAUSE_NAMES.values())
    assert set(SENTIMENT_NAMES) == set(Sentiment) and all(SENTIMENT_NAMES.values())
    assert {c.display for c in Cause} == set(CAUSE_NAMES.values())


@pytest.mark.parametrize("service,name", NAMES, ids=[f"{s}-{n}" for s, n in NAMES])
def test_each_name_is_reachable_by_the_gate_the_rules_and_the_maintenance_parser(service, name):
    title = f"{name}の計画停止について"
    assert gate_reason(title, "") is None
    assert f"T:svc:{service}" in _rules_fired(title)
    assert [w.service for w in find_windows(title, WINDOW, notice_time=NOTICE_TIME)] == [service]


@pytest.mark.parametrize("service,phrase", NEAR, ids=[f"{s}-{p}" for s, p in NEAR])
def test_each_near_pair_is_reachable_by_the_gate_and_the_maintenance_parser(service, phrase):
    title = f"{phrase}の計画停止について"
    assert gate_reason(title, "") is None
    assert [w.service for w in find_windows(title, WINDOW, notice_time=NOTICE_TIME)] == [service]


@pytest.mark.parametrize("service,hint", HINTS, ids=[f"{s}-{h}" for s, h in HINTS])
def test_each_hint_fires_its_rule_but_does_not_pass_the_gate_alone(service, hint):
    title = f"{hint}の計画停止について"
    assert f"T:svc:{service}" in _rules_fired(title)
    assert gate_reason(title, "") is not None  # iPhone, 暗証番号: an item needs a name to pass


def test_the_svc_rules_are_exactly_the_declared_words():
    declared = {f"svc:{s}": {*w.names, *w.hints} for s, w in SERVICE_WORDS.items()}
    assert {rule: set(phrases) for rule, phrases in RULES.items() if rule.startswith("svc:")} == declared


def test_a_broad_service_named_in_passing_does_not_take_the_notice():
    notice = find_windows("マイナンバーカードを利用したコンビニ交付サービスの休止について", WINDOW, notice_time=NOTICE_TIME)
    assert [w.service for w in notice] == ["convenience_store"]
    notice = find_windows("電子証明書の交付の計画停止について", WINDOW, notice_time=NOTICE_TIME)
    assert [w.service for w in notice] == ["certificate"]  # 証明書…交付 inside 電子証明書 is not コンビニ交付


def _contract_tables() -> dict[str, dict[str, str]]:
    """Per axis heading (services, cause, sentiment), code -> 表示名 from the contract's tables."""
    tables: dict[str, dict[str, str]] = {}
    axis = None
    for line in CONTRACT.read_text(encoding="utf-8").splitlines():
        if heading := re.match(r"## (\w+):", line):
            axis = heading.group(1)
        elif axis and (row := re.match(r"\|\s*([a-z_]+)\s*\|\s*([^|]+?)\s*\|", line)) and row.group(1) != "code":
            tables.setdefault(axis, {})[row.group(1)] = row.group(2)
    return tables


def test_the_codes_and_display_names_are_the_contracts():
    if not CONTRACT.exists():
        pytest.skip(f"the label contract is not beside this checkout ({CONTRACT})")
    tables = _contract_tables()
    assert tables["services"] == {str(s): n for s, n in SERVICE_NAMES.items()}
    assert tables["cause"] == {str(c): n for c, n in CAUSE_NAMES.items()}
    assert tables["sentiment"] == {str(s): n for s, n in SENTIMENT_NAMES.items()}
