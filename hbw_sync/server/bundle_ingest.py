"""The relay's side of format 2 bundles: spool the body to disk as it is checked, keep its chunks.

Why a module of its own: a bundle with 200 MB of documents must not be 200 MB (or, as before,
seven times that) of the relay's memory. ``spool`` reads a bundle of either format from a file
or from bytes, checks every 64 KiB segment as it goes (``bundle.open_stream``) and writes the
body (the sealed document chunks) to an anonymous temporary file; only the signed envelope is
held, within §12's ``max_message``. ``keep_body`` runs inside the ingest's transaction, after the
envelope's signature and counter were checked: it matches the body against the signed name,
then keeps the chunks with ``chunk_put``'s rules (all or nothing against the team's quota),
reading the spool twice so that only ids and sizes are ever in memory. ``seal_reply`` answers in
the format the device wrote. The decisions about a bundle stay in ``relay.ingest_bundle_parts``.
See PROTOCOL.md §18b (format 2) and §18f (chunks in bundles).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .. import bundle, codec, crypto, envelope
from ..errors import LimitError, ProtocolError, RevokedError, StorageError, UsageError
from ..i18n import _, ngettext
from . import chunk_actions
from .storage import Txn

#: Ids asked of the chunk store at once while the body's new chunks are counted.
_GROUP = 512


class Spooled:
    """A bundle read and checked: its envelope in memory, its body in a temporary file."""

    def __init__(self, opened: bundle.Opened, body: IO[bytes]):
        self.opened = opened
        self.envelope = opened.envelope
        self._body = body
        self.records = 0  # chunk records kept or found held, once ``keep_body`` ran
        self.wire_bytes = 0  # the bundle's size as it arrived (``spool_stream``): the relay's metrics

    def __len__(self) -> int:
        return self.wire_bytes

    def close(self) -> None:
        self._body.close()

    def iter_records(self) -> Iterator[tuple[bytes, bytes]]:
        self._body.seek(0)
        yield from bundle.body_records(self._body.read)


def spool(data: bytes | bytearray | Path | Spooled, team: bytes, relay_id: bytes, relay_x25519: bytes,
          spool_dir: Path | None = None) -> Spooled:
    """Open a bundle to the relay (format 1 or 2), its body checked segment by segment into a spool file.

    ``data`` may already be ``Spooled`` (``spool_stream``: the HTTP drop point checks the body as it
    arrives, outside the writer): it is returned as it is. ``spool_dir``: where the spool file goes
    (the relay's data directory; None: the system's temporary directory). Raises the opening errors
    of PROTOCOL.md §18b (``protocol.*``, ``integrity.aead`` ...); on any, the spool is gone and
    nothing was kept.
    """
    if isinstance(data, Spooled):
        return data
    # Anonymous: a crash leaves nothing behind.
    body = tempfile.TemporaryFile(prefix="hbw-bundle-", dir=spool_dir)
    try:
        if isinstance(data, Path):
            try:
                with open(data, "rb") as fh:
                    opened = _open(fh.read, team, relay_id, relay_x25519, body)
            except OSError as e:
                raise UsageError(_("cannot read {file}: {v}").format(file=data, v=e.strerror or e)) from None
        else:
            opened = _open(io.BytesIO(data).read, team, relay_id, relay_x25519, body)
    except BaseException:
        body.close()
        raise
    return Spooled(opened, body)


def spool_stream(read: Callable[[int], bytes], team: bytes, relay_id: bytes, relay_x25519: bytes,
                 spool_dir: Path, max_total: int = bundle.MAX_STREAM) -> Spooled:
    """``spool`` from ``read(n)`` (n bytes, fewer only at the end): the HTTP body, read as it arrives.

    Why: a bundle posted to ``/v1/bundle`` may be gigabytes; it is never held, only checked a
    segment at a time, its document parts written to a spool file in ``spool_dir`` (the relay's
    data directory: a 4 GiB bundle must not fill the system's temporary directory). The caller
    bounds ``read`` (cap, pace); ``max_total`` is the bundle's own limit (§18b).
    """
    body = tempfile.TemporaryFile(prefix="hbw-bundle-", dir=spool_dir)
    try:
        opened = bundle.open_stream(read, bundle.TO_RELAY, team, relay_id, relay_x25519, body.write,
                                    max_envelope=codec.DEFAULT_LIMITS.max_message, max_total=max_total)
    except BaseException:
        body.close()
        raise
    return Spooled(opened, body)


def _open(read: Any, team: bytes, relay_id: bytes, relay_x25519: bytes, body: IO[bytes]) -> bundle.Opened:
    return bundle.open_stream(read, bundle.TO_RELAY, team, relay_id, relay_x25519, body.write,
                              max_envelope=codec.DEFAULT_LIMITS.max_message)


def keep_body(conn: Txn, ident: Any, sp: Spooled, req: envelope.Request, member: str, now: int) -> int:
    """Check the body against the signed request's ``body`` and keep its chunks; how many it carried.

    Runs before the bundle's batches are accepted (§18f), in the same transaction: over the
    team's quota the whole bundle is refused (``protocol.quota``), nothing kept.
    """
    sp.opened.check_named(req.args.get("body"))
    if not sp.opened.body_length:
        return 0
    row = conn.execute("SELECT revoked_ms FROM devices WHERE device = ?", (req.device,)).fetchone()
    if row is not None and row[0] is not None:  # as ``authenticate`` would say, before any chunk is kept
        raise RevokedError("this device was revoked by the office; it can no longer sync",
                           hint="ask office IT to enroll this device again if it was found")
    store = ident.chunks
    if store is None:
        raise ProtocolError(_("this relay keeps no document chunks, and this bundle carries some"),
                            code="protocol.chunk")
    sizes: dict[bytes, int] = {}
    for cid, sealed in sp.iter_records():
        if len(sealed) < chunk_actions.SEALED_MIN:
            raise ProtocolError(f"a sealed chunk of {len(sealed)} bytes cannot be a chunk", code="protocol.schema")
        sizes[cid] = len(sealed)
    ids = list(sizes)
    held: set[bytes] = set()
    for i in range(0, len(ids), _GROUP):
        group = ids[i:i + _GROUP]
        held.update(cid for cid, h in zip(group, store.has_many(conn, ident.team, group)) if h)
    new = {cid: n for cid, n in sizes.items() if cid not in held}
    size = sum(new.values())
    if new and store.usage(conn, ident.team) + size > store.quota:
        chunk_actions.collect(conn, store, ident.team, now)
        if store.usage(conn, ident.team) + size > store.quota:
            raise LimitError(ngettext("the bundle from {member} carries {n} document chunk ({size} bytes) that would take the "
                                      "team past its document quota at this relay: nothing of this bundle was applied",
                                      "the bundle from {member} carries {n} document chunks ({size} bytes) that would take "
                                      "the team past its document quota at this relay: nothing of this bundle was applied",
                                      len(new)).format(member=member, n=len(new), size=size),
                             code="protocol.quota",
                             hint="ask office IT to raise the relay's document quota (hbw-relay serve "
                                  "--chunk-quota-gb) or to free space")
    for cid, sealed in sp.iter_records():
        if cid in new:
            store.put(conn, ident.team, cid, sealed, now)
            del new[cid]  # each once, even if the body names it twice
    sp.records = len(sizes)
    return len(sizes)


def seal_reply(version: int, ident: Any, req: envelope.Request, x_pub: bytes, result: dict[str, Any],
               now: int, fetch: Callable[[bytes], bytes | None]) -> bytes | bytearray:
    """One reply part, sealed in the format the device's bundle came in (it reads what it writes).

    Format 2: the part's chunks (``[id, size]``, ``bundle_replies.add_chunks(keep_bytes=False)``)
    go in its body, fetched one at a time, twice (to name the body, then to seal it), into a
    buffer of the reply's exact size: only the reply itself is held.
    """
    if version == bundle.VERSION:
        return bundle.seal(bundle.TO_DEVICE, ident.team, req.device, x_pub,
                       envelope.make_response(ident.key, req.nonce, result, now))
    pieces = result.get("chunks") or []
    result = {k: v for k, v in result.items() if k != "chunks"}

    def records() -> Iterator[bytes]:
        for cid, _size in pieces:
            sealed = fetch(cid)
            if sealed is None:  # held a moment ago, in this transaction: the store lost it
                raise StorageError(f"chunk {cid.hex()} vanished from the relay's store while a reply was sealed")
            yield bundle.body_record(cid, sealed)

    h = hashlib.sha256()
    length = 0
    for rec in records():
        h.update(rec)
        length += len(rec)
    env = bundle.named_envelope(lambda named: envelope.make_response(ident.key, req.nonce, {**result, "body": named},
                                                                      now), h.digest(), length)
    sealer = bundle.StreamSealer(bundle.TO_DEVICE, ident.team, req.device, x_pub)
    plain = 4 + len(env) + length
    out = bytearray(len(sealer.header) + plain + bundle.segments_for(plain) * crypto.TAG_LEN)
    at = 0

    def put(piece: bytes) -> None:
        nonlocal at
        out[at:at + len(piece)] = piece
        at += len(piece)

    put(sealer.header)
    put(sealer.feed(len(env).to_bytes(4, "big") + env))
    for rec in records():
        put(sealer.feed(rec))
    put(sealer.finish())
    assert at == len(out)
    return out
