"""One typed settings object, loaded once from ``mynawatch.toml`` (secrets from the environment)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from collector.fetch import FetchPolicy
from collector.policy import CollectPolicy
from collector.sources import SourceConfig
from reports.alerts import AlertPolicy
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
    webhooks: tuple[WebhookSettings, ...] = ()
    smtp: SmtpSettings = SmtpSettings()
    send_digest: bool = False


def _build(cls, table: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: {exc}") from exc


def _alerts(data: dict, where: str) -> dict:
    """[alerts] (thresholds and lifecycle), [alerts.services.<code>] overrides and [[webhooks]]."""
    alerts = dict(data.get("alerts", {}))
    services = alerts.pop("services", {})
    policy_keys = {f.name for f in fields(AlertPolicy)}
    policy = _build(AlertPolicy, {k: alerts.pop(k) for k in list(alerts) if k in policy_keys}, f"{where}: [alerts]")
    spikes = _build(SpikeParams, alerts, f"{where}: [alerts]")
    codes = [str(s) for s in Service]
    spikes_for = []
    for code, table in services.items():
        if code not in codes:
            raise SettingsError(f"{where}: [alerts.services.{code}]: unknown service (one of {', '.join(codes)})")
        merged = {f.name: getattr(spikes, f.name) for f in fields(SpikeParams)} | table
        spikes_for.append((code, _build(SpikeParams, merged, f"{where}: [alerts.services.{code}]")))
    webhooks = tuple(_build(WebhookSettings, w, f"{where}: [[webhooks]] #{n}")
                     for n, w in enumerate(data.get("webhooks", []), 1))
    return {"spikes": spikes, "spikes_for": tuple(spikes_for), "alerting": policy, "webhooks": webhooks}


def load_settings(path: Path | None, *, environ=os.environ) -> Settings:
    """Settings from ``path`` (defaults when it is None). Relative paths resolve against the file's folder."""
    if path is None:
        return Settings()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such settings file (create one with `mynawatch init`)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    base = Path(path).resolve().parent
    allowed = {"store", "reports", "fetch", "collect", "sources", "schedule", "alerts", "smtp", "webhooks"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(f"{path}: unknown section(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    store = data.get("store", {})
    url = store.get("url", Settings.database_url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
        url = "sqlite:///" + str(base / url.removeprefix("sqlite:///"))
    reports = dict(data.get("reports", {}))
    report_dir = base / reports.pop("dir", "reports-archive")
    send = bool(reports.pop("send_digest", False))
    if reports:
        raise SettingsError(f"{path}: [reports]: unknown setting(s) {', '.join(sorted(reports))}")
    smtp = dict(data.get("smtp", {}))
    password_env = smtp.pop("password_env", "MYNAWATCH_SMTP_PASSWORD")
    smtp["password"] = environ.get(password_env) if password_env else None
    smtp["recipients"] = tuple(smtp.get("recipients", ()))
    sources = tuple(_build(SourceConfig, s, f"{path}: [[sources]] #{n}")
                    for n, s in enumerate(data.get("sources", []), 1))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise SettingsError(f"{path}: two [[sources]] share a name; names must be unique")
    return Settings(
        database_url=url, report_dir=report_dir,
        fetch=_build(FetchPolicy, data.get("fetch", {}), f"{path}: [fetch]"),
        collect=_build(CollectPolicy, data.get("collect", {}), f"{path}: [collect]"),
        sources=sources,
        schedule=_build(Schedule, data.get("schedule", {}), f"{path}: [schedule]"),
        **_alerts(data, str(path)),
        smtp=_build(SmtpSettings, smtp, f"{path}: [smtp]"), send_digest=send,
    )
