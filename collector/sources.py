"""Source definitions as the collector sees them (built from settings by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from collector.kinds import KINDS, kind_of
from store.records import Service


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str
    kind: str = "feed"
    publisher: str | None = None  # None: taken from each item (Google News <source>, Mastodon account, host)
    interval_minutes: int = 60
    selector: str | None = None  # kind "page": CSS selector of the watched region (default main/article/body)
    service: str | None = None  # the service a source's maintenance notices are about when they do not say
    official: bool = False  # an official source (デジタル庁, J-LIS, 厚労省, a municipality): its items acknowledge incidents

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"source {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"source {self.name!r}: url must start with http:// or https:// (got {self.url!r})")
        if self.interval_minutes < 1:
            raise ValueError(f"source {self.name!r}: interval_minutes must be at least 1")
        if self.service is not None and self.service not in {str(s) for s in Service}:
            raise ValueError(f"source {self.name!r}: unknown service {self.service!r} "
                             f"(one of {', '.join(str(s) for s in Service)})")
        if self.selector is not None and not kind_of(self.kind).selector:
            takes = " or ".join(f'"{k.name}"' for k in KINDS.values() if k.selector)
            raise ValueError(f"source {self.name!r}: selector only applies to kind = {takes}")
        if self.selector is not None:
            _check_selector(self.name, self.selector)

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


def _check_selector(name: str, selector: str) -> None:
    """A CSS selector soupsieve can read, or a ValueError in one line (it failed every fetch of the source, with a
    traceback, as an internal error)."""
    import soupsieve

    try:
        soupsieve.compile(selector)
    except (soupsieve.SelectorSyntaxError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"source {name!r}: selector {selector[:80]!r} is not a CSS selector ({first})") from None
