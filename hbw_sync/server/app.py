"""The relay's aiohttp application: ``create_app(config)``, one route table, metrics, logs.

This module only moves bytes: it reads a request body, has ``relay.prepare``
check it, runs ``relay.apply`` in the writer (SQLite) or a pooled transaction
(PostgreSQL), signs the answer (``relay.answer``), and writes it or an error
mapped through ``errors.http_status_for``. Errors are JSON so a person
with curl can read them; successful bodies are signed msgpack envelopes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import web

from .. import __version__, allocation, bundle, envelope, timefmt, wordcode
from ..errors import HbwError, LimitError, ProtocolError, StorageError, TransientError, http_status_for, retry_after_for
from ..i18n import _
from . import board, bundle_ingest, db, limits, relay, storage, stream, teams
from .connections import ConnectionGuard, ConnectionLimits

log = logging.getLogger("hbw.relay")


def log_line(**fields: Any) -> str:
    """One JSON log line, its UTC time first: office IT reads when each thing happened (ISSUE 13)."""
    return json.dumps({"time": timefmt.iso_utc(relay.now_ms(), millis=True), **fields})


MAX_BODY = limits.MAX_BODY
MIN_FREE_MB = 64  # below this much free space on the data disk, /healthz says unhealthy


@dataclass
class RelayConfig:
    data: Path
    host: str = "127.0.0.1"
    port: int = 8765
    max_body: int = MAX_BODY
    access_log: bool = True
    rebalance_every_s: float | None = None
    stale_hours: float = 72
    default_capacity: int = allocation.DEFAULT_CAPACITY
    min_free_mb: float = MIN_FREE_MB
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: A request body may pause this long between reads...
    body_stall_s: float = 30.0
    #: ...and must average at least ``min_body_rate`` bytes/s after a grace of ``body_grace_s``.
    body_grace_s: float = 30.0
    min_body_rate: int = 500
    #: Request body bytes held at once, in all and per client address (``limits.BodyBudget``).
    bodies_total: int = 128 * 1024 * 1024
    bodies_per_address: int = 48 * 1024 * 1024
    #: Bytes of document chunks the team may keep (``limits.CHUNK_QUOTA``, PROTOCOL.md §18e).
    chunk_quota: int = limits.CHUNK_QUOTA
    #: Largest bundle ``POST /v1/bundle`` takes, read as a stream (format 1 keeps ``limits.BUNDLE_V1_MAX``).
    bundle_max: int = limits.BUNDLE_MAX
    #: A ``postgresql://`` URL; None: the data directory's own (``relay.db``, or its ``database.url``).
    database: str | None = None
    #: Which of ``serve --workers N`` this process is (0..N-1), named in its log lines; None: the only one.
    worker: int | None = None
    #: Processes that check requests' signatures and batches (``relay.prepare``) beside the event loop;
    #: 0: the event loop checks them itself. For a SQLite relay on a machine with idle cores.
    check_processes: int = 0
    #: A multi-team data directory (``teams.py``): teams open at once, and idle seconds before one is closed.
    max_open_teams: int = 256
    team_idle_s: float = 600.0
    #: The team id of one team's app in a multi-team relay (named in its log lines); None: a one-team relay.
    team: str | None = None


@dataclass
class Metrics:
    requests: Counter = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    devices_seen: set = field(default_factory=set)
    latency_sum: float = 0.0
    latency_count: int = 0
    buckets: Counter = field(default_factory=Counter)

    BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def observe(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
        for b in self.BOUNDS:
            if seconds <= b:
                self.buckets[b] += 1

    def render(self, commits: int, connections: dict[str, int] | None = None) -> str:
        lines = [
            "# HELP hbw_requests_total Requests by action and HTTP status.",
            "# TYPE hbw_requests_total counter",
        ]
        for (action, status), n in sorted(self.requests.items()):
            lines.append(f'hbw_requests_total{{action="{action}",status="{status}"}} {n}')
        for name, value, help_ in (
            ("hbw_bytes_in_total", self.bytes_in, "Request body bytes received."),
            ("hbw_bytes_out_total", self.bytes_out, "Response body bytes sent."),
            ("hbw_batches_in_total", self.batches_in, "Batches acknowledged."),
            ("hbw_batches_out_total", self.batches_out, "Batches handed out to devices."),
            ("hbw_devices_seen", len(self.devices_seen), "Distinct devices that synced since start."),
            ("hbw_db_commits_total", commits, "Writer transactions committed (group commits)."),
        ):
            kind = "gauge" if name == "hbw_devices_seen" else "counter"
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        lines += ["# HELP hbw_sync_seconds Time to answer a sync request.", "# TYPE hbw_sync_seconds histogram"]
        for b in self.BOUNDS:
            lines.append(f'hbw_sync_seconds_bucket{{le="{b}"}} {self.buckets[b]}')
        lines.append(f'hbw_sync_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"hbw_sync_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"hbw_sync_seconds_count {self.latency_count}")
        for name, value in (connections or {}).items():  # ConnectionGuard.stats()
            kind = "gauge" if name in ("open", "cap") else "counter"
            metric = f"hbw_connections_{name}" + ("_total" if kind == "counter" else "")
            lines += [f"# HELP {metric} Connections: {_CONN_HELP[name]}.", f"# TYPE {metric} {kind}", f"{metric} {value}"]
        return "\n".join(lines) + "\n"


    def to_dict(self, commits: int, connections: dict[str, int]) -> dict[str, Any]:
        """The counters as JSON-able data (``SharedMetrics``)."""
        return {"requests": [[a, st, n] for (a, st), n in self.requests.items()], "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "batches_in": self.batches_in, "batches_out": self.batches_out,
                "devices_seen": sorted(self.devices_seen), "latency_sum": self.latency_sum,
                "latency_count": self.latency_count, "buckets": [[b, n] for b, n in self.buckets.items()],
                "commits": commits, "connections": connections}

    def add(self, d: dict[str, Any]) -> None:
        """Add another worker's counters (``to_dict``) to these."""
        for a, st, n in d["requests"]:
            self.requests[(str(a), int(st))] += int(n)
        for k in ("bytes_in", "bytes_out", "batches_in", "batches_out", "latency_count"):
            setattr(self, k, getattr(self, k) + int(d[k]))
        self.latency_sum += float(d["latency_sum"])
        self.devices_seen.update(str(x) for x in d["devices_seen"])
        for b, n in d["buckets"]:
            self.buckets[float(b)] += int(n)


class SharedMetrics:
    """``/metrics`` for the whole relay under ``serve --workers N``: each worker's counters in a file.

    Why files: workers share nothing but the data directory and the database, and a counter
    row in the database would cost every request a write under the one writer. Each worker
    writes its counters (``DATA/metrics/worker-I.json``, 0600, replaced whole) every
    ``FLUSH_S`` seconds and whenever it answers ``/metrics``; the worker asked adds the others'
    files to its own live counters. So the whole relay's figures lag by at most ``FLUSH_S``
    for the other workers. A restarted worker starts from its file's counts, so the relay's
    counters never go backwards when the OOM killer takes a worker (at most ``FLUSH_S`` of its
    requests are lost to them).
    """

    DIR = "metrics"
    FLUSH_S = 1.0
    MAX_FILE = 4 * 1024 * 1024  # our own files; one of another size is not ours to trust

    def __init__(self, data: Path, worker: int):
        self.dir = Path(data) / self.DIR
        self.worker = worker
        self.path = self.dir / f"worker-{worker}.json"

    @classmethod
    def forget(cls, data: Path) -> None:
        """Remove the files of an earlier serve (the parent, before it starts its workers)."""
        for f in (Path(data) / cls.DIR).glob("worker-*.json"):
            with contextlib.suppress(OSError):
                f.unlink()

    @classmethod
    def _read(cls, f: Path) -> dict[str, Any] | None:
        try:
            if f.stat().st_size > cls.MAX_FILE:
                return None
            d = json.loads(f.read_bytes())
            return d if isinstance(d, dict) else None
        except (OSError, ValueError):
            return None  # being replaced, or cut by a crash: the next read gets it

    def own(self) -> dict[str, Any] | None:
        """This worker's counts from before a restart, or None."""
        return self._read(self.path)

    def save(self, d: dict[str, Any]) -> None:
        from .. import fileio

        with contextlib.suppress(OSError):
            self.dir.mkdir(mode=0o700, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fileio.FILE_MODE)
            with os.fdopen(fd, "w") as f:
                json.dump(d, f)
            os.replace(tmp, self.path)

    def others(self) -> list[dict[str, Any]]:
        return [d for f in sorted(self.dir.glob("worker-*.json")) if f != self.path
                and (d := self._read(f)) is not None]


_CONN_HELP = {"open": "open now", "cap": "most held at once (under the descriptor limit)",
              "refused": "closed at once (over the per-address cap, or all busy)",
              "evicted": "idle ones closed to make room for a new one",
              "timed_out": "closed for sending nothing, or a request head too slowly"}

WRITER = web.AppKey("writer", storage.Runner)  # type: ignore[type-abstract]
IDENTITY = web.AppKey("identity", relay.RelayIdentity)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", RelayConfig)
GUARD = web.AppKey("guard", ConnectionGuard)
BODIES = web.AppKey("bodies", limits.BodyBudget)

routes = web.RouteTableDef()


def error_response(e: HbwError) -> web.Response:
    """An error as the relay answers it: its class's status, a JSON body, Retry-After when it has one."""
    if isinstance(e, StorageError):  # the relay's disk, not the device's: tell the device what it means for it
        e = db.for_device(e)
    body = e.to_dict()
    retry = retry_after_for(e)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return web.Response(status=http_status_for(e), text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _cap_for_head(prefix: bytes) -> int:
    """The body limit of the action a request's first bytes name (small when they name none)."""
    try:
        head = envelope.peek_request(prefix + bytes(64))  # a dummy signature: only the header is read
    except HbwError:
        return limits.HEAD_BYTES * 32
    act = limits.action_for(head.action)
    return act.body if act else limits.HEAD_BYTES * 32


async def read_body(request: web.Request, max_body: int, cap_for: Any = None,
                    held: list[int] | None = None) -> bytearray:
    """Read a request body within its limits: refused compressed, over the cap, or too slow.

    Compressed bodies are refused from the header, never inflated (aiohttp runs with
    ``auto_decompress=False``; 20 gzip bodies of 40 KB once cost 794 MB). The cap is
    ``max_body`` until the first bytes name the action, then that action's limit, so a
    declared length over it is refused before the rest is read. A body must keep moving:
    no read may wait more than ``body_stall_s``, and after ``body_grace_s`` it must average
    ``min_body_rate`` bytes/s, so a trickle cannot hold a descriptor and a handler forever.
    Each chunk is taken from the relay's ``BodyBudget`` first; ``held[0]`` counts what the
    caller gives back once the answer is sent.
    """
    cfg: RelayConfig = request.app[CONFIG]
    enc = request.headers.get("Content-Encoding", "identity").strip().lower()
    if enc not in ("", "identity"):
        raise ProtocolError(f"compressed request bodies ({enc}) are not accepted; nothing was read",
                            code="protocol.encoding", hint="send the body as is: hbw-sync compresses inside it")
    declared = request.content_length
    cap = max_body
    if declared is not None and declared > cap:
        raise LimitError(f"request body of {declared} bytes is over the {cap}-byte limit", code="protocol.limit")
    # Once the action's cap is known, a declared length is allocated (and taken from the
    # budget) at once: one buffer of exactly the body's size, never a list of chunks to join
    # or a growing buffer's spare capacity.
    body = bytearray()
    view: memoryview | None = None
    got = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    capped = cap_for is None

    def take(n: int) -> None:
        if held is not None:
            request.app[BODIES].take(request.remote or "?", n)
            held[0] += n

    try:
        while True:
            deadline = t0 + cfg.body_grace_s + got / cfg.min_body_rate
            wait = min(cfg.body_stall_s, deadline - loop.time())
            if wait <= 0:
                raise TransientError(f"the request arrived too slowly ({got} bytes in {loop.time() - t0:.0f} s); "
                                     "the relay stopped waiting and stored nothing of it",
                                     code="transient.slow_body", hint="the next sync tries again")
            try:
                chunk = await asyncio.wait_for(request.content.readany(), wait)
            except asyncio.TimeoutError:
                raise TransientError(f"the request stopped arriving after {got} bytes; "
                                     "the relay stopped waiting and stored nothing of it",
                                     code="transient.slow_body", hint="the next sync tries again") from None
            if not chunk:
                break
            n = len(chunk)
            if got + n > cap or (view is not None and got + n > len(view)):
                raise LimitError(f"request body is over the {cap}-byte limit", code="protocol.limit")
            if view is None:
                take(n)
                body += chunk
            else:
                view[got:got + n] = chunk
            got += n
            if not capped and got >= limits.HEAD_BYTES:
                cap = min(cap, cap_for(bytes(body[: limits.HEAD_BYTES])))
                capped = True
                if declared is not None and declared > cap:
                    raise LimitError(f"request body of {declared} bytes is over the {cap}-byte limit for its action",
                                     code="protocol.limit")
                if got > cap:
                    raise LimitError(f"request body is over the {cap}-byte limit", code="protocol.limit")
            if capped and view is None and declared is not None and got < declared:
                take(declared - got)
                whole = bytearray(declared)
                whole[:got] = body
                body, view = whole, memoryview(whole)
    finally:
        if view is not None:
            view.release()
    if got < len(body):
        del body[got:]  # the peer declared more than it sent
    return body


class _BundleBody:
    """A ``/v1/bundle`` request body read as it arrives, for ``bundle_ingest.spool_stream`` in a thread.

    Why: a bundle may be gigabytes (format 2). Its bytes are never gathered: ``read(n)`` hands the
    verifier at most one segment's worth at a time, and only the bytes handed over and not yet
    checked count in the relay's ``BodyBudget`` (a format 1 bundle, read whole, holds all of its
    own, at most ``limits.BUNDLE_V1_MAX``). The pace rules are ``read_body``'s; ``cap`` is
    checked on every read, so an endless body stops at it.
    """

    def __init__(self, request: web.Request, cap: int):
        self.request, self.cap = request, cap
        self.cfg: RelayConfig = request.app[CONFIG]
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.got = 0
        self.held = 0  # of the BodyBudget, now
        self.hold_all = False  # format 1: read whole, so its bytes are held until the answer
        self.head = b""  # the bytes read before the thread starts, handed to it first
        self.over = False  # the handler is done (or was cancelled): the thread's next read fails, taking nothing

    def _take(self, n: int) -> None:
        if self.over:  # a read that was waiting when the handler ended: it holds nothing more
            raise self._stopped()
        if not self.hold_all and self.held:
            self._give()
        self.request.app[BODIES].take(self.request.remote or "?", n)
        self.held += n

    def _stopped(self) -> TransientError:
        return TransientError(_("the bundle stopped arriving after {n} bytes; the relay stopped waiting "
                                "and stored nothing of it").format(n=self.got),
                              code="transient.slow_body", hint=_("send the bundle again"))

    def _give(self) -> None:
        self.request.app[BODIES].give(self.request.remote or "?", self.held)
        self.held = 0

    async def read(self, n: int) -> bytes:
        """``n`` bytes, fewer only at the end of the body; each piece within the cap and the pace."""
        if self.over:
            raise self._stopped()
        pieces: list[bytes] = []
        want = n
        if self.head:
            pieces.append(self.head[:want])
            self.head = self.head[want:]
            want -= len(pieces[0])
        cfg = self.cfg
        while want > 0:
            deadline = self.t0 + cfg.body_grace_s + self.got / cfg.min_body_rate
            wait = min(cfg.body_stall_s, deadline - self.loop.time())
            if wait <= 0:
                raise TransientError(_("the bundle arrived too slowly ({n} bytes in {s} s); the relay stopped waiting "
                                       "and stored nothing of it").format(n=self.got, s=round(self.loop.time() - self.t0)),
                                     code="transient.slow_body", hint=_("send the bundle again"))
            try:
                chunk = await asyncio.wait_for(self.request.content.read(min(want, limits.STREAM_FLUSH)), wait)
            except asyncio.TimeoutError:
                raise self._stopped() from None
            if not chunk:
                break
            if self.got + len(chunk) > self.cap:
                raise LimitError(_("the bundle is over the relay's {cap}-byte limit; nothing of it was stored")
                                 .format(cap=self.cap), code="protocol.limit",
                                 hint=_("ask office IT to raise the relay's bundle limit, or export smaller bundles"))
            self._take(len(chunk))
            self.got += len(chunk)
            pieces.append(chunk)
            want -= len(chunk)
        return b"".join(pieces)

    def read_blocking(self, n: int) -> bytes:
        """``read`` from the verifier's thread: the event loop does the reading."""
        return asyncio.run_coroutine_threadsafe(self.read(n), self.loop).result()


async def read_bundle(request: web.Request, held: list[int]) -> "bundle_ingest.Spooled":
    """A ``/v1/bundle`` body checked segment by segment as it arrives, its document parts spooled to disk.

    Order: a compressed body or a declared length over the cap is refused before any byte is read;
    then the bundle's header (54 bytes: magic, version, team, relay) is checked before anything
    grows; a format 1 bundle gets the old 40 MiB cap. The spool file is in the relay's data
    directory, anonymous (gone on a crash), closed by the caller. ``held`` is ``_serve``'s: what
    this body still holds of the ``BodyBudget`` when it returns (format 1: all of it).
    """
    cfg: RelayConfig = request.app[CONFIG]
    enc = request.headers.get("Content-Encoding", "identity").strip().lower()
    if enc not in ("", "identity"):
        raise ProtocolError(_("compressed bundles ({enc}) are not accepted; nothing was read").format(enc=enc),
                            code="protocol.encoding", hint=_("send the bundle file as it is: it is compressed inside"))
    cap = min(cfg.bundle_max, bundle.MAX_STREAM)
    declared = request.content_length

    def over(limit: int) -> LimitError:
        return LimitError(_("a bundle of {n} bytes is over the relay's {cap}-byte limit; nothing of it was read")
                          .format(n=declared, cap=limit), code="protocol.limit",
                          hint=_("ask office IT to raise the relay's bundle limit, or export smaller bundles"))

    if declared is not None and declared > cap:
        raise over(cap)
    body = _BundleBody(request, cap)
    ident = request.app[IDENTITY]
    try:
        head = await body.read(bundle.HEADER.size)
        if len(head) < 5 or head[:3] != bundle.MAGIC:
            raise ProtocolError(_("this is not an hbw-sync bundle"), code="protocol.magic")
        if head[4] == bundle.VERSION:  # one AEAD message, read whole: the old cap
            body.hold_all = True
            body.cap = min(cap, limits.BUNDLE_V1_MAX)
            if declared is not None and declared > body.cap:
                raise over(body.cap)
        body.head = head
        spool_dir = Path(cfg.data)
        done: asyncio.Future[bundle_ingest.Spooled] = body.loop.create_future()

        def failed(e: BaseException) -> None:
            if not done.cancelled():
                done.set_exception(e)

        def finished(sp: bundle_ingest.Spooled) -> None:
            if done.cancelled():
                sp.close()
            else:
                done.set_result(sp)

        def work() -> None:  # its own thread: a slow upload must not hold one of the loop's pooled threads
            try:
                sp = bundle_ingest.spool_stream(body.read_blocking, ident.team, ident.key.device_id,
                                                bundle.relay_x25519(ident.key), spool_dir, max_total=cap)
            except BaseException as e:  # noqa: BLE001 - handed to the handler, which maps it
                body.loop.call_soon_threadsafe(failed, e)
            else:
                body.loop.call_soon_threadsafe(finished, sp)

        threading.Thread(target=work, name="hbw-bundle-upload", daemon=True).start()
        sp = await done
        sp.wire_bytes = body.got
        return sp
    finally:
        body.over = True
        if body.hold_all:
            held[0] += body.held  # given back by ``_serve`` once the answer is sent
        else:
            body._give()


class KeyCache:
    """Enrolled devices' public keys, kept by this process so a request's signature is checked before its
    transaction (``relay.prepare``) without a database round trip.

    Why a cache is safe: a device's keys are fixed at enrollment (its id is derived from its
    author key; a second enrollment of an id is refused), and everything that can change
    (revoked, nonce used) is checked again in the transaction. A wrong entry could only make a
    request fail there. Bounded: only keys found in the database enter, at most ``cap``.
    """

    def __init__(self, cap: int = 100_000):
        self.cap = cap
        self._keys: dict[bytes, relay.DeviceKeys] = {}

    def get(self, device: bytes) -> relay.DeviceKeys | None:
        return self._keys.get(device)

    def put(self, device: bytes, keys: relay.DeviceKeys) -> None:
        if len(self._keys) >= self.cap:
            self._keys.clear()  # a relay past ``cap`` devices re-reads keys; rarely, and never unbounded
        self._keys[device] = keys


KEYS = web.AppKey("keys", KeyCache)
SHARED = web.AppKey("shared_metrics", SharedMetrics)
COMMITS_BEFORE = web.AppKey("commits_before", int)
#: This process's counters as data (``Metrics.to_dict``), for ``SharedMetrics``: a one-team relay's
#: ``_own_counts``; a multi-team relay's adds its teams' counters (``teampool``).
OWN_COUNTS: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("own_counts")
CHECKERS = web.AppKey("checkers", concurrent.futures.Executor)
#: Bodies up to this size are checked on the event loop (about a millisecond for a 100-op sync);
#: larger ones in a thread, so that a 30 MiB upload does not hold up the other devices' requests.
PREPARE_INLINE_MAX = 64 * 1024


async def _rpc(app: web.Application, body: bytearray, now: int) -> tuple[bytes, dict[str, Any]]:
    """A device request in three steps, so that the transaction (the SQLite writer, or a PostgreSQL
    connection holding the team's lock) only reads and writes: ``relay.prepare`` checks the signature,
    freshness, args and each batch first; ``relay.apply`` runs the action; ``relay.answer`` signs after."""
    ident = app[IDENTITY]
    head = envelope.peek_request(body)
    spec = limits.action_for(head.action)
    keys = None
    if spec is not None and not spec.pre_auth:
        envelope.check_fresh(head, now)  # a stale request costs no database read
        keys = app[KEYS].get(head.device)
        if keys is None:  # a read: on PostgreSQL without the team's lock (junk device ids must not queue on it)
            runner = app[WRITER]
            keys = await reader_of(runner)(relay.device_keys, head.device)
            if keys is not None:
                app[KEYS].put(head.device, keys)
    checkers = app.get(CHECKERS)
    if len(body) > PREPARE_INLINE_MAX:  # hashing and parsing megabytes would stall this event loop's other connections
        prep = await asyncio.to_thread(relay.prepare, body, now, keys, ident.team)
    elif checkers is not None:  # another core checks it: this process only moves bytes and writes
        prep = await asyncio.get_running_loop().run_in_executor(checkers, relay.prepare_detached, bytes(body), now,
                                                                keys, ident.team)
    else:
        prep = relay.prepare(body, now, keys, ident.team)
    runner = app[WRITER]
    if prep.req.action == "sync" and getattr(runner, "reads_apart", False):
        # PostgreSQL: the writes under the team's lock, the reads after it in a transaction of their
        # own, so that one team's syncs wait for each other only for their writes.
        pushed = await runner.run(relay.apply_push, ident, prep, now)
        result, stats = await reader_of(runner)(relay.apply_pull, ident, prep, pushed)
    else:
        result, stats = await runner.run(relay.apply, ident, prep, now)
    return relay.answer(ident, prep, result, now), stats


async def _serve(request: web.Request, handler: Any, content_type: str, default_action: str,
                 max_body: int | None = None, cap_for: Any = None, flow: Any = None,
                 reader: Any = None) -> web.StreamResponse:
    """Read a body, run ``handler`` in the writer (or the whole ``flow``), answer its bytes; one error
    mapping, metrics and log line. ``reader(request, held)``: reads the body instead of ``read_body``
    (``read_bundle``: a stream, not bytes in memory)."""
    app = request.app
    m = app[METRICS]
    t0 = time.perf_counter()
    action, status, device = default_action, 200, "-"
    held = [0]  # body bytes taken from the BodyBudget, given back below
    try:
        if reader is not None:
            body = await reader(request, held)
        else:
            body = await read_body(request, max_body or app[CONFIG].max_body, cap_for, held)
        m.bytes_in += len(body)
        if flow is not None:
            out, stats = await flow(app, body, relay.now_ms())
        else:
            out, stats = await app[WRITER].run(handler, app[IDENTITY], body, relay.now_ms())
        action, device = stats["action"], stats["device"]
        if isinstance(out, HbwError):  # a refusal whose record had to be committed (relay.fetch_code)
            raise out
        m.bytes_out += len(out)
        m.batches_in += stats["batches_in"]
        m.batches_out += stats["batches_out"]
        if action in ("sync", "bundle"):
            m.devices_seen.add(device)
        return web.Response(body=out, content_type=content_type)
    except HbwError as e:
        status = http_status_for(e)
        if isinstance(e, StorageError):  # office IT must hear of it, not only the device
            log.warning(json.dumps({"action": action, "error": e.code, "message": e.message, "hint": e.hint}))
        resp = error_response(e)  # a 503 carries Retry-After (errors.RETRY_AFTER_S)
        if e.code in ("transient.slow_body", "transient.busy") or (reader is not None and e.code == "protocol.limit"):
            resp.force_close()  # the rest of such a body is not waited for, not even to discard it
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    except ConnectionResetError:  # the link dropped mid-upload: routine on 3G, one log line is enough
        status = 499
        return web.Response(status=499)
    except Exception as e:  # noqa: BLE001 - a disk fault outside the writer, or a bug: answer in JSON
        fault = db.storage_error(e)
        if fault is not None:
            status = http_status_for(fault)
            log.warning(json.dumps({"action": action, "error": fault.code, "detail": str(e)}))
            return error_response(fault)
        status = 500
        log.exception(log_line(action=action, device=device, error="internal error"))
        # The device shows this to a person: words, not the exception's class (the log above has it).
        return error_response(HbwError("the relay met an internal error; office IT finds the details in its log",
                                        code="internal"))
    finally:
        app[BODIES].give(request.remote or "?", held[0])
        dt = time.perf_counter() - t0
        m.requests[(action, status)] += 1
        if action == "sync":
            m.observe(dt)
        if app[CONFIG].access_log:
            extra: dict[str, Any] = {} if app[CONFIG].worker is None else {"worker": app[CONFIG].worker}
            if app[CONFIG].team is not None:
                extra["team"] = app[CONFIG].team
            log.info(log_line(action=action, device=device, status=status, ms=round(dt * 1000, 1),
                              bytes_in=request.content_length or 0, **extra))


@routes.post("/v1")
async def rpc(request: web.Request) -> web.StreamResponse:
    """Every device request: a signed envelope in, a signed envelope out."""
    return await _serve(request, None, "application/x-hbw", "?", cap_for=_cap_for_head, flow=_rpc)


@routes.post("/v1/stream")
async def stream_upload(request: web.Request) -> web.StreamResponse:
    """A large batch streamed at the byte: a signed head, then raw bytes (``stream.py``, PROTOCOL.md §13a)."""
    app = request.app
    deps = stream.Deps(app[WRITER], app[IDENTITY], app[CONFIG], app[BODIES], app[METRICS])
    return await stream.serve(request, deps, error_response)


@routes.post("/v1/fetch")
async def stream_download(request: web.Request) -> web.StreamResponse:
    """A large batch streamed from an offset: a signed head, then raw bytes (``stream.py``, PROTOCOL.md §17)."""
    app = request.app
    deps = stream.Deps(app[WRITER], app[IDENTITY], app[CONFIG], app[BODIES], app[METRICS])
    return await stream.serve_fetch(request, deps, error_response)


@routes.post("/v1/bundle")
async def bundle_upload(request: web.Request) -> web.StreamResponse:
    """The office's drop point for a bundle file: the body is the bundle, the answer its reply bundle.

    The body is checked as it arrives and never held (``read_bundle``): the writer gets the
    checked bundle (its envelope, its document parts in a spool file) and only decides.
    """
    return await _serve(request, None, "application/x-hbw-bundle", "bundle", flow=_bundle_flow, reader=read_bundle)


async def _bundle_flow(app: web.Application, sp: bundle_ingest.Spooled, now: int) -> tuple[Any, dict[str, Any]]:
    try:
        # ``relay.ingest_bundle`` takes the bundle already spooled as it is (``bundle_ingest.spool``).
        return await app[WRITER].run(relay.ingest_bundle, app[IDENTITY], sp, now)  # type: ignore[no-any-return]
    finally:
        sp.close()


@routes.post("/v1/code")
async def code_fetch(request: web.Request) -> web.StreamResponse:
    """A word-code invite (PROTOCOL.md §14a): [1, slot, proof] in, the invite sealed with the words out."""
    return await _serve(request, relay.fetch_code, "application/x-hbw", "code", max_body=wordcode.MAX_FETCH_BODY)


def reader_of(runner: storage.Runner) -> Callable[..., Awaitable[Any]]:
    """``runner.read`` where reads run apart from the writes (PostgreSQL: without the team's lock), else ``run``."""
    read: Callable[..., Awaitable[Any]] | None = getattr(runner, "read", None) if getattr(runner, "reads_apart", False) else None
    return read if read is not None else runner.run


def health(config: RelayConfig, writer: storage.Runner) -> StorageError | None:
    """Why the relay cannot take writes now, or None: free space below the floor, or the last write failed.

    A write fault is cleared by the next transaction that commits, so a relay whose
    disk was freed says healthy again after its next successful sync.
    """
    try:
        free = shutil.disk_usage(config.data).free
    except OSError as e:
        return db.storage_error(e) or StorageError(f"cannot read the relay's data directory: {e}", code="store.io")
    if free < config.min_free_mb * 2**20:
        return StorageError(f"the relay's disk is nearly full: {free / 2**20:.1f} MB free, below the "
                            f"{config.min_free_mb:g} MB floor", code="store.disk_full",
                            hint="free space on the disk that holds the relay's data directory")
    return writer.fault


def health_report(app: web.Application) -> tuple[dict[str, Any], StorageError | None]:
    """What /healthz says (and the office page shows): team, version, free space, and the fault if any."""
    ident = app[IDENTITY]
    body: dict[str, Any] = {"ok": True, "version": __version__, "team": ident.team_name,
                            "relay_key": ident.key.public.hex()}
    with contextlib.suppress(OSError):
        body["free_bytes"] = shutil.disk_usage(app[CONFIG].data).free
    fault = health(app[CONFIG], app[WRITER])
    if fault is not None:
        body.update(ok=False, code=fault.code, reason=fault.message, hint=fault.hint)
    return body, fault


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness for monitoring: 200 when the relay can take writes, 503 with the reason when not."""
    body, fault = health_report(request.app)
    if fault is None:
        return web.json_response(body)
    return web.json_response(body, status=503, headers={"Retry-After": str(retry_after_for(fault))})


def _storage_metrics(app: web.Application) -> str:
    """Gauges for alerting on the data disk: the same verdict as /healthz, and the free space."""
    fault = health(app[CONFIG], app[WRITER])
    lines = ["# HELP hbw_storage_healthy 1 when the relay can take writes (as /healthz), else 0.",
             "# TYPE hbw_storage_healthy gauge", f"hbw_storage_healthy {0 if fault else 1}"]
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(app[CONFIG].data).free
        lines += ["# HELP hbw_data_free_bytes Free space on the disk that holds the relay's data.",
                  "# TYPE hbw_data_free_bytes gauge", f"hbw_data_free_bytes {free}"]
    return "\n".join(lines) + "\n"


def _own_counts(app: web.Application) -> dict[str, Any]:
    """This process's counters as data, its writer's commits counted from before a restart."""
    return app[METRICS].to_dict(app[WRITER].commits + app[COMMITS_BEFORE], app[GUARD].stats())


def summed_counts(app: web.Application) -> tuple[Metrics, int, dict[str, int], list[dict[str, Any]]]:
    """The whole relay's counters under ``--workers N``: this worker's (``OWN_COUNTS``, saved for the
    others first) plus every other worker's file. Returns the summed counters, commits and connection
    figures, and each worker's data (this one's first), for counters a caller adds itself."""
    own = app[OWN_COUNTS]()
    app[SHARED].save(own)
    total, commits, conns = Metrics(), own["commits"], dict(own["connections"])
    total.add(own)
    workers = [own]
    for d in app[SHARED].others():
        workers.append(d)
        try:
            total.add(d)
            commits += int(d.get("commits", 0))
            for k, v in (d.get("connections") or {}).items():
                if k in conns:
                    conns[k] += int(v)
        except (KeyError, TypeError, ValueError):
            continue  # not a file this relay wrote whole
    return total, commits, conns, workers


def workers_gauge(n: int) -> str:
    return (f"# HELP hbw_workers Relay worker processes counted in these figures.\n"
            f"# TYPE hbw_workers gauge\nhbw_workers {n}\n")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The relay's counters; under ``--workers N`` those of every worker, summed (``SharedMetrics``)."""
    app = request.app
    if app.get(SHARED) is None:
        text = app[METRICS].render(app[WRITER].commits, app[GUARD].stats())
    else:
        total, commits, conns, workers = summed_counts(app)
        text = total.render(commits, conns) + workers_gauge(len(workers))
    return web.Response(text=text + _storage_metrics(app), content_type="text/plain", charset="utf-8")


async def shared_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Under ``--workers N``: start from this worker's earlier counts, and write them every ``FLUSH_S``.

    Only in a process's root app: a team of a multi-team relay counts into its root's ``METRICS``."""
    cfg = app[CONFIG]
    if cfg.worker is None or cfg.team is not None:
        yield
        return
    shared = app[SHARED] = SharedMetrics(cfg.data, cfg.worker)
    before = shared.own()
    if before is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            app[METRICS].add(before)
            app[COMMITS_BEFORE] = int(before.get("commits", 0))

    async def flush() -> None:
        while True:
            await asyncio.sleep(SharedMetrics.FLUSH_S)
            shared.save(app[OWN_COUNTS]())

    task = asyncio.create_task(flush())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    shared.save(app[OWN_COUNTS]())


def _identity(cfg: RelayConfig, txn: Any) -> relay.RelayIdentity:
    """The team's identity, held to its chunk quota: serve's, or (a team of a multi-team relay) its own
    when it has one (``team quota``), the serve's default otherwise."""
    quota = cfg.chunk_quota if cfg.team is None else teams.team_quota(txn, cfg.data, cfg.chunk_quota)
    return relay.load_identity(cfg.data, txn, quota)


async def _writer_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    shared = app.get(SHARED_PARTS)
    if shared is not None and shared.pg_runner is not None:  # a team of a multi-team relay on PostgreSQL
        writer = await shared.pg_runner(cfg.data)
        app[IDENTITY] = await writer.read(lambda t: _identity(cfg, t))
    else:
        store = storage.open_store(cfg.data, cfg.database)
        try:
            app[IDENTITY] = store.read(lambda conn: _identity(cfg, conn))
            writer = store.runner()
        finally:
            store.close()
        writer.start()
    app[WRITER] = writer
    checkers = None
    if cfg.check_processes > 0:
        import multiprocessing

        checkers = concurrent.futures.ProcessPoolExecutor(cfg.check_processes,
                                                          mp_context=multiprocessing.get_context("spawn"))
        app[CHECKERS] = checkers
    task = asyncio.create_task(_auto_rebalance(app)) if cfg.rebalance_every_s else None
    yield
    if task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if checkers is not None:
        checkers.shutdown(wait=True)
    writer.stop()


def rebalance_options(cfg: RelayConfig) -> allocation.Options:
    """What ``serve --auto-rebalance`` plans with (``--stale-after``, ``--default-capacity``)."""
    return allocation.Options(stale_ms=int(cfg.stale_hours * 3_600_000), default_capacity=cfg.default_capacity)


async def rebalance_now(app: web.Application) -> dict[str, Any]:
    """One team's round: the moves a dry run would propose, issued through its writer (the loop never waits
    on the plan; on SQLite the writer holds the team's write lock, on PostgreSQL its advisory lock, so the
    plan is made and issued in one transaction: two processes never both move a task)."""
    return await app[WRITER].run(board.rebalance, app[IDENTITY], relay.now_ms(), rebalance_options(app[CONFIG]),
                                 True)


async def _auto_rebalance(app: web.Application) -> None:
    """Every interval, issue the moves a dry run would propose (through the one writer)."""
    cfg = app[CONFIG]
    assert cfg.rebalance_every_s
    while True:
        await asyncio.sleep(cfg.rebalance_every_s)
        try:
            r = await rebalance_now(app)
            log.info(log_line(action="auto-rebalance", moves=len(r["moves"]), stuck=len(r["stuck"])))
        except Exception as e:  # noqa: BLE001 - a failed round must not stop the relay
            log.warning(log_line(action="auto-rebalance", error=str(e)))


@web.middleware
async def _busy(request: web.Request, handler: Any) -> web.StreamResponse:
    """Mark the connection busy while a handler runs: the guard never closes it mid-request."""
    guard = request.app[GUARD]
    guard.begin(request.transport)
    try:
        return await handler(request)
    finally:
        guard.end(request.transport)


async def _guard_ctx(app: web.Application) -> AsyncIterator[None]:
    app[GUARD].start()
    yield
    await app[GUARD].stop()


@dataclass
class Shared:
    """What a multi-team relay's team apps share with its root app (``teampool``): one connection
    guard, one body budget and one set of counters for the process, and on PostgreSQL the one pool."""

    guard: ConnectionGuard
    bodies: limits.BodyBudget
    metrics: Metrics
    #: A team's started runner on the shared PostgreSQL pool, from its data directory; None: SQLite.
    pg_runner: Callable[[Path], Awaitable[Any]] | None = None


SHARED_PARTS = web.AppKey("shared_parts", Shared)


def create_root(config: RelayConfig) -> web.Application:
    """An app with the process-wide parts: the connection guard (and its middleware), body budget, counters."""
    app = web.Application(client_max_size=config.max_body, middlewares=[_busy])
    app[CONFIG] = config
    app[GUARD] = ConnectionGuard(config.connections)
    app[BODIES] = limits.BodyBudget(config.bodies_total, config.bodies_per_address)
    app.cleanup_ctx.append(_guard_ctx)
    app[METRICS] = Metrics()
    app[COMMITS_BEFORE] = 0
    return app


def create_app(config: RelayConfig, shared: Shared | None = None) -> web.Application:
    """A one-team relay app; with ``shared``, one team of a multi-team relay (``teampool``), served under
    its root app (which holds the guard, and whose middleware marks connections busy)."""
    if shared is None:
        app = create_root(config)
    else:
        app = web.Application(client_max_size=config.max_body)
        app[CONFIG] = config
        app[GUARD], app[BODIES], app[METRICS] = shared.guard, shared.bodies, shared.metrics
        app[SHARED_PARTS] = shared
        app[COMMITS_BEFORE] = 0
    app[KEYS] = KeyCache()
    app[OWN_COUNTS] = lambda: _own_counts(app)
    app.cleanup_ctx.append(_writer_ctx)
    app.cleanup_ctx.append(shared_metrics_ctx)
    app.add_routes(routes)
    return app
