"""protocol/vectors/evidence.json: evidence files an auditor verifies offline (PROTOCOL.md §24), good and bad.

One small team: dana (supervisor, device d1, enrolled first, so no approval), chidi and amina
(members, approved by dana; amina's device is revoked at T0 + 60 min). Four batches reach the
relay (team sequence 1-4). ``keys`` gives every seed, so a reader can check each signature.

Good vectors: the whole range; a member scope (every receipt listed, only chidi's batches in
scope and in the file). A reader MUST verify ``file`` against ``relay_public`` with no problem,
and SHOULD reproduce ``expect`` (devices, entries, routing fields; content with the team key).

Bad vectors each change one thing from the whole-range file and are labelled with their outcome:

* ``refused``: the file cannot be read as evidence at all; the reader MUST fail with
  ``expected_error`` / ``expected_code`` (truncated, trailing bytes, not evidence, a later
  version, receipts not signed by the relay, a relay key other than the one given);
* ``problems``: the file parses, and the reader MUST report exactly ``expected_codes`` (in the
  order of §24.4): a batch altered, reordered, omitted, unlisted, signed by a revoked device after
  its revocation, forged, a certificate altered, the file's own signature broken, an unknown exporter.

Every bad file except the ``refused`` ones is re-signed by the exporter, so only the one change
is wrong. The batches are zstd-compressed: ``file`` bytes are reproducible only with the zstd
release in ``meta``; verifying them is not version-dependent.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import zstandard

from hbw_sync import approval, crypto, evidence, hlc
from hbw_sync import batch as wire
from hbw_sync.errors import HbwError
from hbw_sync.ops import Kind, make_op

T0 = 1_760_000_000_000  # 2025-10-09T08:53:20Z, as in the other vector files
MIN = 60_000
DAY = 86_400_000
TEAM = bytes.fromhex("0a0b0c0d0e0f1011")
TEAM_KEY = crypto.TeamKey(1, bytes(range(0x80, 0xA0)))
RELAY = crypto.DeviceKey(b"\x41" * 32)
OTHER_RELAY = crypto.DeviceKey(b"\x42" * 32)
#: name -> (seed, member, role, enrolled_ms, revoked_ms)
PEOPLE = {
    "d1": (b"\x01" * 32, "dana", "supervisor", T0 - 3 * DAY, None),
    "d2": (b"\x11" * 32, "chidi", "member", T0 - 2 * DAY, None),
    "d3": (b"\x21" * 32, "amina", "member", T0 - 2 * DAY, T0 + 60 * MIN),
}
KEYS = {n: crypto.DeviceKey(p[0]) for n, p in PEOPLE.items()}
TASK = bytes.fromhex("7461736b00000001")
MADE = T0 + 120 * MIN  # receipts signed
EXPORTED = MADE + 1_000  # file signed


def _nonce(name: str) -> bytes:
    return crypto.hkdf(b"hbw-sync evidence vectors", name.encode(), 12)


def _batch(dev: str, seq: int, *ops: Any) -> bytes:
    k = KEYS[dev]
    return wire.encode_batch(wire.Batch(TEAM, k.device_id, seq, TEAM_KEY.epoch, tuple(ops)), k, TEAM_KEY,
                             level=19, nonce=_nonce(f"{dev}/{seq}"))


def _history() -> list[tuple[int, str, int, bytes]]:
    """(received_ms, device name, seq, batch bytes) in the relay's order."""
    P = hlc.pack
    return [
        (T0 + 1 * MIN, "d1", 1, _batch("d1", 1, make_op(Kind.TASK, TASK, P(T0, 0), None, title="Inspect the market "
                                                        "stalls", assignee="chidi", status=0, priority=1, needs=0))),
        (T0 + 11 * MIN, "d2", 1, _batch("d2", 1, make_op(Kind.TASK, TASK, P(T0 + 10 * MIN, 0), None, status=1,
                                                         note="North side done"))),
        (T0 + 21 * MIN, "d3", 1, _batch("d3", 1, make_op(Kind.TASK, TASK, P(T0 + 20 * MIN, 0), None,
                                                         note="Stall 12 closed"))),
        (T0 + 31 * MIN, "d1", 2, _batch("d1", 2, make_op(Kind.TASK, TASK, P(T0 + 30 * MIN, 0), None, priority=2))),
    ]


def _late() -> tuple[int, str, int, bytes]:
    """amina's batch seq 2, made after her device was revoked (HLC T0 + 90 min)."""
    return (T0 + 91 * MIN, "d3", 2, _batch("d3", 2, make_op(Kind.TASK, TASK, hlc.pack(T0 + 90 * MIN, 0), None,
                                                            status=2)))


def _roster() -> list[evidence.Enrollment]:
    return [evidence.Enrollment(KEYS[n].device_id, m, r, KEYS[n].public, e, rv) for n, (_s, m, r, e, rv)
            in PEOPLE.items()]


def _approvals() -> list[bytes]:
    return [approval.make_approval(KEYS["d1"], KEYS[n].public, crypto.hkdf(PEOPLE[n][0], b"x25519", 32), PEOPLE[n][1],
                                   PEOPLE[n][2], T0 - 2 * DAY + 5 * MIN) for n in ("d2", "d3")]


def _receipts(history: list[tuple[int, str, int, bytes]], scope: evidence.Scope,
              inside: Callable[[str], bool] = lambda d: True, relay: crypto.DeviceKey = RELAY) -> bytes:
    recs = [evidence.Receipt(i + 1, KEYS[d].device_id, seq, t, hashlib.sha256(data).digest(), inside(d))
            for i, (t, d, seq, data) in enumerate(history)]
    return evidence.make_receipts(relay, TEAM, MADE, scope, 1, len(history), recs, _roster())


def _file(receipts: bytes, batches: list[bytes], *, approvals: list[bytes] | None = None,
          exporter: crypto.DeviceKey = KEYS["d1"], relay_pub: bytes = RELAY.public) -> bytes:
    return evidence.make_evidence(exporter, receipts, relay_pub, batches,
                                  _approvals() if approvals is None else approvals, EXPORTED)


def _plain(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _expect(r: evidence.Report, content: bool) -> dict[str, Any]:
    return _plain({
        "ok": r.ok, "exporter": r.exporter, "first_rseq": r.first_rseq, "last_rseq": r.last_rseq,
        "scope": {"member": r.scope.member, "task": r.scope.task, "since_ms": r.scope.since_ms,
                  "until_ms": r.scope.until_ms},
        "devices": r.devices,
        "entries": [{"rseq": e.rseq, "member": e.member, "device": e.device, "seq": e.seq,
                     "received_ms": e.received_ms,
                     "changes": [{"kind": c.kind, "entity": c.entity, "time_ms": c.time_ms, "fields": c.fields}
                                 for c in e.changes]} for e in r.entries],
        "content_shown": content,
    })


def _good() -> tuple[list[dict[str, Any]], list[bytes]]:
    history = _history()
    batches = [h[3] for h in history]
    whole = _file(_receipts(history, evidence.Scope()), batches)
    chidi = _file(_receipts(history, evidence.Scope(member="chidi"), lambda d: d == "d2"),
                  [h[3] for h in history if h[1] == "d2"])
    out = []
    for name, desc, data in (
        ("whole_range", "Every batch the relay holds (team sequence 1-4), all in scope.", whole),
        ("member_scope", "Scope member chidi: all four receipts, only chidi's batch in scope and in the file.", chidi),
    ):
        r = evidence.verify(data, RELAY.public)
        assert r.ok, r.problems
        with_key = evidence.verify(data, RELAY.public, {TEAM_KEY.epoch: TEAM_KEY})
        assert with_key.ok
        out.append({"name": name, "description": desc, "relay_public": RELAY.public.hex(), "file": data.hex(),
                    "expect": _expect(r, False), "expect_with_team_key": _expect(with_key, True)})
    return out, batches


def _refused(data: bytes, relay_pub: bytes) -> tuple[str, str]:
    try:
        evidence.verify(data, relay_pub)
    except HbwError as e:
        return type(e).__name__, e.code
    raise AssertionError("a refused evidence vector was read")


def _bad(whole: bytes, batches: list[bytes]) -> list[dict[str, Any]]:
    history = _history()
    late = _late()
    rec = _receipts(history, evidence.Scope())
    frame_len = evidence.FRAME.size
    out: list[dict[str, Any]] = []

    def refused(name: str, desc: str, data: bytes, relay_pub: bytes = RELAY.public) -> None:
        cls, code = _refused(data, relay_pub)
        out.append({"name": name, "description": desc, "outcome": "refused", "relay_public": relay_pub.hex(),
                    "file": data.hex(), "expected_error": cls, "expected_code": code})

    def problems(name: str, desc: str, data: bytes) -> None:
        r = evidence.verify(data, RELAY.public)
        assert not r.ok, name
        out.append({"name": name, "description": desc, "outcome": "problems", "relay_public": RELAY.public.hex(),
                    "file": data.hex(), "expected_codes": r.codes(),
                    "problem_rseqs": [p.rseq for p in r.problems]})

    refused("truncated", "The whole-range file without its last byte (part of the exporter's signature).", whole[:-1])
    refused("truncated_frame", "Only the first 10 bytes: the frame header is cut.", whole[:10])
    refused("trailing", "One byte after the exporter's signature.", whole + b"\x00")
    refused("not_evidence", "The magic's type byte is 'M' (receipts), not 'E'.", whole[:3] + b"M" + whole[4:])
    refused("later_version", "Format version 2.", whole[:4] + b"\x02" + whole[5:])
    bad_rec = bytearray(rec)
    bad_rec[frame_len + 2] ^= 0x01  # inside the team id
    refused("receipts_tampered", "One bit of the relay's receipts flipped (the file re-signed by the exporter): "
            "the receipts no longer match the relay's signature.", _file(bytes(bad_rec), batches))
    refused("other_relay_key", "Receipts honestly signed, but by a relay key other than the one the auditor gives.",
            _file(_receipts(history, evidence.Scope(), relay=OTHER_RELAY), batches, relay_pub=OTHER_RELAY.public))

    altered = bytearray(batches[1])
    altered[-70] ^= 0x01  # inside the sealed part: the batch still parses, its SHA-256 differs from its receipt
    problems("batch_altered", "chidi's batch (team sequence 2) with one bit flipped in its sealed part.",
             _file(rec, [batches[0], bytes(altered), *batches[2:]]))
    problems("reordered", "Batches 2 and 3 swapped.", _file(rec, [batches[0], batches[2], batches[1], batches[3]]))
    problems("omitted", "Batch 3 (amina's) left out although its receipt says it is in scope.",
             _file(rec, [batches[0], batches[1], batches[3]]))
    problems("duplicated", "Batch 2 twice.", _file(rec, [batches[0], batches[1], batches[1], *batches[2:]]))
    problems("unlisted", "A batch the relay's receipts do not list (amina's seq 2) added at the end.",
             _file(rec, batches + [late[3]]))
    late_hist = history + [late]
    problems("signed_after_revocation", "amina's device was revoked at T0+60 min; her batch seq 2 (HLC T0+90 min, "
             "received T0+91 min) is listed and in the file.", _file(_receipts(late_hist, evidence.Scope()),
                                                                     batches + [late[3]]))
    forged = bytearray(batches[1])
    forged[-1] ^= 0x01  # the author's signature; the receipt is made for these very bytes (a colluding relay)
    f_hist = [h if i != 1 else (h[0], h[1], h[2], bytes(forged)) for i, h in enumerate(history)]
    problems("batch_signature_forged", "chidi's batch with its signature changed, and receipts made for those bytes "
             "(a relay colluding with a forger).", _file(_receipts(f_hist, evidence.Scope()),
                                                         [batches[0], bytes(forged), *batches[2:]]))
    stranger = crypto.DeviceKey(b"\x51" * 32)
    k = stranger
    s_batch = wire.encode_batch(wire.Batch(TEAM, k.device_id, 1, TEAM_KEY.epoch, (make_op(
        Kind.TASK, TASK, hlc.pack(T0 + 40 * MIN, 0), None, priority=3),)), k, TEAM_KEY, level=19, nonce=_nonce("x/1"))
    KEYS["x"] = stranger  # only while the receipts are made: the roster does not list it
    try:
        s_rec = _receipts(history + [(T0 + 41 * MIN, "x", 1, s_batch)], evidence.Scope())
    finally:
        del KEYS["x"]
    problems("unknown_device", "A batch from a device the relay's roster does not list, with a receipt.",
             _file(s_rec, batches + [s_batch]))
    other_team = bytes.fromhex("f0f1f2f3f4f5f6f7")
    k = KEYS["d2"]
    o_batch = wire.encode_batch(wire.Batch(other_team, k.device_id, 2, TEAM_KEY.epoch, (make_op(
        Kind.TASK, TASK, hlc.pack(T0 + 40 * MIN, 0), None, priority=3),)), k, TEAM_KEY, level=19, nonce=_nonce("o/2"))
    o_rec = _receipts(history + [(T0 + 41 * MIN, "d2", 2, o_batch)], evidence.Scope())
    problems("other_team", "A batch chidi's device signed for another team, with a receipt.",
             _file(o_rec, batches + [o_batch]))
    appr = _approvals()
    appr[0] = appr[0][:-1] + bytes([appr[0][-1] ^ 0x01])
    problems("approval_altered", "dana's approval of chidi's device with its signature changed.",
             _file(rec, batches, approvals=appr))
    resigned = bytearray(whole)
    resigned[-1] ^= 0x01
    problems("file_signature_broken", "The exporter's signature over the file changed.", bytes(resigned))
    problems("unknown_exporter", "Signed by a device the relay's roster does not list.",
             _file(rec, batches, exporter=crypto.DeviceKey(b"\x51" * 32)))
    return out


def build() -> dict[str, Any]:
    good, batches = _good()
    whole = bytes.fromhex(good[0]["file"])
    return {
        "meta": {
            "zstandard_version": zstandard.__version__,
            "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)),
            "note": "the batches inside `file` are zstd-compressed: the bytes are reproducible only with this zstd; "
                    "verifying them is not version-dependent. Reader: PROTOCOL.md §24.4 with `relay_public`.",
        },
        "keys": {
            "team": TEAM.hex(),
            "team_keys": [{"epoch": TEAM_KEY.epoch, "secret": TEAM_KEY.secret.hex()}],
            "relay": {"seed": (b"\x41" * 32).hex(), "public": RELAY.public.hex()},
            "other_relay": {"seed": (b"\x42" * 32).hex(), "public": OTHER_RELAY.public.hex()},
            "devices": [{"name": n, "member": m, "role": r, "seed": s.hex(), "author_public": KEYS[n].public.hex(),
                         "device_id": KEYS[n].device_id.hex(), "enrolled_ms": e, "revoked_ms": rv}
                        for n, (s, m, r, e, rv) in PEOPLE.items()],
        },
        "valid": good,
        "invalid": _bad(whole, batches),
    }
