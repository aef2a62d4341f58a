"""The merge rule: any order, any duplication, one state; skewed clocks are capped."""

from __future__ import annotations

import pytest
from conftest import T0_MS, scaled_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from hbw_sync import crypto, hlc
from hbw_sync.merge import EntityState, Stamp, apply_op, fold, lww, stamp_for
from hbw_sync.ops import Kind, make_op

DAY = 24 * 3600 * 1000
HOUR = 3600 * 1000
DEV_A = b"\x0a" * 8
DEV_B = b"\x0b" * 8
DEV_C = b"\x0c" * 8
DEV_D = b"\x0d" * 8


def _item(op, device, received=None):
    return op, stamp_for(op, device, received)


def _view(states):
    return {k: (s.values(), s.head) for k, s in states.items()}


def test_lww_keeps_the_greatest_stamp():
    s1, s2 = Stamp(5, b"a"), Stamp(6, b"a")
    assert lww(None, "x", s1) == ("x", s1)
    assert lww(("x", s1), "y", s2) == ("y", s2)
    assert lww(("y", s2), "x", s1) == ("y", s2)
    assert lww(("y", s2), "z", s2) == ("y", s2)  # the same op twice changes nothing


def test_later_edit_wins_and_notes_accumulate():
    t = hlc.pack(T0_MS)
    ops = [
        _item(make_op(Kind.TASK, b"t1", t, title="first", status=0, note="n1"), DEV_A),
        _item(make_op(Kind.TASK, b"t1", t + 5, title="second", note="n2"), DEV_B),
        _item(make_op(Kind.TASK, b"t1", t + 3, status=2, assignee=None), DEV_C),
    ]
    st_ = fold(ops)[(Kind.TASK, b"t1")]
    assert st_.values() == {"title": "second", "status": 2, "assignee": None, "note": ["n1", "n2"]}
    assert st_.head == ops[1][1]
    assert fold(reversed(ops)) == fold(ops)


def test_tie_on_hlc_is_broken_by_op_id_deterministically():
    t = hlc.pack(T0_MS, 3)
    a = _item(make_op(Kind.TASK, b"t", t, title="from A"), DEV_A)
    b = _item(make_op(Kind.TASK, b"t", t, title="from B"), DEV_B)
    assert a[1].ts == b[1].ts and a[1] < b[1]  # same time; b's device id sorts higher
    for order in ([a, b], [b, a], [a, b, a], [b, b, a]):
        s = fold(order)[(Kind.TASK, b"t")]
        assert s.values()["title"] == "from B"
        assert s.head == b[1]


def test_tie_after_capping_is_broken_by_op_id():
    # two far-future ops capped to the same effective time: the op id (raw HLC, then device) decides
    late = _item(make_op(Kind.TASK, b"t", hlc.pack(T0_MS + 2 * DAY), title="A, far ahead"), DEV_A, T0_MS)
    less_late = _item(make_op(Kind.TASK, b"t", hlc.pack(T0_MS + 2 * DAY), title="B, far ahead"), DEV_B, T0_MS)
    later = _item(make_op(Kind.TASK, b"t", hlc.pack(T0_MS + 9 * DAY), title="C, further ahead"), DEV_C, T0_MS - 1)
    assert late[1].ts == less_late[1].ts > later[1].ts
    assert late[1] < less_late[1]
    for order in ([late, less_late, later], [less_late, later, late], [later, late, less_late]):
        s = fold(order)[(Kind.TASK, b"t")]
        assert s.values()["title"] == "B, far ahead"
        assert s.head == less_late[1]


def test_clock_days_ahead_does_not_win_a_later_conflict():
    """Device A's laptop is three days fast. It edits a task at real time T0 and syncs; the relay
    stamps it received at T0. An hour later B, whose clock is right, edits the same field. B's
    edit is the later one and must win on every replica once effective() caps A's HLC."""
    a_clock, b_clock = hlc.Clock(), hlc.Clock()
    # LWW fields (status and assignee follow the assignment policy, tested in test_policy.py)
    a_op = make_op(Kind.TASK, b"t", a_clock.now(T0_MS + 3 * DAY), priority=0, due=100)
    b_clock.observe(a_op.hlc, T0_MS + HOUR)  # B sees A's edit first (bounded by the skew)
    b_op = make_op(Kind.TASK, b"t", b_clock.now(T0_MS + HOUR), priority=3, due=200)
    assert a_op.hlc > b_op.hlc  # by raw HLC, A (wrongly) wins

    a = _item(a_op, DEV_A, received=T0_MS)
    b = _item(b_op, DEV_B, received=T0_MS + HOUR)
    for order in ([a, b], [b, a], [b, a, b, a]):
        s = fold(order)[(Kind.TASK, b"t")]
        assert s.values() == {"priority": 3, "due": 200}
        assert s.head == b[1]

    # without the relay's receive time (never relayed), the raw HLC stands: that is what the cap fixes
    uncapped = fold([_item(a_op, DEV_A), _item(b_op, DEV_B)])[(Kind.TASK, b"t")]
    assert uncapped.values()["priority"] == 0


def test_honest_concurrent_edits_are_not_reordered_by_the_cap():
    t = hlc.pack(T0_MS)
    a = _item(make_op(Kind.MEMBER, b"m", t + 10, laptop=True), DEV_A, T0_MS + 5000)
    b = _item(make_op(Kind.MEMBER, b"m", t + 20, laptop=False), DEV_B, T0_MS + 1000)
    assert fold([a, b])[(Kind.MEMBER, b"m")].values()["laptop"] is False


def test_apply_op_refuses_the_wrong_entity():
    t = hlc.pack(T0_MS)
    op = make_op(Kind.TASK, b"t", t, status=1)
    state = apply_op(None, op, stamp_for(op, DEV_A))
    other = make_op(Kind.TASK, b"u", t + 1, status=1)
    with pytest.raises(ValueError):
        apply_op(state, other, stamp_for(other, DEV_A))
    doc = make_op(Kind.DOC, b"t", t + 2, size=1)
    with pytest.raises(ValueError):
        apply_op(state, doc, stamp_for(doc, DEV_A))


def test_relay_view_ops_merge_routing_only():
    t = hlc.pack(T0_MS)
    op = make_op(Kind.TASK, b"t", t, status=1, title="secret")
    relay_op = type(op)(op.kind, op.entity, op.hlc, op.base, op.fields, None)
    s = apply_op(None, relay_op, stamp_for(relay_op, DEV_A))
    assert s.values() == {"status": 1}


def test_entity_state_values_orders_notes_by_op_id():
    s = EntityState(Kind.TASK, b"t")
    s.appends[34] = {b"\x02": "second", b"\x01": "first"}
    assert s.values() == {"note": ["first", "second"]}


# -- convergence property -------------------------------------------------------------------------------

DEVICES = [DEV_A, DEV_B, DEV_C, DEV_D]
ENTITIES = [(Kind.TASK, b"t1"), (Kind.TASK, b"t2"), (Kind.DOC, b"d1"), (Kind.MEMBER, b"m1")]

_task_vals = st.fixed_dictionaries({}, optional={
    "assignee": st.none() | st.sampled_from(["anna", "bert", "cem"]), "status": st.integers(0, 3),
    "due": st.none() | st.integers(19_000, 19_010), "title": st.sampled_from(["a", "b", "c"]),
    "note": st.sampled_from(["n1", "n2", "same"])})
_doc_vals = st.fixed_dictionaries({}, optional={
    "task": st.none() | st.sampled_from([b"t1", b"t2"]), "name": st.sampled_from(["x.pdf", "y.pdf"]),
    "data": st.binary(max_size=4)})
_member_vals = st.fixed_dictionaries({}, optional={
    "laptop": st.booleans(), "office_days": st.integers(0, 127), "display_name": st.sampled_from(["A", "B"])})
_VALS = {Kind.TASK: _task_vals, Kind.DOC: _doc_vals, Kind.MEMBER: _member_vals}

# a few wall times, with collisions on purpose, and clocks days ahead
_ms = st.sampled_from([T0_MS, T0_MS + 1, T0_MS + HOUR, T0_MS + 3 * DAY, T0_MS + 30 * DAY, T0_MS - DAY])


@st.composite
def op_sets(draw):
    """Ops from 3-4 devices, each device's HLCs strictly increasing, with relay receive times."""
    n_dev = draw(st.integers(3, 4))
    items = []
    for device in DEVICES[:n_dev]:
        t = 0
        for _ in range(draw(st.integers(0, 6))):
            kind, entity = draw(st.sampled_from(ENTITIES))
            t = max(t + 1, hlc.pack(draw(_ms), draw(st.integers(0, 3))))
            op = make_op(kind, entity, t, **draw(_VALS[kind]))
            received = draw(st.none() | _ms)
            items.append(_item(op, device, received))
    return items


@settings(max_examples=scaled_examples(150))
@given(op_sets(), st.randoms(use_true_random=False), st.data())
def test_any_order_with_duplicates_converges(items, rnd, data):
    reference = _view(fold(items))
    for _ in range(3):
        shuffled = list(items)
        rnd.shuffle(shuffled)
        dups = data.draw(st.lists(st.sampled_from(items), max_size=5)) if items else []
        with_dups = shuffled + dups
        rnd.shuffle(with_dups)
        assert _view(fold(shuffled)) == reference
        assert _view(fold(with_dups)) == reference
    # and the result is what the rule says, not merely the same everywhere
    for (kind, entity), (values, head) in reference.items():
        mine = [(op, s) for op, s in items if (op.kind, op.entity) == (kind, entity)]
        assert head == max(s for _, s in mine)
        for name in values:
            writers = [(s, op.named()[name]) for op, s in mine if name in op.named()]
            if name == "note":
                assert values[name] == [v for _, v in sorted(writers, key=lambda w: w[0].op_id)]
            elif name == "status" and any(v == 2 for _, v in writers):
                # ops without a base revision are all concurrent: a task marked done stays done
                assert values[name] == 2
            else:
                assert values[name] == max(writers, key=lambda w: w[0])[1]


def test_fold_with_real_device_ids():
    t = hlc.pack(T0_MS)
    d1 = crypto.DeviceKey(bytes(32)).device_id
    d2 = crypto.DeviceKey(bytes([1]) * 32).device_id
    ops = [_item(make_op(Kind.TASK, b"t", t, title="x"), d1), _item(make_op(Kind.TASK, b"t", t, title="y"), d2)]
    winner = "x" if d1 > d2 else "y"
    assert fold(ops)[(Kind.TASK, b"t")].values()["title"] == winner
    assert fold(ops[::-1])[(Kind.TASK, b"t")].values()["title"] == winner
