"""Content-Encoding undone as a stream, every layer's output capped, so a small compressed body (a "zip
bomb": 6.7 KB of ``gzip, gzip`` that inflates to gigabytes) never grows past the cap in memory. Pure.

Layers are undone from the last applied to the first; each inflates at most ``CHUNK`` bytes at a time
and hands them on at once, so no layer ever holds more than a chunk, and each layer's total output
is counted against the cap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

CHUNK = 64 * 1024
MAX_LAYERS = 4  # more Content-Encoding layers than this are refused (real servers use one)
SUPPORTED = ("gzip", "x-gzip", "deflate", "identity")
ACCEPT_ENCODING = "gzip, deflate"  # what we ask for: exactly what we can undo with a cap


class EncodingError(Exception):
    """The body cannot be decoded: an unsupported or broken encoding, or more than the cap once decoded."""

    def __init__(self, reason: str, *, too_large: bool = False):
        super().__init__(reason)
        self.reason, self.too_large = reason, too_large


class _Inflater:
    """One gzip or deflate layer (gzip members may follow one another, as in ``cat a.gz b.gz``)."""

    def __init__(self, name: str, cap: int):
        self.name, self.cap, self.total = name, cap, 0
        self._gzip = name in ("gzip", "x-gzip")
        self._raw_deflate = False  # deflate sent without its zlib header (some servers do)
        self._started = False
        self._obj = self._new()

    def _new(self):
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._obj.eof:
                if not (self._gzip and data[:2] == b"\x1f\x8b"):
                    return  # bytes after the end of the stream: ignored, as browsers do
                self._obj = self._new()  # the next gzip member
            try:
                piece = self._obj.decompress(data, CHUNK)
            except zlib.error as exc:
                if self.name == "deflate" and not self._started and not self._raw_deflate:
                    self._raw_deflate = True
                    self._obj = self._new()
                    continue
                raise EncodingError(f"the body is not valid {self.name} data ({exc})") from exc
            self._started = True
            data = self._obj.unused_data if self._obj.eof else self._obj.unconsumed_tail
            yield from self._count(piece)
        yield from self._drain()

    def finish(self) -> Iterator[bytes]:
        yield from self._drain()

    def _drain(self) -> Iterator[bytes]:
        """Output zlib still holds after taking all the input (at most a chunk at a time)."""
        while not self._obj.eof:
            try:
                piece = self._obj.decompress(b"", CHUNK)
            except zlib.error as exc:
                raise EncodingError(f"the body is not valid {self.name} data ({exc})") from exc
            if not piece:
                return
            yield from self._count(piece)

    def _count(self, piece: bytes) -> Iterator[bytes]:
        if piece:
            self.total += len(piece)
            if self.total > self.cap:
                raise EncodingError(f"the body exceeds the {self.cap}-byte cap once decoded ({self.name})",
                                    too_large=True)
            yield piece


def encodings(header_values: Iterable[str]) -> list[str]:
    """The layers named by the Content-Encoding header(s), in the order they were applied."""
    names = [n.strip().lower() for value in header_values for n in value.split(",")]
    return [n for n in names if n and n != "identity"]


def decoder(layers: list[str], cap: int):
    """A function ``feed(raw: bytes | None) -> list[bytes]`` (None at the end of the body) that undoes
    ``layers`` with every layer's output capped at ``cap`` bytes."""
    if len(layers) > MAX_LAYERS:
        raise EncodingError(f"{len(layers)} layers of Content-Encoding (at most {MAX_LAYERS} are undone)")
    unknown = [n for n in layers if n not in SUPPORTED]
    if unknown:
        raise EncodingError(f"unsupported Content-Encoding {', '.join(unknown)} (we ask for {ACCEPT_ENCODING})")
    chain = [_Inflater(n, cap) for n in reversed(layers)]

    def run(pieces: Iterable[bytes], stage: int, *, end: bool) -> Iterator[bytes]:
        if stage == len(chain):
            yield from pieces
            return
        layer = chain[stage]
        for piece in pieces:
            yield from run(layer.feed(piece), stage + 1, end=False)
        if end:
            yield from run(layer.finish(), stage + 1, end=True)

    def feed(raw: bytes | None) -> list[bytes]:
        if raw is None:
            return list(run([], 0, end=True))
        return list(run([raw], 0, end=False))

    return feed
