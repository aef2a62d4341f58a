"""Devices say what they read (sync arg ``reads``, ``hbw_sync/features.py``); the relay keeps it per device
and hands it out beside the roster; a writer asks ``Ledger.everyone_reads`` before it sends a newer form.

Real relays on loopback ports (both storage backends), real stores, the real CLI for what a person
sees. An older hbw-sync is this library with the arg left out (``_Session.reads = None``), not a mock.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from hbw_sync import features
from hbw_sync.client import Device
from hbw_sync.client import bundles
from hbw_sync.client import sync as syncing
from hbw_sync.server import admin
from relay_helpers import Member, Team, member_cli

pytestmark = pytest.mark.usefixtures("backend")

BIT = features.READS_DERIVED_MANIFEST


@contextlib.contextmanager
def older_client() -> Iterator[None]:
    """Syncs and bundle exports inside send no ``reads``, as an hbw-sync from before the arg does."""
    syncing._Session.reads = None
    try:
        yield
    finally:
        syncing._Session.reads = features.READS


def device_id(m: Member) -> bytes:
    with Device.open(m.home) as dev:
        return dev.identity.device_id


def everyone_reads(m: Member, bit: int = BIT) -> bool:
    rep = m.replica()
    try:
        return rep.ledger.everyone_reads(bit)
    finally:
        rep.close()


def held_reads(m: Member) -> dict[str, int]:
    with Device.open(m.home) as dev:
        return dict(dev.store.meta("roster_reads") or {})


def relay_reads(team: Team, m: Member) -> Any:
    return team.sql("SELECT reads FROM devices WHERE device = ?", (device_id(m),))[0][0]


def test_everyone_reads_until_an_older_device_joins_and_again_once_it_is_revoked(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    assert dana.sync().ok
    assert everyone_reads(dana)  # a roster of this device alone
    chidi, erin = team.join("chidi"), team.join("erin")
    for _round in range(2):  # the second round brings each one the others' declarations
        for m in (dana, chidi, erin):
            assert m.sync().ok
    for m in (dana, chidi, erin):
        assert relay_reads(team, m) == features.READS
        assert everyone_reads(m), m.name
        assert set(held_reads(m).values()) == {features.READS}

    with older_client():  # its first sync, at join, included
        fatou = team.join("fatou")
        assert fatou.sync().ok
    assert relay_reads(team, fatou) is None  # never declared: reads 0
    assert everyone_reads(fatou)  # the others all read the bit; fatou's own software is not asked
    for m in (dana, chidi, erin):
        assert m.sync().ok
        assert not everyone_reads(m), m.name
        assert held_reads(m)[device_id(fatou).hex()] == 0
        assert everyone_reads(m, 0)  # no bit asked: everyone reads that

    # What a person sees: the device list with each one's bits, and a plain note about the older one.
    code, out = member_cli(dana, "status", "--json")
    assert code == 0, out
    shown = json.loads(out)
    by_member = {d["member"]: d for d in shown["devices"]}
    assert by_member["fatou"]["reads"] == 0 and by_member["chidi"]["reads"] == features.READS
    assert by_member["dana"]["this_device"] and not by_member["fatou"]["revoked"]
    assert shown["older_devices"] == 1
    code, out = member_cli(dana, "status")
    assert "1 device runs an older hbw-sync" in out, out

    # A device moved back to an older release says nothing: its bits are reset, so writers stop
    # sending it what it would refuse; upgraded again, it declares them again.
    with older_client():
        assert chidi.sync().ok
    assert relay_reads(team, chidi) == 0
    assert dana.sync().ok and held_reads(dana)[device_id(chidi).hex()] == 0
    assert chidi.sync().ok
    assert relay_reads(team, chidi) == features.READS

    admin.revoke(team.data, device_id(fatou).hex())
    for m in (dana, chidi, erin):
        assert m.sync().ok
        assert everyone_reads(m), m.name
    code, out = member_cli(dana, "status", "--json")
    assert json.loads(out)["older_devices"] == 0
    assert "older hbw-sync" not in member_cli(dana, "status")[1]


def test_a_changed_declaration_is_a_roster_change_and_an_unchanged_one_is_not(team: Team) -> None:
    with older_client():
        dana = team.join("dana", "supervisor")
        assert dana.sync().ok
    before = team.sql("SELECT value FROM meta WHERE key = 'roster_v'")[0][0]
    with older_client():
        assert dana.sync().ok
    assert team.sql("SELECT value FROM meta WHERE key = 'roster_v'")[0][0] == before
    assert dana.sync().ok  # declares READS: a new roster version, stamped on dana's entry
    after = team.sql("SELECT value FROM meta WHERE key = 'roster_v'")[0][0]
    assert after != before
    assert dana.sync().ok  # the same again: nothing written
    assert team.sql("SELECT value FROM meta WHERE key = 'roster_v'")[0][0] == after


def test_the_bundle_path_carries_reads_and_its_reply_brings_them(team: Team, tmp_path: Path) -> None:
    dana = team.join("dana", "supervisor")
    assert dana.sync().ok
    with older_client():
        chidi = team.join("chidi")
        assert chidi.sync().ok
    assert relay_reads(team, chidi) is None
    assert dana.sync().ok and not everyone_reads(dana)

    out = bundles.export_bundle(chidi.home, tmp_path / "out.hbw")
    reply = admin.ingest_bundle(team.data, Path(out["file"]), tmp_path)
    assert relay_reads(team, chidi) == features.READS  # the office's relay took the bundle's declaration
    bundles.import_bundle(chidi.home, Path(reply["reply"]), chidi.passphrase)
    assert held_reads(chidi)[device_id(dana).hex()] == features.READS  # the reply carried the map
    assert everyone_reads(chidi)
    assert dana.sync().ok and everyone_reads(dana)


def test_a_roster_delta_merges_reads_and_a_late_reply_does_not_turn_them_back(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    assert dana.sync().ok and chidi.sync().ok
    with older_client():
        fatou = team.join("fatou")
        assert fatou.sync().ok
    # chidi asks by bundle while fatou still reads 0; the reply waits in the mail.
    out = bundles.export_bundle(chidi.home, tmp_path / "out.hbw")
    reply = admin.ingest_bundle(team.data, Path(out["file"]), tmp_path)
    assert fatou.sync().ok  # fatou upgraded: now declares READS
    assert relay_reads(team, fatou) == features.READS

    with Device.open(chidi.home) as dev:
        known = dev.store.meta("roster_v")
    # dana's entry is older than what chidi holds: the coming answer is a delta without it (roster_full false)
    assert team.sql("SELECT roster_v FROM devices WHERE device = ?", (device_id(dana),))[0][0] <= known
    assert chidi.sync().ok
    with Device.open(chidi.home) as dev:
        assert dev.store.meta("roster_v") > known
    held = held_reads(chidi)
    assert held[device_id(fatou).hex()] == features.READS
    assert held[device_id(dana).hex()] == features.READS  # kept from before: the delta named fatou only
    assert everyone_reads(chidi)

    bundles.import_bundle(chidi.home, Path(reply["reply"]), chidi.passphrase)  # older roster_v: ignored
    assert held_reads(chidi) == held and everyone_reads(chidi)


# -- the client's side of the relay's word ------------------------------------------------------------


def _session(m: Member) -> tuple[Any, Any]:
    dev = Device.open(m.home)
    return dev, syncing._Session(dev, None, 64 * 1024, None, 0)  # type: ignore[arg-type]


def test_the_client_merges_a_delta_replaces_a_whole_roster_and_ignores_an_older_one(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    assert dana.sync().ok
    me = device_id(dana)
    a, b = b"\xaa" * 8, b"\xbb" * 8
    entry = ["x", bytes(32), bytes(32), None, "member"]
    dev, session = _session(dana)
    with dev:
        v = dev.store.meta("roster_v")
        session.apply_response({"roster": {me: entry, a: entry}, "roster_full": True, "roster_v": v + 1,
                                "reads": {me: 1, a: 1}}, [])
        assert dev.store.meta("roster_reads") == {me.hex(): 1, a.hex(): 1}
        session.apply_response({"roster": {b: entry}, "roster_full": False, "roster_v": v + 2, "reads": {b: 0}}, [])
        assert dev.store.meta("roster_reads") == {me.hex(): 1, a.hex(): 1, b.hex(): 0}
        session.apply_response({"roster": {a: entry}, "roster_full": False, "roster_v": v + 1, "reads": {a: 0}}, [])
        assert dev.store.meta("roster_reads")[a.hex()] == 1  # an older reply turns nothing back
        # a relay from before ``reads``: its roster's devices read 0
        session.apply_response({"roster": {me: entry, a: entry}, "roster_full": True, "roster_v": v + 3}, [])
        assert dev.store.meta("roster_reads") == {me.hex(): 0, a.hex(): 0}


@pytest.mark.parametrize("bad", [
    "junk", [1, 2], {b"\xaa" * 8: -1}, {b"\xaa" * 8: 2**32}, {b"\xaa" * 8: "1"}, {b"\xaa" * 8: True},
    {b"\xaa": 1}, {"aaaaaaaa": 1}, {i.to_bytes(8, "big"): 1 for i in range(100_001)},
], ids=["str", "list", "negative", "2^32", "str value", "bool value", "short key", "str key", "too many"])
def test_a_malformed_reads_map_is_ignored_with_a_logged_problem(team: Team, bad: Any) -> None:
    dana = team.join("dana", "supervisor")
    assert dana.sync().ok
    before = held_reads(dana)
    me = device_id(dana)
    dev, session = _session(dana)
    with dev:
        v = dev.store.meta("roster_v")
        session.apply_response({"roster": {me: ["dana", bytes(32), bytes(32), None, "supervisor"]},
                                "roster_full": True, "roster_v": v + 1, "reads": bad}, [])
        assert dev.store.meta("roster_v") == v + 1  # the roster itself was taken
        assert dev.store.meta("roster_reads") == before
        logged = dev.store.execute("SELECT code FROM sync_log ORDER BY id DESC LIMIT 1").fetchone()
    assert logged[0] == "problem.reads_malformed"
    assert dana.sync().ok  # and the next sync goes on
