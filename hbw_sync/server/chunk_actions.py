"""The relay's document-chunk actions: put, which are missing, get; the per-team quota; garbage collection.

Documents travel as sealed chunks outside batches (PROTOCOL.md §18d, §18e). The relay keeps
them in a ``ChunkStore`` (index in the request's transaction; bytes in files for SQLite, in
the database for PostgreSQL: ``chunkstore``) and cannot open them. It learns which
chunks a document version uses from the version op's *routing* field ``chunks`` (the ids,
never the content), recorded in ``chunk_refs`` when the batch is accepted. A chunk that no
stored batch refers to, and that was uploaded longer ago than ``limits.CHUNK_GRACE_MS``
(a device uploads chunks before the batch that names them), is garbage and is deleted.

Args arrive typed and bounded by ``limits.ACTIONS`` (checked from the msgpack header before
anything is built, after the signature); the checks here are what the table cannot say.
A refused put (over the quota, a malformed chunk) stores nothing of the request.
"""

from __future__ import annotations


from typing import Any, Callable

from .. import codec
from ..chunks import ID_LEN, SEALED_MAX
from ..crypto import NONCE_LEN, TAG_LEN
from ..errors import LimitError, ProtocolError
from ..ops import NAMES, Kind, Op
from . import limits
from .chunkstore import ChunkStore
from .storage import Txn

#: The smallest sealed chunk: nonce, method byte, tag (an empty file has no chunk at all).
SEALED_MIN = NONCE_LEN + 1 + TAG_LEN
#: The routing field of a document version op that lists its chunk ids (``ops.FIELDS``).
CHUNKS_TAG = NAMES[Kind.DOC]["chunks"].tag


def record_refs(conn: Txn, rseq: int, ops: list[Op]) -> int:
    """Note the chunk ids the document versions of an accepted batch use; returns how many."""
    return record_ref_ids(conn, rseq, [ids for op in ops
                                       if op.kind is Kind.DOC and (ids := op.fields.get(CHUNKS_TAG))])


def record_ref_ids(conn: Txn, rseq: int, chunk_lists: list[bytes]) -> int:
    """``record_refs`` from the ``chunks`` values themselves (``ops.check_routing_rows``); returns how many."""
    rows = [(ids[i:i + ID_LEN], rseq) for ids in chunk_lists for i in range(0, len(ids), ID_LEN)]
    for row in rows:  # the table is made at init (schema 2, storage/); a few ids per version
        conn.execute("INSERT INTO chunk_refs (cid, rseq) VALUES (?, ?) ON CONFLICT (cid, rseq) DO NOTHING", row)
    return len(rows)


def _ids(value: Any) -> list[bytes]:
    # limits.ACTIONS already typed these (16-byte bins, a bounded list); a duplicate is harmless.
    return list(value or [])


def chunk_missing(conn: Txn, store: ChunkStore, team: bytes, a: dict[str, Any]) -> dict[str, Any]:
    """Which of the listed ids the relay does not hold (the device uploads only those)."""
    ids = _ids(a.get("ids"))
    return {"missing": [cid for cid, held in zip(ids, store.has_many(conn, team, ids)) if not held]}


def chunk_put(conn: Txn, store: ChunkStore, team: bytes, a: dict[str, Any],
              now: int) -> dict[str, Any]:
    """Keep the sealed chunks sent; all or nothing against the team's quota (after collecting garbage)."""
    pieces = a.get("chunks") or []
    fresh: dict[bytes, bytes] = {}
    for cid, sealed in pieces:
        if not SEALED_MIN <= len(sealed) <= SEALED_MAX:
            raise ProtocolError(f"a sealed chunk of {len(sealed)} bytes cannot be a chunk", code="protocol.schema")
        fresh[cid] = sealed
    held = dict(zip(fresh, store.has_many(conn, team, list(fresh))))
    new = {cid: s for cid, s in fresh.items() if not held[cid]}
    size = sum(len(s) for s in new.values())
    quota = store.quota
    if new and store.usage(conn, team) + size > quota:
        collect(conn, store, team, now)
        if store.usage(conn, team) + size > quota:
            raise LimitError(f"the team's documents at this relay would take more than its quota of {quota} bytes "
                             f"({store.usage(conn, team)} held); nothing of this upload was kept",
                             code="protocol.quota",
                             hint="ask office IT to raise the relay's document quota (hbw-relay serve "
                                  "--chunk-quota-gb) or to free space")
    for cid, sealed in new.items():
        store.put(conn, team, cid, sealed, now)
    return {"stored": len(new), "usage": store.usage(conn, team), "quota": quota}


def stage_put(conn: Txn, store: ChunkStore, team: bytes, a: dict[str, Any]) -> Callable[[], None] | None:
    """Outside the writer, before ``chunk_put``'s transaction: write the new chunks' files (SQLite's store).

    ``conn`` only reads (which ids are held). Returns the cleanup that removes the files the
    transaction did not index (refused over the quota, or never reached), or None.
    """
    stage = getattr(store, "stage", None)
    pieces = [(cid, s) for cid, s in a.get("chunks") or [] if SEALED_MIN <= len(s) <= SEALED_MAX]
    if stage is None or not pieces:
        return None
    held = store.has_many(conn, team, [cid for cid, _s in pieces])
    paths = [p for (cid, s), h in zip(pieces, held) if not h and (p := stage(team, cid, s)) is not None]
    return (lambda: store.unstage(paths)) if paths else None  # type: ignore[attr-defined]


def chunk_get(conn: Txn, store: ChunkStore, team: bytes, a: dict[str, Any]) -> dict[str, Any]:
    """Sealed chunks by id, in the order asked, up to ``budget`` bytes (always at least one); ``missing``: not held."""
    ids = _ids(a.get("ids"))
    budget = min(int(a.get("budget", limits.CHUNK_GET_MAX)), limits.CHUNK_GET_MAX)
    out: list[list[Any]] = []
    missing: list[bytes] = []
    used = 0
    for cid in ids:
        data = store.get(conn, team, cid)
        if data is None:
            missing.append(cid)
            continue
        if out and used + len(data) > budget:
            break
        out.append([cid, data])
        used += len(data)
    return {"chunks": out, "missing": missing}


def collect(conn: Txn, store: ChunkStore, team: bytes, now: int,
            grace_ms: int | None = None) -> dict[str, int]:
    """Delete chunks no stored document version refers to and older than the grace period.

    Returns counts: ``kept``, ``deleted`` and ``freed`` bytes. Runs inside the writer's
    transaction, so no batch naming a chunk can be accepted between the look and the delete.
    """
    grace = limits.CHUNK_GRACE_MS if grace_ms is None else grace_ms
    before = store.usage(conn, team)
    total = conn.execute("SELECT COUNT(*) FROM chunks WHERE team = ?", (team,)).fetchone()[0]
    sweep = getattr(store, "sweep", None)  # SQLite's files: those earlier passes unindexed, or a crash left
    if sweep is not None:
        sweep(conn, team, now - grace)
    gone = store.garbage(conn, team, now - grace)
    for cid in gone:
        store.delete(conn, team, cid)
    kept, deleted = total - len(gone), len(gone)
    conn.execute("INSERT INTO meta (key, value) VALUES ('chunk_gc_ms', ?)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (codec.pack(now),))
    return {"kept": kept, "deleted": deleted, "freed": before - store.usage(conn, team)}


def _last_gc(conn: Txn) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'chunk_gc_ms'").fetchone()
    return 0 if row is None else int(codec.unpack(row[0]))


def put_action(conn: Txn, ident: Any, req: Any, now: int) -> dict[str, Any]:
    """``chunk_put`` for ``relay.ACTIONS`` (the caller has authenticated the request)."""
    a = req.args
    out = chunk_put(conn, ident.chunks, ident.team, a, now)
    maybe_collect(conn, ident.chunks, ident.team, now)
    return out


def missing_action(conn: Txn, ident: Any, req: Any, now: int) -> dict[str, Any]:
    """``chunk_missing`` for ``relay.ACTIONS``."""
    return chunk_missing(conn, ident.chunks, ident.team, req.args)


def get_action(conn: Txn, ident: Any, req: Any, now: int) -> dict[str, Any]:
    """``chunk_get`` for ``relay.ACTIONS``."""
    return chunk_get(conn, ident.chunks, ident.team, req.args)


def maybe_collect(conn: Txn, store: ChunkStore, team: bytes, now: int) -> None:
    """Collect garbage at most every ``limits.CHUNK_GC_EVERY_MS`` (a query over the team's index: not per request)."""
    if now - _last_gc(conn) >= limits.CHUNK_GC_EVERY_MS:
        collect(conn, store, team, now)
