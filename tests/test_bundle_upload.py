"""``POST /v1/bundle`` reads the bundle as a stream (issue 12, item 3): hostile bodies on a real relay.

Before, the drop point read the whole body into memory (at most 40 MiB) and then spooled it;
now the body is checked segment by segment as it arrives and its document parts are spooled
to an anonymous file in the relay's data directory. Each hostile body here goes over a raw
socket to a real relay on loopback: a declared length over the cap (refused before a byte is
read), an endless body, a slow drip, a body longer than it declares, a cut connection, a cut
segment, bytes after the final segment, a format 1 bundle over its old cap. Each is refused
with its code, changes nothing at the relay, and leaves no spool file open; a bundle of more
than 100 MiB written by the real CLI (``--max-size none``) is taken and answered, and the
relay's body budget never holds more than a few segments of it. Memory of the relay process
is measured in ``scripts/bench_bundles_memory.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hbw_sync import bundle as B
from hbw_sync import crypto, envelope
from hbw_sync.client import Device
from hbw_sync.client.device import now_ms
from hbw_sync.server import app as relay_app

from relay_helpers import Team
from relay_helpers import member_cli as cli
from test_bundle_stream import add_doc, format_1_bundle, relay_state

MB = 1_000_000
SS = B.SEGMENT_SEALED


def spool_fds(team: Team) -> list[str]:
    """Open files of this process (the relay runs in a thread of it) that are unlinked files in the data
    directory: the spools of bundles being read (``tempfile.TemporaryFile(dir=DATA)``)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(team.data)) and "(deleted)" in target:
            found.append(target)
    return found


def budget(team: Team) -> int:
    """Request body bytes the relay holds now (its ``BodyBudget``)."""
    return team.thread._runner.app[relay_app.BODIES].held  # type: ignore[union-attr]


def connect(team: Team) -> socket.socket:
    u = urlsplit(team.url)
    s = socket.create_connection((u.hostname, u.port), timeout=60)
    return s


def head(length: int | None, chunked: bool = False) -> bytes:
    lines = ["POST /v1/bundle HTTP/1.1", "Host: relay", "Content-Type: application/x-hbw-bundle"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(s: socket.socket) -> tuple[int, dict]:
    """The relay's answer on a raw socket: status and its JSON body (or the body's length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = s.recv(65536)
        if not piece:
            break
        data += piece
    top, _sep, rest = data.partition(b"\r\n\r\n")
    status = int(top.split(b" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _c, v in
               (line.decode("latin-1").partition(":") for line in top.split(b"\r\n")[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        piece = s.recv(65536)
        if not piece:
            break
        rest += piece
    try:
        return status, json.loads(rest[:n])
    except ValueError:
        return status, {"raw": rest[:n]}


def post(team: Team, body: bytes, declared: int | None = None) -> tuple[int, dict]:
    """Send ``body`` declaring ``declared`` bytes (default: its length), then read the answer."""
    with connect(team) as s:
        s.sendall(head(len(body) if declared is None else declared) + body)
        return answer(s)


def sending(s: socket.socket, pieces) -> threading.Thread:
    """Send pieces in a thread until the relay stops reading (an endless body): the answer is read meanwhile."""
    def run() -> None:
        try:
            for p in pieces:
                s.sendall(p)
        except OSError:
            pass  # the relay closed the connection: what an endless body gets
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def junk_stream(team: Team, member) -> B.StreamSealer:
    """A stream sealed to this relay: every segment it makes opens (only its envelope is nonsense)."""
    with Device.open(member.home) as dev:
        s = dev.store
        return B.StreamSealer(B.TO_RELAY, s.meta("team_id"), crypto.device_id_for(s.meta("relay_public")),
                              s.meta("relay_x25519"))


@pytest.fixture
def exported(team: Team, tmp_path: Path):
    """A member with a 2 MB document in a real format 2 bundle file, not yet at the relay."""
    dana, chidi = team.pair("dana", "chidi")
    add_doc(chidi, tmp_path, 2 * MB)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--json")
    assert code == 0, out
    good = (tmp_path / "c.hbw").read_bytes()
    assert good[4] == B.VERSION_STREAM and len(good) > 10 * SS
    return chidi, good


def test_hostile_bodies_are_refused_change_nothing_and_leave_no_spool(team: Team, exported) -> None:
    chidi, good = exported
    before = relay_state(team)
    hostile = {
        # declared shorter than sent: the relay reads what was declared, a cut bundle
        "longer than its Content-Length": (good, len(good) - 1000, 400, "integrity.aead"),
        "cut at a segment edge": (good[:B.HEADER.size + 5 * SS], None, 400, "protocol.truncated"),
        "cut inside a segment": (good[:B.HEADER.size + 5 * SS + 77], None, 400, "integrity.aead"),
        "bytes after the final segment": (good + b"junk" * 100, None, 400, "integrity.aead"),
        "not a bundle": (b"GET / HTTP/1.1\r\n" * 8, None, 400, "protocol.magic"),
        "only a header": (good[:B.HEADER.size], None, 400, "protocol.truncated"),
        "another team's": (good[:6] + b"x" * 8 + good[14:], None, 400, None),
    }
    for name, (body, declared, status, code) in hostile.items():
        got, err = post(team, body, declared)
        assert got == status, (name, got, err)
        if code is not None:
            assert err["code"] == code, (name, err)
        assert relay_state(team) == before, name
        assert spool_fds(team) == [], name
        assert budget(team) == 0, name
    # The good one is then taken: none of the above was counted against it.
    got, reply = post(team, good)
    assert got == 200 and reply["raw"][:3] == B.MAGIC and reply["raw"][4] == B.VERSION_STREAM
    assert relay_state(team) != before and team.chunk_bytes() >= 2 * MB
    assert spool_fds(team) == [] and budget(team) == 0


def test_a_declared_length_over_the_cap_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    with Team(tmp_path, bundle_max=5 * MB) as team:
        team.pair("dana", "chidi")
        before = relay_state(team)
        for declared in (5 * MB + 1, 8 * 1024**3):  # over the configured cap; over the format's 4 GiB
            with connect(team) as s:
                s.sendall(head(declared))  # and not one byte of the body
                got, err = answer(s)
            assert (got, err["code"]) == (413, "protocol.limit"), err
            assert f"{declared} bytes" in err["message"]
        # A format 1 bundle (one AEAD message, read whole) keeps the old 40 MiB cap: refused on its header.
    with Team(tmp_path / "big") as team:
        _dana, chidi = team.pair("dana", "chidi")
        v1 = junk_stream(team, chidi).header
        v1 = v1[:4] + bytes([B.VERSION]) + v1[5:]
        with connect(team) as s:
            s.sendall(head(41 * 1024 * 1024) + v1)
            got, err = answer(s)
        assert (got, err["code"]) == (413, "protocol.limit"), err
        assert relay_state(team)[0] == before[0]


def test_serve_bundle_max_gb_sets_the_cap_office_it_chose(tmp_path: Path) -> None:
    """``hbw-relay serve --bundle-max-gb``, as office IT runs it: a bundle over the chosen cap is refused
    from its declared length, one under it is read (and refused here only as not-a-bundle)."""
    from test_storage import Serve

    team = Team(tmp_path)
    serve = Serve(team.data, "1", "--bundle-max-gb", "0.001")  # 1 MiB: a small disk
    try:
        team.url = serve.url
        cap = int(0.001 * 1024**3)
        with connect(team) as s:
            s.sendall(head(cap + 1))
            got, err = answer(s)
        assert (got, err["code"]) == (413, "protocol.limit"), err
        assert f"{cap + 1} bytes" in err["message"]
        got, err = post(team, b"not a bundle" * 100)
        assert got == 400 and err["code"] == "protocol.magic", err
    finally:
        assert serve.stop() == 0


def test_an_endless_body_stops_at_the_cap(tmp_path: Path) -> None:
    """Valid segments without end and no declared length (chunked): each read is checked against the cap."""
    with Team(tmp_path, bundle_max=3 * MB) as team:
        _dana, chidi = team.pair("dana", "chidi")
        before = relay_state(team)
        for size in (1000, 64 * 1024):  # small and segment-sized HTTP chunks
            sealer = junk_stream(team, chidi)

            def pieces():
                yield head(None, chunked=True)
                first = sealer.header + sealer.feed((1000).to_bytes(4, "big") + bytes(1000))
                for i in range(10_000):  # 640 MB if nobody stops it
                    seg = first if i == 0 else sealer.feed(bytes(size))
                    if seg:
                        yield f"{len(seg):x}\r\n".encode() + seg + b"\r\n"

            with connect(team) as s:
                t = sending(s, pieces())
                got, err = answer(s)
                s.shutdown(socket.SHUT_RDWR)
            t.join(30)
            assert (got, err.get("code")) == (413, "protocol.limit"), (size, got, err)
            assert relay_state(team) == before and spool_fds(team) == [] and budget(team) == 0


def test_a_slow_drip_is_cut_and_its_spool_is_in_the_data_directory(tmp_path: Path) -> None:
    with Team(tmp_path, body_stall_s=2.0, body_grace_s=2.0) as team:
        _dana, chidi = team.pair("dana", "chidi")
        code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--json")
        assert code == 0, out
        add_doc(chidi, tmp_path, 1 * MB)
        code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--json")
        assert code == 0, out
        good = (tmp_path / "c.hbw").read_bytes()
        before = relay_state(team)
        with connect(team) as s:
            s.sendall(head(len(good)) + good[:B.HEADER.size + 4 * SS])
            for _ in range(100):  # the spool is open while the body arrives: in the data directory, unlinked
                if spool_fds(team):
                    break
                time.sleep(0.05)
            assert len(spool_fds(team)) == 1
            assert 0 < budget(team) <= 2 * SS  # the bytes in hand, not the whole body
            for i in range(3):  # a byte a second: under the pace
                s.sendall(good[B.HEADER.size + 4 * SS + i:B.HEADER.size + 4 * SS + i + 1])
                time.sleep(1)
            got, err = answer(s)
        assert (got, err["code"]) == (503, "transient.slow_body"), err
        assert relay_state(team) == before and spool_fds(team) == [] and budget(team) == 0


def bundle_requests_ended(team: Team) -> int:
    """``/v1/bundle`` requests the relay has finished with, whatever their status (its ``/metrics``)."""
    text = urllib.request.urlopen(team.url + "/metrics", timeout=30).read().decode()
    return sum(int(float(m[1])) for m in re.finditer(r'^hbw_requests_total\{action="bundle",[^}]*\} (\S+)$', text, re.M))


def test_a_cut_connection_stores_nothing(team: Team, exported) -> None:
    _chidi, good = exported
    before = relay_state(team)
    ended = bundle_requests_ended(team)
    with connect(team) as s:
        s.sendall(head(len(good)) + good[:len(good) // 2])
    # Wait for the relay to be done with the cut request (not merely not to have started it yet).
    for _ in range(600):
        if bundle_requests_ended(team) > ended:
            break
        time.sleep(0.05)
    assert bundle_requests_ended(team) == ended + 1
    assert spool_fds(team) == [] and budget(team) == 0
    assert relay_state(team) == before
    assert post(team, good)[0] == 200  # and the relay still serves


def test_a_bundle_over_100_mib_is_taken_in_a_stream(team: Team, tmp_path: Path) -> None:
    """Before: refused over 40 MiB at the drop point. A real export with ``--max-size none``, a real reply."""
    dana, chidi = team.pair("dana", "chidi")
    data, did = add_doc(chidi, tmp_path, 110 * 1024 * 1024)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "whole.hbw"), "--max-size", "none", "--json")
    assert code == 0, out
    path = Path(json.loads(out)["file"])
    size = path.stat().st_size
    assert size > 110 * 1024 * 1024 > relay_app.MAX_BODY
    peak = [0]
    with connect(team) as s, open(path, "rb") as fh:
        s.sendall(head(size))
        while piece := fh.read(1024 * 1024):
            s.sendall(piece)
            peak[0] = max(peak[0], budget(team))
        got, reply = answer(s)
    assert got == 200, reply
    assert peak[0] <= 4 * SS  # streamed bytes counted as they pass, never the body
    assert team.chunk_bytes() >= 110 * 1024 * 1024 and spool_fds(team) == [] and budget(team) == 0
    (tmp_path / "reply.hbw").write_bytes(reply["raw"])
    code, out = cli(chidi, "bundle", "import", str(tmp_path / "reply.hbw"))
    assert code == 0 and "1 of your batches confirmed" in out, out
    assert dana.sync().ok
    code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0, out
    assert (tmp_path / "copy.pdf").read_bytes() == data


def test_a_signed_bundle_from_an_unknown_device_stores_nothing(team: Team, exported, tmp_path: Path) -> None:
    """Opened and spooled, then refused in the writer: the spool is closed all the same."""
    chidi, _good = exported
    with Device.open(chidi.home) as dev:
        s = dev.store
        env, _n = envelope.make_request(crypto.DeviceKey.generate(), b"z" * 8, "sync",
                                        {"cursor": 0, "budget": MB, "batches": [], "bundle": 1}, now_ms())
        sealer = B.StreamSealer(B.TO_RELAY, s.meta("team_id"), crypto.device_id_for(s.meta("relay_public")),
                                s.meta("relay_x25519"))
        data = sealer.header + sealer.feed(len(env).to_bytes(4, "big") + env) + sealer.finish()
    before = relay_state(team)
    got, err = post(team, data)
    assert (got, err["code"]) == (403, "access.unknown_device"), err
    assert relay_state(team) == before and spool_fds(team) == [] and budget(team) == 0


def test_a_compressed_bundle_is_refused_from_its_header(team: Team, exported) -> None:
    """Never inflated: a gzip body of a few KB could be gigabytes once inflated."""
    _chidi, good = exported
    before = relay_state(team)
    with connect(team) as s:
        s.sendall(head(len(good)).replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n", 1) + good)
        got, err = answer(s)
    assert (got, err["code"]) == (400, "protocol.encoding"), err
    assert relay_state(team) == before and spool_fds(team) == [] and budget(team) == 0


def test_a_format_1_bundle_is_still_taken_over_http(team: Team, tmp_path: Path) -> None:
    """An older device's bundle (one AEAD message, read whole within 40 MiB): taken, answered in format 1."""
    dana, chidi = team.pair("dana", "chidi")
    data = format_1_bundle(chidi, "posted by an older version")
    assert data[4] == B.VERSION
    got, reply = post(team, data)
    assert got == 200 and reply["raw"][4] == B.VERSION, reply
    assert spool_fds(team) == [] and budget(team) == 0
    (tmp_path / "reply.hbw").write_bytes(reply["raw"])
    code, out = cli(chidi, "bundle", "import", str(tmp_path / "reply.hbw"))
    assert code == 0 and "1 of your batches confirmed" in out, out
    assert dana.sync().ok
    with dana.open() as rep:
        assert "posted by an older version" in {t.title for t in rep.tasks()}
