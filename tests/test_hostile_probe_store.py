"""Hostile input against the store: `mynawatch sql` given no statement or a run of comments, a store on
read-only media read by `sql` and `db backup`, a backup of a store that does not exist, and PostgreSQL
databases whose names need quoting, with the password kept off pg_dump's command line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import uuid

import pytest
from sqlalchemy.engine import URL, make_url

from mynawatch.cli import main
from store.db import make_sessions
from store.search import index_pending
from test_hostile_sql import three_items


def _fill(url: str) -> str:
    """Three items, indexed; the store's URL."""
    sessions = make_sessions(url)
    with sessions.begin() as s:
        three_items(s)
    index_pending(sessions)
    sessions.kw["bind"].dispose()
    return url


def _settings(folder, url: str) -> None:
    (folder / "mynawatch.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")


@pytest.fixture
def sqlite_store(tmp_path, monkeypatch):
    path = tmp_path / "data" / "store.sqlite"
    _settings(tmp_path, _fill(f"sqlite:///{path}"))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture(params=("sqlite", "postgresql"))
def any_store(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        url = _fill(f"sqlite:///{tmp_path / 'data' / 'store.sqlite'}")
    else:
        url = _fill(request.getfixturevalue("pg_store_url"))
    _settings(tmp_path, url)
    monkeypatch.chdir(tmp_path)
    return url


@pytest.mark.parametrize("query", ["", "  ;  ;", "-- nothing\n", "/* a */ -- b\n;", "/* never closed"])
def test_a_query_without_a_statement_is_bad_input_not_an_empty_table(any_store, capsys, query):
    assert main(["sql", query]) == 2
    got = capsys.readouterr()
    assert got.out == "" and "the query is empty" in got.err, got


def test_a_run_of_comments_before_a_statement_never_stalls_sql(sqlite_store, capsys):
    """The check for VACUUM read comments with a backtracking pattern: 40 of them took minutes before SQLite ran."""
    started = time.monotonic()
    assert main(["sql", "/* x */ " * 40 + "SELECT count(*) AS n FROM items", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "3"]
    assert main(["sql", "/* x */ -- y\n" * 40 + "VACUUM"]) == 2
    assert "refused: VACUUM would change the store" in capsys.readouterr().err
    assert main(["sql", "/* x */ " * 40 + "SELECT 1 /* never closed"]) == 0
    capsys.readouterr()
    assert time.monotonic() - started < 5


@pytest.fixture
def read_only_media(tmp_path, monkeypatch):
    """A store copied onto a file system mounted read-only (no -wal or -shm beside it, none can be made)."""
    source = _fill(f"sqlite:///{tmp_path / 'made' / 'store.sqlite'}")
    media = tmp_path / "media"
    media.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(media)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a file system needs root")
    try:
        (media / "store.sqlite").write_bytes((tmp_path / "made" / "store.sqlite").read_bytes())
        assert make_url(source).database and not (media / "store.sqlite-wal").exists()
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True, capture_output=True)
        _settings(tmp_path, f"sqlite:///{media / 'store.sqlite'}")
        monkeypatch.chdir(tmp_path)
        yield media / "store.sqlite"
    finally:
        subprocess.run(["umount", str(media)], capture_output=True)


def test_sql_and_backup_read_a_store_on_read_only_media(read_only_media, tmp_path, capsys):
    before = read_only_media.read_bytes()
    assert main(["sql", "SELECT count(*) AS n FROM items", "--format", "csv"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == ["n", "3"]
    assert main(["sql", "DELETE FROM items"]) == 2  # still read-only
    assert "read-only" in capsys.readouterr().err
    assert main(["db", "backup", str(tmp_path / "copy.sqlite")]) == 0, capsys.readouterr().err
    copy = sqlite3.connect(tmp_path / "copy.sqlite")
    assert copy.execute("SELECT count(*) FROM items").fetchone() == (3,)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy.close()
    assert read_only_media.read_bytes() == before
    assert sorted(p.name for p in read_only_media.parent.iterdir()) == ["store.sqlite"]


def test_a_backup_of_a_store_that_does_not_exist_is_refused_and_makes_no_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    _settings(tmp_path, f"sqlite:///{tmp_path / 'data' / 'typo.sqlite'}")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "backup", "copy.sqlite"]) == 2
    assert "typo.sqlite: no such store" in capsys.readouterr().err
    assert list((tmp_path / "data").iterdir()) == [] and not (tmp_path / "copy.sqlite").exists()


@pytest.fixture
def odd_pg_url():
    """A PostgreSQL store whose database name holds a space, a plus and a quote (libpq 17 and later refuse a
    URL with a raw space), reached with a password (the local server trusts and ignores it)."""
    import pg

    pg.require_server()
    name = f"mwtest_{os.getpid()}_odd name+o'q_{uuid.uuid4().hex[:8]}"
    pg._admin(f'CREATE DATABASE "{name}"')
    admin = make_url(pg.ADMIN_URL)
    url = URL.create("postgresql+psycopg", username=admin.username, password="s3cret word", host=admin.host,
                     port=admin.port, database=name).render_as_string(hide_password=False)
    yield _fill(url)
    pg._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_sql_reads_a_postgresql_database_whose_name_needs_quoting(odd_pg_url, tmp_path, monkeypatch, capsys):
    _settings(tmp_path, odd_pg_url.replace('"', '\\"'))
    monkeypatch.chdir(tmp_path)
    assert main(["sql", "SELECT current_database() AS db, count(*) AS n FROM items", "--format", "csv"]) == 0, \
        capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == ["db,n", f"{make_url(odd_pg_url).database},3"]


def test_pg_dump_gets_the_password_in_its_environment_never_on_its_command_line(odd_pg_url, tmp_path, monkeypatch,
                                                                                 capsys):
    """A command line is public (ps); the dump is still of the database with the odd name."""
    real = subprocess.run(["sh", "-c", "command -v pg_dump"], capture_output=True, text=True).stdout.strip()
    if not real:
        pytest.skip("pg_dump is not installed")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "pg_dump").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/argv"\n'
                                   f'printf "%s" "$PGPASSWORD" > "{tmp_path}/env"\nexec "{real}" "$@"\n')
    (tools / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    _settings(tmp_path, odd_pg_url.replace('"', '\\"'))
    monkeypatch.chdir(tmp_path)
    assert main(["db", "backup", "store.dump"]) == 0, capsys.readouterr().err
    argv = (tmp_path / "argv").read_text()
    assert "s3cret" not in argv and (tmp_path / "env").read_text() == "s3cret word"
    listing = subprocess.run(["pg_restore", "--list", "store.dump"], capture_output=True, text=True).stdout
    assert f"dbname: {make_url(odd_pg_url).database}" in listing


def test_stored_text_that_is_not_utf8_is_shown_replaced_not_a_traceback(sqlite_store, tmp_path, capsys):
    """A store written by another program: bytes that are not UTF-8 in a source's and an item's publisher."""
    raw = sqlite3.connect(sqlite_store)
    raw.execute("UPDATE sources SET publisher = CAST(x'4e48eda080ff' AS TEXT)")
    raw.execute("UPDATE items SET publisher = CAST(x'ff4e484bfe' AS TEXT) WHERE id = 3")
    raw.commit()
    raw.close()
    assert main(["sources", "--format", "json"]) == 0, capsys.readouterr().err
    assert '"src"' in capsys.readouterr().out
    assert main(["search", "障害"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "\ufffdNHK\ufffd" in out and out.splitlines()[-1].startswith("3 item(s)")
    copy = f"sqlite:///{tmp_path / 'copy.sqlite'}"
    assert main(["db", "copy", f"sqlite:///{sqlite_store}", copy]) == 0, capsys.readouterr().err
    assert "checksums match" in capsys.readouterr().out
    assert main(["sql", "SELECT publisher FROM items WHERE id = 3", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["publisher", "\ufffdNHK\ufffd"]


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(sqlite_store, tmp_path, capsys):
    """`run` writes its name into its lock file: through a link it overwrote whatever file the link named."""
    from store.locks import run_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for purpose in ("run", "open"):
        (sqlite_store.parent / f"store.sqlite-{purpose}.lock").unlink(missing_ok=True)
        (sqlite_store.parent / f"store.sqlite-{purpose}.lock").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        with run_lock(f"sqlite:///{sqlite_store}"):
            pass
    assert main(["sources"]) == 1
    err = capsys.readouterr().err
    assert "store.sqlite-open.lock: a symbolic link" in err and len(err.splitlines()) == 1, err
    assert victim.read_text() == "precious\n"


class _Sink:
    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture(params=(True, False), ids=("smtputf8", "ascii-only"))
def smtp_server(request):
    """A loopback SMTP server (aiosmtpd), offering SMTPUTF8 or not; (its sink, port, whether it offers it)."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=request.param)
    controller.start()
    yield sink, port, request.param
    controller.stop()


def test_a_recipient_address_in_japanese_never_stops_the_digest_of_the_others(sqlite_store, smtp_server, tmp_path,
                                                                               capsys):
    """Settings take 運用@例え.jp; smtplib wrote it as ASCII, and the UnicodeEncodeError ended the command in a
    traceback with no digest sent to anyone. Now it goes through SMTPUTF8, or waits in the outbox, named."""
    import email
    from email import policy

    sink, port, utf8 = smtp_server
    (tmp_path / "mynawatch.toml").write_text(
        f'[store]\nurl = "sqlite:///{sqlite_store}"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
        'sender = "mw@example.jp"\nrecipients = ["運用@例え.jp", "ops@example.com"]\n', encoding="utf-8")
    assert main(["report", "--date", "2024-10-02", "--send", "--out", "out"]) == 0
    out = capsys.readouterr().out
    for _ in range(100):
        if len(sink.messages) >= (2 if utf8 else 1):
            break
        time.sleep(0.05)
    got = {tuple(rcpt): raw for rcpt, raw in sink.messages}
    assert ("ops@example.com",) in got and "sent   email ops@example.com" in out
    if utf8:
        assert set(got) == {("運用@例え.jp",), ("ops@example.com",)}
        mail = email.message_from_bytes(got[("運用@例え.jp",)], policy=policy.default)
        assert mail["To"] == "運用@例え.jp" and mail["Subject"].startswith("【mynawatch】")
    else:
        assert set(got) == {("ops@example.com",)}
        assert "retry  email 運用@例え.jp" in out and "offers no SMTPUTF8" in out


def test_postgresql_times_python_cannot_hold_are_shown_as_written(pg_store_url, tmp_path, monkeypatch, capsys):
    """'infinity', a year past 9999 or 24:00:00 failed the whole statement ("date too large")."""
    import json

    _settings(tmp_path, _fill(pg_store_url))
    monkeypatch.chdir(tmp_path)
    query = ("SELECT 'infinity'::date AS d, '-infinity'::timestamptz AS t, '10000-01-01'::timestamp AS y, "
             "'24:00:00'::time AS h, '178000000 years'::interval AS i, '2024-10-02'::date AS ok")
    assert main(["sql", query, "--format", "json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == {"d": "infinity", "t": "-infinity", "y": "10000-01-01 00:00:00",
                                                   "h": "24:00:00", "i": "178000000 years", "ok": "2024-10-02"}


def test_labels_with_codes_this_version_does_not_know_leave_the_reports_working(sqlite_store, tmp_path, capsys):
    """A store labeled by another version (or by hand): a service, a cause and a sentiment the taxonomy lacks.
    The daily and monthly reports stopped in a traceback ("'nonservice' is not a valid Service")."""
    raw = sqlite3.connect(sqlite_store)
    raw.execute("UPDATE items SET gate = 'pass'")
    raw.execute("INSERT INTO classifications (item_id, model_version, relevant, cause, sentiment, confidence, scores, "
                "created_at) "
                "SELECT id, 'human', 1, 'solar_flare', 'ecstatic', 1.0, '{}', '2024-10-02 03:00:00.000000' FROM items")
    raw.execute("INSERT INTO classification_services (classification_id, service) "
                "SELECT id, 'nonservice' FROM classifications UNION ALL SELECT id, 'portal' FROM classifications")
    raw.commit()
    raw.close()
    assert main(["report", "--date", "2024-10-02", "--out", "out"]) == 0, capsys.readouterr().err
    text = (tmp_path / "out" / "report-2024-10-02.txt").read_text(encoding="utf-8")
    assert "マイナポータル: 1 / 3 / 1" in text and "原因不明: 1" in text and "中立: 3" in text
    assert main(["report", "--month", "2024-10", "--out", "out"]) == 0, capsys.readouterr().err
    capsys.readouterr()
