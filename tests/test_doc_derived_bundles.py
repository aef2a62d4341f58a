"""Derived manifests (PROTOCOL.md §18e) on a device that syncs only by bundle (USB stick, mail).

Chidi carries bundles to the office (export, office IT's ``bundle ingest``, reply import) and
keeps every document (policy ``all``). Dana edits a 2-3 MB sheet twice online. With derived
manifests the relay never holds the new chunks and Chidi's device knows no chunk id of the edits
until it rebuilds them, so its want-list must name the chain's base: the edits must become local,
byte-exact, in as many round trips as when the versions carry their manifests (a team with an
older device, ``everyone_reads`` false). Both counts come from the same run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay_helpers import Team
from relay_helpers import member_cli as cli
from test_doc_derived import ROWS, _version, sheet_zip
from test_reads import older_client
from hbw_sync import derived, features
from hbw_sync.client import docdelta
from hbw_sync.ops import NAMES, Kind
from hbw_sync.server.cli import cli as relay_cli

_MANIFEST_DELTA = NAMES[Kind.DOC]["manifest_delta"].tag
MAX_TRIPS = 4


def round_trip(team: Team, m, tmp_path: Path, n: int) -> int:
    """One trip to the office: export, ingest at the relay, import the reply (the real CLIs)."""
    code, out = cli(m, "bundle", "export", str(tmp_path / f"c{n}.hbw"))
    assert code == 0, out
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / f"c{n}.hbw"),
                                         "--reply-dir", str(tmp_path / f"r{n}")])
    assert res.exit_code == 0, res.output
    (reply,) = (tmp_path / f"r{n}").glob("hbw-reply-*.hbw")
    code, out = cli(m, "bundle", "import", str(reply))
    assert code == 0, out
    return (tmp_path / f"c{n}.hbw").stat().st_size + reply.stat().st_size


def trips_until_local(team: Team, m, tmp_path: Path, doc_id: str, want: list[bytes],
                      start: int) -> tuple[int, int]:
    """(round trips, bundle bytes both ways) until every version in ``want`` reads byte-exact here."""
    carried = 0
    for n in range(1, MAX_TRIPS + 1):
        carried += round_trip(team, m, tmp_path, start + n)
        with m.open() as rep:
            if rep.doc(doc_id).local and all(rep.doc_bytes(doc_id, version=i + 1)[1] == v
                                             for i, v in enumerate(want)):
                assert not any(rep.versions.is_pending(*_version(rep, doc_id, i + 1)[:2]) for i in range(len(want)))
                return n, carried
    raise AssertionError(f"not local after {MAX_TRIPS} round trips")


def edited_by_bundle(team: Team, tmp_path: Path, older: bool, had_base: bool) -> tuple[int, int]:
    """Round trips Chidi needs for Dana's two edits (with or without the first version already here)."""
    dana, chidi = team.pair("dana", "chidi")
    code, out = cli(chidi, "doc", "policy", "all")
    assert code == 0, out
    mode = older_client if older else contextlib.nullcontext
    with mode():
        round_trip(team, chidi, tmp_path, 0)  # the relay learns what Chidi's hbw-sync reads
    dana.sync()
    with dana.open() as rep:
        assert rep.ledger.everyone_reads(features.READS_DERIVED_MANIFEST) is not older
    f = tmp_path / "plan.xlsx"
    versions = [sheet_zip(ROWS)]
    f.write_bytes(versions[0])
    with dana.open() as rep:
        doc = rep.add_doc(f)
    assert dana.sync().ok
    if had_base:
        with mode():
            trips_until_local(team, chidi, tmp_path, doc.id, versions, 10)
    for edits in ((200,), (200, 300)):
        versions.append(sheet_zip(ROWS, *edits))
        f.write_bytes(versions[-1])
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
            field = (_version(rep, doc.id)[2].content or {}).get(_MANIFEST_DELTA)
            assert docdelta.is_delta_version(_version(rep, doc.id)[2]) or field is not None
            assert (field is not None and derived.is_derived(field)) is not older, "the form the team reads"
        assert dana.sync().ok
    with mode():
        trips = trips_until_local(team, chidi, tmp_path, doc.id, versions, 20)
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "copy.xlsx"))
    assert code == 0 and (tmp_path / "copy.xlsx").read_bytes() == versions[-1], out
    return trips


@pytest.mark.parametrize("had_base", [True, False], ids=["had-v1", "new-to-the-document"])
def test_a_bundle_only_device_gets_derived_edits_in_as_few_round_trips_as_before(
        tmp_path: Path, had_base: bool) -> None:
    """Two teams in one run: one where every device reads derived manifests, one with an older device."""
    trips = {}
    for older in (False, True):
        where = tmp_path / ("older" if older else "derived")
        where.mkdir()
        with Team(where) as team:
            trips[older] = edited_by_bundle(team, where, older=older, had_base=had_base)
    print(f"(round trips, bundle bytes) until local ({'had v1' if had_base else 'new'}): derived {trips[False]}, "
          f"manifests {trips[True]}")
    assert trips[False][0] <= trips[True][0], trips
    assert trips[False][0] == (1 if had_base else 2), trips
    if had_base:  # the edits alone cross: the 38-byte form is what spares bytes
        assert trips[False][1] < trips[True][1], trips
