"""Documents in the replica: versions kept once as sealed blobs, sent as deltas, conflict copies.

Every document version's bytes are kept once, sealed, in `blobs` by their SHA-256; the
`sha256` field points at the current one. A new version travels as a delta against the version
its author started from (``hbw_sync.delta``), or in full every ``CHAIN_FULL_EVERY`` versions and
whenever a delta would not be smaller, so chains stay short and every rebuilt version is checked
against its hash. Two versions saved offline at the same time are both kept: the later is
current, the other is listed as a conflict copy, the same on every device.

A mixin of ``Replica``: it uses the replica's store, sealer and change machinery.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import chunks, delta, fileio, merge
from ..errors import AccessError, IntegrityError, ProtocolError, UsageError
from ..i18n import _, ngettext
from ..ops import MAX_REASON, NAMES, Kind, Op, split_op_id
from . import docchunks, docdelta, notices, views
from .device import now_ms

# A mixin's ``self`` is the whole Replica, which inherits from the mixin: a cycle mypy cannot
# follow, so the base is Any to it (STYLE.md §3: composing the parts ends this).
_Base: Any = object


def _digest(version: Op) -> bytes:
    """A document version's SHA-256 (field 34): every version op carries its content (``_version_ops``)."""
    return bytes((version.content or {})[34])

# The largest document hbw-sync carries: 4 GiB (4,294,967,296 bytes). Why a limit at all: a
# version's manifest lists every chunk (at most ops.MAX_DOC_CHUNKS, at the smallest chunk 4 GiB)
# and travels in one batch. Told in the README and `doc add --help`, refused at `doc add` and
# `doc update` from the file's size, before anything is read, and never later.
MAX_DOC_BYTES = 4 * 1024**3
# Versions sent whole or as a delta inside a batch (files under CHUNKED_FROM, or any file while
# this device holds no team key yet) are held whole in memory: those stay under 32 MiB.
MAX_INLINE_BYTES = 32 * 1024 * 1024
# Files of at least 1 MiB travel as sealed chunks outside batches, fetched by policy (§18e);
# smaller ones stay in the batch, where a delta of an office file's edit costs 2-4 KB (one
# chunk would cost 16-256 KiB), and every device gets them at once.
CHUNKED_FROM = 1024 * 1024


def human_size(n: int) -> str:
    """Bytes as a person reads them: 512 bytes, 40 KB, 2.1 MB; the limits exactly (32 MiB, 4 GiB)."""
    if n == MAX_INLINE_BYTES:
        return "32 MiB"
    if n == MAX_DOC_BYTES:
        return "4 GiB"
    if n < 1000:
        return f"{n} bytes"
    for unit, scale in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    raise AssertionError(_("unreachable"))
CHAIN_FULL_EVERY = 8  # every 8th version of a document travels in full: chains stay short


class DocumentsMixin(_Base):

    def _file_size(self, path: Path) -> int:
        """The file's size, refused at once (nothing read) over what hbw-sync carries."""
        with fileio.reading(path):
            size = path.stat().st_size
            if path.is_dir():
                raise IsADirectoryError
        limit = MAX_DOC_BYTES if self._chunk_keys() is not None else MAX_INLINE_BYTES
        if size > limit:
            text = (_("{name} is {size}, larger than the {limit} hbw-sync can carry as a document; "
                      "nothing was added or changed") if limit == MAX_DOC_BYTES else
                    _("{name} is {size}, larger than the {limit} hbw-sync can carry as a document before this "
                      "device holds the team key; nothing was added or changed"))
            raise UsageError(
                text.format(name=path.name, size=human_size(size), limit=human_size(limit)),
                code="usage.doc_too_large",
                hint=_("share a smaller copy (for a scan: a lower resolution, or one file per form)")
                if limit == MAX_DOC_BYTES else _("sync once a supervisor's device has shared the team key, then add it"),
            )
        return size

    def _read_file(self, path: Path) -> bytes:
        self._file_size(path)
        with fileio.reading(path):
            data = path.read_bytes()
        if len(data) > MAX_INLINE_BYTES:
            raise UsageError(_("{name} grew past {limit} while it was read; nothing was added or changed").format(
                name=path.name, limit=human_size(MAX_INLINE_BYTES)), code="usage.doc_too_large", hint=_("add it again"))
        return data

    # -- chunked versions (PROTOCOL.md §18d-e) ---------------------------------------------------

    @property
    def local_chunks(self) -> docchunks.LocalChunks:
        lc = self.__dict__.get("_local_chunks")
        if lc is None:
            lc = self.__dict__["_local_chunks"] = docchunks.LocalChunks(self.store)
        return lc

    def _chunk_keys(self) -> chunks.ChunkKeys | None:
        key = self.current_key_or_none()
        return None if key is None else chunks.ChunkKeys.of(key)

    def _chunked_values(self, path: Path, size: int) -> dict[str, Any] | None:
        """Split, seal and keep the file's chunks (in the caller's transaction); the version's fields.

        None when the file travels inside the batch instead (small, or no team key yet).
        """
        keys = self._chunk_keys()
        if keys is None or size < CHUNKED_FROM:
            return None
        with fileio.reading(path), open(path, "rb") as f:
            m = self.local_chunks.split_file(keys, f, MAX_DOC_BYTES)
        return {"sha256": m.sha256, "size": m.size, "manifest": m.encode(), "chunks": b"".join(m.ids)}

    def version_manifest(self, did: bytes, digest: bytes) -> chunks.Manifest | None:
        """The manifest of a document's chunked version ``digest``; None if that version is not chunked."""
        for _oid, _dev, op in reversed(self._version_ops(did)):
            c = op.content or {}
            if c.get(34) == digest and c.get(_MANIFEST):
                return chunks.decode_manifest(c[_MANIFEST])
        return None

    def _chunk_keys_for(self, m: chunks.Manifest) -> chunks.ChunkKeys:
        key = self.team_keys().get(m.epoch)
        if key is None:
            raise IntegrityError(_("this device does not hold the team key of epoch {epoch} this document was "
                                   "sealed with").format(epoch=m.epoch), code="integrity.chain",
                                 hint=_("sync: a supervisor's device shares it"))
        return chunks.ChunkKeys.of(key)

    def missing_chunks(self, did: bytes, digest: bytes) -> list[bytes]:
        """Ids of the version's chunks not on this device (empty when it is whole here, or not chunked)."""
        m = self.version_manifest(did, digest)
        return [] if m is None else self.local_chunks.missing(m.ids)

    def _is_local(self, did: bytes, digest: bytes | None) -> bool:
        if digest is None:
            return True
        if self.store.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (digest,)).fetchone():
            return True
        m = self.version_manifest(did, digest)
        return m is not None and not self.local_chunks.missing(m.ids)

    def doc_policy(self) -> str:
        """Which documents this device downloads after a sync: mine (default), all, none (see ``docchunks``)."""
        return self.store.meta("doc_policy") or docchunks.DEFAULT_POLICY

    def set_doc_policy(self, policy: str) -> str:
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
        names = self._device_names()
        mine_tasks = {r[0] for r in self.store.execute(
            "SELECT id FROM entities WHERE kind = ? AND assignee = ?", (int(Kind.TASK), me))}
        out: list[tuple[bytes, bytes]] = []
        for (did,) in self.store.execute("SELECT id FROM entities WHERE kind = ?", (int(Kind.DOC),)).fetchall():
            st = self._load(Kind.DOC, did)
            if st is None or st.values().get("sha256") is None:
                continue
            v = st.values()
            if policy == "mine" and v.get("task") not in mine_tasks:
                versions = self._version_ops(did)
                if not versions or names.get(versions[0][1]) != me:
                    continue
            if self.missing_chunks(did, v["sha256"]):
                out.append((did, v["sha256"]))
        return out

    # Versions: every document version's bytes are kept once, sealed, in `blobs` by their
    # SHA-256; the `sha256` field points at the current one. A new version travels as a delta
    # against the version its author started from (hbw_sync.delta), or in full every
    # CHAIN_FULL_EVERY versions and whenever a delta would not be smaller, so a chain is short
    # and every rebuilt version is checked against its hash.

    def _store_blob(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        if not self.store.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (digest,)).fetchone():
            nonce, sealed = self.sealer.seal_parts(data, b"blob:" + digest)
            self.store.execute("INSERT INTO blobs (sha256, size, nonce, sealed) VALUES (?, ?, ?, ?)",
                               (digest, len(data), nonce, sealed))
            self._apply_waiting(digest)
        return digest

    # A delta version can arrive before its base: its author's sync sends small batches before
    # large ones (a base over 64 KiB goes up in pieces after them, so the relay hands the delta out
    # first). The version then waits here, by hashes only (its bytes stay sealed in the op log),
    # and is rebuilt as soon as its base is stored.

    def _waiting_table(self) -> None:
        self.store.execute("CREATE TABLE IF NOT EXISTS doc_waiting (entity BLOB NOT NULL, sha256 BLOB NOT NULL,"
                           " base BLOB NOT NULL, PRIMARY KEY (entity, sha256))")

    def _wait_for_base(self, did: bytes, digest: bytes, base: bytes) -> None:
        self._waiting_table()
        self.store.execute("INSERT OR IGNORE INTO doc_waiting (entity, sha256, base) VALUES (?, ?, ?)",
                           (did, digest, base))

    def _apply_waiting(self, base: bytes) -> None:
        """Rebuild the versions that waited for ``base`` (each may be the base another waits for)."""
        self._waiting_table()
        rows = self.store.execute("SELECT entity, sha256 FROM doc_waiting WHERE base = ?", (base,)).fetchall()
        for did, digest in rows:
            self.store.execute("DELETE FROM doc_waiting WHERE entity = ? AND sha256 = ?", (did, digest))
            op = docdelta.version_op(self, did, digest)
            if op is not None:
                self._materialize_version(op)

    def _blob(self, digest: bytes) -> bytes | None:
        row = self.store.execute("SELECT nonce, sealed FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        return None if row is None else self.sealer.open_parts(row[0], row[1], b"blob:" + digest)

    def _materialize_version(self, op: Op) -> None:
        """Keep the bytes of a document version an op carries (in full, or as a delta)."""
        c = op.content or {}
        digest = c.get(34)
        if op.kind is Kind.DOC and c.get(_MANIFEST):
            if self.doc_policy() != "none":  # a delta version: rebuilt now if its base is here (no bytes to fetch)
                docdelta.rebuild(self, op.entity, op)
            return
        if op.kind is not Kind.DOC or digest is None or (33 not in c and 35 not in c):
            return
        if self.store.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (digest,)).fetchone():
            return
        if 33 in c:
            data = c[33]
            if hashlib.sha256(data).digest() != digest:
                raise IntegrityError(_("a document version does not match its recorded hash"), code="integrity.doc")
        else:
            base = self._blob(c.get(36) or b"")
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
                self._problem(f"document {op.entity.hex()[:6]}: a version does not rebuild to its recorded hash "
                              f"and was refused ({e.message}); it will be readable after the next full version",
                              code="problem.doc_refused", params={"doc": op.entity.hex()[:6], **notices.why_params(e)})
                return
        self._store_blob(data)

    def add_doc(self, path: Path, task: str | None = None, name: str | None = None) -> views.DocView:
        """Add a file as a new document: as sealed chunks (1 MiB and more), or inside the batch.

        Raises:
            UsageError: no such file, unreadable, over the limit (``usage.doc_too_large``), unknown task.
        """
        path = Path(path)
        size = self._file_size(path)
        tid = self.resolve(Kind.TASK, task) if task else None
        did = os.urandom(8)
        values: dict[str, Any] = {"name": name or path.name}
        if tid is not None:
            values["task"] = tid
        with self.store.transaction():  # the chunks and the op that names them: both or neither
            chunked = self._chunked_values(path, size)
            if chunked is None:
                data = self._read_file(path)
                values.update(data=data, sha256=hashlib.sha256(data).digest(), size=len(data))
            else:
                values.update(chunked)
            self.change([(Kind.DOC, did, values)])
        return self.doc(did.hex())

    def update_doc(self, prefix: str, path: Path) -> views.DocView:
        """Record the file at ``path`` as the document's next version (a delta when that is smaller).

        Raises:
            UsageError: no such document, no such file, unreadable, over the limit
                (``usage.doc_too_large``), or the same bytes as the current version. Nothing was changed.
        """
        did = self.resolve(Kind.DOC, prefix)
        path = Path(path)
        size = self._file_size(path)
        st = self._load(Kind.DOC, did)
        assert st is not None
        base_sha = st.values().get("sha256")
        with self.store.transaction():
            chunked = self._chunked_values(path, size)
            if chunked is not None:
                if chunked["sha256"] == base_sha:  # rolled back with the transaction: nothing kept
                    raise UsageError(_("this file is the same as the document's current version: nothing to record"))
                if self._versions_since_full(did) < CHAIN_FULL_EVERY - 1:  # every 8th version uploads its chunks
                    docdelta.offer(self, did, base_sha, chunked, st.values().get("name", ""))
                self.change([(Kind.DOC, did, chunked)])
                return self.doc(did.hex())
        data = self._read_file(path)
        digest = hashlib.sha256(data).digest()
        if digest == base_sha:
            raise UsageError(_("this file is the same as the document's current version: nothing to record"))
        values: dict[str, Any] = {"sha256": digest, "size": len(data)}
        base = self._blob(base_sha) if base_sha else None
        since_full = self._versions_since_full(did)
        d = delta.make_delta(base, data, name=st.values().get("name", "")) \
            if base is not None and since_full < CHAIN_FULL_EVERY - 1 else None
        if d is not None:
            values.update(delta=d, base_sha256=base_sha)
        else:
            values["data"] = data
        self.change([(Kind.DOC, did, values)])
        return self.doc(did.hex())

    def _version_ops(self, did: bytes) -> list[tuple[bytes, bytes, Op]]:
        """(op id, author device, op) of every version of a document, oldest first."""
        rows = self.store.execute(
            "SELECT op_id, body, device FROM oplog WHERE kind = ? AND entity = ? ORDER BY hlc, op_id", (int(Kind.DOC), did)
        ).fetchall()
        out = []
        for oid, body, device in rows:
            op = self._op_from_log(oid, body)
            if 34 in (op.content or {}):
                out.append((oid, device, op))
        return out

    def _versions_since_full(self, did: bytes) -> int:
        n = 0
        for _oid, _dev, op in reversed(self._version_ops(did)):
            c = op.content or {}
            if 33 in c or (_MANIFEST in c and 35 not in c):  # whole, or all chunks uploaded: a chain starts
                return n
            n += 1
        return n

    def _conflict_copies(self, did: bytes) -> list[tuple[bytes, bytes, str]]:
        """(copy id, loser version op id, author) of each conflict copy of a document."""
        names = self._device_names()
        out = []
        for (loser,) in self.store.execute(
            "SELECT DISTINCT loser FROM conflicts WHERE kind = ? AND entity = ? AND field = 'sha256'", (int(Kind.DOC), did)
        ):
            out.append((hashlib.sha256(b"hbw-sync conflict copy\x00" + loser).digest()[:8], loser,
                        names.get(loser[8:], loser[8:].hex()[:8])))
        return out

    def _doc_view(self, st: merge.EntityState) -> views.DocView:
        v = st.values()
        return views.DocView(
            id=st.entity.hex(),
            name=v.get("name", ""),
            size=v.get("size", 0),
            sha256=(v.get("sha256") or b"").hex(),
            versions=len(self._version_ops(st.entity)),
            task=v["task"].hex() if v.get("task") else None,
            updated=views.hlc_iso(st.head.ts if st.head else None),
            confidential=bool(v.get("confidential", False)),
            confidential_by=self._doc_who_when(st, _CONFIDENTIAL),
            exports=self._exports(st),
            local=self._is_local(st.entity, v.get("sha256")),
        )

    def _doc_who_when(self, st: merge.EntityState, tag: int) -> str | None:
        if tag not in st.registers:
            return None
        ts, dev = split_op_id(st.registers[tag][1].op_id)
        return f"{self._device_names().get(dev, dev.hex()[:8])} at {views.hlc_iso(ts)}"

    def _exports(self, st: merge.EntityState) -> list[views.ExportView]:
        """Every recorded export of a document, oldest first (APPEND fields keyed by op id: device and time)."""
        names = self._device_names()
        reasons = st.appends.get(_EXPORT_REASON, {})
        out = []
        for op_id in sorted(st.appends.get(_EXPORTED, {})):
            ts, dev = split_op_id(op_id)
            out.append(views.ExportView(names.get(dev, dev.hex()[:8]), dev.hex(), views.hlc_iso(ts),
                                        reasons.get(op_id, "")))
        return out

    def doc(self, prefix: str) -> views.DocView:
        """One document as listed.

        Raises:
            UsageError: no such document, or an ambiguous prefix.
        """
        st = self._load(Kind.DOC, self.resolve(Kind.DOC, prefix))
        assert st is not None
        return self._doc_view(st)

    def docs(self) -> list[views.DocView]:
        """Documents, each followed by its conflict copies (named so nobody mistakes them)."""
        out = []
        rows = self.store.execute("SELECT id FROM entities WHERE kind = ? ORDER BY id", (int(Kind.DOC),)).fetchall()
        for (d,) in rows:
            st = self._load(Kind.DOC, d)
            if st is None:
                continue
            view = self._doc_view(st)
            out.append(view)
            for copy_id, loser, who in self._conflict_copies(d):
                op = self._version_op(d, loser)
                stem, dot, ext = view.name.rpartition(".")
                date = (views.hlc_iso(op.hlc) or "")[:10]
                name = f"{stem or ext} (conflict copy by {who} {date}){dot + ext if stem else ''}"
                out.append(views.DocView(copy_id.hex(), name, op.fields.get(2, 0), _digest(op).hex(), 1,
                                         view.task, views.hlc_iso(op.hlc), conflict_of=view.id,
                                         confidential=view.confidential, confidential_by=view.confidential_by,
                                         local=self._is_local(d, _digest(op))))
        return out

    def _version_op(self, did: bytes, op_id: bytes) -> Op:
        row = self.store.execute("SELECT body FROM oplog WHERE op_id = ?", (op_id,)).fetchone()
        return self._op_from_log(op_id, row[0])

    def locate_version(self, prefix: str, version: int | None) -> tuple[views.DocView, bytes, bytes]:
        """(view, document id, version SHA-256) of a document's current version, version N (from 1), or a conflict copy."""
        p = prefix.strip().lower()
        copies = [v for v in self.docs() if v.conflict_of and len(p) >= 2 and v.id.startswith(p)]
        if copies:
            view = copies[0]
            return view, bytes.fromhex(view.conflict_of or ""), bytes.fromhex(view.sha256)
        did = self.resolve(Kind.DOC, prefix)
        st = self._load(Kind.DOC, did)
        assert st is not None
        view = self._doc_view(st)
        if version is None:
            digest = st.values().get("sha256")
            if digest is None:
                raise UsageError(_("this document has no content yet"))
        else:
            versions = self._version_ops(did)
            if not 1 <= version <= len(versions):
                raise UsageError(ngettext("document has {n} version; no version {version}", "document has {n} versions; no version {version}",
                                          len(versions)).format(n=len(versions), version=version))
            digest = _digest(versions[version - 1][2])
        return view, did, digest

    def doc_missing(self, prefix: str, version: int | None = None) -> list[bytes]:
        """Chunk ids a version still needs from the relay before it can be read here (``sync.fetch_doc``)."""
        _view, did, digest = self.locate_version(prefix, version)
        return self.missing_chunks(did, digest)

    def _find_version(self, prefix: str, version: int | None) -> tuple[views.DocView, bytes]:
        """(view, SHA-256) of a document's current version, version N (from 1), or a conflict copy."""
        view, _did, digest = self.locate_version(prefix, version)
        return view, digest

    def doc_info(self, prefix: str, version: int | None = None) -> views.DocView:
        """What ``doc_bytes`` would return, without reading the bytes (a front end names the file first)."""
        return self._find_version(prefix, version)[0]

    def doc_bytes(self, prefix: str, version: int | None = None) -> tuple[views.DocView, bytes]:
        """A document's current bytes (or version N, from 1; or a conflict copy's), checked against their hash.

        For reading inside hbw-sync, whole in memory (small documents, tests); writing a document
        outside the store goes through ``save_doc`` (streams) or ``export_doc``.
        """
        view, did, digest = self.locate_version(prefix, version)
        m = self.version_manifest(did, digest)
        if m is not None:
            data = self.local_chunks.read_all(self._chunk_keys_for(m), m)
            if data is None:
                raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
            return view, data
        data = self._blob(digest)
        if data is None:
            raise IntegrityError(_("this version's bytes are missing (its delta chain is broken); a later full "
                  "version will repair it"), code="integrity.chain")
        if hashlib.sha256(data).digest() != digest:
            raise IntegrityError(_("stored document bytes do not match their hash"), code="integrity.doc")
        return view, data

    def save_doc(self, prefix: str, out: Path, version: int | None = None,
                 reason: str | None = None) -> tuple[views.DocView, int]:
        """Write a version to ``out`` (through a temporary file, renamed once whole and checked); bytes written.

        ``doc get``'s call. A chunked version is written one chunk at a time: memory stays flat
        whatever its size. A confidential document needs ``reason`` and the export is recorded
        first, as ``export_doc`` does.

        Raises:
            UsageError ``usage.doc_not_local``: parts are not on this device (``sync.fetch_doc`` gets them).
            UsageError ``usage.reason_required`` / ``usage.reason_too_long``: as ``export_doc``.
            IntegrityError: stored bytes do not match the recorded hash.
        """
        view, did, digest = self.locate_version(prefix, version)
        m = self.version_manifest(did, digest)
        if m is not None:
            if self.local_chunks.missing(m.ids):
                raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
            view = self._record_export(view, reason)
            return view, self.local_chunks.write(self._chunk_keys_for(m), m, Path(out))
        view, data = self.export_doc(prefix, version, reason)
        tmp = Path(out).with_name(Path(out).name + ".hbw-part")
        tmp.write_bytes(data)
        os.replace(tmp, out)
        return view, len(data)

    def export_stream(self, prefix: str, version: int | None = None,
                      reason: str | None = None) -> tuple[views.DocView, int, Iterator[bytes]]:
        """(view, size, plain bytes piece by piece) of a version to write outside the store: ``export_doc``
        for a front end that streams (the app's download). A chunked version comes one chunk at a time
        (flat memory); an inline one (under 1 MiB, or older) in one piece.

        Raises:
            UsageError ``usage.doc_not_local``: parts are not on this device (``sync.fetch_doc`` gets them).
            UsageError ``usage.reason_required`` / ``usage.reason_too_long``: as ``export_doc``.
            IntegrityError: stored bytes do not match the recorded hash (for a chunked version: at the end).
        """
        view, did, digest = self.locate_version(prefix, version)
        m = self.version_manifest(did, digest)
        if m is None:
            view, data = self.export_doc(prefix, version, reason)
            return view, len(data), iter((data,))
        if self.local_chunks.missing(m.ids):
            # The way to fetch it depends on the front end: cli_hints / app hints, keyed by the code.
            raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
        keys = self._chunk_keys_for(m)
        view = self._record_export(view, reason)
        return view, m.size, self.local_chunks.iter_plain(keys, m)

    # -- confidential documents (issue 17 item 3; PROTOCOL.md §5a) --------------------------------------
    # The mark and every export are signed changes like any other, so every device converges on the
    # same mark and the same list of exports, and they appear in the audit evidence. This is a record,
    # not a lock: a person who can read a document can photograph the screen. The README says so.

    def doc_author(self, did: bytes) -> str | None:
        """The member whose device recorded the document's first version (None if not known here)."""
        versions = self._version_ops(did)
        return self._device_names().get(versions[0][1]) if versions else None

    def mark_confidential(self, prefix: str, confidential: bool = True) -> views.DocView:
        """Mark a document confidential (or clear the mark) for the whole team, as a signed change.

        Only its author or a supervisor may: the mark decides who must give reasons, so a
        member cannot set or clear it on another's document.

        Raises:
            UsageError: no such document.
            AccessError (``access.not_author``): this device is neither the author's nor a supervisor's.
        """
        did = self.resolve(Kind.DOC, prefix)
        author = self.doc_author(did)
        if self.store.meta("role") != "supervisor" and author != self.store.meta("member"):
            raise AccessError(_("only the document's author ({author}) or a supervisor can mark it confidential "
                                "or clear the mark; nothing changed").format(author=author or _("unknown")),
                              code="access.not_author", hint=_("ask your supervisor"))
        self.change([(Kind.DOC, did, {"confidential": bool(confidential)})])
        return self.doc(did.hex())

    def export_doc(self, prefix: str, version: int | None = None,
                   reason: str | None = None) -> tuple[views.DocView, bytes]:
        """A document's bytes to write outside the store (``doc get``, the app's download).

        A confidential document (or a conflict copy of one) needs a reason: the export is then
        recorded first, as a signed change (who, device, time, reason) that every device, the
        supervisor's ``status`` and the audit evidence show. Without a reason nothing is recorded
        and nothing should be written. Other documents are returned as ``doc_bytes`` does.

        Raises:
            UsageError (``usage.reason_required``): the document is confidential and no reason was given.
            UsageError (``usage.reason_too_long``): the reason is over 1,000 characters.
            IntegrityError: as ``doc_bytes``.
        """
        view, data = self.doc_bytes(prefix, version)
        return self._record_export(view, reason), data

    def _record_export(self, view: views.DocView, reason: str | None) -> views.DocView:
        """Record the export of a confidential document (refused without a reason); others pass as they are."""
        if not view.confidential:
            return view
        why = self.check_export_reason(view, reason)
        did = bytes.fromhex(view.conflict_of or view.id)
        self.change([(Kind.DOC, did, {"exported": True, "export_reason": why})])
        fresh = self.doc(did.hex())
        return view if view.conflict_of else fresh

    def check_export_reason(self, view: views.DocView, reason: str | None) -> str:
        """The reason, stripped, if it lets this document be written out (a front end asks before fetching)."""
        why = (reason or "").strip()
        if not view.confidential:
            return why
        if not why:
            raise UsageError(_("document {doc} ({name}) is confidential: writing it outside hbw-sync needs a reason, "
                               "which is recorded for your supervisor; nothing was written").format(
                doc=view.short, name=view.name), code="usage.reason_required")
        if len(why) > MAX_REASON:
            raise UsageError(_("the reason is {n} characters; at most {max} are kept; nothing was written").format(
                n=len(why), max=MAX_REASON), code="usage.reason_too_long")
        return why

    def _export_notice(self, op: Op, device: bytes) -> None:
        """Tell a supervisor, in ``status``, that someone else exported a confidential document."""
        if _EXPORTED not in op.fields or self.store.meta("role") != "supervisor" or device == self.author.device_id:
            return
        st = self._load(Kind.DOC, op.entity)
        name = st.values().get("name", "") if st else ""
        who = self._device_names().get(device, device.hex()[:8])
        reason = (op.content or {}).get(_EXPORT_REASON, "")
        params = {"who": who, "doc": op.entity.hex()[:6], "name": name, "device": device.hex()[:8],
                  "at": views.hlc_iso(op.hlc), "reason": reason}
        text = ("{who} exported confidential document {doc} ({name}) from device {device} at {at}; "
                "reason: {reason}").format(**params)
        notices.add_notice(self.store, text, code="notice.exported", params=params, when_ms=now_ms())


_CONFIDENTIAL = NAMES[Kind.DOC]["confidential"].tag
_MANIFEST = NAMES[Kind.DOC]["manifest"].tag
_EXPORTED = NAMES[Kind.DOC]["exported"].tag
_EXPORT_REASON = NAMES[Kind.DOC]["export_reason"].tag
