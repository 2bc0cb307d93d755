"""Bytes -> text for feeds and pages: by their byte order mark, else by the charsets they declare, else by the
first Japanese encoding that decodes them cleanly. Pure.

A byte order mark wins over any label (XML 1.0 appendix F, the HTML standard). A document whose first bytes
are plain ASCII (``<?xml``, ``<html``) cannot be UTF-16 or UTF-32, whatever its declaration or its HTTP header
says: such a label is a mistake (a CMS template copied from elsewhere) and is passed over, where decoding by
it would turn every character into a CJK one and cost the whole document.
"""

from __future__ import annotations

import codecs

ALIASES = {"shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "windows-31j": "cp932",
           "euc-jp": "euc_jis_2004", "x-euc-jp": "euc_jis_2004"}
FALLBACKS = ("utf-8", "cp932", "euc_jis_2004")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32LE's mark begins with UTF-16LE's
_WIDE_STARTS = ((b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"), (b"\x00<\x00", "utf-16-be"),
                (b"<\x00", "utf-16-le"))  # "<" without a mark (XML 1.0 appendix F)
_WIDE = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
# Python codecs that are no web charsets: a document labeled with one is read by the fallbacks (decoded by the
# label, its Japanese would turn to mojibake)
_NOT_WEB = {"utf-7", "unicode-escape", "raw-unicode-escape", "punycode", "idna"}


def sniff(body: bytes) -> str | None:
    """The encoding the first bytes show: a byte order mark, or "<" in UTF-16 or UTF-32; None when they show none."""
    for mark, codec in _BOMS:
        if body.startswith(mark):
            return codec
    return next((codec for prefix, codec in _WIDE_STARTS if body.startswith(prefix)), None)


def decode(body: bytes, declared: list[str]) -> str:
    """``body`` as text (see the module), ``declared`` the charset names it gave, most trusted first. Never
    raises: undecodable bytes become U+FFFD when nothing decodes the whole body."""
    shown = sniff(body)
    if shown is not None:
        try:
            return body.decode(shown).removeprefix("\ufeff")
        except UnicodeDecodeError:
            if shown != "utf-8-sig":  # UTF-16 or UTF-32 for sure: no other charset reads it
                return body.decode(shown, errors="replace").removeprefix("\ufeff")
    for name in [*declared, *FALLBACKS]:
        codec = ALIASES.get(name.lower(), name)
        try:
            info = codecs.lookup(codec)
            if not info._is_text_encoding or info.name in _WIDE | _NOT_WEB:  # hex, rot13: no charsets at all
                continue
            return body.decode(codec).removeprefix("\ufeff")
        except (LookupError, ValueError):  # an unknown name, undecodable bytes, a codec that fails (idna)
            continue
    return body.decode("utf-8", errors="replace").removeprefix("\ufeff")
