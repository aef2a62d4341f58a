"""Documents over thin links: version chains as deltas, conflict copies, broken chains, safe names."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import batch as wire
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.replica import CHAIN_FULL_EVERY
from hbw_sync.client.views import safe_filename
from hbw_sync.errors import IntegrityError, TransientError
from hbw_sync.ops import Kind, make_op

from relay_helpers import Member, Team
from test_transfer import FlakyLink

WORDS = ("budget invoice permit ward inspection ledger council supplier report audit stall licence "
         "registry payroll grant tender receipt quarter district office").split()


def text_doc(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + ".\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def edit(data: bytes, at: float, text: bytes) -> bytes:
    i = int(len(data) * at)
    return data[:i] + text + data[i + 200:]



def last_batch_size(m: Member) -> int:
    with Device.open(m.home) as dev:
        return dev.store.execute("SELECT size FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()[0]


def test_small_edits_travel_as_deltas_and_rebuild_byte_exact(team: Team, tmp_path: Path) -> None:
    a, b = team.pair("amina", "chidi")
    report = tmp_path / "report.txt"
    versions = [text_doc(900_000)]  # under CHUNKED_FROM: travels in the batch (larger ones: test_doc_chunks.py)
    report.write_bytes(versions[0])
    with a.open() as rep:
        doc = rep.add_doc(report)
    a.sync()
    sizes = []
    for i in range(CHAIN_FULL_EVERY + 1):
        versions.append(edit(versions[-1], 0.1 + 0.08 * i, f"Paragraph rewritten in version {i + 2}. ".encode() * 3))
        report.write_bytes(versions[-1])
        with a.open() as rep:
            rep.update_doc(doc.id, report)
        sizes.append(last_batch_size(a))
        a.sync()
    # A one-paragraph edit of a 900 KB text costs kilobytes; every 8th version travels in full.
    full_at = CHAIN_FULL_EVERY - 1  # version 9: a chain is one full version and 7 deltas
    assert all(s <= 4096 for i, s in enumerate(sizes) if i != full_at), sizes
    assert sizes[full_at] > 100_000
    b.sync()
    with b.open() as rep:
        for n, expected in enumerate(versions, start=1):
            view, got = rep.doc_bytes(doc.id, version=n)
            assert got == expected, f"version {n} differs"
        assert rep.doc(doc.id).versions == len(versions)
        assert rep.doc_bytes(doc.id)[1] == versions[-1]


def test_concurrent_edits_keep_both_as_a_conflict_copy(team: Team, tmp_path: Path) -> None:
    a, b = team.pair("amina", "chidi")
    base = text_doc(50_000, seed=2)
    f = tmp_path / "minutes.txt"
    f.write_bytes(base)
    with a.open() as rep:
        doc = rep.add_doc(f)
    a.sync()
    b.sync()
    mine, theirs = edit(base, 0.2, b"Amina's change. "), edit(base, 0.7, b"Chidi's change. ")
    f.write_bytes(mine)
    with a.open() as rep:
        rep.update_doc(doc.id, f)
    f.write_bytes(theirs)
    with b.open() as rep:
        rep.update_doc(doc.id, f)
    for m in (a, b, a, b):
        m.sync()
    listings = []
    for m in (a, b):
        with m.open() as rep:
            docs = rep.docs()
            assert len(docs) == 2, [d.name for d in docs]
            main, copy = docs
            assert copy.conflict_of == main.id and "conflict copy by" in copy.name and copy.name.endswith(".txt")
            current, kept = rep.doc_bytes(main.id)[1], rep.doc_bytes(copy.id)[1]
            assert {current, kept} == {mine, theirs}
            listings.append((main.sha256, copy.id, copy.sha256))
        with Device.open(m.home) as dev:
            assert any("conflict copy" in c for c in dev.status()["conflict_details"])
    assert listings[0] == listings[1]  # the same choice, and the same copy, on both devices
    env = {"HBW_SYNC_HOME": str(b.home), "HBW_PASSPHRASE": b.passphrase}
    res = CliRunner().invoke(client_cli, ["doc", "list"], env=env)
    assert "both kept" in res.output
    out = tmp_path / "copy.txt"
    res = CliRunner().invoke(client_cli, ["doc", "get", listings[1][1][:8], "-o", str(out)], env=env)
    assert res.exit_code == 0 and out.read_bytes() in (mine, theirs)


def test_tampered_chain_is_refused(team: Team, tmp_path: Path) -> None:
    a, b = team.pair("amina", "chidi")
    f = tmp_path / "d.txt"
    f.write_bytes(text_doc(30_000, seed=3))
    with a.open() as rep:
        doc = rep.add_doc(f)
    a.sync()
    b.sync()
    with a.open() as rep:  # a version whose delta does not rebuild the hash it claims
        good = rep.versions.blob(bytes.fromhex(doc.sha256))
        from hbw_sync import delta as delta_mod

        other = edit(good, 0.5, b"X" * 50)
        d = delta_mod.make_delta(good, other)
        lie = hashlib.sha256(b"something else").digest()
        op = make_op(Kind.DOC, bytes.fromhex(doc.id), 1 << 62, None, sha256=lie, size=len(other), delta=d,
                     base_sha256=bytes.fromhex(doc.sha256))
        data = wire.encode_batch(wire.Batch(rep.require_team(), rep.author.device_id, 777, 1, (op,)), rep.author,
                                 rep.current_key())
        pub = rep.author.public
    with b.open() as rep:
        rep.apply_batch(data, pub)  # the batch is sound; the version inside it is not
        assert rep.store.execute("SELECT COUNT(*) FROM blobs WHERE sha256 = ?", (lie,)).fetchone()[0] == 0
        with pytest.raises(IntegrityError, match="missing"):
            rep.doc_bytes(doc.id)  # current points at the refused version: said plainly, never wrong bytes
        assert rep.doc_bytes(doc.id, version=1)[1] == good  # earlier versions stay readable
        problems = [r[0] for r in rep.store.execute("SELECT detail FROM sync_log WHERE how = 'apply'")]
        assert any("does not rebuild to its recorded hash" in p for p in problems)


def test_late_joiner_gets_documents_in_full(team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hbw_sync.server import relay

    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 3)
    a = team.join("amina", "supervisor")
    f = tmp_path / "plan.txt"
    data = text_doc(100_000, seed=4)
    f.write_bytes(data)
    with a.open() as rep:
        doc = rep.add_doc(f)
    a.sync()
    for i in range(4):
        data = edit(data, 0.1 * (i + 1), f"edit {i} ".encode() * 5)
        f.write_bytes(data)
        with a.open() as rep:
            rep.update_doc(doc.id, f)
        a.sync()
    a.sync()
    late = team.join("bosco")
    a.sync()
    r = late.sync()
    assert r.received_batches < 5  # a snapshot, not the whole chain
    with late.open() as rep:
        assert rep.doc_bytes(doc.id)[1] == data


def test_delta_upload_resumes_across_a_cut_link(team: Team, tmp_path: Path) -> None:
    a, b = team.pair("amina", "chidi")
    f = tmp_path / "scan.bin"
    data = os.urandom(600_000)
    f.write_bytes(data)
    with a.open() as rep:
        doc = rep.add_doc(f)
    a.sync()
    b.sync()
    data = data[:300_000] + os.urandom(200_000) + data[300_000:]  # a big insertion: a big delta
    f.write_bytes(data)
    with a.open() as rep:
        rep.update_doc(doc.id, f)
    assert 64 * 1024 < last_batch_size(a) < 300_000  # a delta, but one that travels in pieces
    with pytest.raises(TransientError):
        syncing.sync(a.home, a.passphrase, transport=FlakyLink("stream", allow=0, keep=50_000))
    resumed = FlakyLink("stream", allow=None)
    syncing.sync(a.home, a.passphrase, transport=resumed)
    assert resumed.streamed == [last_batch_size_sent(team) - 50_000]  # on from the byte the relay held
    b.sync()
    with b.open() as rep:
        assert rep.doc_bytes(doc.id)[1] == data


def last_batch_size_sent(team: Team) -> int:
    import sqlite3

    conn = sqlite3.connect(team.data / "relay.db")
    try:
        return conn.execute("SELECT size FROM batches ORDER BY rseq DESC LIMIT 1").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("name,expected", [
    ("../../etc/passwd", "_._etc_passwd"),
    ("/etc/shadow", "_etc_shadow"),
    ("C:\\Windows\\system.ini", "C__Windows_system.ini"),
    ("..", "document"),
    (".hidden", "hidden"),
    ("CON", "_CON"),
    ("lpt1.txt", "_lpt1.txt"),
    ("report\x00.pdf", "report_.pdf"),
    ("normal report (v2).docx", "normal report (v2).docx"),
])
def test_names_from_others_are_made_safe(name: str, expected: str) -> None:
    got = safe_filename(name)
    assert got == expected
    assert "/" not in got and "\\" not in got and ".." not in got and got not in ("", ".")


def test_doc_get_never_writes_outside_the_chosen_place(team: Team, tmp_path: Path) -> None:
    a, b = team.pair("amina", "chidi")
    f = tmp_path / "x.txt"
    f.write_bytes(b"secret plan")
    with a.open() as rep:
        rep.add_doc(f, name="../../../escape.txt")
    a.sync()
    b.sync()
    target = tmp_path / "downloads"
    target.mkdir()
    env = {"HBW_SYNC_HOME": str(b.home), "HBW_PASSPHRASE": b.passphrase}
    with b.open() as rep:
        did = rep.docs()[0].id
    res = CliRunner().invoke(client_cli, ["doc", "get", did[:6], "-o", str(target)], env=env)
    assert res.exit_code == 0, res.output
    assert [p.name for p in target.iterdir()] == ["_._._escape.txt"]
    assert not (tmp_path / "escape.txt").exists()


def test_a_device_behind_a_snapshot_keeps_every_document_version_it_reads(
        team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots made often (as a bytes rule for late joiners would) must not break a document's
    version chain on devices that were only behind, nor on the supervisor who made them."""
    from hbw_sync.server import relay

    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 2)
    dana = team.join("dana", "supervisor")
    amina, bosco = team.join("amina"), team.join("bosco")
    for m in (dana, amina, bosco, dana):
        m.sync()
    f = tmp_path / "report.txt"
    data = text_doc(200_000, seed=7)
    f.write_bytes(data)
    with amina.open() as rep:
        doc = rep.add_doc(f)
    for m in (amina, dana, bosco):
        m.sync()
    for i in range(5):  # Amina edits; Dana syncs (and makes snapshots); Bosco stays behind
        data = edit(data, 0.1 * (i + 1), f"line {i} ".encode() * 5)
        f.write_bytes(data)
        with amina.open() as rep:
            rep.update_doc(doc.id, f)
        amina.sync()
        with dana.open() as rep:
            rep.change([(Kind.TASK, os.urandom(8), {"title": f"task {i}"})])
        dana.sync()
        dana.sync()
    for m in (bosco, dana, amina, bosco, dana):
        m.sync()
    for m in (dana, bosco, amina):
        with m.open() as rep:
            assert rep.doc_bytes(doc.id)[1] == data, m.name


def test_a_delta_after_a_large_batch_still_downloading_waits_for_its_base(
        team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's Friday: a document too large to travel inline (fetched in pieces), then a small
    delta batch; a supervisor asked for a snapshot applies its inbox mid-sync. The delta must wait
    for its base instead of being refused as 'base missing'."""
    from hbw_sync.server import relay

    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 1)  # ask the supervisor at every sync
    dana = team.join("dana", "supervisor")
    amina = team.join("amina")
    dana.sync()
    amina.sync()
    f = tmp_path / "report.bin"
    data = os.urandom(300_000)  # incompressible: well over the inline limit, downloaded in pieces
    f.write_bytes(data)
    with amina.open() as rep:
        doc = rep.add_doc(f)
    amina.sync()
    data = data[:1000] + b"one corrected line" + data[1000:]
    f.write_bytes(data)
    with amina.open() as rep:
        rep.update_doc(doc.id, f)
    amina.sync()
    dana.sync()
    dana.sync()
    with dana.open() as rep:
        problems = [r[0] for r in rep.store.execute("SELECT detail FROM sync_log WHERE how = 'apply'")]
        assert not any("base is missing" in p for p in problems), problems
        assert rep.doc_bytes(doc.id)[1] == data
