"""Running the relay: in the foreground (``hbw-relay serve``) or in a background thread.

The thread form is for tests, the demo and benchmarks: a click command that
calls ``asyncio.run`` cannot run inside a running loop, so CLI tests talk to a
relay served from its own thread on a free loopback port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import threading
from typing import Callable

from aiohttp import web

from .. import timefmt
from .app import GUARD, RelayConfig, create_app
from .office import OfficeConfig


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass through the app's ``ConnectionGuard`` (see connections.py)."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        guard = self._runner.app[GUARD]  # type: ignore[attr-defined]
        # asyncio accepts up to `backlog` sockets in one go before the guard can close any of
        # them: keep that burst inside the descriptors the guard holds in reserve.
        backlog = max(8, min(self._backlog, guard.limits.reserve // 2))
        self._server = await loop.create_server(
            guard.factory(self._runner.server), self._host, self._port,  # type: ignore[arg-type]
            ssl=self._ssl_context, backlog=backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)


def steady_memory() -> None:
    """Have glibc give large buffers back to the system when they are freed (best effort, Linux only).

    Why: glibc raises its mmap threshold each time it frees a large block, so after one
    31 MiB request body later bodies come from the heap, are copied as they grow, and their
    memory is never returned: a relay's resident size would ratchet up with each large
    request, hostile or not. A fixed threshold (128 KiB, the default start) turns that off.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


async def _start(config: RelayConfig, ssl_context: ssl.SSLContext | None,
                 reuse_port: bool = False) -> tuple[web.AppRunner, str]:
    # keepalive_timeout also bounds a connection that never sends a request (aiohttp >= 3.10);
    # auto_decompress=False: a compressed body is refused from its header, never inflated.
    from . import teampool, teams

    app = teampool.create_multi_app(config) if teams.is_multi(config.data) else create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           keepalive_timeout=config.connections.idle_timeout_s, auto_decompress=False)
    await runner.setup()
    site = GuardedSite(runner, config.host, config.port, ssl_context=ssl_context, reuse_port=reuse_port or None)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    host, port = sock.getsockname()[:2]
    scheme = "https" if ssl_context else "http"
    host = f"[{host}]" if ":" in host else host
    return runner, f"{scheme}://{host}:{port}"


class StampedFormatter(logging.Formatter):
    """Every log line carries its time: our JSON lines hold it as "time"; others get it in front."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if text.startswith('{"time"'):
            return text
        return f"{timefmt.iso_utc(int(record.created * 1000), millis=True)} {record.levelname.lower()} {text}"


async def _start_office(runner: web.AppRunner, config: RelayConfig,
                        office_cfg: OfficeConfig) -> tuple[web.AppRunner, str, str | None]:
    """The office page beside a started relay: its runner, URL, and the admin token if made just now."""
    from . import admin, office

    token, new = admin.office_token(config.data)
    office_runner, url = await office.start(config.data, office_cfg, runner.app, token)
    return office_runner, url, token if new else None


def log_to_stderr() -> None:
    """The relay's log: one stamped line per record on stderr (``serve``, and the parent of its workers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(StampedFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def serve(config: RelayConfig, ssl_context: ssl.SSLContext | None = None,
          ready: Callable[[str], None] | None = None, office_cfg: OfficeConfig | None = None,
          office_ready: Callable[[str, str | None], None] | None = None, reuse_port: bool = False) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests finish, the writer commits, then it stops.

    ``reuse_port``: bind with SO_REUSEPORT, beside other processes on the same port (``workers``).

    With ``office_cfg``, the office page also listens (``server/office``); ``office_ready`` gets
    its URL and the admin token when it was made just now (shown once), else None.
    """
    if office_cfg is not None:
        from .office import check_bind

        check_bind(office_cfg)  # refuse before anything listens
    log_to_stderr()
    steady_memory()

    async def main() -> None:
        runner, url = await _start(config, ssl_context, reuse_port)
        if ready:
            ready(url)
        office_runner = None
        if office_cfg is not None:
            office_runner, office_url, token = await _start_office(runner, config, office_cfg)
            if office_ready:
                office_ready(office_url, token)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if office_runner is not None:
            await office_runner.cleanup()
        await runner.cleanup()

    asyncio.run(main())


class RelayThread:
    """A relay on a loopback port in a background thread: ``with RelayThread(cfg) as url: ...``."""

    def __init__(self, config: RelayConfig, ssl_context: ssl.SSLContext | None = None,
                 office_cfg: OfficeConfig | None = None):
        self.config = config
        self.ssl_context = ssl_context
        self.office_cfg = office_cfg
        self.office_url = ""
        self._office_runner: web.AppRunner | None = None
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hbw-relay", daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._runner, self.url = loop.run_until_complete(_start(self.config, self.ssl_context))
            if self.office_cfg is not None:
                self._office_runner, self.office_url, _token = loop.run_until_complete(
                    _start_office(self._runner, self.config, self.office_cfg))
        except BaseException as e:  # noqa: BLE001 - handed to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        if self._office_runner is not None:
            loop.run_until_complete(self._office_runner.cleanup())
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self.url

    def stop(self) -> None:
        if self._loop and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
