"""Normalization and tokenization of Japanese text: spaCy ``blank("ja")`` with Sudachi (split mode C)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import spacy
import sudachipy
from spacy.tokens import Doc

_SPACE = re.compile(r"\s+")
_URL = re.compile(r"https?://\S+")


def normalize(text: str) -> str:
    """NFKC, URLs removed, whitespace collapsed, ASCII lower-cased."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _URL.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return text.lower()


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


def tokens_pair(title: str, body: str) -> tuple[list[str], list[str]]:
    """Tokens of a title and of a body (two Sudachi calls: no per-token bookkeeping of where the title ends)."""
    return tokens(title), tokens(body) if body else []


def make_doc(words: list[str]) -> Doc:
    """A spaCy Doc over already-tokenized words, for the rule matchers (cheap: no re-analysis)."""
    return Doc(nlp().vocab, words=words) if words else Doc(nlp().vocab, words=[""])
