"""Streamed uploads (``POST /v1/stream``): the head is checked before any body byte, and bad ones change nothing.

A real relay on a loopback port; raw HTTP requests built by hand, as an attacker (or a broken
client) would send them. Each refused stream is checked to have stored nothing: no held bytes,
no batch; an honest stream after it still works.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hbw_sync import envelope
from hbw_sync.client import Device
from hbw_sync.client.sync import INLINE_MAX
from hbw_sync.server import limits, relay, stream

from hostile_helpers import post
from relay_helpers import Member, Team

# Runs against each relay storage backend (SQLite, PostgreSQL).
pytestmark = pytest.mark.usefixtures("backend")


def big_batch(m: Member, tmp: Path, size: int = 200_000) -> tuple[int, bytes]:
    """(seq, bytes) of a large batch waiting in ``m``'s outbox: a document of ``size`` random bytes."""
    f = tmp / f"doc-{os.urandom(4).hex()}.bin"
    f.write_bytes(os.urandom(size))
    with m.open() as rep:
        rep.add_doc(f)
        rep.close_outbox()
        return rep.store.execute("SELECT seq, data FROM outbox WHERE size > ? ORDER BY seq DESC",
                                 (INLINE_MAX,)).fetchone()


def head(m: Member, seq: int, total: int, offset: int, sha: bytes, *, sign: bool = True, t: int | None = None,
         nonce: bytes | None = None, action: str = "stream") -> tuple[bytes, bytes]:
    with Device.open(m.home) as dev:
        h, nonce = envelope.make_request(dev.transport_key(), dev.identity.device_id, action,
                                         {"seq": seq, "total": total, "offset": offset, "sha256": sha},
                                         relay.now_ms() if t is None else t, nonce=nonce)
    return (h if sign else h[:-64] + bytes(64)), nonce


def framed(h: bytes, payload: bytes) -> bytes:
    return len(h).to_bytes(2, "big") + h + payload


def send(team: Team, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    return post(team.url, body, headers, path="/v1/stream")


def answer(team: Team, m: Member, body: bytes, nonce: bytes) -> dict:
    """POST a stream and open the relay's signed answer (it must be for this head)."""
    u = urlsplit(team.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request("POST", "/v1/stream", body=body, headers={"Content-Type": "application/x-hbw"})
        r = conn.getresponse()
        raw = r.read()
    finally:
        conn.close()
    assert r.status == 200, raw[:300]
    return envelope.parse_response(raw, Device.open(m.home).store.meta("relay_public"), nonce).result


def held(team: Team) -> int:
    return team.sql("SELECT COALESCE(SUM(length(data)), 0) FROM upload_chunks")[0][0]


def batches(team: Team) -> int:
    return team.sql("SELECT COUNT(*) FROM batches")[0][0]


def test_an_honest_stream_in_two_parts_becomes_the_batch(team: Team, tmp_path: Path) -> None:
    amina = team.join("amina", "supervisor")
    seq, data = big_batch(amina, tmp_path)
    sha, n = hashlib.sha256(data).digest(), len(data)
    before = batches(team)
    h, nonce = head(amina, seq, n, 0, sha)
    assert answer(team, amina, framed(h, data[:70_000]), nonce) == {"offset": 70_000}  # a stream may stop short
    assert held(team) == 70_000
    h, nonce = head(amina, seq, n, 70_000, sha)
    res = answer(team, amina, framed(h, data[70_000:]), nonce)
    assert res["offset"] == n and res["ack"][0] == seq
    assert held(team) == 0 and batches(team) == before + 1
    # the same batch again: acknowledged, nothing read, nothing stored twice
    h, nonce = head(amina, seq, n, 0, sha)
    assert answer(team, amina, framed(h, data), nonce)["ack"] == res["ack"]
    assert batches(team) == before + 1
    assert amina.sync().ok


HOSTILE = ["unsigned head", "replayed head", "stale head", "another action", "offset beyond held",
           "longer than what is left", "no Content-Length", "head over its limit", "compressed",
           "unknown device"]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_bad_stream_head_is_refused_before_the_body_and_changes_nothing(team: Team, tmp_path: Path,
                                                                         case: str) -> None:
    amina = team.join("amina", "supervisor")
    seq, data = big_batch(amina, tmp_path)
    sha, n = hashlib.sha256(data).digest(), len(data)
    # the relay already holds 10,000 bytes of it
    h, nonce = head(amina, seq, n, 0, sha)
    assert answer(team, amina, framed(h, data[:10_000]), nonce) == {"offset": 10_000}
    before = batches(team)
    rest = data[10_000:]
    headers: dict = {}
    if case == "unsigned head":
        body, want = framed(head(amina, seq, n, 10_000, sha, sign=False)[0], rest), (400, "integrity.signature")
    elif case == "replayed head":
        h, nonce = head(amina, seq, n, 10_000, sha)
        assert answer(team, amina, framed(h, b""), nonce) == {"offset": 10_000}  # the head, once, with no body
        body, want = framed(h, rest), (403, "access.replay")
    elif case == "stale head":
        body, want = framed(head(amina, seq, n, 10_000, sha, t=relay.now_ms() - 3_600_000)[0], rest), \
            (403, "access.clock")
    elif case == "another action":
        body, want = framed(head(amina, seq, n, 10_000, sha, action="upload")[0], rest), (400, "protocol.action")
    elif case == "offset beyond held":  # a signed answer that says where the relay is; nothing read
        h, nonce = head(amina, seq, n, 50_000, sha)
        assert answer(team, amina, framed(h, data[50_000:]), nonce) == {"offset": 10_000}
        body, want = None, None
    elif case == "longer than what is left":
        body, want = framed(head(amina, seq, n, 10_000, sha)[0], rest + b"x"), (413, "protocol.limit")
    elif case == "no Content-Length":
        body, want = framed(head(amina, seq, n, 10_000, sha)[0], rest), (400, "protocol.length")
        u = urlsplit(team.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        conn.request("POST", "/v1/stream", body=iter([body]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        import json
        got = (r.status, json.loads(r.read())["code"])
        conn.close()
        assert got == want
        body = None
    elif case == "head over its limit":
        big = bytes(limits.STREAM_HEAD_MAX + 1)
        body, want = len(big).to_bytes(2, "big") + big + rest, (413, "protocol.limit")
    elif case == "compressed":
        body, want = framed(head(amina, seq, n, 10_000, sha)[0], rest), (400, "protocol.encoding")
        headers = {"Content-Encoding": "gzip"}
    else:  # unknown device
        h = bytearray(head(amina, seq, n, 10_000, sha)[0])
        at = h.index(Device.open(amina.home).identity.device_id)
        h[at:at + 8] = os.urandom(8)
        body, want = framed(bytes(h), rest), (403, "access.unknown_device")
    if body is not None:
        status, err = send(team, body, headers)
        assert (status, err.get("code")) == want, err
        assert err["message"] and "Error" not in err["message"]
    assert held(team) == 10_000 and batches(team) == before  # nothing changed
    assert amina.sync().ok  # and the honest device finishes the upload
    assert held(team) == 0 and batches(team) == before + 1


def test_wrong_sha256_at_the_end_drops_the_bytes_and_stores_no_batch(team: Team, tmp_path: Path) -> None:
    amina = team.join("amina", "supervisor")
    seq, data = big_batch(amina, tmp_path)
    before = batches(team)
    h, nonce = head(amina, seq, len(data), 0, hashlib.sha256(b"other bytes").digest())
    res = answer(team, amina, framed(h, data), nonce)
    assert res["offset"] == 0 and res["restart"]["code"] == "integrity.sha256"
    assert held(team) == 0 and batches(team) == before
    assert amina.sync().ok and batches(team) == before + 1


def test_a_stream_over_the_device_quota_is_refused_before_its_body(team: Team, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """Unfinished uploads count against the device's quota (the relay evicts its oldest other ones first)."""
    amina = team.join("amina", "supervisor")
    seq, data = big_batch(amina, tmp_path)
    monkeypatch.setattr(limits, "UPLOAD_QUOTA", 100_000)
    h, _nonce = head(amina, seq, len(data), 0, hashlib.sha256(data).digest())
    status, err = send(team, framed(h, data))
    assert (status, err["code"]) == (413, "protocol.quota")
    assert held(team) == 0
    # within the quota, the bytes a stream brings count too: a part that fits is kept
    h, nonce = head(amina, seq, len(data), 0, hashlib.sha256(data).digest())
    assert answer(team, amina, framed(h, data[:90_000]), nonce) == {"offset": 90_000}
    h, _nonce = head(amina, seq, len(data), 90_000, hashlib.sha256(data).digest())
    status, err = send(team, framed(h, data[90_000:]))
    assert (status, err["code"]) == (413, "protocol.quota") and held(team) == 90_000
    monkeypatch.setattr(limits, "UPLOAD_QUOTA", 64 << 20)
    assert amina.sync().ok and held(team) == 0


def test_stream_head_fields_are_in_the_limits_table() -> None:
    """The args the routes read are the ones ``limits.STREAM`` and ``limits.FETCH`` bound."""
    import ast
    import inspect

    src = ast.parse(inspect.getsource(stream))
    read = {n.args[0].value for n in ast.walk(src) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "get" and ast.unparse(n.func.value) == "a" and n.args
            and isinstance(n.args[0], ast.Constant)}
    assert read and read <= set(limits.STREAM.args) | set(limits.FETCH.args)


def test_a_chunk_pack_streams_at_the_byte_and_a_bad_one_keeps_nothing(team: Team, tmp_path: Path) -> None:
    """Document chunks stream as packs (``chunks: true``): kept in the chunk store once whole; a pack
    that does not parse, or a seq in the wrong range, is refused and nothing of it is kept."""
    from hbw_sync import chunks

    amina = team.join("amina", "supervisor")
    pieces = [(os.urandom(16), os.urandom(5_000)), (os.urandom(16), os.urandom(70_000))]
    data = chunks.pack_chunks(pieces)
    sha, n = hashlib.sha256(data).digest(), len(data)
    seq = limits.PACK_SEQ + 7

    def pack_head(seq: int, offset: int, sha: bytes = sha, total: int = n, flag: bool = True) -> tuple[bytes, bytes]:
        with Device.open(amina.home) as dev:
            args = {"seq": seq, "total": total, "offset": offset, "sha256": sha}
            if flag:
                args["chunks"] = True
            return envelope.make_request(dev.transport_key(), dev.identity.device_id, "stream", args, relay.now_ms())

    def chunk_files() -> int:  # chunks held (files on SQLite, rows on PostgreSQL: relay_helpers)
        return len(team.chunk_ids())

    # the wrong range for each kind: nothing read
    for s_, flag in ((5, True), (seq, False)):
        h, _n = pack_head(s_, 0, flag=flag)
        status, err = send(team, framed(h, data))
        assert (status, err["code"]) == (400, "protocol.schema"), err
    h, _n = pack_head(seq, 0, total=limits.PACK_MAX + 1)
    assert send(team, framed(h, data))[1]["code"] == "protocol.limit"
    assert held(team) == 0 and chunk_files() == 0
    # an honest pack, in two streams
    h, nonce = pack_head(seq, 0)
    assert answer(team, amina, framed(h, data[:40_000]), nonce) == {"offset": 40_000}
    h, nonce = pack_head(seq, 40_000)
    assert answer(team, amina, framed(h, data[40_000:]), nonce) == {"offset": n, "stored": 2}
    assert held(team) == 0 and chunk_files() == 2
    # a pack whose entry claims more bytes than a sealed chunk can have: refused whole
    bad = pieces[0][0] + (10 << 20).to_bytes(4, "big") + os.urandom(3_000)
    h, nonce = pack_head(seq + 1, 0, hashlib.sha256(bad).digest(), len(bad))
    res = answer(team, amina, framed(h, bad), nonce)
    assert res["offset"] == 0 and res["reject"]["code"] == "protocol.schema"
    assert held(team) == 0 and chunk_files() == 2


def test_chunk_packs_round_trip_and_refuse_truncation() -> None:
    from hbw_sync import chunks
    from hbw_sync.errors import ProtocolError

    pieces = [(bytes([i]) * 16, os.urandom(100 + i)) for i in range(5)]
    data = chunks.pack_chunks(pieces)
    assert chunks.unpack_chunks(data, 10) == pieces
    for cut in range(1, len(data)):  # every prefix that ends inside an entry
        ends = {sum(16 + 4 + len(s) for _c, s in pieces[:k]) for k in range(6)}
        if cut in ends:
            continue
        with pytest.raises(ProtocolError) as e:
            chunks.unpack_chunks(data[:cut], 10)
        assert e.value.code == "protocol.truncated"
    with pytest.raises(ProtocolError) as e:
        chunks.unpack_chunks(data, 4)
    assert e.value.code == "protocol.schema"


def test_a_fetch_streams_from_an_offset_and_bad_ones_are_refused(team: Team, tmp_path: Path) -> None:
    """``POST /v1/fetch``: a signed head for the request's nonce (size, offset, SHA-256), then the bytes."""
    amina = team.join("amina", "supervisor")
    seq, data = big_batch(amina, tmp_path)
    assert amina.sync().ok
    rseq = team.sql("SELECT MAX(rseq) FROM batches")[0][0]

    def fetch(args: dict, sign: bool = True, replay: bytes | None = None) -> tuple[int, bytes, bytes]:
        with Device.open(amina.home) as dev:
            body, nonce = envelope.make_request(dev.transport_key(), dev.identity.device_id, "fetch", args,
                                                relay.now_ms(), nonce=replay)
        if not sign:
            body = body[:-64] + bytes(64)
        u = urlsplit(team.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.request("POST", "/v1/fetch", body=body, headers={"Content-Type": "application/x-hbw"})
            r = conn.getresponse()
            return r.status, r.read(), nonce
        finally:
            conn.close()

    status, raw, nonce = fetch({"rseq": rseq, "offset": 100_000})
    assert status == 200
    n = int.from_bytes(raw[:2], "big")
    head = envelope.parse_response(raw[2:2 + n], Device.open(amina.home).store.meta("relay_public"), nonce).result
    stored = team.sql("SELECT data FROM batches WHERE rseq = ?", (rseq,))[0][0]
    assert head == {"size": len(stored), "offset": 100_000, "sha256": hashlib.sha256(stored).digest()}
    assert raw[2 + n:] == stored[100_000:]
    import json
    for args, sign, want in (({"rseq": rseq}, False, (400, "integrity.signature")),
                             ({"rseq": 10**9}, True, (400, "usage.not_found")),
                             ({"rseq": rseq, "offset": len(stored) + 1}, True, (400, "protocol.schema")),
                             ({"rseq": rseq, "pad": bytes(5000)}, True, (413, "protocol.limit"))):
        status, raw, _n = fetch(args, sign)
        assert (status, json.loads(raw)["code"]) == want, raw[:200]
    status, raw, _n = fetch({"rseq": rseq}, replay=nonce)  # the same nonce again
    assert (status, json.loads(raw)["code"]) == (403, "access.replay")
