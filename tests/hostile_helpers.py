"""Hostile requests and a relay in a subprocess, shared by tests/test_hostile.py and scripts/bench_hostile.py.

The relay runs as its own process so that its resident size (/proc VmRSS, VmHWM) is
its own, and so that its descriptor limit can be lowered without touching the tests'.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import msgpack

from relay_helpers import FAST_KDF
from hbw_sync import envelope
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.server import admin, relay

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "orchid lantern 52 ferry"
MB = 1024 * 1024
# -- raw requests ---------------------------------------------------------------------------


def post(url: str, body: bytes, headers: dict[str, str] | None = None, path: str = "/v1",
         source: str | None = None) -> tuple[int, dict]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60, source_address=(source, 0) if source else None)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/x-hbw", **(headers or {})})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    try:
        return r.status, {**json.loads(data), "retry_after": r.getheader("Retry-After")}
    except ValueError:
        return r.status, {"raw": len(data)}


def frame(device: bytes, action: str, raw_args: bytes, sig: bytes = bytes(64), t: int | None = None) -> bytes:
    """A request envelope around raw msgpack args, with the signature given (junk by default)."""
    head = msgpack.packb(device) + msgpack.packb(relay.now_ms() if t is None else t) + msgpack.packb(os.urandom(16)) \
        + msgpack.packb(action)
    return b"HBWQ\x01" + b"\x95" + head + raw_args + sig


def nested_arrays(size: int) -> bytes:
    """An args map whose one value is ``size`` bytes of arrays of empty arrays (2 GB as Python lists)."""
    inner = b"\xdc\xff\xff" + b"\x90" * 0xFFFF
    n = size // len(inner)
    return b"\x81\xa1x" + b"\xdd" + n.to_bytes(4, "big") + inner * n


def enroll_args(token: object) -> bytes:
    return msgpack.packb({"token": token, "author_pub": bytes(32), "transport_pub": bytes(32), "x25519_pub": bytes(32),
                          "label": "x"})


def signed(member, action: str, args: dict) -> bytes:
    with Device.open(member.home) as dev:
        body, _ = envelope.make_request(dev.transport_key(), dev.identity.device_id, action, args, relay.now_ms())
    return body


# -- each pre-auth field, wrong types and huge values ----------------------------------------

HOSTILE = [
    # (name, body builder given an enrolled device id, expected status, expected code)
    ("enroll token as int 4e9", lambda d: frame(os.urandom(8), "enroll", enroll_args(4_000_000_000)),
     400, "protocol.schema"),
    ("enroll token as 1 MiB", lambda d: frame(os.urandom(8), "enroll", enroll_args(bytes(1 << 20))),
     413, "protocol.limit"),
    ("enroll token as a list", lambda d: frame(os.urandom(8), "enroll", enroll_args([1] * 1000)),
     400, "protocol.schema"),
    ("enroll label of 10 KB", lambda d: frame(os.urandom(8), "enroll", msgpack.packb(
        {"token": bytes(16), "author_pub": bytes(32), "transport_pub": bytes(32), "x25519_pub": bytes(32),
         "label": "é" * 5000})), 413, "protocol.limit"),
    ("enroll key of 31 bytes", lambda d: frame(os.urandom(8), "enroll", msgpack.packb(
        {"token": bytes(16), "author_pub": bytes(31), "transport_pub": bytes(32), "x25519_pub": bytes(32)})),
     400, "protocol.schema"),
    ("device id of 9 bytes", lambda d: b"HBWQ\x01\x95" + msgpack.packb(bytes(9)) + bytes(80), 400, "protocol.schema"),
    ("device id as int 4e9", lambda d: b"HBWQ\x01\x95" + msgpack.packb(4_000_000_000) + bytes(80), 400,
     "protocol.schema"),
    ("action of 1 MiB", lambda d: b"HBWQ\x01\x95" + msgpack.packb(bytes(8)) + msgpack.packb(1)
     + msgpack.packb(bytes(16)) + msgpack.packb("a" * (1 << 20)) + b"\x80" + bytes(64), 413, "protocol.limit"),
    ("nonce of 1 MiB", lambda d: b"HBWQ\x01\x95" + msgpack.packb(d) + msgpack.packb(1) + msgpack.packb(bytes(1 << 20))
     + bytes(80), 413, "protocol.limit"),
    ("time as a float", lambda d: b"HBWQ\x01\x95" + msgpack.packb(d) + msgpack.packb(1e300) + bytes(80), 400,
     "protocol.schema"),
    ("time of 2**64 - 1", lambda d: frame(d, "sync", b"\x80", t=2**64 - 1), 403, "access.clock"),
    ("args as a 4e9-long array header", lambda d: frame(d, "enroll", b"\xdd\xee\x6b\x28\x00"), 400,
     "protocol.schema"),
    ("args map of 4e9 keys", lambda d: frame(d, "enroll", b"\xdf\xee\x6b\x28\x00"), 413, "protocol.limit"),
    ("unknown action", lambda d: frame(d, "launch", b"\x80"), 400, "protocol.action"),
    ("time as a string", lambda d: b"HBWQ\x01\x95" + msgpack.packb(d) + msgpack.packb("now") + bytes(80), 400,
     "protocol.schema"),
    ("sync from an unknown device, 31 MiB nested arrays", lambda d: frame(os.urandom(8), "sync", nested_arrays(31 << 20)),
     403, "access.unknown_device"),
    ("sync with a junk signature, 31 MiB nested arrays", lambda d: frame(d, "sync", nested_arrays(31 << 20)),
     400, "integrity.signature"),
    ("download of 1 MiB", lambda d: frame(d, "download", msgpack.packb({"rseq": bytes(1 << 20)})), 413,
     "protocol.limit"),
    ("upload of 2 MiB", lambda d: frame(d, "upload", msgpack.packb({"chunk": bytes(2 << 20)})), 413, "protocol.limit"),
    ("body of 41 MiB", lambda d: frame(d, "sync", b"\x81\xa1x\xc6" + (41 << 20).to_bytes(4, "big") + bytes(41 << 20)),
     413, "protocol.limit"),
    ("not an envelope", lambda d: b"GET / HTTP/1.1\r\n" * 4, 400, "protocol.magic"),
]


# -- a relay in a subprocess: memory and descriptors ---------------------------------------

RELAY_SCRIPT = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from hbw_sync.server.app import RelayConfig
    from hbw_sync.server.connections import ConnectionLimits
    from hbw_sync.server.runner import serve
    nofile = int(sys.argv[2])
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    lim = ConnectionLimits(idle_timeout_s=float(sys.argv[3]), header_timeout_s=float(sys.argv[3]) / 2, sweep_s=0.2)
    cfg = RelayConfig(data=Path(sys.argv[1]), port=0, access_log=False, connections=lim,
                      body_grace_s=float(sys.argv[3]), body_stall_s=float(sys.argv[3]))
    serve(cfg, ready=lambda url: print(url, flush=True))
""")


class RelayProcess:
    """``hbw-relay serve`` in a subprocess (with a descriptor limit and timeouts for the test)."""

    def __init__(self, data: Path, nofile: int = 0, timeout_s: float = 20.0):
        self.proc = subprocess.Popen([sys.executable, "-c", RELAY_SCRIPT, str(data), str(nofile), str(timeout_s)],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert self.url.startswith("http"), "the relay did not start"

    def status(self, field: str) -> int:
        """A /proc figure of the relay process in bytes (VmRSS now, VmHWM the peak)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M)[1]) * 1024  # type: ignore[index]

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def join_device(data: Path, url: str, home: Path, name: str, role: str = "supervisor") -> None:
    code = admin.invite(data, name, role, url=url).encode()
    syncing.join(home, code, PASSPHRASE, kdf=FAST_KDF)



def attacker_socket(url: str, source: str = "127.0.0.2") -> socket.socket:
    u = urlsplit(url)
    s = socket.socket()
    s.bind((source, 0))
    s.connect((u.hostname, u.port))
    return s


def open_hostile(url: str, n: int) -> list[socket.socket]:
    """``n`` sockets from three other loopback addresses: half say nothing, half trickle a request head."""
    held = []
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    for i in range(n):
        try:
            s = attacker_socket(url, sources[i % 3])
        except OSError:
            continue  # refused at the door: the cap works
        if i % 2:
            s.sendall(b"POST /v1 HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    return held


@contextmanager
def relay_with_member(tmp_path: Path) -> Iterator[tuple["RelayProcess", Path, bytes]]:
    """A relay in its own process (so its memory can be read) with one member, amina, who has synced:
    yields (relay, amina's home, her device id) and stops the relay after."""
    data = tmp_path / "relay"
    admin.init(data, "District Finance")
    r = RelayProcess(data)
    try:
        home = tmp_path / "amina"
        join_device(data, r.url, home, "amina")
        assert syncing.sync(home, PASSPHRASE).ok
        with Device.open(home) as dev:
            device = dev.identity.device_id
        yield r, home, device
    finally:
        r.stop()
