"""Document versions at rest: their bytes kept once, rebuilt from deltas, chunked ones and the fetch policy.

Every inline version's bytes are kept once, sealed, in `blobs` by their SHA-256 (``Ledger.blob``);
a chunked version's are the sealed chunks its manifest names (``docchunks``, PROTOCOL.md §18d-e).
A version that arrives as a delta is rebuilt here, against a base this device holds, and checked
against its hash; one whose base has not arrived waits (``doc_waiting``) and is rebuilt when it
does. This part sits under both ``changes`` (a logged version is materialized as it is logged)
and ``documents`` (the commands people run), so neither reaches the other through it.
``docdelta`` and ``docsync`` work for this part: they are handed it, not the whole replica.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .. import chunks, crypto, delta
from ..clock import now_ms
from ..errors import IntegrityError, ProtocolError
from ..i18n import _
from ..ops import NAMES, Kind, Op
from . import docchunks, docdelta, notices
from .ledger import Ledger

# Versions sent whole or as a delta inside a batch (files under documents.CHUNKED_FROM, or any
# file while this device holds no team key yet) are held whole in memory: those stay under 32 MiB.
MAX_INLINE_BYTES = 32 * 1024 * 1024

_MANIFEST = NAMES[Kind.DOC]["manifest"].tag
_MANIFEST_DELTA = NAMES[Kind.DOC]["manifest_delta"].tag


def digest_of(version: Op) -> bytes:
    """A document version's SHA-256 (field 34): every version op carries its content (``version_ops``)."""
    return bytes((version.content or {})[34])


class Versions:
    """The versions of documents this device holds, and the ones its fetch policy wants."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.store = ledger.store
        self._local_chunks: docchunks.LocalChunks | None = None

    # -- chunked versions (PROTOCOL.md §18d-e) ---------------------------------------------------

    @property
    def local_chunks(self) -> docchunks.LocalChunks:
        """The sealed chunks kept on this device (made on first use)."""
        if self._local_chunks is None:
            self._local_chunks = docchunks.LocalChunks(self.store)
        return self._local_chunks

    def team_keys(self) -> dict[int, crypto.TeamKey]:
        """The team keys by epoch (``docsync`` opens fetched chunks with them)."""
        return self.ledger.team_keys()

    def chunk_keys(self) -> chunks.ChunkKeys | None:
        """The keys new chunks are sealed with; None while this device holds no team key."""
        key = self.ledger.current_key_or_none()
        return None if key is None else chunks.ChunkKeys.of(key)

    def chunk_keys_for(self, m: chunks.Manifest) -> chunks.ChunkKeys:
        """The keys a chunked version was sealed with. Raises IntegrityError ``integrity.chain`` without them."""
        return self.chunk_keys_of(m.epoch)

    def chunk_keys_of(self, epoch: int) -> chunks.ChunkKeys:
        """The chunk keys of one epoch. Raises IntegrityError ``integrity.chain`` when this device lacks it."""
        key = self.ledger.team_keys().get(epoch)
        if key is None:
            raise IntegrityError(_("this device does not hold the team key of epoch {epoch} this document was "
                                   "sealed with").format(epoch=epoch), code="integrity.chain",
                                 hint=_("sync: a supervisor's device shares it"))
        return chunks.ChunkKeys.of(key)

    def version_manifest(self, did: bytes, digest: bytes) -> chunks.Manifest | None:
        """The manifest of a document's chunked version ``digest``; None if that version is not chunked."""
        for _oid, _dev, op in reversed(self.version_ops(did)):
            c = op.content or {}
            if c.get(34) == digest and c.get(_MANIFEST):
                return chunks.decode_manifest(c[_MANIFEST])
        return None

    def missing_chunks(self, did: bytes, digest: bytes) -> list[bytes]:
        """Ids of the version's chunks not on this device (empty when it is whole here, or not chunked)."""
        m = self.version_manifest(did, digest)
        return [] if m is None else self.local_chunks.missing(m.ids)

    def is_local(self, did: bytes, digest: bytes | None) -> bool:
        """Whether a version can be read here now (whole in `blobs`, or every chunk kept)."""
        if digest is None:
            return True
        if self.ledger.has_blob(digest):
            return True
        m = self.version_manifest(did, digest)
        return m is not None and not self.local_chunks.missing(m.ids)

    # -- the fetch policy --------------------------------------------------------------------------

    def doc_policy(self) -> str:
        """Which documents this device downloads after a sync: mine (default), all, none (see ``docchunks``)."""
        return self.store.meta("doc_policy") or docchunks.DEFAULT_POLICY

    def set_doc_policy(self, policy: str) -> str:
        """Keep a new fetch policy. Raises UsageError for a policy ``docchunks.check_policy`` refuses."""
        value = docchunks.check_policy(policy)
        with self.store.transaction():
            self.store.set_meta("doc_policy", value)
        return value

    def wanted_chunks(self) -> list[bytes]:
        """Chunk ids the policy wants here and this device lacks: current versions of wanted documents,
        and for a delta version the chunks of its chain's base (``docdelta.chain_wants``)."""
        out: list[bytes] = []
        for did, digest in self.wanted_versions():
            out += docdelta.chain_wants(self, did, digest)
        return list(dict.fromkeys(out))

    def wanted_versions(self) -> list[tuple[bytes, bytes]]:
        """(document id, version SHA-256) of the current versions the policy wants here and this device lacks."""
        policy = self.doc_policy()
        if policy == "none":
            return []
        me = self.store.meta("member")
        names = self.ledger.device_names()
        mine_tasks = {r[0] for r in self.store.execute(
            "SELECT id FROM entities WHERE kind = ? AND assignee = ?", (int(Kind.TASK), me))}
        out: list[tuple[bytes, bytes]] = []
        for (did,) in self.store.execute("SELECT id FROM entities WHERE kind = ?", (int(Kind.DOC),)).fetchall():
            st = self.ledger.load(Kind.DOC, did)
            if st is None or st.values().get("sha256") is None:
                continue
            v = st.values()
            if policy == "mine" and v.get("task") not in mine_tasks:
                versions = self.version_ops(did)
                if not versions or names.get(versions[0][1]) != me:
                    continue
            if self.missing_chunks(did, v["sha256"]) or self.is_pending(did, v["sha256"]):
                out.append((did, v["sha256"]))
        return out

    # -- versions whose manifest is not known here yet (PROTOCOL.md §18e, derived manifests) ----------
    #
    # A delta version may leave its chunk ids for its reader to work out from the rebuilt file
    # (``hbw_sync.derived``). A device that does not hold the base when the op arrives (policy
    # ``mine`` or ``none``, a late joiner, a base whose chunks come after) cannot: the version is
    # *pending* until the base is made local (``docdelta.resolve``). So is a version whose
    # manifest delta applies to a pending base's manifest. Pending is not refused: a refused
    # version is logged as a problem and never listed here.

    def _pending_table(self) -> None:
        self._by_base_table("doc_pending")

    def mark_pending(self, did: bytes, digest: bytes, base: bytes) -> None:
        """Record a version whose manifest waits for its base to be local."""
        self._record_by_base("doc_pending", did, digest, base)

    # Both kinds of waiting version (``doc_pending`` above, ``doc_waiting`` below) are rows of
    # (document, version, base), made on first use: stores from before either kind lack the table.

    def _by_base_table(self, table: str) -> None:
        assert table in ("doc_pending", "doc_waiting")
        self.store.execute(f"CREATE TABLE IF NOT EXISTS {table} (entity BLOB NOT NULL, sha256 BLOB NOT NULL,"
                           " base BLOB NOT NULL, PRIMARY KEY (entity, sha256))")

    def _record_by_base(self, table: str, did: bytes, digest: bytes, base: bytes) -> None:
        self._by_base_table(table)
        self.store.execute(f"INSERT OR IGNORE INTO {table} (entity, sha256, base) VALUES (?, ?, ?)",
                           (did, digest, base))

    def is_pending(self, did: bytes, digest: bytes | None) -> bool:
        """Whether a version's manifest is still to be worked out here (see above)."""
        if digest is None:
            return False
        self._pending_table()
        return self.store.execute("SELECT 1 FROM doc_pending WHERE entity = ? AND sha256 = ?",
                                  (did, digest)).fetchone() is not None

    def unmark_pending(self, did: bytes, digest: bytes) -> None:
        """The version's manifest is known now, or the version was refused."""
        self._pending_table()
        self.store.execute("DELETE FROM doc_pending WHERE entity = ? AND sha256 = ?", (did, digest))

    def pending_on(self, did: bytes, base: bytes) -> list[bytes]:
        """The pending versions of a document whose base is ``base``."""
        self._pending_table()
        return [r[0] for r in self.store.execute("SELECT sha256 FROM doc_pending WHERE entity = ? AND base = ?",
                                                 (did, base))]

    # -- inline versions: kept once by hash, rebuilt from deltas ------------------------------------

    def blob(self, digest: bytes) -> bytes | None:
        """A version's bytes kept whole here; None if not here."""
        return self.ledger.blob(digest)

    def store_blob(self, data: bytes) -> bytes:
        """Keep a version's bytes; the versions that waited for them as their base are rebuilt now."""
        digest, new = self.ledger.put_blob(data)
        if new:
            self._apply_waiting(digest)
        return digest

    # A delta version can arrive before its base: its author's sync sends small batches before
    # large ones (a base over 64 KiB goes up in pieces after them, so the relay hands the delta out
    # first). The version then waits here, by hashes only (its bytes stay sealed in the op log),
    # and is rebuilt as soon as its base is stored.

    def _waiting_table(self) -> None:
        self._by_base_table("doc_waiting")

    def _wait_for_base(self, did: bytes, digest: bytes, base: bytes) -> None:
        self._record_by_base("doc_waiting", did, digest, base)

    def _apply_waiting(self, base: bytes) -> None:
        """Rebuild the versions that waited for ``base`` (each may be the base another waits for)."""
        self._waiting_table()
        rows = self.store.execute("SELECT entity, sha256 FROM doc_waiting WHERE base = ?", (base,)).fetchall()
        for did, digest in rows:
            self.store.execute("DELETE FROM doc_waiting WHERE entity = ? AND sha256 = ?", (did, digest))
            op = docdelta.version_op(self, did, digest)
            if op is not None:
                self.materialize(op)

    def materialize(self, op: Op) -> None:
        """Keep the bytes of a document version an op carries (in full, or as a delta)."""
        c = op.content or {}
        digest = c.get(34)
        if op.kind is Kind.DOC and c.get(_MANIFEST):
            if self.doc_policy() != "none":  # a delta version: rebuilt now if its base is here (no bytes to fetch)
                docdelta.rebuild(self, op.entity, op)
            return
        if op.kind is Kind.DOC and c.get(_MANIFEST_DELTA) is not None:
            return  # a manifest not known yet (pending, made local later) or refused: nothing to keep now
        if op.kind is not Kind.DOC or digest is None or (33 not in c and 35 not in c):
            return
        if self.ledger.has_blob(digest):
            return
        if 33 in c:
            data = c[33]
            if hashlib.sha256(data).digest() != digest:
                raise IntegrityError(_("a document version does not match its recorded hash"), code="integrity.doc")
        else:
            base = self.blob(c.get(36) or b"")
            if base is None:
                # Not tampering (signatures hold): its base has not arrived yet (see _wait_for_base),
                # or never will (the next full version of the chain repairs the document then).
                # Other ops of the batch still apply.
                self._wait_for_base(op.entity, digest, c.get(36) or b"")
                return
            try:
                data = delta.apply_delta(base, c[35], expected_sha256=digest, max_size=MAX_INLINE_BYTES)
            except (IntegrityError, ProtocolError) as e:
                # Refuse the version, not the batch: a tampered delta and a receiver whose zlib
                # re-deflates differently look alike here, and the rest of the batch is sound.
                self.problem(f"document {op.entity.hex()[:6]}: a version does not rebuild to its recorded hash "
                             f"and was refused ({e.message}); it will be readable after the next full version",
                             code="problem.doc_refused", params={"doc": op.entity.hex()[:6], **notices.why_params(e)},
                             doc=op.entity)
                return
        self.store_blob(data)

    # -- a document's versions -------------------------------------------------------------------------

    def version_ops(self, did: bytes) -> list[tuple[bytes, bytes, Op]]:
        """(op id, author device, op) of every version of a document, oldest first."""
        rows = self.store.execute(
            "SELECT op_id, body, device FROM oplog WHERE kind = ? AND entity = ? ORDER BY hlc, op_id", (int(Kind.DOC), did)
        ).fetchall()
        out = []
        for oid, body, device in rows:
            op = self.ledger.op_from_log(oid, body)
            if 34 in (op.content or {}):
                out.append((oid, device, op))
        return out

    def versions_since_full(self, did: bytes) -> int:
        """Versions recorded since the chain last started (a whole version, or one with all its chunks)."""
        n = 0
        for _oid, _dev, op in reversed(self.version_ops(did)):
            c = op.content or {}
            if 33 in c or (_MANIFEST in c and 35 not in c):  # whole, or all chunks uploaded: a chain starts
                return n
            n += 1
        return n

    def problem(self, text: str, *, code: str | None = None, params: dict[str, Any] | None = None,
                doc: bytes | None = None) -> None:
        """Log a problem with a received version (``Ledger.problem``); a refused version of document ``doc``
        also leaves a notice for the person.

        Why: ``status`` shows the last sync-log row only, so a refused version was in practice silent: the
        person saw the document's version count grow and could not open the new one. One notice per
        document while it is unseen (a chain refused at once says it once).
        """
        self.ledger.problem(text, code=code, params=params)
        if code != "problem.doc_refused" or doc is None:
            return
        st = self.ledger.load(Kind.DOC, doc)
        said = {"doc": doc.hex()[:6], "name": str((st.values() if st is not None else {}).get("name", ""))}
        with self.store.transaction():
            if self.store.execute("SELECT 1 FROM notices WHERE code = 'notice.doc_refused' AND params = ? AND seen = 0",
                                  (notices.pack(said),)).fetchone() is None:
                notices.add_notice(self.store, f"document {said['doc']} ({said['name']}): a version that arrived could "
                                   "not be read on this device and was refused", code="notice.doc_refused",
                                   params=said, when_ms=now_ms())
