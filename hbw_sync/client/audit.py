"""A supervisor exports evidence for an outside auditor (``hbw-sync audit export``).

One signed request to the relay (action ``evidence``) returns the batches the
audit concerns, as their authors signed them, with the relay's signed receipts
and roster and the supervisors' approval records; this device adds its own
signature and writes the file atomically. ``hbw-audit verify`` checks it with
no store and no relay (``hbw_sync/evidence.py``, PROTOCOL.md §24).

The team key is not in the file. A supervisor who wants the auditor to read
content as well writes it to a separate key file (``--key-file``) and hands it
over by another way: whoever holds that file reads every change of the team.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import evidence, fileio
from ..errors import AccessError
from ..ops import Kind
from . import sync as syncing
from .device import Device, now_ms
from ..i18n import _


def export(home: Path | None, passphrase: str, out: Path, *, member: str | None = None, task: str | None = None,
           since_ms: int | None = None, until_ms: int | None = None, key_file: Path | None = None,
           transport: syncing.Transport = syncing.post, timeout: float = 300) -> dict[str, Any]:
    """Write an evidence file for ``member``/``task``/a period (relay receive time) to ``out``.

    Raises: AccessError (not a supervisor), UsageError (unknown task, period too large),
    TransientError (relay unreachable: nothing was written).
    """
    dev = Device.open(home)
    with dev:
        rep = dev.unlock(passphrase)
        if dev.store.meta("role") != "supervisor":
            raise AccessError(_("only a supervisor's device can export evidence"), code="access.role",
                              hint=_("ask your team's supervisor"))
        args: dict[str, Any] = {}
        if member:
            args["member"] = member.strip().lower()
        task_id = rep.ledger.resolve(Kind.TASK, task) if task else None
        if task_id is not None:
            args["task"] = task_id
        if since_ms is not None:
            args["since_ms"] = since_ms
        if until_ms is not None:
            args["until_ms"] = until_ms
        res = syncing.call(dev, "evidence", args, transport, timeout)
        relay_pub = dev.store.meta("relay_public")
        rc = evidence.open_receipts(res["receipts"], relay_pub)  # the relay we pin, or nothing is written
        made = now_ms()
        data = evidence.make_evidence(rep.author, res["receipts"], relay_pub, list(res["batches"]),
                                      list(res["approvals"]), made)
        fileio.write_private(Path(out), data)
        keys_written = None
        if key_file is not None:
            keys = rep.team_keys()
            doc = {"team": rep.require_team().hex(), "keys": {str(e): k.secret.hex() for e, k in sorted(keys.items())}}
            fileio.write_private(Path(key_file), json.dumps(doc, indent=1).encode())
            keys_written = str(key_file)
        return {"file": str(out), "bytes": len(data), "batches": len(res["batches"]),
                "receipts": len(rc.receipts), "first_rseq": rc.first_rseq, "last_rseq": rc.last_rseq,
                "member": args.get("member"), "task": task_id.hex() if task_id else None,
                "since_ms": since_ms, "until_ms": until_ms, "exported_ms": made, "relay_key": relay_pub.hex(),
                "key_file": keys_written}
