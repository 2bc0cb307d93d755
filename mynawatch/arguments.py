"""How the command line reads what is typed on it: whole numbers in ASCII digits only; errors that quote a
typed value quote its first characters."""

from __future__ import annotations

import argparse
import re

QUOTED = 40  # characters of a typed value quoted back in a usage error
QUOTED_SETTING = 120  # ... in the line of any other error (a URL from the settings stays whole)
MOST_DIGITS = 100  # far past any id, count or limit the store holds (64 bits: 19 digits)


class Parser(argparse.ArgumentParser):
    """argparse's parser (subcommands' parsers too), whose errors quote a long value by its start: a value
    of thousands of characters was echoed whole in the one line that says what is wrong."""

    def error(self, message: str):
        message = short_quotes(message)
        super().error(message if len(message) <= 400 else message[:400] + "…")  # a value quoted in "…"


def short_quotes(message: str, most: int = QUOTED) -> str:
    """``message`` with each value quoted in it ('…') longer than ``most`` characters cut to its first ``most``."""
    return re.sub(r"'([^'\n]{%d,})'" % (most + 1), lambda m: f"'{m.group(1)[:most]}…'", message)


def whole_number(text: str) -> int:
    """A whole number as a person types it: ASCII digits with an optional sign (spaces around are fine).
    int() also read 1_0 as 10 and full-width or Arabic-Indic digits as numbers, so a typo named another
    item; and it refused more than 4300 digits with its own words."""
    typed = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", typed):
        raise argparse.ArgumentTypeError(f"{_quoted(text)}: expected a whole number in digits 0-9")
    if len(typed.lstrip("+-")) > MOST_DIGITS:
        raise argparse.ArgumentTypeError(f"{_quoted(text)}: a number of {len(typed.lstrip('+-')):,} digits, past any "
                                         "id or count")
    return int(typed)


def _quoted(text: str) -> str:
    return repr(text[:QUOTED] + "…" if len(text) > QUOTED else text)
