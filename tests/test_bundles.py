"""Sync by file: email/USB bundles, mixed with online sync; and `watch` reaching a relay that comes up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client import bundles
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import AccessError, IntegrityError, ProtocolError
from hbw_sync.server import admin
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.cli import cli as relay_cli
from hbw_sync.server.runner import RelayThread

from relay_helpers import Member, Team, set_relay_url



def outbox(m: Member) -> list:
    with Device.open(m.home) as dev:
        return dev.store.execute("SELECT seq, data FROM outbox ORDER BY seq").fetchall()


def titles(m: Member) -> set[str]:
    with m.open() as rep:
        return {t.title for t in rep.tasks()}


def test_email_round_trip_with_files_only(team: Team, tmp_path: Path) -> None:
    """Chidi has no data plan: he emails a bundle, the office ingests it and mails the reply back."""
    dana, chidi = team.pair()
    with dana.open() as rep:
        rep.add_task("from the office")
    dana.sync()
    with chidi.open() as rep:
        t = rep.add_task("inspection report", description="Ward 4, 12 stalls")
        rep.note(t.id, "two licences expired")
    # With the passphrase, the open batch's two pieces (one per change) go as one batch.
    out = bundles.export_bundle(chidi.home, tmp_path / "chidi.hbw", passphrase=chidi.passphrase)
    assert out["changes"] == 2 and out["bytes"] == (tmp_path / "chidi.hbw").stat().st_size
    before = outbox(chidi)
    assert len(before) == 1
    with Device.open(chidi.home) as dev:
        assert dev.status()["outbox"]["changes"] == 2  # exporting removes nothing
    bundles.export_bundle(chidi.home, tmp_path / "again.hbw")
    assert outbox(chidi) == before  # nor does exporting again
    raw = (tmp_path / "chidi.hbw").read_bytes()
    assert b"inspection" not in raw and b"chidi" not in raw  # sealed: even routing is hidden from the mail
    r = admin.ingest_bundle(team.data, tmp_path / "chidi.hbw", tmp_path / "replies")
    assert r["batches_in"] == 1 and r["batches_out"] >= 1
    res = bundles.import_bundle(chidi.home, Path(r["reply"]), chidi.passphrase)
    assert res["acks"] == 1 and res["applied_ops"] >= 1
    assert outbox(chidi) == [] and "from the office" in titles(chidi)
    dana.sync()
    assert "inspection report" in titles(dana)
    with dana.open() as rep:
        task = next(x for x in rep.tasks() if x.title == "inspection report")
        assert [n.text for n in task.notes] == ["two licences expired"]
    # The same reply again: nothing changes, and it says so. The same bundle again (the reply was
    # lost in the mail): the relay answers again, storing nothing twice.
    assert bundles.import_bundle(chidi.home, Path(r["reply"]), chidi.passphrase)["already_imported"] is True
    again = admin.ingest_bundle(team.data, tmp_path / "chidi.hbw", tmp_path / "again")
    assert again["batches_in"] == 1 and Path(again["reply"]).exists()
    conn = __import__("sqlite3").connect(team.data / "relay.db")
    assert conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 2
    conn.close()
    assert bundles.import_bundle(chidi.home, Path(again["reply"]), chidi.passphrase)["already_imported"] is True


def test_bundles_mix_with_online_sync_and_arrive_out_of_order(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    with chidi.open() as rep:
        rep.add_task("first")
    bundles.export_bundle(chidi.home, tmp_path / "b1.hbw")
    with chidi.open() as rep:
        rep.add_task("second")
    bundles.export_bundle(chidi.home, tmp_path / "b2.hbw")
    chidi.sync()  # a link after all: everything goes online
    assert outbox(chidi) == []
    with dana.open() as rep:
        rep.add_task("office news")
    dana.sync()
    r2 = admin.ingest_bundle(team.data, tmp_path / "b2.hbw", tmp_path)
    with pytest.raises(AccessError):  # an old bundle after a newer one
        admin.ingest_bundle(team.data, tmp_path / "b1.hbw", tmp_path)
    bundles.import_bundle(chidi.home, Path(r2["reply"]), chidi.passphrase)
    assert titles(chidi) == {"first", "second", "office news"}
    dana.sync()
    assert titles(dana) == {"first", "second", "office news"}
    conn = __import__("sqlite3").connect(team.data / "relay.db")
    dup = conn.execute("SELECT device, seq FROM batches GROUP BY device, seq HAVING COUNT(*) > 1").fetchall()
    conn.close()
    assert dup == []


def test_bad_bundles_are_refused_and_change_nothing(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    with chidi.open() as rep:
        rep.add_task("x")
    bundles.export_bundle(chidi.home, tmp_path / "good.hbw")
    good = (tmp_path / "good.hbw").read_bytes()
    relay_before = (team.data / "relay.db").read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "tampered": good[:80] + bytes([good[80] ^ 1]) + good[81:],
        "not a bundle": b"PK\x03\x04 a zip file",
        "empty": b"",
    }
    for name, data in cases.items():
        (tmp_path / f"{name}.hbw").write_bytes(data)
        with pytest.raises((ProtocolError, IntegrityError)) as e:
            admin.ingest_bundle(team.data, tmp_path / f"{name}.hbw", tmp_path)
        assert "bundle" in str(e.value) or "truncated" in str(e.value), name
    with Team(tmp_path / "other", "Other") as other:  # a foreign team's relay cannot open it
        other.join("eve", "supervisor")
        with pytest.raises(IntegrityError, match="another team"):
            admin.ingest_bundle(other.data, tmp_path / "good.hbw", tmp_path)
    # A reply for another device, or a tampered reply, is refused by the device.
    r = admin.ingest_bundle(team.data, tmp_path / "good.hbw", tmp_path)
    reply = Path(r["reply"]).read_bytes()
    with pytest.raises(IntegrityError, match="another device"):
        bundles.import_bundle(dana.home, Path(r["reply"]), dana.passphrase)
    (tmp_path / "bad-reply.hbw").write_bytes(reply[:-5] + bytes(5))
    with pytest.raises(IntegrityError):
        bundles.import_bundle(chidi.home, tmp_path / "bad-reply.hbw", chidi.passphrase)
    assert len(outbox(chidi)) == 1  # nothing was acknowledged by the refused reply
    # A request bundle given to the device, or a reply given to the relay, goes the wrong way.
    with pytest.raises(ProtocolError, match="other way"):
        bundles.import_bundle(chidi.home, tmp_path / "good.hbw", chidi.passphrase)
    bundles.import_bundle(chidi.home, Path(r["reply"]), chidi.passphrase)
    assert outbox(chidi) == []
    del relay_before


def test_bundle_cli_both_sides(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    env = {"HBW_SYNC_HOME": str(chidi.home), "HBW_PASSPHRASE": chidi.passphrase}
    with chidi.open() as rep:
        rep.add_task("by mail")
    res = CliRunner().invoke(client_cli, ["bundle", "export", str(tmp_path / "c.hbw"), "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["changes"] == 1
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / "c.hbw"),
                                         "--reply-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    reply = json.loads(res.stdout)["reply"]
    res = CliRunner().invoke(client_cli, ["bundle", "import", reply], env=env)
    assert res.exit_code == 0 and "1 of your batches confirmed" in res.output
    res = CliRunner().invoke(client_cli, ["bundle", "import", reply], env=env)
    assert res.exit_code == 0 and "already imported" in res.output
    (tmp_path / "junk.hbw").write_bytes(b"garbage")
    res = CliRunner().invoke(client_cli, ["bundle", "import", str(tmp_path / "junk.hbw")], env=env)
    assert res.exit_code == 65 and "not an hbw-sync bundle" in res.output


def test_bundle_over_http_drop_point(team: Team, tmp_path: Path) -> None:
    import urllib.request

    dana, chidi = team.pair()
    with chidi.open() as rep:
        rep.add_task("via the office form")
    bundles.export_bundle(chidi.home, tmp_path / "c.hbw")
    req = urllib.request.Request(team.url + "/v1/bundle", data=(tmp_path / "c.hbw").read_bytes(), method="POST")
    reply = urllib.request.urlopen(req, timeout=10).read()
    (tmp_path / "reply.hbw").write_bytes(reply)
    assert bundles.import_bundle(chidi.home, tmp_path / "reply.hbw", chidi.passphrase)["acks"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_syncs_soon_after_the_relay_appears_and_keeps_the_outbox_when_it_goes(tmp_path: Path) -> None:
    with Team(tmp_path) as team:
        dana, chidi = team.pair()
        data = team.data
    # The relay is down now. Chidi works; `watch` runs and waits.
    port = _free_port()
    set_relay_url(chidi, f"http://127.0.0.1:{port}")
    with chidi.open() as rep:
        rep.add_task("made while the office was closed")
    env = {**os.environ, "HBW_SYNC_HOME": str(chidi.home)}
    env.pop("HBW_PASSPHRASE", None)
    proc = subprocess.Popen([sys.executable, "-m", "hbw_sync.client.cli", "watch", "--max-backoff", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        # Wait for watch's first attempt (not a fixed sleep: a loaded machine starts Python slowly,
        # and a relay that appears before the first attempt would leave nothing "unreachable").
        t0 = time.monotonic()
        while not any("relay unreachable" in line for line in lines) and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        assert len(outbox(chidi)) == 1
        with RelayThread(RelayConfig(data=data, port=port, access_log=False)):
            t0 = time.monotonic()
            while outbox(chidi) and time.monotonic() - t0 < 60:  # seconds normally; generous for noisy CI
                time.sleep(0.2)
            assert outbox(chidi) == [], "watch did not sync after the relay appeared"
        with chidi.open() as rep:
            rep.add_task("made after the relay went away again")
        time.sleep(2)
        assert len(outbox(chidi)) == 1  # kept while unreachable
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        reader.join(timeout=15)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "relay unreachable" in out and "sync ok" in out and out.rstrip().endswith("stopped")
