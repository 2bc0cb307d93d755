"""Hostile input found by an audit after the hostile suites: settings a command cannot run with (a store URL
of another scheme or driver, [alerts.services] that are not tables, durations past what timers and dates
hold), numbers past what the store holds (ids, limits), days and times near year 1 or 9999, a spikes export
over millennia, and `db copy` given odd URLs. Each is refused at once with one line (status 2), no
traceback, and nothing stored changes or is made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import one_error_line

from mynawatch.cli import EVALUATE_MAX_BYTES, TAG_MAX_BYTES, MiB, main
from store.db import make_sessions

HUGE = "99999999999999999999999"  # past a 64-bit integer


_one_line = one_error_line  # (tests/conftest.py)


# --- settings ------------------------------------------------------------------------------------------------

SOURCE = '[[sources]]\nname = "x"\nurl = "http://127.0.0.1:9/feed.xml"\n'

SETTINGS = {
    "services_not_a_table": ('[alerts]\nservices = 5\n', "[alerts.services]: expected a [alerts.services.<code>] table"),
    "service_not_a_table": ('[alerts.services]\nportal = 5\n', "[alerts.services]: expected"),
    "store_file_scheme": ('[store]\nurl = "file:///etc/passwd"\n', "'file' is not a store mynawatch runs on"),
    "store_gopher_scheme": ('[store]\nurl = "gopher://127.0.0.1:70/x"\n', "'gopher' is not a store"),
    "store_url_empty": ('[store]\nurl = ""\n', "not a database URL"),
    "store_postgres_alias": ('[store]\nurl = "postgres://mw@127.0.0.1:1/x"\n', "'postgres' is not a store"),
    "store_driver_not_installed": ('[store]\nurl = "postgresql+asyncpg://mw@127.0.0.1:1/x"\n',
                                   "'postgresql+asyncpg' is not a store"),
    "store_unknown_sqlite_driver": ('[store]\nurl = "sqlite+nosuch:///x.sqlite"\n', "'sqlite+nosuch' is not a store"),
    "store_url_unreadable_hides_password": ('[store]\nurl = "postgresql://mw:hunter2@[::1/x"\n',
                                            "the URL is not shown"),
    "interval_past_a_year": (SOURCE + "interval_minutes = 9999999999\n", "interval_minutes: 9999999999 is too large"),
    "interval_past_64_bits": (SOURCE + "interval_minutes = 9223372036854775807\n", "is too large"),
    "fetch_timeout_huge": ('[fetch]\ntimeout_seconds = 1e300\n' + SOURCE, "[fetch] timeout_seconds: 1e+300 is too large"),
    "story_hours_huge": ('[collect]\nstory_hours = 1e300\n' + SOURCE, "[collect] story_hours"),
    "article_age_huge": ('[collect]\narticle_max_age_hours = 1e300\n' + SOURCE, "[collect] article_max_age_hours"),
    "classify_minutes_huge": ('[schedule]\nclassify_minutes = 9223372036854775807\n', "[schedule] classify_minutes"),
    "smtp_timeout_huge": ('[smtp]\ntimeout = 1e300\n', "[smtp] timeout"),
    "pending_hours_huge": ('[alerts]\npending_hours = 9223372036854775807\n', "[alerts] pending_hours"),
    "webhook_timeout_huge": ('[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\ntimeout_seconds = 1e300\n',
                             "[[webhooks]] #1 timeout_seconds"),
}


@pytest.fixture(params=sorted(SETTINGS))
def bad_settings(request, tmp_path, monkeypatch):
    text, expect = SETTINGS[request.param]
    path = tmp_path / "mynawatch.toml"
    if "[store]" not in text:
        text = '[store]\nurl = "sqlite:///store.sqlite"\n' + text
    path.write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path, expect


@pytest.mark.parametrize("command", [["sources"], ["collect"]])
def test_settings_a_command_cannot_run_with_are_refused_at_load(bad_settings, command, capsys):
    path, expect = bad_settings
    assert main(["--config", str(path), *command]) == 2
    line = _one_line(capsys)
    assert expect in line and str(path) in line, line
    assert "hunter2" not in line
    assert not (path.parent / "store.sqlite").exists()  # refused before any store was opened or made


def test_durations_up_to_a_year_still_load(tmp_path):
    from mynawatch.settings import load_settings

    path = tmp_path / "mynawatch.toml"
    path.write_text('[fetch]\ntimeout_seconds = 31622400\n[collect]\nstory_hours = 8784\n'
                    '[schedule]\nclassify_minutes = 527040\n' + SOURCE + "interval_minutes = 527040\n", encoding="utf-8")
    settings = load_settings(path)
    assert settings.sources[0].interval_minutes == 527040 and settings.collect.story_hours == 8784


# --- arguments, against a real store --------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty store at the latest schema with one silence, named by ./mynawatch.toml."""
    from datetime import datetime, timedelta, timezone

    from store import alerts as store_alerts

    path = tmp_path / "store.sqlite"
    sessions = make_sessions(f"sqlite:///{path}")
    now = datetime.now(timezone.utc)
    with sessions.begin() as session:
        store_alerts.add_silence(session, service="portal", starts_at=now, ends_at=now + timedelta(hours=6),
                                 comment="kept", created_by="test", now=now)
    sessions.kw["bind"].dispose()
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


def _silences(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT id, service, starts_at, ends_at, comment FROM silences ORDER BY id").fetchall()


IN_YEARS_DAY = "YYYY-MM-DD in the years 1900 to 9000"  # what a person may type (store.clock.TYPED_YEARS)
IN_YEARS_EITHER = "a day (2024-10-01) or a time (2024-10-01T09:00) in the years 1900 to 9000"
IN_YEARS_TIME = "a time like 2024-10-12T06:00 in the years 1900 to 9000 (Tokyo time, or with an offset)"

ARGUMENTS = {
    "silence_for_past_64_bits": (["silence", "add", "portal", "--for", "99999999999999d"], "at most 3660 days"),
    "silence_for_past_year_9999": (["silence", "add", "portal", "--for", "999999999d"], "at most 3660 days"),
    "silence_for_fullwidth_digits": (["silence", "add", "portal", "--for", "３h"], "expected a number"),
    "silence_from_year_1": (["silence", "add", "portal", "--from", "0001-01-01T00:00", "--for", "1h"],
                            f"--from '0001-01-01T00:00': expected {IN_YEARS_TIME}"),
    "silence_from_year_1_west": (["silence", "add", "portal", "--from", "0001-01-01T00:00-12:00", "--for", "1h"],
                                 f"--from '0001-01-01T00:00-12:00': expected {IN_YEARS_TIME}"),
    "silence_from_year_9999": (["silence", "add", "portal", "--from", "9999-12-31T20:00", "--for", "1d"],
                               f"--from '9999-12-31T20:00': expected {IN_YEARS_TIME}"),
    "silence_until_year_9999_west": (["silence", "add", "portal", "--until", "9999-12-31T23:00-14:00"],
                                     f"--until '9999-12-31T23:00-14:00': expected {IN_YEARS_TIME}"),
    "silence_until_not_a_time": (["silence", "add", "portal", "--until", "soon"],
                                 f"--until 'soon': expected {IN_YEARS_TIME}"),
    "silence_expire_past_64_bits": (["silence", "expire", HUGE], f"no silence {HUGE} in force"),
    "alerts_list_limit_past_64_bits": (["alerts", "list", "--limit", HUGE], "at most 100,000"),
    "alerts_list_limit_negative": (["alerts", "list", "--limit", "-1"], "at least 1"),
    "alerts_outbox_limit_past_64_bits": (["alerts", "outbox", "--limit", HUGE], "at most 100,000"),
    "backfill_since_year_1": (["alerts", "backfill", "--since", "0001-01-01"], f"--since '0001-01-01': expected {IN_YEARS_EITHER}"),
    "backfill_since_year_9999": (["alerts", "backfill", "--since", "9999-12-31"], f"--since '9999-12-31': expected {IN_YEARS_EITHER}"),
    "backfill_until_year_1": (["alerts", "backfill", "--since", "2024-09-16", "--until", "0001-01-01"],
                              f"--until '0001-01-01': expected {IN_YEARS_EITHER}"),
    "spikes_export_year_1": (["spikes", "export", "--since", "0001-01-01", "--until", "0001-01-02"],
                             f"--since '0001-01-01': expected {IN_YEARS_DAY} (a Tokyo day)"),
    "spikes_export_year_9999": (["spikes", "export", "--since", "2024-09-16", "--until", "9999-12-31"],
                                f"--until '9999-12-31': expected {IN_YEARS_DAY} (a Tokyo day)"),
    "spikes_export_millennia": (["spikes", "export", "--since", "1900-01-01", "--until", "9000-01-01"],
                                "at most 1830 days"),
    "spikes_export_unknown_service": (["spikes", "export", "--since", "2024-09-16", "--until", "2024-09-17",
                                       "--service", "nonsense"], "not a service code"),
    "label_id_past_64_bits": (["label", HUGE, "--relevant"], f"no item {HUGE} in the store"),
    "review_days_past_dates": (["review", "--days", "99999999999", "--count"], "at most 36600"),
    "report_date_year_9999": (["report", "--date", "9999-12-31", "--out", "out"],
                              f"--date '9999-12-31': expected {IN_YEARS_DAY}"),
    "report_date_year_1": (["report", "--date", "0001-01-01", "--out", "out"],
                           f"--date '0001-01-01': expected {IN_YEARS_DAY}"),
    "report_date_year_10000": (["report", "--date", "10000-01-01", "--out", "out"],
                               f"--date '10000-01-01': expected {IN_YEARS_DAY}"),
    "report_month_year_9999": (["report", "--month", "9999-12", "--out", "out"],
                               "--month '9999-12': expected YYYY-MM in the years 1900 to 9000"),
    "report_month_year_1": (["report", "--month", "0001-01", "--out", "out"],
                            "--month '0001-01': expected YYYY-MM in the years 1900 to 9000"),
    "incidents_since_year_1": (["incidents", "list", "--since", "0001-01-01"], f"--since '0001-01-01': expected {IN_YEARS_EITHER}"),
    "incidents_since_past_9999": (["incidents", "list", "--since", "9999-12-31T23:00-14:00"],
                                  f"--since '9999-12-31T23:00-14:00': expected {IN_YEARS_EITHER}"),
    "search_since_year_1": (["search", "マイナ", "--since", "0001-01-01"],
                            f"--since '0001-01-01': expected {IN_YEARS_DAY}"),
    "demo_days_past_the_sample_month": (["demo", "--days", "99999999999", "--out", "out"], "1 to 30 days"),
    "demo_days_zero": (["demo", "--days", "0", "--out", "out"], "1 to 30 days"),
    "copy_to_file_url": (["db", "copy", "sqlite:///store.sqlite", "file:///tmp/x"], "DST_URL: 'file' is not a store"),
    "copy_to_gopher_url": (["db", "copy", "sqlite:///store.sqlite", "gopher://127.0.0.1/x"], "'gopher' is not"),
    "copy_to_empty_url": (["db", "copy", "sqlite:///store.sqlite", ""], "DST_URL: not a database URL"),
    "copy_from_postgres_alias": (["db", "copy", "postgres://mw:pw@127.0.0.1:1/x", "sqlite:///copy.sqlite"],
                                 "SRC_URL: 'postgres' is not a store"),
    "copy_from_missing_file": (["db", "copy", "sqlite:///missing.sqlite", "sqlite:///copy.sqlite"],
                               "SRC_URL: no store at missing.sqlite"),
}


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
def test_arguments_past_what_dates_and_the_store_hold_get_one_line(name, store, capsys):
    argv, expect = ARGUMENTS[name]
    before = _silences(store)
    assert main(argv) == 2
    line = _one_line(capsys)
    assert expect in line, line
    assert _silences(store) == before  # nothing stored changed
    left = sorted(p.name for p in store.parent.iterdir())
    assert "missing.sqlite" not in left and "copy.sqlite" not in left and "out" not in left, left


def test_a_silence_near_the_end_of_the_typed_years_is_stored_and_listed(store, capsys):
    assert main(["silence", "add", "portal", "--from", "9000-12-31T20:00", "--for", "3660d"]) == 0
    assert main(["silence", "list"]) == 0
    out = capsys.readouterr().out
    assert "9000-12-31 20:00 +09:00 → 9011-01-08 20:00 +09:00" in out


def test_db_copy_of_a_real_store_still_works(store, capsys):
    assert main(["db", "copy", "sqlite:///store.sqlite", "sqlite:///copy.sqlite"]) == 0
    assert "counts and checksums match" in capsys.readouterr().out


def test_in_a_real_process_a_bad_store_url_is_one_line(tmp_path):
    (tmp_path / "m.toml").write_text('[store]\nurl = "gopher://127.0.0.1:70/x"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(tmp_path / "m.toml"), "sources"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"mynawatch: {tmp_path / 'm.toml'}: [store] url: 'gopher' is not a store mynawatch runs on "
        "(one of sqlite, sqlite+pysqlite, postgresql, postgresql+psycopg)"]


# --- classifier evaluate: the files of the real check ---------------------------------------------------------

REAL_HEAD = "url\tdate\trelevant\tservices\tcause\tsentiment\tregister\n"


@pytest.fixture(params=["texts_line_an_array", "texts_line_a_number", "check_field_past_csv_limit"])
def bad_real_check(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check = tmp_path / "check.tsv"
    check.write_text(REAL_HEAD + "https://example.com/a\t2024-10-01\tfalse\t\tnone\tneutral\tnews\n", encoding="utf-8")
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"url": "https://example.com/a", "title": "x"}\n', encoding="utf-8")
    if request.param == "texts_line_an_array":
        texts.write_text('{"url": "https://example.com/a", "title": "x"}\n[]\n', encoding="utf-8")
        return ["--real-check", str(check), "--real-texts", str(texts)], f"{texts}:2: expected an object with a url"
    if request.param == "texts_line_a_number":
        texts.write_text("5\n", encoding="utf-8")
        return ["--real-check", str(check), "--real-texts", str(texts)], f"{texts}:1: expected an object with a url"
    check.write_text(REAL_HEAD + "https://example.com/" + "a" * 200_000 + "\t2024-10-01\tfalse\t\tnone\tneutral\tnews\n",
                     encoding="utf-8")
    return ["--real-check", str(check)], f"{check}: not a tab-separated file of labeled URLs (field larger"


def test_a_bad_real_check_file_is_named_in_one_line_before_the_model_loads(bad_real_check, capsys):
    argv, expect = bad_real_check
    assert main(["classifier", "evaluate", *argv]) == 2
    assert expect in _one_line(capsys)


# --- a page source's CSS selector -------------------------------------------------------------------------------

PAGE = "<html><body><main><p>マイナポータル メンテナンスのお知らせ</p></main></body></html>".encode()


@pytest.fixture(params=["a[", "::", "main >>> p", ":has(", "*" * 10_000, ":nth-child(" + "(" * 5000])
def page_settings(request, server, tmp_path, monkeypatch):
    """A page source on a real loopback server, with a selector soupsieve cannot read, and a good feed."""
    from conftest import Route

    server.routes["/page"] = Route(PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    selector = request.param.replace("\\", "\\\\").replace('"', '\\"')
    path = tmp_path / "mynawatch.toml"
    path.write_text(f'[store]\nurl = "sqlite:///store.sqlite"\n[[sources]]\nname = "page"\nkind = "page"\n'
                    f'url = "{server.url("/page")}"\nselector = "{selector}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path, server


def test_a_selector_that_is_not_css_is_refused_at_load_not_at_every_fetch(page_settings, capsys):
    path, server = page_settings
    assert main(["--config", str(path), "collect"]) == 2
    line = _one_line(capsys)
    assert "[[sources]] #1: source 'page': selector" in line and "is not a CSS selector" in line, line
    assert len(line) < 600
    assert server.routes["/page"].hits == 0


def test_a_good_selector_still_reads_the_page(server, tmp_path, monkeypatch, capsys):
    from conftest import Route

    server.routes["/page"] = Route(PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    path = tmp_path / "mynawatch.toml"
    path.write_text(f'[store]\nurl = "sqlite:///store.sqlite"\n[[sources]]\nname = "page"\nkind = "page"\n'
                    f'url = "{server.url("/page")}"\nselector = "main > p:first-child"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(path), "collect"]) == 0
    assert "Traceback" not in capsys.readouterr().err and server.routes["/page"].hits == 1


# --- mail addresses --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, expect", [
    ('recipients = ["ops@example.com\\r\\nBcc: evil@example.com"]', "every recipient must be an email address"),
    ('recipients = ["ops@example.com, evil@example.com"]', "every recipient must be an email address"),
    ('recipients = ["ops@exa\\u0000mple.com"]', "every recipient must be an email address"),
    ('recipients = ["Ops <ops@example.com>"]', "every recipient must be an email address"),
    ('sender = "mw@example.com\\nBcc: evil@example.com"', "[smtp] sender: 'mw@example.com\\nBcc: evil@example.com' is not one"),
])
def test_a_mail_address_that_would_add_a_header_or_a_recipient_is_refused(setting, expect, tmp_path, monkeypatch,
                                                                          capsys):
    path = tmp_path / "mynawatch.toml"
    path.write_text(f'[store]\nurl = "sqlite:///store.sqlite"\n[smtp]\nhost = "127.0.0.1"\nport = 9\n{setting}\n',
                    encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(path), "report", "--date", "2024-09-17", "--send"]) == 2
    assert expect in _one_line(capsys)
    assert not (tmp_path / "store.sqlite").exists()


def test_japanese_and_plain_addresses_still_load(tmp_path):
    from mynawatch.settings import load_settings

    path = tmp_path / "mynawatch.toml"
    path.write_text('[smtp]\nsender = "mw@example.jp"\nrecipients = ["ops@example.com", "運用@例え.jp"]\n',
                    encoding="utf-8")
    assert load_settings(path).smtp.recipients == ("ops@example.com", "運用@例え.jp")


# --- a store written by a version that took any interval -------------------------------------------------------

def test_a_stored_source_interval_past_a_year_does_not_break_the_report(tmp_path, monkeypatch, capsys):
    from datetime import datetime, timezone

    from store import items as store_items
    from store.tables import FetchLog

    path = tmp_path / "store.sqlite"
    sessions = make_sessions(f"sqlite:///{path}")
    with sessions.begin() as s:  # what `collect` stored before the settings refused such an interval
        state = store_items.upsert_source(s, name="old", url="http://127.0.0.1:9/feed.xml", kind="feed",
                                          publisher="古い", interval_minutes=99_999_999_999_999_999)
        s.add(FetchLog(source_id=state.id, started_at=datetime(2024, 9, 17, 1, tzinfo=timezone.utc),
                       outcome="new"))
    sessions.kw["bind"].dispose()
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--date", "2024-09-17", "--out", "out"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert any(p.suffix == ".html" for p in (tmp_path / "out").rglob("*"))


# --- --force replaces a file only --------------------------------------------------------------------------------

@pytest.fixture(params=["folder", "fifo"])
def not_a_file(request, store):
    target = store.parent / f"target-{request.param}"
    if request.param == "folder":
        target.mkdir()
        (target / "kept.txt").write_text("kept", encoding="utf-8")
    else:
        os.mkfifo(target)
    return target


@pytest.mark.parametrize("command", [["db", "backup", "{target}", "--force"], ["init", "--path", "{target}", "--force"]])
def test_force_never_puts_a_file_in_place_of_a_folder_or_a_pipe(not_a_file, command, capsys):
    kind = "folder" if not_a_file.is_dir() else "pipe"
    assert main([a.format(target=not_a_file) for a in command]) == 2
    line = _one_line(capsys)
    assert f"{not_a_file} is " in line and "--force replaces only a file" in line, line
    assert (not_a_file / "kept.txt").exists() if kind == "folder" else not not_a_file.is_file()
    assert not [p for p in not_a_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_force_still_replaces_an_earlier_backup(store, capsys):
    target = store.parent / "copy.sqlite"
    target.write_bytes(b"an older copy")
    assert main(["db", "backup", str(target), "--force"]) == 0
    assert target.read_bytes()[:16] == b"SQLite format 3\x00"


# --- the settings file itself ------------------------------------------------------------------------------------

@pytest.fixture(params=["fifo", "device", "huge"])
def odd_settings_file(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if request.param == "fifo":  # nobody writes to it: opening it waited for ever
        path = tmp_path / "settings.fifo"
        os.mkfifo(path)
        return path, "not a regular file"
    if request.param == "device":  # endless: read whole, it filled the memory
        return Path("/dev/zero"), "not a regular file"
    path = tmp_path / "huge.toml"
    with path.open("wb") as fh:
        fh.write(b"# " + b"x" * (11 * 1024 * 1024) + b"\n")
    return path, "larger than 10 MiB"


def test_a_settings_path_that_is_a_pipe_a_device_or_huge_is_refused_at_once(odd_settings_file):
    path, expect = odd_settings_file
    done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(path), "sources"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and expect in done.stderr, done.stderr


@pytest.mark.parametrize("flag", ["--gold", "--real-check", "--real-texts"])
def test_evaluate_refuses_a_device_before_reading_it_whole(flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["classifier", "evaluate", flag, "/dev/zero"]) == 2
    assert f"{flag} /dev/zero: not a regular file" in _one_line(capsys)


def test_evaluate_reads_files_that_start_with_a_byte_order_mark(tmp_path):
    """`classifier evaluate --gold/--real-check/--real-texts` read these files through these three readers."""
    from classifier.corpus import read_examples
    from classifier.realcheck import read_real_check, read_texts

    gold = tmp_path / "gold.jsonl"
    gold.write_bytes(b"\xef\xbb\xbf" + '{"id": "g", "title": "マイナポータルがつながりにくい", "relevant": true, '
                     '"services": ["portal"], "cause": "load", "sentiment": "negative"}\n'.encode())
    check = tmp_path / "check.tsv"
    check.write_bytes(b"\xef\xbb\xbf" + (REAL_HEAD + "https://example.com/a\t2024-10-01\tfalse\t\tnone\tneutral\tnews\n")
                      .encode())
    texts = tmp_path / "texts.jsonl"
    texts.write_bytes(b'\xef\xbb\xbf{"url": "https://example.com/a", "title": "x"}\n')
    assert [e.id for e in read_examples(gold)] == ["g"]
    assert [i.url for i in read_real_check(check)] == ["https://example.com/a"]
    assert read_texts(texts) == {"https://example.com/a": ("x", "")}


# --- Ctrl-C inside SQLite's call of the search tokenizer -----------------------------------------------------------

def _store_waiting_for_the_search_index(path: Path, copies: int) -> int:
    """A store of ``copies`` items, none in the search index yet (search indexes them first, through the
    tokenizer SQLite calls as a function); how many items it holds."""
    from datetime import datetime, timezone

    from collector.jobs import save_entries
    from collector.sources import SourceConfig
    from store import items as store_items
    from store.records import Entry

    t0 = datetime(2024, 10, 2, 2, tzinfo=timezone.utc)
    sessions = make_sessions(f"sqlite:///{path}")
    with sessions.begin() as s:
        source = SourceConfig("src", "http://127.0.0.1:9/feed.xml", publisher="NHK")
        state = store_items.upsert_source(s, name="src", url=source.url, kind="feed", publisher="NHK",
                                          interval_minutes=60)
        save_entries(s, state.id, source, [Entry(url="https://example.com/0", title="マイナポータルで障害 アクセス集中",
                                                 summary="マイナ保険証の資格確認ができない。" * 40, published=t0)], now=t0)
    sessions.kw["bind"].dispose()
    with sqlite3.connect(path) as c:
        cols = [r[1] for r in c.execute("PRAGMA table_info(items)") if r[1] not in ("id", "canonical_url", "guid",
                                                                                     "title_key")]
        keep = ", ".join(cols)
        for k in range(copies - 1):
            c.execute(f"INSERT INTO items (canonical_url, guid, title_key, {keep}) SELECT canonical_url || '?{k}', "
                      f"coalesce(guid, canonical_url) || '#{k}', title_key || '#{k}', {keep} FROM items WHERE id = 1")
        c.commit()
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty -wal: what search writes shows in it
        return c.execute("SELECT count(*) FROM items").fetchone()[0]


def test_ctrl_c_while_search_indexes_is_interrupted_not_a_traceback(tmp_path):
    from conftest import wait_until

    path = tmp_path / "store.sqlite"
    count = _store_waiting_for_the_search_index(path, 30_000)
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    wal = tmp_path / "store.sqlite-wal"
    proc = subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "search", "マイナ"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:  # the first batches are in the index: the tokenizer is at work on the next
        wait_until("the search index growing", lambda: wal.exists() and wal.stat().st_size > 100_000, 120,
                   procs=[proc], every=0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "mynawatch: interrupted", err
    assert proc.returncode == 130
    with sqlite3.connect(path) as c:  # nothing lost, nothing damaged
        assert c.execute("SELECT count(*) FROM items").fetchone()[0] == count
        assert c.execute("PRAGMA quick_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("delay", [0.15, 0.4])
def test_ctrl_c_at_any_moment_of_the_installed_command_is_one_line(tmp_path, delay, model):
    """SIGINT while the command still loads its libraries (its first second): `mynawatch: interrupted`,
    status 130, never a traceback from inside an import, as once it runs (the other Ctrl-C tests). The
    installed command's entry point (pyproject [project.scripts]: mynawatch.entry:main), run as the console
    script does. (Later, `run` stops gracefully: it lets the job under way finish, which on a fresh model
    cache is a training of a minute: hence the run's model, ``model``, in the cache first.)"""
    config = tmp_path / "m.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.sqlite"}"\n', encoding="utf-8")
    script = "import sys; from mynawatch.entry import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", script, "--config", str(config), "run"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a run that outlives the test never stays behind
    assert proc.returncode == 130 and err.endswith("mynawatch: interrupted\n") and "Traceback" not in err, err


# --- the input FILE of `tag`, `spikes detect` and `classifier evaluate` ------------------------------------------

class Hung(BaseException):
    """The command was still reading when the test's alarm rang (main() catches Exception, not this)."""


@contextmanager
def _within(seconds: int):
    """Fail, rather than wait for ever, when the command blocks on a pipe or reads a device without end."""
    def ring(signum, frame):
        raise Hung(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(params=["fifo", "link_to_a_fifo", "dev_zero", "dev_null", "socket", "folder", "huge_sparse_file",
                        "missing_folder", "under_a_file"])
def not_an_input_file(request, tmp_path, monkeypatch):
    """A path `tag` or `spikes detect` must refuse at once, and what the line says."""
    monkeypatch.chdir(tmp_path)  # short relative names: a socket's path has a length limit
    kind = request.param
    if kind == "fifo":  # nobody writes to it: opening it waited for ever
        os.mkfifo("in.fifo")
        return "in.fifo", "in.fifo: not a regular file (a device, a pipe or a socket)"
    if kind == "link_to_a_fifo":
        os.mkfifo("real.fifo")
        os.symlink("real.fifo", "in.jsonl")
        return "in.jsonl", "in.jsonl: not a regular file"
    if kind == "dev_zero":  # endless zeros: read until killed
        return "/dev/zero", "/dev/zero: not a regular file"
    if kind == "dev_null":
        return "/dev/null", "/dev/null: not a regular file"
    if kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind("in.sock")
        request.addfinalizer(sock.close)
        return "in.sock", "in.sock: not a regular file"
    if kind == "folder":
        os.mkdir("in.d")
        (tmp_path / "in.d" / "kept.jsonl").write_text("{}\n", encoding="utf-8")
        return "in.d", "in.d: a folder, not a"
    if kind == "huge_sparse_file":  # past both limits, and no disk space taken
        with open("huge.jsonl", "wb") as fh:
            fh.truncate(TAG_MAX_BYTES + 1)
        return "huge.jsonl", "huge.jsonl: larger than"
    if kind == "missing_folder":
        return "no/such/in.jsonl", "no/such/in.jsonl: no such file"
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    return "plain/in.jsonl", "plain/in.jsonl: no such file (a part of the path is a file, not a folder)"


@pytest.mark.parametrize("command", [["tag"], ["spikes", "detect"]])
def test_a_batch_input_that_is_not_a_regular_file_is_refused_at_once(not_an_input_file, command, capsys):
    path, expect = not_an_input_file
    before = sorted(p.name for p in Path.cwd().iterdir())
    with _within(30):
        assert main([*command, path]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"mynawatch: {expect}"), line
    assert capsys.readouterr().out == ""
    assert sorted(p.name for p in Path.cwd().iterdir()) == before  # nothing made, nothing removed
    if path == "in.d":
        assert (Path("in.d") / "kept.jsonl").read_text(encoding="utf-8") == "{}\n"


def test_a_fifo_is_refused_in_a_real_process_too(tmp_path):
    os.mkfifo(tmp_path / "in.fifo")
    done = subprocess.run([sys.executable, "-m", "mynawatch.cli", "spikes", "detect", "in.fifo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "mynawatch: in.fifo: not a regular file (a device, a pipe or a socket): give a CSV file, or - to read "
        "standard input"], done.stderr


def _without_root_reads() -> list[str]:
    """The prefix that runs a command without root's power to read every file when the tests run as root:
    the same user, its capabilities to bypass file modes dropped (another user such as nobody could not
    read a checkout in a private folder, as a clean clone under mktemp is)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("run as root, and no setpriv to drop root's power to read every file")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("command", [["tag"], ["spikes", "detect"]])
def test_an_unreadable_input_file_is_named_in_one_line(command, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "title": "x"}\n', encoding="utf-8")
    path.chmod(0)
    unprivileged = _without_root_reads()
    done = subprocess.run([*unprivileged, sys.executable, "-m", "mynawatch.cli", *command, str(path)], cwd="/",
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"mynawatch: {path}: not allowed to read it"], done.stderr


def test_a_counts_file_that_grows_past_the_limit_while_read_is_refused(tmp_path, monkeypatch, capsys):
    """A file still being written faster than it is read: refused once past the limit, not read until killed.
    The file is whole here; fstat reports the size it had when opened."""
    import mynawatch.cli as cli

    path = tmp_path / "counts.csv"
    path.write_text("time,series,count\n" + "".join(f"2024-09-01T{h % 24:02d}:00:00+09:00,s{h},1\n"
                                                    for h in range(4000)), encoding="utf-8")
    real_fstat = os.fstat

    def as_when_opened(fd):
        st = real_fstat(fd)
        return os.stat_result((*st[:6], 100, *st[7:10]))  # st_size: 100 bytes

    monkeypatch.setattr(cli, "COUNTS_MAX_BYTES", 64 * 1024)
    monkeypatch.setattr(cli.os, "fstat", as_when_opened)
    with _within(30):
        assert main(["spikes", "detect", str(path)]) == 2
    line = _one_line(capsys)
    assert f"{path}: larger than 64 KiB, the limit for this command" in line and "(it grew while read)" in line, line


def test_a_counts_file_on_standard_input_still_reads(tmp_path, monkeypatch, capsys):
    import io

    rows = "time,series,count\n" + "".join(f"2024-09-01T{h:02d}:00:00+09:00,portal,{1 if h < 20 else 40}\n"
                                           for h in range(24))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(rows.encode())))
    assert main(["spikes", "detect", "-"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err == ""


@pytest.fixture(params=["nul_only_line", "binary_garbage", "not_utf8_on_line_3", "line_over_64_kib"])
def odd_counts_file(request, tmp_path):
    path = tmp_path / "counts.csv"
    rows = b"time,series,count\n2024-09-01T00:00:00+09:00,portal,1\n"
    body, expect = {
        "nul_only_line": (rows + b"\0\0\0\0\n", "line 3: expected 3 fields"),
        "binary_garbage": (bytes(range(255, -1, -1)) * 64, "line 1: not UTF-8 (byte 0xff at column 1)"),
        "not_utf8_on_line_3": (rows + b"2024-09-01T01:00:00+09:00,port\xffal,1\n", "line 3: not UTF-8 (byte 0xff"),
        "line_over_64_kib": (rows + b"x" * (70 * 1024) + b"\n", "line 3: longer than 65536 bytes"),
    }[request.param]
    path.write_bytes(body)
    return path, expect


def test_a_counts_file_of_odd_bytes_names_the_line(odd_counts_file, capsys):
    path, expect = odd_counts_file
    assert main(["spikes", "detect", str(path)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"mynawatch: {path}: ") and expect in line, line
    assert len(line) < 2000


def test_tag_answers_a_nul_only_line_with_an_error_object(model, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "title": "\xe3\x83\x9e\xe3\x82\xa4\xe3\x83\x8a"}\n\0\0\0\0\n')
    assert main(["tag", str(path)]) == 1
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [o["id"] for o in out] == ["a", None] and out[1]["error"].startswith("line 2: not JSON")
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1


def test_a_whole_number_of_thousands_of_digits_is_refused_by_its_length(model, tmp_path, capsys):
    """Python converts at most 4,300 digits and says so with advice about sys.set_int_max_str_digits; the
    input formats need no whole number of more than 100 digits, and say so."""
    big = "9" * 5000
    path = tmp_path / "in.jsonl"
    path.write_text(f'{{"id": {big}, "title": "マイナ"}}\n{{"id": "b", "title": "マイナ", "n": -{big}}}\n'
                    f'{{"id": "c", "title": "マイナポータル", "n": {"9" * 100}}}\n', encoding="utf-8")
    assert main(["tag", str(path)]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o.get("error") for o in out[:2]] == ["line 1: a number of 5,000 digits (at most 100)",
                                                "line 2: a number of 5,000 digits (at most 100)"]
    assert out[2]["id"] == "c" and out[2]["relevant"] is True  # 100 digits are read
    texts = tmp_path / "texts.jsonl"
    texts.write_text(f'{{"url": "https://example.jp/a", "title": "x", "n": {big}}}\n', encoding="utf-8")
    assert main(["classifier", "evaluate", "--real-texts", str(texts)]) == 2
    line = _one_line(capsys)
    assert "a number of 5,000 digits (at most 100)" in line and "set_int_max_str_digits" not in line, line


@pytest.fixture(params=["fifo", "folder", "binary_garbage", "not_utf8_on_line_2", "line_over_1_mib",
                        "huge_sparse_file", "nul_only_line", "empty", "missing", "nested_200000_deep",
                        "title_a_number"])
def odd_evaluate_file(request, tmp_path, monkeypatch):
    """A file given to `classifier evaluate`, and what the one line says (the flag and the file, at once)."""
    monkeypatch.chdir(tmp_path)
    good = ('{"id": "g", "title": "マイナポータルがつながりにくい", "relevant": true, "services": ["portal"], '
            '"cause": "load", "sentiment": "negative"}\n').encode()
    path = tmp_path / "in.jsonl"
    kind = request.param
    if kind == "fifo":
        os.mkfifo(path)
        return path, "{flag} {path}: not a regular file (a device, a pipe or a socket)"
    if kind == "folder":
        path.mkdir()
        return path, "{flag} {path}: a folder, not a"
    if kind == "huge_sparse_file":
        with path.open("wb") as fh:
            fh.truncate(EVALUATE_MAX_BYTES + 1)
        return path, "{flag} {path}: larger than 64 MiB"
    if kind == "missing":  # a missing real check measures nothing (tests/test_no_traceback's good case)
        return path, {"--gold": "{flag} {path}: no such file", "--real-texts": "{flag} {path}: no such file"}
    body, expect = {
        "binary_garbage": (bytes(range(255, -1, -1)) * 64, "{flag} {path}: line 1: not UTF-8 (byte 0xff at column 1)"),
        "not_utf8_on_line_2": (good + b'{"id": "\x80"}\n', "{flag} {path}: line 2: not UTF-8 (byte 0x80 at column 9)"),
        "line_over_1_mib": (good + b"[" * (MiB + 10) + b"\n", "{flag} {path}: line 2: longer than 1 MiB"),
        "nul_only_line": (b"\0\0\0\0\n", "{path}"),
        "empty": (b"", {"--gold": "--gold {path}: no labeled item in it", "--real-check": "{path}: missing column(s)"}),
        "nested_200000_deep": (b'{"url": ' + b"[" * 200_000 + b"\n",
                               {"--gold": "{flag} {path}: a line nests arrays or objects too deeply",
                                "--real-texts": "{flag} {path}: a line nests arrays or objects too deeply"}),
        "title_a_number": (good.replace(b'"title": "', b'"title": 5, "x": "'),
                           {"--gold": "{flag} {path}: item 'g': title and text must be strings"}),
    }[kind]  # an empty --real-texts gives no texts: the real check measures what the store shows
    path.write_bytes(body)
    return path, expect


@pytest.mark.parametrize("flag", ["--gold", "--real-check", "--real-texts"])
def test_a_bad_evaluate_file_is_named_in_one_line_before_the_model_loads(odd_evaluate_file, flag, capsys):
    path, expect = odd_evaluate_file
    if isinstance(expect, dict) and flag not in expect:
        pytest.skip(f"not an error for {flag}")
    with _within(30):
        assert main(["classifier", "evaluate", flag, str(path)]) == 2
    line = _one_line(capsys)
    expect = expect[flag] if isinstance(expect, dict) else expect
    assert expect.format(flag=flag, path=path) in line, line
    assert len(line) < 400


# --- review: a very long bad answer ------------------------------------------------------------------------------

LONG = "ア" * 30 + "\x1b[2J" + "z" * 200_000  # a paste gone wrong, with a terminal escape in its first 40 characters


@pytest.fixture
def review_store(tmp_path, sessions, model, monkeypatch):
    """A store of items the model tagged, some of them queued for review, named by ./mynawatch.toml."""
    from classifier.jobs import tag_items
    from test_review import NOW, fill

    fill(sessions)
    tag_items(sessions, model, now=NOW)
    (tmp_path / "mynawatch.toml").write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return sessions


@pytest.mark.parametrize("answer", [LONG, "c " + LONG, "y " + LONG, "s 1 " + LONG])
def test_review_quotes_a_long_bad_answer_by_its_first_40_characters(review_store, answer, monkeypatch, capsys):
    import io

    from store import labels as store_labels

    monkeypatch.setattr(sys, "stdin", io.StringIO(answer + "\nq\n"))
    assert main(["review", "--days", "36600"]) == 0
    out = capsys.readouterr().out
    (echo,) = [line for line in out.splitlines() if "…" in line]
    assert len(echo) < 120, echo[:300]
    shown = {"ア": LONG.lower(), "y": answer}.get(answer[0], LONG)  # a key is read in lower case
    assert repr(shown[:40] + "…") in echo and "\x1b" not in out, echo
    with review_store.begin() as s:
        assert store_labels.human_labels(s) == []  # nothing recorded


# --- db copy: a side that cannot be used is named, never the settings file's store ------------------------------

@pytest.fixture(params=["refused", "closes_at_once", "answers_http", "never_answers"])
def unreachable_postgres(request, monkeypatch):
    """A PostgreSQL URL (with a password) on a real loopback port where no PostgreSQL answers."""
    import threading

    import mynawatch.cli as cli

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if request.param == "refused":
        listener.close()
        return f"postgresql+psycopg://mw:hunter2@127.0.0.1:{port}/mynawatch"
    listener.listen(8)
    held = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at the end of the test
                return
            if request.param == "answers_http":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if request.param == "never_answers":
                held.append(conn)
            else:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(cli, "COPY_CONNECT_SECONDS", 2)
    request.addfinalizer(lambda: [s.close() for s in [listener, *held]])
    return f"postgresql+psycopg://mw:hunter2@127.0.0.1:{port}/mynawatch"


@pytest.mark.parametrize("side", ["DST_URL", "SRC_URL"])
def test_db_copy_names_the_side_it_cannot_reach_without_its_password(unreachable_postgres, side, store, capsys):
    argv = (["sqlite:///store.sqlite", unreachable_postgres] if side == "DST_URL"
            else [unreachable_postgres, "sqlite:///copy.sqlite"])
    before = sorted(p.name for p in store.parent.iterdir())
    with _within(30):
        assert main(["db", "copy", *argv]) == 1
    line = _one_line(capsys)
    shown = unreachable_postgres.replace(":hunter2@", ":***@")
    assert line.startswith(f"mynawatch: db copy {side} {shown}: cannot reach it ("), line
    assert "hunter2" not in line and str(store) not in line and "store.sqlite" not in line, line
    assert sorted(p.name for p in store.parent.iterdir()) == before


@pytest.fixture(params=["folder", "fifo", "dev_zero", "not_sqlite", "nul_bytes", "under_a_file"])
def not_a_store_path(request, store):
    """A SQLite path `db copy` cannot use on either side, and what the line says after the side's name."""
    kind, folder = request.param, store.parent
    if kind == "folder":
        (folder / "x.sqlite").mkdir()
        return "x.sqlite", "x.sqlite: a folder, not a SQLite store"
    if kind == "fifo":  # nobody writes to it
        os.mkfifo(folder / "x.sqlite")
        return "x.sqlite", "x.sqlite: not a regular file (a device, a pipe or a socket), not a SQLite store"
    if kind == "dev_zero":
        return "/dev/zero", "/dev/zero: not a regular file"
    if kind == "not_sqlite":
        (folder / "x.sqlite").write_text("# notes, not a store\n", encoding="utf-8")
        return "x.sqlite", "x.sqlite: not a SQLite database"
    if kind == "nul_bytes":
        (folder / "x.sqlite").write_bytes(b"\0" * 4096)
        return "x.sqlite", "x.sqlite: not a SQLite database"
    (folder / "plain").write_text("kept", encoding="utf-8")
    return "plain/x.sqlite", f"plain/x.sqlite: {folder / 'plain'} is a file, not a folder"


@pytest.mark.parametrize("side", ["DST_URL", "SRC_URL"])
def test_db_copy_refuses_a_path_that_is_not_a_store_naming_its_side(not_a_store_path, side, store, capsys):
    path, expect = not_a_store_path
    if side == "SRC_URL" and path == "plain/x.sqlite":
        expect = "no store at plain/x.sqlite"
    before = {p.name: (p.stat().st_size if p.is_file() else None) for p in store.parent.iterdir()}
    argv = ["sqlite:///store.sqlite", f"sqlite:///{path}"] if side == "DST_URL" else [f"sqlite:///{path}",
                                                                                      "sqlite:///copy.sqlite"]
    with _within(30):
        assert main(["db", "copy", *argv]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"mynawatch: db copy {side}") and expect in line, line
    after = {p.name: (p.stat().st_size if p.is_file() else None) for p in store.parent.iterdir()}
    assert after == before  # nothing made (no lock file, no copy), nothing changed


# --- the settings file and its store path: a folder, a pipe, a device, bytes that are not UTF-8 ---------------------

@pytest.fixture(params=["folder", "fifo", "link_to_a_fifo", "dev_zero", "dev_null"])
def store_path_not_a_file(request, tmp_path, monkeypatch):
    """./mynawatch.toml whose [store] url names something that is not a store file, and what the line says."""
    monkeypatch.chdir(tmp_path)
    kind = request.param
    target = {"dev_zero": "/dev/zero", "dev_null": "/dev/null"}.get(kind, str(tmp_path / "store.sqlite"))
    if kind == "folder":
        os.mkdir(target)
        (tmp_path / "store.sqlite" / "kept.txt").write_text("kept", encoding="utf-8")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "link_to_a_fifo":
        os.mkfifo(tmp_path / "real.fifo")
        os.symlink(tmp_path / "real.fifo", target)
    (tmp_path / "mynawatch.toml").write_text(f'[store]\nurl = "sqlite:///{target}"\n', encoding="utf-8")
    return target, ("is a folder: set it to a store file" if kind == "folder" else
                    "is not a regular file (a device, a pipe or a socket): set it to a store file")


@pytest.mark.parametrize("command", [["sources"], ["db", "check"], ["sql", "SELECT 1"]])
def test_a_store_url_naming_a_folder_a_pipe_or_a_device_is_a_settings_error(store_path_not_a_file, command, capsys):
    target, expect = store_path_not_a_file
    before = sorted(p.name for p in Path.cwd().iterdir())
    with _within(30):
        assert main(command) == 2
    line = _one_line(capsys)
    assert line == f"mynawatch: mynawatch.toml: [store] url: {target} {expect} (made when missing)", line
    assert sorted(p.name for p in Path.cwd().iterdir()) == before  # no lock file beside it, nothing made


@pytest.fixture(params=["folder", "under_a_file", "not_utf8", "binary_garbage", "arrays_nested_100000_deep",
                        "inline_tables_nested_50000_deep", "number_of_5000_digits", "store_path_of_5000_characters"])
def odd_settings_path(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = {"arrays_nested_100000_deep": "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
            "inline_tables_nested_50000_deep": "x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
            "number_of_5000_digits": "[fetch]\ntimeout_seconds = " + "9" * 5000 + "\n",
            "store_path_of_5000_characters": '[store]\nurl = "sqlite:///' + "a" * 5000 + '.sqlite"\n'}
    if request.param in text:
        (tmp_path / "m.toml").write_text(text[request.param], encoding="utf-8")
        return "m.toml", {"arrays_nested_100000_deep": "m.toml: not valid TOML (arrays or inline tables nested too deeply)",
                          "inline_tables_nested_50000_deep": "m.toml: not valid TOML (arrays or inline tables nested "
                                                             "too deeply)",
                          "number_of_5000_digits": "m.toml: not valid TOML (Exceeds the limit (4300 digits) for "
                                                   "integer string conversion: value has 5000 digits)",
                          "store_path_of_5000_characters": "m.toml: [store] url: the file's path is too long for this "
                                                           f"system ({len(str(tmp_path)) + 5008} characters)"
                          }[request.param]
    if request.param == "folder":
        (tmp_path / "conf.d").mkdir()
        return "conf.d", "conf.d: a folder: give the path of a settings file"
    if request.param == "under_a_file":
        (tmp_path / "plain").write_text("x", encoding="utf-8")
        return "plain/m.toml", "plain/m.toml: no such settings file (a part of the path is a file, not a folder)"
    path = tmp_path / "m.toml"
    if request.param == "not_utf8":
        path.write_bytes(b'[store]\nurl = "sqlite:///caf\xe9.sqlite"\n')
        return "m.toml", "m.toml: not valid TOML (not UTF-8: byte 0xe9 at line 2, column 21)"
    path.write_bytes(bytes(range(255, -1, -1)) * 16)
    return "m.toml", "m.toml: not valid TOML (not UTF-8: byte 0xff at line 1, column 1)"


def test_a_settings_path_that_cannot_be_read_as_settings_is_status_2(odd_settings_path, capsys):
    path, expect = odd_settings_path
    assert main(["--config", path, "sources"]) == 2
    assert _one_line(capsys) == f"mynawatch: {expect}"
    assert not list(Path.cwd().glob("*.sqlite*"))


def test_an_unreadable_settings_file_is_status_2(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[store]\nurl = "sqlite:///store.sqlite"\n', encoding="utf-8")
    path.chmod(0)
    unprivileged = _without_root_reads()
    done = subprocess.run([*unprivileged, sys.executable, "-m", "mynawatch.cli", "--config", str(path), "sources"],
                          cwd="/", capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"mynawatch: {path}: not allowed to read it: give this user access to it, or pass another --config"], done.stderr


@pytest.fixture(params=["dev_zero", "answer_then_2_mib_without_end_of_line"])
def endless_answers(request, tmp_path):
    """Standard input for `review` that is not a person: a device without an end of line, or a file whose
    second line never ends (in 1 MiB); how many answers come before it."""
    if request.param == "dev_zero":
        return open("/dev/zero", encoding="utf-8"), 0
    path = tmp_path / "answers.txt"
    path.write_bytes(b"y\n" + b"x" * (2 * MiB))
    return path.open(encoding="utf-8"), 1


def test_review_stops_on_an_answer_without_end_and_keeps_those_before(review_store, endless_answers, monkeypatch,
                                                                      capsys):
    from store import labels as store_labels

    stdin, answered = endless_answers
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        with _within(60):
            assert main(["review", "--days", "36600"]) == 2
    finally:
        stdin.close()
    assert _one_line(capsys) == ("mynawatch: standard input: an answer longer than 1,048,576 characters, not an answer "
                                 "(a device or a binary file?); the answers before it are recorded")
    with review_store.begin() as s:
        assert len(store_labels.human_labels(s)) == answered


@pytest.mark.parametrize("command", [["tag", "-"], ["spikes", "detect", "-"]])
def test_a_closed_standard_input_is_one_line_not_a_traceback(command, tmp_path):
    done = subprocess.run([sys.executable, "-m", "mynawatch.cli", *command], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ), preexec_fn=lambda: os.close(0))  # `<&-`
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "mynawatch: standard input is closed: pipe the file in, or give its path instead of -"], done.stderr


def test_review_with_standard_input_closed_ends_as_at_the_end_of_input(review_store, monkeypatch, capsys):
    from store import labels as store_labels

    monkeypatch.setattr(sys, "stdin", None)
    assert main(["review", "--days", "36600"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "0 answer(s) recorded, 0 skipped" in captured.out
    with review_store.begin() as s:
        assert store_labels.human_labels(s) == []


def test_db_copy_names_a_destination_database_the_server_does_not_have(store, capsys):
    import pg

    pg.require_server()
    missing = pg.ADMIN_URL.rsplit("/", 1)[0] + "/no_such_db_mw_copy"
    assert main(["db", "copy", "sqlite:///store.sqlite", missing]) == 1
    line = _one_line(capsys)
    assert line.startswith(f"mynawatch: db copy DST_URL {pg._shown(missing)}: cannot reach it ("), line
    assert "no_such_db_mw_copy" in line and "does not exist" in line and "store.sqlite" not in line, line


def test_a_settings_store_that_cannot_be_reached_is_one_line_and_never_hangs(unreachable_postgres, tmp_path,
                                                                              monkeypatch, capsys):
    """The settings file's PostgreSQL store on a port where none answers: refused, closed at once, HTTP, or
    a server that accepts and never answers (libpq would wait for ever: store.db gives it CONNECT_SECONDS)."""
    import store.db

    monkeypatch.setattr(store.db, "CONNECT_SECONDS", 2)
    settings = tmp_path / "m.toml"
    settings.write_text(f'[store]\nurl = "{unreachable_postgres}"\n', encoding="utf-8")
    with _within(30):
        assert main(["--config", str(settings), "sources"]) == 1
    line = _one_line(capsys)
    assert line.startswith("mynawatch: cannot reach the PostgreSQL store postgresql+psycopg://mw:"), line
    assert "hunter2" not in line, line


def test_a_connect_timeout_in_the_store_url_is_kept_and_one_is_added_where_none_is():
    from store.db import CONNECT_SECONDS, connect_args

    assert connect_args("postgresql+psycopg://mw@127.0.0.1/m") == {"connect_timeout": CONNECT_SECONDS}
    assert connect_args("postgresql+psycopg://mw@127.0.0.1/m?connect_timeout=3") == {}
    assert connect_args("sqlite:///store.sqlite") == {}


def test_a_real_check_named_but_missing_is_refused_before_the_model_loads(tmp_path, capsys):
    missing = tmp_path / "real-check.tsv"
    assert main(["classifier", "evaluate", "--real-check", str(missing)]) == 2
    assert _one_line(capsys) == f"mynawatch: --real-check {missing}: no such file"


@pytest.mark.parametrize("kind", ["file", "fifo", "under_a_file"])
def test_report_out_that_is_not_a_folder_is_bad_input(kind, store, capsys):
    """`report --out` names a folder for the report's files: a file, a pipe or a path through a file is refused
    in one line, status 2, before the store is read (status 1 and the system's words before)."""
    target = store.parent / "taken"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.write_text("a file\n", encoding="utf-8")
    out = str(target / "sub") if kind == "under_a_file" else str(target)
    for argv in (["report", "--date", "2024-09-17", "--out", out], ["report", "--month", "2024-09", "--out", out]):
        assert main(argv) == 2
        line = _one_line(capsys)
        assert line.startswith(f"mynawatch: --out {out}: ") and "name a folder for the report's files" in line, line
    assert target.is_fifo() if kind == "fifo" else target.read_text(encoding="utf-8") == "a file\n"
