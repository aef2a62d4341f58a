"""A bad link in a bottle: a loopback TCP proxy with toxiproxy-style toxics, for synchronous tests.

This kernel has no ``tc netem``, so bad links are emulated in user space, the
way toxiproxy does: the test points a device at the proxy's URL and the proxy
forwards each connection to the relay's port, mistreating the bytes on the way.

Usage::

    with LinkProxy(relay_port, up=Toxics(cut_after=300), down=Toxics(rate=20_000, latency_ms=100)) as proxy:
        set_relay_url(member, proxy.url)
        ...                                   # sync through the bad link
        proxy.set(up=Toxics())                # change the toxics between syncs (counters restart)
        proxy.conns[0].up_bytes               # what went through, per connection

Directions: ``up`` is client -> relay (the request), ``down`` relay -> client
(the response). Each direction has its own ``Toxics``:

``rate``        bandwidth limit in bytes/s: data is written in slices of
                rate/20 bytes (at least 1), each followed by a pause of len/rate s.
``latency_ms``  each chunk is delivered this long after the proxy read it
                (plus a uniform ``jitter_ms``, from a seeded RNG); chunks are
                pipelined, so latency does not eat into bandwidth.
``slice``       most bytes per write (toxiproxy's "slicer"): splits messages.
``cut_after``   deliver exactly this many bytes in this direction, counted over
                *all* connections since the toxics were (re)set, then cut the
                connection: both sockets closed at once. It fires once; later
                bytes and connections pass. ``cut_after=0`` cuts on the first
                byte that would cross, so ``down=Toxics(cut_after=0)`` lets the
                whole request reach the relay and drops its answer.
``cut_every``   like ``cut_after``, but it fires again and again: after every
                this many bytes in this direction (a 3G link that drops every
                few hundred KB). Set one of ``cut_after`` and ``cut_every``.
``after_conns`` the cut ignores the first this many connections opened since
                the toxics were (re)set: ``Toxics(cut_after=0, after_conns=2)``
                lets two round trips through and drops the third's answer.
``reset``       how a cut closes: True (default) with RST (SO_LINGER 0, as
                toxiproxy's "reset_peer"), False with a plain FIN.
``blackhole``   read and drop everything in this direction, never close
                (toxiproxy's "timeout" with 0). ``LinkProxy(None)`` has no
                target at all: it accepts connections and never answers.

The proxy runs an asyncio loop in its own daemon thread, binds 127.0.0.1 on a
free port and connects only to 127.0.0.1. It is bounded: it shuts itself down
after ``max_seconds`` (default 60) even if a test forgets it, and on ``stop()``
or leaving the ``with`` block it closes every connection it holds.

``conns`` lists a ``ConnStats`` per accepted connection (bytes delivered each
way, the first ``capture`` bytes of each way, whether and where it was cut);
``cuts`` counts the cuts that fired. Read them after the client is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

HOST = "127.0.0.1"
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Toxics:
    """What one direction of the link does to the bytes (see the module docstring)."""

    rate: int | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    slice: int | None = None
    cut_after: int | None = None
    cut_every: int | None = None
    after_conns: int = 0
    reset: bool = True
    blackhole: bool = False

    def read_size(self) -> int:
        n = READ_SIZE
        if self.slice:
            n = min(n, self.slice)
        if self.rate:
            n = min(n, max(1, self.rate // 20))
        return n


@dataclass
class ConnStats:
    """One accepted connection, as seen by the proxy."""

    index: int
    up_bytes: int = 0
    down_bytes: int = 0
    up_data: bytearray = field(default_factory=bytearray)
    down_data: bytearray = field(default_factory=bytearray)
    cut: str | None = None  # "up" or "down": the direction whose toxic cut it
    refused: bool = False  # the target did not accept the connection


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def header_length(data: bytes) -> int:
    """Length of an HTTP message's head (through the blank line), or the whole length if not found."""
    i = bytes(data).find(b"\r\n\r\n")
    return len(data) if i < 0 else i + 4


def split_messages(data: bytes) -> list[tuple[int, int]]:
    """(head length, total length) of each whole HTTP message in a keep-alive stream, in order."""
    out, pos, data = [], 0, bytes(data)
    while pos < len(data):
        total = http_message_length(data[pos:])
        if total is None or pos + total > len(data):
            break
        out.append((header_length(data[pos:]), total))
        pos += total
    return out


def http_message_length(data: bytes) -> int | None:
    """Full length (head + Content-Length) of the HTTP message ``data`` starts with; None if the head is cut."""
    data = bytes(data)
    i = data.find(b"\r\n\r\n")
    if i < 0:
        return None
    for line in data[:i].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return i + 4 + int(value.strip())
    return None


def _abort(writer: asyncio.StreamWriter, reset: bool) -> None:
    transport = writer.transport
    if transport.is_closing() and not reset:
        return
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()
    else:
        transport.close()


class _Conn:
    def __init__(self, proxy: "LinkProxy", stats: ConnStats, cr: asyncio.StreamReader, cw: asyncio.StreamWriter):
        self.proxy, self.stats = proxy, stats
        self.cr, self.cw = cr, cw
        self.uw: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task] = []
        self.dead = False

    def kill(self, reset: bool) -> None:
        """Close both sockets now and stop every task of this connection but the caller."""
        if self.dead:
            return
        self.dead = True
        for w in (self.cw, self.uw):
            if w is not None:
                _abort(w, reset)
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()

    async def run(self) -> None:
        port = self.proxy.target_port
        if port is None:  # nowhere to go: swallow and never answer
            try:
                while await self.cr.read(READ_SIZE):
                    pass
            except (OSError, asyncio.CancelledError):
                pass
            self.kill(reset=False)
            return
        try:
            ur, self.uw = await asyncio.open_connection(HOST, port)
        except OSError:
            self.stats.refused = True
            self.kill(reset=True)
            return
        self.tasks = [
            asyncio.create_task(self._pipe(self.cr, self.uw, "up")),
            asyncio.create_task(self._pipe(ur, self.cw, "down")),
        ]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.kill(reset=False)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, d: str) -> None:
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=256)

        async def reader() -> None:
            try:
                while True:
                    t = proxy._toxics[d]
                    data = await src.read(t.read_size())
                    delay = (t.latency_ms + (proxy._rng.uniform(0, t.jitter_ms) if t.jitter_ms else 0)) / 1000
                    await q.put((loop.time() + delay, data))
                    if not data:
                        return
            except OSError:
                await q.put((loop.time(), None))

        rtask = asyncio.create_task(reader())
        self.tasks.append(rtask)
        try:
            while True:
                at, data = await q.get()
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                t = proxy._toxics[d]
                if data is None:  # the source broke: pass the breakage on
                    self.kill(reset=True)
                    return
                if t.blackhole:
                    if not data and d == "up":
                        self.kill(reset=False)  # the client gave up: tidy up
                        return
                    if not data:
                        return  # the relay closed: the client is left waiting
                    continue
                if not data:
                    if dst.can_write_eof():
                        try:
                            dst.write_eof()
                        except OSError:
                            pass
                    return
                room = proxy._room(d, self.stats.index)
                if room is not None and len(data) >= room:
                    if room:
                        dst.write(data[:room])
                        await dst.drain()
                        self._count(d, data[:room])
                    proxy._fired(d)
                    self.stats.cut = d
                    self.kill(reset=t.reset)
                    return
                dst.write(data)
                await dst.drain()
                self._count(d, data)
                if t.rate:
                    await asyncio.sleep(len(data) / t.rate)
        except (OSError, asyncio.IncompleteReadError):
            self.kill(reset=True)
        finally:
            rtask.cancel()

    def _count(self, d: str, data: bytes) -> None:
        s, cap = self.stats, self.proxy.capture
        if d == "up":
            s.up_bytes += len(data)
            s.up_data += data[: max(0, cap - len(s.up_data))]
        else:
            s.down_bytes += len(data)
            s.down_data += data[: max(0, cap - len(s.down_data))]
        if self.proxy._armed(d, s.index):
            self.proxy._delivered[d] += len(data)


class LinkProxy:
    """A toxic TCP proxy from 127.0.0.1:<free port> to 127.0.0.1:``target_port`` (see the module docstring)."""

    def __init__(self, target_port: int | None, *, up: Toxics = Toxics(), down: Toxics = Toxics(),
                 max_seconds: float = 60.0, capture: int = 256 * 1024, seed: int = 0):
        self.target_port = target_port
        self.max_seconds = max_seconds
        self.capture = capture
        self.port = 0
        self.conns: list[ConnStats] = []
        self.cuts = 0
        self._toxics = {"up": up, "down": down}
        self._delivered = {"up": 0, "down": 0}
        self._spent = {"up": False, "down": False}
        self._first_conn = {"up": 0, "down": 0}
        self._rng = random.Random(seed)
        self._live: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="netem-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- control, from the test's thread --------------------------------------------------------

    def start(self) -> "LinkProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            try:
                loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:  # it shut itself down meanwhile
                pass
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(10)

    def __enter__(self) -> "LinkProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set(self, up: Toxics | None = None, down: Toxics | None = None) -> None:
        """Replace the toxics of one or both directions; their byte counts (for ``cut_after``) restart at 0."""

        def apply() -> None:
            for d, t in (("up", up), ("down", down)):
                if t is not None:
                    self._toxics[d] = t
                    self._delivered[d] = 0
                    self._spent[d] = False
                    self._first_conn[d] = len(self.conns)

        self._call(apply)

    def _call(self, fn: Callable[[], Any]) -> Any:
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)

        loop.call_soon_threadsafe(run)
        return fut.result(10)

    # -- the loop's side ---------------------------------------------------------------------------

    def _armed(self, d: str, index: int) -> bool:
        return index - self._first_conn[d] >= self._toxics[d].after_conns

    def _room(self, d: str, index: int) -> int | None:
        t = self._toxics[d]
        if t.cut_every and self._armed(d, index):
            return max(0, t.cut_every - self._delivered[d])
        if t.cut_after is None or self._spent[d] or not self._armed(d, index):
            return None
        return max(0, t.cut_after - self._delivered[d])

    def _fired(self, d: str) -> None:
        if self._toxics[d].cut_every:
            self._delivered[d] = 0  # the next cut counts from here
        else:
            self._spent[d] = True
        self.cuts += 1

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._accept, HOST, 0))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as e:  # noqa: BLE001 - handed to start()
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        loop.call_later(self.max_seconds, self._shutdown)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._live):
            c.kill(reset=False)
        assert self._loop is not None
        self._loop.stop()

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        stats = ConnStats(index=len(self.conns))
        self.conns.append(stats)
        conn = _Conn(self, stats, cr, cw)
        self._live.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:
            conn.kill(reset=False)
        finally:
            self._live.discard(conn)
