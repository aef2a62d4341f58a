"""Delta versions of chunked documents on a device: make them, rebuild them, fetch along a chain.

A chunked version of at most 32 MiB whose delta against the version its author started from
is smaller than the chunks it would upload travels as that delta (PROTOCOL.md §18c, §18e;
core: ``hbw_sync.delta.chunked``). Its author keeps every chunk, as for any version, but
uploads none of those the delta rebuilds (they are marked as not to be sent), and the op's
routing names no chunks. A reader rebuilds the version:

* at once when the op is applied, if it holds the base (the usual case: the team's devices
  that had the document); nothing is downloaded;
* otherwise when its policy or ``doc get`` wants it: it first makes the base local (fetching
  its chunks, or rebuilding it along its own chain; at most ``CHAIN_FULL_EVERY`` versions,
  since every 8th version of a chain uploads all its chunks), then rebuilds.

Memory: office files (zip containers) up to ``DELTA_MAX`` are read by ranges from the chunk
store (``delta.Source``), a chunk at a time, both when their zip recipe is made and when it is
applied (the rebuilt file is cut into chunks as it comes); other whole-file deltas hold both
versions, so only files up to ``DELTA_MAX`` take that path; larger ones keep whole-chunk dedup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import hashlib
import hmac

from .. import chunks, derived, features
from ..delta import Source, apply_delta, apply_delta_to, make_delta
from ..delta.wire import METHOD_RECIPE
from ..delta.writer import RecipeWriter
from ..delta.chunked import (DELTA_MAX, NotStreamable, aligned_recipe, check, chunked_delta, rebuild_chunks,
                              rebuild_needed, streams_in_place)
from ..errors import HbwError, IntegrityError, ProtocolError, UsageError
from ..i18n import _
from ..ops import MAX_MANIFEST, NAMES, Kind, Op
from ..clock import now_ms
from . import docsync, notices

if TYPE_CHECKING:
    from .versions import Versions
    from .sync import _Session

_DATA, _SHA, _DELTA, _BASE = 33, 34, 35, 36
_MANIFEST = NAMES[Kind.DOC]["manifest"].tag
_MANIFEST_DELTA = NAMES[Kind.DOC]["manifest_delta"].tag
#: How far back a reader follows bases to rebuild a version (a chain is at most 8 long, §18c).
MAX_CHAIN = 16


def is_delta_version(op: Op) -> bool:
    c = op.content or {}
    return bool(c.get(_MANIFEST)) and c.get(_DELTA) is not None and c.get(_BASE) is not None


def version_op(rep: "Versions", did: bytes, digest: bytes) -> Op | None:
    """The latest op that recorded version ``digest`` of a document."""
    for _oid, _dev, op in reversed(rep.version_ops(did)):
        if (op.content or {}).get(_SHA) == digest:
            return op
    return None


def version_bytes(rep: "Versions", did: bytes, digest: bytes) -> bytes | bytearray | None:
    """A version whole in memory if this device holds it and it is at most ``DELTA_MAX``; else None."""
    data = rep.blob(digest)
    if data is not None:
        return data
    m = rep.version_manifest(did, digest)
    if m is None or m.size > DELTA_MAX:
        return None
    try:
        return rep.local_chunks.read_into(rep.chunk_keys_for(m), m)
    except HbwError:
        return None


def offer(rep: "Versions", did: bytes, base_sha: bytes | None, values: dict[str, Any], name: str) -> bool:
    """Turn a chunked version's fields into a delta version when that pays (inside the caller's transaction).

    ``values`` are ``_chunked_values``' (its chunks already kept here, unsent). True if it became
    a delta version: then ``values`` carries ``delta`` and ``base_sha256`` and no ``chunks``, and the
    chunks only the delta rebuilds are marked as not to be uploaded.

    Which delta: for two zip containers (office files) of at most ``DELTA_MAX``, ``make_delta``'s
    recipes, both versions read by ranges from the chunk store (never whole: ``doc update`` of a
    32.8 MB report held both, 142 MB); otherwise a chunk-aligned recipe
    (``delta.chunked.aligned_recipe``), any size, a run of changed chunks at a time; as a last
    resort, in memory, a whole-file patch.
    """
    if base_sha is None:
        return False
    m = chunks.decode_manifest(values["manifest"])
    local = rep.local_chunks
    base_m = rep.version_manifest(did, base_sha)
    base_ids = set(base_m.ids) if base_m is not None else set()
    spared = [cid for cid in dict.fromkeys(m.ids) if cid not in base_ids and local.is_unsent(cid)]
    worth = sum(local.sealed_size(cid) for cid in spared)
    keys = rep.chunk_keys()
    assert keys is not None and keys.epoch == m.epoch
    if worth <= 0:
        return False
    new_read = local.range_reader(keys, m)
    d: bytes | None = None
    base_read = _reader(rep, did, base_sha, base_m)
    if base_read is None:
        return False
    base_size = base_m.size if base_m is not None else len(base_read(0, DELTA_MAX + 1))
    both_zip = _zipish(base_read, base_size) and _zipish(new_read, m.size)
    if not (both_zip and max(base_size, m.size) <= DELTA_MAX):
        try:
            d = aligned_recipe(base_m or _one_piece(base_sha, base_size), m, base_read, new_read)
            if d is not None:
                for _cid, _piece in rebuild_needed(d, base_size, base_read, m, keys, set(spared)):
                    pass  # each piece checked against its id: the recipe rebuilds this version
        except HbwError:
            d = None
    if both_zip and max(base_size, m.size) <= DELTA_MAX:
        # Both read as kept, by ranges (the file itself may have changed since it was split).
        try:
            d = make_delta(Source(base_read, base_size), Source(new_read, m.size), name=name)
        except HbwError:
            d = None
        if d is not None and len(d) >= worth:
            d = None  # (as chunked_delta)
    elif d is None and max(base_size, m.size) <= DELTA_MAX:
        base = version_bytes(rep, did, base_sha)
        new = local.read_into(keys, m)  # as kept, not the file again: it may have changed since it was read
        if base is None or new is None:
            return False
        in_place = streams_in_place(base, new)
        d = chunked_delta(base, new, name=name, worth=worth)
        del new  # checked without it: the base and the rebuilt file are all the check holds
        if d is not None and in_place and not check(base, d, expected_sha256=m.sha256, size=m.size):
            d = None  # (make_delta checked its own payloads)
    if d is None or 2 * len(d) > worth:
        return False  # a delta near the chunks' size buys little and loses what chunks give (dedup, resume)
    values.update(delta=d, base_sha256=base_sha)
    values.pop("chunks", None)  # the relay gets none of them for this version: nothing new to reference
    local.mark_sent(spared)
    base_raw = _manifest_bytes(rep, did, base_sha)
    if base_raw is not None:
        md = manifest_delta(base_raw, values["manifest"])
        if (max(base_size, m.size) <= DELTA_MAX and (md is None or len(md) > derived.FORM_LEN)
                and rep.ledger.everyone_reads(features.READS_DERIVED_MANIFEST)):
            md = derived.encode(values["manifest"], m.epoch)  # the readers cut the ids themselves
        if md is not None:
            values["manifest_delta"] = md
            del values["manifest"]
    return True


def _one_piece(digest: bytes, size: int) -> chunks.Manifest:
    """An inline base seen as one piece (its id never matches a chunk: every chunk is new)."""
    return chunks.Manifest(1, size, digest, (b"\x00" * 16,) if size else (), (size,) if size else ())


def _zipish(read: Callable[[int, int], bytes], size: int) -> bool:
    """Starts like a zip and has an end-of-central-directory record near its end."""
    return read(0, 4) == b"PK\x03\x04" and b"PK\x05\x06" in read(max(0, size - 65558), 65558)


def _reader(rep: "Versions", did: bytes, digest: bytes,
            m: chunks.Manifest | None) -> Callable[[int, int], bytes] | None:
    """``read(off, n)`` over a version held here (chunked: a chunk at a time; inline: its blob); None if not here."""
    if m is not None:
        if rep.local_chunks.missing(m.ids):
            return None
        try:
            return rep.local_chunks.range_reader(rep.chunk_keys_for(m), m)
        except HbwError:
            return None
    blob = rep.blob(digest)
    if blob is None:
        return None
    return lambda off, n: blob[off:off + n]


#: Manifests up to this size get ``make_delta``'s best; larger ones (files of ~200 MB and more) a
#: block-matching recipe, since a level-19 patch frame over a 700 KB manifest costs ~35 MB of memory.
MANIFEST_SMALL = 64 * 1024
_BLOCK = 32


def manifest_delta(base_manifest: bytes, manifest: bytes) -> bytes | None:
    """SHA-256 of ``manifest`` + a delta rebuilding it from the base version's manifest, if smaller."""
    if len(manifest) <= MANIFEST_SMALL and len(base_manifest) <= MANIFEST_SMALL:
        d = make_delta(base_manifest, manifest)
    else:
        d = block_recipe(base_manifest, manifest)
        try:
            apply_delta(base_manifest, d, expected_sha256=hashlib.sha256(manifest).digest(), max_size=len(manifest))
        except HbwError:
            d = None
    if d is None or 32 + len(d) >= len(manifest):
        return None
    return hashlib.sha256(manifest).digest() + d


def block_recipe(base: bytes, new: bytes) -> bytes:
    """A §18c recipe of COPY ops for the runs of ``new`` found in ``base`` (by 32-byte blocks) and
    literals for the rest: what two manifests a few chunk ids apart need, in memory proportional
    to the manifest (an index of its blocks), not to a compressor's tables."""
    index: dict[bytes, int] = {}
    for at in range(0, len(base) - _BLOCK + 1, _BLOCK):
        index.setdefault(base[at:at + _BLOCK], at)
    w = RecipeWriter()
    i = lit_start = 0
    while i + _BLOCK <= len(new):
        j = index.get(new[i:i + _BLOCK])
        if j is None:
            i += 1
            continue
        while i > lit_start and j > 0 and new[i - 1] == base[j - 1]:  # the match may start earlier
            i, j = i - 1, j - 1
        k = _BLOCK
        while i + k < len(new) and j + k < len(base):
            step = min(4096, len(new) - i - k, len(base) - j - k)
            if new[i + k:i + k + step] == base[j + k:j + k + step]:
                k += step
            elif new[i + k] == base[j + k]:
                k += 1
            else:
                break
        w.lit(new[lit_start:i])
        w.copy(j, k)
        i = lit_start = i + k
    w.lit(new[lit_start:])
    return w.encode(base, (0, 0))


def _manifest_bytes(rep: "Versions", did: bytes, digest: bytes) -> bytes | None:
    op = version_op(rep, did, digest)
    raw = (op.content or {}).get(_MANIFEST) if op is not None else None
    return raw if isinstance(raw, bytes) else None


def expand(rep: "Versions", did: bytes, content: dict[Any, Any]) -> dict[Any, Any]:
    """A received version's content with its manifest rebuilt from ``manifest_delta`` (kept beside it).

    The manifest must come out of the delta with the SHA-256 the field names, decode, and describe
    the version the op names (its field 4 equal to ``sha256``); otherwise the version is refused
    (logged, no manifest: it cannot be read) and the rest of the batch applies. A derived manifest
    (``hbw_sync.derived``) is worked out from the rebuilt file when the base is held here, its
    chunks kept on the way; otherwise, and when the base's own manifest is not known yet, the
    version is *pending* (``Versions.mark_pending``) and made local later (``resolve``).
    """
    md = content.get(_MANIFEST_DELTA)
    if md is None or _MANIFEST in content:
        return content
    try:
        raw = _manifest_of(rep, did, content)
    except HbwError as e:
        rep.problem(f"document {did.hex()[:6]}: a version's manifest does not rebuild from its delta and was "
                     f"refused ({e.message}); it will be readable after the next full version",
                     code="problem.doc_refused", params={"doc": did.hex()[:6], **notices.why_params(e)}, doc=did)
        return content
    if raw is None:
        rep.mark_pending(did, content[_SHA], content[_BASE])
        return content
    return {**content, _MANIFEST: raw}


def _manifest_of(rep: "Versions", did: bytes, content: Mapping[Any, Any]) -> bytes | None:
    """The manifest ``manifest_delta`` stands for; None if it cannot be had yet (its base is not here).

    Raises ProtocolError or IntegrityError for a field that is malformed or does not rebuild: the
    version is refused then.
    """
    md = content[_MANIFEST_DELTA]
    sha, base = content.get(_SHA), content.get(_BASE)
    if base is None or content.get(_DELTA) is None or not isinstance(md, bytes) or len(md) < 33:
        raise ProtocolError("a manifest delta outside a delta version", code="protocol.manifest")
    _check_no_loop(rep, did, sha, base)
    if derived.is_derived(md):
        return _derive(rep, did, derived.parse(md), content)
    base_raw = _manifest_bytes(rep, did, base)
    if base_raw is None:
        if rep.is_pending(did, base):
            return None  # its base's manifest is itself still to be worked out
        raise IntegrityError("the base version of a manifest delta is not a chunked version held here",
                             code="integrity.chain")
    raw = apply_delta(base_raw, md[32:], expected_sha256=md[:32], max_size=MAX_MANIFEST)
    if chunks.decode_manifest(raw).sha256 != sha:
        raise IntegrityError("a manifest rebuilt from its delta names another file", code="integrity.doc")
    return raw


def _check_no_loop(rep: "Versions", did: bytes, sha: Any, base: bytes) -> None:
    """Refuse a version whose chain of pending bases leads back to itself (a version named as its own
    base, or v2 on v3 on v2): its manifest could never be worked out, and it would wait for ever.
    Raises IntegrityError ``integrity.chain``."""
    at: Any = base
    for _step in range(MAX_CHAIN):
        if at == sha:
            raise IntegrityError("a delta chain that loops back on itself", code="integrity.chain")
        if not rep.is_pending(did, at):
            return
        op = version_op(rep, did, at)
        at = (op.content or {}).get(_BASE) if op is not None else None
        if at is None:
            return


def _derive(rep: "Versions", did: bytes, want: derived.Derived, content: Mapping[Any, Any]) -> bytes | None:
    """Rebuild the version from its base held here and cut it with chunker 1 (§18d), keeping its chunks
    (inside one transaction: nothing is kept if the manifest so made is not the author's); None when the
    base is not local yet."""
    base = content[_BASE]
    base_m = rep.version_manifest(did, base)
    if base_m is None:
        # Its base may still come (its op not here yet) or be worked out (pending); a base that is here
        # and has no manifest is an inline version or a refused one: never a chunked base, so this
        # version could wait for ever (a chain whose middle version was refused): refused too.
        if version_op(rep, did, base) is None or rep.is_pending(did, base):
            return None
        raise IntegrityError("the base of a derived manifest is not a chunked version readable here "
                             "(an inline version, or one that was refused)", code="integrity.chain")
    if base_m.size > DELTA_MAX:  # known from its manifest: refused before its chunks are fetched
        raise ProtocolError("a derived manifest's base is larger than a whole-file delta may be",
                            code="protocol.limit")
    base_read = _reader(rep, did, base, base_m)
    if base_read is None:
        return None
    base_size = base_m.size
    keys = rep.chunk_keys_of(want.epoch)
    local = rep.local_chunks
    d = derived.Deriver(keys, want, content[_SHA], DELTA_MAX, lambda cid, plain: local.keep_rebuilt(keys, cid, plain))
    with rep.store.savepoint("derive"):
        apply_delta_to(Source(base_read, base_size), content[_DELTA], d.write,
                       expected_sha256=content[_SHA], max_size=DELTA_MAX)
        d.finish()
    return d.raw


def resolve(rep: "Versions", did: bytes, digest: bytes, depth: int = 0) -> Op | None:
    """Work out a pending version's manifest now, if its base is local (making the base's own manifest
    known first, down its chain); the op as logged with it, or None if still pending or refused.

    The logged op is sealed again with the manifest beside its delta (as ``expand`` does on arrival),
    and the versions pending on this one are tried next.
    """
    if not rep.is_pending(did, digest):
        return None
    row = next(((oid, op) for oid, _dev, op in reversed(rep.version_ops(did))
                if (op.content or {}).get(_SHA) == digest), None)
    if row is None:
        return None
    oid, op = row
    c = dict(op.content or {})
    base = c.get(_BASE)
    if depth < MAX_CHAIN and base is not None and rep.is_pending(did, base):
        resolve(rep, did, base, depth + 1)
        if not rep.is_pending(did, digest):
            return None  # refused with its base (the base's refusal tried the versions built on it)
    try:
        raw = _manifest_of(rep, did, c)
    except HbwError as e:
        rep.unmark_pending(did, digest)
        rep.problem(f"document {did.hex()[:6]}: a version's manifest does not rebuild from its delta and was "
                     f"refused ({e.message}); it will be readable after the next full version",
                     code="problem.doc_refused", params={"doc": did.hex()[:6], **notices.why_params(e)}, doc=did)
        for later in rep.pending_on(did, digest):  # built on this one: they can never be worked out now
            resolve(rep, did, later, depth + 1)
        return None
    if raw is None:
        return None
    c[_MANIFEST] = raw
    op = Op(op.kind, op.entity, op.hlc, op.base, op.fields, c)
    with rep.store.transaction():
        rep.ledger.rewrite_log(oid, op, c)
        rep.unmark_pending(did, digest)
    if depth == 0:
        for later in rep.pending_on(did, digest):
            resolve(rep, did, later, depth + 1)
    return op


def base_missing(rep: "Versions", did: bytes, digest: bytes) -> UsageError | None:
    """The error ``doc get`` raises for a version still pending once its chain was tried: its base is
    neither here nor at the relay (not synced yet by its author, lost, or never recorded); None otherwise."""
    if not rep.is_pending(did, digest):
        return None
    return UsageError(_("this version is rebuilt from an earlier version that is not on this device and not at "
                        "the relay: it cannot be worked out until that version arrives"),
                      code="usage.doc_base_missing",
                      hint=_("ask its author to sync; if the relay lost it, the document is readable again from "
                             "its next version saved in full (every 8th save at the latest)"))


def wire_content(content: dict[Any, Any]) -> dict[Any, Any]:
    """The content a version op was sent with: a manifest rebuilt from ``manifest_delta`` dropped again."""
    if content.get(_MANIFEST_DELTA) is not None and _MANIFEST in content:
        return {k: v for k, v in content.items() if k != _MANIFEST}
    return content


def snapshot_content(content: Mapping[Any, Any]) -> dict[Any, Any]:
    """A version op's content for a snapshot: the whole manifest, never the delta against it."""
    if content.get(_MANIFEST_DELTA) is not None and _MANIFEST in content:
        return {k: v for k, v in content.items() if k != _MANIFEST_DELTA}
    return dict(content)


def rebuild(rep: "Versions", did: bytes, op: Op) -> bool:
    """Make a delta version local from its base, if this device holds the base; True if it is local now.

    Only the chunks this device lacks are rebuilt, a run at a time, when the delta is a
    chunk-aligned recipe; other recipes (office files' zip recipes, at most ``DELTA_MAX``) are
    applied to the base read by ranges, the result cut into chunks as it is made (``_Cutter``);
    a whole-file patch (method 1) is applied to the whole base in memory. A delta that does not rebuild to the manifest (a
    tampered op, a zlib that deflates differently) refuses the version, not the batch: it is
    logged, and the version can still be read once a later version uploads its chunks.
    """
    if not is_delta_version(op):
        sha = (op.content or {}).get(_SHA)
        if sha is None or not rep.is_pending(did, sha):
            return False
        resolved = resolve(rep, did, sha)  # a derived manifest's chunks are kept as it is worked out
        if resolved is None:
            return False
        op = resolved
    c = op.content or {}
    try:
        m = chunks.decode_manifest(c[_MANIFEST])
    except HbwError as e:
        rep.problem(f"document {did.hex()[:6]}: a version's manifest is malformed ({e.message})",
                    code="problem.doc_refused", params={"doc": did.hex()[:6], **notices.why_params(e)}, doc=did)
        return False
    local = rep.local_chunks
    missing = local.missing(m.ids)
    if not missing:
        return True
    base_m = rep.version_manifest(did, c[_BASE])
    base_read = _reader(rep, did, c[_BASE], base_m)
    if base_read is None:
        return False
    base_size = base_m.size if base_m is not None else len(base_read(0, DELTA_MAX + 1))
    try:
        keys = rep.chunk_keys_for(m)
        with rep.store.transaction():
            try:
                for cid, piece in rebuild_needed(c[_DELTA], base_size, base_read, m, keys, set(missing)):
                    local.keep_rebuilt(keys, cid, piece)
            except NotStreamable:
                if c[_DELTA][:1] == bytes([METHOD_RECIPE]):
                    cut = _Cutter(keys, m, set(missing), local.keep_rebuilt)
                    apply_delta_to(Source(base_read, base_size), c[_DELTA], cut.write,
                                   expected_sha256=m.sha256, max_size=m.size)
                    cut.finish()
                    return True
                base = version_bytes(rep, did, c[_BASE])
                if base is None:
                    return False
                for cid, view in rebuild_chunks(keys, m, base, c[_DELTA]):
                    local.keep_rebuilt(keys, cid, view)
    except HbwError as e:
        rep.problem(f"document {did.hex()[:6]}: a version does not rebuild from its delta and was refused "
                     f"({e.message}); it will be readable after the next full version",
                     code="problem.doc_refused", params={"doc": did.hex()[:6], **notices.why_params(e)}, doc=did)
        return False
    return True


class _Cutter:
    """The rebuilt file, as it comes, cut at the manifest's chunk sizes; each chunk this device lacks is
    checked against its id and kept (``keep``), the others only counted. One chunk is held at a time.

    Raises ``IntegrityError`` ``integrity.chunk`` for a piece that is not the chunk its id names, and
    ``integrity.delta`` when the file ends early or runs past the manifest.
    """

    def __init__(self, keys: chunks.ChunkKeys, m: chunks.Manifest, needed: set[bytes],
                 keep: Callable[[chunks.ChunkKeys, bytes, bytes], None]) -> None:
        self.keys, self.needed, self.keep = keys, needed, keep
        self.spans = list(m.offsets())
        self.k = 0  # the chunk being filled
        self.have = 0  # its bytes so far
        self.buf = bytearray()

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self.k >= len(self.spans):
                raise IntegrityError("a delta rebuilt more than its manifest holds", code="integrity.delta")
            cid, _off, n = self.spans[self.k]
            take = min(n - self.have, len(view))
            if cid in self.needed:
                self.buf += view[:take]
            view = view[take:]
            self.have += take
            if self.have == n:
                if cid in self.needed:
                    if not hmac.compare_digest(self.keys.chunk_id(self.buf), cid):
                        raise IntegrityError("a chunk rebuilt from a delta does not match its id",
                                             code="integrity.chunk")
                    self.keep(self.keys, cid, bytes(self.buf))
                self.buf, self.have, self.k = bytearray(), 0, self.k + 1

    def finish(self) -> None:
        if self.k != len(self.spans):
            raise IntegrityError("a delta did not rebuild every chunk of its manifest", code="integrity.delta")


def chain_wants(rep: "Versions", did: bytes, digest: bytes) -> list[bytes]:
    """Chunk ids to ask for so this version can be made local with no session: a bundle's want-list (§18f).

    The relay never holds the chunks only a delta rebuilds (their author uploads none of them),
    so asking for a delta version's missing chunks alone never makes it local on a device that
    syncs only by bundle and lacks its base. The list is each version's missing chunks along the
    chain, down to the first version that is held here or is not a delta (one that uploaded its
    chunks), at most ``MAX_CHAIN`` deep: the deepest base's first, so a want-list cut at its bound
    still brings the base whole; ids the relay lacks it leaves out of the reply.
    """
    levels: list[list[bytes]] = []
    for _step in range(MAX_CHAIN):
        missing = rep.missing_chunks(did, digest)
        pending = rep.is_pending(did, digest)  # its ids unknown yet: none of them is at the relay anyway
        if not missing and not pending:
            break
        levels.append(missing)
        op = version_op(rep, did, digest)
        if op is None or not (pending or is_delta_version(op)):
            break
        digest = (op.content or {})[_BASE]
    return list(dict.fromkeys(cid for level in reversed(levels) for cid in level))


def rebuild_chain(rep: "Versions", did: bytes, digest: bytes) -> bool:
    """Make a version local from what is held here, rebuilding its chain's delta versions, base first.

    No session: what a bundle import calls once the reply's chunks are kept (the chunks of a
    chain's base that ``chain_wants`` asked for). True if the version is local now; False if some
    version of the chain is neither held nor rebuildable (its chunks come with a later reply).
    """
    todo: list[Op] = []
    for _step in range(MAX_CHAIN):
        pending = rep.is_pending(did, digest)
        if not pending and not rep.missing_chunks(did, digest):
            break
        op = version_op(rep, did, digest)
        if op is None or not (pending or is_delta_version(op)):
            return False
        todo.append(op)
        digest = (op.content or {})[_BASE]
    else:
        return False
    return all(rebuild(rep, did, op) for op in reversed(todo))


async def ensure(session: "_Session", rep: "Versions", did: bytes, digest: bytes, depth: int = 0) -> tuple[int, int]:
    """Make one version local: rebuild it along its chain, else fetch its chunks; (bytes fetched, ids lacking)."""
    missing = rep.missing_chunks(did, digest)
    pending = rep.is_pending(did, digest)
    if not missing and not pending:
        return 0, 0
    got = 0
    op = version_op(rep, did, digest)
    if op is not None and (pending or is_delta_version(op)) and depth < MAX_CHAIN:
        if rebuild(rep, did, op):
            return 0, 0
        got, _lacking = await ensure(session, rep, did, (op.content or {})[_BASE], depth + 1)
        if rebuild(rep, did, op):
            return got, 0
        missing = rep.missing_chunks(did, digest)  # the base could not be had: ask the relay for what it holds
        if not missing and rep.is_pending(did, digest):
            # Its chunks are only ever rebuilt from a base the relay could not give: not "not synced yet"
            # (a derived version's author held its base, uploaded before the version), but lost (GC)
            # or never recorded. Said once, as a notice ('status'), not as a part the next sync fetches.
            _notice_base_missing(rep, did)
            return got, 0
    more, lacking = await docsync.fetch(session, rep, missing)
    return got + more, lacking


def _notice_base_missing(rep: "Versions", did: bytes) -> None:
    """Tell the person, once per document, that a pending version's base is not to be had (``ensure``)."""
    st = rep.ledger.load(Kind.DOC, did)
    params = {"doc": did.hex()[:6], "name": str((st.values() if st is not None else {}).get("name", ""))}
    code = "notice.doc_base_missing"
    with rep.store.transaction():
        if rep.store.execute("SELECT 1 FROM notices WHERE code = ? AND params = ?",
                             (code, notices.pack(params))).fetchone() is None:
            notices.add_notice(rep.store, f"document {params['doc']} ({params['name']}): one of its versions cannot "
                               "be worked out on this device: the earlier version it is rebuilt from is not at the "
                               "relay any more", code=code, params=params, when_ms=now_ms())


async def fetch_versions(session: "_Session", rep: "Versions",
                         versions: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Make these (document id, version) local: delta versions by rebuilding, the rest in one fetch."""
    plain: list[bytes] = []
    chained: list[tuple[bytes, bytes]] = []
    for did, digest in versions:
        op = version_op(rep, did, digest)
        if op is not None and (is_delta_version(op) or rep.is_pending(did, digest)):
            if not rebuild(rep, did, op):
                chained.append((did, digest))
        else:
            plain += rep.missing_chunks(did, digest)
    got = lacking = 0
    if plain:
        got, lacking = await docsync.fetch(session, rep, list(dict.fromkeys(plain)))
    for did, digest in chained:
        g, n = await ensure(session, rep, did, digest)
        got, lacking = got + g, lacking + n
    return got, lacking
