"""Coverage-guided fuzzing of the feed parsers (atheris, libFuzzer's engine), bounded in time.

    .venv/bin/python bench/fuzz_parse.py [--seconds 60] [--target feed|trends|page|all] [--corpus DIR]

Each input is handed to ``parse_feed`` (every kind), ``parse_trends`` and ``parse_page`` as the collector
would: anything but ``FeedMalformed`` is a crash, and so is an entry with unclean or over-long text, a date
out of range or a link that cannot be read. The seed corpus is every recorded and hostile fixture of
``tests/fixtures``. At the end it prints how many inputs ran, how many were read as feeds and how many
refused, and where libFuzzer left a crashing input if it found one (exit status 1). Not part of
``make test``: it is a bounded search, not a check with a fixed answer.

atheris ships wheels for CPython up to 3.11 on Linux x86-64; without it the script says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SEEDS = [ROOT / "tests" / "fixtures" / "feeds", ROOT / "tests" / "fixtures" / "hostile",
         ROOT / "tests" / "fixtures" / "pages", ROOT / "mynawatch" / "sample" / "feeds"]
KINDS = ("feed", "google_news", "hatena", "mastodon", "yahoo")
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff\ud800-\udfff]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--target", choices=("feed", "trends", "page", "all"), default="all")
    parser.add_argument("--corpus", type=Path, help="a corpus folder to keep between runs (default: a temporary one)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        return _child(args.target, args.stats, rest)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install -c requirements.lock atheris); nothing was fuzzed",
              file=sys.stderr)
        return 2
    return _parent(args)


def _parent(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="mynawatch-fuzz-"))
    corpus = args.corpus or work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = 0
    for folder in SEEDS:
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.is_file() and path.suffix in (".xml", ".rdf", ".atom", ".html") and path.stat().st_size < 200_000:
                shutil.copy(path, corpus / f"seed-{folder.name}-{path.name}")
                seeds += 1
    stats = work / "stats.json"
    command = [sys.executable, __file__, "--child", "--target", args.target, "--stats", str(stats),
               f"-max_total_time={args.seconds}", "-timeout=20", "-rss_limit_mb=3072", "-max_len=65536",
               f"-artifact_prefix={work}/", "-print_final_stats=1", str(corpus)]
    started = time.monotonic()
    print(f"fuzzing {args.target} for {args.seconds} s from {seeds} seed files; corpus {corpus}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    seconds = time.monotonic() - started
    counts = json.loads(stats.read_text()) if stats.exists() else {}
    crashes = sorted(p for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    runs = next((m.group(1) for m in re.finditer(r"Done (\d+) runs", done.stderr)), "?")
    print(f"ran {runs} inputs in {seconds:.0f} s; of the first {counts.get('runs', 0)}: {counts.get('read', 0)} read "
          f"as feeds or pages ({counts.get('entries', 0)} entries), {counts.get('refused', 0)} refused as malformed; "
          f"corpus now {len(list(corpus.iterdir()))} files")
    for line in done.stderr.splitlines():
        if line.startswith(("stat::", "Done ")):
            print("  libFuzzer", line)
    if crashes or done.returncode != 0:
        print(f"CRASH (exit status {done.returncode}); inputs kept: {', '.join(map(str, crashes)) or 'none'}")
        tail = [line for line in done.stderr.splitlines() if "Error" in line or "Traceback" in line or "  File" in line]
        print("\n".join(tail[-30:]))
        return 1
    print("no crash")
    return 0


def _child(target: str, stats_path: Path, libfuzzer_args: list[str]) -> int:
    import atheris

    with atheris.instrument_imports():
        from collector.errors import FeedMalformed
        from collector.kinds import KINDS as REGISTRY
        from collector.page import parse_page
        from collector.parse import parse_feed, parse_trends
        from collector.policy import TextLimits
        from collector.sanitize import EARLIEST, LATEST, MAX_URL
    from datetime import datetime, timezone
    from urllib.parse import urlsplit

    now = datetime(2024, 10, 16, tzinfo=timezone.utc)
    limits = TextLimits(title=120, summary=1000, body=5000)
    counts = {"runs": 0, "read": 0, "refused": 0, "entries": 0}

    def check(entries) -> None:
        for e in entries:
            for text in (e.title, e.summary, e.url, e.guid or "", e.publisher or "", e.date_note or ""):
                if UNSAFE.search(text):
                    raise AssertionError(f"unsafe character kept: {text[:80]!r}")
            if len(e.title) > limits.title or len(e.summary) > limits.summary or len(e.url) > MAX_URL:
                raise AssertionError("text over its cap")
            if "\n" in e.title:
                raise AssertionError("a title on two lines")
            if e.published is not None and not EARLIEST <= e.published < LATEST:
                raise AssertionError(f"date out of range kept: {e.published}")
            urlsplit(e.url).port  # noqa: B018 (raises on an unreadable link)

    def one_input(data: bytes) -> None:
        counts["runs"] += 1
        choice, body = (data[0] if data else 0), data[1:]
        targets = {"feed": ["feed"], "trends": ["trends"], "page": ["page"]}.get(target, ["feed", "trends", "page"])
        what = targets[choice % len(targets)]
        try:
            if what == "feed":
                entries = parse_feed(body, url="https://fuzz.example/feed", rules=REGISTRY[KINDS[choice % len(KINDS)]].items,
                                     now=now, limits=limits)
                check(entries)
            elif what == "trends":
                entries = parse_trends(body, url="https://fuzz.example/trends", now=now, limits=limits)
                for t in entries:
                    if UNSAFE.search(t.term) or len(t.term) > limits.title:
                        raise AssertionError(f"unsafe trend term {t.term[:80]!r}")
            else:
                entries = parse_page(body, url="https://fuzz.example/news", now=now, limits=limits).entries
                check(entries)
            counts["read"] += 1
            counts["entries"] += len(entries)
        except FeedMalformed:
            counts["refused"] += 1
        if counts["runs"] % 25 == 0:  # libFuzzer ends the process with exit(): no finally runs then
            stats_path.write_text(json.dumps(counts))

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    try:
        atheris.Fuzz()
    finally:
        stats_path.write_text(json.dumps(counts))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
