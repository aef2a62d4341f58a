"""protocol/vectors/merge.json: stamps, LWW, APPEND and POLICY registers reached in any order (PROTOCOL.md §11).
"""

from __future__ import annotations

from typing import Any

from hbw_sync import hlc, merge
from hbw_sync.ops import Kind, Op, make_op

from ._kit import DAY, DEVICES, MIN, T0, jval, op_to_json
from .batches import E_MEMBER, E_TASK, op_id

# -- merge --------------------------------------------------------------------------------


def merge_items() -> list[tuple[str, int | None, Op]]:
    """(device name, received_ms, op) of the merge scenario; the snapshot vector reuses it."""
    P = hlc.pack
    return [
        ("d1", T0 + 1000, make_op(Kind.TASK, E_TASK, P(T0, 0), None,
                                  assignee="amina", status=0, due=20_380, priority=1, needs=2,
                                  title="Quarterly report", description="v1", note="created")),
        ("d2", T0 + MIN + 1000, make_op(Kind.TASK, E_TASK, P(T0 + MIN, 0), op_id("d1", P(T0, 0)),
                                        status=1, description="v2 (d2)", note="started")),
        ("d3", T0 + MIN + 9000, make_op(Kind.TASK, E_TASK, P(T0 + MIN, 0), op_id("d1", P(T0, 0)),
                                        status=3, description="v2 (d3)", note="needs a signature")),
        ("d3", T0 + 2 * MIN, make_op(Kind.TASK, E_TASK, P(T0 + 3 * DAY, 0), None,
                                     assignee="chidi", priority=3, note="sent from a clock 3 days fast")),
        ("d1", T0 + 15 * MIN + 500, make_op(Kind.TASK, E_TASK, P(T0 + 15 * MIN, 0), op_id("d3", P(T0 + 3 * DAY, 0)),
                                            assignee="bosco", due=None)),
        ("d2", T0 + 2 * MIN, make_op(Kind.MEMBER, E_MEMBER, P(T0 + 2 * MIN, 0), None,
                                     laptop=True, internet=False, office_days=0b0011111, away_until=20_383,
                                     display_name="Amina")),
        ("d2", T0 + 30 * MIN, make_op(Kind.MEMBER, E_MEMBER, P(T0 + 30 * MIN, 0), op_id("d2", P(T0 + 2 * MIN, 0)),
                                      away_until=None, internet=True)),
        ("d1", None, make_op(Kind.MEMBER, E_MEMBER, P(T0 + 40 * MIN, 0), None, display_name="Amina K.")),
    ]  # fmt: skip


def build() -> dict[str, Any]:
    ids = {n: DEVICES[n].device_id for n in DEVICES}
    tie_winner = max(("d2", "d3"), key=lambda n: ids[n])
    items = merge_items()
    stamped = [(op, merge.stamp_for(op, ids[dev], rec)) for dev, rec, op in items]
    states = merge.fold(stamped)
    task = states[(Kind.TASK, E_TASK)].values()
    # The scenario must exercise what it claims.
    assert task["assignee"] == "bosco", "far-future op must be capped by effective()"
    assert task["priority"] == 3 and task["due"] is None
    assert task["status"] == {"d2": 1, "d3": 3}[tie_winner], "HLC tie must fall to the greater device id"
    assert len(task["note"]) == 4
    assert states[(Kind.MEMBER, E_MEMBER)].values()["display_name"] == "Amina K."

    def stamp_json(s: merge.Stamp) -> dict[str, Any]:
        return {"ts": s.ts, "op_id": s.op_id.hex()}

    return {
        "meta": {
            "max_skew_ms": hlc.DEFAULT_MAX_SKEW_MS,
            "rule": "stamp = (effective(hlc, received_ms), hlc(8 BE) || device_id); LWW keeps the greatest "
            "stamp per field; APPEND (note) keeps every value, listed in op-id order; the result must not "
            "depend on the order the ops are applied in, nor on applying an op twice",
            "tie": f"ops 2 and 3 share an HLC; {tie_winner} has the greater device id and wins 'status' and 'description'",
            "far_future": "op 4 (d3) claims an HLC 3 days ahead; the relay received it at T0+2min, so its effective "
            "time is T0+12min and op 5 (d1, T0+15min) wins 'assignee' although op 4's raw HLC is greater",
            "unsent": "op 8 has received_ms null: not yet at the relay, its HLC is taken at face value",
        },
        "devices": {n: ids[n].hex() for n in DEVICES},
        "ops": [
            {"device": dev, "received_ms": rec, "op": op_to_json(op), "stamp": stamp_json(s)}
            for (dev, rec, op), (_, s) in zip(items, stamped)
        ],
        "expected": [
            {
                "kind": k.name.lower(),
                "entity": e.hex(),
                "values": {name: ([jval(x) for x in v] if isinstance(v, list) else jval(v)) for name, v in st.values().items()},
                "head": stamp_json(st.head),  # type: ignore[arg-type]
            }
            for (k, e), st in sorted(states.items())
        ],
    }
