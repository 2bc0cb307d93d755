"""One stream's connection, kept up: a reader thread (frames -> batches) and a writer thread (batches -> the
store), a bounded queue between them.

- **Reconnects** with jittered, doubling backoff (``backoff_seconds`` up to ``max_backoff_seconds``; back to
  the start once a connection brought frames) when the connection drops, stalls (no frame for
  ``stall_seconds``) or the server closes it.
- **Resumes** from the cursor stored with the last committed batch: the reader waits for the queue to be
  stored first, then subscribes ``rewind_seconds`` earlier (Jetstream); the store ignores the overlap.
- **Backpressure**: at most ``queue_batches`` batches wait for the store. A full queue holds the reader
  (the socket then stops being read); after ``backpressure_seconds`` the stream is **dropping behind**: it
  lets the connection go and, once the store caught up, starts again from the stored cursor (Jetstream
  replays from it; Misskey's gap is read from its API), so memory stays bounded and nothing is lost.
- **One reader per stream** on a shared store (PostgreSQL, several `run --role collect` processes): a
  stream is read only by the process holding its lease ``stream:NAME`` (store/work.py's leases, renewed
  every third of ``lease``); every batch and state is written in a transaction that renews it, so a
  reader that lost it writes nothing more. The others wait; when the holder dies its lease runs out and
  one of them takes the stream over from the stored cursor.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import random
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Callable

import httpx
from sqlalchemy.orm import Session, sessionmaker
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.sync.client import connect

from collector.jobs import STORY_INDEX_LIMIT
from collector.policy import CollectPolicy
from collector.stories import StoryIndex
from collector.streams import ADAPTERS
from collector.streams.config import StreamConfig
from collector.streams.events import POST, REPOST, StreamError
from collector.streams.intake import Batch, Intake
from collector.streams.save import save_batch
from store import clock
from store import streams as store_streams
from store import work as store_work
from store.deadline import deadline, deadline_transport

log = logging.getLogger(__name__)
HARD_FRAME_CAP = 16 * 1024 * 1024  # a frame larger than this ends the connection (smaller oversized ones are skipped)
RATE_WINDOW = 60.0  # seconds behind messages and kept per minute
WATCH_RECENT = timedelta(hours=24)  # misskey: notes stored this recently are watched again after a reconnect
WATCH_LIMIT = 1000
IDLE_FLUSH = 0.01  # seconds without a frame after which a partial batch is stored
API_TIMEOUT = 30.0  # seconds one page of a Misskey gap may take
GAP_TRIES = 3  # connections that try to fill one gap before it is given up (said in the log and the state)
USER_AGENT = "mynawatch/0.1 (+https://github.com/mynawatch/mynawatch; stream reader)"


class Stalled(Exception):
    """No frame for stall_seconds."""


class Behind(Exception):
    """The store did not take a batch for backpressure_seconds (a resumable stream reconnects later)."""


class LeaseLost(Exception):
    """Another process holds this stream's lease now (or it could not be renewed): this reader stops."""


class GapUnfilled(Exception):
    """Misskey: the notes missed while disconnected could not be read from the API (tried again on the next
    connection, GAP_TRIES times in all, before the gap is given up)."""


class Backoff:
    """Doubling delays with full jitter in the upper half, so clients cut off together do not return in step."""

    def __init__(self, base: float, cap: float, rng: random.Random):
        self.base, self.cap, self.rng, self.attempt = base, cap, rng, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return self.rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class StreamRunner:
    def __init__(self, config: StreamConfig, sessions: sessionmaker[Session], *,
                 policy: CollectPolicy = CollectPolicy(), now: Callable[[], datetime] = clock.now,
                 rng: random.Random | None = None, environ=os.environ, lease: timedelta = timedelta(seconds=60)):
        self.config, self.sessions, self.policy, self.now, self.environ = config, sessions, policy, now, environ
        self.shared, self.lease, self.holder = store_work.is_shared(sessions), lease, store_work.worker_name()
        self.lease_name = f"stream:{config.name}"
        self._held_until = self._renew_at = 0.0  # monotonic: when the lease runs out, when to renew it
        self.adapter = ADAPTERS[config.kind]
        self.intake = Intake(config)
        self.backoff = Backoff(config.backoff_seconds, config.max_backoff_seconds, rng or random.Random())
        self.queue: queue.Queue[Batch] = queue.Queue(config.queue_batches)
        self.stopping, self.resync = threading.Event(), threading.Event()
        self.stories = StoryIndex(hours=policy.story_hours, threshold=policy.story_similarity)
        self.behind = False
        self.source_id: int | None = None
        self.ws = None
        self.frames = 0  # frames of the current connection
        self.gap_from: str | None = None  # misskey: the stored cursor, until the gap after it is filled
        self.gap_tries = 0
        self._rates: deque[tuple[float, int, int]] = deque()
        self._totals = [0, 0]
        self._threads: list[threading.Thread] = []

    # lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        with self.sessions.begin() as session:
            self.source_id = store_streams.register_stream(session, name=self.config.name, url=self.config.endpoint,
                                                           kind=self.config.kind, now=self.now())
        if self.config.paused:
            self._state("paused")
            return
        self._threads = [threading.Thread(target=self._read_loop, name=f"stream-read:{self.config.name}", daemon=True),
                         threading.Thread(target=self._write_loop, name=f"stream-write:{self.config.name}",
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop reading, store what was read, record the state."""
        self.stopping.set()
        ws = self.ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a connection that is already going
                pass
        for t in self._threads:
            t.join(timeout)
        if self._threads:
            self._state("stopped")
        if self.shared:
            try:
                with self.sessions.begin() as session:
                    store_work.release_leases(session, self.holder)
            except Exception as exc:  # noqa: BLE001 - the store is away: the lease runs out by itself
                log.warning("stream %s: could not free its lease (%s); it runs out in %s", self.config.name,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self.lease)

    @property
    def holds(self) -> bool:
        """Whether this reader may read its stream: always on SQLite, while it holds the lease on a shared store."""
        return not self.shared or time.monotonic() < self._held_until

    def _hold(self, *, take: bool = True) -> bool:
        """Shared store: take or renew the stream's lease (``take``: also when nobody holds it). True when held."""
        if not self.shared:
            return True
        began = time.monotonic()
        try:
            with self.sessions.begin() as session:
                held = store_work.hold_lease(session, self.holder, self.lease_name, now=self.now(), lease=self.lease,
                                             take=take)
        except Exception as exc:  # noqa: BLE001 - the store is away: not held (the lease runs out)
            log.warning("stream %s: its lease could not be renewed (%s)", self.config.name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            held = False
        if held:
            was = self._held_until > began
            self._held_until = began + self.lease.total_seconds()
            self._renew_at = began + self.lease.total_seconds() / 3
            if not was:
                log.warning("stream %s: this process reads it now (lease %s)", self.config.name, self.holder)
        else:
            self._held_until = 0.0
        return held

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # reader ----------------------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self.stopping.is_set():
            self._drain()
            if self.stopping.is_set():
                break
            if not self._hold():  # another process reads this stream: wait to take it over if it dies
                self.stopping.wait(self.lease.total_seconds() / 3)
                continue
            self.frames, reason = 0, "the server closed the stream"
            try:
                reason = self._connection()
            except Behind:
                self.intake.cut()  # not stored: replayed from the stored cursor
                reason = "dropping behind: the store is slower than the stream; resuming from the stored cursor"
            except LeaseLost:
                self.intake.cut()  # the new holder resumes from the stored cursor
                log.warning("stream %s: another process holds it now; this one stops reading it", self.config.name)
                continue
            except Exception as exc:  # a connection boundary: any failure means reconnecting
                if not isinstance(exc, (OSError, WebSocketException, TimeoutError, Stalled, InvalidURI, GapUnfilled)):
                    log.exception("stream %s: reader failed", self.config.name)
                reason = _why(exc, self.config)
            finally:
                self.ws = None
            if self.stopping.is_set():
                break
            if self.frames:
                self.backoff.reset()
            delay = self.backoff.next()
            log.warning("stream %s: %s; reconnecting in %.1f s", self.config.name, reason, delay)
            self._state("reconnecting", error=reason, reconnected=True)
            self.stopping.wait(delay)

    def _connection(self) -> str:
        with self.sessions.begin() as session:
            cursor, cursor_at = store_streams.position(session, self.source_id)
            watched = self._watched(session, cursor_at) if self.config.kind == "misskey" else []
        self.intake.resume = cursor
        url = self.adapter.subscribe_url(self.config, cursor, rewind_seconds=self.config.rewind_seconds) \
            if self.adapter.RESUMABLE else self.adapter.subscribe_url(self.config, cursor, environ=self.environ)
        with connect(url, max_size=HARD_FRAME_CAP, open_timeout=min(self.config.stall_seconds, 30.0),
                     close_timeout=2.0, compression=None, user_agent_header=USER_AGENT) as ws:
            self.ws = ws
            if self.stopping.is_set():
                return "stopping"
            for message in self.adapter.hello(self.config) + [self.adapter.watch(n) for n in watched]:
                ws.send(message)
            self._state("connected")
            self.gap_from = None if self.adapter.RESUMABLE else cursor  # filled when the first note arrives
            try:
                self._pump(ws)
            except ConnectionClosed as exc:
                self._flush_partial()
                return _why(exc, self.config)
            except Stalled:
                self._flush_partial()
                raise
            except GapUnfilled:
                raise  # the batch before the gap's first note was not cut: replayed after the gap next time
        self._flush_partial()
        if self.resync.is_set() and not self.holds:
            raise LeaseLost()
        return "the store failed a batch; resuming from the stored cursor" if self.resync.is_set() else "stopping"

    def _pump(self, ws) -> None:
        cfg, intake = self.config, self.intake
        last = time.monotonic()
        due = last + cfg.batch_seconds
        watch = self.config.kind == "misskey"
        while not self.stopping.is_set() and not self.resync.is_set():
            now_m = time.monotonic()
            if self.shared and now_m >= self._renew_at and not (now_m < self._held_until and self._hold(take=False)):
                raise LeaseLost()
            wait = min(due, last + cfg.stall_seconds) - now_m
            if intake.batch:  # a quiet socket flushes what it has at once: a slow stream is stored as it comes
                wait = min(wait, IDLE_FLUSH, cfg.batch_seconds)
            try:
                frame = ws.recv(timeout=max(0.0, wait), decode=False)
            except TimeoutError:
                frame = None
            now_m = time.monotonic()
            if frame is not None:
                last = now_m
                self.frames += 1
                if self.gap_from is not None:
                    self._fill_gap(ws, frame)
                posts = len(intake.batch.posts)
                event = intake.take(frame, received=self.now())
                if watch and event is not None and event.kind in (POST, REPOST) and len(intake.batch.posts) > posts:
                    ws.send(self.adapter.watch(intake.batch.posts[-1].key.rsplit("/", 1)[-1]))
            elif now_m - last >= cfg.stall_seconds:
                raise Stalled(f"no frame for {cfg.stall_seconds:g} s")
            if intake.batch.frames >= cfg.batch_messages or now_m >= due or (frame is None and intake.batch):
                if intake.batch:
                    self._put(intake.cut())
                due = now_m + cfg.batch_seconds

    def _fill_gap(self, ws, frame: bytes) -> None:
        """A stream without replay (Misskey): once the first note of a new connection arrives, the notes
        between the stored cursor and it are read from the HTTP API."""
        try:
            event = self.adapter.decode(frame, web=self.intake.web)
        except StreamError:
            return
        if event.cursor is not None:
            since, self.gap_from = self.gap_from, None
            if event.cursor > since:
                self._backfill(ws, since, event.cursor)

    def _backfill(self, ws, since_id: str, until_id: str) -> None:
        """The notes after ``since_id`` and before ``until_id``, read from the HTTP API, as if they had come on
        the stream (the store ignores those it has), and watched for deletion. A failure leaves the gap,
        said once."""
        intake, added = self.intake, 0
        try:
            with httpx.Client(timeout=API_TIMEOUT, headers={"User-Agent": USER_AGENT},
                              transport=deadline_transport(trust_env=False), trust_env=False) as client:
                for url, body in self.adapter.backfill_requests(self.config, since_id, until_id, environ=self.environ):
                    since = since_id
                    for _ in range(self.config.backfill_pages):
                        notes = self._api_page(client, url, {**body, "sinceId": since})
                        notes = sorted((n for n in notes if isinstance(n, dict) and isinstance(n.get("id"), str)),
                                       key=lambda n: n["id"]) if isinstance(notes, list) else []
                        for note in notes:
                            try:
                                posts = len(intake.batch.posts)
                                intake.fill(self.adapter.note_event(note, web=intake.web))
                                added += 1
                                if len(intake.batch.posts) > posts:
                                    ws.send(self.adapter.watch(intake.batch.posts[-1].key.rsplit("/", 1)[-1]))
                            except StreamError as exc:
                                intake.batch.frames += 1
                                intake._error(exc)
                            if intake.batch.frames >= self.config.batch_messages:
                                self._put(intake.cut())
                        if len(notes) < body["limit"]:
                            break
                        since = notes[-1]["id"]
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            self.gap_tries += 1
            if self.gap_tries < GAP_TRIES:  # nothing after the gap is stored yet: the next connection tries again
                intake.cut()
                raise GapUnfilled(f"the notes since {since_id} could not be read ({type(exc).__name__}: "
                                  f"{str(exc)[:120]})") from None
            log.warning("stream %s: the gap since %s could not be read (%s); given up after %d tries",
                        self.config.name, since_id, exc, self.gap_tries)
            intake.batch.last_error = f"gap since {since_id} not filled: {type(exc).__name__}: {str(exc)[:200]}"
        self.gap_tries = 0
        if intake.batch:
            self._put(intake.cut())
        log.info("stream %s: %d note(s) read to fill the gap since %s", self.config.name, added, since_id)

    def _api_page(self, client: httpx.Client, url: str, body: dict):
        """One page of notes from the Misskey API, its answer read within API_TIMEOUT in all and never more
        than a page of the largest frames (``max_frame_bytes`` per note); ValueError when it is larger or
        not JSON, RecursionError when nested too deep, httpx errors as they come."""
        cap = body["limit"] * self.config.max_frame_bytes
        with deadline(API_TIMEOUT), client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise ValueError(f"an answer of more than {cap} bytes")
                chunks.append(chunk)
        return json.loads(b"".join(chunks))

    def _flush_partial(self) -> None:
        """The frames read before the connection ended are stored (unless a resync throws them away)."""
        batch = self.intake.cut()
        if batch and not self.resync.is_set():
            try:
                self._put(batch)
            except Behind:
                pass  # not stored: replayed from the stored cursor

    def _put(self, batch: Batch) -> None:
        try:
            self.queue.put_nowait(batch)
        except queue.Full:
            try:
                self.queue.put(batch, timeout=self.config.backpressure_seconds)
            except queue.Full:
                self._fall_behind(batch)
                return
        if self.behind and self.queue.qsize() <= self.config.queue_batches // 2:
            self.behind = False
            self._state("connected")

    def _fall_behind(self, batch: Batch) -> None:
        """The batch is not stored: the connection goes, and the next one starts from the stored cursor
        (Jetstream replays from it; Misskey's gap is read from its API)."""
        self.behind = True
        self._state("dropping behind", error=f"the store took no batch for {self.config.backpressure_seconds:g} s")
        raise Behind()

    def _drain(self) -> None:
        """Wait until every queued batch is stored (or thrown away after a failed one)."""
        while self.queue.unfinished_tasks and not self.stopping.is_set():
            time.sleep(0.02)
        self.resync.clear()

    def _watched(self, session: Session, cursor_at: datetime | None) -> list[str]:
        """Misskey: the notes stored in the day before the cursor, subscribed to again on a new connection
        (a subscription lasts as long as its connection), so their deletion is heard."""
        since = (cursor_at or self.now()) - WATCH_RECENT
        return [k.rsplit("/", 1)[-1] for k in store_streams.recent_keys(session, self.source_id, since, WATCH_LIMIT)]

    # writer ----------------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                batch = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.stopping.is_set() and not self._threads[0].is_alive():
                    return
                continue
            try:
                if not self.resync.is_set():  # after a failed batch, the rest is replayed from the stored cursor
                    self._save(batch)
            except LeaseLost:  # another process reads the stream now: nothing more is written from here
                self._held_until = 0.0
                self.stories.clear()
                self.resync.set()
            except Exception as exc:  # a batch boundary: the store failed (disk full, locked); resume from the cursor
                log.exception("stream %s: storing a batch failed", self.config.name)
                self.stories.clear()
                self.resync.set()
                self._state("reconnecting", error=f"storing failed: {type(exc).__name__}: {str(exc)[:200]}")
            finally:
                self.queue.task_done()

    def _save(self, batch: Batch) -> None:
        now = self.now()
        if len(self.stories) > STORY_INDEX_LIMIT:  # a reader runs for months: old stories are read again if needed
            self.stories.prune(now - 2 * self.stories.window)
        with self.sessions.begin() as session:
            if self.shared and not store_work.hold_lease(session, self.holder, self.lease_name, now=now,
                                                         lease=self.lease, take=False):
                raise LeaseLost()
            save_batch(session, self.source_id, self.config, batch, now=now, stories=self.stories,
                       policy=self.policy, rates=self._rate(batch))

    def _rate(self, batch: Batch) -> tuple[float, float]:
        """Messages and kept posts per minute over the last RATE_WINDOW seconds."""
        t = time.monotonic()
        self._totals[0] += batch.messages
        self._totals[1] += batch.kept
        self._rates.append((t, *self._totals))
        while len(self._rates) > 2 and t - self._rates[1][0] >= RATE_WINDOW:
            self._rates.popleft()
        t0, m0, k0 = self._rates[0]
        span = t - t0
        if span < 1.0:
            return float(batch.messages), float(batch.kept)  # too early to say: this batch, as if a minute
        return (self._totals[0] - m0) * 60 / span, (self._totals[1] - k0) * 60 / span

    def _state(self, state: str, *, error: str | None = None, reconnected: bool = False) -> None:
        try:
            with self.sessions.begin() as session:
                if self.shared and state != "paused" and not store_work.hold_lease(
                        session, self.holder, self.lease_name, now=self.now(), lease=self.lease, take=False):
                    return  # the holder's state, not this reader's
                store_streams.set_state(session, self.source_id, state, now=self.now(), error=error,
                                        reconnected=reconnected)
        except Exception:  # the store is failing: the writer says so; the connection goes on
            log.exception("stream %s: recording its state failed", self.config.name)


def _why(exc: BaseException, config: StreamConfig) -> str:
    """A one-line reason for a reconnect (an access token in an address is never repeated)."""
    return re.sub(r"([?&]i=)[^&\s'\"]+", r"\1***", _reason(exc, config))


def _reason(exc: BaseException, config: StreamConfig) -> str:
    if isinstance(exc, ConnectionClosed):
        close = exc.rcvd
        if close is None:
            return "the connection dropped"
        return f"the server closed the stream ({close.code}{' ' + close.reason if close.reason else ''})"
    if isinstance(exc, Stalled):
        return f"stalled: no frame for {config.stall_seconds:g} s"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def run_streams(configs, sessions: sessionmaker[Session], *, stop: threading.Event,
                policy: CollectPolicy = CollectPolicy(),
                lease: timedelta = timedelta(seconds=60)) -> list[StreamRunner]:
    """Run every configured stream until ``stop`` is set; then stop them (what was read is stored)."""
    runners = [StreamRunner(c, sessions, policy=policy, lease=lease) for c in configs]
    for r in runners:
        r.start()
    stop.wait()
    for r in runners:
        r.stop()
    return runners
