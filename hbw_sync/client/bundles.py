"""Sync by file: export the outbox as a sealed bundle, import the relay's sealed reply.

A bundle is an ordinary sync request, sealed to the relay; its reply is the
relay's ordinary signed response, sealed to this device. So everything an online
sync guarantees holds here too: the outbox drops a batch only on a relay-signed
acknowledgement (exporting removes nothing), batches are accepted once however
often they arrive, and bundles mix freely with online syncs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import bundle as bundle_fmt
from .. import chunks, crypto, envelope, fileio
from ..timefmt import human_bytes
from ..errors import ConfigError, IntegrityError, LimitError, ProtocolError, UsageError
from . import docchunks, docdelta, docsync, reply_parts, snapshots
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


def export_bundle(home: Path | None, path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                  reply_budget: int = REPLY_BUDGET, *, passphrase: str | None = None,
                  on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Write the outbox and pull cursor as one bundle sealed to the relay. Needs no passphrase.

    A document whose chunks do not fit in one bundle of ``max_bytes`` is written as several
    numbered bundles in one export (``FILE-1of3.hbw``...): its chunks spread over them, the batch
    that names them in the last. Why files rather than "export again for the rest": a person
    carrying a USB stick copies them all at once, in one trip; each is a bundle the relay takes in
    any order (they share one counter), and a device that has not all of a version's chunks does
    not show it until they come. The result's ``files`` lists them, ``split_document`` says which.

    With one that opens the store, the open batch's pieces are built into one batch first
    (fewer bytes); without, they travel as the separate signed batches they already are.
    ``on_progress`` gets ``export`` events: bytes of batches gathered, then the bundle written.
    """
    path = Path(path)
    if max_bytes < MIN_REPLY:
        raise UsageError(_("a bundle of at most {max_bytes} bytes is too small to carry anything").format(max_bytes=max_bytes),
                         hint=_("give --max-size of at least {v} KB").format(v=MIN_REPLY // 1024))
    meter = Meter(on_progress)
    with Device.open(home) as dev, sync_lock(dev.store.home):
        relay_pub, relay_x = _require_relay(dev)
        s = dev.store
        rep = dev.try_unlock(passphrase)
        close_outbox(dev, rep)
        batches: list[bytes] = []
        seqs: list[int] = []
        changes, size = 0, 0
        # Sealed document chunks the exported batches name travel with them (§18f): the relay keeps
        # them before it accepts the batches, as an online sync uploads them first (§18e).
        carried: dict[bytes, bytes] = {}
        split_doc: tuple[bytes, int] | None = None
        parts: list[list[tuple[bytes, bytes]]] = []
        local = docchunks.LocalChunks(s)
        room = min(max_bytes, bundle_fmt.MAX_BUNDLE - _OVERHEAD)
        waiting = s.execute("SELECT COALESCE(SUM(size), 0) FROM outbox WHERE state = 'closed'").fetchone()[0]
        meter("export", 0, min(waiting, max_bytes))
        for seq, n_ops, data in s.execute("SELECT seq, n_ops, data FROM outbox WHERE state = 'closed' ORDER BY seq"):
            extra: dict[bytes, bytes] = {}
            per_doc: dict[bytes, int] = {}
            for did, ids in docsync.batch_refs(data):
                for cid in ids:
                    if cid in carried or cid in extra:
                        continue
                    sealed = local.sealed(cid)
                    if sealed is not None:  # not here: an online sync of its author's device sent it
                        extra[cid] = sealed
                        per_doc[did] = per_doc.get(did, 0) + len(sealed) + _PER_CHUNK
            cost = len(data) + sum(per_doc.values())
            if per_doc and (cost > room or len(extra) > bundle_fmt.MAX_CHUNKS) and not batches:
                # A document larger than one bundle: its chunks go in as many numbered bundles as it
                # takes, the batch that names them in the last (the relay keeps chunks it gets early).
                biggest = max(len(v) for v in extra.values()) + _PER_CHUNK
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
            if batches and (size + cost > room or len(carried) + len(extra) > bundle_fmt.MAX_CHUNKS):
                break
            carried.update(extra)
            batches.append(data)
            seqs.append(seq)
            changes += n_ops
            size += cost
            meter("export", size, min(waiting, max_bytes))
        left = s.execute("SELECT COUNT(*) FROM outbox WHERE state = 'closed'").fetchone()[0] - len(batches)
        counter = (s.meta("bundle_counter") or 0) + 1
        # reply_max: the relay answers in files of at most this size each (the same email limit).
        reply_max = min(max_bytes, MAX_REPLY)
        args = {"cursor": s.meta("pull_cursor", 0), "budget": reply_budget, "batches": batches,
                "roster_v": s.meta("roster_v"), "bundle": counter, "reply_max": reply_max}
        # The document chunks this device's fetch policy wants (needs the store open), bounded (§18f).
        want = rep.wanted_chunks()[:WANT_MAX] if rep is not None else []
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
                "bundle": counter, "reply_max": reply_max}
            if part:
                part_args["chunks"] = [[cid, sealed] for cid, sealed in part]
            plan.append((_part_path(path, i, n), part_args, part, seqs if last else []))
        device = s.meta("device_id")
        written: list[tuple[Path, bytes, bytes, list[Any]]] = []
        for out, part_args, part, part_seqs in plan:
            env, nonce = envelope.make_request(dev.transport_key(), device, "sync", part_args, now_ms())
            sealed = bundle_fmt.seal(bundle_fmt.TO_RELAY, s.meta("team_id"), crypto.device_id_for(relay_pub),
                                     relay_x, env)
            written.append((out, sealed, nonce, part_seqs))
        try:
            for out, sealed, _nonce, _seqs in written:
                fileio.write_private(out, sealed)  # sealed, but who sent how much when is nobody else's business
        except OSError as e:
            for out, *_rest in written:
                out.unlink(missing_ok=True)
            raise UsageError(_("cannot write {path}: {v}").format(path=out, v=e.strerror or e)) from None
        with s.transaction():
            s.set_meta("bundle_counter", counter)
            pending = s.meta("bundle_nonces") or {}
            for (out, sealed, nonce, part_seqs), part in zip(written, parts):
                # The chunks it carries: marked sent when a reply to it is imported (the relay kept them
                # before it answered), so that 'status' stops counting them as waiting.
                pending[nonce.hex()] = [counter, now_ms(), part_seqs, reply_max, [c[0] for c in part]]
            s.set_meta("bundle_nonces", pending)
        total = sum(len(w[1]) for w in written)
        meter("export", total, total)
        chunks_out = [c for part in parts for c in part]
        result: dict[str, Any] = {"file": str(written[-1][0]), "files": [str(w[0]) for w in written], "bytes": total,
               "batches": len(batches), "changes": changes, "counter": counter, "left_in_outbox": left,
               "doc_chunks": len(chunks_out), "doc_chunk_bytes": sum(len(c[1]) for c in chunks_out),
               "parts": n, "split_document": None}
        if split_doc is not None:
            result["split_document"] = {"name": _doc_name(dev, passphrase, split_doc[0]), "bytes": split_doc[1]}
        return result


#: The reply budget of a part that only carries chunks (the relay's least): the last part asks for the rest.
MIN_PART_BUDGET = 1024


def _split(pieces: list[tuple[bytes, bytes]], batch_size: int, room: int) -> list[list[tuple[bytes, bytes]]]:
    """Chunks into parts that each fit ``room``; the last also has room for the batch (``batch_size``)."""
    parts: list[list[tuple[bytes, bytes]]] = [[]]
    used = 0
    for cid, sealed in pieces:
        cost = len(sealed) + _PER_CHUNK
        if parts[-1] and (used + cost > room or len(parts[-1]) >= bundle_fmt.MAX_CHUNKS):
            parts.append([])
            used = 0
        parts[-1].append((cid, sealed))
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
        with open(path, "rb") as fh:  # read at most one byte past the largest bundle: never a whole huge file
            raw = fh.read(bundle_fmt.MAX_BUNDLE + 1)
    except OSError as e:
        raise UsageError(_("cannot read {path}: {v}").format(path=path, v=e.strerror or e)) from None
    if len(raw) > bundle_fmt.MAX_BUNDLE:
        raise LimitError(_("{path} is larger than any bundle ({v} MiB): it was not read further and nothing "
              "changed").format(path=path, v=bundle_fmt.MAX_BUNDLE // (1024 * 1024)), code="protocol.limit",
                         hint=_("check that this is the right file"))
    meter("import", 0, len(raw))
    with Device.open(home) as dev, sync_lock(dev.store.home):
        relay_pub, _relay_id = _require_relay(dev)
        rep = dev.unlock(passphrase)
        s = dev.store
        x_private = rep.sealer.open(s.meta("x25519_key"), b"meta:x25519_key")
        env = bundle_fmt.open_bundle(raw, bundle_fmt.TO_DEVICE, rep.require_team(), s.meta("device_id"), x_private)
        res = envelope.open_response(env, relay_pub)
        result = res.result
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
        got_chunks = _keep_chunks(rep, result.get("chunks"), session.report.notes)
        if got_chunks:  # a delta version whose chain's base just arrived is rebuilt now (§18f)
            for did, digest in rep.wanted_versions():
                docdelta.rebuild_chain(rep, did, digest)
        meter("import", len(raw), len(raw))
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


def _keep_chunks(rep: Any, pieces: Any, notes: list[str]) -> int:
    """Keep the document chunks a reply carries (§18f), each checked against its id; returns how many.

    Only ids a manifest this device holds names are kept (their epoch's keys check them); a chunk
    that does not open under its id is left out and said, the rest of the reply stands.
    """
    if pieces is None:
        return 0
    if (not isinstance(pieces, list) or len(pieces) > bundle_fmt.MAX_CHUNKS
            or any(not isinstance(p, list) or len(p) != 2 or not isinstance(p[0], bytes) or len(p[0]) != chunks.ID_LEN
                   or not isinstance(p[1], bytes) or len(p[1]) > chunks.SEALED_MAX for p in pieces)):
        raise ProtocolError(_("the reply bundle's document chunks are malformed"), code="protocol.chunk")
    local = rep.local_chunks
    ids = local.missing(cid for cid, _sealed in pieces)
    if not ids:
        return 0
    epochs = docsync._epochs(rep, ids)
    keys = docchunks.keys_by_epoch(rep.team_keys())
    kept = bad = 0
    with rep.store.transaction():
        for cid, sealed in pieces:
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
