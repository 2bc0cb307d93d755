"""Hostile input to the composition root found by a probe of the command line and its settings file: a settings
file with a byte order mark, values a scheduler or the file system refused with a traceback, control characters
that failed every fetch; batch lines that are not objects; a typed path or --config that was misread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import one_error_line

from mynawatch.settings import SettingsError, load_settings

STORE = '[store]\nurl = "sqlite:///store.sqlite"\n'


def _env() -> dict:
    return dict(os.environ, LANG="C.UTF-8", PYTHONIOENCODING="utf-8")


_one_line = one_error_line  # (tests/conftest.py)


def _settings_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "mynawatch.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# --- settings: a byte order mark ----------------------------------------------------------------------------------

@pytest.fixture
def settings_with_bom(tmp_path):
    return _settings_file(tmp_path, b"\xef\xbb\xbf" + (STORE + "[schedule]\nclassify_minutes = 7\n").encode())


def test_a_settings_file_that_starts_with_a_byte_order_mark_loads(settings_with_bom):
    """Notepad's UTF-8 writes one: it was "not valid TOML (Invalid statement (at line 1, column 1))"."""
    settings = load_settings(settings_with_bom)
    assert settings.schedule.classify_minutes == 7
    assert settings.database_url.endswith("/store.sqlite")


# --- settings: values the scheduler or the file system refused with a traceback ----------------------------------

@pytest.fixture
def zero_misfire_grace(tmp_path):
    return _settings_file(tmp_path, STORE + "[schedule]\nmisfire_grace_seconds = 0\n")


def test_a_misfire_grace_of_zero_is_refused_at_load_not_by_the_scheduler(zero_misfire_grace):
    """APScheduler took 0 for no grace and raised TypeError from `run` (a traceback, status 1)."""
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(zero_misfire_grace), "run"],
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=zero_misfire_grace.parent)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "[schedule] misfire_grace_seconds: 0 is too small (at least 1)" in proc.stderr
    assert not (zero_misfire_grace.parent / "store.sqlite").exists()


NUL_PATHS = {"store": '[store]\nurl = "sqlite:///a\\u0000b.sqlite"\n', "reports": '[reports]\ndir = "a\\u0000b"\n'}


@pytest.fixture(params=sorted(NUL_PATHS))
def nul_in_a_path(request, tmp_path):
    return request.param, _settings_file(tmp_path, NUL_PATHS[request.param])


def test_a_nul_character_in_the_store_or_report_path_is_a_settings_error(nul_in_a_path):
    """os.stat / mkdir raised "ValueError: embedded null byte" as a traceback from `report`."""
    section, path = nul_in_a_path
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(path), "report", "--date",
                           "2024-10-02"], capture_output=True, text=True, timeout=120, env=_env(), cwd=path.parent)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"[{section}]" in proc.stderr and "NUL character" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


ONE_LINE_VALUES = {  # failed at every fetch or mail, or broke the one line a listing gives each source
    "source url": ('[[sources]]\nname = "a"\nurl = "http://a.example/\\r\\nX-Injected: 1"\n', "[[sources]] #1 url"),
    "source url tab": ('[[sources]]\nname = "a"\nurl = "http://a.exa\\tmple/"\n', "[[sources]] #1 url"),
    "source name": ('[[sources]]\nname = "a\\nb"\nurl = "http://a.example/"\n', "[[sources]] #1 name"),
    "publisher": ('[[sources]]\nname = "a"\nurl = "http://a.example/"\npublisher = "x\\u0000"\n',
                  "[[sources]] #1 publisher"),
    "smtp host": ('[smtp]\nhost = "mail.example\\r\\nRCPT TO:<x@y>"\n', "[smtp] host"),
    "webhook url": ('[[webhooks]]\nurl = "http://a.example/\\nX: y"\n', "[[webhooks]] #1 url"),
    "official domain": ('[incidents]\nofficial_domains = ["go.jp\\n"]\n', "[incidents] official_domains"),
}


@pytest.fixture(params=sorted(ONE_LINE_VALUES))
def control_character_value(request, tmp_path):
    text, where = ONE_LINE_VALUES[request.param]
    return _settings_file(tmp_path, STORE + text), where


def test_a_control_character_in_a_url_host_or_name_is_refused_at_load(control_character_value):
    path, where = control_character_value
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert f"{path}: {where}:" in str(caught.value) and "control character" in str(caught.value)


BAD_ADDRESSES = {"port": ("http://feed.example:99999/rss", "Port out of range"),
                 "ipv6": ("http://[::1/rss", "Invalid IPv6 URL")}


@pytest.fixture(params=sorted(BAD_ADDRESSES))
def unreadable_address(request, tmp_path):
    url, why = BAD_ADDRESSES[request.param]
    return _settings_file(tmp_path, STORE + f'[[sources]]\nname = "a"\nurl = "{url}"\n'), why


def test_a_source_address_that_cannot_be_read_is_refused_at_load(unreadable_address):
    """A port past 65535 failed the source at every fetch; an open IPv6 bracket gave no key in its message."""
    path, why = unreadable_address
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert "[[sources]] #1 url:" in str(caught.value) and why in str(caught.value)


def test_url_characters_that_are_not_control_characters_still_load(tmp_path):
    path = _settings_file(tmp_path, STORE + '[[sources]]\nname = "マイナ 保険証"\nurl = '
                          '"https://news.google.com/rss/search?q=%E3%83%9E%E3%82%A4%E3%83%8A&hl=ja"\n'
                          '[[sources]]\nname = "v6"\nurl = "http://[::1]:8080/feed.xml"\n')
    assert [s.name for s in load_settings(path).sources] == ["マイナ 保険証", "v6"]


@pytest.fixture
def ten_thousand_sources(tmp_path):
    return _settings_file(tmp_path, STORE + "".join(f'[[sources]]\nname = "s{n}"\nurl = "https://feed.example/{n}.xml"\n'
                                                    f"interval_minutes = 30\n" for n in range(10_000)))


def test_a_settings_file_of_many_sources_loads_in_seconds(ten_thousand_sources):
    """The field types were resolved again for every key of every table: 20,000 sources (1.2 MiB, far under the
    size limit) took about a minute of CPU; 10,000 over ten seconds; 100,000 a minute and a half of waiting."""
    import time

    started = time.process_time()
    settings = load_settings(ten_thousand_sources)
    assert len(settings.sources) == 10_000 and settings.sources[-1].interval_minutes == 30
    assert time.process_time() - started < 5


BAD_URL_OPTIONS = {
    "sqlite timeout": ("sqlite:///store.sqlite?timeout=abc", "an option has a wrong value (could not convert"),
    "sqlite flag": ("sqlite:///store.sqlite?check_same_thread=maybe", "an option has a wrong value (String is not"),
    "postgresql timeout": ("postgresql+psycopg://u@127.0.0.1:9/db?connect_timeout=abc", "bad value for connect_timeout"),
    "postgresql option": ("postgresql+psycopg://u@127.0.0.1:9/db?foo=bar", 'invalid connection option "foo"'),
}


@pytest.fixture(params=sorted(BAD_URL_OPTIONS))
def store_url_with_a_bad_option(request, tmp_path):
    url, expect = BAD_URL_OPTIONS[request.param]
    return _settings_file(tmp_path, f'[store]\nurl = "{url}"\n'), expect


def test_a_bad_option_in_the_store_url_is_a_settings_error(store_url_with_a_bad_option):
    """The driver read ?timeout=abc or ?foo=bar only when the store was opened: a ValueError or a
    ProgrammingError traceback from every command, status 1."""
    path, expect = store_url_with_a_bad_option
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", str(path), "sources"],
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=path.parent)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"mynawatch: {path}: [store] url: ") and expect in line
    assert line.endswith("the URL's ?name=value parameters are options of its driver")


def test_good_options_in_the_store_url_still_load(tmp_path):
    path = _settings_file(tmp_path, '[store]\nurl = "sqlite:///store.sqlite?timeout=2.5"\n')
    assert load_settings(path).database_url.endswith("store.sqlite?timeout=2.5")
    path.write_text('[store]\nurl = "postgresql+psycopg://u@127.0.0.1:9/db?connect_timeout=3&sslmode=disable"\n',
                    encoding="utf-8")
    assert "connect_timeout=3" in load_settings(path).database_url


LONG_ERRORS = {  # each made an error line as long as what the file held
    "long key": ("[store]\n" + "k" * 200_000 + " = 1\n", "[store]: unknown setting(s) " + "k" * 40 + "… (known: url)"),
    "long section": ("[" + "z" * 200_000 + "]\n", "unknown section(s) " + "z" * 40 + "… (known: "),
    "many keys": ("".join(f"k{n} = 1\n" for n in range(20_000)), "k10004 and 19,990 more (known: "),
    "long service": ("[alerts.services." + "p" * 100_000 + "]\n", "[alerts.services." + "p" * 40 + "…]: unknown service"),
    "long list": ("[smtp]\nrecipients = [" + ", ".join(['"x"'] * 50_000) + "]\n",
                  "[smtp] recipients: ['x', 'x', 'x', 'x', 'x', … 49,995 more]: every recipient"),
}


@pytest.fixture(params=sorted(LONG_ERRORS))
def settings_with_a_long_error(request, tmp_path):
    text, expect = LONG_ERRORS[request.param]
    return _settings_file(tmp_path, text), expect


def test_an_error_about_long_or_many_names_in_the_settings_stays_one_short_line(settings_with_a_long_error, capsys):
    from mynawatch.cli import main

    path, expect = settings_with_a_long_error
    assert main(["--config", str(path), "sources"]) == 2
    line = _one_line(capsys)
    assert expect in line and len(line) < 600, line[:600]


MISSING = {"source url": ('[[sources]]\nname = "a"\n', "[[sources]] #1: missing setting(s) url"),
           "stream endpoint": ('[[streams]]\nname = "s"\n', "[[streams]] #1: missing setting(s) endpoint"),
           "webhook url": ('[[webhooks]]\nname = "w"\n', "[[webhooks]] #1: missing setting(s) url")}


@pytest.fixture(params=sorted(MISSING))
def missing_setting(request, tmp_path):
    text, expect = MISSING[request.param]
    return _settings_file(tmp_path, STORE + text), expect


def test_a_missing_required_setting_is_named_in_our_words(missing_setting, capsys):
    """It was "SourceConfig.__init__() missing 1 required positional argument: 'url'"."""
    from mynawatch.cli import main

    path, expect = missing_setting
    assert main(["--config", str(path), "sources"]) == 2
    line = _one_line(capsys)
    assert expect in line and "__init__" not in line and "positional" not in line, line


# --- batch input: a line that is not an object ------------------------------------------------------------------

@pytest.fixture
def lines_of_other_kinds(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text('[1, 2]\n"text"\nnull\n{"title": 1.5}\n{"id": 7, "title": "マイナポータル 障害"}\n', encoding="utf-8")
    return path


def test_tag_names_what_a_line_holds_when_it_is_not_an_object(lines_of_other_kinds, model, capsys):
    """Python's names ("got list") reached the error objects, and a title 1.5 was "a number that is not finite"."""
    from mynawatch.cli import main

    assert main(["tag", str(lines_of_other_kinds)]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o.get("error", "").split(": ", 1)[-1] for o in out[:4]] == [
        "expected an object with a title or a text, got an array",
        "expected an object with a title or a text, got a string",
        "expected an object with a title or a text, got null",
        "title must be a string, got a number"]
    assert out[4]["id"] == 7 and "relevant" in out[4]


GOLD_LINES = {"array": "[1, 2]", "string": '"x"', "number": "3"}


@pytest.fixture(params=sorted(GOLD_LINES))
def gold_line_not_an_object(request, tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text(GOLD_LINES[request.param] + "\n", encoding="utf-8")
    return path, {"array": "an array", "string": "a string", "number": "a number"}[request.param]


def test_evaluate_says_a_gold_line_is_not_an_object(gold_line_not_an_object, capsys):
    """It was "not a labeled item in the taxonomy format (list indices must be integers or slices, not str)"."""
    from mynawatch.cli import main

    path, kind = gold_line_not_an_object
    assert main(["classifier", "evaluate", "--gold", str(path)]) == 2
    line = _one_line(capsys)
    assert f"{path}:1:" in line and f"expected a JSON object {{...}}, got {kind}" in line, line
    assert "indices" not in line and "must be integers" not in line


# --- typed paths: init into a missing folder, a --config that is not there ---------------------------------------

@pytest.fixture
def init_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("", encoding="utf-8")
    return {"missing folder": ("no/such/mynawatch.toml", "no folder 'no/such'"),
            "file as folder": ("afile/mynawatch.toml", "'afile' is not a folder"),
            "long name": ("x" * 300 + ".toml", "too long"),
            "long path": ("d/" * 3000 + "x.toml", "too long")}


@pytest.mark.parametrize("case", ["missing folder", "file as folder", "long name", "long path"])
def test_init_into_a_path_that_cannot_be_is_bad_input(init_paths, case, capsys):
    """These were reported as a failing disk (status 1); the long path was echoed whole."""
    from mynawatch.cli import main

    typed, expect = init_paths[case]
    assert main(["init", "--path", typed]) == 2
    line = _one_line(capsys)
    assert line.startswith("mynawatch: --path '") and expect in line and len(line) < 400, line


def test_init_prints_a_typed_path_without_its_control_characters(tmp_path, monkeypatch, capsys):
    from mynawatch.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["init", "--path", "x\x1b[2Jy.toml"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.startswith("wrote x") and (tmp_path / "x\x1b[2Jy.toml").is_file()


@pytest.fixture
def unreadable_config_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    return {"loop": ("loop1", "loop1: cannot be read (Too many levels of symbolic links)"),
            "long name": ("x" * 300 + ".toml", "x" * 60 + "…: cannot be read (File name too long)"),
            "long path": ("d/" * 3000 + "x.toml", "d/" * 30 + "…: cannot be read (File name too long)")}


@pytest.mark.parametrize("case", ["loop", "long name", "long path"])
def test_a_settings_path_that_cannot_be_opened_is_a_settings_error(unreadable_config_paths, case, capsys):
    """Reported as a failing disk (status 1), a long path echoed whole."""
    from mynawatch.cli import main

    typed, expect = unreadable_config_paths[case]
    assert main(["--config", typed, "sources"]) == 2
    line = _one_line(capsys)
    assert line == f"mynawatch: {expect}: give the path of a settings file", line


@pytest.fixture
def typo_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"title": "マイナ保険証"}\n', encoding="utf-8")
    return tmp_path / "typo.toml", batch


@pytest.mark.parametrize("command", [["tag", "BATCH"], ["classifier", "explain", "マイナ保険証"]])
def test_a_settings_file_given_but_missing_is_named_not_ignored(typo_config, command, capsys):
    """`--config typo.toml tag` tagged with the corpus model, as if no settings file had been named."""
    from mynawatch.cli import main

    config, batch = typo_config
    argv = ["--config", str(config), *[str(batch) if a == "BATCH" else a for a in command]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.strip() == f"mynawatch: {config}: no such settings file (create one with `mynawatch init`)"


def test_an_empty_config_is_not_taken_for_none(tmp_path, monkeypatch):
    """--config "" read ./mynawatch.toml as if no --config had been given."""
    monkeypatch.chdir(tmp_path)
    _settings_file(tmp_path, STORE)
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "--config", "", "sources"], capture_output=True,
                          text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "a folder: give the path of a settings file" in proc.stderr


# --- standard output closed ---------------------------------------------------------------------------------------

@pytest.fixture
def closed_stdout_store(tmp_path):
    _settings_file(tmp_path, STORE)
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"title": "マイナ保険証"}\n', encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("command", ['sql "SELECT 1"', "tag batch.jsonl", "silence list",
                                     "spikes export --since 2024-10-01 --until 2024-10-02"])
def test_a_command_whose_result_goes_to_a_closed_standard_output_says_so(closed_stdout_store, command):
    """`tag` and `sql` ended in a traceback, `spikes export` too; `silence list` showed nothing in status 0."""
    proc = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m mynawatch.cli {command} >&-'], capture_output=True,
                          text=True, timeout=60, env=_env(), cwd=closed_stdout_store)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == ("mynawatch: standard output is closed (>&-): this command's result goes there; "
                                   "send it to a file (> FILE) or to /dev/null")


def test_work_commands_still_run_with_standard_output_closed(closed_stdout_store):
    proc = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m mynawatch.cli init --path new.toml >&-'],
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=closed_stdout_store)
    assert proc.returncode == 0 and proc.stderr == "" and (closed_stdout_store / "new.toml").is_file()


# --- tag: standard input with no line end ---------------------------------------------------------------------------

@pytest.fixture
def endless_input():
    with open("/dev/zero", "rb") as fh:  # `mynawatch tag - < /dev/zero`: read for ever, no output
        yield fh


def test_tag_stops_at_a_line_with_no_end_and_answers_it(endless_input, model):
    import io

    from classifier.batch import tag_lines

    out = io.StringIO()
    result = tag_lines(model, endless_input, out, limit=1024, skipped=1 << 20)
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["line"] == 1 and "no line end" in line["error"] and "not read past it" in line["error"]
    assert result.refused == 1 and result.tagged == 0


@pytest.fixture
def long_line_then_good(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b'{"id": "a", "title": "x"}\n' + b"z" * (3 << 20) + b'\n{"id": "b", "title": "y"}\n')
    return path


def test_tag_still_skips_a_long_line_with_an_end_and_reads_on(long_line_then_good, model):
    import io

    from classifier.batch import tag_lines

    out = io.StringIO()
    with long_line_then_good.open("rb") as fh:
        result = tag_lines(model, fh, out, limit=1024, skipped=8 << 20)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x.get("id") for x in lines] == ["a", None, "b"] and "longer than 1024 bytes" in lines[1]["error"]
    assert result.tagged == 2 and result.refused == 1


@pytest.fixture
def zero_device():
    with open("/dev/zero", "rb") as fh:
        yield fh


def test_spikes_detect_stops_reading_endless_standard_input_at_its_limit(zero_device, tmp_path):
    """`spikes detect - < /dev/zero` was read for ever (a file is capped at 64 MiB; standard input was not)."""
    proc = subprocess.run([sys.executable, "-m", "mynawatch.cli", "spikes", "detect", "-"], stdin=zero_device,
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("mynawatch: standard input: larger than 64 MiB, the limit for this command: split it "
                                   "and run it on each part")


# --- run: a second signal while a job is under way ------------------------------------------------------------------

@pytest.fixture
def run_with_a_fetch_under_way(tmp_path, server):
    from tests.conftest import Route

    server.routes["/slow"] = Route(b"<rss version='2.0'><channel></channel></rss>", delay=40.0)
    config = _settings_file(tmp_path, f'[store]\nurl = "sqlite:///{tmp_path / "store.sqlite"}"\n'
                            "[fetch]\nhost_interval_seconds = 0\ntimeout_seconds = 60\n"
                            "[schedule]\njitter_seconds = 0\n[collect]\narticle_pages = false\n"
                            f'[[sources]]\nname = "slow"\nurl = "{server.url("/slow")}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "mynawatch.cli", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 60
    while server.routes["/slow"].hits == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_a_second_signal_stops_run_without_waiting_for_the_job_under_way(run_with_a_fetch_under_way):
    """The first SIGTERM waits for the jobs under way; a second one did nothing, so a fetch or classification
    of minutes could only be ended with SIGKILL."""
    proc = run_with_a_fetch_under_way
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None  # waiting for the fetch, as before
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10 and proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert "a second signal: stopped without waiting for the jobs under way" in out and "Traceback" not in err
