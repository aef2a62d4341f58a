"""Derived manifests (PROTOCOL.md §18e) against a member's device that signs what it likes.

Each forged version arrives in a sound batch beside an honest task op. It must be refused with
a logged problem and a code, keep nothing (no manifest, no chunk cut on the way), leave the
batch's other ops applied and the earlier versions readable, and never stay pending when it can
never come right. A version whose base simply has not arrived stays pending, and ``doc get``
says plainly why it cannot be had.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from relay_helpers import Team, shared_doc
from relay_helpers import member_cli as cli
from test_doc_derived import ROWS, _version, sheet_zip
from hbw_sync import batch as wire
from hbw_sync import chunks, derived
from hbw_sync.delta import make_delta
from hbw_sync.delta.chunked import DELTA_MAX
from hbw_sync.errors import IntegrityError
from hbw_sync.ops import Kind, make_op

HLC = 1 << 62


def forged_version(doc_id: str, hlc: int, base: bytes, new: bytes, field: bytes, delta: bytes | None = None):
    """A delta version op of ``new`` from ``base`` (their bytes) with ``field`` as its manifest_delta."""
    d = delta if delta is not None else make_delta(base, new)
    assert d is not None
    return make_op(Kind.DOC, bytes.fromhex(doc_id), hlc, None, sha256=hashlib.sha256(new).digest(), size=len(new),
                   delta=d, base_sha256=hashlib.sha256(base).digest(), manifest_delta=field)


def send(author, reader, ops: list, counter: int = 777) -> bytes:
    """Seal ``ops`` and an honest task op as one batch of ``author``'s device; apply it at ``reader``.
    The task's id: it must be there afterwards (the batch's other ops apply)."""
    task = os.urandom(16)
    with author.open() as rep:
        key = rep.current_key()
        op = make_op(Kind.TASK, task, HLC + 100, None, title="call the notary")
        data = wire.encode_batch(wire.Batch(rep.require_team(), rep.author.device_id, counter, key.epoch,
                                            (*ops, op)), rep.author, key)
        pub = rep.author.public
    with reader.open() as rep:
        rep.apply_batch(data, pub)
    return task


def true_field(author, data: bytes, epoch: int | None = None) -> bytes:
    """The derived field an honest writer would send for ``data`` (its manifest under the current key)."""
    with author.open() as rep:
        key = rep.current_key()
        m, _pieces = chunks.split_bytes(chunks.ChunkKeys.of(key), data)
        return derived.encode(m.encode(), epoch or key.epoch)


def problems(rep) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in rep.store.execute("SELECT detail, code FROM sync_log WHERE how = 'apply'")]


def assert_refused(rep, doc_id: str, digest: bytes, why: str, kept_before: int) -> None:
    did = bytes.fromhex(doc_id)
    assert not rep.versions.is_pending(did, digest), "refused, not waiting: it would never come right"
    assert rep.versions.version_manifest(did, digest) is None
    assert _chunk_count(rep) == kept_before, "nothing kept from the attempt"
    logged = problems(rep)
    assert any(code == "problem.doc_refused" and why in detail for detail, code in logged), logged


def _chunk_count(rep) -> int:
    return rep.store.execute("SELECT count(*) FROM doc_chunks").fetchone()[0]


@pytest.fixture
def shared(team: Team, tmp_path: Path):
    """Dana's sheet, version 1, held by Chidi (policy all)."""
    v1 = sheet_zip(ROWS)
    dana, chidi, doc, _f = shared_doc(team, tmp_path, v1)
    with chidi.open() as rep:
        assert rep.doc(doc.id).local
    return dana, chidi, doc.id, v1


def test_a_derived_field_naming_an_epoch_this_device_lacks_is_refused(shared) -> None:
    dana, chidi, doc_id, v1 = shared
    v2 = sheet_zip(ROWS, 200)
    with chidi.open() as rep:
        before = _chunk_count(rep)
    task = send(dana, chidi, [forged_version(doc_id, HLC, v1, v2, true_field(dana, v2, epoch=99))])
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        assert_refused(rep, doc_id, hashlib.sha256(v2).digest(), "epoch 99", before)
        assert rep.doc_bytes(doc_id, version=1)[1] == v1
        with pytest.raises(IntegrityError):
            rep.doc_bytes(doc_id)


def test_a_derived_field_over_a_base_larger_than_delta_max_is_refused_before_anything_is_rebuilt(
        team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "none")  # not even the base here: refused from its manifest's size alone
    big = os.urandom(DELTA_MAX + 4096)
    f = tmp_path / "scan.pdf"
    f.write_bytes(big)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    v2 = big[:1000] + b"forged" + big[1000:]
    field = derived.encode(b"any manifest", 1)
    task = send(dana, chidi, [forged_version(doc.id, HLC, big, v2, field, delta=b"\x02" + b"\x00" * 40)])
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        assert_refused(rep, doc.id, hashlib.sha256(v2).digest(), "larger than", 0)
        assert rep.versions.version_manifest(bytes.fromhex(doc.id), hashlib.sha256(big).digest()).size == len(big)


def test_a_derived_field_over_an_inline_base_is_refused(team: Team, tmp_path: Path) -> None:
    """A writer derives only from a chunked base (§18e: the manifest delta's base is a manifest); an
    inline base (under 1 MiB) read as if chunked is refused, not rebuilt."""
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    v1 = sheet_zip(20_000)
    assert len(v1) < 1024 * 1024
    f = tmp_path / "small.xlsx"
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    v2 = sheet_zip(ROWS, 200)
    with chidi.open() as rep:
        before = _chunk_count(rep)
    task = send(dana, chidi, [forged_version(doc.id, HLC, v1, v2, true_field(dana, v2))])
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        assert_refused(rep, doc.id, hashlib.sha256(v2).digest(), "not a chunked version", before)
        assert rep.doc_bytes(doc.id, version=1)[1] == v1


def test_a_delta_that_rebuilds_the_file_under_a_manifest_of_other_sizes_is_refused(shared) -> None:
    """The file is right, but the field hashes a manifest cut elsewhere (other chunk sizes, same bytes):
    the reader's own cut is the only one it keeps, so the version is refused."""
    dana, chidi, doc_id, v1 = shared
    v2 = sheet_zip(ROWS, 200)
    with dana.open() as rep:
        key = rep.current_key()
        keys = chunks.ChunkKeys.of(key)
        m, _pieces = chunks.split_bytes(keys, v2)
    sizes = list(m.sizes)
    sizes[0], sizes[1] = sizes[0] - 100, sizes[1] + 100  # the same file, cut 100 bytes earlier
    ids, at = [], 0
    for n in sizes:
        ids.append(keys.chunk_id(v2[at:at + n]))
        at += n
    other = chunks.Manifest(key.epoch, len(v2), hashlib.sha256(v2).digest(), tuple(ids), tuple(sizes))
    with chidi.open() as rep:
        before = _chunk_count(rep)
    task = send(dana, chidi, [forged_version(doc_id, HLC, v1, v2, derived.encode(other.encode(), key.epoch))])
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        assert_refused(rep, doc_id, hashlib.sha256(v2).digest(), "not the author's", before)
        assert rep.doc_bytes(doc_id, version=1)[1] == v1


@pytest.mark.parametrize("policy", ["all", "none"])
def test_a_chain_whose_middle_version_is_refused_leaves_nothing_pending(
        team: Team, tmp_path: Path, policy: str) -> None:
    """v2 names a manifest no reader can make; v3, honest from v2, can then never be worked out: it is
    refused too (at once when v1 is here, at ``doc get`` otherwise), never left pending for ever."""
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", policy)
    f = tmp_path / "plan.xlsx"
    v1, v2, v3 = sheet_zip(ROWS), sheet_zip(ROWS, 200), sheet_zip(ROWS, 200, 300)
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    bad = true_field(dana, v2 + b"x")  # a manifest of another file
    task = send(dana, chidi, [forged_version(doc.id, HLC, v1, v2, bad),
                              forged_version(doc.id, HLC + 1, v2, v3, true_field(dana, v3))])
    did = bytes.fromhex(doc.id)
    d2, d3 = hashlib.sha256(v2).digest(), hashlib.sha256(v3).digest()
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"))
    assert code != 0 and not (tmp_path / "got.xlsx").exists(), out
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        for digest in (d2, d3):
            assert not rep.versions.is_pending(did, digest), "refused, not pending for ever"
            assert rep.versions.version_manifest(did, digest) is None
        logged = problems(rep)
        assert sum(code == "problem.doc_refused" for _d, code in logged) >= 2, logged
        notes = rep.store.execute("SELECT count(*) FROM notices WHERE code = 'notice.doc_refused'").fetchone()[0]
        assert notes == 1, "two versions refused at once: the person is told once"
        assert any("was refused" in detail and "base" in detail for detail, _c in logged), logged
        with pytest.raises(IntegrityError):
            rep.doc_bytes(doc.id)
    code, out = cli(chidi, "doc", "get", doc.id, "--version", "1", "-o", str(tmp_path / "v1.xlsx"))
    assert code == 0, out
    assert (tmp_path / "v1.xlsx").read_bytes() == v1


def test_a_pending_version_whose_base_never_arrives_says_so_plainly(team: Team, tmp_path: Path) -> None:
    """A derived version from a base no device ever recorded (or one lost at the relay): it waits, since
    the base could still come, but ``doc get`` says plainly that it is not to be had, and the code."""
    v1 = sheet_zip(ROWS)
    dana, chidi, doc, _f = shared_doc(team, tmp_path, v1)
    ghost, v2 = sheet_zip(ROWS, 7), sheet_zip(ROWS, 200)
    task = send(dana, chidi, [forged_version(doc.id, HLC, ghost, v2, true_field(dana, v2))])
    did, d2 = bytes.fromhex(doc.id), hashlib.sha256(v2).digest()
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        assert rep.versions.is_pending(did, d2)
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"))
    assert code != 0 and not (tmp_path / "got.xlsx").exists(), out
    assert "earlier version" in out and "not at the relay" in out, out
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"), "--json")
    assert "usage.doc_base_missing" in out, out
    with chidi.open() as rep:
        assert rep.versions.is_pending(did, d2), "still pending: its base may yet come"
    code, out = cli(chidi, "doc", "get", doc.id, "--version", "1", "-o", str(tmp_path / "v1.xlsx"))
    assert code == 0 and (tmp_path / "v1.xlsx").read_bytes() == v1, out


def test_a_chain_that_loops_back_on_itself_ends_refused_not_pending(shared, tmp_path: Path) -> None:
    """v2 names v3 as its base and v3 names v2 (or a version names itself): no base can ever be made
    local. Each ends refused once asked for (the loop's closing version at once), never pending;
    the earlier version still reads."""
    dana, chidi, doc_id, v1 = shared
    v2, v3 = sheet_zip(ROWS, 200), sheet_zip(ROWS, 200, 300)
    looped = [forged_version(doc_id, HLC, v3, v2, true_field(dana, v2)),
              forged_version(doc_id, HLC + 1, v2, v3, true_field(dana, v3)),
              forged_version(doc_id, HLC + 2, v1 + b"self", v1 + b"self", true_field(dana, v1 + b"self"),
                             delta=b"\x02" + b"\x00" * 40)]
    with chidi.open() as rep:
        before = _chunk_count(rep)
    task = send(dana, chidi, looped)
    did = bytes.fromhex(doc_id)
    for n in (2, 3, 4):
        code, out = cli(chidi, "doc", "get", doc_id, "--version", str(n), "-o", str(tmp_path / "got.xlsx"))
        assert code != 0 and not (tmp_path / "got.xlsx").exists(), out
    with chidi.open() as rep:
        assert rep.task(task.hex()).title == "call the notary"
        for data in (v2, v3, v1 + b"self"):
            digest = hashlib.sha256(data).digest()
            assert not rep.versions.is_pending(did, digest), "a loop never resolves: refused"
            assert rep.versions.version_manifest(did, digest) is None
        assert _chunk_count(rep) == before
        assert rep.doc_bytes(doc_id, version=1)[1] == v1
