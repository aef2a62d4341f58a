"""Who may hold a connection to the relay, and for how long.

Why: a connection costs a file descriptor whether or not it ever sends a
request. Left alone, 150 idle sockets on a relay with 128 descriptors made
every real sync time out. So:

- a new connection, and a kept-alive one after its answer, must finish a
  request head within ``header_timeout_s`` once it sends a byte, and is closed
  after ``idle_timeout_s`` if it sends nothing (a dropped 3G link leaves such
  sockets behind);
- a request body must keep moving (``app.read_body``: a stall, and a floor on the
  average rate);
- one address holds at most ``per_address`` connections;
- all connections together stay ``reserve`` descriptors under the process's
  descriptor limit, so ``accept`` never fails for want of one. When that cap is
  reached, the connection idle longest is closed to make room: a real sync
  waiting to connect beats a socket doing nothing.

A connection is *busy* while a request handler runs or its answer is still
being written; busy connections are never evicted (the body deadlines bound them).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout_s: float = 20.0
    header_timeout_s: float = 10.0
    #: An answer still going out may make no progress this long (a 3G link stalls; the client allows 60 s).
    drain_timeout_s: float = 60.0
    per_address: int = 64
    max_connections: int = 4096
    reserve: int = 64  # descriptors kept for SQLite, the WAL, logs and accept itself
    sweep_s: float = 1.0

    def cap(self) -> int:
        """The connection cap under the current descriptor limit."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - self.reserve))


class _Conn(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it, watches it, passes everything through."""

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol):
        self.guard, self.inner = guard, inner
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self.busy = 0
        self.idle_since = time.monotonic()
        self.got_bytes = False  # bytes arrived since the connection went idle: a request head is under way
        self.out_buffer = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        self.transport = transport
        if not self.guard.admit(self):
            transport.abort()
            self.transport = None
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if not self.busy:
            self.got_bytes = True
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None and self not in self.guard.conns:
            return  # refused at the door: aiohttp never saw it
        self.guard.release(self)
        self.transport = None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class ConnectionGuard:
    """Admits, counts and closes connections; ``factory(server)`` wraps aiohttp's protocol factory."""

    def __init__(self, limits: ConnectionLimits | None = None):
        self.limits = limits or ConnectionLimits()
        self.cap = self.limits.cap()
        self.conns: set[_Conn] = set()
        self.by_address: Counter[str] = Counter()
        self.by_transport: dict[Any, _Conn] = {}
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._sweeper: asyncio.Task | None = None

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Conn(self, inner())

    def admit(self, c: _Conn) -> bool:
        if self.by_address[c.address] >= self.limits.per_address:
            self.refused += 1
            return False
        if len(self.conns) >= self.cap:
            idle = [x for x in self.conns if not x.busy]
            if not idle:
                self.refused += 1
                return False
            victim = min(idle, key=lambda x: x.idle_since)
            self.evicted += 1
            self.release(victim)
            victim.close()
        self.conns.add(c)
        self.by_address[c.address] += 1
        self.by_transport[c.transport] = c
        return True

    def release(self, c: _Conn) -> None:
        if c in self.conns:
            self.conns.discard(c)
            self.by_transport.pop(c.transport, None)
            self.by_address[c.address] -= 1
            if self.by_address[c.address] <= 0:
                del self.by_address[c.address]

    def begin(self, transport: Any) -> None:
        """A request handler starts on this connection (its head is complete)."""
        c = self.by_transport.get(transport)
        if c is not None:
            c.busy += 1

    def end(self, transport: Any) -> None:
        """The handler finished; the answer may still be draining (see ``sweep``)."""
        c = self.by_transport.get(transport)
        if c is not None:
            c.busy = max(0, c.busy - 1)
            c.idle_since = time.monotonic()
            c.got_bytes = False

    def sweep(self, now: float | None = None) -> None:
        """Close connections that sent no request head in time, or sat idle too long."""
        now = time.monotonic() if now is None else now
        lim = self.limits
        for c in list(self.conns):
            if c.busy or c.transport is None:
                continue
            buffered = c.transport.get_write_buffer_size()
            if buffered and buffered != c.out_buffer:  # an answer is still going out, and moving
                c.out_buffer = buffered
                c.idle_since = now
                continue
            c.out_buffer = buffered
            if buffered:
                limit = lim.drain_timeout_s
            else:
                limit = lim.header_timeout_s if c.got_bytes else lim.idle_timeout_s
            if now - c.idle_since > limit:
                self.timed_out += 1
                self.release(c)
                c.close()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.limits.sweep_s)
            self.sweep()

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass

    def stats(self) -> dict[str, int]:
        return {"open": len(self.conns), "cap": self.cap, "refused": self.refused, "evicted": self.evicted,
                "timed_out": self.timed_out}
