"""Hostile input found by a probe after the audits, each case in real processes against real files: a line
pasted at a terminal without the kernel's line editing (review read it whole into memory)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import one_error_line

ROOT = Path(__file__).parent.parent


def _env(**extra) -> dict:
    return dict(os.environ, LANG="C.UTF-8", PYTHONIOENCODING="utf-8", **extra)


# --- review: a line pasted at a raw terminal ---------------------------------------------------------------------

class RawTerminal:
    """A command on the far side of a pseudo-terminal without line editing or echo (stty -icanon -echo, as a
    terminal program in raw mode leaves it): what is written reaches the command as it comes, unbounded."""

    def __init__(self, args, **kw):
        self.master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~(termios.ICANON | termios.ECHO)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, **kw)
        os.close(slave)
        self.seen = ""

    def _pump(self, wait: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the command ended
                chunk = b""
            if not chunk:
                raise AssertionError(f"the command ended; it showed:\n{self.seen[-2000:]}")
            self.seen += chunk.decode("utf-8", "replace")

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} on the terminal; it shows:\n{self.seen[-2000:]}")
            self._pump(max(0.0, deadline - time.monotonic()))
        before, _, self.seen = self.seen.partition(text)
        return before + text

    def send(self, data: bytes, timeout: float = 30) -> None:
        """Write all of ``data``, reading what the command prints meanwhile (a full terminal blocks both)."""
        os.set_blocking(self.master, False)
        deadline = time.monotonic() + timeout
        while data:
            assert time.monotonic() < deadline, f"the terminal took {len(data)} bytes too few in {timeout} s"
            try:
                data = data[os.write(self.master, data[:16384]):]
            except BlockingIOError:
                self._pump(0.01)
        os.set_blocking(self.master, True)

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


@pytest.fixture
def review_store(tmp_path, sessions, model):
    """A store of items the model tagged, some queued for review; its settings file."""
    from classifier.jobs import tag_items
    from test_review import NOW, fill

    fill(sessions)
    tag_items(sessions, model, now=NOW)
    config = tmp_path / "mynawatch.toml"
    config.write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    return config


def test_review_sets_aside_a_huge_line_pasted_at_a_raw_terminal_and_reads_on(review_store, sessions):
    from store import labels as store_labels

    term = RawTerminal([sys.executable, "-m", "mynawatch.cli", "--config", str(review_store), "review",
                        "--days", "36600"], cwd=ROOT, env=_env())
    try:
        term.expect("item(s) waiting for review")
        term.expect("> ")
        term.send(b"\x1b[2J" + "ア".encode() * 2000 + b"z" * 200_000 + b"\r")  # a paste gone wrong
        shown = term.expect("> ")
        assert "an answer longer than 4,096 characters: set aside, nothing recorded; type it again" in shown
        assert "not a key" not in shown and "\x1b" not in shown
        term.send(b"q\r")
        term.expect("0 answer(s) recorded")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    with sessions.begin() as s:
        assert store_labels.human_labels(s) == []


# --- settings: numbers past what the store and the detector hold -------------------------------------------------

_one_line = one_error_line  # (tests/conftest.py)


SOURCE = '[[sources]]\nname = "x"\nurl = "http://127.0.0.1:9/feed.xml"\n'
HUGE_NUMBERS = {  # reached SQL as a LIMIT past 64 bits (an OverflowError traceback after the round's fetches)
    "articles_per_round": ("[collect]\narticles_per_round = 99999999999999999999\n",
                           "[collect] articles_per_round: 99999999999999999999 is too large (at most 1,000,000,000)"),
    "floor_rate": ("[alerts]\nfloor_rate = 1e300\n", "[alerts] floor_rate: 1e+300 is too large"),  # numpy overflow
    "max_frame_bytes": ('[[streams]]\nname = "b"\nendpoint = "ws://127.0.0.1:9/"\nmax_frame_bytes = 99999999999999\n',
                        "[[streams]] #1 max_frame_bytes: 99999999999999 is too large"),
    "service_min_count": ("[alerts.services.portal]\nmin_count = 9223372036854775807\n",
                          "[alerts.services.portal] min_count: 9223372036854775807 is too large"),
}


@pytest.fixture(params=sorted(HUGE_NUMBERS))
def huge_number(request, tmp_path, monkeypatch):
    text, expect = HUGE_NUMBERS[request.param]
    path = tmp_path / "mynawatch.toml"
    path.write_text('[store]\nurl = "sqlite:///store.sqlite"\n' + text + SOURCE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path, expect


def test_a_number_setting_past_a_billion_is_refused_at_load(huge_number, capsys):
    from mynawatch.cli import main

    path, expect = huge_number
    assert main(["--config", str(path), "collect"]) == 2
    line = _one_line(capsys)
    assert expect in line and str(path) in line, line
    assert not (path.parent / "store.sqlite").exists()


def test_numbers_up_to_a_billion_still_load(tmp_path):
    from mynawatch.settings import load_settings

    path = tmp_path / "mynawatch.toml"
    path.write_text("[fetch]\nmax_bytes = 1000000000\n[collect]\narticles_per_round = 1000000000\n" + SOURCE,
                    encoding="utf-8")
    settings = load_settings(path)
    assert settings.fetch.max_bytes == settings.collect.articles_per_round == 1_000_000_000


# --- a source's content makes a library warn: never on stderr by default -----------------------------------------

FEEDS = ROOT / "tests" / "fixtures" / "feeds"


def _collect(config: Path, *extra: str, force: bool = False) -> subprocess.CompletedProcess:
    command = ["collect", "--force"] if force else ["collect"]
    return subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(config), *extra, *command],
                          capture_output=True, text=True, timeout=120, cwd=config.parent, env=_env())


@pytest.fixture
def xml_page_source(tmp_path, server):
    """A good feed beside a `page` source whose page is an XML document (Beautiful Soup warned about it)."""
    from tests.conftest import Route

    server.routes["/good.xml"] = Route((FEEDS / "nhk_rss2.xml").read_bytes(),
                                       headers={"Content-Type": "application/rss+xml"})
    server.routes["/page"] = Route((FEEDS / "impress_rdf.rdf").read_bytes(), headers={"Content-Type": "text/html"})
    config = tmp_path / "mynawatch.toml"
    config.write_text(f'[store]\nurl = "sqlite:///store.sqlite"\n[collect]\narticle_pages = false\n'
                      f'[[sources]]\nname = "good"\nurl = "{server.url("/good.xml")}"\n'
                      f'[[sources]]\nname = "xml-page"\nkind = "page"\nselector = "p"\nurl = "{server.url("/page")}"\n',
                      encoding="utf-8")
    return config


def test_a_page_of_xml_prints_no_library_warning_and_costs_only_its_source(xml_page_source):
    proc = _collect(xml_page_source)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # a dozen lines of Beautiful Soup's advice, its source line included, before
    assert "good " in proc.stdout and "1 of 2 sources answered" in proc.stdout
    loud = _collect(xml_page_source, "-vv", force=True)  # the libraries' own words, for whoever asks
    assert "XMLParsedAsHTMLWarning" in loud.stderr and "Traceback" not in loud.stderr


# --- ids and counts as typed: ASCII digits only, a long value quoted by its start --------------------------------

LONG_DIGITS = "9" * 5000  # int() refuses past 4300 digits; the whole value was echoed in the error
TYPED = {  # int() read each as a number: 0_1 and the other scripts' digits labeled item 1
    "underscore": (["label", "0_1", "--irrelevant"], "argument item: '0_1': expected a whole number in digits 0-9"),
    "arabic_indic": (["label", "١", "--irrelevant"], "argument item: '١': expected a whole number in digits 0-9"),
    "full_width": (["label", "０１", "--irrelevant"], "argument item: '０１': expected a whole number in digits 0-9"),
    "float": (["label", "1e309", "--irrelevant"], "argument item: '1e309': expected a whole number"),
    "hex": (["silence", "expire", "0x1"], "argument id: '0x1': expected a whole number"),
    "underscore_limit": (["search", "マイナ", "--limit", "1_0"], "argument --limit: '1_0': expected a whole number"),
    "thousands_of_digits": (["label", LONG_DIGITS, "--irrelevant"],
                            f"argument item: '{LONG_DIGITS[:40]}…': a number of 5,000 digits, past any id or count"),
    "long_choice": (["alerts", "list", "--format", "x" * 5000], f"invalid choice: '{'x' * 40}…' (choose from"),
}


@pytest.fixture(params=sorted(TYPED))
def typed_badly(request, review_store, monkeypatch):
    monkeypatch.chdir(review_store.parent)
    return TYPED[request.param]


def test_an_id_or_count_not_in_ascii_digits_is_refused_in_one_short_line(typed_badly, sessions, capsys):
    from mynawatch.cli import main
    from store import labels as store_labels

    argv, expect = typed_badly
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert expect in last and last.startswith("mynawatch ") and len(last) < 300, last[:400]
    with sessions.begin() as s:
        assert store_labels.human_labels(s) == []  # no item labeled


def test_a_long_value_in_an_error_line_is_quoted_by_its_start(review_store, monkeypatch, capsys):
    from mynawatch.cli import main

    monkeypatch.chdir(review_store.parent)
    assert main(["silence", "add", "s" * 5000]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"mynawatch: '{'s' * 120}…': not a service code") and len(line) < 400, line[:500]
    assert main(["label", " 2 ", "--irrelevant"]) == 0  # digits with spaces around still name the item


# --- the model cache named by the environment: a file, a device or a path too long -------------------------------

CACHES = {  # each trained a model for a minute or more, then failed to save it (two lines, or a 5,000-character one)
    "a_file": lambda tmp: _file(tmp / "cache-file"),
    "a_device": lambda tmp: Path("/dev/null"),
    "through_a_file": lambda tmp: _file(tmp / "cache-file") / "sub",
    "too_long": lambda tmp: tmp / ("c" * 5000),
}


def _file(path: Path) -> Path:
    path.write_text("x", encoding="utf-8")
    return path


@pytest.fixture(params=sorted(CACHES))
def odd_model_cache(request, tmp_path, monkeypatch):
    place = CACHES[request.param](tmp_path)
    monkeypatch.setenv("MYNAWATCH_CACHE", str(place))
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return place


@pytest.mark.parametrize("argv", [["classifier", "explain", "マイナ保険証でエラー"], ["classify"]])
def test_a_model_cache_that_cannot_be_a_folder_is_refused_before_training(odd_model_cache, argv, capsys):
    from mynawatch.cli import main

    started = time.monotonic()
    assert main(argv) == 2
    line = _one_line(capsys)
    assert line.startswith(f"mynawatch: MYNAWATCH_CACHE '{str(odd_model_cache)[:60]}") and len(line) < 400, line
    assert "not a folder" in line or "too long" in line
    assert time.monotonic() - started < 10
    assert not (odd_model_cache.parent / "store.sqlite").exists()


def test_a_model_cache_folder_that_cannot_be_written_fails_before_training(tmp_path, monkeypatch, capsys):
    """/proc/self is a folder (as root, too, no file can be made there): the model was trained for a minute, then
    its save failed. Whether a model can be kept there is now tried before the training."""
    from mynawatch.cli import main

    monkeypatch.setenv("MYNAWATCH_CACHE", "/proc/self")
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(["classifier", "explain", "マイナ保険証でエラー"]) == 1
    line = _one_line(capsys)
    assert line.startswith("mynawatch: /proc/self/model-") and "MYNAWATCH_CACHE" in line and len(line) < 400, line
    assert time.monotonic() - started < 30
    assert not list(Path("/proc/self").glob("model-*"))


def test_a_collect_only_run_needs_no_model_cache(tmp_path, pg_url):
    """`run --role collect` (a PostgreSQL store's collecting process) loads no model: a model cache that cannot
    be a folder does not stop it, as it stops the roles that classify."""
    from sqlalchemy import create_engine, inspect

    from conftest import wait_until

    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "{pg_url}"\n', encoding="utf-8")
    env = dict(os.environ, MYNAWATCH_CACHE=str(_file(tmp_path / "cache-file")))
    proc = subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "run", "--role", "collect"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    engine = create_engine(pg_url)
    try:
        wait_until("the collect role's store", lambda: inspect(engine).has_table("items"), 60, procs=[proc],
                   tolerate=(Exception,))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        engine.dispose()
    assert "MYNAWATCH_CACHE" not in err and "Traceback" not in err, err
    classify = subprocess.run([sys.executable, "-m", "mynawatch.cli", "run", "--role", "classify"], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=60)
    assert classify.returncode == 2 and "MYNAWATCH_CACHE" in classify.stderr, classify.stderr


# --- report --out: odd folder names -------------------------------------------------------------------------------

OUT_NAMES = {
    "newline": "a\nb",  # the listing of the files written broke into two lines per file
    "six_thousand_characters": "o/" * 3000,  # File name too long: the whole path was quoted, a 6,031-character line
    "one_name_of_300_characters": "a" * 300,  # each name of a path has its own limit (255 bytes here)
}


@pytest.fixture(params=sorted(OUT_NAMES))
def odd_out(request, tmp_path, monkeypatch):
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return OUT_NAMES[request.param]


def test_report_out_of_an_odd_name_lists_one_line_per_file_or_fails_in_one_short_line(odd_out, capsys):
    from mynawatch.cli import main

    status = main(["report", "--date", "2024-09-17", "--out", odd_out])
    if "\n" in odd_out:
        assert status == 0
        out = capsys.readouterr().out.splitlines()
        assert out and all(line.split()[0] in ("text", "html", "chart", "hourly", "eml") for line in out), out
        assert "eml    a b/digest-2024-09-17.eml" in out
    else:  # bad input, refused before the report is built: usage's exit status
        assert status == 2
        line = _one_line(capsys)
        assert "too long for this system" in line and len(line) < 400, line[:600]


# --- digits that str.isdigit() takes and int() refuses: ² ----------------------------------------------------------

def test_review_answers_a_superscript_digit_with_an_error_line_and_reads_on(review_store, sessions):
    from store import labels as store_labels

    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(review_store), "review",
                           "--days", "36600"], input="c ²\nc\n³\nq\n", capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=_env())
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]  # a ValueError before
    assert "'²': not a cause code or a number from 1 to" in proc.stdout
    assert "'³': not a cause code or a number from 1 to" in proc.stdout
    with sessions.begin() as s:
        assert store_labels.human_labels(s) == []


def test_a_retry_after_in_a_latin1_superscript_is_not_read_as_a_broken_address(server):
    from datetime import datetime, timezone

    from collector.errors import FetchFailed
    from collector.fetch import FetchPolicy, fetch_feed, make_client
    from tests.conftest import Route

    server.routes["/feed"] = Route(b"busy", status=503, headers={"Retry-After": "²"})
    policy = FetchPolicy(timeout_seconds=5, host_interval_seconds=0)
    with make_client(policy) as client, pytest.raises(FetchFailed) as failed:
        fetch_feed(client, server.url("/feed"), etag=None, last_modified=None, policy=policy,
                   now=datetime(2024, 10, 16, tzinfo=timezone.utc))
    # before: "not a valid address (could not convert string to float: '²')", a soft failure, not a 503
    assert failed.value.status == 503 and str(failed.value).endswith("HTTP 503") and failed.value.retry_after is None


@pytest.mark.parametrize("when", ["²:30", "07:³⁰", "０７:３０"])
def test_a_report_time_in_other_digits_is_refused_at_load(tmp_path, when):
    from mynawatch.settings import SettingsError, load_settings

    path = tmp_path / "mynawatch.toml"
    path.write_text(f'[schedule]\nreport_time = "{when}"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="is not a time of day"):  # run said "invalid literal for int()" before
        load_settings(path)


# --- corrections that correct nothing; a search that echoes its query ---------------------------------------------

CORRECTING_NOTHING = {  # the first recorded the label the item had as a person's; the others were taken as "keep"
    "no_axis": (["label", "1"], "nothing to correct"),
    "empty_cause": (["label", "1", "--cause", ""], "'': not a cause code"),
    "empty_sentiment": (["label", "1", "--sentiment", ""], "'': not a sentiment code"),
}


@pytest.fixture(params=sorted(CORRECTING_NOTHING))
def correcting_nothing(request, review_store, monkeypatch):
    monkeypatch.chdir(review_store.parent)
    return CORRECTING_NOTHING[request.param]


def test_a_label_that_corrects_nothing_is_refused_and_records_nothing(correcting_nothing, sessions, capsys):
    from mynawatch.cli import main
    from store import labels as store_labels

    argv, expect = correcting_nothing
    assert main(argv) == 2
    assert expect in _one_line(capsys)
    with sessions.begin() as s:
        assert store_labels.human_labels(s) == []


def test_a_search_that_finds_nothing_quotes_a_long_query_by_its_start(review_store, monkeypatch, capsys):
    from mynawatch.cli import main

    monkeypatch.chdir(review_store.parent)
    assert main(["search", "ゑ" * 5000]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("0 item(s): nothing indexed matches 'ゑ") and "(5000 characters)" in line
    assert len(line) < 300, line[:400]


# --- db backup over the store itself, or a path too long --------------------------------------------------------

OVER_THE_STORE = {  # with --force the live store was replaced while a scheduler went on writing the old one
    "the_store": "store.sqlite",
    "its_wal": "store.sqlite-wal",
    "its_run_lock": "store.sqlite-run.lock",
    "the_store_by_another_name": "./sub/../store.sqlite",
}


@pytest.fixture(params=sorted(OVER_THE_STORE))
def over_the_store(request, review_store, monkeypatch):
    monkeypatch.chdir(review_store.parent)
    (review_store.parent / "sub").mkdir()
    return OVER_THE_STORE[request.param]


def test_a_backup_over_the_store_or_a_file_of_its_own_is_refused(over_the_store, sessions, capsys):
    from sqlalchemy import text

    from mynawatch.cli import main

    with sessions.begin() as s:
        before = s.execute(text("SELECT count(*) FROM items")).scalar()
    assert before
    assert main(["db", "backup", over_the_store, "--force"]) == 2
    assert "write the backup somewhere else" in _one_line(capsys)
    with sessions.begin() as s:
        assert s.execute(text("SELECT count(*) FROM items")).scalar() == before


def test_a_backup_path_too_long_for_the_system_is_bad_input(review_store, monkeypatch, capsys):
    from mynawatch.cli import main

    monkeypatch.chdir(review_store.parent)
    assert main(["db", "backup", "b" * 300]) == 2
    line = _one_line(capsys)
    assert "too long for this system" in line and len(line) < 400, line[:600]


# --- gold files typed loosely: "relevant": "yes", "services": "portal" --------------------------------------------

GOLD_TYPES = {  # the first was read as true; the second letter by letter ("'p' is not a valid Service")
    "relevant_as_a_word": ('{"relevant": "yes", "services": ["portal"], "cause": "none", "sentiment": "neutral"}',
                           'relevant: expected true or false, got "yes"'),
    "services_as_one_string": ('{"relevant": true, "services": "portal", "cause": "none", "sentiment": "neutral"}',
                               'services: expected a list of service codes, got "portal"'),
    "cause_as_a_list": ('{"relevant": true, "services": ["portal"], "cause": ["load"], "sentiment": "negative"}',
                        'cause: expected a string, got ["load"]'),
}


@pytest.fixture(params=sorted(GOLD_TYPES))
def gold_typed_loosely(request, tmp_path):
    line, expect = GOLD_TYPES[request.param]
    path = tmp_path / "gold.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    return path, expect


def test_a_gold_line_of_loose_types_is_refused_by_its_key(gold_typed_loosely, capsys):
    from mynawatch.cli import main

    path, expect = gold_typed_loosely
    assert main(["classifier", "evaluate", "--gold", str(path)]) == 2
    line = _one_line(capsys)
    assert f"{path}:1:" in line and expect in line, line


# --- a store never analyzed: the daily report's aggregates were planned blind (5 s on 1,000,000 items) -----------

def test_a_daily_report_refreshes_the_query_planners_statistics(review_store, monkeypatch, tmp_path):
    import sqlite3

    from mynawatch.cli import main

    monkeypatch.chdir(review_store.parent)
    store = review_store.parent / "store.sqlite"
    stats = "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
    with sqlite3.connect(store) as raw:
        assert raw.execute(stats).fetchone() == (0,)
    assert main(["report", "--date", "2024-10-02", "--out", str(tmp_path / "out")]) == 0
    with sqlite3.connect(store) as raw:
        assert raw.execute(stats).fetchone() == (1,)
        assert raw.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'items'").fetchone()[0] > 0
