"""Derived manifests (PROTOCOL.md §18e): a delta version's chunk ids worked out by its readers.

An edit of an office file changes every compressed byte after it, so about half the
content-defined chunks of a large sheet get new ids; sending them cost 16 incompressible bytes
each, most of the wire bytes of a one-cell edit (issue 12: 4,635 B for an 800,000-row sheet).
A reader rebuilds the whole new version anyway, so the version now carries only the manifest's
SHA-256, the chunker and the epoch (38 bytes), and the reader cuts the rebuilt file itself.

These tests run two or three real devices against a real relay: the reader's manifest is the
author's; a device without the base keeps the version *pending* and works it out when asked
(down a chain, and as a late joiner); a field that is not the author's manifest is refused,
keeps nothing, and does not leave the version pending.
"""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay_helpers import Team, save_version, shared_doc
from relay_helpers import member_cli as cli
from test_reads import older_client
from hbw_sync import batch as wire
from hbw_sync import chunks, derived, features
from hbw_sync.client import docdelta
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.delta import make_delta
from hbw_sync.errors import IntegrityError, UsageError
from hbw_sync.ops import NAMES, Kind, make_op

_MANIFEST = NAMES[Kind.DOC]["manifest"].tag
_MANIFEST_DELTA = NAMES[Kind.DOC]["manifest_delta"].tag


def sheet_zip(rows: int, *edited_rows: int) -> bytes:
    """A 2-3 MB xlsx-like zip: one deflated sheet of numbers, the same for the same arguments; each
    edited row's first cell holds its row number instead."""
    rnd = random.Random(12)
    parts = [b'<?xml version="1.0"?><worksheet><sheetData>']
    for r in range(rows):
        drawn = rnd.randrange(10 ** 9)
        v = r if r in edited_rows else drawn
        parts.append(b'<row r="%d"><c r="A%d"><v>%d</v></c><c r="B%d"><v>%d</v></c></row>'
                     % (r, r, v, r, rnd.randrange(10 ** 6)))
    parts.append(b"</sheetData></worksheet>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (("[Content_Types].xml", b"<Types/>"), ("xl/worksheets/sheet1.xml", b"".join(parts))):
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 5, 12, 9, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


ROWS = 130_000


def _version(rep, doc_id: str, version: int | None = None):
    """(document id, SHA-256, logged op) of a version as this device holds it."""
    _view, did, digest = rep.documents.locate_version(doc_id, version)
    return did, digest, docdelta.version_op(rep.versions, did, digest)


def test_a_one_cell_edit_sends_38_bytes_of_manifest_and_the_reader_works_out_the_authors(
        team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "plan.xlsx"
    v1 = sheet_zip(ROWS)
    assert 2_000_000 < len(v1) < 3_500_000
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    held = set(team.chunk_ids())
    v2 = sheet_zip(ROWS, 200)  # one cell near the start: the compressed bytes after it all change
    f.write_bytes(v2)
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
        did, digest, op = _version(rep, doc.id)
        authors = rep.versions.version_manifest(did, digest)
        base_m = rep.versions.version_manifest(did, _version(rep, doc.id, 1)[1])
        assert op is not None and authors is not None and base_m is not None
        field = (op.content or {})[_MANIFEST_DELTA]
    assert derived.parse(field) == derived.Derived(hashlib.sha256(authors.encode()).digest(), authors.epoch)
    new_ids = set(authors.ids) - set(base_m.ids)
    assert len(new_ids) >= 10, f"only {len(new_ids)} new ids: the edit does not show the cost"
    # What it spares: the manifest's own delta carries every new id, 16 bytes each.
    assert len(docdelta.manifest_delta(base_m.encode(), authors.encode()) or authors.encode()) >= 16 * len(new_ids)

    dana.sync()
    assert set(team.chunk_ids()) == held, "the relay gets none of the new chunks: readers rebuild them"
    chidi.sync()
    with chidi.open() as rep:
        did, digest, op = _version(rep, doc.id)
        assert not rep.versions.is_pending(did, digest)
        assert rep.versions.version_manifest(did, digest) == authors, "the reader's cut is the author's"
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == v2
        # Sent again (a bundle, a relay that lost it) as it came: the 38 bytes, not the manifest.
        oid = next(o for o, _d, logged in rep.versions.version_ops(did) if (logged.content or {}).get(34) == digest)
        body = rep.store.execute("SELECT body FROM oplog WHERE op_id = ?", (oid,)).fetchone()[0]
        again = rep.ledger.op_from_log(oid, body, with_data=True)
        assert _MANIFEST not in (again.content or {}) and (again.content or {})[_MANIFEST_DELTA] == field


def test_devices_without_the_base_work_the_manifests_out_when_asked_down_a_chain(
        team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "none")
    f = tmp_path / "plan.xlsx"
    versions = [sheet_zip(ROWS)]
    f.write_bytes(versions[0])
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    for edits in ((200,), (200, 300)):
        versions.append(sheet_zip(ROWS, *edits))
        f.write_bytes(versions[-1])
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
        dana.sync()
    with dana.open() as rep:
        authors = [rep.versions.version_manifest(*_version(rep, doc.id, n)[:2]) for n in (2, 3)]
    chidi.sync()
    with chidi.open() as rep:
        for n in (2, 3):
            did, digest, op = _version(rep, doc.id, n)
            assert derived.is_derived((op.content or {})[_MANIFEST_DELTA])
            assert rep.versions.is_pending(did, digest), "no base here: the manifest waits"
            assert rep.versions.version_manifest(did, digest) is None
        assert not rep.doc(doc.id).local
        assert rep.doc_missing(doc.id), "what to fetch: the chain's base"
        with pytest.raises(UsageError) as e:
            rep.doc_bytes(doc.id)
        assert e.value.code == "usage.doc_not_local"
    out_file = tmp_path / "got.xlsx"
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(out_file))
    assert code == 0, out
    assert out_file.read_bytes() == versions[-1]
    with chidi.open() as rep:
        for n, want in zip((2, 3), authors):
            did, digest, _op = _version(rep, doc.id, n)
            assert not rep.versions.is_pending(did, digest)
            assert rep.versions.version_manifest(did, digest) == want
        assert rep.doc_bytes(doc.id, version=2)[1] == versions[1]

    desk = team.join("desk")  # a late joiner with policy all: the chain arrives in one sync, base fetched after
    cli(desk, "doc", "policy", "all")
    desk.sync()
    with desk.open() as rep:
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == versions[-1]
        assert not any(rep.versions.is_pending(*_version(rep, doc.id, n)[:2]) for n in (2, 3))


@pytest.mark.parametrize("wrong", ["hash", "chunker"])
def test_a_derived_field_that_is_not_the_authors_manifest_is_refused_and_keeps_nothing(
        team: Team, tmp_path: Path, wrong: str) -> None:
    v1, v2 = sheet_zip(ROWS), sheet_zip(ROWS, 200)
    dana, chidi, doc, _f = shared_doc(team, tmp_path, v1)
    with dana.open() as rep:  # a member's device that sends a field no reader can confirm
        key = rep.current_key()
        keys = chunks.ChunkKeys.of(key)
        true_m, _pieces = chunks.split_bytes(keys, v2)
        field = derived.encode(true_m.encode() + (b"x" if wrong == "hash" else b""), key.epoch)
        if wrong == "chunker":
            field = field[:33] + b"\x02" + field[34:]
        d = make_delta(v1, v2)
        assert d is not None
        op = make_op(Kind.DOC, bytes.fromhex(doc.id), 1 << 62, None, sha256=hashlib.sha256(v2).digest(),
                     size=len(v2), delta=d, base_sha256=hashlib.sha256(v1).digest(), manifest_delta=field)
        data = wire.encode_batch(wire.Batch(rep.require_team(), rep.author.device_id, 777, key.epoch, (op,)),
                                 rep.author, key)
        pub = rep.author.public
    with chidi.open() as rep:
        rep.apply_batch(data, pub)  # the batch is sound; the version inside it is not
        did, digest, _op = _version(rep, doc.id)
        assert digest == hashlib.sha256(v2).digest()
        assert not rep.versions.is_pending(did, digest), "refused, not waiting: it would never come right"
        assert rep.versions.version_manifest(did, digest) is None
        new_ids = set(true_m.ids) - set(rep.versions.version_manifest(*_version(rep, doc.id, 1)[:2]).ids)
        assert rep.versions.local_chunks.missing(list(new_ids)) == list(new_ids), "nothing kept from the attempt"
        with pytest.raises(IntegrityError):
            rep.doc_bytes(doc.id)  # said plainly, never wrong bytes
        assert rep.doc_bytes(doc.id, version=1)[1] == v1
        problems = [r[0] for r in rep.store.execute("SELECT detail FROM sync_log WHERE how = 'apply'")]
        assert any("manifest does not rebuild" in p for p in problems), problems
    # What the person sees: 'status' says it, in their language, with the document's name.
    code, out = cli(chidi, "status", "--keep-unseen")
    assert code == 0 and "could not be read on this device and was refused" in out and "plan.xlsx" in out, out
    env = {"HBW_SYNC_HOME": str(chidi.home), "HBW_PASSPHRASE": chidi.passphrase, "HBW_LANG": "fr"}
    fr = CliRunner().invoke(client_cli, ["status"], env=env)
    assert "a été refusée" in fr.output and doc.id[:6] in fr.output, fr.output


def test_a_team_with_an_older_device_gets_the_manifests_delta_until_that_device_is_upgraded(
        team: Team, tmp_path: Path) -> None:
    """A writer uses the 38-byte form only when every device of the team says it reads it (§16 ``reads``):
    an older hbw-sync would refuse the version. Upgraded, the device says so, and the next edit is derived."""
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    with older_client():
        chidi.sync()  # an hbw-sync from before derived manifests
    dana.sync()
    f = tmp_path / "plan.xlsx"
    f.write_bytes(sheet_zip(ROWS))
    with dana.open() as rep:
        doc = rep.add_doc(f)
        assert not rep.ledger.everyone_reads(features.READS_DERIVED_MANIFEST)
    dana.sync()
    with older_client():
        chidi.sync()
    sent = []
    for edits in ((200,), (200, 300)):
        f.write_bytes(sheet_zip(ROWS, *edits))
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
            content = _version(rep, doc.id)[2].content or {}
            assert docdelta.is_delta_version(_version(rep, doc.id)[2]), sorted(content)
            sent.append(content.get(_MANIFEST_DELTA) or content[_MANIFEST])
        dana.sync()
        if len(sent) == 1:
            chidi.sync()  # upgraded: this sync says what it reads
            dana.sync()
    older, upgraded = sent
    assert not derived.is_derived(older) and len(older) > derived.FORM_LEN, "the manifest or its delta, as before"
    assert derived.is_derived(upgraded)
    chidi.sync()
    with chidi.open() as rep:
        assert rep.doc_bytes(doc.id, version=2)[1] == sheet_zip(ROWS, 200)
        assert rep.doc_bytes(doc.id)[1] == sheet_zip(ROWS, 200, 300)
