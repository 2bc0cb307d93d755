"""Many workers, one store: who is alive, leases, claims and the leader lock (issue 14, docs/scale-out.md).

- **Workers** (``work_workers``): every `mynawatch run` process on a shared store registers its role and
  beats a heartbeat; a worker not seen for a few lease times is gone.
- **Leases** (``work_leases``): work one collector does at a time (``source:NAME``, ``articles``), held until
  ``expires_at`` and renewed while the holder lives. Each collector keeps its fair share of the sources; a
  dead collector's leases run out and the others take them.
- **Claims** (``work_claims``): the untagged items a classifier worker is tagging, taken in batches with
  ``SELECT … FOR UPDATE SKIP LOCKED`` and a lease time. Labels are saved only for items the worker still
  holds and nobody has tagged, under the items' row locks, so each item is tagged exactly once; a killed
  worker's claims run out and another worker finishes them.
- **Leader** (``Leader``): one process at a time evaluates alerts, sends notifications and writes reports:
  a session-level advisory lock on a connection of its own, released by the server when its process dies.

Functions take the session first and never commit; times are parameters (the workers' clocks are assumed
in step to well under a lease time). On SQLite (one `run` per store) claims lock nothing and the leader
lock is always granted.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, delete, func, select, text, update
from sqlalchemy.orm import Session

from store.dialect import dialect_for, insert_for
from store.records import ItemText, Label
from store.tables import Worker, WorkLease

log = logging.getLogger(__name__)
LEADER_KEY = (7240115, 2)  # the alerts leader's advisory lock (open_engine's migration lock is (7240115, 1))
GONE_AFTER = 3  # lease times without a heartbeat after which a worker's row is removed
COLLECTING = ("collect", "all")  # roles that collect


def worker_name() -> str:
    """A name for this process, unique across machines and restarts: host:pid:random."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- workers ----------------------------------------------------------------------------------------


def heartbeat(session: Session, holder: str, role: str, *, now: datetime, lease: timedelta,
              leading: bool | None = None) -> None:
    """Register ``holder`` (or renew its sign of life); forget workers silent for GONE_AFTER leases."""
    values = {"seen_at": now} | ({} if leading is None else {"leader": leading})
    stmt = insert_for(session, Worker).values(holder=holder, role=role, host=holder.split(":")[0],
                                              pid=os.getpid(), leader=bool(leading), started_at=now, seen_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["holder"], set_=values))
    session.execute(delete(Worker).where(Worker.seen_at < now - GONE_AFTER * lease))


def live_workers(session: Session, roles: tuple[str, ...], *, now: datetime, lease: timedelta) -> list[str]:
    """Workers of these roles seen within one lease time."""
    return list(session.scalars(select(Worker.holder).where(Worker.role.in_(roles), Worker.seen_at > now - lease)
                                .order_by(Worker.holder)))


def leave(session: Session, holder: str) -> None:
    """A worker stopping: its leases and claims freed at once, its row removed."""
    from store.tables import WorkClaim

    session.execute(delete(WorkLease).where(WorkLease.holder == holder))
    session.execute(delete(WorkClaim).where(WorkClaim.holder == holder))
    session.execute(delete(Worker).where(Worker.holder == holder))


# -- leases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leases:
    """What one balancing step left this worker holding: name -> until when; ``taken``: new since the last step."""

    held: dict[str, datetime]
    taken: tuple[str, ...]


def balance_leases(session: Session, holder: str, names: list[str], *, now: datetime, lease: timedelta,
                   roles: tuple[str, ...] = COLLECTING) -> Leases:
    """Keep this worker's fair share of ``names`` (all of them split among the live workers of ``roles``):
    renew what it holds up to that share and free the rest, then take free or run-out leases up to it."""
    live = set(live_workers(session, roles, now=now, lease=lease)) | {holder}
    share = math.ceil(len(names) / len(live)) if names else 0
    until = now + lease
    mine = list(session.scalars(select(WorkLease.name).where(WorkLease.holder == holder, WorkLease.expires_at > now,
                                                              WorkLease.name.in_(names)).order_by(WorkLease.name)))
    keep, extra = mine[:share], mine[share:]
    if extra:
        session.execute(delete(WorkLease).where(WorkLease.holder == holder, WorkLease.name.in_(extra)))
    if keep:
        session.execute(update(WorkLease).where(WorkLease.holder == holder, WorkLease.name.in_(keep))
                        .values(expires_at=until))
    taken = _take(session, holder, [n for n in names if n not in mine], share - len(keep), now=now, until=until)
    # a lease of this worker that ran out before this step and was not taken back is gone: drop it
    session.execute(delete(WorkLease).where(WorkLease.holder == holder, WorkLease.name.not_in(names)))
    return Leases({n: until for n in keep + taken}, tuple(taken))


def _take(session: Session, holder: str, candidates: list[str], wanted: int, *, now: datetime,
          until: datetime) -> list[str]:
    """Up to ``wanted`` of ``candidates`` that nobody holds (no row, or run out), taken for ``holder``."""
    if wanted <= 0 or not candidates:
        return []
    dialect = dialect_for(session.get_bind())
    taken: list[str] = []
    present = set(session.scalars(select(WorkLease.name).where(WorkLease.name.in_(candidates))))
    for name in [n for n in candidates if n not in present][:wanted]:
        new = insert_for(session, WorkLease).values(name=name, holder=holder, expires_at=until, acquired_at=now)
        if session.execute(new.on_conflict_do_nothing().returning(WorkLease.name)).first() is not None:
            taken.append(name)
    if len(taken) < wanted:
        rows = session.execute(text(
            "SELECT name FROM work_leases l WHERE name IN :names AND expires_at <= :now ORDER BY name LIMIT :n"
            + dialect.lock_rows("l", skip_locked=True)).bindparams(bindparam("names", expanding=True)),
            {"names": candidates, "now": _naive(now), "n": wanted - len(taken)}).scalars().all()
        if rows:
            session.execute(update(WorkLease).where(WorkLease.name.in_(rows))
                            .values(holder=holder, expires_at=until, acquired_at=now))
            taken += rows
    return taken


def hold_lease(session: Session, holder: str, name: str, *, now: datetime, lease: timedelta, take: bool = True) -> bool:
    """One lease kept by one holder (a stream's reader): renewed until ``now + lease`` when ``holder`` holds it and
    it has not run out, else (``take``) taken as ``balance_leases`` takes one, when nobody holds it. True when
    ``holder`` holds it; on PostgreSQL its row stays locked until the caller commits, so what the caller writes
    in the same transaction is written by the holder alone."""
    until = now + lease
    renewed = session.execute(update(WorkLease).where(WorkLease.name == name, WorkLease.holder == holder,
                                                      WorkLease.expires_at > now).values(expires_at=until)).rowcount
    return bool(renewed) or (take and bool(_take(session, holder, [name], 1, now=now, until=until)))


def release_leases(session: Session, holder: str) -> None:
    session.execute(delete(WorkLease).where(WorkLease.holder == holder))


def due_sources(session: Session, names: list[str], *, now: datetime) -> list[str]:
    """Of these source names, those to fetch now: never fetched, or their next fetch time has come (a collector
    that takes a source over fetches it at once only then)."""
    from store.tables import Source

    fetched = dict(session.execute(select(Source.name, Source.next_fetch_at).where(Source.name.in_(names))).all())
    return [n for n in names if fetched.get(n) is None or fetched[n] <= now]


def is_shared(sessions) -> bool:
    """Whether several `run` processes may share this store (PostgreSQL), so work is leased, claimed and led."""
    return dialect_for(sessions.kw["bind"]).name != "sqlite"


def lease_holders(session: Session, *, now: datetime) -> dict[str, str]:
    """name -> holder of every lease that has not run out."""
    return dict(session.execute(select(WorkLease.name, WorkLease.holder).where(WorkLease.expires_at > now)).all())


# -- claims -----------------------------------------------------------------------------------------


def claim_items(session: Session, holder: str, model_version: str, *, now: datetime, lease: timedelta,
                limit: int, after: int = 0) -> list[ItemText]:
    """Claim up to ``limit`` gate-passed items (with ids above ``after``) that ``model_version`` has not tagged
    and nobody else holds (no claim, or one that ran out), oldest first, until ``now + lease``; their texts.
    Rows another worker is claiming or saving right now are skipped, not waited for.

    The subqueries repeat ``> :after`` on their item ids: PostgreSQL answers them with merge anti joins, which
    otherwise read the classifications index from its first entry at every claim (on 1,000,000 tagged items
    0.2 s per claim instead of 3 ms)."""
    dialect = dialect_for(session.get_bind())
    rows = session.execute(text(
        "SELECT i.id, i.title, i.summary FROM items i WHERE i.id > :after AND i.gate = 'pass'"
        " AND NOT EXISTS (SELECT 1 FROM classifications c WHERE c.item_id = i.id AND c.item_id > :after"
        " AND c.model_version = :version)"
        " AND NOT EXISTS (SELECT 1 FROM work_claims w WHERE w.item_id = i.id AND w.item_id > :after"
        " AND w.expires_at > :now)"
        " ORDER BY i.id LIMIT :limit" + dialect.lock_rows("i", skip_locked=True)),
        {"after": after, "version": model_version, "now": _naive(now), "limit": limit}).all()
    if not rows:
        return []
    # read again under the row locks: an item a worker saved after this statement's snapshot was taken is done
    done = _tagged(session, [r[0] for r in rows], model_version)
    chosen = [ItemText(i, t, s) for i, t, s in rows if i not in done]
    if not chosen:
        return []
    from store.tables import WorkClaim

    stmt = insert_for(session, WorkClaim)
    session.execute(stmt.on_conflict_do_update(index_elements=["item_id"], set_={
        "holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at}),
        [{"item_id": i.item_id, "holder": holder, "expires_at": now + lease} for i in chosen])
    return chosen


SCAN_MARGIN = 50_000  # ids below the highest tagged one still looked at: items of transactions that committed late


def scan_start(session: Session, model_version: str) -> int:
    """Where a claiming pass may start instead of the first id (a pass over a million tagged items costs
    seconds): below every claim left by a worker, and SCAN_MARGIN ids below the highest item this version
    tagged, for items whose collector committed after a later id was tagged."""
    from store.tables import Classification, WorkClaim

    highest = session.scalar(select(func.max(Classification.item_id)).where(
        Classification.model_version == model_version)) or 0
    claimed = session.scalar(select(func.min(WorkClaim.item_id)))
    start = highest - SCAN_MARGIN
    if claimed is not None:
        start = min(start, claimed - 1)
    return max(start, 0)


def save_claimed(session: Session, holder: str, model_version: str, labels: dict[int, Label], *,
                 now: datetime) -> set[int]:
    """Save this worker's labels (in this transaction) for the items it still holds and nobody has tagged with
    ``model_version`` meanwhile; its claims on all of them are removed. Returns the items saved. The items'
    rows are locked first, in id order, and stay locked until the caller commits, so no other worker claims
    or saves them in between (a one-shot ``save_labels`` waits, then replaces these labels)."""
    if not labels:
        return set()
    from store.labels import add_labels
    from store.tables import WorkClaim

    item_ids = sorted(labels)
    lock = dialect_for(session.get_bind()).lock_rows("i", skip_locked=False)
    if lock:
        session.execute(text("SELECT i.id FROM items i WHERE i.id IN :ids ORDER BY i.id" + lock)
                        .bindparams(bindparam("ids", expanding=True)), {"ids": item_ids}).all()
    ours = set(session.scalars(delete(WorkClaim).where(WorkClaim.holder == holder, WorkClaim.item_id.in_(item_ids))
                               .returning(WorkClaim.item_id)))
    return add_labels(session, model_version, {i: labels[i] for i in item_ids if i in ours}, now=now)


def release_claims(session: Session, holder: str, item_ids: list[int] | None = None) -> int:
    """Give back claims (all of this worker's, or these) without saving anything."""
    from store.tables import WorkClaim

    stmt = delete(WorkClaim).where(WorkClaim.holder == holder)
    if item_ids is not None:
        stmt = stmt.where(WorkClaim.item_id.in_(item_ids))
    return session.execute(stmt).rowcount


def claims_of_others(session: Session, holder: str, *, now: datetime) -> datetime | None:
    """When the earliest live claim of another worker runs out (None when there is none)."""
    from store.tables import WorkClaim

    return session.scalar(select(func.min(WorkClaim.expires_at)).where(WorkClaim.holder != holder,
                                                                        WorkClaim.expires_at > now))


def _tagged(session: Session, item_ids: list[int], model_version: str) -> set[int]:
    from store.tables import Classification

    out: set[int] = set()
    for start in range(0, len(item_ids), 1000):
        out.update(session.scalars(select(Classification.item_id).where(
            Classification.model_version == model_version, Classification.item_id.in_(item_ids[start:start + 1000]))))
    return out


def _naive(when: datetime) -> datetime:
    """A time for a text() statement, as the store keeps it (naive UTC; see tables.UTCDateTime)."""
    from datetime import timezone

    return when.astimezone(timezone.utc).replace(tzinfo=None)


# -- the leader ---------------------------------------------------------------------------------------


class Leader:
    """Exactly one process at a time leads (evaluates alerts, sends notifications, writes reports): the one whose
    connection of its own holds the advisory lock LEADER_KEY. When that process dies its connection ends and the
    server frees the lock; the next ``leads()`` of another process takes it. A leader that lost its connection
    (the database restarted) stops leading until it takes the lock again.

    The scheduler's jobs ask from several threads at once (the team step, alerts, notify, the report): one
    thread at a time uses the lock's connection, so two threads never open two connections of which one takes
    the lock unseen (a pooled session holding the lead while this process believes it does not lead)."""

    def __init__(self, engine: Engine, key: tuple[int, int] = LEADER_KEY):
        self.engine, self.key = engine, key
        self._connection = None
        self._guard = threading.Lock()
        self._gained = False  # the lead was taken, and no caller of ``gained()`` has heard of it yet
        self.leading = False

    def leads(self) -> bool:
        """Whether this process leads now: the lock kept (its connection answers) or taken."""
        with self._guard:
            return self._leads()

    def _leads(self) -> bool:
        if self._connection is not None:
            try:
                self._connection.exec_driver_sql("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - the connection is gone, and the lock with it
                log.warning("the leader's connection to the store was lost (%s): no longer leading",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._drop()
        if self.leading:
            return True
        try:
            if self._connection is None:
                self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.leading = dialect_for(self.engine).try_lock(self._connection, self.key)
            self._gained = self._gained or self.leading
        except Exception as exc:  # noqa: BLE001 - the database is away: try again at the next step
            log.warning("cannot reach the store to take the leader lock: %s", str(exc).splitlines()[0] if str(exc)
                        else type(exc).__name__)
            self._drop()
        return self.leading

    def gained(self) -> bool:
        """Whether this process took the lead since the last call and still leads: whichever thread's ``leads()``
        took it (a job's, or the team step's), the team step hears of it once, and acts on it."""
        with self._guard:
            gained, self._gained = self._gained and self.leading, False
            return gained

    def close(self) -> None:
        """Stop leading: the lock given back, then its connection closed (the server would free the lock when it
        notices the closed connection, a moment later: another process asking at once would not get it)."""
        with self._guard:
            if self.leading and self._connection is not None:
                try:
                    dialect_for(self.engine).unlock_all(self._connection)
                except Exception:  # noqa: BLE001 - the connection is gone, and the lock with it
                    pass
            self._drop()

    def _drop(self) -> None:
        self.leading = False
        if self._connection is not None:
            try:
                self._connection.invalidate()  # never back to the pool: a pooled session would keep the lock
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._connection = None


# -- this process among the workers -----------------------------------------------------------------


class Team:
    """This process's place among the `run` processes of a shared store: its name and role, the leases it
    holds (a collector) and whether it leads (alerts). ``step`` is the heartbeat, run every third of a lease."""

    def __init__(self, sessions, role: str, *, lease: timedelta, names: list[str]):
        self.sessions, self.role, self.lease, self.names = sessions, role, lease, list(names)
        self.holder = worker_name()
        self.collects = role in COLLECTING
        self.leader = Leader(sessions.kw["bind"]) if role in ("alerts", "all") else None
        self.held: dict[str, datetime] = {}

    def step(self, *, now: datetime) -> tuple[tuple[str, ...], bool]:
        """Beat, keep the fair share of leases, keep or take the lead: (leases newly taken, newly leading).

        "Newly leading" is said once for each time the lead was taken, by this step or by a job that asked
        ``leads()`` since the last step, and only by a step that got through: one whose heartbeat failed says
        it at the next, so the jobs of a new leader are always started at once."""
        leading = self.leader.leads() if self.leader is not None else None
        with self.sessions.begin() as session:
            heartbeat(session, self.holder, self.role, now=now, lease=self.lease, leading=leading)
            taken: tuple[str, ...] = ()
            if self.collects:
                leases = balance_leases(session, self.holder, self.names, now=now, lease=self.lease)
                taken = leases.taken
        if self.collects:
            self.held = leases.held
        return taken, self.leader is not None and self.leader.gained()

    def holds(self, name: str, *, now: datetime) -> bool:
        """Whether this worker holds the lease ``name`` and it has not run out (a heartbeat that could not reach
        the store lets it run out: the work stops rather than risk two workers on it)."""
        until = self.held.get(name)
        return until is not None and until > now

    def leads(self) -> bool:
        return self.leader is not None and self.leader.leads()

    def next_claim_end(self, *, now: datetime) -> datetime | None:
        """When the first claim of another worker runs out (a dead worker's batch to finish)."""
        with self.sessions.begin() as session:
            return claims_of_others(session, self.holder, now=now)

    def close(self) -> None:
        """Leave: leases and claims freed for the others at once, the lead given up."""
        if self.leader is not None:
            self.leader.close()
        try:
            with self.sessions.begin() as session:
                leave(session, self.holder)
        except Exception as exc:  # noqa: BLE001 - the store is away: the leases run out by themselves
            log.warning("could not free this worker's leases (%s); they run out in %s",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self.lease)
