"""Normalization and tokenization of Japanese text: spaCy ``blank("ja")`` with Sudachi (split mode C)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import spacy
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


def tokens(text: str) -> list[str]:
    """Normalized Sudachi forms of ``text`` (already normalized), punctuation and spaces dropped."""
    if not text:
        return []
    sudachi = _sudachi()
    out = []
    # Sudachi refuses inputs over ~49,000 bytes; articles are cut into pieces well below that.
    for start in range(0, len(text), 4000):
        for m in sudachi.tokenize(text[start:start + 4000]):
            surface = m.surface()
            if surface.isspace() or m.part_of_speech()[0] in ("補助記号", "空白"):
                continue
            out.append(m.normalized_form())
    return out


def make_doc(words: list[str]) -> Doc:
    """A spaCy Doc over already-tokenized words, for the rule matchers (cheap: no re-analysis)."""
    return Doc(nlp().vocab, words=words) if words else Doc(nlp().vocab, words=[""])
