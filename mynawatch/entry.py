"""The installed `mynawatch` command: Ctrl-C while the program is still loading its libraries (the first
second of every command) ends it as Ctrl-C at any later point does, one line and status 130, not a
traceback from inside an import."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    def interrupted(_signum, _frame):
        sys.stderr.write("mynawatch: interrupted\n")
        raise SystemExit(130)

    previous = signal.signal(signal.SIGINT, interrupted)
    from mynawatch.cli import main as command  # the slow part: settings, store, reports

    signal.signal(signal.SIGINT, previous)  # from here on, cli.main turns KeyboardInterrupt into the same line
    return command()
