"""Sync by file: export the outbox as a sealed bundle, import the relay's sealed reply.

A bundle is an ordinary sync request, sealed to the relay; its reply is the
relay's ordinary signed response, sealed to this device. So everything an online
sync guarantees holds here too: the outbox drops a batch only on a relay-signed
acknowledgement (exporting removes nothing), batches are accepted once however
often they arrive, and bundles mix freely with online syncs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import bundle as bundle_fmt
from .. import chunks, codec, crypto, envelope, fileio
from ..timefmt import human_bytes
from ..errors import ConfigError, IntegrityError, LimitError, ProtocolError, RevokedError, UsageError
from . import docchunks, docdelta, docsync, keyflow, reply_parts, snapshots
from .progress import Meter, OnProgress
from .device import Device, now_ms
from .sync import SyncReport, _Session, close_outbox, sync_lock
from ..i18n import _, ngettext

DEFAULT_MAX_BYTES = 10_000_000  # what most mail servers accept as one attachment
REPLY_BUDGET = 5_000_000
#: The reply part sizes a relay accepts (``reply_max``, PROTOCOL.md "Reply bundles in parts").
MIN_REPLY = 64 * 1024
MAX_REPLY = 32 * 1024 * 1024


#: Most chunk ids a bundle asks the reply to carry (the relay's ``want_chunks`` bound).
WANT_MAX = 4096
#: Bytes a bundle needs beyond its batches and chunks (header, envelope, args), and per chunk (msgpack).
_OVERHEAD = 64 * 1024
_PER_CHUNK = 32


def _doc_name(dev: Device, passphrase: str | None, did: bytes) -> str:
    """A document's name for a message (its id when the store is locked)."""
    rep = dev.try_unlock(passphrase)
    try:
        return repr(rep.doc(did.hex()).name) if rep is not None else did.hex()[:12]
    except Exception:  # a message's name is best effort: the id says the same
        return did.hex()[:12]


def _require_relay(dev: Device) -> tuple[bytes, bytes]:
    s = dev.store
    if s.meta("relay_public") is None or s.meta("relay_x25519") is None:
        raise ConfigError(_("this device has not joined a relay"), code="config.not_joined")
    return s.meta("relay_public"), s.meta("relay_x25519")


def export_bundle(home: Path | None, path: Path, max_bytes: int | None = DEFAULT_MAX_BYTES,
                  reply_budget: int = REPLY_BUDGET, *, passphrase: str | None = None,
                  on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Write the outbox and pull cursor as one bundle sealed to the relay. Needs no passphrase.

    A document whose chunks do not fit in one bundle of ``max_bytes`` is written as several
    numbered bundles in one export (``FILE-1of3.hbw``...): its chunks spread over them, the batch
    that names them in the last. Why files rather than "export again for the rest": a person
    carrying a USB stick copies them all at once, in one trip; each is a bundle the relay takes in
    any order (they share one counter), and a device that has not all of a version's chunks does
    not show it until they come. The result's ``files`` lists them, ``split_document`` says which.
    ``max_bytes`` None: no cap but the format's (one file, however large its documents).

    Bundles are written in format 2 (PROTOCOL.md §18b): the chunks stream from the store into
    64 KiB sealed segments of a ``.part`` file, fsynced and renamed, so memory stays flat whatever
    the documents' size and a crash or a full disk leaves no half-written bundle.

    With one that opens the store, the open batch's pieces are built into one batch first
    (fewer bytes); without, they travel as the separate signed batches they already are.
    ``on_progress`` gets ``export`` events: bytes of batches gathered, then the bundle written.

    Raises:
        RevokedError: the office revoked this device (its bundles would be refused).
        UsageError ``usage.bundle_too_small``: a document's part cannot fit ``max_bytes``.
    """
    path = Path(path)
    if max_bytes is not None and max_bytes < MIN_REPLY:
        raise UsageError(_("a bundle of at most {max_bytes} bytes is too small to carry anything").format(max_bytes=max_bytes),
                         hint=_("give --max-size of at least {v} KB").format(v=MIN_REPLY // 1024))
    meter = Meter(on_progress)
    with Device.open(home) as dev, sync_lock(dev.store.home):
        relay_pub, relay_x = _require_relay(dev)
        s = dev.store
        _refuse_if_revoked(dev)
        rep = dev.try_unlock(passphrase)
        close_outbox(dev, rep)
        batches: list[bytes] = []
        seqs: list[int] = []
        changes, size, batch_bytes = 0, 0, 0
        # Sealed document chunks the exported batches name travel with them (§18f), in the bundle's
        # body: the relay keeps them before it accepts the batches, as an online sync uploads them
        # first (§18e). Only their ids and sizes are held here; the bytes stream when written.
        carried: dict[bytes, int] = {}
        split_doc: tuple[bytes, int] | None = None
        parts: list[list[tuple[bytes, int]]] = []
        local = docchunks.LocalChunks(s)
        room = (max_bytes if max_bytes is not None else bundle_fmt.MAX_STREAM) - _OVERHEAD
        # Batches travel inside the signed envelope, which the relay reads whole (§12's max_message):
        # a bundle's batches stay below it whatever --max-size says (over it, the relay refused them).
        env_room = ENVELOPE_ROOM
        waiting = s.execute("SELECT COALESCE(SUM(size), 0) FROM outbox WHERE state = 'closed'").fetchone()[0]
        cap = waiting if max_bytes is None else min(waiting, max_bytes)
        meter("export", 0, cap)
        for seq, n_ops, data in s.execute("SELECT seq, n_ops, data FROM outbox WHERE state = 'closed' ORDER BY seq"):
            extra: dict[bytes, int] = {}
            per_doc: dict[bytes, int] = {}
            for did, ids in docsync.batch_refs(data):
                for cid in ids:
                    if cid in carried or cid in extra:
                        continue
                    n = local.sealed_size(cid)
                    if n:  # not here: an online sync of its author's device sent it
                        extra[cid] = n
                        per_doc[did] = per_doc.get(did, 0) + n + _PER_CHUNK
            cost = len(data) + sum(per_doc.values())
            if per_doc and (cost > room or len(extra) > bundle_fmt.MAX_RECORDS) and not batches:
                # A document larger than one bundle: its chunks go in as many numbered bundles as it
                # takes, the batch that names them in the last (the relay keeps chunks it gets early).
                biggest = max(extra.values()) + _PER_CHUNK
                if biggest > room:  # one part cannot hold it, however many parts
                    did = max(per_doc, key=per_doc.__getitem__)
                    raise UsageError(
                        _("the document {name} ({size} sealed) has parts larger than a bundle of at most {max}: "
                          "nothing was written").format(name=_doc_name(dev, passphrase, did),
                                                        size=human_bytes(per_doc[did]), max=human_bytes(room)),
                        code="usage.bundle_too_small",
                        hint=_("sync online once, or export again with a larger --max-size"))
                parts = _split(list(extra.items()), len(data), room)
                split_doc = (max(per_doc, key=per_doc.__getitem__), sum(per_doc.values()))
                batches, seqs, changes, size = [data], [seq], n_ops, cost
                break
            if batches and (size + cost > room or batch_bytes + len(data) > env_room
                            or len(carried) + len(extra) > bundle_fmt.MAX_RECORDS):
                break
            carried.update(extra)
            batches.append(data)
            seqs.append(seq)
            changes += n_ops
            size += cost
            batch_bytes += len(data)
            meter("export", size, cap)
        left = s.execute("SELECT COUNT(*) FROM outbox WHERE state = 'closed'").fetchone()[0] - len(batches)
        counter = (s.meta("bundle_counter") or 0) + 1
        # reply_max: the relay answers in files of at most this size each (the same email limit).
        reply_max = MAX_REPLY if max_bytes is None else min(max_bytes, MAX_REPLY)
        args = {"cursor": s.meta("pull_cursor", 0), "budget": reply_budget, "batches": batches,
                "roster_v": s.meta("roster_v"), "bundle": counter, "reply_max": reply_max}
        if _Session.reads is not None:  # what this device reads (features.py), as an online sync says it
            args["reads"] = _Session.reads
        # The document chunks this device's fetch policy wants (needs the store open), bounded (§18f).
        want = rep.versions.wanted_chunks()[:WANT_MAX] if rep is not None else []
        if want:
            args["want_chunks"] = want
        if s.meta("publish_key"):  # a supervisor who syncs only by bundle still publishes a rotated key
            args["key"] = s.meta("publish_key")
        if snapshots.refused_recently(s):  # replaying the history a refused snapshot would have skipped
            args["no_snapshot"] = True
        if split_doc is None:
            parts = [list(carried.items())]
        n = len(parts)
        # One counter for all parts: the relay takes them in any order (an equal counter is not an
        # older bundle), and the next export's counter is above them all.
        plan = []
        for i, part in enumerate(parts, 1):
            last = i == n
            part_args = dict(args) if last else {  # only the last part carries the batch and asks for replies
                "cursor": args["cursor"], "budget": MIN_PART_BUDGET, "batches": [], "roster_v": args["roster_v"],
                "bundle": counter, "reply_max": reply_max, **({"reads": args["reads"]} if "reads" in args else {})}
            plan.append((_part_path(path, i, n), part_args, [cid for cid, _n in part], seqs if last else []))
        device = s.meta("device_id")
        relay_id = crypto.device_id_for(relay_pub)
        written: list[tuple[Path, int, bytes, list[Any]]] = []
        try:
            for out, part_args, ids, part_seqs in plan:
                def make_env(named: list[Any], a: dict[str, Any] = part_args) -> bytes:
                    env, nonce = envelope.make_request(dev.transport_key(), device, "sync", {**a, "body": named},
                                                       now_ms())
                    nonces[env] = nonce
                    return env
                nonces: dict[bytes, bytes] = {}
                sha, length = _body_name(local, ids)
                env = bundle_fmt.named_envelope(make_env, sha, length)
                nbytes = _write_stream(out, bundle_fmt.StreamSealer(bundle_fmt.TO_RELAY, s.meta("team_id"), relay_id,
                                                                    relay_x), env, local, ids, sha, meter)
                written.append((out, nbytes, nonces[env], part_seqs))
        except OSError as e:
            for out, *_rest in written:
                out.unlink(missing_ok=True)
            raise UsageError(_("cannot write {path}: {v}").format(path=out, v=e.strerror or e),
                             hint=_("free some space or choose another place; nothing was exported")) from None
        except BaseException:
            for out, *_rest in written:
                out.unlink(missing_ok=True)
            raise
        with s.transaction():
            s.set_meta("bundle_counter", counter)
            pending = s.meta("bundle_nonces") or {}
            for (out, _nbytes, nonce, part_seqs), part in zip(written, parts):
                # The chunks it carries: marked sent when a reply to it is imported (the relay kept them
                # before it answered), so that 'status' stops counting them as waiting.
                pending[nonce.hex()] = [counter, now_ms(), part_seqs, reply_max, [c[0] for c in part]]
            s.set_meta("bundle_nonces", pending)
        total = sum(w[1] for w in written)
        meter("export", total, total)
        chunks_out = [c for part in parts for c in part]
        result: dict[str, Any] = {"file": str(written[-1][0]), "files": [str(w[0]) for w in written], "bytes": total,
               "batches": len(batches), "changes": changes, "counter": counter, "left_in_outbox": left,
               "doc_chunks": len(chunks_out), "doc_chunk_bytes": sum(c[1] for c in chunks_out),
               "parts": n, "split_document": None, "format": bundle_fmt.VERSION_STREAM}
        if split_doc is not None:
            result["split_document"] = {"name": _doc_name(dev, passphrase, split_doc[0]), "bytes": split_doc[1]}
        return result


#: Batch bytes one bundle's signed envelope may carry: the relay reads an envelope whole, up to
#: §12's max_message (32 MiB); a bundle whose batches passed it was refused at the office.
ENVELOPE_ROOM = codec.DEFAULT_LIMITS.max_message - _OVERHEAD


def _refuse_if_revoked(dev: Device) -> None:
    """Refuse at once on a device the office revoked: every bundle it wrote would be refused there.

    A device learns it from the relay: an online sync refused with ``access.revoked`` (the sync
    log keeps its code), or a roster that marks this device revoked.
    """
    s = dev.store
    me = s.meta("device_id")
    refused, ok = s.execute(
        "SELECT MAX(CASE WHEN code = ? THEN id END), COALESCE(MAX(CASE WHEN ok = 1 THEN id END), 0) "
        "FROM sync_log WHERE how = 'relay'", (RevokedError.code,)).fetchone()
    if me in keyflow.revoked_devices(s) or (refused is not None and refused > ok):
        raise RevokedError(_("this device was revoked by the office: a bundle from it would be refused, "
                             "so none was written"),
                           hint=_("ask office IT to enroll this device again; what is in its outbox stays here"))


def _body_name(local: docchunks.LocalChunks, ids: list[bytes]) -> tuple[bytes, int]:
    """SHA-256 and length of the body these chunks make, read one chunk at a time."""
    h = hashlib.sha256()
    n = 0
    for cid in ids:
        rec = bundle_fmt.body_record(cid, _sealed(local, cid))
        h.update(rec)
        n += len(rec)
    return h.digest(), n


def _sealed(local: docchunks.LocalChunks, cid: bytes) -> bytes:
    sealed = local.sealed(cid)
    if sealed is None:  # held when the export began, under the sync lock: the store changed under us
        raise IntegrityError(_("a document part vanished from this device's store during the export"),
                             code="integrity.store")
    return sealed


def _write_stream(out: Path, sealer: bundle_fmt.StreamSealer, env: bytes, local: docchunks.LocalChunks,
                  ids: list[bytes], sha: bytes, meter: Meter) -> int:
    """Stream one bundle into ``out.part``, fsync, rename; returns its size. Nothing is left on failure."""
    tmp = out.with_name(out.name + ".part")
    tmp.unlink(missing_ok=True)
    h = hashlib.sha256()
    done = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | fileio.O_BINARY, fileio.FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(sealer.header)
            done += len(sealer.header)
            piece = sealer.feed(len(env).to_bytes(4, "big") + env)
            f.write(piece)
            done += len(piece)
            for cid in ids:
                rec = bundle_fmt.body_record(cid, _sealed(local, cid))
                h.update(rec)
                piece = sealer.feed(rec)
                if piece:
                    f.write(piece)
                    done += len(piece)
                    meter("export", done, None)
            piece = sealer.finish()
            f.write(piece)
            done += len(piece)
            if h.digest() != sha:
                raise IntegrityError(_("a document part changed in this device's store during the export"),
                                     code="integrity.store")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return done


#: The reply budget of a part that only carries chunks (the relay's least): the last part asks for the rest.
MIN_PART_BUDGET = 1024


def _split(pieces: list[tuple[bytes, int]], batch_size: int, room: int) -> list[list[tuple[bytes, int]]]:
    """Chunks (id, sealed size) into parts that each fit ``room``; the last also has room for the batch."""
    parts: list[list[tuple[bytes, int]]] = [[]]
    used = 0
    for cid, n in pieces:
        cost = n + _PER_CHUNK
        if parts[-1] and (used + cost > room or len(parts[-1]) >= bundle_fmt.MAX_RECORDS):
            parts.append([])
            used = 0
        parts[-1].append((cid, n))
        used += cost
    if used + batch_size > room:
        parts.append([])  # the batch goes alone in one more part
    return parts


def _part_path(path: Path, i: int, n: int) -> Path:
    """``scan.hbw`` for one part; ``scan-1of3.hbw``... for several (the order a person reads, as reply parts)."""
    return path if n == 1 else path.with_name(f"{path.stem}-{i}of{n}{path.suffix or '.hbw'}")


def import_bundle(home: Path | None, path: Path, passphrase: str, *,
                  on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Apply one of the relay's reply bundles: acknowledgements, the team's changes, keys. Safe to repeat.

    A large reply comes as several files (parts, each within the ``--max-size`` of the export);
    they may be imported in any order, and any of them twice: a part that comes before the one
    it follows is kept but waits (``reply_parts``). The result says what is still to come.
    ``on_progress`` gets ``import`` events: the file's bytes read, opened, then applied.
    """
    t0 = time.monotonic()
    meter = Meter(on_progress)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise UsageError(_("cannot read {path}: {v}").format(path=path, v=e.strerror or e)) from None
    if size > bundle_fmt.MAX_STREAM:
        raise LimitError(_("{path} is larger than any bundle ({v} MiB): it was not read further and nothing "
              "changed").format(path=path, v=bundle_fmt.MAX_STREAM // (1024 * 1024)), code="protocol.limit",
                         hint=_("check that this is the right file"))
    meter("import", 0, size)
    with Device.open(home) as dev, sync_lock(dev.store.home):
        relay_pub, _relay_id = _require_relay(dev)
        rep = dev.unlock(passphrase)
        s = dev.store
        x_private = rep.sealer.open(s.meta("x25519_key"), b"meta:x25519_key")
        env, opened, body = _open_reply(path, rep.require_team(), s.meta("device_id"), x_private, meter, size)
        res = envelope.open_response(env, relay_pub)
        result = res.result
        opened.check_named(result.get("body"))  # a version 2 reply names its (empty) body, signed
        part, n, frm, sizes = reply_parts.check_part(result)
        nonce = res.nonce.hex()
        pending = s.meta("bundle_nonces") or {}
        done = s.meta("bundle_replies") or []
        if nonce in done or reply_parts.imported(s, nonce, part):
            return {"already_imported": True, "acks": 0, "received_batches": 0, "applied_ops": 0,
                    "part": part, "parts": n}
        if nonce not in pending:
            raise IntegrityError(_("this reply answers a bundle this device never exported"), code="integrity.bundle")
        # A part whose batches start after what this device holds waits for the part before it.
        held = frm is not None and frm > s.meta("pull_cursor", 0)
        asked = pending[nonce][3] if len(pending[nonce]) > 3 else None  # the export's --max-size
        session = _Session(dev, rep, REPLY_BUDGET, None, 0)  # type: ignore[arg-type]
        session.apply_response({**result, "cursor": s.meta("pull_cursor", 0)} if held else result, [])
        with s.transaction():
            carried = pending[nonce][4] if len(pending[nonce]) > 4 else []
            if carried:  # the relay answered: it kept the bundle's chunks (before any of its batches, §18f)
                docchunks.LocalChunks(s).mark_sent(c for c in carried if isinstance(c, bytes))
            if held and frm is not None:
                reply_parts.hold(s, frm, int(result.get("cursor", 0)))
            reply_parts.settle(s)
            still = reply_parts.record(s, nonce, part, n, sizes)
            if still["complete"]:
                pending.pop(nonce)
                s.set_meta("bundle_nonces", pending)
                s.set_meta("bundle_replies", (done + [nonce])[-200:])
        applied = rep.apply_incoming()
        got_chunks = _keep_chunks(rep, body.records if opened.body_length else result.get("chunks"),
                                  session.report.notes)
        if got_chunks:  # a delta version whose chain's base just arrived is rebuilt now (§18f)
            for did, digest in rep.versions.wanted_versions():
                docdelta.rebuild_chain(rep.versions, did, digest)
        meter("import", size, size)
        report: SyncReport = session.report
        report.applied_ops = applied
        report.duration_s = round(time.monotonic() - t0, 3)
        with s.transaction():
            s.execute("INSERT INTO sync_log (started_ms, finished_ms, ok, how, detail) VALUES (?, ?, 1, 'bundle', ?)",
                      (now_ms(), now_ms(), f"reply bundle {Path(path).name}" + (f" (part {part} of {n})" if n > 1 else "")))
        oversize = result.get("oversize")
        return {"already_imported": False, "acks": len(result.get("acks", [])),
                "received_batches": report.received_batches, "applied_ops": applied,
                "more_waiting": bool(result.get("more")) and part == n, "notes": report.notes,
                "part": part, "parts": n, "parts_left": still["parts_left"], "bytes_left": still["bytes_left"],
                "waits_for_earlier_part": held,
                "oversize_bytes": oversize if type(oversize) is int else None,
                "max_bytes": asked, "doc_chunks": got_chunks}


class _Body:
    """A reply's body (its document chunks, format 2), spooled to an anonymous temporary file."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="hbw-reply-")

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        self.file.seek(0)
        yield from bundle_fmt.body_records(self.file.read)


def _open_reply(path: Path, team: bytes, device: bytes, x_private: bytes, meter: Meter,
                size: int) -> tuple[bytes, bundle_fmt.Opened, _Body]:
    """A reply's envelope, read segment by segment from the file (format 1 or 2), its body spooled.

    The body is trusted only once the signed result's ``body`` named it (``Opened.check_named``).
    """
    body = _Body()
    done = 0

    def read(n: int) -> bytes:
        nonlocal done
        data = fh.read(n)
        done += len(data)
        meter("import", done, size)
        return data

    try:
        with open(path, "rb") as fh:
            opened = bundle_fmt.open_stream(read, bundle_fmt.TO_DEVICE, team, device, x_private, body.file.write,
                                            max_envelope=codec.DEFAULT_LIMITS.max_message)
    except OSError as e:
        body.file.close()
        raise UsageError(_("cannot read {path}: {v}").format(path=path, v=e.strerror or e)) from None
    except BaseException:
        body.file.close()
        raise
    return opened.envelope, opened, body


def _keep_chunks(rep: Any, pieces: Any, notes: list[str]) -> int:
    """Keep the document chunks a reply carries (§18f), each checked against its id; returns how many.

    ``pieces``: the signed result's ``chunks`` (format 1), or a function that walks the spooled
    body's records afresh (format 2: read twice, ids first, so only ids are ever held).
    Only ids a manifest this device holds names are kept (their epoch's keys check them); a chunk
    that does not open under its id is left out and said, the rest of the reply stands.
    """
    if pieces is None:
        return 0
    if callable(pieces):
        walk = pieces
    elif (not isinstance(pieces, list) or len(pieces) > bundle_fmt.MAX_CHUNKS
            or any(not isinstance(p, list) or len(p) != 2 or not isinstance(p[0], bytes) or len(p[0]) != chunks.ID_LEN
                   or not isinstance(p[1], bytes) or len(p[1]) > chunks.SEALED_MAX for p in pieces)):
        raise ProtocolError(_("the reply bundle's document chunks are malformed"), code="protocol.chunk")
    else:
        walk = lambda: iter(pieces)  # noqa: E731
    local = rep.versions.local_chunks
    ids = local.missing(cid for cid, _sealed in walk())
    if not ids:
        return 0
    epochs = docsync._epochs(rep.versions, ids)
    keys = docchunks.keys_by_epoch(rep.team_keys())
    kept = bad = 0
    with rep.store.transaction():
        for cid, sealed in walk():
            if cid not in epochs or epochs[cid] not in keys:
                continue
            try:
                kept += local.keep_fetched(keys, epochs[cid], [(cid, sealed)])
            except (IntegrityError, ProtocolError):
                bad += 1
    if bad:
        notes.append(ngettext("{n} document part in the reply did not match its id and was not kept; "
                              "'doc get' fetches it online",
                              "{n} document parts in the reply did not match their ids and were not kept; "
                              "'doc get' fetches them online", bad).format(n=bad))
    return kept
