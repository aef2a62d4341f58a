"""The relay's aiohttp application: ``create_app(config)``, one route table, metrics, logs.

This module only moves bytes: it reads a request body, hands it to
``relay.handle`` in the writer thread, and writes the signed response or an
error mapped through ``errors.http_status_for``. Errors are JSON so a person
with curl can read them; successful bodies are signed msgpack envelopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from .. import __version__, allocation, timefmt, wordcode
from ..errors import HbwError, LimitError, StorageError, http_status_for, retry_after_for
from . import board, db, relay

log = logging.getLogger("hbw.relay")


def log_line(**fields: Any) -> str:
    """One JSON log line, its UTC time first: office IT reads when each thing happened (ISSUE 13)."""
    return json.dumps({"time": timefmt.iso_utc(relay.now_ms(), millis=True), **fields})

MAX_BODY = 40 * 1024 * 1024
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

    def render(self, commits: int) -> str:
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
        return "\n".join(lines) + "\n"


WRITER = web.AppKey("writer", db.Writer)
IDENTITY = web.AppKey("identity", relay.RelayIdentity)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", RelayConfig)

routes = web.RouteTableDef()


def _error_response(e: HbwError) -> web.Response:
    if isinstance(e, StorageError):  # the relay's disk, not the device's: tell the device what it means for it
        e = db.for_device(e)
    body = e.to_dict()
    retry = retry_after_for(e)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return web.Response(status=http_status_for(e), text=json.dumps(body), content_type="application/json",
                        headers=headers)


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of the body: a small request is never buffered at the general body size."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await request.content.read(limit + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def _serve(request: web.Request, handler: Any, content_type: str, default_action: str,
                 max_body: int | None = None) -> web.StreamResponse:
    """Read a body, run ``handler`` in the writer, answer its bytes; one error mapping, metrics and log line."""
    app = request.app
    m = app[METRICS]
    t0 = time.perf_counter()
    action, status, device = default_action, 200, "-"
    try:
        limit = max_body or app[CONFIG].max_body
        if request.content_length is not None and request.content_length > limit:
            raise LimitError("request body too large", code="protocol.limit")
        body = await _read_bounded(request, limit) if max_body else await request.read()
        if len(body) > limit:
            raise LimitError("request body too large", code="protocol.limit")
        m.bytes_in += len(body)
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
        return _error_response(e)
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
            return _error_response(fault)
        status = 500
        log.exception(log_line(action=action, device=device, error="internal error"))
        return _error_response(HbwError(f"internal relay error ({type(e).__name__})", code="internal"))
    finally:
        dt = time.perf_counter() - t0
        m.requests[(action, status)] += 1
        if action == "sync":
            m.observe(dt)
        if app[CONFIG].access_log:
            log.info(log_line(action=action, device=device, status=status, ms=round(dt * 1000, 1),
                              bytes_in=request.content_length or 0))


@routes.post("/v1")
async def rpc(request: web.Request) -> web.StreamResponse:
    """Every device request: a signed envelope in, a signed envelope out."""
    return await _serve(request, relay.handle, "application/x-hbw", "?")


@routes.post("/v1/bundle")
async def bundle_upload(request: web.Request) -> web.StreamResponse:
    """The office's drop point for a bundle file: the body is the bundle, the answer its reply bundle."""
    return await _serve(request, relay.ingest_bundle, "application/x-hbw-bundle", "bundle")


@routes.post("/v1/code")
async def code_fetch(request: web.Request) -> web.StreamResponse:
    """A word-code invite (PROTOCOL.md §14a): [1, slot, proof] in, the invite sealed with the words out."""
    return await _serve(request, relay.fetch_code, "application/x-hbw", "code", max_body=wordcode.MAX_FETCH_BODY)


def health(config: RelayConfig, writer: db.Writer) -> StorageError | None:
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


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness for monitoring: 200 when the relay can take writes, 503 with the reason when not."""
    app = request.app
    ident = app[IDENTITY]
    body: dict[str, Any] = {"ok": True, "version": __version__, "team": ident.team_name,
                            "relay_key": ident.key.public.hex()}
    with contextlib.suppress(OSError):
        body["free_bytes"] = shutil.disk_usage(app[CONFIG].data).free
    fault = health(app[CONFIG], app[WRITER])
    if fault is None:
        return web.json_response(body)
    body.update(ok=False, code=fault.code, reason=fault.message, hint=fault.hint)
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


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(request.app[WRITER].commits) + _storage_metrics(request.app),
                        content_type="text/plain", charset="utf-8")


async def _writer_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    path = cfg.data / db.DB_NAME
    conn = db.open_checked(path)
    try:
        app[IDENTITY] = relay.load_identity(cfg.data, conn)
    finally:
        conn.close()
    writer = db.Writer(path)
    writer.start()
    app[WRITER] = writer
    task = asyncio.create_task(_auto_rebalance(app)) if cfg.rebalance_every_s else None
    yield
    if task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    writer.stop()


async def _auto_rebalance(app: web.Application) -> None:
    """Every interval, issue the moves a dry run would propose (through the one writer)."""
    cfg = app[CONFIG]
    assert cfg.rebalance_every_s
    while True:
        await asyncio.sleep(cfg.rebalance_every_s)
        try:
            opts = allocation.Options(stale_ms=int(cfg.stale_hours * 3_600_000),
                                      default_capacity=cfg.default_capacity)
            r = await app[WRITER].run(board.rebalance, app[IDENTITY], relay.now_ms(), opts, True)
            log.info(log_line(action="auto-rebalance", moves=len(r["moves"]), stuck=len(r["stuck"])))
        except Exception as e:  # noqa: BLE001 - a failed round must not stop the relay
            log.warning(log_line(action="auto-rebalance", error=str(e)))


def create_app(config: RelayConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_writer_ctx)
    app.add_routes(routes)
    return app
