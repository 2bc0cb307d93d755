"""No command prints a Python traceback for bad input, a full disk or a read-only store: every command of
`mynawatch --help` runs in its own process against each, and stderr ends with one clear line.

The disks are real. Where user namespaces work (`unshare -rm`, as root or not), a full disk is a small
tmpfs filled to its last byte (ENOSPC, SQLite's "database or disk is full") and a read-only store is a
read-only bind mount (EROFS). Elsewhere a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG, SQLite's
"disk I/O error") stands in for the full disk, and modes 0444/0555 for the read-only store; root ignores
modes, so there the read-only case is skipped with that reason.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from mynawatch.cli import build_parser

TIMEOUT = 60  # seconds for one command; `run` against a bad store must end, not wait


@dataclass(frozen=True)
class Case:
    argv: list[str]  # against the store of {work}/mynawatch.toml; {work} and {out} are folders
    bad: list[str]  # bad input: a bad argument, value or file
    bad_config: str = "mynawatch.toml"  # junk.toml: the store is a text file, not a database; or a missing file
    writes: bool = False  # must fail on a full disk or a read-only store (others may read and succeed)
    out: bool = False  # writes files into {out}: also run with only that folder full or read-only
    stdin: bytes = b""


CASES = {
    "init": Case(["init", "--path", "{out}/new.toml"], ["init", "--path", "{work}/no/such/folder/new.toml"],
                 writes=True, out=True),
    "collect": Case(["collect"], ["collect"], bad_config="junk.toml", writes=True),
    "classify": Case(["classify", "--all"], ["classify"], bad_config="junk.toml"),
    "report": Case(["report", "--date", "2024-09-17", "--out", "{out}"],
                   ["report", "--date", "2024-09-17", "--out", "{work}/counts.csv"], writes=True, out=True),
    "run": Case(["run"], ["run"], bad_config="junk.toml", writes=True),
    "demo": Case(["demo", "--out", "{work}/demo", "--days", "1"], ["demo", "--out", "{work}/counts.csv"], writes=True),
    "tag": Case(["tag", "{work}/batch.jsonl"], ["tag", "{work}"]),
    "classifier train": Case(["classifier", "train"], ["classifier", "train"], bad_config="junk.toml"),
    "classifier retrain": Case(["classifier", "retrain"], ["classifier", "retrain"], bad_config="junk.toml"),
    "classifier evaluate": Case(["classifier", "evaluate", "--real-check", "{work}/no-real-check.tsv"],
                                ["classifier", "evaluate", "--gold", "{work}/counts.csv"]),
    "classifier explain": Case(["classifier", "explain", "マイナ保険証の資格確認でエラー"],
                               ["classifier", "explain", "マイナ保険証の資格確認でエラー"], bad_config="junk.toml"),
    "label": Case(["label", "1", "--irrelevant"], ["label", "999999", "--irrelevant"], writes=True),
    "review": Case(["review"], ["review", "--days", "0"], stdin=b"q\n"),
    "search": Case(["search", "マイナ"], ["search", "マイナ", "--limit", "0"]),
    "sql": Case(["sql", "SELECT count(*) FROM items"], ["sql", "DELETE FROM items"]),
    "db upgrade": Case(["db", "upgrade"], ["db", "upgrade"], bad_config="junk.toml"),
    "db backup": Case(["db", "backup", "{out}/copy.sqlite"], ["db", "backup", "{work}/mynawatch.toml"],
                      writes=True, out=True),
    "db copy": Case(["db", "copy", "sqlite:///{work}/mynawatch.sqlite", "sqlite:///{out}/copy.sqlite"],
                    ["db", "copy", "sqlite:///{work}/junk.sqlite", "sqlite:///{out}/copy.sqlite"], writes=True, out=True),
    "db datasette": Case(["db", "datasette"], ["db", "datasette"], bad_config="no-such-settings.toml"),
    "db check": Case(["db", "check"], ["db", "check"], bad_config="junk.toml"),
    "sources": Case(["sources"], ["sources"], bad_config="junk.toml"),
    "alerts check": Case(["alerts", "check"], ["alerts", "check"], bad_config="junk.toml"),
    "alerts deliver": Case(["alerts", "deliver"], ["alerts", "deliver"], bad_config="junk.toml"),
    "alerts list": Case(["alerts", "list"], ["alerts", "list", "--limit", "many"]),
    "alerts outbox": Case(["alerts", "outbox"], ["alerts", "outbox"], bad_config="junk.toml"),
    "alerts backfill": Case(["alerts", "backfill", "--since", "2024-09-16"], ["alerts", "backfill", "--since", "2024-02-30"]),
    "silence add": Case(["silence", "add", "portal", "--for", "2h"], ["silence", "add", "no-such-service"],
                        writes=True),
    "silence list": Case(["silence", "list"], ["silence", "list"], bad_config="junk.toml"),
    "silence expire": Case(["silence", "expire", "1"], ["silence", "expire", "999"]),
    "spikes detect": Case(["spikes", "detect", "{work}/counts.csv"], ["spikes", "detect", "{work}/bad.csv"]),
    "spikes export": Case(["spikes", "export", "--since", "2024-09-16", "--until", "2024-09-17"],
                          ["spikes", "export", "--since", "2024-02-30", "--until", "2024-09-17"]),
    "incidents list": Case(["incidents", "list", "--format", "json"], ["incidents", "list", "--since", "yesterday"]),
    "incidents show": Case(["incidents", "show", "2024-09-16T09-portal"], ["incidents", "show", "no-such-incident"]),
    "incidents recompute": Case(["incidents", "recompute"], ["incidents", "recompute"], bad_config="junk.toml"),
}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every runnable command of the parser, subcommands spelled out ("db backup")."""
    names = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names += _commands(sub, f"{prefix}{name} ") or [f"{prefix}{name}"]
    return names


def test_every_command_is_tried():
    assert sorted(_commands(build_parser())) == sorted(CASES)


# --- the disks -------------------------------------------------------------------------------------------

# sh -c SCRIPT sh FOLDER BASE LISTING COMMAND...: the folder full (BASE's files copied in first) or read-only
# while COMMAND runs; the names left in it are written to LISTING (outside it), when one is given.
FULL = """d=$1; base=$2; listing=$3; shift 3
mount -t tmpfs -o size=4m tmpfs "$d" || exit 97
if [ -n "$base" ]; then cp -a "$base"/. "$d"/ || exit 98; fi
cat /dev/zero > "$d/.fill" 2>/dev/null
"$@"; rc=$?; if [ -n "$listing" ]; then ls -A "$d" > "$listing"; fi; exit $rc"""
READ_ONLY = """d=$1; listing=$3; shift 3
mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 97
"$@"; rc=$?; if [ -n "$listing" ]; then ls -A "$d" > "$listing"; fi; exit $rc"""


def _namespaces(tmp: Path) -> bool:
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    full, read_only = tmp / "full", tmp / "read-only"
    full.mkdir(), read_only.mkdir()
    try:  # a write fails in each folder, and only in the namespace
        done = [subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(folder), "", "",
                                "sh", "-c", 'echo x > "$0/x" && exit 1 || exit 0', str(folder)],
                               capture_output=True, timeout=20)
                for script, folder in ((FULL, full), (READ_ONLY, read_only))]
    except (OSError, subprocess.TimeoutExpired):
        return False
    return all(d.returncode == 0 for d in done) and not (full / "x").exists() and not (read_only / "x").exists()


@pytest.fixture(scope="module")
def disks(tmp_path_factory) -> str:
    """"namespaces" (tmpfs and bind mounts), or "limits" (a file-size limit, file modes)."""
    return "namespaces" if _namespaces(tmp_path_factory.mktemp("probe")) else "limits"


@pytest.fixture(scope="module")
def base(tmp_path_factory, model) -> Path:
    """A small real store (two days of the demo), its settings, a store that is not a database, and input
    files; copied for every run. After the run's model (``model``): the demo process finds it in the shared
    cache instead of training a second one beside the fixture's."""
    demo = tmp_path_factory.mktemp("demo") / "out"
    made = subprocess.run([sys.executable, "-m", "mynawatch.cli", "demo", "--out", str(demo), "--days", "2"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert made.returncode == 0, made.stderr
    folder = tmp_path_factory.mktemp("base")
    with sqlite3.connect(demo / "mynawatch.sqlite") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(demo / "mynawatch.sqlite", folder / "mynawatch.sqlite")  # closed: no -wal, no -shm
    (folder / "mynawatch.toml").write_text(
        '[store]\nurl = "sqlite:///mynawatch.sqlite"\n[reports]\ndir = "out"\n'
        '[[sources]]\nname = "closed"\nurl = "http://127.0.0.1:9/feed.xml"\npublisher = "閉じた港"\n', encoding="utf-8")
    (folder / "junk.toml").write_text('[store]\nurl = "sqlite:///junk.sqlite"\n', encoding="utf-8")
    (folder / "junk.sqlite").write_text("this is a text file, not a database\n" * 200, encoding="utf-8")
    (folder / "counts.csv").write_text("time,series,count\n2024-10-01T00:00+09:00,portal,3\n", encoding="utf-8")
    (folder / "bad.csv").write_text("time,series,count\n2024-10-01T00:00+09:00,portal,9" + "9" * 400 + "\n",
                                    encoding="utf-8")
    (folder / "batch.jsonl").write_text('{"id": 1, "title": "マイナ保険証でエラー", "text": ""}\n', encoding="utf-8")
    (folder / "no-real-check.tsv").write_text("url\tdate\trelevant\tservices\tcause\tsentiment\n",
                                            encoding="utf-8")  # a real check of no items: nothing to read
    (folder / "out").mkdir()
    return folder


@dataclass
class Ran:
    scenario: str
    argv: list[str]
    returncode: int
    stderr: str
    work: Path
    left: list[str] | None  # the names in the full or read-only folder afterwards


def _limit_file_size():  # in the child, before exec: writes past 0 bytes fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _run(case: Case, scenario: str, base: Path, root: Path, disks: str) -> Ran:
    work = root / scenario
    shutil.copytree(base, work)
    out = work / "out"
    argv = case.bad if scenario == "bad" else case.argv
    config = case.bad_config if scenario == "bad" else "mynawatch.toml"
    argv = [a.format(work=work, out=out) for a in argv]
    command = [sys.executable, "-m", "mynawatch.cli", "--config", str(work / config), *argv]
    target = out if scenario.endswith("-out") else work
    after = target.with_name(target.name + ".after")
    preexec, restore = None, None
    if scenario.startswith(("full", "read-only")) and disks == "namespaces":
        if scenario.startswith("full"):
            staged = root / f"{scenario}-staged"
            target.rename(staged)  # the tmpfs is mounted over the folder: its files are copied in first
            target.mkdir()
            command = ["unshare", "-rm", "sh", "-c", FULL, "sh", str(target), str(staged), str(after), *command]
        else:
            command = ["unshare", "-rm", "sh", "-c", READ_ONLY, "sh", str(target), "", str(after), *command]
    elif scenario.startswith("full"):
        preexec = _limit_file_size
    elif scenario.startswith("read-only"):
        if os.geteuid() == 0:
            pytest.skip("running as root without user namespaces (unshare -rm): no folder is read-only to root")
        restore = [(p, p.stat().st_mode) for p in [target, *target.rglob("*")]]
        for p, _ in reversed(restore):
            p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        done = subprocess.run(command, input=case.stdin, capture_output=True, timeout=TIMEOUT, cwd=root,
                              env=dict(os.environ), preexec_fn=preexec)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{scenario}: `{' '.join(argv)}` still running after {TIMEOUT} s; stderr: {exc.stderr!r}")
    finally:
        for p, mode in restore or ():
            p.chmod(mode)
    left = after.read_text().split() if after.exists() else sorted(p.name for p in target.iterdir())
    return Ran(scenario, argv, done.returncode, done.stderr.decode(errors="replace"), work, left)


def _clear_end(ran: Ran) -> str:
    """stderr has no traceback and ends with one line that names mynawatch; that line."""
    where = f"{ran.scenario}: `{' '.join(ran.argv)}` (status {ran.returncode})"
    assert "Traceback" not in ran.stderr and '\n  File "' not in ran.stderr, f"{where}:\n{ran.stderr}"
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert lines, f"{where}: failed without a word"
    last = lines[-1]
    assert last.startswith("mynawatch"), f"{where}: the last line is not mynawatch's: {last!r}"
    assert len(last) < 600, f"{where}: {last!r}"
    return last


def _scenarios(case: Case) -> list[str]:
    return ["bad", "full", "read-only"] + (["full-out", "read-only-out"] if case.out else [])


RUNS = [(name, scenario) for name, case in CASES.items() for scenario in _scenarios(case)]


@pytest.fixture(scope="module")
def runs(request, base, disks, tmp_path_factory) -> dict[tuple[str, str], Future]:
    """Every selected run, started at once on a few workers (each run is a process of its own)."""
    chosen = [item.callspec.params["run"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")]
    root = tmp_path_factory.mktemp("runs")
    pool = ThreadPoolExecutor((os.cpu_count() or 2) + 1)
    started = {}
    for name, scenario in chosen:
        folder = root / name.replace(" ", "-")
        folder.mkdir(exist_ok=True)
        started[name, scenario] = pool.submit(_run, CASES[name], scenario, base, folder, disks)
    yield started
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("run", RUNS, ids=[f"{name}-{scenario}" for name, scenario in RUNS])
def test_no_traceback_for_bad_input_a_full_disk_or_a_read_only_store(run, runs, disks):
    name, scenario = run
    case, ran = CASES[name], runs[run].result()
    if scenario == "bad":
        assert ran.returncode != 0, f"bad input accepted: `{' '.join(ran.argv)}`\n{ran.stderr}"
        _clear_end(ran)
        return
    assert not [n for n in ran.left or () if n.endswith(".tmp")], f"{scenario}: temporary files left: {ran.left}"
    if ran.returncode == 0:
        assert not case.writes, f"{scenario}: `{' '.join(ran.argv)}` claims success\n{ran.stderr}"
        assert "Traceback" not in ran.stderr
        return
    assert ran.returncode == 1, f"{scenario}: `{' '.join(ran.argv)}` status {ran.returncode}\n{ran.stderr}"
    last = _clear_end(ran)
    assert str(ran.work) in last, f"{scenario}: the line does not say where: {last!r}"
    if scenario.endswith("-out"):  # only that folder is full or read-only (a file-size limit binds the store too)
        assert str(ran.work / "out") in last or scenario == "full-out" and disks == "limits", \
            f"{scenario}: the line names another place: {last!r}"
        assert not [n for n in ran.left if n.startswith(("new.toml", "report-", "copy.sqlite"))], \
            f"{scenario}: half-written files: {ran.left}"


# --- the model cache -------------------------------------------------------------------------------------

def _in(disks: str, scenario: str, folder: Path, command: list[str], listing: Path | None = None):
    """``command`` with ``folder`` full or read-only: (the command to run, a preexec function)."""
    if disks == "namespaces":
        script = FULL if scenario == "full" else READ_ONLY
        return ["unshare", "-rm", "sh", "-c", script, "sh", str(folder), "", str(listing or ""), *command], None
    if scenario == "full":
        return command, _limit_file_size
    pytest.skip("no user namespaces (unshare -rm): the shared model cache is not made read-only by file modes")


def test_a_full_model_cache_keeps_no_temporary_file(tmp_path, disks, base):
    cache = tmp_path / "cache"
    cache.mkdir()
    script = ("import sys\nfrom pathlib import Path\nfrom classifier.cache import _write, load_or_train\n"
              "model = load_or_train()\ntry:\n    _write(model, Path(sys.argv[1]) / 'model-test.pickle')\n"
              "except OSError as exc:\n    print(exc.errno, exc.filename)\n    sys.exit(3)\n")
    command, preexec = _in(disks, "full", cache, [sys.executable, "-c", script, str(cache)], tmp_path / "left")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=dict(os.environ),
                          preexec_fn=preexec)
    assert done.returncode == 3, done.stderr
    code, name = done.stdout.split()
    assert int(code) in (28, 27) and name == str(cache / "model-test.pickle")  # ENOSPC, or EFBIG under a limit
    left = ((tmp_path / "left").read_text().split() if disks == "namespaces"
            else [p.name for p in cache.iterdir()])
    assert [n for n in left if n != ".fill"] == []  # neither a temporary file nor half a model


def test_a_read_only_model_cache_still_serves_its_model(tmp_path, disks, base, model_cache):
    command, preexec = _in(disks, "read-only", model_cache, [
        sys.executable, "-m", "mynawatch.cli", "classifier", "explain", "マイナポータルにつながらない"])
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ),
                          preexec_fn=preexec)
    assert done.returncode == 0, done.stderr
    assert "relevant: True" in done.stdout and "Traceback" not in done.stderr


def test_postgresql_disk_errors_get_the_same_lines():
    from mynawatch.disk import disk_line

    class DiskFull(Exception):  # what psycopg raises carries the SQLSTATE
        sqlstate = "53100"

    class ReadOnly(Exception):
        sqlstate = "25006"

    url = "postgresql+psycopg://mw:secret@db.example/mynawatch"
    full = disk_line(DiskFull("could not extend file: No space left on device"), store=url)
    assert full.startswith("the disk holding the store postgresql+psycopg://mw:***@db.example/mynawatch is full")
    assert "secret" not in full
    assert disk_line(ReadOnly("cannot execute INSERT in a read-only transaction"), store=url).startswith(
        "the store postgresql+psycopg://mw:***@db.example/mynawatch is read-only")
    assert disk_line(ValueError("not a disk's trouble"), store=url) is None
