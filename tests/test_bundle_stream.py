"""Bundle format 2 (PROTOCOL.md §18b): 64 KiB sealed segments, read and written in flat memory.

The format itself first, sans-IO: every cut at a segment boundary, reordered, dropped or
spliced segments, a final flag in the wrong place, bytes after the end, and a body its signed
envelope does not name, each refused with its code. Then through the real CLIs and a real relay
on loopback: a hostile stream changes nothing at the relay, a version 1 bundle (an older
device) is still ingested and answered in version 1, a bundle above the old ~33 MB limit is
taken, ``--max-size none`` writes one file, a revoked device is refused before it writes
anything, and a full disk leaves no half-written bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import bundle as B
from hbw_sync import crypto, envelope
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client.bundles import MAX_REPLY
from hbw_sync.client.device import now_ms
from hbw_sync.errors import HbwError, IntegrityError, ProtocolError
from hbw_sync.server import admin
from hbw_sync.server.cli import cli as relay_cli

from relay_helpers import Member, Team, incompressible
from relay_helpers import member_cli as cli
from test_faults import small_fs  # noqa: F401  (a fixture: a real 16 MB tmpfs, loud when absent)

MB = 1_000_000
TEAM, RECIPIENT = b"T" * 8, b"R" * 8
_PRIV = bytes(range(1, 33))
_PUB = B._x_pub(B.X25519PrivateKey.from_private_bytes(_PRIV))
SS = B.SEGMENT_SEALED


def seal(envlen: int, body: bytes, *, eph: bytes = b"\x05" * 32) -> tuple[bytes, bytes, B.StreamSealer]:
    env = random.Random(envlen).randbytes(envlen)
    s = B.StreamSealer(B.TO_RELAY, TEAM, RECIPIENT, _PUB, ephemeral=eph)
    out = s.header + s.feed(len(env).to_bytes(4, "big") + env) + s.feed(body) + s.finish()
    return out, env, s


def read(data: bytes, sink: list[bytes] | None = None) -> B.Opened:
    got = sink if sink is not None else []
    return B.open_stream(io.BytesIO(data).read, B.TO_RELAY, TEAM, RECIPIENT, _PRIV, got.append)


def code_of(data: bytes) -> str:
    with pytest.raises(HbwError) as e:
        read(data)
    return e.value.code


def segments(data: bytes) -> list[bytes]:
    body = data[B.HEADER.size:]
    return [body[i:i + SS] for i in range(0, len(body), SS)]


BODY = random.Random(2).randbytes(3 * B.SEGMENT + 1000)


def test_round_trip_at_every_segment_edge() -> None:
    """Plaintexts that end just before, on and after a segment edge, with and without a body."""
    for envlen, body in [(1, b""), (B.SEGMENT - 4, b""), (B.SEGMENT - 4, b"x"), (B.SEGMENT - 3, b""),
                         (200, BODY), (2 * B.SEGMENT, BODY[:B.SEGMENT])]:
        data, env, s = seal(envlen, body)
        got: list[bytes] = []
        o = read(data, got)
        assert (o.envelope, b"".join(got), o.segments, o.body_length) == (env, body, s.segments, len(body))
        assert o.segments == B.segments_for(4 + envlen + len(body)) == len(segments(data))
        assert o.body_sha256 == hashlib.sha256(body).digest() and o.version == 2
        o.check_named([hashlib.sha256(body).digest(), s.segments, len(body)])


def test_every_cut_is_refused() -> None:
    data, _env, _s = seal(300, BODY)
    n = len(segments(data))
    assert n == 4
    for k in range(1, n):  # whole segments gone from the end: the last one left is not the final one
        assert code_of(data[:B.HEADER.size + k * SS]) == "protocol.truncated"
    for cut in range(B.HEADER.size, len(data), 997):  # any other cut: the segment it ends in does not open
        assert code_of(data[:cut]) in ("protocol.truncated", "integrity.aead"), cut
    assert code_of(data[:B.HEADER.size]) == "protocol.truncated"
    assert code_of(data[:30]) == "protocol.truncated"


def test_reordered_dropped_spliced_and_trailing_segments_are_refused() -> None:
    data, _env, _s = seal(300, BODY)
    head, segs = data[:B.HEADER.size], segments(data)
    assert code_of(head + segs[1] + segs[0] + b"".join(segs[2:])) == "integrity.aead"  # reordered
    assert code_of(head + segs[0] + b"".join(segs[2:])) == "integrity.aead"  # one dropped
    assert code_of(head + b"".join(segs[:3]) + segs[2] + segs[3]) == "integrity.aead"  # one repeated
    other, _e, _s = seal(300, BODY, eph=b"\x06" * 32)  # the same plaintext sealed to another key
    assert code_of(head + segs[0] + segments(other)[1] + b"".join(segs[2:])) == "integrity.aead"  # spliced
    assert code_of(data + b"\x00") == "integrity.aead"  # a byte after the end: the last segment no longer opens
    assert code_of(data + segs[1]) == "integrity.aead"  # a whole segment after the final one
    # A final segment in the middle: a writer that said "the end" and went on.
    s = B.StreamSealer(B.TO_RELAY, TEAM, RECIPIENT, _PUB, ephemeral=b"\x05" * 32)
    plain = (10).to_bytes(4, "big") + bytes(10) + BODY
    early = s.header + s._seal(plain[:B.SEGMENT], True) + s._seal(plain[B.SEGMENT:2 * B.SEGMENT], False)
    assert code_of(early) == "protocol.trailing"
    for i in range(B.HEADER.size, len(data), 4099):  # every flipped byte of the segments
        assert code_of(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]) == "integrity.aead", i


def test_the_header_is_checked_before_any_segment() -> None:
    data, _env, _s = seal(10, b"")
    assert code_of(b"PK\x03\x04 a zip") == "protocol.magic"
    assert code_of(data[:4] + b"\x03" + data[5:]) == "protocol.version"
    assert code_of(data[:5] + b"\x01" + data[6:]) == "protocol.version"
    assert code_of(data[:3] + b"Y" + data[4:]) == "protocol.bundle_type"
    assert code_of(data[:6] + b"U" * 8 + data[14:]) == "integrity.team"
    assert code_of(data[:14] + b"U" * 8 + data[22:]) == "integrity.recipient"
    assert code_of(data[:22] + bytes(32) + data[54:]) == "integrity.aead"  # a low-order ephemeral key


def test_an_envelope_over_its_limit_is_refused_before_it_is_held() -> None:
    s = B.StreamSealer(B.TO_RELAY, TEAM, RECIPIENT, _PUB)
    data = s.header + s.feed((2**31).to_bytes(4, "big") + bytes(100)) + s.finish()
    assert code_of(data) == "protocol.limit"
    data, _env, _s = seal(10, b"")
    with pytest.raises(HbwError) as e:
        B.open_stream(io.BytesIO(data).read, B.TO_RELAY, TEAM, RECIPIENT, _PRIV, print, max_total=60)
    assert e.value.code == "protocol.limit"


def test_a_body_the_envelope_does_not_name_is_refused() -> None:
    data, _env, s = seal(300, BODY)
    o = read(data)
    good = [hashlib.sha256(BODY).digest(), s.segments, len(BODY)]
    for named in ([good[0], s.segments + 1, len(BODY)], [good[0], s.segments, len(BODY) - 1],
                  [bytes(32), s.segments, len(BODY)], None, "x"):
        with pytest.raises(IntegrityError) as e:
            o.check_named(named)
        assert e.value.code == "integrity.body"


def test_body_records_are_bounded_before_they_are_read() -> None:
    rec = B.body_record(b"i" * 16, b"s" * 40)
    assert list(B.body_records(io.BytesIO(rec + rec).read)) == [(b"i" * 16, b"s" * 40)] * 2
    for bad in (rec[:10], rec[:-1], b"i" * 16 + (2**31).to_bytes(4, "big"), b"i" * 16 + (3).to_bytes(4, "big")):
        with pytest.raises(ProtocolError) as e:
            list(B.body_records(io.BytesIO(bad).read))
        assert e.value.code == "protocol.chunk"


# -- through the real CLIs, a real relay on loopback ----------------------------------------------


def relay_state(team: Team) -> tuple:
    """What a refused bundle must not change: batches, chunks, counters, audit rows."""
    return (team.sql("SELECT COUNT(*) FROM batches")[0][0], team.chunk_bytes(),
            sorted(tuple(r) for r in team.sql("SELECT device, last_bundle FROM devices")),
            team.sql("SELECT COUNT(*) FROM audit")[0][0])


def ingest(team: Team, path: Path, out: Path) -> tuple[int, str]:
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(path),
                                         "--reply-dir", str(out), "--json"])
    return res.exit_code, res.output


def add_doc(m: Member, tmp_path: Path, size: int, name: str = "scan.pdf") -> tuple[bytes, str]:
    data = incompressible(size, 11)
    (tmp_path / name).write_bytes(data)
    code, out = cli(m, "doc", "add", str(tmp_path / name))
    assert code == 0, out
    with m.open() as rep:
        (doc,) = [d for d in rep.docs() if d.name == name]
    return data, doc.id


def test_hostile_bundle_streams_change_nothing_at_the_relay(team: Team, tmp_path: Path) -> None:
    _dana, chidi = team.pair("dana", "chidi")
    add_doc(chidi, tmp_path, 2 * MB)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--json")
    assert code == 0, out
    good = (tmp_path / "c.hbw").read_bytes()
    assert good[4] == B.VERSION_STREAM and len(good) > 10 * SS
    head, segs = good[:B.HEADER.size], segments(good)
    before = relay_state(team)
    hostile = {
        "truncated": (good[:B.HEADER.size + 5 * SS], "protocol.truncated"),
        "reordered": (head + segs[0] + segs[2] + segs[1] + b"".join(segs[3:]), "integrity.aead"),
        "dropped": (head + b"".join(segs[:4] + segs[5:]), "integrity.aead"),
        "trailing": (good + b"junk", "integrity.aead"),
        "flipped": (good[:-100] + bytes([good[-100] ^ 1]) + good[-99:], "integrity.aead"),
    }
    for name, (data, want) in hostile.items():
        (tmp_path / f"{name}.hbw").write_bytes(data)
        code, out = ingest(team, tmp_path / f"{name}.hbw", tmp_path / "replies")
        assert code == 65, (name, out)
        assert json.loads(out.splitlines()[0])["code"] == want, (name, out)
        assert relay_state(team) == before, name
    assert not list((tmp_path / "replies").glob("*.hbw")) if (tmp_path / "replies").exists() else True
    # The good one is taken, its chunks kept before its batch.
    code, out = ingest(team, tmp_path / "c.hbw", tmp_path / "replies")
    assert code == 0, out
    assert team.chunk_bytes() >= 2 * MB and relay_state(team) != before


def test_a_body_its_signed_request_does_not_name_is_refused_at_the_relay(team: Team, tmp_path: Path) -> None:
    """A device (or a bug) that signs one body and sends another: segment counts or bytes differ."""
    _dana, chidi = team.pair("dana", "chidi")
    with Device.open(chidi.home) as dev:
        s = dev.store
        relay_id = crypto.device_id_for(s.meta("relay_public"))
        body = B.body_record(b"c" * 16, bytes(100))
        for i, named in enumerate([[hashlib.sha256(body).digest(), 9, len(body)],
                                   [hashlib.sha256(b"other").digest(), 1, len(body)]]):
            args = {"cursor": 0, "budget": 5 * MB, "batches": [], "roster_v": s.meta("roster_v"),
                    "bundle": 1, "reply_max": MAX_REPLY, "body": named}
            env, _n = envelope.make_request(dev.transport_key(), s.meta("device_id"), "sync", args, now_ms())
            sealer = B.StreamSealer(B.TO_RELAY, s.meta("team_id"), relay_id, s.meta("relay_x25519"))
            data = sealer.header + sealer.feed(len(env).to_bytes(4, "big") + env + body) + sealer.finish()
            (tmp_path / f"lie{i}.hbw").write_bytes(data)
    before = relay_state(team)
    for i in range(2):
        code, out = ingest(team, tmp_path / f"lie{i}.hbw", tmp_path)
        assert code == 65 and json.loads(out.splitlines()[0])["code"] == "integrity.body", out
    assert relay_state(team) == before


def format_1_bundle(member, title: str) -> bytes:
    """A format 1 bundle (one AEAD message) of ``member``'s outbox with a new task, as an older hbw-sync
    exported it: sealed by hand here, and the device's memory of it recorded as that export did."""
    with member.open() as rep:
        rep.add_task(title)
    with Device.open(member.home) as dev:
        s = dev.store
        syncing.close_outbox(dev, None)
        seqs, batches = zip(*s.execute("SELECT seq, data FROM outbox WHERE state = 'closed' ORDER BY seq"))
        args = {"cursor": s.meta("pull_cursor", 0), "budget": 5 * MB, "batches": list(batches),
                "roster_v": s.meta("roster_v"), "bundle": 1, "reply_max": 10 * MB}
        env, nonce = envelope.make_request(dev.transport_key(), s.meta("device_id"), "sync", args, now_ms())
        data = B.seal(B.TO_RELAY, s.meta("team_id"), crypto.device_id_for(s.meta("relay_public")),
                      s.meta("relay_x25519"), env)
        with s.transaction():  # what the older export remembered
            s.set_meta("bundle_counter", 1)
            s.set_meta("bundle_nonces", {nonce.hex(): [1, now_ms(), list(seqs), 10 * MB, []]})
    return data


def test_a_version_1_bundle_from_an_older_device_is_still_ingested(team: Team, tmp_path: Path) -> None:
    """An older hbw-sync wrote format 1 (one AEAD message): the relay takes it and answers in format 1."""
    dana, chidi = team.pair("dana", "chidi")
    data = format_1_bundle(chidi, "written by an older version")
    (tmp_path / "old.hbw").write_bytes(data)
    assert data[4] == 1
    code, out = ingest(team, tmp_path / "old.hbw", tmp_path)
    assert code == 0, out
    reply = Path(json.loads(out)["reply"])
    assert reply.read_bytes()[4] == 1  # answered in the format it came in
    code, out = cli(chidi, "bundle", "import", str(reply))
    assert code == 0 and "1 of your batches confirmed" in out, out
    assert dana.sync().ok
    with dana.open() as rep:
        assert "written by an older version" in {t.title for t in rep.tasks()}


def test_a_bundle_over_the_old_33_mb_limit_is_taken_and_none_means_one_file(team: Team, tmp_path: Path) -> None:
    """Before: --max-size above ~33 MB wrote bundles whose envelope passed 32 MiB, refused at the office."""
    dana, chidi = team.pair("dana", "chidi")
    data, did = add_doc(chidi, tmp_path, 36 * MB)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "big.hbw"), "--max-size", "100MB", "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["parts"] == 1 and r["bytes"] > 36 * MB and r["format"] == 2
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "whole.hbw"), "--max-size", "none", "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["parts"] == 1 and Path(r["file"]).stat().st_size > 36 * MB
    assert not list(tmp_path.glob("*.part"))
    code, out = ingest(team, tmp_path / "whole.hbw", tmp_path / "replies")
    assert code == 0, out
    assert json.loads(out)["chunks_in"] >= 100 and team.chunk_bytes() >= 36 * MB
    code, out = cli(chidi, "bundle", "import", json.loads(out)["reply"])
    assert code == 0 and "1 of your batches confirmed" in out, out
    assert dana.sync().ok
    code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0, out
    assert (tmp_path / "copy.pdf").read_bytes() == data


def test_export_on_a_revoked_device_is_refused_at_once(team: Team, tmp_path: Path) -> None:
    _dana, chidi = team.pair("dana", "chidi")
    with chidi.open() as rep:
        rep.add_task("after the laptop was reported stolen")
    with Device.open(chidi.home) as dev:
        device = dev.store.meta("device_id").hex()
    admin.revoke(team.data, device)
    code, out = cli(chidi, "sync")
    assert code == 77, out
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"))
    assert code == 77, out
    assert "revoked" in out and "none was written" in out and "enroll this device again" in out, out
    assert not list(tmp_path.glob("c.hbw*"))
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--json")
    assert code == 77 and json.loads(out.splitlines()[0])["code"] == "access.revoked", out


def test_a_full_disk_leaves_no_half_written_bundle(team: Team, tmp_path: Path, small_fs) -> None:
    """A 16 MB filesystem and a 20 MB document: the export fails with words, and leaves no file."""
    _dana, chidi = team.pair("dana", "chidi")
    add_doc(chidi, tmp_path, 20 * MB)
    mnt = small_fs(tmp_path / "stick")
    code, out = cli(chidi, "bundle", "export", str(mnt / "c.hbw"), "--max-size", "none")
    assert code == 2, out
    assert "cannot write" in out and "nothing was exported" in out, out
    assert list(mnt.iterdir()) == []  # neither the bundle nor its .part
    with Device.open(chidi.home) as dev:
        assert (dev.store.meta("bundle_counter") or 0) == 0 and not dev.store.meta("bundle_nonces")
    # Room again: the same export goes through.
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--max-size", "none")
    assert code == 0, out
