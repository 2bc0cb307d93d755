"""One typed settings object, loaded once from ``mynawatch.toml`` (secrets from the environment)."""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import re
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import pydantic

from collector.fetch import FetchPolicy
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from collector.streams.config import StreamConfig
from reports.alerts import AlertPolicy
from reports.incidents import IncidentPolicy
from reports.mail import SmtpSettings
from reports.spikes import SpikeParams
from reports.webhook import WebhookSettings
from store.records import Service


class SettingsError(ValueError):
    """mynawatch.toml is missing, unreadable or has a wrong value."""


@dataclass(frozen=True)
class Schedule:
    classify_minutes: int = 15
    alerts_minutes: int = 60
    report_time: str = "07:30"  # Asia/Tokyo, for the previous day's report
    jitter_seconds: int = 60
    misfire_grace_seconds: int = 300
    notify_minutes: int = 5  # how often queued notifications are retried
    retrain_time: str = ""  # Asia/Tokyo HH:MM of a daily retrain on corpus + corrections; empty: only by hand
    lease_seconds: int = 60  # PostgreSQL, many workers: a collector's hold on a source, renewed every third of it
    claim_seconds: int = 300  # PostgreSQL, many workers: a classifier worker's hold on a batch of items


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///mynawatch.sqlite"
    report_dir: Path = Path("reports-archive")
    fetch: FetchPolicy = FetchPolicy()
    collect: CollectPolicy = CollectPolicy()
    sources: tuple[SourceConfig, ...] = ()
    schedule: Schedule = Schedule()
    spikes: SpikeParams = SpikeParams()
    spikes_for: tuple[tuple[str, SpikeParams], ...] = ()  # [alerts.services.<code>]: thresholds of one service
    alerting: AlertPolicy = AlertPolicy()
    incidents: IncidentPolicy = IncidentPolicy()  # [incidents]: how incidents are derived from the store
    webhooks: tuple[WebhookSettings, ...] = ()
    smtp: SmtpSettings = SmtpSettings()
    send_digest: bool = False
    streams: tuple[StreamConfig, ...] = ()  # [[streams]]: Bluesky Jetstream and Misskey streaming sources
    alert_signal: str = "trouble"  # [alerts] signal: what alerts watch (reports.stream_alerts.SIGNALS)


# Ranges of numeric settings, by field name (every class): a number outside is refused at load.
_AT_LEAST_ONE = {"connections", "per_host_connections", "interval_minutes", "classify_minutes", "alerts_minutes",
                 "notify_minutes", "misfire_grace_seconds", "lease_seconds", "claim_seconds", "baseline_days", "max_title_chars", "max_summary_chars", "max_article_chars",
                 "articles_per_round", "offline_min_hosts", "min_count", "max_bytes"}
_POSITIVE = {"timeout_seconds", "timeout", "backoff_minutes", "max_backoff_hours", "stale_factor", "stale_min_hours",
             "story_hours", "article_max_age_hours", "min_score", "cusum_score", "floor_rate"}
_FRACTIONS = {"offline_fraction", "story_similarity"}
_PORTS = {"port"}
# Durations, by the unit their name ends in: at most a year (a longer one overflows timers and dates).
_MOST_PER_UNIT = {"_seconds": 366 * 86400, "timeout": 366 * 86400, "_minutes": 366 * 1440, "_hours": 366 * 24,
                  "_days": 366}
# Any other number: at most this (a count past it reached SQL as a LIMIT no 64-bit integer holds, a rate
# past it overflowed the detector's arithmetic).
_MOST = 1_000_000_000


# One bare address: no second one after a comma, no line break that would add a mail header (the email
# package refused it with a traceback when the digest was built), no display name.
_ONE_ADDRESS = re.compile(r'[^\s\x00-\x1f\x7f@,;<>"]+@[^\s\x00-\x1f\x7f@,;<>"]+')


# Settings that are one word or one address: a control character in them (a pasted line end, a tab, a NUL) is
# refused at load; in a URL it failed every fetch, in a host every mail.
_ONE_LINE = {"url", "endpoint", "api_url", "web_url", "host", "username", "name", "publisher", "kind", "service",
             "token_env", "official_domains", "collections", "dids", "channels", "tags", "languages"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_value(name: str, value) -> str | None:
    """What is wrong with a setting's value beyond its type, or None."""
    if name in _ONE_LINE and any(_CONTROL.search(v) for v in (value if isinstance(value, tuple) else (value,))
                                 if isinstance(v, str)):
        return f"{_shown(value)} holds a control character (a line end, a tab or a NUL): write it on one line"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if name == "url" and isinstance(value, str) and not re.match(r"https?://[^/\s]+", value):
            return f"{value!r} is not an http(s) URL"
        if name == "url" and isinstance(value, str) and (problem := _address_problem(value)):
            return f"{value!r} is not an http(s) URL ({problem})"
        if name == "recipients" and any(not _ONE_ADDRESS.fullmatch(r) for r in value):
            return f"{_shown(value)}: every recipient must be an email address (one per string)"
        if name == "sender" and isinstance(value, str) and not _ONE_ADDRESS.fullmatch(value):
            return f"{_shown(value)} is not one email address"
        if (name == "report_time" or name == "retrain_time" and value) and isinstance(value, str):
            hour, _, minute = value.partition(":")
            if not (re.fullmatch(r"[0-9]{1,2}:[0-9]{2}", value) and int(hour) < 24 and int(minute) < 60):
                return f"{value!r} is not a time of day (HH:MM, Tokyo time, 00:00 to 23:59)"
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return f"{value} is not a finite number"
    if name in _PORTS and not 1 <= value <= 65535:
        return f"{value} is not a port number (1 to 65535)"
    if name in _AT_LEAST_ONE and value < 1:
        return f"{value} is too small (at least 1)"
    if name in _POSITIVE and value <= 0:
        return f"{value} must be more than 0"
    if name in _FRACTIONS and not 0 < value <= 1:
        return f"{value} is not a fraction (more than 0, at most 1)"
    if value < 0:
        return f"{value} must not be negative"
    for unit, most in _MOST_PER_UNIT.items():
        if name.endswith(unit) and value > most:
            return f"{value} is too large (at most {most}, a year)"
    if value > _MOST:
        return f"{value} is too large (at most {_MOST:,})"
    return None


def _address_problem(url: str) -> str | None:
    """What makes an http(s) URL's address unreadable (a port past 65535, an unclosed IPv6 bracket), or None:
    such a source failed at every fetch, a webhook at every notification."""
    from urllib.parse import urlsplit

    try:
        urlsplit(url).port
    except ValueError as exc:
        return str(exc)
    return None


def _typed(cls, table: dict, where: str) -> dict:
    """``table`` checked against the field types of ``cls`` (pydantic, strict: a string is never taken for a
    number, a number never for a string, one string never for a list) and against the ranges above; the
    first problem raised as ``where key: what is wrong``."""
    hints = _hints(cls)
    out = {}
    for key, value in table.items():
        hint = hints[key]
        if isinstance(value, list):
            value = tuple(value)
        try:
            value = _adapter(hint).validate_python(value, strict=True)
        except pydantic.ValidationError as exc:
            raise SettingsError(f"{where} {key}: {_type_problem(value, exc)}") from None
        problem = _check_value(key, value)
        if problem:
            raise SettingsError(f"{where} {key}: {problem}")
        out[key] = value
    return out


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    """The field types of a settings class, resolved once: resolving them for every key of every table took
    a settings file of 100,000 [[sources]] (5 MiB, under the size limit) a minute and a half to load."""
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved.get(f.name, f.type) for f in fields(cls)}


@functools.lru_cache(maxsize=None)
def _adapter(hint) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(hint)


def _shown(value) -> str:
    """A value as it was written in TOML."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):  # its first few items: a list of 50,000 made an error line as long
        more = f", … {len(value) - 5:,} more" if len(value) > 5 else ""
        return "[" + ", ".join(_shown(v) for v in value[:5]) + more + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _type_problem(value, exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    if error.get("type") in ("tuple_type", "list_type") or (isinstance(value, tuple) and error.get("loc")):
        return f"{_shown(value)} is not valid here: expected a list of strings, e.g. [\"one\", \"two\"]"
    expected = error.get("msg", "a value of another type").removeprefix("Input should be ").removeprefix("a valid ")
    return f"{_shown(value)} is not valid here: expected {'an' if expected[:1] in 'aeiou' else 'a'} {expected}"


def _plain(table, types: dict[str, type], where: str) -> dict:
    """A small table of plain values (no dataclass behind it), each of its one type."""
    unknown = sorted(set(table) - set(types))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {_listed(unknown)} (known: {', '.join(sorted(types))})")
    for key, value in table.items():
        if not isinstance(value, types[key]):
            expected = {"str": "a string", "bool": "true or false"}.get(types[key].__name__, types[key].__name__)
            raise SettingsError(f"{where} {key}: {_shown(value)} is not valid here: expected {expected}")
    return table


def _listed(names: list[str], *, most: int = 10, chars: int = 40) -> str:
    """Names from the file (unknown keys, sections, codes) for an error line: the first ``most``, each by its
    first ``chars`` characters. A key of 200,000 characters, or 20,000 unknown keys, made an error line as long."""
    shown = [n if len(n) <= chars else n[:chars] + "…" for n in names[:most]]
    return ", ".join(shown) + (f" and {len(names) - most:,} more" if len(names) > most else "")


def _no_nul(text: str, where: str) -> str:
    """A path setting without a NUL character: no file name holds one, and the system refused it with a
    traceback when the store was opened or the report folder made."""
    if "\x00" in text:
        raise SettingsError(f"{where}: holds a NUL character (\\u0000): no file name can")
    return text


def _build(cls, table: dict, where: str):
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: expected a table of settings, found {type(table).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {_listed(unknown)} (known: {', '.join(sorted(known))})")
    missing = [f.name for f in fields(cls) if f.name not in table and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.init]
    if missing:  # the dataclass said "__init__() missing 1 required positional argument"
        raise SettingsError(f"{where}: missing setting(s) {', '.join(missing)} (required)")
    try:
        return cls(**_typed(cls, table, where))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{where}: {exc}") from exc


def _alerts(data: dict, where: str) -> dict:
    """[alerts] (thresholds and lifecycle), [alerts.services.<code>] overrides and [[webhooks]]."""
    alerts = dict(data.get("alerts", {}))
    services = alerts.pop("services", {})
    if not isinstance(services, dict) or any(not isinstance(t, dict) for t in services.values()):
        raise SettingsError(f"{where}: [alerts.services]: expected a [alerts.services.<code>] table per service")
    signal = _alert_signal(alerts.pop("signal", "trouble"), where)
    policy_keys = {f.name for f in fields(AlertPolicy)}
    policy = _build(AlertPolicy, {k: alerts.pop(k) for k in list(alerts) if k in policy_keys}, f"{where}: [alerts]")
    spikes = _build(SpikeParams, alerts, f"{where}: [alerts]")
    codes = [str(s) for s in Service]
    spikes_for = []
    for code, table in services.items():
        if code not in codes:
            raise SettingsError(f"{where}: [alerts.services.{_listed([code])}]: unknown service "
                                f"(one of {', '.join(codes)})")
        merged = {f.name: getattr(spikes, f.name) for f in fields(SpikeParams)} | table
        spikes_for.append((code, _build(SpikeParams, merged, f"{where}: [alerts.services.{code}]")))
    webhooks = tuple(_build(WebhookSettings, w, f"{where}: [[webhooks]] #{n}")
                     for n, w in enumerate(data.get("webhooks", []), 1))
    return {"spikes": spikes, "spikes_for": tuple(spikes_for), "alerting": policy, "webhooks": webhooks,
            "alert_signal": signal}


def _alert_signal(value, where: str) -> str:
    from reports.stream_alerts import SIGNALS

    if value not in SIGNALS:
        raise SettingsError(f"{where}: [alerts] signal: {_shown(value)} is not a signal (one of {', '.join(SIGNALS)})")
    return value


def _sqlite_url_under(base: Path, url: str) -> str:
    """A relative SQLite URL made absolute under ``base``; the folder's own characters (#, ?, %, spaces)
    are quoted, so the URL opens exactly that file."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and ValueError alike
        raise SettingsError(f"[store] url: {url!r} is not a database URL ({exc})") from None
    return parsed.set(database=str(base / (parsed.database or ""))).render_as_string(hide_password=False)


def check_store_url(url: str, where: str) -> None:
    """A SQLite or PostgreSQL URL SQLAlchemy can read, or a SettingsError naming ``where``."""
    from sqlalchemy.engine import make_url

    try:
        driver = make_url(url).drivername
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and ValueError alike
        raise SettingsError(f"{where}: not a database URL (sqlite:///FILE or postgresql+psycopg://USER@HOST/DB; "
                            "the URL is not shown, it may hold a password)") from None
    if driver not in STORE_DRIVERS:
        raise SettingsError(f"{where}: {driver!r} is not a store mynawatch runs on (one of {', '.join(STORE_DRIVERS)})")
    if problem := _parameter_problem(make_url(url)):
        raise SettingsError(f"{where}: {problem}: the URL's ?name=value parameters are options of its driver")


def _parameter_problem(url) -> str | None:
    """What is wrong with the options in a store URL's query (?timeout=abc, ?foo=bar), or None: the driver
    read them only when the store was opened, and raised ValueError or ProgrammingError with a traceback."""
    if not url.query:
        return None
    try:
        _, options = url.get_dialect()().create_connect_args(url)  # SQLite: its options converted to their types
    except (ValueError, TypeError) as exc:
        return f"an option has a wrong value ({_first_line(exc)})"
    if url.get_backend_name() != "postgresql":
        return None
    import psycopg
    from psycopg.conninfo import make_conninfo, timeout_from_conninfo

    try:
        make_conninfo("", **{k: v for k, v in options.items() if isinstance(v, (str, int))})  # libpq's names
        timeout_from_conninfo(options)
    except psycopg.ProgrammingError as exc:
        return _first_line(exc)
    return None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:120] if lines else type(exc).__name__


STORE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")  # the drivers installed


def _check_store_file(url: str, where: str) -> None:
    """A SQLite store that is there must be a regular file: a folder, a FIFO or a device (/dev/zero) was
    reported as a failing disk, or a folder that cannot be opened, and got a lock file beside it."""
    import errno
    import stat

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.query.get("uri"):
        return
    try:
        mode = os.stat(parsed.database).st_mode
    except OSError as exc:  # not there yet (it is made), or a path SQLite names when it opens it
        if exc.errno == errno.ENAMETOOLONG:
            raise SettingsError(f"{where}: the file's path is too long for this system ({len(parsed.database)} "
                                "characters)") from None
        return
    if stat.S_ISDIR(mode):
        raise SettingsError(f"{where}: {parsed.database} is a folder: set it to a store file (made when missing)")
    if not stat.S_ISREG(mode):
        raise SettingsError(f"{where}: {parsed.database} is not a regular file (a device, a pipe or a socket): set "
                            "it to a store file (made when missing)")


MAX_SETTINGS_BYTES = 10 * 1024 * 1024


def _read_settings_file(path: Path) -> bytes:
    """The bytes of a settings file: a pipe or a device is refused before it is opened (a FIFO waited for a
    writer for ever, /dev/zero filled the memory), and so is a file above MAX_SETTINGS_BYTES."""
    import stat

    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise SettingsError(f"{path}: a folder: give the path of a settings file")
        if not stat.S_ISREG(mode):
            raise SettingsError(f"{path}: not a regular file (a device, a pipe or a socket): give the path of a "
                                "settings file")
        with path.open("rb") as fh:
            data = fh.read(MAX_SETTINGS_BYTES + 1)
    except NotADirectoryError:
        raise SettingsError(f"{path}: no such settings file (a part of the path is a file, not a folder)") from None
    except PermissionError:
        raise SettingsError(f"{path}: not allowed to read it: give this user access to it, or pass another "
                            "--config") from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise SettingsError(f"{path}: larger than {MAX_SETTINGS_BYTES // (1024 * 1024)} MiB: not a settings file")
    return data


def load_settings(path: Path | None, *, environ=os.environ) -> Settings:
    """Settings from ``path`` (defaults when it is None). Relative paths resolve against the file's folder."""
    if path is None:
        return Settings()
    try:
        raw = _read_settings_file(Path(path))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such settings file (create one with `mynawatch init`)") from None
    except OSError as exc:  # a loop of links, a path too long: was reported as a failing disk, status 1
        if exc.errno not in (errno.ELOOP, errno.ENAMETOOLONG):
            raise
        shown = str(path) if len(str(path)) <= 120 else f"{str(path)[:60]}…"
        raise SettingsError(f"{shown}: cannot be read ({exc.strerror}): give the path of a settings file") from None
    try:
        data = tomllib.loads(raw.decode("utf-8").removeprefix("\ufeff"))  # a BOM, as editors on Windows write
    except UnicodeDecodeError as exc:  # TOML is UTF-8: say where it is not, as TOML's own errors do
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SettingsError(f"{path}: not valid TOML (not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}, "
                            f"column {column})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    except RecursionError:  # the parser calls itself for each level: x = [[[[...
        raise SettingsError(f"{path}: not valid TOML (arrays or inline tables nested too deeply)") from None
    except ValueError as exc:  # a number of more digits than Python converts (4300)
        raise SettingsError(f"{path}: not valid TOML ({str(exc).split(';')[0][:200]})") from None
    base = Path(path).resolve().parent
    allowed = {"store", "reports", "fetch", "collect", "sources", "schedule", "alerts", "smtp", "webhooks", "incidents",
               "streams"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(f"{path}: unknown section(s) {_listed(unknown)} (known: {', '.join(sorted(allowed))})")
    for section in allowed & set(data):
        expected = list if section in ("sources", "webhooks", "streams") else dict
        if not isinstance(data[section], expected):
            form = f"[[{section}]] entries" if expected is list else f"a [{section}] table"
            raise SettingsError(f"{path}: {section}: expected {form}, found {type(data[section]).__name__}")
    store = _plain(data.get("store", {}), {"url": str}, f"{path}: [store]")
    url = _no_nul(store.get("url", Settings.database_url), f"{path}: [store] url")
    check_store_url(url, f"{path}: [store] url")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
        url = _sqlite_url_under(base, url)
    _check_store_file(url, f"{path}: [store] url")
    reports = _plain(data.get("reports", {}), {"dir": str, "send_digest": bool}, f"{path}: [reports]")
    report_dir = base / _no_nul(reports.get("dir", "reports-archive"), f"{path}: [reports] dir")
    send = reports.get("send_digest", False)
    smtp = dict(data.get("smtp", {}))
    if "password" in smtp:
        raise SettingsError(f"{path}: [smtp] password: secrets never go in the settings file; set the environment "
                            f"variable {smtp.get('password_env') or 'MYNAWATCH_SMTP_PASSWORD'} and remove this line")
    password_env = smtp.pop("password_env", "MYNAWATCH_SMTP_PASSWORD")
    if password_env is not None and not isinstance(password_env, str):
        raise SettingsError(f"{path}: [smtp] password_env: expected the name of an environment variable")
    smtp_settings = _build(SmtpSettings, smtp, f"{path}: [smtp]")
    smtp_settings = dataclasses.replace(smtp_settings, password=environ.get(password_env) if password_env else None)
    sources = tuple(_build(SourceConfig, s, f"{path}: [[sources]] #{n}")
                    for n, s in enumerate(data.get("sources", []), 1))
    streams = tuple(_build(StreamConfig, s, f"{path}: [[streams]] #{n}") for n, s in enumerate(data.get("streams", []), 1))
    names = [s.name for s in sources] + [s.name for s in streams]
    if len(set(names)) != len(names):
        raise SettingsError(f"{path}: two [[sources]] or [[streams]] share a name; names must be unique")
    return Settings(
        database_url=url, report_dir=report_dir,
        fetch=_build(FetchPolicy, data.get("fetch", {}), f"{path}: [fetch]"),
        collect=_build(CollectPolicy, data.get("collect", {}), f"{path}: [collect]"),
        sources=sources, streams=streams,
        schedule=_build(Schedule, data.get("schedule", {}), f"{path}: [schedule]"),
        **_alerts(data, str(path)),
        smtp=smtp_settings, send_digest=send,
        incidents=_build(IncidentPolicy, data.get("incidents", {}), f"{path}: [incidents]"),
    )
