"""Streamed uploads: a large batch resumes at the byte, not at the last whole piece (PROTOCOL.md §13a).

``POST /v1/stream`` carries a signed head, then the batch's raw bytes from an offset::

    u16 head length | head (a request envelope, action "stream": seq, total, offset, sha256) | bytes

Why a head and not one signed request: a signed request is checked once its whole body
is in, so a piece cut at 90 % was lost whole and the relay kept nothing nobody had
vouched for. Here the device vouches *first*: the relay reads the head (at most
``limits.STREAM_HEAD_MAX`` bytes, under the same slow-body rules as any body), checks
its freshness, signature and nonce, that the offset is the one it holds, that
Content-Length fits what remains of ``total``, and the device's quota of unfinished
uploads (``limits.UPLOAD_QUOTA``), all BEFORE it reads a byte of the body. From then on
every byte that arrives comes from an authenticated device and counts against its quota:
the relay writes it to the partial upload as it comes (``limits.STREAM_FLUSH`` at a time),
and writes what it gathered when the connection drops too. The device asks where the
upload stands (the ``upload`` action without a piece) and goes on from there.

Once ``total`` bytes are held, their SHA-256 must be the head's: a mismatch drops the
held bytes and answers ``restart`` (the device sends from 0 again); otherwise the batch is
ingested exactly as an uploaded or inline one (``relay.finish_upload``). The answer is a
response envelope signed for the head's nonce: ``{"offset": held}``, plus ``ack`` or
``reject`` when the batch is complete.

This module holds the route's logic; ``app.py`` registers it (``/v1/stream``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .. import chunks, codec, envelope
from ..errors import AccessError, HbwError, LimitError, ProtocolError, TransientError, UsageError
from . import chunk_actions, limits, relay
from .storage.base import Txn

log = logging.getLogger("hbw.relay")

ACTION = "stream"
#: The head's length prefix: two bytes, big-endian.
PREFIX = 2


@dataclass
class Go:
    """A head the relay accepted: where the body's bytes go."""

    device: bytes
    author_pub: bytes
    nonce: bytes
    seq: int
    total: int
    offset: int
    sha256: bytes
    #: The bytes are a chunk pack (``chunks.pack_chunks``), kept in the chunk store once whole.
    pack: bool = False


def begin(conn: Txn, ident: relay.RelayIdentity, head_bytes: bytes, body_len: int,
          now: int) -> Go | tuple[bytes, dict[str, Any]]:
    """Check a stream head before any body byte is read: a ``Go``, or the signed answer that ends it now.

    Order as for every request (``relay.open_request``): the frame, freshness, the enrolled
    device's key and the signature, then the args by ``limits.STREAM``; then the nonce (a
    replayed head is refused), the offset the relay holds, the body's length, the quota.

    Raises:
        ProtocolError / LimitError / AccessError with their codes; nothing is stored then
        (a refused head's nonce is not kept either: the transaction rolls back).
    """
    req, (_member, _role, author_pub) = _open_signed(conn, head_bytes, limits.STREAM_HEAD_MAX, ACTION,
                                                     limits.STREAM.args, now)
    a = req.args
    seq, total, offset, sha256 = a.get("seq"), a.get("total"), a.get("offset"), a.get("sha256")
    if seq is None or total is None or offset is None or sha256 is None:
        raise ProtocolError("a stream head needs seq, total, offset and sha256", code="protocol.schema")
    pack = bool(a.get("chunks"))
    if pack != (seq >= limits.PACK_SEQ):
        raise ProtocolError(f"a {'chunk pack' if pack else 'batch'}'s seq must be "
                            f"{'at least' if pack else 'under'} {limits.PACK_SEQ}", code="protocol.schema")
    if pack and total > limits.PACK_MAX:
        raise LimitError(f"a chunk pack of {total} bytes is over the {limits.PACK_MAX}-byte limit",
                         code="protocol.limit")
    state = relay.upload_state(conn, req.device, seq, total, sha256, now)
    if isinstance(state, dict):  # already a batch: nothing to read
        return _answer(relay_key=ident, nonce=req.nonce, result=state, now=now)
    if offset != state:  # not where the relay is: say where it is, read nothing
        return _answer(relay_key=ident, nonce=req.nonce, result={"offset": state}, now=now)
    if body_len > total - offset:
        raise LimitError(f"a stream of {body_len} bytes is longer than the {total - offset} bytes left of "
                         f"batch {seq}", code="protocol.limit")
    relay.make_upload_room(conn, req.device, seq, body_len)  # raises protocol.quota
    return Go(req.device, author_pub, req.nonce, seq, total, offset, sha256, pack)


def _open_signed(conn: Txn, raw: bytes, cap: int, action: str, args: Any, now: int) -> tuple[Any, Any]:
    """A stream's or fetch's request opened as every request: frame, action, freshness, the enrolled
    device's key and signature, args within ``args``, then ``relay.authenticate`` (revoked? replayed?
    uses the nonce). Returns the request and what ``authenticate`` says of its author."""
    head = envelope.peek_request(raw, cap)
    if head.action != action:
        raise ProtocolError(f"this route takes a {action!r} request, not {head.action!r}", code="protocol.action")
    key = _transport_key(conn, head.device)
    envelope.check_fresh(head, now)
    if key is None:
        raise AccessError("this device is not enrolled in the team", code="access.unknown_device")
    head.verify(key)
    req = envelope.open_request(head, args, verified_with=key)
    return req, relay.authenticate(conn, req, now)


def _transport_key(conn: Txn, device: bytes) -> bytes | None:
    row = conn.execute("SELECT transport_pub FROM devices WHERE device = ?", (device,)).fetchone()
    return None if row is None else row[0]


def _answer(*, relay_key: relay.RelayIdentity, nonce: bytes, result: dict[str, Any],
            now: int) -> tuple[bytes, dict[str, Any]]:
    return envelope.make_response(relay_key.key, nonce, result, now), result


def append(conn: Txn, go: Go, offset: int, data: bytes, now: int) -> bool:
    """Write bytes that arrived at ``offset``; False if the upload moved meanwhile (another stream of it).

    Quota is checked again: another upload of the same device may have grown since the head.
    """
    held = relay.upload_state(conn, go.device, go.seq, go.total, go.sha256, now)
    if held != offset:
        return False
    relay.make_upload_room(conn, go.device, go.seq, len(data))
    conn.execute('INSERT INTO upload_chunks (device, seq, "offset", total, data, created_ms) VALUES (?, ?, ?, ?, ?, ?)',
                 (go.device, go.seq, offset, go.total, data, now))
    return True


def finish(conn: Txn, ident: relay.RelayIdentity, go: Go, now: int) -> tuple[bytes, dict[str, Any]]:
    """The stream ended: its answer, ingesting the batch if it is whole and its SHA-256 is the head's."""
    held = relay.upload_state(conn, go.device, go.seq, go.total, go.sha256, now)
    if isinstance(held, dict):
        return _answer(relay_key=ident, nonce=go.nonce, result=held, now=now)
    if held < go.total:
        return _answer(relay_key=ident, nonce=go.nonce, result={"offset": held}, now=now)
    if hashlib.sha256(relay.upload_bytes(conn, go.device, go.seq)).digest() != go.sha256:
        conn.execute("DELETE FROM upload_chunks WHERE device = ? AND seq = ?", (go.device, go.seq))
        return _answer(relay_key=ident, nonce=go.nonce, now=now, result={"offset": 0, "restart": ProtocolError(
            f"the bytes of batch {go.seq} do not have the SHA-256 its stream's head named; they were dropped",
            code="integrity.sha256").to_dict()})
    if go.pack:
        return _answer(relay_key=ident, nonce=go.nonce, now=now, result=_keep_pack(conn, ident, go, now))
    return _answer(relay_key=ident, nonce=go.nonce, now=now,
                   result=relay.finish_upload(conn, ident, go.device, go.author_pub, go.seq, now))


def _keep_pack(conn: Txn, ident: relay.RelayIdentity, go: Go, now: int) -> dict[str, Any]:
    """A whole chunk pack: its chunks into the chunk store, as ``chunk_put`` keeps them (quota included).

    A pack that does not parse, or that would pass the team's quota, is dropped and answered
    ``reject`` with the reason: nothing of it is kept, as for a refused ``chunk_put``.
    """
    data = relay.upload_bytes(conn, go.device, go.seq)
    conn.execute("DELETE FROM upload_chunks WHERE device = ? AND seq = ?", (go.device, go.seq))
    try:
        pieces = chunks.unpack_chunks(data, limits.PACK_MAX // 1024)
        if ident.chunks is None:
            raise ProtocolError("this relay keeps no document chunks", code="protocol.action")
        stored = chunk_actions.chunk_put(conn, ident.chunks, ident.team, {"chunks": pieces}, now)
    except HbwError as e:
        return {"offset": 0, "reject": e.to_dict()}
    return {"offset": go.total, "stored": stored["stored"]}


@dataclass
class Deps:
    """What the route needs from the app (``app.py`` hands it over; no import cycle)."""

    writer: Any
    ident: relay.RelayIdentity
    config: Any  # app.RelayConfig: body_stall_s, body_grace_s, min_body_rate
    bodies: limits.BodyBudget
    metrics: Any  # app.Metrics


class _Reader:
    """Reads a body under the relay's slow-body rules (``app.read_body``'s: a stall, then a least rate)."""

    def __init__(self, request: web.Request, cfg: Any):
        self.request, self.cfg = request, cfg
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.got = 0
        self.buf = bytearray()
        self.dropped: BaseException | None = None

    async def more(self) -> bytes:
        """The next bytes that arrived (b"" at the end). After a drop, what aiohttp still held, then the drop."""
        if self.dropped is not None:
            raise self.dropped
        cfg = self.cfg
        deadline = self.t0 + cfg.body_grace_s + self.got / cfg.min_body_rate
        wait = min(cfg.body_stall_s, deadline - self.loop.time())
        if wait <= 0:
            raise TransientError(f"the stream arrived too slowly ({self.got} bytes in "
                                 f"{self.loop.time() - self.t0:.0f} s); the relay kept what came",
                                 code="transient.slow_body", hint="the next sync goes on from there")
        try:
            chunk = await asyncio.wait_for(self.request.content.readany(), wait)
        except asyncio.TimeoutError:
            raise TransientError(f"the stream stopped arriving after {self.got} bytes; the relay kept what came",
                                 code="transient.slow_body", hint="the next sync goes on from there") from None
        except (ConnectionResetError, HttpProcessingError) as e:
            self.dropped = e
            chunk = self._salvage()
            if not chunk:
                raise
        self.got += len(chunk)
        return chunk

    def _salvage(self) -> bytes:
        """Bytes aiohttp received but had not handed over when the connection dropped.

        aiohttp's ``readany`` raises a dropped connection's error before it returns what is
        still in its buffer, and on a cut link those are the very bytes this route exists to
        keep (on loopback often the whole request: the drop comes before the handler runs).
        So they are taken from the buffer directly (``StreamReader._buffer``, stable through
        aiohttp 3.x; nothing is taken if a later version names it otherwise).
        """
        content = self.request.content
        buf = getattr(content, "_buffer", None)
        if not buf:
            return b""
        data = b"".join(bytes(c) for c in buf)[int(getattr(content, "_buffer_offset", 0) or 0):]
        buf.clear()
        return data

    async def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = await self.more()
            if not chunk:
                raise ProtocolError("the stream ended inside its head", code="protocol.truncated")
            self.buf += chunk
        out, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return out


async def serve(request: web.Request, deps: Deps, error_response: Any) -> web.StreamResponse:
    """``POST /v1/stream``: check the head, then keep every body byte that arrives (see the module's text)."""
    t0 = time.perf_counter()
    status, device, held = 200, "-", 0
    address = request.remote or "?"
    m = deps.metrics
    try:
        declared = request.content_length
        if declared is None:
            raise ProtocolError("a stream needs a Content-Length; nothing was read", code="protocol.length")
        enc = request.headers.get("Content-Encoding", "identity").strip().lower()
        if enc not in ("", "identity"):
            raise ProtocolError(f"compressed request bodies ({enc}) are not accepted; nothing was read",
                                code="protocol.encoding")
        if declared > PREFIX + limits.STREAM_HEAD_MAX + codec.DEFAULT_LIMITS.max_message:
            raise LimitError(f"a stream of {declared} bytes is over any batch's size", code="protocol.limit")
        reader = _Reader(request, deps.config)
        n = int.from_bytes(await reader.exactly(PREFIX), "big")
        if not 0 < n <= limits.STREAM_HEAD_MAX or PREFIX + n > declared:
            raise LimitError(f"a stream head of {n} bytes is not allowed (at most {limits.STREAM_HEAD_MAX})",
                             code="protocol.limit")
        head = await reader.exactly(n)
        body_len = declared - PREFIX - n
        go = await deps.writer.run(begin, deps.ident, head, body_len, relay.now_ms())
        if not isinstance(go, Go):
            out, _result = go
            resp = web.Response(body=out, content_type="application/x-hbw")
            if body_len:
                resp.force_close()  # the body is not read: the connection cannot carry another request
            return resp
        device = go.device.hex()
        deps.bodies.take(address, limits.STREAM_FLUSH)
        held = limits.STREAM_FLUSH
        out = await _take_body(reader, deps, go, body_len)
        return web.Response(body=out, content_type="application/x-hbw")
    except HbwError as e:
        resp = error_response(e)
        status = resp.status
        resp.force_close()  # the rest of the body is not waited for, not even to discard it
        return resp
    except (ConnectionResetError, HttpProcessingError):  # the link dropped: what came is kept (``_take_body``)
        status = 499
        return web.Response(status=499)
    finally:
        deps.bodies.give(address, held)
        m.requests[(ACTION, status)] += 1
        if deps.config.access_log:
            log.info(json.dumps({"action": ACTION, "device": device, "status": status,
                                 "ms": round((time.perf_counter() - t0) * 1000, 1),
                                 "bytes_in": request.content_length or 0}))


async def _take_body(reader: _Reader, deps: Deps, go: Go, body_len: int) -> bytes:
    """Write the body to the partial upload as it arrives; on a drop, write what came first, then re-raise."""
    offset, buf, got = go.offset, bytearray(reader.buf), len(reader.buf)
    reader.buf = bytearray()
    moved = True

    async def flush() -> None:
        nonlocal offset, buf, moved
        if buf and moved:
            data = bytes(buf)
            moved = await deps.writer.run(append, go, offset, data, relay.now_ms())
            if moved:
                offset += len(data)
                deps.metrics.bytes_in += len(data)
        buf = bytearray()

    try:
        while got < body_len and moved:
            if len(buf) >= limits.STREAM_FLUSH:
                await flush()
                continue
            chunk = await reader.more()
            if not chunk:
                break  # the peer declared more than it sent: keep what came
            got += len(chunk)
            buf += chunk
        await flush()
    except BaseException:
        # A cut (ConnectionResetError, a payload error), a stall: these bytes came from an authenticated
        # device; keep them, so the next stream starts after them. Shielded: a cancelled handler still writes.
        if buf and moved:
            await asyncio.shield(flush())
        raise
    if got > body_len:
        raise LimitError("the stream sent more than its Content-Length", code="protocol.limit")
    out, _result = await deps.writer.run(finish, deps.ident, go, relay.now_ms())
    return out


# -- streamed downloads: a large batch from an offset, kept by the device as it arrives -------------


def fetch_begin(conn: Txn, ident: relay.RelayIdentity, body: bytes, now: int) -> tuple[bytes, bytes]:
    """Check a ``fetch`` request as every request; the signed head and the batch's bytes from ``offset``.

    The head (a response envelope for the request's nonce) says ``size``, ``offset`` and the
    batch's ``sha256``: the device checks the bytes that follow against it once it has them all.

    Raises:
        The errors of every request; ``usage.not_found`` (no such batch), ``protocol.schema``
        (an offset past the batch's end).
    """
    req, _who = _open_signed(conn, body, limits.FETCH.body, FETCH, limits.FETCH.args, now)
    a = req.args
    rseq, offset = a.get("rseq"), a.get("offset", 0)
    if rseq is None:
        raise ProtocolError("a fetch needs rseq", code="protocol.schema")
    row = conn.execute("SELECT data FROM batches WHERE rseq = ?", (rseq,)).fetchone()
    if row is None:
        raise UsageError(f"no batch {rseq} at the relay", code="usage.not_found")
    data = bytes(row[0])
    if offset > len(data):
        raise ProtocolError(f"offset {offset} is past the end of batch {rseq}", code="protocol.schema")
    out = envelope.make_response(ident.key, req.nonce, {"size": len(data), "offset": offset,
                                                        "sha256": hashlib.sha256(data).digest()}, now)
    return out, data[offset:]


FETCH = "fetch"
#: Bytes written to the socket at a time: each write waits for room (a slow link holds little here).
SEND_SLICE = 64 * 1024


async def serve_fetch(request: web.Request, deps: Deps, error_response: Any) -> web.StreamResponse:
    """``POST /v1/fetch``: ``u16 n | head (n bytes) | bytes``; the device keeps what arrives if the link drops."""
    t0 = time.perf_counter()
    status, sent = 200, 0
    try:
        declared = request.content_length
        if declared is None:
            raise ProtocolError("a fetch needs a Content-Length; nothing was read", code="protocol.length")
        if declared > limits.FETCH.body:
            raise LimitError(f"a fetch request of {declared} bytes is over the {limits.FETCH.body}-byte limit",
                             code="protocol.limit")
        body = await _Reader(request, deps.config).exactly(declared)
        head, rest = await deps.writer.run(fetch_begin, deps.ident, body, relay.now_ms())
        resp = web.StreamResponse(headers={"Content-Type": "application/x-hbw"})
        resp.content_length = PREFIX + len(head) + len(rest)
        await resp.prepare(request)
        await resp.write(len(head).to_bytes(PREFIX, "big") + head)
        view = memoryview(rest)
        for at in range(0, len(rest), SEND_SLICE):
            await resp.write(bytes(view[at:at + SEND_SLICE]))
            sent += min(SEND_SLICE, len(rest) - at)
        await resp.write_eof()
        deps.metrics.bytes_out += sent
        return resp
    except HbwError as e:
        resp = error_response(e)
        status = resp.status
        return resp
    except (ConnectionResetError, HttpProcessingError):
        status = 499
        return web.Response(status=499)
    finally:
        deps.metrics.requests[(FETCH, status)] += 1
        if deps.config.access_log:
            log.info(json.dumps({"action": FETCH, "status": status, "bytes_out": sent,
                                 "ms": round((time.perf_counter() - t0) * 1000, 1)}))
