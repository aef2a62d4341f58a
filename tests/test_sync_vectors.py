"""protocol/vectors/sync.json: a sync round trip with real batches, read back by the reference.

The response must verify with the pinned relay key for the request's nonce, carry roster
entries with the role, and every batch in it must decode with the key ``apply`` names to the ops
it lists: the supervisor's with the roster's author key and the team key, the relay's move with
the pinned relay key and the all-zero team secret (PROTOCOL.md §16).
"""

from __future__ import annotations

import json
from pathlib import Path

from hbw_sync import batch, crypto, envelope
from hbw_sync.client.replica import RELAY_KEY

D = json.loads((Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "sync.json").read_text())


def test_request_and_response_verify() -> None:
    req = envelope.parse_request(bytes.fromhex(D["request"]["envelope"]))
    req.verify(bytes.fromhex(D["meta"]["transport_public"]))
    res = envelope.parse_response(bytes.fromhex(D["response"]["envelope"]), bytes.fromhex(D["meta"]["relay_public"]),
                                  req.nonce).result
    assert all(len(e) == 5 and e[4] in ("member", "supervisor") for e in res["roster"].values())
    assert [b[0] for b in res["batches"]] == [a["rseq"] for a in D["apply"]]
    assert res["rotation"]["epoch"] == 1 and res["keys"] == {1: crypto.TeamKey(1, b"\x02" * 32).key_id}


def test_every_batch_applies_with_the_key_named() -> None:
    res = envelope.parse_response(bytes.fromhex(D["response"]["envelope"]), bytes.fromhex(D["meta"]["relay_public"]),
                                  bytes.fromhex(D["request"]["nonce"])).result
    for entry, a in zip(res["batches"], D["apply"]):
        key = crypto.TeamKey(a["epoch"], bytes.fromhex(a["team_secret"]))
        if a["epoch"] == 0:
            assert key == RELAY_KEY  # the client's own constant: the zero *secret*
        decoded = batch.decode_batch(entry[3], bytes.fromhex(a["public_key"]), key, team=bytes.fromhex(D["meta"]["team"]))
        assert len(decoded.ops) == len(a["ops"]) and decoded.ops[0].hlc == a["ops"][0]["hlc"]
    relay = D["apply"][1]
    assert relay["device_id"] == D["meta"]["relay_device_id"] and set(relay["ops"][0]["fields"]) == {"assignee"}
