"""Several relay processes on one port: ``hbw-relay serve --workers N``, on SQLite or PostgreSQL.

Why processes: a relay process spends its time in Python (HTTP parsing, signature checks,
msgpack decoding), which holds one core whatever the number of threads. N processes use N
cores. Each worker is a whole relay (``runner.serve``) with its own event loop and its own
connections to the database, which keeps them correct together: on PostgreSQL every
transaction runs under the team's advisory lock (``storage/postgres.py``); on SQLite (WAL)
each worker's writer takes ``BEGIN IMMEDIATE`` in turn, passed between processes by a lock
file (``storage/sqlite.WriteLock``). Either way ``rseq`` is MAX + 1 inside the transaction,
so it stays gapless across processes, and nonces are rows, so a replay through another
worker is still refused.

Why SQLite gains from this although it has one writer: the writer's share of a sync is small
(about 0.3 ms of statements and commit); the rest (HTTP, signatures, decoding, signing the
answer, about 0.7 ms) runs in parallel in each worker. See the README's "Sizing a national
deployment".

Why SO_REUSEPORT rather than a parent that accepts: every worker binds the same address and
the kernel spreads new connections over them. No process sits on the data path, so a
worker's crash drops only the connections it held (devices retry: a sync is idempotent).
The parent first binds the port itself (with SO_REUSEPORT, never listening) to turn
``--port 0`` into one number all workers share, and to keep that number reserved.

``/metrics`` answers for the whole relay, whichever worker is asked (``app.SharedMetrics``):
each worker keeps its counters in a small file of the data directory, and the one asked sums
them. The parent removes the files of an earlier serve before starting its workers.

Crash policy: a worker that dies while the relay is not stopping is started again, because
the others keep serving and a ministry's relay should not go down for one process killed by
the kernel's OOM killer. But a worker that dies again and again (``CRASH_BUDGET`` deaths in
``CRASH_WINDOW_S``) is a bug or a broken configuration that restarting will not fix: then
every worker is stopped and ``serve`` exits 1 with a ``relay.workers_crashed`` error naming
the worker's exit status, so systemd (``Restart=on-failure``) or a person sees it.

SIGTERM or SIGINT to the parent: every worker gets SIGTERM, finishes its in-flight requests
and commits (as a single relay does), and the parent exits 0 once all have.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable

from .. import errors
from ..errors import HbwError, UsageError
from ..i18n import _
from .app import RelayConfig, SharedMetrics, log_line

log = logging.getLogger("hbw.relay")

#: Deaths of workers within ``CRASH_WINDOW_S`` seconds after which serve gives up (see the module docstring).
CRASH_BUDGET = 5
CRASH_WINDOW_S = 60.0
#: Seconds a worker gets to finish its requests after SIGTERM before it is killed.
STOP_GRACE_S = 30.0
#: Seconds a worker gets to start (import, connect to PostgreSQL, bind) before serve gives up.
START_TIMEOUT_S = 60.0
MAX_WORKERS = 64


def worker_count(text: str | int) -> int:
    """``--workers``: a number from 1 to ``MAX_WORKERS``, or ``auto`` for the cores this process may use."""
    if str(text).strip().lower() == "auto":
        try:
            return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))
        except AttributeError:  # not Linux
            return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    try:
        n = int(str(text).strip())
    except ValueError:
        raise UsageError(_("--workers takes a number or 'auto', not {text!r}").format(text=str(text)),
                         code="usage.workers") from None
    if not 1 <= n <= MAX_WORKERS:
        raise UsageError(_("--workers must be between 1 and {max}").format(max=MAX_WORKERS), code="usage.workers")
    return n


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to serve (picklable: workers are spawned, not forked)."""

    config: RelayConfig
    index: int
    tls: tuple[str, str] | None = None
    office: Any = None  # office.OfficeConfig for worker 0, when --admin


def _worker_main(spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    """A worker: serve until SIGTERM/SIGINT; tell the parent its URL once listening, or its error."""
    from .runner import serve

    ctx = None
    try:
        if spec.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*spec.tls)

        def office_ready(url: str, token: str | None) -> None:
            conn.send(("office", url, token))

        serve(spec.config, ctx, ready=lambda url: conn.send(("ready", url)), office_cfg=spec.office,
              office_ready=office_ready, reuse_port=True)
    except HbwError as e:
        conn.send(("error", e.to_dict()))
        raise SystemExit(errors.exit_code_for(e)) from None
    except OSError as e:
        conn.send(("error", {"error": "HbwError", "message": f"worker {spec.index} cannot listen: {e}",
                             "code": "relay.listen"}))
        raise SystemExit(1) from None


class _Worker:
    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.proc: Any = None
        self.conn: multiprocessing.connection.Connection | None = None

    def start(self, mp: Any) -> None:
        parent, child = mp.Pipe(duplex=False)
        self.proc = mp.Process(target=_worker_main, args=(self.spec, child), name=f"hbw-relay-{self.spec.index}")
        self.proc.start()
        child.close()
        self.conn = parent


class WorkerPool:
    """The parent of ``serve --workers N``: starts the workers, restarts a crashed one, stops them all."""

    def __init__(self, config: RelayConfig, n: int, tls: tuple[str, str] | None = None, office: Any = None):
        self.config = config
        self.n = n
        self.tls = tls
        self.office = office
        self._stop = threading.Event()
        self._mp = multiprocessing.get_context("spawn")
        self._holder: socket.socket | None = None
        self.workers: list[_Worker] = []
        self.deaths: deque[float] = deque()

    def _reserve_port(self) -> int:
        """Bind (never listen) the address with SO_REUSEPORT: port 0 becomes the one all workers bind."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((self.config.host, self.config.port))
        except OSError:
            s.close()
            raise
        self._holder = s
        return s.getsockname()[1]

    def _spec(self, index: int, port: int) -> WorkerSpec:
        # Jobs that must run once per relay, not once per worker: the office page and auto-rebalancing.
        cfg = replace(self.config, port=port, worker=index,
                      rebalance_every_s=self.config.rebalance_every_s if index == 0 else None)
        return WorkerSpec(cfg, index, self.tls, self.office if index == 0 else None)

    def _await_ready(self, w: _Worker, office_ready: Callable[[str, str | None], None] | None) -> str:
        """The worker's URL once it listens; the worker's own error (exit code and words) if it cannot start."""
        assert w.conn is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        url, office_left = "", w.spec.office is not None  # worker 0 says where the office page is, after
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not w.conn.poll(left):
                break
            try:
                msg = w.conn.recv()
            except EOFError:
                break
            if msg[0] == "ready":
                url = msg[1]
            elif msg[0] == "office":
                office_left = False
                if office_ready:
                    office_ready(msg[1], msg[2])
            elif msg[0] == "error":
                raise errors.from_dict(msg[1])
            if url and not office_left:
                return url
        w.proc.join(1)
        raise HbwError(f"relay worker {w.spec.index} did not start (exit status {w.proc.exitcode})",
                       code="relay.workers_crashed", hint="see the lines it logged above")

    def run(self, ready: Callable[[str], None] | None = None,
            office_ready: Callable[[str, str | None], None] | None = None) -> None:
        """Serve until SIGTERM/SIGINT (returns) or a crash loop (raises ``relay.workers_crashed``)."""
        old = {sig: signal.signal(sig, lambda *_a: self._stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            port = self._reserve_port()
            SharedMetrics.forget(self.config.data)  # an earlier serve's counts (maybe of more workers)
            self.workers = [_Worker(self._spec(i, port)) for i in range(self.n)]
            url = ""
            for w in self.workers:
                w.start(self._mp)
                url = self._await_ready(w, office_ready)
                log.info(log_line(action="worker", worker=w.spec.index, pid=w.proc.pid, state="listening"))
            if ready:
                ready(url)
            self._watch()
        finally:
            self.stop()
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _watch(self) -> None:
        while not self._stop.is_set():
            sentinels = {w.proc.sentinel: w for w in self.workers}
            for s in multiprocessing.connection.wait(list(sentinels), timeout=0.5):
                if self._stop.is_set():
                    return
                w = sentinels[s]  # type: ignore[index]
                w.proc.join()
                code = w.proc.exitcode
                now = time.monotonic()
                self.deaths.append(now)
                while self.deaths and now - self.deaths[0] > CRASH_WINDOW_S:
                    self.deaths.popleft()
                log.warning(log_line(action="worker", worker=w.spec.index, pid=w.proc.pid, state="died",
                                     exit_status=code, deaths_in_window=len(self.deaths)))
                if len(self.deaths) >= CRASH_BUDGET:
                    raise HbwError(f"relay workers died {len(self.deaths)} times within {CRASH_WINDOW_S:g} s "
                                   f"(worker {w.spec.index} last, exit status {code}); every worker was stopped",
                                   code="relay.workers_crashed",
                                   hint="see the lines the workers logged above; serve again once it is fixed")
                w.start(self._mp)
                try:
                    self._await_ready(w, None)
                except HbwError:
                    continue  # counted as a death at the next turn (its sentinel is ready)
                log.info(log_line(action="worker", worker=w.spec.index, pid=w.proc.pid, state="restarted"))

    def stop(self) -> None:
        """SIGTERM to every worker; those still running after ``STOP_GRACE_S`` are killed."""
        for w in self.workers:
            if w.proc is not None and w.proc.is_alive():
                w.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.workers:
            if w.proc is None:
                continue
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            if w.conn is not None:
                w.conn.close()
        if self._holder is not None:
            self._holder.close()
            self._holder = None
