"""The labeled corpus we wrote (``classifier/data/corpus/*.jsonl``) and its split by story."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from classifier.jsonline import loads
from store.records import Cause, Label, Sentiment, Service

CORPUS_DIR = Path(__file__).parent / "data" / "corpus"


class CorpusError(ValueError):
    """A corpus or gold file line is not in the taxonomy's format."""


@dataclass(frozen=True)
class Example:
    id: str
    story: str
    title: str
    text: str
    label: Label

    @property
    def split(self) -> str:
        return split_of(self.story)


def split_of(story: str) -> str:
    """train / dev / test by a hash of the story id, so no story straddles two splits (70/10/20)."""
    bucket = int(hashlib.sha1(story.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "dev" if bucket < 80 else "test"


def parse_example(line: str, *, where: str) -> Example:
    try:
        obj = loads(line)
        if not isinstance(obj, dict):
            raise TypeError(f"expected a JSON object, got {type(obj).__name__}")
        relevant, codes = obj["relevant"], obj.get("services", [])
        # types as the taxonomy writes them: "relevant": "yes" was read as true, "services": "portal" letter by letter
        if not isinstance(relevant, bool):
            raise TypeError(f"relevant: expected true or false, got {json.dumps(relevant, ensure_ascii=False)[:40]}")
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise TypeError(f"services: expected a list of service codes, got {json.dumps(codes, ensure_ascii=False)[:40]}")
        for key in ("cause", "sentiment"):  # (title and text are checked where they are read, by item)
            if key in obj and obj[key] is not None and not isinstance(obj[key], str):
                raise TypeError(f"{key}: expected a string, got {json.dumps(obj[key], ensure_ascii=False)[:40]}")
        services = tuple(Service(s) for s in codes)
        label = Label(relevant, services, Cause(obj.get("cause", "none")), Sentiment(obj["sentiment"]))
    except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise CorpusError(f"{where}: not a labeled item in the taxonomy format ({exc})") from exc
    if relevant and not services:
        raise CorpusError(f"{where}: a relevant item needs at least one service")
    if not relevant and (services or label.cause != Cause.NONE):
        raise CorpusError(f"{where}: an irrelevant item has services [] and cause 'none'")
    ident = str(obj.get("id", where))
    return Example(ident, str(obj.get("story", ident)), obj.get("title", "") or "", obj.get("text", "") or "", label)


def read_examples(path: Path) -> list[Example]:
    out = []
    with path.open(encoding="utf-8-sig") as fh:  # a byte order mark is read, as `tag` reads it
        for number, line in enumerate(fh, 1):
            if line.strip():
                out.append(parse_example(line, where=f"{path}:{number}"))
    return out


def corpus_files(directory: Path = CORPUS_DIR) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def load_corpus(directory: Path = CORPUS_DIR) -> list[Example]:
    return [ex for path in corpus_files(directory) for ex in read_examples(path)]


def corpus_digest(directory: Path = CORPUS_DIR, extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for path in corpus_files(directory):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()
