"""``ops.check_routing_rows`` (the relay's one-pass check) against ``op_from_row`` + ``validate_op``.

The relay stores a batch only if its routing rows pass; the clients build ``Op`` objects from
the same rows. The two must accept and refuse the same rows with the same error code, or the
relay would store batches no device can read (or refuse ones they could).
"""

from __future__ import annotations

import copy
import random

import pytest

from hbw_sync import batch as wire
from hbw_sync.errors import ProtocolError
from hbw_sync.ops import Kind, NAMES, check_routing_rows, is_member_name, make_op, routing_row


def _verdict(fn, rows):
    try:
        return ("ok", fn(rows))
    except ProtocolError as e:
        return (e.code, e.message)


def _by_ops(rows):
    ops = wire._ops(rows, None, None)  # the clients' path, no content
    return len(ops), [op.fields[NAMES[Kind.DOC]["chunks"].tag] for op in ops
                      if op.kind is Kind.DOC and op.fields.get(NAMES[Kind.DOC]["chunks"].tag)]


def _good_rows() -> list:
    cid = bytes(range(16))
    ops = [make_op(Kind.TASK, b"t1", 10, assignee="amina", status=1),
           make_op(Kind.TASK, b"t2", 11, None, assignee=None),
           make_op(Kind.DOC, b"d1", 12, chunks=cid * 3),
           make_op(Kind.TASK, b"t1", 13, bytes(16), assignee="bosco.k_2-x")]
    return [routing_row(op) for op in ops]


def test_the_same_verdict_on_good_rows_and_on_every_mutation_of_them() -> None:
    rows = _good_rows()
    assert _verdict(check_routing_rows, rows) == _verdict(_by_ops, rows)
    assert check_routing_rows(rows)[0] == 4 and check_routing_rows(rows)[1] == [bytes(range(16)) * 3]
    odd = [None, -1, 0, 1, 2**64, 2**64 - 1, True, 7, 99, "x", "", "A", "amina\n", "a" * 33, b"", b"x" * 16,
           b"x" * 33, [], {}, {1: "amina"}, {999: 1}, {"1": "a"}, 1.5]
    rng = random.Random(16)
    seen = set()
    for _ in range(3000):
        bad = copy.deepcopy(rows)
        i = rng.randrange(len(bad))
        how = rng.randrange(4)
        if how == 0:
            bad[i] = rng.choice(odd)
        elif how == 1:
            bad[i][rng.randrange(5)] = rng.choice(odd)
        elif how == 2 and isinstance(bad[i][4], dict) and bad[i][4]:
            bad[i][4][rng.choice(list(bad[i][4]))] = rng.choice(odd)
        else:
            bad[i], bad[-1] = bad[-1], bad[i]  # order
        mine, theirs = _verdict(check_routing_rows, bad), _verdict(_by_ops, bad)
        assert mine[0] == theirs[0], (bad, mine, theirs)
        if mine[0] != "ok":
            assert mine == theirs
        seen.add(mine[0])
    assert {"ok", "protocol.schema", "protocol.order"} <= seen


@pytest.mark.parametrize("name,ok", [("amina", True), ("a", True), ("a" * 32, True), ("a.b_c-9", True),
                                     ("", False), ("a" * 33, False), ("Amina", False), ("amina\n", False),
                                     ("am ina", False), ("é", False), ("١", False), (b"amina", False), (None, False)])
def test_member_names_by_the_precompiled_pattern(name, ok) -> None:
    assert is_member_name(name) is ok
