"""protocol/vectors/policy.json: what replicas must agree on to converge (PROTOCOL.md §11), rule by rule.

merge.json checks stamps, LWW and APPEND; a client that treats ``assignee`` and ``status`` as
plain last-writer-wins passes it. These scenarios each exercise one rule of the POLICY fields
(done stays done; supervisor over member over relay; a change that saw another supersedes it;
otherwise the later change wins), the conflict records every replica must compute, document
versions (``doc.sha256``: the later version is current, the other is a conflict copy), note
order, tombstones and a relay-authored move. Each op names its author's ``role`` (``supervisor``,
``member`` or ``relay``: rank 2, 1, 0, taken from the roster's role, §16) and ``received_ms``.
A reader applies the ops in any order, any number of times, and must reach ``expected``:
``values`` by field name (APPEND as a list in op-id order), ``head``, and ``conflicts`` as
``[field, winner op id, loser op id, rule]`` sorted by (field, winner, loser); ``rule`` is one of
``meta.rules``.
"""

from __future__ import annotations

from typing import Any

from hbw_sync import crypto, hlc, merge
from hbw_sync.ops import Kind, Op, make_op

from ._ops import jval as _jval
from ._ops import op_json as _op_json

T0 = 1_760_000_000_000
MIN = 60_000
DEVICES = {"d1": crypto.DeviceKey(b"\x01" * 32), "d2": crypto.DeviceKey(b"\x11" * 32),
           "d3": crypto.DeviceKey(b"\x21" * 32), "relay": crypto.DeviceKey(b"\x41" * 32)}
RANKS = {"supervisor": merge.RANK_SUPERVISOR, "member": merge.RANK_MEMBER, "relay": merge.RANK_RELAY}
TASK = bytes.fromhex("7461736b000000aa")
DOC = bytes.fromhex("646f6300000000aa")
P = hlc.pack


def _id(dev: str, ms: int) -> bytes:
    return P(ms, 0).to_bytes(8, "big") + DEVICES[dev].device_id


def _scenarios() -> list[tuple[str, str, list[tuple[str, str, int | None, Op]]]]:
    """(name, description, [(device, role, received_ms, op)])."""
    create = ("d1", "supervisor", T0 + 500, make_op(Kind.TASK, TASK, P(T0, 0), None, assignee="amina", status=0,
                                                    title="Permit register", note="created"))
    base = _id("d1", T0)
    v1, v2, v3 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    return [
        ("done_stays_done", "Amina marks the task done; Bosco, who had not seen it, starts it later: done stays.",
         [create,
          ("d2", "member", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, status=2)),
          ("d3", "member", T0 + 6 * MIN, make_op(Kind.TASK, TASK, P(T0 + 5 * MIN, 0), base, status=1))]),
        ("supervisor_beats_member", "Dana (supervisor) reassigns to chidi offline; Bosco (member) reassigns to "
         "himself later, concurrently: the supervisor's change wins.",
         [create,
          ("d1", "supervisor", T0 + 9 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, assignee="chidi")),
          ("d2", "member", T0 + 4 * MIN, make_op(Kind.TASK, TASK, P(T0 + 3 * MIN, 0), base, assignee="bosco"))]),
        ("person_beats_relay", "The relay moves the task to bosco (rebalancing) after Chidi took it, concurrently: "
         "the person's change wins.",
         [create,
          ("d3", "member", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, assignee="chidi")),
          ("relay", "relay", T0 + 5 * MIN, make_op(Kind.TASK, TASK, P(T0 + 5 * MIN, 0), base, assignee="bosco"))]),
        ("relay_move_applies", "A relay-authored move with nothing concurrent: it applies (rank only breaks "
         "concurrency).",
         [create,
          ("relay", "relay", T0 + 5 * MIN, make_op(Kind.TASK, TASK, P(T0 + 5 * MIN, 0), base, assignee="bosco"))]),
        ("later_wins_same_role", "Two members change the status concurrently: the later effective time wins.",
         [create,
          ("d2", "member", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, status=1)),
          ("d3", "member", T0 + 4 * MIN, make_op(Kind.TASK, TASK, P(T0 + 3 * MIN, 0), base, status=3))]),
        ("seen_supersedes", "A member reassigns after seeing the supervisor's reassignment (base = its op id): "
         "the member's change wins, and it is no conflict.",
         [create,
          ("d1", "supervisor", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, assignee="chidi")),
          ("d3", "member", T0 + 4 * MIN, make_op(Kind.TASK, TASK, P(T0 + 3 * MIN, 0), _id("d1", T0 + MIN),
                                                 assignee="bosco"))]),
        ("concurrent_agreement", "Two members set the same status concurrently: no conflict.",
         [create,
          ("d2", "member", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, status=1)),
          ("d3", "member", T0 + 4 * MIN, make_op(Kind.TASK, TASK, P(T0 + 3 * MIN, 0), base, status=1))]),
        ("three_way", "Supervisor, member and relay all reassign concurrently; then a member marks it done while "
         "another blocks it: every pair is a conflict record. The supervisor over the member is 'a supervisor's "
         "change beats a member's'; the supervisor over the relay is 'a person's change beats automatic "
         "rebalancing' (the loser is the relay).",
         [create,
          ("d1", "supervisor", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, assignee="dana")),
          ("d2", "member", T0 + 3 * MIN, make_op(Kind.TASK, TASK, P(T0 + 2 * MIN, 0), base, assignee="bosco",
                                                 status=3)),
          ("relay", "relay", T0 + 4 * MIN, make_op(Kind.TASK, TASK, P(T0 + 4 * MIN, 0), base, assignee="chidi")),
          ("d3", "member", T0 + 5 * MIN, make_op(Kind.TASK, TASK, P(T0 + 5 * MIN, 0), base, status=2))]),
        ("notes_in_op_id_order", "Notes from three devices: listed by op id (HLC, then device id), not by arrival.",
         [create,
          ("d3", "member", T0 + 9 * MIN, make_op(Kind.TASK, TASK, P(T0 + 2 * MIN, 0), base, note="third by HLC")),
          ("d2", "member", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, note="second by HLC")),
          ("d1", "supervisor", T0 + 3 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, note="same HLC as d2"))]),
        ("tombstone_wins", "A delete and a concurrent later edit: deleted stays true, the edit is merged too.",
         [create,
          ("d1", "supervisor", T0 + 2 * MIN, make_op(Kind.TASK, TASK, P(T0 + MIN, 0), base, deleted=True)),
          ("d2", "member", T0 + 4 * MIN, make_op(Kind.TASK, TASK, P(T0 + 3 * MIN, 0), base, title="Permit register 2",
                                                 archived=True)),
          ("d3", "member", T0 + 6 * MIN, make_op(Kind.TASK, TASK, P(T0 + 5 * MIN, 0), base, archived=False))]),
        ("document_versions", "Two devices save a new version of one document concurrently: the later is current "
         "whoever wrote it; the other is a conflict copy (both kept).",
         [("d2", "member", T0 + 500, make_op(Kind.DOC, DOC, P(T0, 0), None, name="report.docx", size=3, sha256=v1)),
          ("d1", "supervisor", T0 + 3 * MIN, make_op(Kind.DOC, DOC, P(T0 + 2 * MIN, 0), _id("d2", T0), size=4,
                                                     sha256=v2)),
          ("d3", "member", T0 + 4 * MIN, make_op(Kind.DOC, DOC, P(T0 + 3 * MIN, 0), _id("d2", T0), size=5,
                                                 sha256=v3))]),
    ]


def build() -> dict[str, Any]:
    out = []
    rules: set[str] = set()
    for name, description, items in _scenarios():
        folded = merge.fold([(op, merge.stamp_for(op, DEVICES[dev].device_id, rcv), RANKS[role])
                             for dev, role, rcv, op in items])
        assert len(folded) == 1, name
        (st,) = folded.values()
        conflicts = sorted([c.field, c.winner.hex(), c.loser.hex(), c.rule] for c in st.conflicts())
        rules |= {c[3] for c in conflicts}
        values = {k: ([_jval(x) for x in v] if isinstance(v, list) else _jval(v)) for k, v in st.values().items()}
        out.append({
            "name": name, "description": description,
            "ops": [{"device": dev, "device_id": DEVICES[dev].device_id.hex(), "role": role, "received_ms": rcv,
                     "op": _op_json(op)} for dev, role, rcv, op in items],
            "expected": {"values": values, "head": {"ts": st.head.ts, "op_id": st.head.op_id.hex()},  # type: ignore[union-attr]
                         "conflicts": conflicts},
        })
    return {
        "meta": {"max_skew_ms": hlc.DEFAULT_MAX_SKEW_MS, "ranks": {"supervisor": 2, "member": 1, "relay": 0},
                 "relay_device_id": DEVICES["relay"].device_id.hex(), "rules": sorted(rules)},
        "scenarios": out,
    }
