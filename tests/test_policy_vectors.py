"""protocol/vectors/policy.json: the reference merge reaches each scenario's state and conflicts.

merge.json alone lets a plain last-writer-wins client pass; these scenarios hold every POLICY
rule of PROTOCOL.md §11 (and document versions, notes, tombstones, relay moves) to the reference
in shuffled orders with duplicates, and check that each rule keeps a scenario that needs it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from hbw_sync import merge
from hbw_sync.ops import FIELDS, Kind, Op

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "policy.json").read_text())
NAMES = {k: {s.name: t for t, s in FIELDS[k].items()} for k in Kind}


def _op(d: dict[str, Any]) -> Op:
    kind = Kind[d["kind"].upper()]
    fields: dict[int, Any] = {}
    content: dict[int, Any] = {}
    for name, v in d["fields"].items():
        tag = NAMES[kind][name]
        value = bytes.fromhex(v["hex"]) if isinstance(v, dict) else v
        (fields if tag < 32 else content)[tag] = value
    return Op(kind, bytes.fromhex(d["entity"]), d["hlc"], bytes.fromhex(d["base"]) if d["base"] else None, fields, content)


def _fold(items: list[dict[str, Any]]) -> merge.EntityState:
    ranks = VECTORS["meta"]["ranks"]
    stamped = [(_op(o["op"]), merge.stamp_for(_op(o["op"]), bytes.fromhex(o["device_id"]), o["received_ms"]),
                ranks[o["role"]]) for o in items]
    (state,) = merge.fold(stamped).values()
    return state


@pytest.mark.parametrize("sc", VECTORS["scenarios"], ids=lambda s: s["name"])
def test_scenario_converges_in_any_order(sc: dict[str, Any]) -> None:
    rnd = random.Random(sc["name"])
    for _ in range(30):
        items = sc["ops"] + rnd.sample(sc["ops"], rnd.randint(0, len(sc["ops"])))
        rnd.shuffle(items)
        st = _fold(items)
        values = {k: ([{"hex": x.hex()} if isinstance(x, bytes) else x for x in v] if isinstance(v, list)
                      else {"hex": v.hex()} if isinstance(v, bytes) else v) for k, v in st.values().items()}
        assert values == sc["expected"]["values"]
        assert st.head.op_id.hex() == sc["expected"]["head"]["op_id"]
        got = sorted([c.field, c.winner.hex(), c.loser.hex(), c.rule] for c in st.conflicts())
        assert got == sc["expected"]["conflicts"]


def test_each_rule_has_a_scenario() -> None:
    rules = {c[3] for sc in VECTORS["scenarios"] for c in sc["expected"]["conflicts"]}
    assert rules == set(VECTORS["meta"]["rules"]) and len(rules) == 5
    roles = {o["role"] for sc in VECTORS["scenarios"] for o in sc["ops"]}
    assert roles == {"supervisor", "member", "relay"}


def test_a_plain_lww_client_would_fail() -> None:
    """The point of the file: last-writer-wins on assignee/status gives another answer somewhere."""
    differs = 0
    for sc in VECTORS["scenarios"]:
        last: dict[str, tuple[int, str, Any]] = {}
        for o in sc["ops"]:
            for name in ("assignee", "status"):
                if name in o["op"]["fields"]:
                    key = (o["op"]["hlc"], o["device_id"], o["op"]["fields"][name])
                    last[name] = max(last.get(name, key), key)
        differs += any(sc["expected"]["values"].get(n) != v[2] for n, v in last.items())
    assert differs >= 3
