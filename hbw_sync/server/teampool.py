"""One relay process, many teams: ``/t/<id>/v1/...`` routed to that team's own relay app (issue 16).

Why this shape. Each team keeps its one-team relay app (``app.create_app``: its key, its
writer, its chunk store, its routes), so the sync path is the one-team code, unchanged;
this module only finds the team. A request's path is checked first (the team id by
``teams.ID_RE``, the path as sent, not decoded, so ``%2F`` or ``..`` tricks name no team),
then the team must exist: an unknown or malformed id gets 403 ``access.unknown_team``
before one byte of the body is read.

Open teams are kept in an LRU (``--max-open-teams``); one idle for ``--team-idle`` seconds
is closed (its writer committed and stopped). A team in use is never closed; the cap may be
passed for a moment while every open team is busy. On PostgreSQL all teams share ONE pool of
connections (``SharedPgPool``): each transaction first sets its team's schema with
``set_config('search_path', ..., true)``, which lasts only until that transaction ends, so
a pooled connection carries nothing of one team into the next team's transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from .. import __version__
from ..errors import AccessError, ConfigError, HbwError, StorageError, http_status_for
from . import app as relay_app
from . import relay, storage, teams
from .storage import postgres

log = logging.getLogger("hbw.relay")

#: What follows ``/t/<id>/`` on a multi-team relay: the one-team routes, nothing else.
TEAM_ROUTES = frozenset({"v1", "v1/stream", "v1/fetch", "v1/bundle", "v1/code"})
MAX_OPEN_TEAMS = 256
TEAM_IDLE_S = 600.0


class SharedPgPool:
    """One pool of PostgreSQL connections (one per thread) for every team of this process."""

    def __init__(self, url: str, size: int = postgres.POOL_SIZE):
        self.url = url
        self.size = size
        self.local = threading.local()
        self.conns: list[Any] = []
        self.mu = threading.Lock()
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        postgres.connect(self.url).close()  # fail at start, with words, when the server is unreachable
        self.executor = concurrent.futures.ThreadPoolExecutor(self.size, thread_name_prefix="hbw-relay-pg")

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        with self.mu:
            for c in self.conns:
                c.close()
            self.conns.clear()

    async def runner(self, data: Path) -> "TeamPgRunner":
        """The started runner of the team whose data directory is ``data`` (schema checked, lock key read)."""
        tid = data.name
        r = TeamPgRunner(self, teams.schema_for(tid))
        r.lock = await r.read(_team_lock, r.schema)
        return r


def _in_schema(txn: postgres.PgTxn, schema: str, fn: Any, args: tuple[Any, ...]) -> Any:
    # Transaction-local (is_local = true): gone at COMMIT or ROLLBACK, so never another team's.
    txn.conn.execute("SELECT set_config('search_path', %s, true)", (schema,))
    return fn(txn, *args)


def _team_lock(txn: postgres.PgTxn, schema: str) -> int:
    """The team's advisory lock key (its 8-byte id), after checking its schema holds a relay of ours."""
    if not txn.conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]:
        raise ConfigError(f"no relay in the PostgreSQL schema {schema}")
    row = txn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    found = int(bytes(row[0]).decode()) if row else None
    if found != postgres.SCHEMA_VERSION:
        raise ConfigError(f"the PostgreSQL schema {schema} has relay schema {found}; this hbw-relay knows "
                          f"{postgres.SCHEMA_VERSION}", hint="run 'hbw-relay migrate --data DIR --team ID'")
    team = relay.meta(txn, "team")
    return int.from_bytes(team, "big", signed=True) if isinstance(team, bytes) and len(team) == 8 else 0


class TeamPgRunner(postgres.PgRunner):
    """A team's ``PgRunner`` on the process's shared pool: its threads and connections are the pool's."""

    def __init__(self, shared: SharedPgPool, schema: str):
        super().__init__(shared.url, 0, shared.size)
        self.schema = schema
        self._local, self._conns, self._mu, self._pool = shared.local, shared.conns, shared.mu, shared.executor

    def start(self) -> None:
        pass  # the pool is started once, for all teams

    def stop(self) -> None:
        pass  # ...and stopped once

    def _txn(self, fn: Any, args: tuple[Any, ...], lock: Any = True) -> Any:
        return super()._txn(_in_schema, (self.schema, fn, args), lock)


@dataclasses.dataclass
class OpenTeam:
    id: str
    app: web.Application
    busy: int = 0
    used: float = 0.0


# Why a request was refused at the root: ``malformed`` (not ``/t/<valid id>/<team route>``) or ``unknown_team``
# (well formed, but no such team in the directory). The only label values of hbw_root_refused_total.
REFUSALS = ("malformed", "unknown_team")
# serve --auto-rebalance's counters (``TeamPool.rebalance``), as hbw_rebalance_<name>_total.
REBALANCE = ("rounds", "moves", "failed")
# Longest a cached team count is trusted even when the teams directory's mtime has not moved.
KNOWN_MAX_AGE_S = 10.0


class TeamPool:
    """The teams open in this process, least recently used first."""

    def __init__(self, root: web.Application, config: relay_app.RelayConfig, pg: SharedPgPool | None):
        self.root = root
        self.config = config
        self.pg = pg
        self.open: OrderedDict[str, OpenTeam] = OrderedDict()
        self._opening: dict[str, asyncio.Future[OpenTeam]] = {}
        self.opened = 0
        self.closed = 0
        self.commits_closed = 0
        # Requests refused before any team is chosen, by reason: a fixed label set, never the path itself,
        # so a scanner sending a million distinct paths adds no series to /metrics.
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self._known: tuple[int, float, int] | None = None  # (teams dir mtime_ns, when read, count)
        self.known_scans = 0
        # serve --auto-rebalance: rounds done (each over every known team), moves issued, team rounds failed.
        self.rebalance: dict[str, int] = dict.fromkeys(REBALANCE, 0)

    def known_count(self) -> int:
        """How many teams the directory holds, for /healthz and /metrics without listing 5,000 entries per call.

        ``team add`` and ``team remove`` (another process) create or rename an entry of ``teams/``, which moves
        its mtime: one stat says whether the cached count still holds. ``KNOWN_MAX_AGE_S`` bounds how stale the
        count can be where mtimes are coarse (a second on some filesystems).
        """
        root = Path(self.config.data) / teams.TEAMS
        try:
            mtime = root.stat().st_mtime_ns
        except OSError:
            mtime = -1
        now = time.monotonic()
        c = self._known
        if c is None or c[0] != mtime or now - c[1] >= KNOWN_MAX_AGE_S:
            self.known_scans += 1
            c = self._known = (mtime, now, len(teams.known(self.config.data)))
        return c[2]

    def refuse(self, request: web.Request, reason: str) -> web.Response:
        """Count, log as one JSON line, and answer 403 ``access.unknown_team`` (one answer for both reasons:
        a prober learns nothing about which ids exist)."""
        self.refused[reason] += 1
        log.warning(relay_app.log_line(action="refuse", reason=reason, error="access.unknown_team",
                                       method=request.method[:16], path=request.raw_path[:80],
                                       path_len=len(request.raw_path)))
        return _refuse()

    def exists(self, tid: str) -> bool:
        """Whether the team is in the directory now (asked per request: ``team remove`` takes effect at once)."""
        return storage.holds_relay(teams.team_dir(self.config.data, tid))

    async def forget(self, tid: str) -> None:
        """Close a team that was removed while open (at once when idle; else by the next sweep)."""
        t = self.open.get(tid)
        if t is not None and t.busy == 0:
            await self._close(t)

    async def acquire(self, tid: str) -> OpenTeam:
        t = self.open.get(tid)
        if t is None:
            fut = self._opening.get(tid)
            if fut is None:
                fut = self._opening[tid] = asyncio.get_running_loop().create_future()
                try:
                    t = await self._open(tid)
                    fut.set_result(t)
                except BaseException as e:
                    fut.set_exception(e)
                    fut.exception()  # retrieved: waiters, if any, get it too
                    raise
                finally:
                    del self._opening[tid]
            else:
                t = await asyncio.shield(fut)
        self.open.move_to_end(tid)
        t.busy += 1
        t.used = time.monotonic()
        return t

    def release(self, t: OpenTeam) -> None:
        t.busy -= 1
        t.used = time.monotonic()

    async def _open(self, tid: str) -> OpenTeam:
        # rebalance_every_s None: the pool runs the rounds for all teams (``rebalance_round``), not each open team.
        cfg = dataclasses.replace(self.config, data=teams.team_dir(self.config.data, tid), database=None,
                                  check_processes=0, team=tid, rebalance_every_s=None)
        shared = relay_app.Shared(self.root[relay_app.GUARD], self.root[relay_app.BODIES],
                                  self.root[relay_app.METRICS], self.pg.runner if self.pg else None)
        app = relay_app.create_app(cfg, shared)
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        t = OpenTeam(tid, app)
        self.open[tid] = t
        self.opened += 1
        await self._trim()
        return t

    async def _close(self, t: OpenTeam) -> None:
        self.open.pop(t.id, None)
        self.commits_closed += t.app[relay_app.WRITER].commits
        self.closed += 1
        await t.app.shutdown()
        await t.app.cleanup()

    async def _trim(self) -> None:
        """Close least recently used idle teams while more than ``max_open_teams`` are open."""
        for t in list(self.open.values()):
            if len(self.open) <= self.config.max_open_teams:
                break
            if t.busy == 0:
                await self._close(t)

    async def close_idle(self) -> None:
        now = time.monotonic()
        for t in list(self.open.values()):
            if t.busy == 0 and (now - t.used >= self.config.team_idle_s or not self.exists(t.id)):
                await self._close(t)

    async def rebalance_round(self) -> None:
        """Rebalance every known team once, one at a time, as a one-team relay's ``--auto-rebalance`` does.

        Every known team, not only the open ones: a team whose devices are all away (the case
        rebalancing is for) sends no requests. A team is opened for its turn through the pool (its
        writer, its lock) and closed again after it when nothing else opened it. Each plan runs in the
        team's writer thread, so the event loop serves other requests between and during turns. One
        team's failure is logged and counted; the others are still done.
        """
        worker = self.config.worker
        where = {} if worker is None else {"worker": worker}
        for tid in await asyncio.to_thread(teams.known, self.config.data):
            was_open = tid in self.open
            try:
                t = await self.acquire(tid)
            except Exception as e:  # noqa: BLE001 - one team that cannot open must not stop the round
                self.rebalance["failed"] += 1
                log.warning(relay_app.log_line(action="auto-rebalance", team=tid, **where, error=str(e)))
                continue
            try:
                r = await relay_app.rebalance_now(t.app)
                self.rebalance["moves"] += len(r["moves"])
                log.info(relay_app.log_line(action="auto-rebalance", team=tid, **where, moves=len(r["moves"]),
                                            stuck=len(r["stuck"])))
            except Exception as e:  # noqa: BLE001 - as above: logged, the next team goes on
                self.rebalance["failed"] += 1
                log.warning(relay_app.log_line(action="auto-rebalance", team=tid, **where, error=str(e)))
            finally:
                self.release(t)
                if not was_open and t.busy == 0 and self.open.get(tid) is t:
                    await self._close(t)
        self.rebalance["rounds"] += 1

    async def refresh_quotas(self) -> None:
        """Apply ``team quota`` to open teams (another process changed their settings): one read each."""
        for t in list(self.open.values()):
            ident, cfg = t.app[relay_app.IDENTITY], t.app[relay_app.CONFIG]
            if ident.chunks is None:
                continue
            own = await relay_app.reader_of(t.app[relay_app.WRITER])(teams.own_quota)
            ident.chunks.quota = own or cfg.chunk_quota

    async def close_all(self) -> None:
        for t in list(self.open.values()):
            await self._close(t)

    def commits(self) -> int:
        return self.commits_closed + sum(t.app[relay_app.WRITER].commits for t in self.open.values())

    def faults(self) -> list[StorageError]:
        return [f for t in self.open.values() if (f := t.app[relay_app.WRITER].fault) is not None]


POOL = web.AppKey("team_pool", TeamPool)


def _refuse() -> web.Response:
    return relay_app.error_response(AccessError("this relay serves no such team", code="access.unknown_team"))


def team_of(raw_path: str) -> tuple[str, str] | None:
    """(team id, route after it) of a path as sent, or None: ``/t/<id>/<route>`` with a valid id and route.

    The raw path, before any decoding or normalising: ``/t/a%2Fb/v1`` or ``/t/../v1`` name no team.
    """
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/t/") or len(path) > 64:
        return None
    tid, sep, rest = path[3:].partition("/")
    if not sep or not teams.valid_id(tid) or rest not in TEAM_ROUTES:
        return None
    return tid, rest


async def dispatch(request: web.Request) -> web.StreamResponse:
    """A device request for one team: checked, then handed whole to that team's app (body unread)."""
    pool = request.app[POOL]
    found = team_of(request.raw_path)
    if found is None:
        return pool.refuse(request, "malformed")
    tid, rest = found
    if not pool.exists(tid):
        await pool.forget(tid)
        return pool.refuse(request, "unknown_team")
    try:
        t = await pool.acquire(tid)
    except HbwError as e:  # its schema of another version, PostgreSQL down...: the device hears why, in JSON
        log.warning(relay_app.log_line(action="open-team", team=tid, error=e.code, message=e.message))
        return relay_app.error_response(e)
    try:
        sub = request.clone(rel_url="/" + rest)
        return await t.app._handle(sub)  # the team's own routes, as for a one-team relay
    finally:
        pool.release(t)


async def healthz(request: web.Request) -> web.Response:
    """200 while the relay can take writes (disk, and every open team's last write), with team counts."""
    app = request.app
    pool = app[POOL]
    cfg = app[relay_app.CONFIG]
    body: dict[str, Any] = {"ok": True, "version": __version__, "multi_team": True,
                            "teams": {"open": len(pool.open), "known": pool.known_count()}}
    fault: StorageError | None = None
    try:
        free = shutil.disk_usage(cfg.data).free
        body["free_bytes"] = free
        if free < cfg.min_free_mb * 2**20:
            fault = StorageError(f"the relay's disk is nearly full: {free / 2**20:.1f} MB free, below the "
                                 f"{cfg.min_free_mb:g} MB floor", code="store.disk_full")
    except OSError as e:
        fault = StorageError(f"cannot read the relay's data directory: {e}", code="store.io")
    faults = pool.faults()
    if fault is None and faults:
        fault = faults[0]
    if fault is None:
        return web.json_response(body)
    body.update(ok=False, code=fault.code, reason=fault.message, teams_failing=len(faults))
    return web.json_response(body, status=503, headers={"Retry-After": "30"})


def _own_counts(app: web.Application) -> dict[str, Any]:
    """This process's counters over all its teams, and its teams' own counters (``SharedMetrics``)."""
    pool = app[POOL]
    d = app[relay_app.METRICS].to_dict(pool.commits() + app[relay_app.COMMITS_BEFORE], app[relay_app.GUARD].stats())
    d["teams"] = {"open": len(pool.open), "opened": pool.opened, "closed": pool.closed,
                  "refused": dict(pool.refused), "pg_connections": len(pool.pg.conns) if pool.pg else 0,
                  "rebalance": dict(pool.rebalance)}
    return d


def _teams_sum(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """The teams' counters of every worker, summed (a file another relay wrote is skipped)."""
    total: dict[str, Any] = {"open": 0, "opened": 0, "closed": 0, "pg_connections": 0,
                             "refused": dict.fromkeys(REFUSALS, 0), "rebalance": dict.fromkeys(REBALANCE, 0)}
    for d in workers:
        try:
            t = d["teams"]
            add = {k: int(t[k]) for k in ("open", "opened", "closed", "pg_connections")}
            refused = {r: int(t["refused"].get(r, 0)) for r in REFUSALS}
            rebalance = {r: int(t.get("rebalance", {}).get(r, 0)) for r in REBALANCE}
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        for k, v in add.items():
            total[k] += v
        for r, v in refused.items():
            total["refused"][r] += v
        for r, v in rebalance.items():
            total["rebalance"][r] += v
    return total


async def metrics(request: web.Request) -> web.Response:
    """The relay's counters over all its teams (under ``--workers N``, all its processes'), and how many
    teams are open and known."""
    app = request.app
    pool = app[POOL]
    if app.get(relay_app.SHARED) is None:
        own = _own_counts(app)
        text, t = app[relay_app.METRICS].render(own["commits"], own["connections"]), own["teams"]
    else:
        total, commits, conns, workers = relay_app.summed_counts(app)
        text, t = total.render(commits, conns) + relay_app.workers_gauge(len(workers)), _teams_sum(workers)
    for name, kind, value, help_ in (
            ("hbw_teams_open", "gauge", t["open"], "Teams open in the relay's processes now."),
            ("hbw_teams_known", "gauge", pool.known_count(), "Teams in this relay's data directory."),
            ("hbw_teams_opened_total", "counter", t["opened"], "Times a team was opened."),
            ("hbw_teams_closed_total", "counter", t["closed"], "Times a team was closed (idle, or over the cap)."),
            ("hbw_storage_healthy", "gauge", 0 if pool.faults() else 1,
             "1 when no open team's last write failed (in the process that answered)."),
            ("hbw_rebalance_rounds_total", "counter", t["rebalance"]["rounds"],
             "Automatic rebalancing rounds done (each over every known team)."),
            ("hbw_rebalance_moves_total", "counter", t["rebalance"]["moves"],
             "Tasks moved by automatic rebalancing, all teams."),
            ("hbw_rebalance_failed_total", "counter", t["rebalance"]["failed"],
             "Teams whose automatic rebalancing failed in a round (logged with the team)."),
    ):
        text += f"# HELP {name} {help_}\n# TYPE {name} {kind}\n{name} {value}\n"
    text += ("# HELP hbw_root_refused_total Requests refused before reaching a team, by reason.\n"
             "# TYPE hbw_root_refused_total counter\n")
    text += "".join(f'hbw_root_refused_total{{reason="{r}"}} {n}\n' for r, n in t["refused"].items())
    if pool.pg is not None:
        text += ("# HELP hbw_pg_connections PostgreSQL connections the relay's processes hold, for all teams.\n"
                 f"# TYPE hbw_pg_connections gauge\nhbw_pg_connections {t['pg_connections']}\n")
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[relay_app.CONFIG]
    marker = teams.read_marker(cfg.data)
    database = cfg.database or marker.get("database")
    pg = SharedPgPool(storage.check_url(database)) if database else None
    if pg is not None:
        pg.start()
    pool = app[POOL] = TeamPool(app, cfg, pg)
    shared = app.get(relay_app.SHARED)
    before = shared.own() if shared is not None else None
    if before is not None:  # a restarted worker goes on from its counts (its METRICS: shared_metrics_ctx)
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
            pool.opened, pool.closed = int(before["teams"]["opened"]), int(before["teams"]["closed"])
            pool.refused.update({r: int(before["teams"]["refused"].get(r, 0)) for r in REFUSALS})
            pool.rebalance.update({r: int(before["teams"].get("rebalance", {}).get(r, 0)) for r in REBALANCE})

    async def sweep() -> None:
        while True:
            await asyncio.sleep(min(30.0, max(0.5, cfg.team_idle_s / 4)))
            try:
                await pool.close_idle()
            except Exception as e:  # noqa: BLE001 - a team that fails to close must not stop the sweeps
                log.warning(relay_app.log_line(action="close-team", error=str(e)))
            try:
                await pool.refresh_quotas()
            except Exception as e:  # noqa: BLE001 - the quota stays as it was; the next sweep tries again
                log.warning(relay_app.log_line(action="team-quota", error=str(e)))

    async def rounds(every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await pool.rebalance_round()
            except Exception as e:  # noqa: BLE001 - a failed round (the teams directory unreadable) must not stop the relay
                log.warning(relay_app.log_line(action="auto-rebalance", error=str(e)))

    tasks = [asyncio.create_task(sweep())]
    if cfg.rebalance_every_s:  # under --workers N, only worker 0's config has it (workers.WorkerPool._spec)
        tasks.append(asyncio.create_task(rounds(cfg.rebalance_every_s)))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await pool.close_all()
    if pg is not None:
        pg.stop()


def create_multi_app(config: relay_app.RelayConfig) -> web.Application:
    """The root app of a multi-team relay: ``/t/<id>/v1...`` per team, ``/healthz`` and ``/metrics`` for all."""
    app = relay_app.create_root(config)
    app[relay_app.OWN_COUNTS] = lambda: _own_counts(app)
    app.cleanup_ctx.append(relay_app.shared_metrics_ctx)  # before the pool: it is flushed after the pool closes
    app.cleanup_ctx.append(_pool_ctx)
    app.router.add_route("*", "/t/{tail:.*}", dispatch)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
