"""`mynawatch tag`: the taxonomy's batch format, one JSON object per input line in, one per line out.

Every input line gets exactly one output line, in order: a label, or ``{"id", "line", "error"}`` for a
line that cannot be tagged (not UTF-8, not JSON, blank, too long, nested too deeply, a bad id...). A
bad line costs that line, never the lines after it. Input is read in binary, one line at a time, so
each line is decoded on its own and no line is held in memory beyond ``MAX_LINE_BYTES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import IO, BinaryIO, Iterator

from classifier.jsonline import NotAnObject, NumberTooLong, kind_of, loads
from classifier.model import Classifier
from store.clean import clean_text
from store.sql import safe_json

MAX_LINE_BYTES = 1 << 20  # 1 MiB: a title and text far longer than any article
MAX_SKIPPED_BYTES = 1 << 30  # a line with no end in this much (the largest file `tag` reads) ends the input there
ENDLESS = b"endless"  # read_lines' mark of such a line, told from a line by identity (``is``)
CHUNK = 256  # lines classified together
SHOWN_BAD_LINES = 5
_BOM = b"\xef\xbb\xbf"


class LineRefused(ValueError):
    """One input line cannot be tagged; ``id`` is the line's id when it could be read."""

    def __init__(self, reason: str, id_: object = None):
        super().__init__(reason)
        self.id = id_


@dataclass
class BatchResult:
    tagged: int = 0
    refused: int = 0
    bad_lines: list[int] = field(default_factory=list)  # the first few refused line numbers

    def refuse(self, number: int) -> None:
        self.refused += 1
        if len(self.bad_lines) < SHOWN_BAD_LINES:
            self.bad_lines.append(number)

    def summary(self) -> str:
        """One line for standard error naming the first refused lines."""
        more = ", …" if self.refused > len(self.bad_lines) else ""
        where = ", ".join(str(n) for n in self.bad_lines) + more
        return (f"{self.refused} of {self.tagged + self.refused} line(s) refused "
                f"(line{'s' if self.refused > 1 else ''} {where}): "
                "see the \"error\" objects in the output, on the same lines")


def read_lines(stream: BinaryIO, *, limit: int = MAX_LINE_BYTES,
               skipped: int = MAX_SKIPPED_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its end) for each line of a binary stream; None for a line longer than
    ``limit`` bytes, whose rest is skipped without being kept; ENDLESS, and no more lines, for one that has
    no end after ``skipped`` bytes (standard input from /dev/zero was read for ever, with no output)."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
            left = skipped
            while line and not line.endswith(b"\n"):
                if left <= 0:
                    yield number, ENDLESS
                    return
                line = stream.readline(limit)
                left -= len(line)
            yield number, None
            continue
        yield number, line.rstrip(b"\n").removesuffix(b"\r")


def parse_line(number: int, raw: bytes | None, *, limit: int = MAX_LINE_BYTES) -> tuple[object, str, str]:
    """(id, title, text) of one input line; raises LineRefused saying what is wrong with it."""
    if raw is None:
        raise LineRefused(f"line {number}: longer than {limit} bytes (the limit per line); shorten the text")
    if raw is ENDLESS:
        raise LineRefused(f"line {number}: no line end in a gigabyte and more: not JSON lines (a device or a binary "
                          "file?); the input was not read past it")
    if number == 1:
        raw = raw.removeprefix(_BOM)
    if not raw.strip():
        raise LineRefused(f"line {number}: blank (every line must hold one JSON object)")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineRefused(f"line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from None
    try:
        obj = loads(line, parse_constant=_no_constant)
    except NumberTooLong as exc:
        raise LineRefused(f"line {number}: {exc}") from None
    except NotAnObject as exc:
        raise LineRefused(f"line {number}: expected an object with a title or a text, "
                          f"got {kind_of(exc.value)}") from None
    except RecursionError:  # the parser counts its depth: a line of 200,000 "[" ends here, not in a crash
        raise LineRefused(f"line {number}: arrays or objects nested too deeply") from None
    except ValueError as exc:
        raise LineRefused(f"line {number}: not JSON ({str(exc).splitlines()[0][:200]})") from None
    id_ = obj.get("id", str(number))
    if not _good_id(id_):
        raise LineRefused(f"line {number}: the id must be a string or a finite number, got {kind_of(id_)}")
    if "title" not in obj and "text" not in obj:
        raise LineRefused(f"line {number}: expected an object with a title or a text", id_)
    fields = []
    for name in ("title", "text"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise LineRefused(f"line {number}: {name} must be a string, got {kind_of(value)}", id_)
        fields.append(clean_text(value))
    return id_, fields[0], fields[1]


def tag_lines(model: Classifier, stream: BinaryIO, out: IO[str], *, chunk: int = CHUNK,
              limit: int = MAX_LINE_BYTES, skipped: int = MAX_SKIPPED_BYTES) -> BatchResult:
    """Tag every line of a binary stream, writing one JSON line per input line to ``out`` in order."""
    result = BatchResult()
    pending: list[tuple[int, object, str, str] | tuple[int, LineRefused]] = []
    for number, raw in read_lines(stream, limit=limit, skipped=skipped):
        try:
            pending.append((number, *parse_line(number, raw, limit=limit)))
        except LineRefused as refused:
            pending.append((number, refused))
        if len(pending) >= chunk:
            _flush(model, pending, out, result)
    _flush(model, pending, out, result)
    return result


def _flush(model: Classifier, pending: list, out: IO[str], result: BatchResult) -> None:
    good = [p for p in pending if len(p) == 4]
    labels = iter(_predict(model, [(title, text) for _n, _i, title, text in good]))
    for p in pending:
        number, line = p[0], None
        if len(p) == 2:
            reason, id_ = str(p[1]), p[1].id
        else:
            id_, label = p[1], next(labels)
            if isinstance(label, Exception):
                reason = f"line {number}: could not be classified ({type(label).__name__})"
            else:
                line = _dump({"id": id_, **label.as_json()})
                reason = f"line {number}: the label could not be written as JSON"
        if line is None:
            line = _error_line(number, id_, reason)
            result.refuse(number)
        else:
            result.tagged += 1
        out.write(line + "\n")
    pending.clear()
    out.flush()


def _predict(model: Classifier, items: list[tuple[str, str]]) -> list:
    """Labels in order; when the batch fails, each item alone, so one bad item costs only itself."""
    try:
        return list(model.predict(items))
    except Exception:  # noqa: BLE001 - isolate the item that breaks the model
        out = []
        for item in items:
            try:
                out += model.predict([item])
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out


def _dump(obj: dict) -> str | None:
    """Compact JSON on one line: valid (no NaN), and with control characters, bidi overrides and lone
    surrogates escaped (an id comes back as given, and nothing reaches a terminal raw). None when impossible."""
    try:
        return safe_json(obj, allow_nan=False, default=None)
    except (ValueError, TypeError, RecursionError):
        return None


def _error_line(number: int, id_: object, reason: str) -> str:
    line = _dump({"id": id_, "line": number, "error": reason})
    return line if line is not None else _dump({"id": None, "line": number, "error": reason})


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _good_id(value: object) -> bool:
    """A string or a finite number (true and false are not numbers here)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (str, int)) or (isinstance(value, float) and math.isfinite(value))

