"""One JSON line of an input file (`tag`, `classifier evaluate --gold`, `--real-texts`), read with bounds:
an integer of thousands of digits is refused by its length, in our words, before Python's own limit on
converting it (4,300 digits) answers with advice about ``sys.set_int_max_str_digits``."""

from __future__ import annotations

import json

MAX_DIGITS = 100  # an id or a count; no field of the formats needs a longer whole number


class NumberTooLong(ValueError):
    pass


def _whole(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise NumberTooLong(f"a number of {digits:,} digits (at most {MAX_DIGITS})")
    return int(text)


def loads(line: str, **options):
    """``json.loads`` of one line, whole numbers of at most ``MAX_DIGITS`` digits."""
    return json.loads(line, parse_int=_whole, **options)
