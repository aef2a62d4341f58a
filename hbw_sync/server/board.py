"""The relay's board: the team's routing state (who holds what, profiles), conflicts, and rebalancing.

The relay cannot read content, but assignees, statuses, due dates, needs and
members' working profiles are routing fields it receives in the clear. It folds
them with the same merge rule as every device (``hbw_sync.merge``), lazily:
``materialize`` catches up on batches stored since the last call, so ingesting
a batch never pays for it.

Rebalancing moves are *relay-signed* batches (epoch 0: no content, a public
key) that change nothing but assignees; devices check both. They rank below a
person's concurrent change, so a supervisor's decision always beats the robot.
"""

from __future__ import annotations

import json
from typing import Any

from .. import allocation, batch as wire, codec, crypto, hlc, merge
from ..ops import Kind, Status, day_to_date, make_op
from . import relay
from .storage import Txn

RELAY_KEY = crypto.TeamKey(0, bytes(32))


def _ranks(conn: Txn, relay_dev: bytes) -> dict[bytes, int]:
    ranks = {relay_dev: merge.RANK_RELAY}
    for dev, role in conn.execute("SELECT d.device, m.role FROM devices d JOIN members m ON m.name = d.member"):
        ranks[dev] = merge.RANK_SUPERVISOR if role == "supervisor" else merge.RANK_MEMBER
    return ranks


def _load(conn: Txn, kind: int, entity: bytes) -> merge.EntityState | None:
    row = conn.execute("SELECT state FROM board WHERE kind = ? AND entity = ?", (kind, entity)).fetchone()
    return merge.state_from_wire(codec.unpack(row[0], relay.BOARD_LIMITS)) if row else None


#: Routing tags that put a task away (ops.py's issue-13 block): each use is written to the audit, so a
#: deleted task's end stays on record at the relay, with who and when, though it leaves every list.
_PUT_AWAY = {16: ("task_archive", "task_unarchive"), 17: ("task_delete", "task_delete")}


#: A document's confidential mark and each export of it (ops.py's issue-17 block, PROTOCOL.md §5a): routing
#: fields, so office IT's audit shows who marked or exported which document and when (never the reason).
_DOC_MARKS = {3: ("doc_confidential", "doc_unconfidential"), 4: ("doc_export", "doc_export")}


def _audit_put_away(conn: Txn, device: bytes, received_ms: int, op: Any) -> None:
    if op.kind not in (Kind.TASK, Kind.DOC):
        return
    key = "task" if op.kind is Kind.TASK else "doc"
    for tag, (on, off) in (_PUT_AWAY if op.kind is Kind.TASK else _DOC_MARKS).items():
        if tag in op.fields:
            row = conn.execute("SELECT member FROM devices WHERE device = ?", (device,)).fetchone()
            conn.execute(
                "INSERT INTO audit (time_ms, actor, action, detail) VALUES (?, ?, ?, ?)",
                (received_ms, row[0] if row else "", on if op.fields[tag] else off,
                 json.dumps({key: op.entity.hex(), "device": device.hex()})),
            )


def materialize(conn: Txn, ident: relay.RelayIdentity) -> int:
    """Fold routing ops of batches stored since the last call into the board; returns batches folded."""
    cursor = relay.meta(conn, "board_rseq", 0)
    ranks = _ranks(conn, ident.key.device_id)
    n = 0
    now = relay.now_ms()
    for rseq, device, rcv, data in conn.execute(
        "SELECT rseq, device, received_ms, data FROM batches WHERE rseq > ? ORDER BY rseq", (cursor,)
    ).fetchall():
        for op in wire.parse_batch(data).routing_ops():
            _audit_put_away(conn, device, rcv, op)
            st = merge.apply_op(_load(conn, int(op.kind), op.entity), op, merge.stamp_for(op, device, rcv),
                                ranks.get(device, merge.RANK_MEMBER))
            v = st.values()
            conn.execute(
                "INSERT INTO board (kind, entity, assignee, status, head, state) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, entity) DO UPDATE SET assignee = excluded.assignee, status = excluded.status,"
                " head = excluded.head, state = excluded.state",
                (int(op.kind), op.entity, v.get("assignee"), v.get("status"), st.head.op_id if st.head else None,
                 codec.pack(merge.state_to_wire(st))),
            )
            for c in st.conflicts():
                conn.execute(
                    "INSERT INTO conflicts (entity, field, winner, loser, winner_value, loser_value, rule,"
                    " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entity, field, loser) DO NOTHING",
                    (op.entity, c.field, c.winner, c.loser, codec.pack(c.winner_value), codec.pack(c.loser_value),
                     c.rule, now),
                )
        cursor = rseq
        n += 1
    relay.set_meta(conn, "board_rseq", cursor)
    return n


def _members(conn: Txn) -> list[allocation.MemberInfo]:
    out = []
    for name, role, active, seen in conn.execute(
        "SELECT m.name, m.role, COALESCE(SUM(CASE WHEN d.revoked_ms IS NULL THEN 1 ELSE 0 END), 0),"
        " MAX(CASE WHEN d.revoked_ms IS NULL THEN d.last_seen_ms END)"
        " FROM members m LEFT JOIN devices d ON d.member = m.name GROUP BY m.name ORDER BY m.name"
    ).fetchall():
        st = _load(conn, int(Kind.MEMBER), name.encode())
        p = st.values() if st else {}
        out.append(allocation.MemberInfo(name, bool(active), p.get("laptop"), p.get("internet"),
                                         p.get("office_days", 0), p.get("away_until"), seen, role,
                                         p.get("capacity"), p.get("takes_work")))
    return out


def _tasks(conn: Txn) -> list[allocation.TaskInfo]:
    out = []
    for entity, blob in conn.execute("SELECT entity, state FROM board WHERE kind = ? ORDER BY entity", (int(Kind.TASK),)):
        v = merge.state_from_wire(codec.unpack(blob, relay.BOARD_LIMITS)).values()
        if v.get("archived") or v.get("deleted"):
            continue  # put away by a supervisor: neither moved by rebalancing nor counted as work
        out.append(allocation.TaskInfo(entity, v.get("assignee"), v.get("status", 0), v.get("due"),
                                       v.get("priority", 1), v.get("needs", 0), bool(v.get("pinned", False))))
    return out


def rebalance(conn: Txn, ident: relay.RelayIdentity, now: int, opts: allocation.Options,
              apply: bool) -> dict[str, Any]:
    """Plan (and with ``apply``, issue as one relay-signed batch) moves of stuck tasks and moves that even the load.

    Raises:
        UsageError (``usage.rebalance_target``): ``opts.to`` cannot receive work (see ``allocation.plan``).
    """
    materialize(conn, ident)
    p = allocation.plan(_tasks(conn), _members(conn), now, opts, allocation.today_day(now))
    result: dict[str, Any] = {
        "moves": [{"task": m.task.hex(), "from": m.from_member, "to": m.to_member, "kind": m.kind,
                   "reason": m.reason} for m in p.moves],
        "stuck": [{"task": t.hex(), "reason": why} for t, why in p.stuck],
        "left_out": [{"member": n, "reason": why} for n, why in p.left_out.items()],
        "loads": [{"member": n, "open": k, "capacity": c} for n, (k, c) in p.loads.items()],
        "moves_left": p.moves_left,
        "applied": False,
    }
    if apply and p.moves:
        clock = relay.meta(conn, "relay_hlc", 0)
        ops = []
        for m in p.moves:
            clock = hlc.tick(clock, now)
            head = conn.execute("SELECT head FROM board WHERE kind = ? AND entity = ?",
                                (int(Kind.TASK), m.task)).fetchone()[0]
            ops.append(make_op(Kind.TASK, m.task, clock, head, assignee=m.to_member))
        seq = relay.meta(conn, "relay_batch_seq", 0) + 1
        dev = ident.key.device_id
        data = wire.encode_batch(wire.Batch(ident.team, dev, seq, 0, tuple(ops)), ident.key, RELAY_KEY)
        relay.insert_batch(conn, dev, seq, now, len(ops), 0, data)
        relay.set_meta(conn, "relay_hlc", clock)
        relay.set_meta(conn, "relay_batch_seq", seq)
        relay.audit(conn, "relay", "rebalance", now=now, moves=result["moves"])
        materialize(conn, ident)
        result["applied"] = True
    return result


def workload(conn: Txn, ident: relay.RelayIdentity, now: int,
             default_capacity: int = allocation.DEFAULT_CAPACITY) -> list[dict[str, Any]]:
    """Per member: open and overdue work against their capacity, what they can do, last seen."""
    materialize(conn, ident)
    today = allocation.today_day(now)
    tasks = _tasks(conn)
    out = []
    for m in _members(conn):
        mine = [t for t in tasks if t.assignee == m.name and t.status != int(Status.DONE)]
        out.append({
            "member": m.name,
            "open": len(mine),
            "capacity": m.capacity or default_capacity,
            "role": m.role,
            "takes_work": m.role != "supervisor" or m.takes_work is True,
            "overdue": sum(1 for t in mine if t.due is not None and t.due < today),
            "urgent": sum(1 for t in mine if t.priority == 3),
            "laptop": m.laptop,
            "internet": m.internet,
            "office_days": allocation.weekday_names(m.office_days),
            "away_until": None if m.away_until is None else day_to_date(m.away_until).isoformat(),
            "active_devices": m.active,
            "last_seen_ms": m.last_seen_ms,
            "needs_blocked": sum(1 for t in mine if allocation.blocker(m, t, today, now, 1 << 62) is not None),
        })
    return out


def conflicts(conn: Txn, ident: relay.RelayIdentity) -> list[dict[str, Any]]:
    materialize(conn, ident)
    names = {d: m for d, m in conn.execute("SELECT device, member FROM devices")}
    names[ident.key.device_id] = "relay (rebalancing)"
    out = []
    for entity, fld, w, lo, wv, lv, rule, t in conn.execute(
        "SELECT entity, field, winner, loser, winner_value, loser_value, rule, created_ms FROM conflicts ORDER BY created_ms"
    ):
        out.append({
            "task": entity.hex(), "field": fld, "rule": rule, "at_ms": t,
            "winner": {"value": codec.unpack(wv), "by": names.get(w[8:], w[8:].hex())},
            "loser": {"value": codec.unpack(lv), "by": names.get(lo[8:], lo[8:].hex())},
        })
    return out

