"""Moving document chunks with the relay: upload before the batches that name them, download by policy.

Upload (``push``), at the start of every sync, locked or not (chunks are sealed already):
ask the relay which of the chunks not yet confirmed it lacks (``chunk_missing``), mark the
others sent, and stream the missing ones as packs of about 1 MiB (``POST /v1/stream`` with
``chunks``, PROTOCOL.md §18e), marking a pack's chunks sent once the relay's signed answer comes.
A pack cut in the middle resumes at the byte the relay holds (the relay keeps what arrived);
a sync cut in the middle goes on from the first chunk not confirmed; a batch that names chunks is sent only after this step finished, so the
relay never holds a version whose chunks it lacks (unless their author never syncs again).

Download (``fetch``): the ids the fetch policy wants (``Versions.wanted_chunks``) or one
document needs (``doc get``), asked for in groups, each chunk checked against its id before it
is kept; each answer is one transaction, so a cut download keeps what came. Chunks the relay
does not hold (their author has not synced yet) are counted and told, not an error.

See PROTOCOL.md §18e. The calls go through ``sync._Session._call`` (signed requests, the
pinned relay key, the link's piece size).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import batch as wire
from .. import chunks
from ..errors import HbwError, ProtocolError, from_dict
from ..ops import NAMES, Kind
from . import docchunks

if TYPE_CHECKING:
    from .versions import Versions
    from .sync import _Session

_CHUNKS = NAMES[Kind.DOC]["chunks"].tag
#: Ids per ``chunk_missing`` / ``chunk_get`` request (the relay takes up to 4096).
IDS_PER_CALL = 1024
#: Bytes of sealed chunks per ``chunk_put`` and asked per ``chunk_get`` on a good link (the relay takes 4 MiB).
BODY_TARGET = 1024 * 1024


def _target(session: "_Session") -> int:
    # A link that keeps dropping shrinks its piece (sync._Link); one get then carries one chunk.
    return min(BODY_TARGET, session.link.piece * 16)


#: A chunk pack's seq is at least this (the relay's ``limits.PACK_SEQ``): never a batch's.
PACK_SEQ = 1 << 62


async def push(session: "_Session") -> int:
    """Upload this device's chunks the relay lacks; returns bytes uploaded."""
    local = docchunks.LocalChunks(session.s)
    # Chunks named by batches not yet acknowledged are checked again, whatever their flag says: the
    # relay deletes unreferenced chunks after a week, so chunks uploaded by a sync whose batch never
    # went (the link dropped, then the laptop stayed offline) may be gone; they are sent again.
    refs = outbox_refs(session.s)
    if refs:
        with session.s.transaction():
            local.mark_unsent(refs)
    if session.meter.active:  # the upload's total: the batches (counted by the caller) and these chunks
        session.up_total += local.unsent_bytes()
        session._show_progress()
    sent = 0
    while True:
        ids = local.unsent(IDS_PER_CALL)
        if not ids:
            return sent
        res = await session._call("chunk_missing", {"ids": ids})
        missing = _ids(res.get("missing"), set(ids))
        held = set(ids) - set(missing)
        if session.meter.active and held:  # the relay has these already: they will not move
            session.up_total -= sum(local.sealed_size(cid) for cid in held)
        with session.s.transaction():
            local.mark_sent(held)
        batch: list[list[Any]] = []
        size = 0
        for cid in missing:
            sealed = local.sealed(cid)
            if sealed is None:
                continue
            # A fixed size, not the link's: the same pack again resumes where the relay holds it.
            if batch and size + len(sealed) > BODY_TARGET:
                sent += await _put(session, local, batch, size)
                batch, size = [], 0
            batch.append([cid, sealed])
            size += len(sealed)
        if batch:
            sent += await _put(session, local, batch, size)


async def _put(session: "_Session", local: docchunks.LocalChunks, batch: list[list[Any]], size: int) -> int:
    """Stream one pack of sealed chunks (``POST /v1/stream``); a cut resumes at the byte the relay holds.

    The pack's ``seq`` comes from its SHA-256, so the next attempt, which asks again which chunks
    the relay lacks and packs the same ones in the same order, resumes the same upload.
    """
    data = chunks.pack_chunks(batch)
    seq = PACK_SEQ | int.from_bytes(hashlib.sha256(data).digest()[:7], "big")
    if session.meter.active:  # the pack's framing travels too: count it, so progress never steps back
        session.up_total += len(data) - size
    res = await session.send_stream(seq, data, pack=True)
    session.link.held.pop(seq, None)
    if "reject" in res:
        err = res["reject"] if isinstance(res["reject"], dict) else {}
        raise from_dict(err)
    with session.s.transaction():
        local.mark_sent(cid for cid, _ in batch)
    session.report.sent_bytes += len(data)
    session._show_progress()
    return len(data)


async def fetch(session: "_Session", rep: "Versions", ids: list[bytes]) -> tuple[int, int]:
    """Download chunks by id (each checked, each answer kept at once); (bytes fetched, ids the relay lacks)."""
    local = rep.local_chunks
    keys = docchunks.keys_by_epoch(rep.team_keys())
    epoch_of = _epochs(rep, ids)
    got_bytes = lacking = 0
    todo = local.missing(ids)
    sizes = _plain_sizes(rep, todo) if session.meter.active else {}
    session.chunks_to_fetch = sum(sizes.values())  # the download's total, as the manifests give it
    session._show_progress()
    while todo:
        ask = todo[:IDS_PER_CALL]
        res = await session._call("chunk_get", {"ids": ask, "budget": _target(session)})
        wanted = set(ask)
        pieces = res.get("chunks") or []
        if not isinstance(pieces, list) or any(not isinstance(p, list) or len(p) != 2 or p[0] not in wanted
                                               or not isinstance(p[1], bytes) for p in pieces):
            raise ProtocolError("the relay answered chunks that were not asked for", code="protocol.chunk", params={})
        absent = set(_ids(res.get("missing"), wanted))
        if not pieces and not absent:
            raise ProtocolError("the relay answered no chunk and no reason", code="protocol.chunk", params={})
        with session.s.transaction():
            for cid, sealed in pieces:
                local.keep_fetched(keys, epoch_of.get(cid, 0), [(cid, sealed)])
        n = sum(len(s) for _, s in pieces)
        got_bytes += n
        session.link.moved += n
        session.link.grow()
        session.report.received_bytes += n
        lacking += len(absent)
        done = {cid for cid, _ in pieces} | absent
        todo = [cid for cid in todo if cid not in done]
        session.chunks_to_fetch = sum(sizes.get(cid, 0) for cid in todo)
        session._show_progress()
    return got_bytes, lacking


def _plain_sizes(rep: "Versions", ids: list[bytes]) -> dict[bytes, int]:
    """Each id's plain size, as the manifests of the document versions give it (an estimate of the
    sealed bytes to come: those are at most 29 bytes more, or smaller when compressed)."""
    want = set(ids)
    out: dict[bytes, int] = {}
    for m in _manifests(rep):
        for cid, _off, n in m.offsets():
            if cid in want:
                out[cid] = n
    return out


def _manifests(rep: "Versions") -> Iterator[chunks.Manifest]:
    """The manifest of every chunked document version this device knows of (locked or not: routing and
    content it holds), for what ids alone cannot say: their sizes and key epochs."""
    for (did,) in rep.store.execute("SELECT id FROM entities WHERE kind = ?", (int(Kind.DOC),)).fetchall():
        for _oid, _dev, op in rep.version_ops(did):
            raw = (op.content or {}).get(NAMES[Kind.DOC]["manifest"].tag)
            if raw:
                yield chunks.decode_manifest(raw)


def batch_refs(data: bytes) -> list[tuple[bytes, list[bytes]]]:
    """(document id, chunk ids) of each chunked document version one sealed batch names (routing only:
    no key needed). A batch that does not parse names nothing (the relay refuses it and says so)."""
    try:
        ops = wire.parse_batch(data).routing_ops()
    except HbwError:
        return []
    out = []
    for op in ops:
        ids = op.fields.get(_CHUNKS) if op.kind is Kind.DOC else None
        if ids:
            out.append((op.entity, [ids[i:i + 16] for i in range(0, len(ids), 16)]))
    return out


def outbox_refs(store: Any) -> list[bytes]:
    """Chunk ids the document versions of this device's unacknowledged batches name (read from routing:
    no key needed, so a locked sync does this too)."""
    out: dict[bytes, None] = {}
    for (data,) in store.execute("SELECT data FROM outbox WHERE state IN ('open', 'closed')").fetchall():
        try:
            ops = wire.parse_batch(data).routing_ops()
        except HbwError:
            continue  # the relay refuses it and says so; nothing to upload for it
        for op in ops:
            ids = (op.fields.get(_CHUNKS) if op.kind is Kind.DOC else None) or b""
            for i in range(0, len(ids), 16):
                out[ids[i:i + 16]] = None
    return list(out)


def _ids(value: Any, allowed: set[bytes]) -> list[bytes]:
    if not isinstance(value, list) or any(cid not in allowed for cid in value):
        if value is None:
            return []
        raise ProtocolError("the relay named chunks that were not asked about", code="protocol.chunk", params={})
    return value


def _epochs(rep: "Versions", ids: list[bytes]) -> dict[bytes, int]:
    """Which epoch's keys check each id: from the manifests of every chunked version (ids are per epoch)."""
    want = set(ids)
    out: dict[bytes, int] = {}
    for m in _manifests(rep):
        for cid in m.ids:
            if cid in want:
                out[cid] = m.epoch
    return out
