"""A fast path for well-formed RSS 2.0 / 0.9x, RSS 1.0 (RDF) and Atom: lxml instead of feedparser's SAX
machinery, about ten times faster per entry. Pure.

It yields the same entry fields feedparser does for the parts mynawatch reads (link, id, title, summary,
dates, comments, source, categories, はてなブックマーク counts), with feedparser's own date parser, and
gives up (returns None) on anything it does not fully recognize, so ``parse.parse_feed`` falls back to
feedparser: malformed XML, undeclared HTML entities, other roots. tests/test_parse.py checks that both
paths agree on every fixture and on every sample-month feed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from urllib.parse import urljoin

from feedparser.datetimes import _parse_date
from lxml import etree

_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)
RSS_DATES = {"pubDate": "published", "date": "updated", "modified": "updated", "issued": "published",
             "created": "created"}
ATOM_DATES = {"published": "published", "updated": "updated", "issued": "published", "modified": "updated",
              "created": "created"}


def read_entries(body: bytes, *, base: str) -> list[Callable[[], dict]] | None:
    """One reader per entry, each giving a feedparser-like dict when called (``parse.parse_feed`` calls them
    one by one, so an entry that cannot be read costs only itself), or None when this document should go to
    feedparser."""
    try:
        root = etree.fromstring(body, parser=_PARSER, base_url=base)  # so el.base honours xml:base, as feedparser
    except (etree.XMLSyntaxError, ValueError):
        return None
    kind = _local(root)
    if kind == "rss" and root.get("version", "2.0").startswith(("2", "0.9")):
        items = [el for channel in root if _local(channel) == "channel" for el in channel if _local(el) == "item"]
        return [partial(_rss_item, el, base) for el in items]
    if kind == "RDF" and root.tag.startswith("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"):
        return [partial(_rss_item, el, base, about=el.get(_ABOUT)) for el in root if _local(el) == "item"]
    if kind == "feed" and root.tag == "{http://www.w3.org/2005/Atom}feed":
        return [partial(_atom_entry, el, base) for el in root if _local(el) == "entry"]
    return None


def _local(el) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _base(el, base: str) -> str:
    """The address relative links in ``el`` are read against: its xml:base when that is an http(s) address, else
    the feed's."""
    found = el.base
    return found if isinstance(found, str) and found.lower().startswith(("http://", "https://")) else base


def _text(el) -> str:
    return "".join(el.itertext()).strip()


def _rss_item(item, base: str, *, about: str | None = None) -> dict:
    e: dict = {"id": about} if about else {}  # RSS 1.0: rdf:about is the item's id, as in feedparser
    tags = []
    for child in item:
        name, text = _local(child), _text(child)
        if name == "title":
            e["title"] = text
        elif name == "link" and text:
            e["link"] = urljoin(_base(child, base), text)
        elif name == "guid":
            e["id"] = text
            permalink = child.get("isPermaLink", "true") != "false"
            guid_base = _base(child, base)
        elif name == "description":
            e["summary"] = text
        elif name == "encoded" and "summary" not in e:
            e["content"] = text
        elif name in RSS_DATES and text:
            e.setdefault(RSS_DATES[name], text)
        elif name == "comments":
            e["comments"] = text
        elif name == "source":
            e["source"] = {"title": text, "href": child.get("url")}
        elif name in ("category", "subject") and text:
            tags.append({"term": text})
        elif name == "bookmarkcount":
            e["hatena_bookmarkcount"] = text
    if "link" not in e and not about and e.get("id") and permalink:
        resolved = urljoin(guid_base, e["id"])  # a permalink may be relative (<guid>/news/1.html</guid>)
        if resolved.lower().startswith(("http://", "https://")):
            e["link"] = e["id"] = resolved
    return _finish(e, tags)


def _atom_entry(entry, base: str) -> dict:
    e: dict = {}
    tags = []
    for child in entry:
        name = _local(child)
        if name == "link" and child.get("rel", "alternate") == "alternate" and "link" not in e:
            e["link"] = urljoin(_base(child, base), child.get("href", ""))
        elif name == "id":
            e["id"] = _text(child)
        elif name == "title":
            e["title"] = _text(child)
        elif name == "summary":
            e["summary"] = _text(child)
        elif name == "content":
            e["content"] = _text(child)
        elif name in ATOM_DATES and _text(child):
            e.setdefault(ATOM_DATES[name], _text(child))
        elif name == "category" and child.get("term"):
            tags.append({"term": child.get("term")})
    return _finish(e, tags)


def _finish(e: dict, tags: list) -> dict:
    if "summary" not in e and "content" in e:
        e["summary"] = e["content"]
    if "published" in e and "updated" not in e:
        e["updated"] = e["published"]  # as feedparser does
    for key in ("published", "updated", "created"):
        if key in e:
            e[f"{key}_parsed"] = _parse_date(e[key])
    if tags:
        e["tags"] = tags
    return e
