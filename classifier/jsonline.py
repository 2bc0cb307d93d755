"""One JSON line of an input file (`tag`, `classifier evaluate --gold`, `--real-texts`), read with bounds:
an integer of thousands of digits is refused by its length, in our words, before Python's own limit on
converting it (4,300 digits) answers with advice about ``sys.set_int_max_str_digits``; and a line that is
not an object is refused in our words too (a reader looking up its keys said "list indices must be
integers or slices, not str")."""

from __future__ import annotations

import json
import math

MAX_DIGITS = 100  # an id or a count; no field of the formats needs a longer whole number


class NumberTooLong(ValueError):
    """A whole number of more than MAX_DIGITS digits."""


class NotAnObject(ValueError):
    """A line of valid JSON that is not an object (an array, a string, a number, null)."""

    def __init__(self, value: object):
        super().__init__(f"expected a JSON object {{...}}, got {kind_of(value)}")
        self.value = value


def _whole(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise NumberTooLong(f"a number of {digits:,} digits (at most {MAX_DIGITS})")
    return int(text)


def loads(line: str, **options) -> dict:
    """``json.loads`` of one line that holds an object, whole numbers of at most ``MAX_DIGITS`` digits."""
    value = json.loads(line, parse_int=_whole, **options)
    if not isinstance(value, dict):
        raise NotAnObject(value)
    return value


def kind_of(value: object) -> str:
    """How a JSON value is named in an error."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a number that is not finite"
    return {bool: "true or false", type(None): "null", list: "an array", dict: "an object", int: "a number",
            float: "a number", str: "a string"}.get(type(value), type(value).__name__)
