"""protocol/vectors/sync.json: one sync round trip carrying real batches (PROTOCOL.md §16, §13a).

Member device d2 (bosco) sends its outbox batch; the relay (seed 0x41) answers with the ack, two
inline batches to apply (one by supervisor d1, one relay-authored rebalancing move: epoch 0, the
all-zero team *secret*, signed by the relay key), the whole roster (five-element entries, with
the role) and beside it what each device reads (``reads``, §16; d2's request declares it too), the
published keys and a rotation in progress. ``apply`` says, for each batch in the response, which key
verifies it, which team key opens it, the author's rank (§11) and the ops it decodes to. The batch bytes depend on the zstd release in ``meta`` (decoding does not).
"""

from __future__ import annotations

from typing import Any

import zstandard

from hbw_sync import batch as wire
from hbw_sync import bundle, crypto, enroll, envelope, hlc
from hbw_sync.ops import Kind, make_op

from ._ops import jval as _jval
from ._ops import op_json as _op_json

T0 = 1_760_000_000_000
MIN = 60_000
DAY = 86_400_000
TEAM = bytes.fromhex("0a0b0c0d0e0f1011")
AUTHOR = {"d1": crypto.DeviceKey(b"\x01" * 32), "d2": crypto.DeviceKey(b"\x11" * 32)}
TRANSPORT = {"d1": crypto.DeviceKey(b"\x31" * 32), "d2": crypto.DeviceKey(b"\x32" * 32)}
X25519 = {"d1": enroll.x25519_public(b"\x51" * 32), "d2": enroll.x25519_public(b"\x52" * 32)}
RELAY = crypto.DeviceKey(b"\x41" * 32)
TEAM_KEY = crypto.TeamKey(1, b"\x02" * 32)
RELAY_TEAM_KEY = crypto.TeamKey(0, bytes(32))  # public: relay-authored batches carry no content
TASK = bytes.fromhex("7461736b000000bb")
P = hlc.pack


def _tjson(v: Any) -> Any:
    """Typed JSON as in envelopes.json: bytes {hex}, maps with non-str keys {map: [...]}."""
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, list):
        return [_tjson(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            return {k: _tjson(x) for k, x in v.items()}
        return {"map": [[_tjson(k), _tjson(x)] for k, x in v.items()]}
    return v


def build() -> dict[str, Any]:
    d1, d2, relay_id = AUTHOR["d1"].device_id, AUTHOR["d2"].device_id, RELAY.device_id
    created = make_op(Kind.TASK, TASK, P(T0, 0), None, assignee="bosco", status=0, priority=2,
                      title="Scan the 2019 permits", note="from the spreadsheet")
    base = P(T0, 0).to_bytes(8, "big") + d1
    d1_batch = wire.encode_batch(wire.Batch(TEAM, d1, 41, 1, (created,)), AUTHOR["d1"], TEAM_KEY,
                                 nonce=b"\x0d" * 12)
    moved = make_op(Kind.TASK, TASK, P(T0 + 3 * MIN, 0), base, assignee="chidi")
    relay_batch = wire.encode_batch(wire.Batch(TEAM, relay_id, 3, 0, (moved,)), RELAY, RELAY_TEAM_KEY,
                                    nonce=b"\x0e" * 12)
    mine = make_op(Kind.TASK, TASK, P(T0 + 2 * MIN, 0), base, status=1, note="started on the scans")
    d2_batch = wire.encode_batch(wire.Batch(TEAM, d2, 5, 1, (mine,)), AUTHOR["d2"], TEAM_KEY, nonce=b"\x0f" * 12)

    nonce = bytes(range(0x40, 0x50))
    args = {"cursor": 1049, "budget": 200_000, "batches": [d2_batch], "roster_v": None, "reads": 1}
    request, _ = envelope.make_request(TRANSPORT["d2"], d2, "sync", args, T0 + 5 * MIN, nonce=nonce)
    t_resp = T0 + 5 * MIN + 40
    roster = {
        d1: ["amina", AUTHOR["d1"].public, X25519["d1"], None, "supervisor"],
        d2: ["bosco", AUTHOR["d2"].public, X25519["d2"], None, "member"],
    }
    result = {
        "acks": [[5, 1052, t_resp]], "rejects": [],
        "batches": [[1050, d1, T0 + 500, d1_batch], [1051, relay_id, T0 + 3 * MIN, relay_batch]],
        "cursor": 1052, "more": False, "roster": roster, "roster_full": True, "roster_v": 6,
        "reads": {d1: 1, d2: 0},  # d1 declared bit 0 (derived manifests, §16 ``reads``); d2 never declared
        "relay_x25519": enroll.x25519_public(bundle.relay_x25519(RELAY)),
        "keys": {1: TEAM_KEY.key_id}, "grants": [], "rotation": {"since": T0 - DAY, "epoch": 1},
        "want_snapshot": False,
    }
    response = envelope.make_response(RELAY, nonce, result, t_resp)
    assert envelope.parse_response(response, RELAY.public, nonce).result == result

    apply = []
    for rseq, dev, rcv, data in result["batches"]:
        from_relay = dev == relay_id
        pub = RELAY.public if from_relay else roster[dev][1]
        key = RELAY_TEAM_KEY if from_relay else TEAM_KEY
        decoded = wire.decode_batch(data, pub, key, team=TEAM)
        apply.append({"rseq": rseq, "device_id": dev.hex(), "received_ms": rcv,
                      "verify_with": "pinned relay key" if from_relay else "roster author_pub",
                      "public_key": pub.hex(), "epoch": decoded.epoch, "team_secret": key.secret.hex(),
                      "rank": 0 if from_relay else {"supervisor": 2, "member": 1}[roster[dev][4]],
                      "ops": [_op_json(op) for op in decoded.ops]})
    return {
        "meta": {"zstandard_version": zstandard.__version__, "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)),
                 "note": "batch bytes (and so the envelopes) are reproducible only with this zstd; decoding is not",
                 "relay_public": RELAY.public.hex(), "relay_device_id": relay_id.hex(), "team": TEAM.hex(),
                 "transport_public": TRANSPORT["d2"].public.hex()},
        "request": {"envelope": request.hex(), "nonce": nonce.hex(), "args": _tjson(args)},
        "response": {"envelope": response.hex(), "result": _tjson(result)},
        "apply": apply,
        "relay_scope": "a relay-authored batch is accepted only if every op is a task op that sets assignee and "
                       "nothing else (integrity.relay_scope); epoch 0 from any other device is integrity.epoch",
    }

