"""Action 'evidence': a supervisor asks the relay for the batches an audit concerns, with signed receipts.

The relay signs, with its own key (the one invites pin and office IT publishes),
what it holds in a range of team sequence numbers: each batch's author device,
sequence number, receive time and SHA-256, and whether it is within the scope
asked (a member, a task, a period). It adds its roster (who each device is,
when it was enrolled and revoked) and the approval records supervisors signed.
The device writes all of it into an evidence file (``hbw_sync/evidence.py``,
PROTOCOL.md §24) that an auditor checks offline with ``hbw-audit verify``.

What is in scope is decided here from what the relay can read (the routing
section: entity ids, a document's task); content stays sealed. The batches in
scope travel in the answer, so one export is bounded (``MAX_EVIDENCE_BYTES``):
a larger one asks the supervisor to narrow the period.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from .. import batch as wire
from .. import envelope, evidence
from ..errors import AccessError, UsageError
from ..ops import Kind
from . import relay
from .storage import Txn

#: Batch bytes one evidence answer may carry (a response is at most 32 MiB).
MAX_EVIDENCE_BYTES = 24 * 1024 * 1024


def _touches(data: bytes, task: bytes) -> bool:
    """Whether a batch changes ``task`` or a document attached to it (from the routing section only)."""
    for op in wire.parse_batch(data).routing_ops():
        if op.entity == task or (op.kind == Kind.DOC and op.fields.get(1) == task):
            return True
    return False


def evidence_action(conn: Txn, ident: relay.RelayIdentity, req: envelope.Request,
                    now: int) -> dict[str, Any]:
    """[signed receipts, batches in scope, approval records] for a supervisor's audit export."""
    _member, role, _pub = relay.authenticate(conn, req, now)
    if role != "supervisor":
        raise AccessError("only a supervisor's device may export evidence", code="access.role")
    a = req.args
    scope = evidence.Scope(a.get("member"), a.get("task"), a.get("since_ms"), a.get("until_ms"))
    since = scope.since_ms if scope.since_ms is not None else 0
    until = scope.until_ms if scope.until_ms is not None else 2**63 - 1
    if since > until:
        raise UsageError("the period ends before it starts", code="usage.period")
    span = conn.execute("SELECT MIN(rseq), MAX(rseq) FROM batches WHERE received_ms >= ? AND received_ms <= ?",
                        (since, until)).fetchone()
    first, last = (span[0], span[1]) if span[0] is not None else (0, 0)
    devices = {d: m for d, m in conn.execute("SELECT device, member FROM devices")}
    receipts, out, size = [], [], 0
    rows: Iterable[Any] = conn.execute("SELECT rseq, device, seq, received_ms FROM batches WHERE rseq >= ? AND rseq <= ? "
                        "ORDER BY rseq", (first, last)) if span[0] is not None else []
    for rseq, device, seq, received in rows:
        data = conn.execute("SELECT data FROM batches WHERE rseq = ?", (rseq,)).fetchone()[0]
        inside = (scope.member is None or devices.get(device) == scope.member) and (
            scope.task is None or _touches(data, scope.task))
        receipts.append(evidence.Receipt(rseq, device, seq, received, hashlib.sha256(data).digest(), inside))
        if inside:
            size += len(data)
            if size > MAX_EVIDENCE_BYTES:
                raise UsageError("the changes in this range are too large for one evidence file",
                                 code="usage.too_large", hint="narrow the period with --since and --until")
            out.append(data)
    roster = [evidence.Enrollment(d, m, r, pub, enrolled, revoked) for d, m, r, pub, enrolled, revoked in conn.execute(
        "SELECT d.device, d.member, m.role, d.author_pub, d.enrolled_ms, d.revoked_ms FROM devices d"
        " JOIN members m ON m.name = d.member ORDER BY d.enrolled_ms, d.device")]
    signed = evidence.make_receipts(ident.key, ident.team, now, scope, first, last, receipts, roster)
    approvals = [r[0] for r in conn.execute("SELECT data FROM approvals ORDER BY id")]
    relay.audit(conn, _member, "evidence", now=now, device=req.device, batches=len(out), first=first, last=last)
    return {"receipts": signed, "batches": out, "approvals": approvals}
