"""Queries on publisher names learned per host. Functions take the session first and never commit.

An item with no publisher of its own is stored under its host name; once a feed names the outlet behind that
host (Google News ``<source url>``, a configured outlet feed), its items carry that name instead.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.dialect import insert_for
from store.tables import Item, PublisherHost

CHUNK = 400  # values per IN (...) list


def host_key(host: str | None) -> str:
    """A host as the table keys it: lower case, without a trailing dot or a leading ``www.``."""
    return (host or "").strip().lower().rstrip(".").removeprefix("www.")


def publisher_names(session: Session, hosts: list[str]) -> dict[str, str]:
    """The learned names of these hosts (spelled with or without ``www.``), keyed by ``host_key``."""
    keys = list(dict.fromkeys(k for k in map(host_key, hosts) if k))
    names: dict[str, str] = {}
    for i in range(0, len(keys), CHUNK):
        query = select(PublisherHost.host, PublisherHost.publisher).where(PublisherHost.host.in_(keys[i:i + CHUNK]))
        names.update(session.execute(query).all())
    return names


def record_publisher(session: Session, host: str, publisher: str, *, learned_from: str, now: datetime) -> bool:
    """Learn ``publisher`` as the name of ``host``; the first name learned for a host stays. When the host is new,
    items stored earlier under its bare host name take the name. Returns whether the host was new."""
    key = host_key(host)
    if not key or not publisher:
        return False
    stmt = insert_for(session, PublisherHost).values(host=key, publisher=publisher, learned_from=learned_from,
                                               updated_at=now).on_conflict_do_nothing().returning(PublisherHost.host)
    if session.execute(stmt).first() is None:  # not new (an INSERT's rowcount is -1 on psycopg: no use here)
        return False
    rename_host_items(session, key, publisher)
    return True


def rename_host_items(session: Session, host: str, publisher: str) -> int:
    """Items stored under the bare host name (with or without ``www.``) take ``publisher``. Their title_key
    stays as stored. Returns how many were renamed."""
    key = host_key(host)
    stmt = (update(Item).where(Item.publisher.in_([key, f"www.{key}"])).values(publisher=publisher)
            .execution_options(synchronize_session=False))
    return session.execute(stmt).rowcount
