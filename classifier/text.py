"""Normalization and tokenization of Japanese text: spaCy ``blank("ja")`` with Sudachi (split mode C)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import spacy
import sudachipy

_SPACE = re.compile(r"\s+")
_URL = re.compile(r"https?://\S+")
_HASHTAG = re.compile(r"(?:^|(?<=\s))#\s?([^\s#]+)")  # "# タグ" (Mastodon's markup as text) or "#タグ", not C#
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone half of a pair (JSON input may hold one): no character


# Characters NFKC leaves alone and that never combine with a neighbour: printable ASCII, kana, the
# common CJK punctuation and the unified ideographs. Only the runs between them need normalizing.
_UNSTABLE = re.compile(r"[^\x20-\x7e\u3001-\u3029\u3030-\u3035\u3037\u303b-\u3098\u309d\u309e"
                       r"\u30a0-\u30fe\u4e00-\u9fff]+")


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, several times faster on Japanese prose: CPython's
    NFKC costs about 0.15 ms per 1,000 characters once a text holds a single full-width character;
    here only the runs of other characters (with the character before each, which a combining mark
    may join) go through it."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    out, pos = [], 0
    for m in _UNSTABLE.finditer(text):
        start = max(m.start() - 1, pos)
        out += (text[pos:start], unicodedata.normalize("NFKC", text[start:m.end()]))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def normalize(text: str) -> str:
    """NFKC, URLs removed, whitespace collapsed, ASCII lower-cased, lone surrogates replaced by U+FFFD."""
    text = nfkc(_SURROGATE.sub("\ufffd", text or ""))
    text = _URL.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return text.lower()


def split_hashtags(text: str) -> tuple[str, list[str]]:
    """The prose of a normalized text and its hashtags, apart: a tag is a habit of the poster (posts
    about コンビニ交付 carry # マイナンバーカード), not a service the post names."""
    if "#" not in text:
        return text, []
    return _SPACE.sub(" ", _HASHTAG.sub(" ", text)).strip(), _HASHTAG.findall(text)


@lru_cache(maxsize=1)
def nlp() -> spacy.language.Language:
    """The shared blank Japanese pipeline (offline: Sudachi's dictionary ships as a package)."""
    return spacy.blank("ja", config={"nlp": {"tokenizer": {"split_mode": "C"}}})


@lru_cache(maxsize=1)
def _sudachi():
    """The SudachiPy tokenizer that spaCy's Japanese tokenizer created (split mode C)."""
    return nlp().tokenizer.tokenizer


@lru_cache(maxsize=1)
def _skipped_pos() -> frozenset[int]:
    """Part-of-speech ids of punctuation and spaces (補助記号, 空白), read once from the dictionary."""
    dictionary, skipped, pid = sudachipy.Dictionary(), set(), 0
    try:
        while (pos := dictionary.pos_of(pid)) is not None:
            if pos[0] in ("補助記号", "空白"):
                skipped.add(pid)
            pid += 1
    finally:
        dictionary.close()
    return frozenset(skipped)


_PIECE = 4000  # Sudachi refuses inputs over ~49,000 bytes: long texts are cut into pieces well below that


def tokens(text: str) -> list[str]:
    """Normalized Sudachi forms of ``text`` (already normalized), punctuation and spaces dropped."""
    sudachi, skipped = _sudachi(), _skipped_pos()
    return [m.normalized_form()
            for start in range(0, len(text), _PIECE)
            for m in sudachi.tokenize(text[start:start + _PIECE])
            if m.part_of_speech_id() not in skipped]


def tokens_pairs(pairs: list[tuple[str, str]]) -> list[tuple[list[str], list[str]]]:
    """``tokens`` of each title and each body (two Sudachi calls an item: no per-token bookkeeping of
    where the title ends), the tokenizer looked up once for the batch."""
    flat = tokens_of([text for pair in pairs for text in pair])
    return list(zip(flat[::2], flat[1::2]))


def tokens_of(texts: list[str]) -> list[list[str]]:
    """``tokens`` of each text (one Sudachi call a text, none for an empty one), the tokenizer looked
    up once for the batch."""
    tokenize, skipped = _sudachi().tokenize, _skipped_pos()

    def one(text: str) -> list[str]:
        if not text:
            return []
        if len(text) > _PIECE:
            return tokens(text)
        return [m.normalized_form() for m in tokenize(text) if m.part_of_speech_id() not in skipped]

    return [one(text) for text in texts]
