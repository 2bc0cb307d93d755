"""Source kinds are dispatched in one place: the collector's registry (collector/kinds.py, and
collector.streams for pushed kinds) and the store's table of the signal each kind feeds
(store.records.SOURCE_KINDS) name the same kinds, and no other module tests a kind's name."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.kinds import KINDS, Stores, kind_of
from collector.publishers import taught_names
from collector.sources import SourceConfig
from collector.streams import ADAPTERS
from collector.streams.config import KINDS as STREAM_KINDS
from store.records import SOURCE_KINDS, Entry, Signal, kinds_feeding

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 10, 16, tzinfo=timezone.utc)


def test_the_registry_and_the_stores_table_name_the_same_kinds():
    assert not KINDS.keys() & ADAPTERS.keys()  # a kind is polled or pushed, not both
    assert sorted(STREAM_KINDS) == sorted(ADAPTERS)  # [[streams]] accepts the kinds that have an adapter
    assert sorted(KINDS.keys() | ADAPTERS.keys()) == sorted(SOURCE_KINDS)
    assert {k.signal for k in KINDS.values()} | {SOURCE_KINDS[k] for k in ADAPTERS} == set(Signal)


def test_the_signals_the_store_counts_by():
    assert kinds_feeding(Signal.POSTS) == ("mastodon",)
    assert kinds_feeding(Signal.BOOKMARKS) == ("hatena",)
    assert kinds_feeding(Signal.STREAM) == ("jetstream", "misskey")
    assert kind_of("google_trends").stores is Stores.TRENDS and kind_of("google_trends").signal is Signal.TRENDS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_is_a_valid_source(name):
    kind = kind_of(name)
    source = SourceConfig("s", "https://example.jp/x", kind=name, selector="main" if kind.selector else None)
    assert source.kind == name
    assert kind.body_hash == (kind.stores is not Stores.PAGE)  # a page changes only when its region does


def test_unknown_and_pushed_kinds_are_refused_with_the_list():
    with pytest.raises(ValueError, match="unknown kind 'rss'.*feed, google_news"):
        SourceConfig("s", "https://example.jp/x", kind="rss")
    with pytest.raises(ValueError, match="unknown kind 'jetstream'"):  # a [[streams]] kind, not a [[sources]] one
        SourceConfig("s", "https://example.jp/x", kind="jetstream")
    with pytest.raises(ValueError, match='selector only applies to kind = "page"'):
        SourceConfig("s", "https://example.jp/x", kind="feed", selector="main")
    with pytest.raises(KeyError, match="one of feed, google_news"):
        kind_of("rss")


def test_publisher_names_follow_the_kinds_rules():
    item = Entry(url="https://news.google.com/a", title="t", publisher="東西新聞", publisher_url="https://www.tozai.jp")
    taught = {name: taught_names(SourceConfig("s", "https://outlet.example.jp/rss", kind=name, publisher="紙"), [item])
              for name in KINDS}
    assert taught["google_news"] == {"tozai.jp": ("東西新聞", "google_news")}  # each item names its outlet
    assert taught["feed"] == taught["page"] == {"outlet.example.jp": ("紙", "source")}  # its own address
    assert not any(taught[k] for k in ("google_trends", "yahoo", "hatena", "mastodon"))  # aggregators teach nothing


def _kind_names_in(path: Path, *, compared_only: bool) -> list[str]:
    """Kind names written in ``path``: as any string constant, or only where a ``kind`` is compared to one."""
    tree = ast.parse(path.read_bytes())
    if compared_only:
        compared = [[c.left, *c.comparators] for c in ast.walk(tree) if isinstance(c, ast.Compare)]
        nodes = [n for sides in compared if any(map(_is_kind, sides)) for x in sides for n in ast.walk(x)]
    else:
        nodes = list(ast.walk(tree))
    return [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in nodes
            if isinstance(n, ast.Constant) and n.value in SOURCE_KINDS]


def _is_kind(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "kind" or isinstance(node, ast.Name) and node.id == "kind"


def test_no_module_tests_a_kinds_name():
    """The store's SQL counts by its table, not by names; the collector asks its registry. (The stream package
    keeps its adapters' own protocol switches; xmlfeed's ``kind`` is an XML root element's name.)"""
    store = [p for p in (ROOT / "store").rglob("*.py") if p.name != "records.py" and "migrations" not in p.parts]
    collector = [p for p in (ROOT / "collector").rglob("*.py")
                 if p.name not in ("kinds.py", "xmlfeed.py") and "streams" not in p.parts]
    found = [*(hit for p in store for hit in _kind_names_in(p, compared_only=False)),
             *(hit for p in collector for hit in _kind_names_in(p, compared_only=True))]
    assert not found, "kind names outside the registry:\n" + "\n".join(found)
