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


_SKIP_POS: dict[int, bool] = {}  # part-of-speech id -> punctuation or space (looked up once per id)
_PIECE = 4000  # Sudachi refuses inputs over ~49,000 bytes: long texts are cut into pieces well below that


def tokens(text: str) -> list[str]:
    """Normalized Sudachi forms of ``text`` (already normalized), punctuation and spaces dropped."""
    return tokens_pair(text, "")[0]


def tokens_pair(title: str, body: str) -> tuple[list[str], list[str]]:
    """Tokens of a title and a body in one Sudachi pass (the title's tokens end at the first newline)."""
    sudachi, skip_pos = _sudachi(), _SKIP_POS
    text = f"{title}\n{body}" if body else title
    cut = len(title)
    head, tail = [], []
    for start in range(0, len(text), _PIECE):
        for m in sudachi.tokenize(text[start:start + _PIECE]):
            pid = m.part_of_speech_id()
            skip = skip_pos.get(pid)
            if skip is None:
                skip = skip_pos[pid] = m.part_of_speech()[0] in ("補助記号", "空白")
            if skip:
                continue
            (head if start + m.begin() < cut else tail).append(m.normalized_form())
    return head, tail


def make_doc(words: list[str]) -> Doc:
    """A spaCy Doc over already-tokenized words, for the rule matchers (cheap: no re-analysis)."""
    return Doc(nlp().vocab, words=words) if words else Doc(nlp().vocab, words=[""])
