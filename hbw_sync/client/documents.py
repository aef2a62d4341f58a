"""Documents in the replica: the commands people run on them (add, update, list, get, confidential).

Every document version's bytes are kept once, sealed (``versions``); the `sha256` field points at
the current one. A new version travels as a delta against the version its author started from
(``hbw_sync.delta``), or in full every ``CHAIN_FULL_EVERY`` versions and whenever a delta would
not be smaller, so chains stay short and every rebuilt version is checked against its hash. Two
versions saved offline at the same time are both kept: the later is current, the other is listed
as a conflict copy, the same on every device.

A part of the replica, given what it uses in its constructor: the ``Ledger`` (sealed rows,
ids, names), ``Versions`` (the bytes of versions held here) and the ``ChangeLog`` (every
change it records goes through ``ChangeLog.change``, as a task's does).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import chunks, delta, fileio, merge
from ..errors import AccessError, IntegrityError, UsageError
from ..i18n import _, ngettext
from ..ops import MAX_REASON, NAMES, Kind, Op, split_op_id
from . import docdelta, views
from .changes import ChangeLog
from .ledger import Ledger
from .versions import MAX_INLINE_BYTES, Versions
from .versions import digest_of as _digest

# The largest document hbw-sync carries: 4 GiB (4,294,967,296 bytes). Why a limit at all: a
# version's manifest lists every chunk (at most ops.MAX_DOC_CHUNKS, at the smallest chunk 4 GiB)
# and travels in one batch. Told in the README and `doc add --help`, refused at `doc add` and
# `doc update` from the file's size, before anything is read, and never later.
MAX_DOC_BYTES = 4 * 1024**3
# Versions sent whole or as a delta inside a batch (files under CHUNKED_FROM, or any file while
# this device holds no team key yet) are held whole in memory: at most ``versions.MAX_INLINE_BYTES``.
#
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


class Documents:
    """The documents of the team as this device holds them, and the commands that change them."""

    def __init__(self, ledger: Ledger, versions: Versions, changes: ChangeLog):
        self.ledger = ledger
        self.versions = versions
        self.changes = changes
        self.store = ledger.store

    def _file_size(self, path: Path) -> int:
        """The file's size, refused at once (nothing read) over what hbw-sync carries."""
        with fileio.reading(path):
            size = path.stat().st_size
            if path.is_dir():
                raise IsADirectoryError
        limit = MAX_DOC_BYTES if self.versions.chunk_keys() is not None else MAX_INLINE_BYTES
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

    def _chunked_values(self, path: Path, size: int) -> dict[str, Any] | None:
        """Split, seal and keep the file's chunks (in the caller's transaction); the version's fields.

        None when the file travels inside the batch instead (small, or no team key yet).
        """
        keys = self.versions.chunk_keys()
        if keys is None or size < CHUNKED_FROM:
            return None
        with fileio.reading(path), open(path, "rb") as f:
            m = self.versions.local_chunks.split_file(keys, f, MAX_DOC_BYTES)
        return {"sha256": m.sha256, "size": m.size, "manifest": m.encode(), "chunks": b"".join(m.ids)}

    def add_doc(self, path: Path, task: str | None = None, name: str | None = None) -> views.DocView:
        """Add a file as a new document: as sealed chunks (1 MiB and more), or inside the batch.

        Raises:
            UsageError: no such file, unreadable, over the limit (``usage.doc_too_large``), unknown task.
        """
        path = Path(path)
        size = self._file_size(path)
        tid = self.ledger.resolve(Kind.TASK, task) if task else None
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
            self.changes.change([(Kind.DOC, did, values)])
        return self.doc(did.hex())

    def update_doc(self, prefix: str, path: Path) -> views.DocView:
        """Record the file at ``path`` as the document's next version (a delta when that is smaller).

        Raises:
            UsageError: no such document, no such file, unreadable, over the limit
                (``usage.doc_too_large``), or the same bytes as the current version. Nothing was changed.
        """
        did = self.ledger.resolve(Kind.DOC, prefix)
        path = Path(path)
        size = self._file_size(path)
        st = self.ledger.load(Kind.DOC, did)
        assert st is not None
        base_sha = st.values().get("sha256")
        with self.store.transaction():
            chunked = self._chunked_values(path, size)
            if chunked is not None:
                if chunked["sha256"] == base_sha:  # rolled back with the transaction: nothing kept
                    raise UsageError(_("this file is the same as the document's current version: nothing to record"))
                if self.versions.versions_since_full(did) < CHAIN_FULL_EVERY - 1:  # every 8th version uploads its chunks
                    docdelta.offer(self.versions, did, base_sha, chunked, st.values().get("name", ""))
                self.changes.change([(Kind.DOC, did, chunked)])
                return self.doc(did.hex())
        data = self._read_file(path)
        digest = hashlib.sha256(data).digest()
        if digest == base_sha:
            raise UsageError(_("this file is the same as the document's current version: nothing to record"))
        values: dict[str, Any] = {"sha256": digest, "size": len(data)}
        base = self.versions.blob(base_sha) if base_sha else None
        since_full = self.versions.versions_since_full(did)
        d = delta.make_delta(base, data, name=st.values().get("name", "")) \
            if base is not None and since_full < CHAIN_FULL_EVERY - 1 else None
        if d is not None:
            values.update(delta=d, base_sha256=base_sha)
        else:
            values["data"] = data
        self.changes.change([(Kind.DOC, did, values)])
        return self.doc(did.hex())

    def _conflict_copies(self, did: bytes) -> list[tuple[bytes, bytes, str]]:
        """(copy id, loser version op id, author) of each conflict copy of a document."""
        names = self.ledger.device_names()
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
            versions=len(self.versions.version_ops(st.entity)),
            task=v["task"].hex() if v.get("task") else None,
            updated=views.hlc_iso(st.head.ts if st.head else None),
            confidential=bool(v.get("confidential", False)),
            confidential_by=self._doc_who_when(st, _CONFIDENTIAL),
            exports=self._exports(st),
            local=self.versions.is_local(st.entity, v.get("sha256")),
        )

    def _doc_who_when(self, st: merge.EntityState, tag: int) -> str | None:
        if tag not in st.registers:
            return None
        ts, dev = split_op_id(st.registers[tag][1].op_id)
        return f"{self.ledger.device_names().get(dev, dev.hex()[:8])} at {views.hlc_iso(ts)}"

    def _exports(self, st: merge.EntityState) -> list[views.ExportView]:
        """Every recorded export of a document, oldest first (APPEND fields keyed by op id: device and time)."""
        names = self.ledger.device_names()
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
        st = self.ledger.load(Kind.DOC, self.ledger.resolve(Kind.DOC, prefix))
        assert st is not None
        return self._doc_view(st)

    def docs(self) -> list[views.DocView]:
        """Documents, each followed by its conflict copies (named so nobody mistakes them)."""
        out = []
        rows = self.store.execute("SELECT id FROM entities WHERE kind = ? ORDER BY id", (int(Kind.DOC),)).fetchall()
        for (d,) in rows:
            st = self.ledger.load(Kind.DOC, d)
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
                                         local=self.versions.is_local(d, _digest(op))))
        return out

    def _version_op(self, did: bytes, op_id: bytes) -> Op:
        row = self.store.execute("SELECT body FROM oplog WHERE op_id = ?", (op_id,)).fetchone()
        return self.ledger.op_from_log(op_id, row[0])

    def locate_version(self, prefix: str, version: int | None) -> tuple[views.DocView, bytes, bytes]:
        """(view, document id, version SHA-256) of a document's current version, version N (from 1), or a conflict copy."""
        p = prefix.strip().lower()
        copies = [v for v in self.docs() if v.conflict_of and len(p) >= 2 and v.id.startswith(p)]
        if copies:
            view = copies[0]
            return view, bytes.fromhex(view.conflict_of or ""), bytes.fromhex(view.sha256)
        did = self.ledger.resolve(Kind.DOC, prefix)
        st = self.ledger.load(Kind.DOC, did)
        assert st is not None
        view = self._doc_view(st)
        if version is None:
            digest = st.values().get("sha256")
            if digest is None:
                raise UsageError(_("this document has no content yet"))
        else:
            versions = self.versions.version_ops(did)
            if not 1 <= version <= len(versions):
                raise UsageError(ngettext("document has {n} version; no version {version}", "document has {n} versions; no version {version}",
                                          len(versions)).format(n=len(versions), version=version))
            digest = _digest(versions[version - 1][2])
        return view, did, digest

    def doc_missing(self, prefix: str, version: int | None = None) -> list[bytes]:
        """Chunk ids a version still needs from the relay before it can be read here (``sync.fetch_doc``)."""
        _view, did, digest = self.locate_version(prefix, version)
        if self.versions.is_pending(did, digest):
            docdelta.resolve(self.versions, did, digest)  # its base may be here by now
            if self.versions.is_pending(did, digest):
                return docdelta.chain_wants(self.versions, did, digest)
        return self.versions.missing_chunks(did, digest)

    def _manifest(self, did: bytes, digest: bytes) -> chunks.Manifest | None:
        """A version's manifest (None: an inline version); a derived one worked out now if its base is here.

        Raises UsageError ``usage.doc_not_local`` while it cannot be (``sync.fetch_doc`` makes it local).
        """
        if self.versions.is_pending(did, digest):
            docdelta.resolve(self.versions, did, digest)
            if self.versions.is_pending(did, digest):
                raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
        return self.versions.version_manifest(did, digest)

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
        m = self._manifest(did, digest)
        if m is not None:
            data = self.versions.local_chunks.read_all(self.versions.chunk_keys_for(m), m)
            if data is None:
                raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
            return view, data
        data = self.versions.blob(digest)
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
        m = self._manifest(did, digest)
        if m is not None:
            if self.versions.local_chunks.missing(m.ids):
                raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
            view = self._record_export(view, reason)
            return view, self.versions.local_chunks.write(self.versions.chunk_keys_for(m), m, Path(out))
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
        m = self._manifest(did, digest)
        if m is None:
            view, data = self.export_doc(prefix, version, reason)
            return view, len(data), iter((data,))
        if self.versions.local_chunks.missing(m.ids):
            # The way to fetch it depends on the front end: cli_hints / app hints, keyed by the code.
            raise UsageError(_("this document is not on this device yet"), code="usage.doc_not_local")
        keys = self.versions.chunk_keys_for(m)
        view = self._record_export(view, reason)
        return view, m.size, self.versions.local_chunks.iter_plain(keys, m)

    # -- confidential documents (issue 17 item 3; PROTOCOL.md §5a) --------------------------------------
    # The mark and every export are signed changes like any other, so every device converges on the
    # same mark and the same list of exports, and they appear in the audit evidence. This is a record,
    # not a lock: a person who can read a document can photograph the screen. The README says so.

    def doc_author(self, did: bytes) -> str | None:
        """The member whose device recorded the document's first version (None if not known here)."""
        versions = self.versions.version_ops(did)
        return self.ledger.device_names().get(versions[0][1]) if versions else None

    def mark_confidential(self, prefix: str, confidential: bool = True) -> views.DocView:
        """Mark a document confidential (or clear the mark) for the whole team, as a signed change.

        Only its author or a supervisor may: the mark decides who must give reasons, so a
        member cannot set or clear it on another's document.

        Raises:
            UsageError: no such document.
            AccessError (``access.not_author``): this device is neither the author's nor a supervisor's.
        """
        did = self.ledger.resolve(Kind.DOC, prefix)
        author = self.doc_author(did)
        if self.store.meta("role") != "supervisor" and author != self.store.meta("member"):
            raise AccessError(_("only the document's author ({author}) or a supervisor can mark it confidential "
                                "or clear the mark; nothing changed").format(author=author or _("unknown")),
                              code="access.not_author", hint=_("ask your supervisor"))
        self.changes.change([(Kind.DOC, did, {"confidential": bool(confidential)})])
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
        self.changes.change([(Kind.DOC, did, {"exported": True, "export_reason": why})])
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


_CONFIDENTIAL = NAMES[Kind.DOC]["confidential"].tag
_EXPORTED = NAMES[Kind.DOC]["exported"].tag
_EXPORT_REASON = NAMES[Kind.DOC]["export_reason"].tag
