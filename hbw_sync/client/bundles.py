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
from .. import crypto, envelope, fileio
from ..errors import ConfigError, IntegrityError, LimitError, UsageError
from . import snapshots
from .progress import Meter, OnProgress
from .device import Device, now_ms
from .sync import SyncReport, _Session, close_outbox, sync_lock
from ..i18n import _

DEFAULT_MAX_BYTES = 10_000_000  # what most mail servers accept as one attachment
REPLY_BUDGET = 5_000_000


def _require_relay(dev: Device) -> tuple[bytes, bytes]:
    s = dev.store
    if s.meta("relay_public") is None or s.meta("relay_x25519") is None:
        raise ConfigError(_("this device has not joined a relay"), hint=_("run 'hbw-sync join INVITE' first"))
    return s.meta("relay_public"), s.meta("relay_x25519")


def export_bundle(home: Path | None, path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                  reply_budget: int = REPLY_BUDGET, *, passphrase: str | None = None,
                  on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Write the outbox and pull cursor as one bundle sealed to the relay. Needs no passphrase.

    With one that opens the store, the open batch's pieces are built into one batch first
    (fewer bytes); without, they travel as the separate signed batches they already are.
    ``on_progress`` gets ``export`` events: bytes of batches gathered, then the bundle written.
    """
    path = Path(path)
    meter = Meter(on_progress)
    with Device.open(home) as dev, sync_lock(dev.store.home):
        relay_pub, relay_x = _require_relay(dev)
        s = dev.store
        close_outbox(dev, dev.try_unlock(passphrase))
        batches, seqs, changes, size = [], [], 0, 0
        waiting = s.execute("SELECT COALESCE(SUM(size), 0) FROM outbox WHERE state = 'closed'").fetchone()[0]
        meter("export", 0, min(waiting, max_bytes))
        for seq, n_ops, data in s.execute("SELECT seq, n_ops, data FROM outbox WHERE state = 'closed' ORDER BY seq"):
            if batches and size + len(data) > max_bytes:
                break
            batches.append(data)
            seqs.append(seq)
            changes += n_ops
            size += len(data)
            meter("export", size, min(waiting, max_bytes))
        left = s.execute("SELECT COUNT(*) FROM outbox WHERE state = 'closed'").fetchone()[0] - len(batches)
        counter = (s.meta("bundle_counter") or 0) + 1
        args = {"cursor": s.meta("pull_cursor", 0), "budget": reply_budget, "batches": batches,
                "roster_v": s.meta("roster_v"), "bundle": counter}
        if s.meta("publish_key"):  # a supervisor who syncs only by bundle still publishes a rotated key
            args["key"] = s.meta("publish_key")
        if snapshots.refused_recently(s):  # replaying the history a refused snapshot would have skipped
            args["no_snapshot"] = True
        device = s.meta("device_id")
        env, nonce = envelope.make_request(dev.transport_key(), device, "sync", args, now_ms())
        sealed = bundle_fmt.seal(bundle_fmt.TO_RELAY, s.meta("team_id"), crypto.device_id_for(relay_pub), relay_x, env)
        try:
            fileio.write_private(path, sealed)  # sealed, but who sent how much when is nobody else's business
        except OSError as e:
            raise UsageError(_("cannot write {path}: {v}").format(path=path, v=e.strerror or e)) from None
        with s.transaction():
            s.set_meta("bundle_counter", counter)
            pending = s.meta("bundle_nonces") or {}
            pending[nonce.hex()] = [counter, now_ms(), seqs]
            s.set_meta("bundle_nonces", pending)
        meter("export", len(sealed), len(sealed))
        return {"file": str(path), "bytes": len(sealed), "batches": len(batches), "changes": changes,
                "counter": counter, "left_in_outbox": left}


def import_bundle(home: Path | None, path: Path, passphrase: str, *,
                  on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Apply the relay's reply bundle: acknowledgements, the team's changes, keys. Safe to repeat.

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
        pending = s.meta("bundle_nonces") or {}
        done = s.meta("bundle_replies") or []
        if res.nonce.hex() in done:
            return {"already_imported": True, "acks": 0, "received_batches": 0, "applied_ops": 0}
        if res.nonce.hex() not in pending:
            raise IntegrityError(_("this reply answers a bundle this device never exported"), code="integrity.bundle")
        session = _Session(dev, rep, REPLY_BUDGET, None, 0)  # type: ignore[arg-type]
        session.apply_response(res.result, [])
        applied = rep.apply_incoming()
        meter("import", len(raw), len(raw))
        with s.transaction():
            pending.pop(res.nonce.hex())
            s.set_meta("bundle_nonces", pending)
            s.set_meta("bundle_replies", (done + [res.nonce.hex()])[-200:])
        report: SyncReport = session.report
        report.applied_ops = applied
        report.duration_s = round(time.monotonic() - t0, 3)
        with s.transaction():
            s.execute("INSERT INTO sync_log (started_ms, finished_ms, ok, how, detail) VALUES (?, ?, 1, 'bundle', ?)",
                      (now_ms(), now_ms(), f"reply bundle {Path(path).name}"))
        return {"already_imported": False, "acks": len(res.result.get("acks", [])),
                "received_batches": report.received_batches, "applied_ops": applied,
                "more_waiting": bool(res.result.get("more")), "notes": report.notes}
