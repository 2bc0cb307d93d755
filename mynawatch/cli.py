"""The `mynawatch` command line."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import stat
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from mynawatch import __version__
from mynawatch.arguments import QUOTED_SETTING, Parser, short_quotes, whole_number
from mynawatch.settings import Settings, SettingsError, load_settings
from store.clean import clean_text, one_line
from store.locks import AlreadyRunning, StoreBusy

TEMPLATE = Path(__file__).parent / "templates" / "mynawatch.toml"


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _settings(args) -> Settings:
    path = _settings_path(args)
    if path is None:
        raise UserError("no mynawatch.toml here: run `mynawatch init` first, or pass --config PATH")
    return load_settings(path)


def _settings_path(args) -> Path | None:
    """The settings file of the command: --config whenever it is given (even empty, or missing: reading it
    says what is wrong; a typo in it was ignored by the commands that can run without settings), else
    ./mynawatch.toml when it is there, else None."""
    if args.config is not None:
        return Path(args.config)
    path = Path("mynawatch.toml")
    return path if _there(path) else None


def _there(path: Path) -> bool:
    """Whether ``path`` exists; True when that cannot be told (a folder this user may not enter), so that
    reading it names the trouble."""
    try:
        return path.exists()
    except OSError:
        return True


def _now() -> datetime:
    from store.clock import now

    return now()


def cmd_init(args) -> int:
    path = Path(args.path)
    _typed_path(path, "--path")
    if path.exists() and not args.force:
        raise UserError(f"{path} already exists (use --force to overwrite)")
    _only_a_file(path)
    _write_whole(path, TEMPLATE.read_bytes())
    print(f"wrote {one_line(str(path))}: edit the sources and [smtp], then `mynawatch collect` or `mynawatch run`")
    return 0


def _typed_path(path: Path, option: str) -> None:
    """A UserError (bad input, status 2) for a typed path that cannot name a new file: a folder that is not
    there, a name longer than the system takes. They were reported as a failing disk, status 1."""
    _not_too_long(path, option)
    where = f"{option} {str(path)!r}"  # quoted: main() cuts a long one to its start
    try:
        os.stat(path.parent)
    except FileNotFoundError:
        raise UserError(f"{where}: no folder {str(path.parent)!r}: make it first, or give another path") from None
    except NotADirectoryError:
        raise UserError(f"{where}: a part of the path is a file, not a folder") from None
    except OSError:
        return  # a folder this user may not enter: writing names the trouble
    if not path.parent.is_dir():
        raise UserError(f"{where}: {str(path.parent)!r} is not a folder")


def _shown_value(value: str, most: int = 120) -> str:
    """A typed value quoted on one line, cut to its first ``most`` characters (a query of 100,000 was echoed)."""
    text = one_line(value)
    return repr(text) if len(text) <= most else repr(text[:most]) + f"… ({len(text)} characters)"


def _not_too_long(path: Path, what: str) -> None:
    """A UserError (bad input, status 2) for a typed path the system cannot take, too long as a whole or in one
    of its names (it was reported as a failing disk, status 1)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise UserError(f"{what} {_shown_value(str(path))}: the path or a name in it is too long for this system: "
                            "give a shorter one") from None


def _not_the_store(target: Path, url: str) -> None:
    """Refuse a backup written over the store itself or a file of its own (its -wal, -shm and -journal files,
    its locks): with --force the live store was replaced by a new file while a running scheduler went on
    writing to the old, deleted one."""
    from store.locks import store_file

    store = store_file(url)
    if store is None:
        return
    own = [store, *(store.with_name(store.name + end) for end in ("-wal", "-shm", "-journal", "-open.lock",
                                                                   "-run.lock"))]
    for path in own:
        try:
            same = os.path.samefile(target, path)
        except OSError:  # one of them is not there (or cannot be looked at): compare the names
            same = os.path.abspath(target) == os.path.abspath(path)
        if same:
            raise UserError(f"db backup {one_line(str(target))[:120]!r}: that is "
                            f"{'the store itself' if path == store else 'a file of the store (' + path.name + ')'}: "
                            "write the backup somewhere else")


def _only_a_file(path: Path) -> None:
    """--force replaces a file, never a folder, a device (/dev/null) or a pipe: the rename would put a plain
    file in its place."""
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, a pipe or a socket)"
        raise UserError(f"{path} is {kind}: give the path of a file (--force replaces only a file)")


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it: a full or read-only disk leaves the old
    file (or none) and no temporary file behind."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        _remove(tmp)
        exc.filename = str(path)  # the file meant, not its temporary name
        raise


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError:  # a read-only folder: the file was never made
            pass


def _pipeline(args):
    from mynawatch.pipeline import Pipeline

    return Pipeline(_settings(args))


def cmd_collect(args) -> int:
    with _pipeline(args) as pipeline:
        if not pipeline.settings.sources:
            raise UserError("no [[sources]] in the settings file: nothing to collect")
        now = _now()
        outcomes = pipeline.collect(now=now, force=args.force, progress=_progress_here())
        pages = pipeline.fetch_articles(now=now)
    failed = waiting = 0
    for o in outcomes:
        detail = o.error if o.error else f"{o.new_items} new"
        print(f"{one_line(o.source):30} {o.outcome:13} {one_line(detail)}")
        failed += o.outcome in ("failed", "offline")
        waiting += o.outcome == "waiting"
    tried = len(outcomes) - waiting
    print(f"{tried - failed} of {tried} sources answered"
          + (f"; {waiting} backing off (--force fetches them anyway)" if waiting else ""))
    if any(pages.values()):
        print(f"article pages: {pages['ok']} read, {pages['failed']} failed, {pages['refused']} refused")
    return 0 if failed < tried or tried == 0 else 1


def _progress(done: int, total: int, step: str = "") -> None:
    """A progress line on stderr: a bar when the total is known; with total 0, ``done`` is the seconds
    elapsed, and total -1 ends such a step. Pass it only when stderr is a terminal (``_progress_here``)."""
    label = f"{step} " if step else ""
    if total <= 0:
        print(f"\r{label}... {done} s ", end="", file=sys.stderr, flush=True)
    else:
        width = 30
        filled = width * done // total
        print(f"\r{label}[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)
    if total < 0 or 0 < total <= done:
        print(file=sys.stderr)


def _progress_here():
    """``_progress`` on a terminal; nothing in pipes and logs."""
    return _progress if sys.stderr.isatty() else None


def cmd_classify(args) -> int:
    with _pipeline(args) as pipeline:
        done = pipeline.classify(now=_now(), everything=args.all, progress=_progress_here())
    if done.retrained:
        r = done.retrained
        print(f"the served model {r.previous} could not be used (a new classifier, corpus or an emptied "
              f"cache): retrained on the corpus and {r.corrections} correction(s), {r.tagged} items "
              f"re-tagged with {done.model_version} in one transaction")
    print(f"tagged {done.items} items and {done.trends} trend terms with model {done.model_version}; "
          f"{done.indexed} items added to the search index")
    return 0


def cmd_report(args) -> int:
    from mynawatch.incidents_cmd import cmd_monthly_report
    from store.clock import today, typed_day, typed_form

    settings = _settings(args)
    if args.out:
        _check_out_folder(args.out)
    if args.month:
        return cmd_monthly_report(args, settings, user_error=UserError)
    try:
        day = typed_day(args.date) if args.date else today() - timedelta(days=1)
    except ValueError:
        raise UserError(f"--date {args.date!r}: expected {typed_form('YYYY-MM-DD')}") from None
    if args.send and not settings.smtp.recipients:
        raise UserError("--send: no recipients in [smtp] of the settings file")
    with _pipeline(args) as pipeline:  # a full or read-only folder: main() names it
        files = pipeline.write_report(day=day, now=_now(), out_dir=Path(args.out) if args.out else None,
                                      send=args.send)
    for kind, path in files.paths.items():
        print(f"{kind:6} {one_line(str(path))}")  # one line per file, whatever the folder's name holds
    return _print_delivery(files.delivery, queued=files.queued) if args.send else 0


def _check_out_folder(out: str) -> None:
    """Refuse, as bad input, an --out that is or runs through something other than a folder (a file, a
    pipe, a device): the report's files go into a folder, made when missing."""
    path = Path(out)
    _not_too_long(path, "--out")
    for place in (path, *path.parents):
        try:
            mode = place.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # made when the report is written, or a parent below is not a folder: found on the way up
        except OSError:
            return  # cannot be told here (a folder this user may not enter): writing names the trouble
        if not stat.S_ISDIR(mode):
            what = "is not a folder" if place == path else f"runs through {place}, which is not a folder"
            raise UserError(f"--out {out}: {what}: name a folder for the report's files")
        return


def _print_delivery(delivery, *, queued: int | None = None) -> int:
    if queued is not None:
        print(f"queued {queued} new message(s) (a day's digest goes to each recipient once)")
    for line in delivery.sent:
        print(f"sent   {one_line(line)}")
    for line in delivery.failed:
        print(f"retry  {one_line(line)}  (kept in the outbox; `mynawatch run` retries, or `mynawatch alerts deliver`)")
    for line in delivery.gave_up:
        print(f"failed {one_line(line)}  (refused by the server; see `mynawatch alerts outbox`)")
    if not (delivery.sent or delivery.failed or delivery.gave_up or getattr(delivery, "held", None)):
        print("nothing to deliver: no notification in the outbox is due")
    return 1 if delivery.gave_up else 0


LIST_FORMATS = ("text", "json", "jsonl")
LIST_FORMAT_HELP = "text (default), json (one JSON document) or jsonl (one JSON object per line)"


def _print_json(value, fmt: str = "json") -> None:
    """One JSON document on one line of standard output (``jsonl``: a list as one object per line);
    times in Tokyo time with their offset."""
    if fmt == "jsonl" and isinstance(value, (list, tuple)):
        for row in value:
            _print_json(row)
        return
    from dataclasses import asdict, is_dataclass

    from store.clock import tokyo
    from store.sql import safe_json

    def plain(v):
        if is_dataclass(v) and not isinstance(v, type):
            return plain(asdict(v))
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, datetime):
            return tokyo(v).isoformat(timespec="seconds")
        if hasattr(v, "item"):  # a NumPy number
            return v.item()
        return v

    print(safe_json(plain(value)))  # control characters and bidi overrides escaped, nothing lost


def _shown(when: datetime) -> str:
    """A time for a person: Tokyo date, hour and offset (2024-10-02 09:00 +09:00)."""
    from store.clock import shown

    return shown(when)


def cmd_alerts(args) -> int:
    with _pipeline(args) as pipeline:
        return _alerts(args, pipeline)


def _alerts(args, pipeline) -> int:
    from dataclasses import asdict

    from reports.notices import alert_line
    from store import alerts as store_alerts
    from store import notifications as store_out

    sessions = pipeline.sessions
    if args.action in ("list", "outbox") and not 1 <= args.limit <= 100_000:
        raise UserError(f"--limit {args.limit}: expected a whole number of at least 1, at most 100,000")
    if args.action == "check":
        now = _now()
        events = pipeline.check_alerts(now=now, deliver=False)
        for e in events:
            print(f"{e.kind:8} {alert_line(e.alert)}")
        print(_check_summary(sessions, events, now=now))
    if args.action in ("check", "deliver"):
        return _print_delivery(pipeline.deliver(now=_now()))
    with sessions.begin() as session:
        if args.action == "list":
            alerts = store_alerts.all_alerts(session, limit=args.limit)
            if args.format != "text":
                _print_json([{**asdict(a), "line": alert_line(a)} for a in alerts], args.format)
                return 0
            for a in alerts:
                print(f"{a.status:9} {a.dedup_key:40} {alert_line(a)}")
            if not alerts:
                print("no alerts yet (`mynawatch alerts check` evaluates now)")
        else:
            sent = store_out.notifications(session, limit=args.limit)
            if args.format != "text":
                _print_json(sent, args.format)
                return 0
            for n in sent:
                print(f"{n.id:5} {n.status:8} {n.attempts:2}x {n.channel:7} {one_line(n.target)[:40]:40} {one_line(n.subject)[:60]}"
                      + (f"  [{one_line(n.last_error)}]" if n.last_error else ""))
            if not sent:
                print("the outbox is empty: no notification has been queued")
    return 0


def _check_summary(sessions, events, *, now: datetime) -> str:
    """What `alerts check` looked at and, when nothing fired, why."""
    from collections import Counter

    from reports.jobs import RECORD_WINDOW
    from store import alerts as store_alerts
    from store.records import Service

    with sessions.begin() as session:
        recent = store_alerts.recent_alerts(session, now - RECORD_WINDOW)
    states = Counter(a.status for a in recent)
    head = (f"{len(events)} notification event(s); evaluated {len(Service)} services over the "
            f"{RECORD_WINDOW // timedelta(hours=1)} hours ending {_shown(now)}")
    if events:
        return head + f": {states.get('firing', 0)} alert(s) firing"
    head += ": "
    why = {"firing": "firing already (notified before)", "pending": "above the threshold, not yet for long enough",
           "inhibited": "held back by a maintenance window", "resolved": "over (resolved)"}
    parts = [f"{n} {why[k]}" for k, n in sorted(states.items()) if k in why]
    return head + ("nothing new to notify: " + "; ".join(parts) if parts else "no series above its threshold")


def _when(text: str, option: str) -> datetime:
    """An ISO 8601 time; without an offset it is Tokyo time."""
    from store.clock import parse_local, typed_form

    try:
        return parse_local(text)
    except ValueError:
        raise UserError(f"{option} {text!r}: expected {typed_form('a time like 2024-10-12T06:00')} (Tokyo time, "
                        "or with an offset)") from None


def _duration(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isascii() or not text[:-1].isdigit():
        raise UserError(f"--for {text!r}: expected a number and m, h or d (90m, 6h, 2d)")
    if len(text) > 12 or timedelta(**{units[text[-1]]: int(text[:-1])}) > MAX_SILENCE:
        raise UserError(f"--for {text!r}: at most {MAX_SILENCE.days} days")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


MAX_SILENCE = timedelta(days=10 * 366)  # --for: far below what a time in the typed years can take added


def cmd_silence(args) -> int:
    from store import alerts as store_alerts
    from store.db import make_sessions
    from store.records import Service

    sessions = make_sessions(_settings(args).database_url)
    now = _now()
    with sessions.begin() as session:
        if args.action == "add":
            known = [str(s) for s in Service] + ["collection", "*"]
            if args.service not in known:
                raise UserError(f"{args.service!r}: not a service code ({', '.join(known)})")
            start = _when(args.start, "--from") if args.start else now
            end = _when(args.until, "--until") if args.until else start + _duration(args.duration or "6h")
            if end <= start:
                raise UserError("the silence would end before it starts")
            sid = store_alerts.add_silence(session, service=args.service, starts_at=start, ends_at=end,
                                           comment=args.comment or "", created_by=os.environ.get("USER", ""), now=now)
            print(f"silence {sid}: {args.service} until {_shown(end)}")
        elif args.action == "expire":
            if not 0 < args.id < 2**63 or not store_alerts.expire_silence(session, args.id, now=now):
                raise UserError(f"no silence {args.id} in force")
            print(f"silence {args.id} ended")
        else:
            silences = store_alerts.silences(session, now=now, include_expired=args.all)
            if args.format != "text":
                _print_json(silences, args.format)
                return 0
            for sil in silences:
                print(f"{sil.id:4} {sil.service:20} {_shown(sil.starts_at)} → {_shown(sil.ends_at)}  "
                      f"{one_line(sil.comment)}")
            if not silences:
                print("no silences" + ("" if args.all else " in force or to come (--all for expired ones)"))
    return 0


MiB = 1 << 20
TAG_MAX_BYTES = 1024 * MiB  # `tag`: about 200,000 articles of 5 KB; read a line at a time
COUNTS_MAX_BYTES = 64 * MiB  # `spikes detect`: past the 2,000,000 series-hours one run scans (35 bytes a line)
EVALUATE_MAX_BYTES = 64 * MiB  # `classifier evaluate`'s files, read whole: nine times the corpus
LINE_MAX_BYTES = MiB  # a line of an evaluate file, as a line of `tag`


def _read_counts(path: str):
    from reports.countfile import CountFileError, read_counts

    if path == "-":  # capped as a file is: /dev/zero on standard input was read for ever
        fh = _Capped(_stdin_bytes(), limit=COUNTS_MAX_BYTES, name="standard input", grew="")
    else:  # bytes: each line decoded on its own, a bad one named by its number
        fh = _open_input(path, "a CSV file", limit=COUNTS_MAX_BYTES)
    try:
        return read_counts(fh, name="standard input" if path == "-" else path)
    except CountFileError as exc:
        raise UserError(str(exc)) from None
    finally:
        if path != "-":
            fh.close()


def _stdin_bytes():
    """Standard input as bytes, or a UserError when it is closed (`<&-`)."""
    if sys.stdin is None:
        raise UserError("standard input is closed: pipe the file in, or give its path instead of -")
    return sys.stdin.buffer


def _open_input(path: str, kind: str, *, limit: int, name: str | None = None, stdin: bool = True):
    """``path`` opened for reading bytes, or a UserError that says why it cannot be (``kind``: what it should
    be; ``name``: how the message names it, by default the path; ``stdin``: whether - reads standard input).
    Only a regular file of at most ``limit`` bytes: a pipe nobody writes to is waited on for ever, a device
    (/dev/zero) never ends, and a file still growing is refused once it passes the limit."""
    name = name or path
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device is not even opened: some act when opened
            raise UserError(_not_a_file(path, name, kind, stdin))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe put in its place meanwhile: no wait to open it
    except FileNotFoundError:
        raise UserError(f"{name}: no such file") from None
    except NotADirectoryError:
        raise UserError(f"{name}: no such file (a part of the path is a file, not a folder)") from None
    except PermissionError:
        raise UserError(f"{name}: not allowed to read it") from None
    except OSError as exc:  # a loop of links, a name too long, a disk that fails
        raise UserError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        raise UserError(_too_large(name, limit) if stat.S_ISREG(info.st_mode) else _not_a_file(path, name, kind, stdin))
    os.set_blocking(fd, True)
    return _Capped(os.fdopen(fd, "rb"), limit=limit, name=name)


def _not_a_file(path: str, name: str, kind: str, stdin: bool) -> str:
    if os.path.isdir(path):
        return f"{name}: a folder, not {kind}"
    return (f"{name}: not a regular file (a device, a pipe or a socket): give {kind}"
            + (", or - to read standard input" if stdin else ""))


def _too_large(name: str, limit: int) -> str:
    units = ((1 << 30, "GiB"), (MiB, "MiB"), (1024, "KiB"), (1, "bytes"))
    size = next(f"{limit // unit} {word}" for unit, word in units if limit % unit == 0)
    return f"{name}: larger than {size}, the limit for this command: split it and run it on each part"


class _Capped:
    """A binary file read by lines that stops with a UserError past ``limit`` bytes (a file still being written)."""

    def __init__(self, fh, *, limit: int, name: str, grew: str = " (it grew while read)"):
        self._fh, self._left, self._name, self._limit, self._grew = fh, limit, name, limit, grew

    def readline(self, size: int = -1) -> bytes:
        line = self._fh.readline(size)
        self._left -= len(line)
        if self._left < 0:
            raise UserError(_too_large(self._name, self._limit) + self._grew)
        return line

    def close(self) -> None:
        self._fh.close()


def _check_text_input(path: str, flag: str, kind: str, *, limit: int = EVALUATE_MAX_BYTES) -> None:
    """Refuse at once, in one line, a file an evaluate reader would read whole: not a regular file, over
    ``limit``, a line over LINE_MAX_BYTES or not UTF-8 (named by its number)."""
    fh = _open_input(path, kind, limit=limit, name=f"{flag} {path}", stdin=False)
    try:
        number = 0
        while line := fh.readline(LINE_MAX_BYTES + 1):
            number += 1
            if len(line) > LINE_MAX_BYTES and not line.endswith(b"\n"):
                raise UserError(f"{flag} {path}: line {number}: longer than {LINE_MAX_BYTES // MiB} MiB")
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{flag} {path}: line {number}: not UTF-8 (byte 0x{line[exc.start]:02x} at column "
                                f"{exc.start + 1})") from None
    finally:
        fh.close()


def cmd_spikes(args) -> int:
    from reports.countfile import detect_in_counts, episode_json, write_counts
    from reports.notices import TOKYO

    path = _settings_path(args)
    settings = load_settings(path) if path is not None else Settings()
    if args.action == "detect":
        series, zone = _read_counts(args.path)
        for ep in detect_in_counts(series, params=settings.spikes, per_service=dict(settings.spikes_for)):
            print(episode_json(ep, zone))
        return 0
    from mynawatch.serving import served_version
    from reports.archive import day_bounds
    from reports.countfile import MAX_SPAN
    from store import signals as store_signals
    from store.clock import typed_day, typed_form
    from store.db import make_sessions
    from store.records import Service

    days = []
    for option, text in (("--since", args.since), ("--until", args.until)):
        try:
            days.append(typed_day(text))
        except ValueError:
            raise UserError(f"{option} {text!r}: expected {typed_form('YYYY-MM-DD')} (a Tokyo day)") from None
    start, end = day_bounds(days[0])[0], day_bounds(days[1])[1]
    if end - start > MAX_SPAN:  # the file `spikes detect` reads back
        raise UserError(f"--since {args.since} to --until {args.until}: at most {MAX_SPAN.days} days at once")
    codes = [str(s) for s in Service]
    for code in args.service or ():
        if code not in codes:
            raise UserError(f"--service {code!r}: not a service code ({', '.join(codes)})")
    sessions = make_sessions(_settings(args).database_url)
    with sessions.begin() as session:
        series = store_signals.hourly_signal(session, served_version(sessions), start, end, args.signal)
    services = args.service or sorted(series) or ["portal"]
    write_counts({s: series.get(s, {}) for s in services}, sys.stdout, zone=TOKYO, start=start, end=end)
    return 0


def cmd_run(args) -> int:
    from mynawatch.scheduler import run_forever
    from store.dialect import dialect_for

    settings = _settings(args)
    if args.role != "all" and dialect_for(settings.database_url).name == "sqlite":
        raise UserError(f"--role {args.role}: roles need a PostgreSQL store shared by several processes "
                        "(docs/scale-out.md); a SQLite store runs as one process: `mynawatch run`")
    run_forever(settings, role=args.role)  # a second `run` on a SQLite store: AlreadyRunning, one line in main()
    return 0


def cmd_demo(args) -> int:
    from mynawatch.demo import DAYS, DemoFolderError, describe, run_demo

    if not 1 <= args.days <= DAYS:  # the sample month: past it the demo collected empty hours for ever
        raise UserError(f"--days {args.days}: the sample month has 1 to {DAYS} days")
    started = time.monotonic()
    try:
        result = run_demo(Path(args.out), days=args.days)
    except DemoFolderError as exc:
        raise UserError(str(exc)) from None
    print(describe(result))
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def cmd_tag(args) -> int:
    from classifier.batch import tag_lines

    # the file first: a bad path is named before the model loads
    fh = _stdin_bytes() if args.path == "-" else _open_input(args.path, "a JSONL file", limit=TAG_MAX_BYTES)
    try:
        result = tag_lines(_model_for(args), fh, sys.stdout)
    finally:
        if args.path != "-":
            fh.close()
    if result.refused:
        print(f"mynawatch tag: {result.summary()}", file=sys.stderr)
        return 1
    return 0


def _store_sessions(args):
    """The store of the settings file, or None when there is no settings file."""
    from store.db import make_sessions

    path = _settings_path(args)
    return make_sessions(load_settings(path).database_url) if path is not None else None


def _model_for(args):
    """With a settings file, the model its store serves (when it can be loaded); else the corpus model."""
    from mynawatch.serving import current_model

    return current_model(_store_sessions(args), progress=_progress_here())


def _test_split():
    from classifier.corpus import load_corpus

    return [e for e in load_corpus() if e.split == "test"]


def cmd_classifier_train(args) -> int:
    from classifier.cache import load_or_train
    from mynawatch.serving import served

    started = time.monotonic()
    sessions = _store_sessions(args)
    serving = served(sessions) if sessions else None
    model = load_or_train(force=args.force, progress=_progress_here(), keep=[serving.model_key] if serving else [])
    print(f"model {model.version}: {model.info.get('examples', '?')} examples, seed {model.info.get('seed')}, "
          f"ready in {time.monotonic() - started:.1f} s")
    if serving and serving.model_version != model.version:
        print(f"the store serves {serving.model_version}; `mynawatch classifier retrain` trains on the corpus and "
              "its corrections and switches it")
    return 0


def cmd_classifier_retrain(args) -> int:
    started = time.monotonic()
    with _pipeline(args) as pipeline:
        result = pipeline.retrain(now=_now(), force=args.force, progress=_progress_here())
    if not result.changed:
        print(f"model {result.model.version} already serves the store and learned from its {result.corrections} "
              "correction(s): nothing to do (--force retrains anyway)")
        return 0
    was = f" (was {result.previous})" if result.previous and result.previous != result.model.version else ""
    print(f"model {result.model.version}: corpus + {result.corrections} correction(s); serves {result.tagged} items "
          f"now{was}; done in {time.monotonic() - started:.0f} s")
    return 0


def cmd_classifier_evaluate(args) -> int:
    from classifier.corpus import CorpusError, read_examples
    from classifier.evaluate import evaluate, pin_floors, read_floors, render_evaluation

    for flag, given, kind in (("--gold", args.gold, "a JSONL file of labeled items"),
                              ("--real-check", args.real_check, "a TSV file of labeled URLs"),
                              ("--real-texts", args.real_texts, "a JSONL file of texts")):
        if given:  # a --real-check named is meant: a typo must not read as a real check of no items
            _check_text_input(given, flag, kind)
    try:  # the files first: a bad one is named before the model loads
        gold = _json_lines("--gold", args.gold, read_examples) if args.gold else _test_split()
        real = _real_check_examples(args)
    except (CorpusError, FileNotFoundError, UnicodeDecodeError) as exc:
        raise UserError(str(exc)) from None
    if not gold:
        raise UserError(f"--gold {args.gold}: no labeled item in it (one JSON object per line)")
    for e in gold:
        if not isinstance(e.title, str) or not isinstance(e.text, str):
            raise UserError(f"--gold {args.gold}: item {one_line(e.id)[:80]!r}: title and text must be strings")
    model = _model_for(args)
    ev = evaluate(gold, model.predict([(e.title, e.text) for e in gold]))
    floors = read_floors()
    below = [k for k, v in ev.headline.items() if not args.gold and k in floors and v < floors[k]]
    if args.format == "json":
        if args.pin:
            raise UserError("--pin prints the floors it pins: leave out --format json")
        seen, total = real
        _print_json({"model": model.version, "gold": args.gold or "test split", "items": ev.n,
                     "headline": ev.headline, "floors": {} if args.gold else floors, "below_floors": below,
                     "evaluation": ev, "real_check": {
                         "visible": len(seen), "total": total,
                         "evaluation": evaluate(seen, model.predict([(e.title, e.text) for e in seen])) if seen else None}})
        return 1 if below else 0
    print(f"model {model.version} on {'the test split' if not args.gold else one_line(args.gold)}")
    print(render_evaluation(ev, floors=None if args.gold else floors), end="")
    seen, total = real
    print(f"\n== real check: {len(seen)} of {total} labeled published item(s) visible "
          f"({'their URLs in the store' + (' or in ' + args.real_texts if args.real_texts else '')})")
    if seen:
        print(render_evaluation(evaluate(seen, model.predict([(e.title, e.text) for e in seen]))), end="")
    if args.pin:
        if args.gold:
            raise UserError("--pin only applies to the test split")
        print("pinned floors:", pin_floors(ev))
        return 0
    return 1 if below else 0


def _json_lines(flag: str, path: str, read):
    """``read(Path(path))`` of a JSON-lines file given as ``flag``: a line nested past what json parses is named
    in one line, not a RecursionError."""
    try:
        return read(Path(path))
    except RecursionError:  # json counts its depth: a line of 200,000 "[" ends here
        raise UserError(f"{flag} {path}: a line nests arrays or objects too deeply (not a JSON object)") from None


def _real_check_examples(args):
    """The real check's items whose text can be seen (in the store, or in --real-texts), and how many
    items the real check holds."""
    from classifier.realcheck import REAL_CHECK, read_real_check, read_texts, visible

    path = Path(args.real_check) if args.real_check else REAL_CHECK
    if not path.exists():  # a checkout without the shipped file (a --real-check named was checked before)
        return [], 0
    items = read_real_check(path)
    texts = _json_lines("--real-texts", args.real_texts, read_texts) if args.real_texts else {}
    config = _settings_path(args)
    if config is not None:
        from store.db import make_sessions
        from store.items import texts_by_url

        sessions = make_sessions(load_settings(config).database_url)
        with sessions.begin() as session:
            texts = texts_by_url(session, [i.url for i in items if i.url not in texts]) | texts
    return visible(items, texts), len(items)


def cmd_classifier_explain(args) -> int:
    import json

    from classifier.model import explain

    model = _model_for(args)
    out = explain(model, args.title, args.text or "")
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    lab = out["label"]
    print(f"relevant: {lab['relevant']} (p={lab['scores']['relevant']['p']:.3f})")
    print(f"services: {', '.join(lab['services']) or '-'}   top: {lab['scores']['services']}")
    print(f"cause: {lab['cause']} ({lab['scores']['cause']['confidence']:.3f})   "
          f"sentiment: {lab['sentiment']} ({lab['scores']['sentiment']['confidence']:.3f})")
    if lab["scores"]["low_confidence"]:
        print(f"below the confidence floor: {', '.join(lab['scores']['low_confidence'])}")
    print(f"rules fired: {', '.join(out['rules']) or '-'}")
    print(f"tokens: {' '.join(out['tokens'])}")
    if out["hashtags"]:
        print(f"hashtag tokens (apart from the prose): {' '.join(out['hashtags'])}")
    for axis, pairs in out["drivers"].items():
        print(f"{axis}: " + ", ".join(f"{name} {value:+.2f}" for name, value in pairs))
    return 0


def cmd_label(args) -> int:
    from classifier.jobs import human_label
    from mynawatch.serving import ServedVersion
    from store.db import make_sessions

    settings = _settings(args)
    if not 0 < args.item < 2**63:  # not an id the store can hold
        raise UserError(f"no item {args.item} in the store")
    if args.relevant is None and args.service is None and args.cause is None and args.sentiment is None:
        raise UserError(f"label {args.item}: nothing to correct: give --relevant or --irrelevant, --service, --cause "
                        "or --sentiment (without one, the label the item has now would be recorded as a person's)")
    sessions = make_sessions(settings.database_url)
    try:
        label = human_label(sessions, ServedVersion(sessions), args.item, relevant=args.relevant,
                            services=args.service, cause=args.cause, sentiment=args.sentiment, now=_now())
    except KeyError:
        raise UserError(f"no item {args.item} in the store") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"item {args.item}: {label.as_json() | {'scores': 'human'}} (wins in reports, counts and alerts now; the model learns it at the next "
          "`mynawatch classifier retrain`)")
    return 0


ANSWER_MAX = 1 << 20  # characters of one answer to `review` read from a file, a pipe or a device
TYPED_MAX = 4096  # ... typed at a terminal (the kernel's own line editing stops at 4095)


def cmd_review(args) -> int:
    from classifier.jobs import human_label
    from mynawatch.serving import ServedVersion
    from mynawatch.review import queue_of, run_review
    from store.db import make_sessions
    from store.records import Service

    settings = _settings(args)
    codes = [str(s) for s in Service]
    if args.service and args.service not in codes:
        raise UserError(f"--service {args.service!r}: not a service code ({', '.join(codes)})")
    if not 1 <= args.days <= 36_600:
        raise UserError(f"--days {args.days}: at least 1, at most 36600")
    sessions = make_sessions(settings.database_url)
    model = ServedVersion(sessions)
    queue = queue_of(sessions, model.version, since=_now() - timedelta(days=args.days), service=args.service)
    if args.count:
        print(f"{len(queue)} item(s) waiting for review")
        return 0

    def record(item_id, label):
        human_label(sessions, model, item_id, relevant=label.relevant, services=[str(s) for s in label.services],
                    cause=str(label.cause), sentiment=str(label.sentiment), now=_now())

    terminal = sys.stdin is not None and sys.stdin.isatty()
    most = TYPED_MAX if terminal else ANSWER_MAX

    def ask(prompt):
        # One bounded line at a time, at a terminal too: input() took a line pasted at a terminal without
        # the kernel's line editing (stty -icanon, a terminal program's raw mode) whole into memory.
        while True:
            print(prompt, end="", flush=True)
            line = sys.stdin.readline(most + 1) if sys.stdin is not None else ""  # closed (`<&-`): no answers
            if not line:  # the end of input
                print()
                return None
            if len(line) <= most:
                return line.removesuffix("\n")
            if not terminal:  # /dev/zero has no end of line: it was read until killed
                raise UserError(f"standard input: an answer longer than {most:,} characters, not an answer "
                                "(a device or a binary file?); the answers before it are recorded")
            while line and not line.endswith("\n"):  # a paste gone wrong: the rest of its line set aside
                line = sys.stdin.readline(most + 1)
            print(f"  an answer longer than {most:,} characters: set aside, nothing recorded; type it again")

    run_review(queue, record, ask=ask, say=print)
    return 0


def cmd_search(args) -> int:
    from store.db import make_sessions
    from store.clock import parse_local, shown, typed_form
    from store.search import index_pending, search_items

    settings = _settings(args)
    try:
        since = parse_local(args.since) if args.since else None
    except ValueError:
        raise UserError(f"--since {args.since!r}: expected {typed_form('YYYY-MM-DD')}") from None
    sessions = make_sessions(settings.database_url)
    index_pending(sessions)  # items collected since the last classify run
    with sessions.begin() as session:
        try:
            hits = search_items(session, args.query, service=args.service, since=since, limit=args.limit)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if args.format != "text":
        _print_json(hits, args.format)
        return 0
    for h in hits:  # stored text on a terminal: one line each, no control characters or bidi overrides
        when = shown(h.published)
        print(f"{when}  {one_line(h.publisher)}  #{h.item_id}")
        print(f"  {one_line(h.snippet if h.in_title else h.title)}")
        if not h.in_title:
            print(f"  {one_line(h.snippet)}")
        print(f"  {one_line(h.url)}")
    print(f"{len(hits)} item(s) (title matches first, newest first)" if hits else
          f"0 item(s): nothing indexed matches {_shown_value(args.query)}")
    return 0


def cmd_sql(args) -> int:
    from store.sql import Limits, ReadOnlyError, read_only_query, write_result

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: expected at least 1 (or --all for every row)")
    if not 0 < args.timeout <= 86_400:
        raise UserError(f"--timeout {args.timeout:g}: expected a number of seconds above 0, at most 86400")
    settings = _settings(args)
    limits = Limits(rows=None if args.all else (args.limit or Limits.rows), seconds=args.timeout)
    try:
        with read_only_query(settings.database_url, args.query, limits=limits) as result:
            written = write_result(result.columns, result.rows, args.format, sys.stdout)
            sys.stdout.flush()
    except ReadOnlyError as exc:
        from mynawatch.disk import store_trouble

        cause = exc.__context__  # a disk's trouble, not a write refused (plain SQLITE_READONLY, code 8)
        trouble = store_trouble(cause)
        if trouble and (trouble[0] != "read-only" or getattr(cause, "sqlite_errorcode", 8) != 8):
            raise cause from None  # main() names it with the store
        raise UserError(str(exc)) from None
    except BrokenPipeError:  # the reader stopped (| head): end quietly
        _quiet_stdout()
        return 0
    if result.cut:
        print(f"mynawatch sql: the first {written} rows were shown; more were left out (--limit N for more, "
              "--all for every row)", file=sys.stderr)
    return 0


def cmd_db(args) -> int:
    from store.db import check_store, make_sessions, upgrade_store
    from store.search import index_pending, pending_count

    if args.action == "datasette":
        from mynawatch.datasette import database_name, datasette_metadata

        try:
            name = args.name or database_name(_settings(args).database_url)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        print(json.dumps(datasette_metadata(name), ensure_ascii=False, indent=2))
        return 0
    if args.action == "copy":
        return _copy(args.source, args.destination, replace=args.replace)
    settings = _settings(args)
    if args.action == "upgrade":
        before, after = upgrade_store(settings.database_url)
        print(f"schema {before or 'new'} -> {after}; {index_pending(make_sessions(settings.database_url))} items "
              "added to the search index")
    elif args.action == "backup":
        target = Path(args.path)
        _not_too_long(target, "db backup")
        _not_the_store(target, settings.database_url)
        if target.exists() and not args.force:
            raise UserError(f"{target} exists (use --force to replace it)")
        _only_a_file(target)
        from store.dialect import BackupUnavailable

        try:
            _backup(settings.database_url, target)
        except BackupUnavailable as exc:
            raise UserError(str(exc)) from None
        print(f"backed up to {one_line(str(target))}")
    else:
        problems = check_store(settings.database_url)
        for p in problems:
            print(p)
        with make_sessions(settings.database_url).begin() as session:
            if waiting := pending_count(session):
                print(f"search index: {waiting} new items not indexed yet (the next classify run or search adds them)")
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 0 if not problems else 1
    return 0


COPY_CONNECT_SECONDS = 10  # `db copy`: a PostgreSQL server that takes a connection and never answers


def _copy(source: str, destination: str, *, replace: bool) -> int:
    """`db copy`: every table, then row counts and checksums compared, one line per table. Each side that
    cannot be used is named by its own line (never by the settings file's store)."""
    from sqlalchemy.engine import make_url

    from mynawatch.settings import check_store_url
    from store.copy import CopyError, copy_store

    for name, url in (("SRC_URL", source), ("DST_URL", destination)):
        check_store_url(url, f"db copy {name}")
    parsed = make_url(source)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not parsed.query \
            and not Path(parsed.database).exists() and parsed.database != ":memory:":
        raise UserError(f"db copy SRC_URL: no store at {parsed.database}")  # not made empty by opening it
    for name, url in (("SRC_URL", source), ("DST_URL", destination)):
        _copy_side(name, url)
    try:
        tables = copy_store(source, destination, replace=replace)
    except CopyError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:
        from mynawatch.disk import DiskError, store_place, store_trouble

        if (trouble := store_trouble(exc)) is not None:  # a disk, a server gone midway: both sides named
            raise DiskError(f"could not copy the store {store_place(source)} to {store_place(destination)} "
                            f"({_no_password(trouble[1], source, destination)}): check that both can be opened "
                            "and that the destination's folder exists, is writable and has room (df), then run the "
                            "command again") from exc
        raise
    for t in tables:
        state = "same" if t.same else f"DIFFERENT: {t.dest_rows} rows, checksum {t.dest_checksum[:16]}"
        print(f"{t.name:<26} {t.source_rows:>9} rows  sha256 {t.source_checksum[:16]}  {state}")
    differ = [t.name for t in tables if not t.same]
    if differ:
        print(f"mynawatch: the copy differs from the source in {', '.join(differ)}", file=sys.stderr)
        return 1
    print(f"copied {sum(t.source_rows for t in tables)} rows in {len(tables)} tables; counts and checksums match")
    return 0


def _copy_side(name: str, url: str) -> None:
    """Refuse at once, naming it, a side of `db copy` that cannot be used: a SQLite path that is a folder, a
    device, a pipe or a file of something else; a PostgreSQL server that cannot be reached or does not answer
    within COPY_CONNECT_SECONDS. A SQLite file that is not there yet is fine (the destination is made)."""
    from sqlalchemy.engine import make_url

    from mynawatch.disk import DiskError, store_place, store_trouble

    parsed, where = make_url(url), f"db copy {name} {one_line(store_place(url))}"
    if parsed.get_backend_name() == "sqlite":
        path = store_place(url)
        if path == ":memory:":
            return
        if not os.path.exists(path):  # the folders are made: none of them may be a file
            above = next(f for f in Path(path).absolute().parents if f.exists())
            if not above.is_dir():
                raise UserError(f"{where}: {above} is a file, not a folder: choose another path")
            return
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UserError(f"{where}: a folder, not a SQLite store" if os.path.isdir(path) else
                            f"{where}: not a regular file (a device, a pipe or a socket), not a SQLite store")
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except PermissionError:
            raise UserError(f"{where}: not allowed to read it") from None
        if head and head != b"SQLite format 3\x00":
            raise UserError(f"{where}: not a SQLite database (it does not start as one): give the path of a store")
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    waits = {} if "connect_timeout" in parsed.query else {"connect_timeout": COPY_CONNECT_SECONDS}
    engine = create_engine(url, poolclass=NullPool, connect_args=waits)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:  # any failure to connect and answer SELECT 1, a timeout too
        trouble = store_trouble(exc)
        detail = trouble[1] if trouble else one_line(str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip()
                                                     else type(exc.orig).__name__)
        raise DiskError(f"{where}: cannot reach it ({_no_password(detail, url)}): check that the server runs "
                        "and accepts connections (pg_isready) and that the database exists, then run the command "
                        "again") from exc
    finally:
        engine.dispose()


def _no_password(text: str, *urls: str) -> str:
    """``text`` (a driver's words) with the password of any of ``urls`` masked, should it quote one."""
    from sqlalchemy.engine import make_url

    for url in urls:
        password = make_url(url).password
        if password and len(password) >= 3:
            text = text.replace(password, "***")
    return text


def _backup(url: str, target: Path) -> None:
    """The store's backup into a temporary file beside ``target``, renamed when whole: a full disk leaves
    neither a half copy nor a temporary file, and an older copy at ``target`` stays."""
    from mynawatch.disk import DiskError, store_place, store_trouble
    from store.db import backup_store

    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        backup_store(url, tmp)
        tmp.replace(target)
    except Exception as exc:
        _remove(*(tmp.with_name(tmp.name + end) for end in ("", "-journal", "-wal", "-shm")))
        if (trouble := store_trouble(exc)) is not None and trouble[0] in ("full", "read-only", "io", "cannot-open"):
            raise DiskError(f"could not copy the store {store_place(url)} to {target} ({trouble[1]}): check that "
                            "the store can be read and that the copy's folder exists, is writable and has room "
                            "(df), then run the command again") from exc
        raise


def cmd_sources(args) -> int:
    from dataclasses import asdict, replace

    from collector.health import describe_sources, source_flags
    from store.db import make_sessions
    from store.sources import source_rows

    settings = _settings(args)
    sessions = make_sessions(settings.database_url)
    from collector.streams.status import describe_streams, stream_record
    from store.streams import stream_rows

    with sessions.begin() as session:
        rows, streams = source_rows(session), stream_rows(session)  # [[streams]] get a table of their own
    rows = [r for r in rows if r.name not in {x.name for x in streams}]
    now = _now()
    if args.format != "text":  # the stored text as it is, escaped where a terminal would act on it
        _print_json([{**asdict(r), "flags": source_flags(r, policy=settings.collect, now=now)} for r in rows]
                    + [stream_record(x, now=now) for x in streams], args.format)
        return 0
    rows = [replace(r, name=one_line(r.name), status=one_line(r.status)) for r in rows]
    if rows:
        print(describe_sources(rows, policy=settings.collect, now=now))
    elif not streams:
        print("no sources in the store yet: `mynawatch collect` fetches those of the settings")
    if streams:
        print(("\n" if rows else "") + describe_streams([replace(x, name=one_line(x.name), state=one_line(x.state),
                                                                 last_error=one_line(x.last_error or "") or None)
                                                         for x in streams], now=now))
    return 0


def _alert_parsers(sub) -> None:
    p = sub.add_parser("alerts", help="evaluate spike alerts now, list alerts, or look at the notification outbox")
    a = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a.add_parser("check", help="detect, advance the alert lifecycle, notify (what `run` does every hour)")
    a.add_parser("deliver", help="send queued notifications that are due (SMTP or a webhook was down)")
    from mynawatch.alerts_backfill import register_backfill

    register_backfill(a, open_pipeline=_pipeline, print_json=_print_json, progress=_progress_here)
    for name, what in (("list", "recent alerts, newest first"), ("outbox", "recent notifications and their state")):
        c = a.add_parser(name, help=what)
        c.add_argument("--limit", type=whole_number, default=30, help="how many (default 30)")
        c.add_argument("--format", choices=LIST_FORMATS, default="text", help=LIST_FORMAT_HELP)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("silence", help="mute alert notifications for a service for a while")
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = s.add_parser("add", help="silence one service (a taxonomy code), collection, or * for all")
    c.add_argument("service")
    c.add_argument("--for", dest="duration", help="how long: 90m, 6h, 2d (default 6h)")
    c.add_argument("--until", help="or until this time (ISO 8601; Tokyo time without an offset)")
    c.add_argument("--from", dest="start", help="start later than now (ISO 8601)")
    c.add_argument("--comment", help="why (shown in `silence list`)")
    c = s.add_parser("list", help="silences in force or to come")
    c.add_argument("--all", action="store_true", help="expired ones too")
    c.add_argument("--format", choices=LIST_FORMATS, default="text", help=LIST_FORMAT_HELP)
    c = s.add_parser("expire", help="end a silence now")
    c.add_argument("id", type=whole_number)
    p.set_defaults(func=cmd_silence)

    p = sub.add_parser("spikes", help="run the alert detector on a CSV of hourly counts, or export one")
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = s.add_parser("detect", help="CSV time,series,count in; one JSON line per detected episode out")
    c.add_argument("path", help="a CSV file, or - for standard input")
    c = s.add_parser("export", help="the store's trouble-report counts per service and hour as that CSV")
    c.add_argument("--since", required=True, help="first day, YYYY-MM-DD (Tokyo)")
    c.add_argument("--until", required=True, help="last day, YYYY-MM-DD (Tokyo)")
    c.add_argument("--service", action="append", help="only this service code (repeat for several)")
    c.add_argument("--signal", default="trouble", choices=("trouble", "stories", "items", "publishers", "bookmarks",
                                                           "posts", "trends"),
                   help="trouble (the alert signal, default): distinct stories of trouble reports; stories, items, "
                        "publishers: of relevant items; bookmarks, posts: はてブ and Mastodon; trends: trending terms")
    p.set_defaults(func=cmd_spikes)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mynawatch", description="Monitor of Japan's My Number (マイナ) systems "
                                     "in news and social feeds: collect, classify, report, alert.")
    parser.add_argument("--config", help="settings file (default: ./mynawatch.toml)")
    parser.add_argument("--version", action="version", version=f"mynawatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what mynawatch does to stderr; -vv adds the libraries' own logs (Alembic, APScheduler, HTTP)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a commented mynawatch.toml with real Japanese sources")
    p.add_argument("--path", default="mynawatch.toml", help="where to write it (default: ./mynawatch.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("collect", help="fetch every source once and store new items")
    p.add_argument("--once", action="store_true", help="one round, then exit (the default; `run` keeps going)")
    p.add_argument("--force", action="store_true", help="also fetch sources that are backing off after failures")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("classify", help="tag stored items the served model has not tagged yet; add new items to the search index")
    p.add_argument("--all", action="store_true", help="re-tag every item, in one transaction")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("report", help="write the daily report (HTML, text, chart, digest .eml)")
    p.add_argument("--date", help="the day, YYYY-MM-DD in Asia/Tokyo (default: yesterday)")
    p.add_argument("--out", help="folder (default: [reports] dir of the settings)")
    p.add_argument("--send", action="store_true",
                   help="also email the digest (once per day and recipient; queued and retried if SMTP is down)")
    p.add_argument("--month", help="instead, the monthly summary of YYYY-MM: incidents, durations, time to "
                                   "acknowledge and recover, per service, with their charts")
    p.set_defaults(func=cmd_report)

    _alert_parsers(sub)
    from mynawatch.incidents_cmd import register_incidents

    register_incidents(sub, load_settings=_settings, user_error=UserError)

    p = sub.add_parser("run", help="run the scheduler: collect, classify, alert and report on schedule")
    p.add_argument("--role", choices=("all", "collect", "classify", "alerts"), default="all",
                   help="this process's part on a PostgreSQL store shared by several (default: all)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the whole pipeline on the bundled sample month, offline")
    p.add_argument("--out", default="demo-output", help="output folder, replaced if it exists (default: demo-output)")
    p.add_argument("--days", type=whole_number, default=30, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("tag", help="tag a JSONL batch: {id,title,text} per line in, labels per line out")
    p.add_argument("path", help="a JSONL file, or - for standard input")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("classifier", help="train, evaluate or explain the classifier")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = csub.add_parser("train", help="train (or load the cached) corpus model, probabilities calibrated on the dev "
                        "stories; no store changes the model it serves")
    c.add_argument("--force", action="store_true", help="retrain even when a cached model matches")
    c.set_defaults(func=cmd_classifier_train)
    c = csub.add_parser("retrain", help="train on the corpus + the store's corrections, re-tag the store and serve "
                        "the new model (one transaction)")
    c.add_argument("--force", action="store_true", help="even when the served model learned from the same corrections")
    c.set_defaults(func=cmd_classifier_retrain)
    c = csub.add_parser("evaluate", help="per-axis precision, recall, F1, confusion and calibration")
    c.add_argument("--gold", help="a JSONL file with gold labels in the taxonomy format (default: the test split)")
    c.add_argument("--pin", action="store_true", help="re-pin the CI quality floors to the current figures")
    c.add_argument("--real-check", metavar="TSV", help="labeled published URLs (default: classifier/data/real_check.tsv)")
    c.add_argument("--real-texts", metavar="JSONL", help='texts of real-check URLs, {"url","title","text"} per line '
                   "(their texts are not in the repository; without this, the URLs found in the store are measured)")
    c.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json: one JSON document")
    c.set_defaults(func=cmd_classifier_evaluate)
    c = csub.add_parser("explain", help="the labels of one text, their probabilities and what drove them")
    c.add_argument("title", help="the headline (or the whole text)")
    c.add_argument("text", nargs="?", default="", help="the body, optional")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_classifier_explain)

    p = sub.add_parser("label", help="correct an item's labels by hand (wins over the model in reports at once)")
    p.add_argument("item", type=whole_number, help="the item id (items.id)")
    rel = p.add_mutually_exclusive_group()
    rel.add_argument("--relevant", dest="relevant", action="store_true", default=None, help="it is about the systems")
    rel.add_argument("--irrelevant", dest="relevant", action="store_false", help="it is not")
    p.add_argument("--service", action="append", help="a service code (repeat for several); replaces the services")
    p.add_argument("--cause", help="a cause code")
    p.add_argument("--sentiment", help="a sentiment code")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("review", help="answer the items the model is least sure of or where rules and model disagree, "
                                     "newest first; each answer is recorded as a correction at once")
    p.add_argument("--service", help="only items about this service code (labeled with it, or named by a rule)")
    p.add_argument("--days", type=whole_number, default=30, help="items published in the last N days (default 30)")
    p.add_argument("--count", action="store_true", help="only print how many items are waiting")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("search", help="Japanese full-text search over titles and texts, with highlights")
    p.add_argument("query", help="words to find, e.g. \"アクセス集中\" (every word required)")
    p.add_argument("--service", help="only items labeled with this service code, e.g. portal")
    p.add_argument("--since", help="only items published on or after this Tokyo day, YYYY-MM-DD")
    p.add_argument("--limit", type=whole_number, default=20, help="at most this many items (default 20)")
    p.add_argument("--format", choices=LIST_FORMATS, default="text", help=LIST_FORMAT_HELP)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("sql", help="run a read-only SQL query on the store (writes are refused)")
    p.add_argument("query", help="one SQL statement, e.g. \"SELECT * FROM daily_service_counts\"")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format (table cells are cut at 60 columns; csv and json keep whole values)")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--limit", type=whole_number, metavar="N", help="at most N rows (default 1000; a note on stderr says "
                      "when rows were left out)")
    rows.add_argument("--all", action="store_true", help="every row (still streamed, still under --timeout)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="stop a statement that works longer than this (default 30)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("db", help="store maintenance: upgrade, backup, check, copy; Datasette metadata")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    dsub.add_parser("upgrade", help="apply schema migrations (also done on every open)").set_defaults(func=cmd_db)
    d = dsub.add_parser("backup", help="a consistent online copy of the store (PostgreSQL: pg_dump's custom format)")
    d.add_argument("path", help="where to write the copy")
    d.add_argument("--force", action="store_true", help="replace an existing file")
    d.set_defaults(func=cmd_db)
    dsub.add_parser("check", help="integrity, foreign-key and search-index checks; items waiting for the search index").set_defaults(func=cmd_db)
    d = dsub.add_parser("copy", help="copy a whole store to another (SQLite <-> PostgreSQL); row counts and "
                        "checksums compared at the end")
    d.add_argument("source", metavar="SRC_URL", help="the store to copy, e.g. sqlite:///mynawatch.sqlite")
    d.add_argument("destination", metavar="DST_URL", help="where to, e.g. postgresql+psycopg://user@host/mynawatch "
                   "(made when missing; an empty database)")
    d.add_argument("--replace", "--force", dest="replace", action="store_true",
                   help="delete the rows a destination already holds first (it is refused otherwise)")
    d.set_defaults(func=cmd_db)
    d = dsub.add_parser("datasette", help="print Datasette metadata for this store (whatever its file name): "
                        "mynawatch db datasette > meta.json; datasette STORE --metadata meta.json")
    d.add_argument("--name", help="the database name Datasette gives the file: its name without the extension "
                   "(default: that of the store in the settings)")
    d.set_defaults(func=cmd_db)

    p = sub.add_parser("sources", help="list each source's health: status, last success, failures, newest item, "
                                      "stale and backing-off flags")
    p.add_argument("--format", choices=LIST_FORMATS, default="text", help=LIST_FORMAT_HELP)
    p.set_defaults(func=cmd_sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    _watch_interrupts()
    try:
        args = build_parser().parse_args(argv)  # it imports the commands' modules: Ctrl-C may come here too
    except KeyboardInterrupt:
        print("mynawatch: interrupted", file=sys.stderr)
        return 130
    _logging(args.verbose)
    try:
        if sys.stdout is None and _writes_its_result(args):
            raise UserError("standard output is closed (>&-): this command's result goes there; send it to a file "
                            "(> FILE) or to /dev/null")
        if args.command in MODEL_COMMANDS and not (args.command == "run" and args.role == "collect"):
            from mynawatch.disk import model_cache_problem  # (a collect-only run loads no model)

            if problem := model_cache_problem():
                raise UserError(problem)
        return args.func(args)
    except (UserError, SettingsError) as exc:  # it may quote input: no control characters, a long value cut
        print(f"mynawatch: {short_quotes(clean_text(str(exc)), QUOTED_SETTING)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mynawatch: interrupted", file=sys.stderr)
        return 130
    except (AlreadyRunning, StoreBusy) as exc:  # another process holds the store's lock
        print(f"mynawatch: {clean_text(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of the output stopped (`| head`): end quietly, as other tools do
        _quiet_stdout()
        return 0
    except Exception as exc:  # a full disk, a read-only or unusable store, a file that cannot be written
        from mynawatch.disk import disk_line

        if _interrupted:  # Ctrl-C inside a SQLite function (the search tokenizer): SQLite reports its failure
            print("mynawatch: interrupted", file=sys.stderr)
            return 130
        line = disk_line(exc, store=_store_url(args))
        if line is None:
            raise
        print(f"mynawatch: {clean_text(line)}", file=sys.stderr)
        return 1


def _writes_its_result(args) -> bool:
    """Whether the command's result is what it writes to standard output (a batch, rows, a listing), not a
    summary of work done elsewhere: with standard output closed, `tag`, `sql` and `spikes export` ended in a
    traceback, the listings in status 0 with nothing shown."""
    action = getattr(args, "action", None)
    return (args.command in ("tag", "sql", "search", "sources", "spikes")
            or (args.command, action) in {("classifier", "explain"), ("classifier", "evaluate"), ("db", "datasette"),
                                          ("alerts", "list"), ("alerts", "outbox"), ("silence", "list"),
                                          ("incidents", "list"), ("incidents", "show")})


MODEL_COMMANDS = ("classify", "run", "demo", "tag", "classifier")  # they train or load a model: the cache is checked first
_interrupted = False


def _watch_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt as before, and is also noted: raised inside a Python function SQLite calls,
    it reaches main() only as that statement's OperationalError ("user-defined function raised exception")."""
    global _interrupted
    _interrupted = False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # ignored (a background job) or handled by someone else
    try:
        signal.signal(signal.SIGINT, _note_interrupt)
    except ValueError:  # not the main thread
        pass


def _note_interrupt(signum, frame):
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


OWN_LOGGERS = ("collector", "classifier", "store", "reports", "mynawatch")


def _logging(verbose: int) -> None:
    """Warnings only by default; -v: mynawatch's own steps (jobs, rounds, alerts); -vv: libraries too.

    The libraries' Python warnings are theirs, only at -vv: a page of XML or a number past a detector's range
    made Beautiful Soup and numpy print a dozen lines of their advice, source code included, on stderr."""
    logging.basicConfig(level=logging.INFO if verbose >= 2 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose >= 2 else logging.ERROR)
    if verbose == 1:
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)


def _store_url(args) -> str | None:
    """The store the command was using, to name it in an error; None when no settings can be read."""
    if getattr(args, "func", None) is cmd_demo:
        return f"sqlite:///{Path(args.out) / 'mynawatch.sqlite'}"
    path = _settings_path(args)
    try:
        return load_settings(path).database_url if path is not None else None
    except Exception:  # noqa: BLE001 - only for naming the store in a message
        return None


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured in tests)
        pass


if __name__ == "__main__":
    # `python -m mynawatch.cli` runs this file as __main__: take main from mynawatch.cli itself, so that the
    # UserError a command module imports from mynawatch.cli is the class main catches (no traceback).
    from mynawatch.cli import main as _main

    sys.exit(_main())
