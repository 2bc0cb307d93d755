"""``python -m collector.streams --config mynawatch.toml``: read the configured streams until SIGINT or
SIGTERM (what was read is stored first). ``mynawatch run`` runs them too, beside the other jobs; this is
the stream reader alone (for a machine of its own, or to watch a new stream's first minutes)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from mynawatch.settings import SettingsError, load_settings
    from store.db import make_sessions

    from collector.streams.runner import run_streams

    parser = argparse.ArgumentParser(prog="python -m collector.streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("mynawatch.toml"), help="settings file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"mynawatch: {exc}", file=sys.stderr)
        return 1
    streams = [s for s in settings.streams if not s.paused]
    if not settings.streams:
        print(f"mynawatch: {args.config} has no [[streams]]", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"mynawatch: reading {len(streams)} stream(s); Ctrl-C to stop", flush=True)
    run_streams(settings.streams, make_sessions(settings.database_url), stop=stop, policy=settings.collect,
                lease=timedelta(seconds=settings.schedule.lease_seconds))
    print("mynawatch: streams stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
