"""Documents as sealed chunks outside batches, fetched by policy (PROTOCOL.md §18e), on a real relay.

Two and three devices with real stores, a real relay on loopback, real files and the real CLI:
a 5 MB document reaches the relay as chunks and the batch carries only its manifest; a
member whose policy is ``mine`` and who does not hold the task does not download it until
``doc get``; ``all`` downloads everything; ``none`` nothing; an edit re-sends only the chunks
it touched; a cut upload goes on where it stopped; old (inline) documents still read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay_helpers import Member, Team
from relay_helpers import incompressible as pdf_like  # the name these tests use
from relay_helpers import member_cli as cli
from test_transfer import cut_stream
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.documents import CHUNKED_FROM
from hbw_sync.errors import TransientError, UsageError

# Every test here runs against each relay storage backend (SQLite: chunk files; PostgreSQL: rows).
pytestmark = pytest.mark.usefixtures("backend")

MB = 1_000_000



def relay_chunk_bytes(team: Team) -> int:
    return team.chunk_bytes()


def local_chunk_count(m: Member) -> int:
    with Device.open(m.home) as dev:
        if not dev.store.execute("SELECT 1 FROM sqlite_master WHERE name = 'doc_chunks'").fetchone():
            return 0
        return dev.store.execute("SELECT COUNT(*) FROM doc_chunks").fetchone()[0]



def test_mine_policy_downloads_nothing_until_doc_get(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    scan = tmp_path / "scan.pdf"
    data = pdf_like(5 * MB)
    scan.write_bytes(data)
    with dana.open() as rep:
        task = rep.add_task("Check the district budget")  # dana's own task, not chidi's
        doc = rep.add_doc(scan, task=task.id)
        outbox = rep.store.execute("SELECT SUM(size) FROM outbox").fetchone()[0]
    assert outbox < 64_000, "the batch carries the manifest, not the 5 MB"
    report = dana.sync()
    assert report.ok and relay_chunk_bytes(team) >= 5 * MB
    before = chidi.sync()
    assert before.received_bytes < 200_000, "mine: a document on a task chidi does not hold is not downloaded"
    assert local_chunk_count(chidi) == 0
    code, out = cli(chidi, "doc", "list")
    assert code == 0 and "not on this device" in out and "scan.pdf" in out
    code, out = cli(chidi, "doc", "list", "--json")
    assert '"local": false' in out
    target = tmp_path / "chidi-copy.pdf"
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(target))
    assert code == 0, out
    assert "fetched from the relay" in out and target.read_bytes() == data
    code, out = cli(chidi, "doc", "list", "--json")
    assert '"local": false' not in out
    # once here, a second get reads only the local store
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(target), "--force")
    assert code == 0 and "fetched" not in out


def test_mine_fetches_docs_on_my_tasks_and_all_fetches_everything(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    desk = team.join("desk")
    desk.sync()
    code, out = cli(desk, "doc", "policy", "all")
    assert code == 0 and "all" in out
    f1, f2 = tmp_path / "for-chidi.pdf", tmp_path / "office.pdf"
    f1.write_bytes(pdf_like(2 * MB, 2))
    f2.write_bytes(pdf_like(2 * MB, 3))
    with dana.open() as rep:
        t = rep.add_task("Sign the forms", assignee="chidi")
        d1 = rep.add_doc(f1, task=t.id)
        d2 = rep.add_doc(f2)
    dana.sync()
    chidi.sync()
    desk.sync()
    with chidi.open() as rep:
        local = {d.id: d.local for d in rep.docs()}
        assert local == {d1.id: True, d2.id: False}
        assert rep.doc_bytes(d1.id)[1] == f1.read_bytes()
    with desk.open() as rep:
        assert all(d.local for d in rep.docs()) and len(rep.docs()) == 2
        assert rep.doc_policy() == "all"
    # none: nothing, not even a document on one's own task
    code, _ = cli(chidi, "doc", "policy", "none")
    f1.write_bytes(pdf_like(2 * MB, 4))
    with dana.open() as rep:
        rep.update_doc(d1.id, f1)
    dana.sync()
    chidi.sync()
    with chidi.open() as rep:
        assert not rep.doc(d1.id).local
    code, out = cli(chidi, "doc", "policy")
    assert code == 0 and "none" in out
    code, out = cli(chidi, "doc", "policy", "everything")
    assert code == 2


def test_an_edit_resends_only_the_chunks_it_touched(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "minutes.pdf"
    data = pdf_like(6 * MB, 5)
    f.write_bytes(data)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    first = dana.sync()
    chidi.sync()
    edited = data[:3 * MB] + b"one more paragraph of minutes " * 10 + data[3 * MB + 300:]
    f.write_bytes(edited)
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
    second = dana.sync()
    assert first.sent_bytes > 6 * MB
    assert second.sent_bytes < 600_000, "a mid-file edit of a 6 MB file re-sends a few chunks"
    got = chidi.sync()
    assert got.received_bytes < 600_000
    with chidi.open() as rep:
        assert rep.doc_bytes(doc.id)[1] == edited
        assert rep.doc_bytes(doc.id, version=1)[1] == data  # the first version is still whole here


def local_sealed_bytes(m) -> int:
    with Device.open(m.home) as dev:
        return dev.store.execute("SELECT COALESCE(SUM(length(sealed)), 0) FROM doc_chunks").fetchone()[0]


def test_a_cut_upload_goes_on_where_it_stopped(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    f = tmp_path / "recording.bin"
    f.write_bytes(pdf_like(4 * MB, 6))
    with dana.open() as rep:
        doc = rep.add_doc(f)
    packs, streamed = [0], []

    async def cut_in_the_third_pack(url: str, body: bytes, timeout: float, **kw) -> bytes:
        if kw.get("path") == "/v1/stream":  # a pack of sealed chunks, streamed (§18e)
            packs[0] += 1
            head_end = 2 + int.from_bytes(body[:2], "big")
            if packs[0] == 3:  # cut 300,000 bytes into the third pack: the relay keeps them
                await cut_stream(url, body, head_end + 300_000)
                raise TransientError("the link dropped")
            streamed.append(len(body) - head_end)
        return await syncing.post(url, body, timeout, **kw)

    with pytest.raises(TransientError):
        dana.sync(transport=cut_in_the_third_pack)
    held = relay_chunk_bytes(team)
    assert 0 < held < 4 * MB
    with Device.open(dana.home) as dev:  # the batch naming the chunks did not go before them
        assert dev.store.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= 1
    streamed.clear()
    again = dana.sync(transport=cut_in_the_third_pack)
    assert again.ok
    # Only what the relay lacked went: not the chunks it kept, nor the 300,000 bytes of the cut pack.
    sealed_total = local_sealed_bytes(dana)
    assert sum(streamed) <= sealed_total - held - 300_000 + 4096 * (len(streamed) + 1), (streamed, held)
    chidi.sync()
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "out.bin"))
    assert code == 0 and (tmp_path / "out.bin").read_bytes() == f.read_bytes()


def test_locked_sync_uploads_chunks_and_small_documents_stay_inline(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    small, big = tmp_path / "note.txt", tmp_path / "big.pdf"
    small.write_bytes(b"orchid lantern minutes" * 100)
    big.write_bytes(pdf_like(CHUNKED_FROM + 10, 7))
    with dana.open() as rep:
        s = rep.add_doc(small)
        b = rep.add_doc(big)
    assert local_chunk_count(dana) >= 1
    assert dana.sync(unlocked=False).ok  # a scheduler, no passphrase: sealed chunks go anyway
    assert relay_chunk_bytes(team) > CHUNKED_FROM
    chidi.sync()
    with chidi.open() as rep:
        assert rep.doc(s.id).local and rep.doc_bytes(s.id)[1] == small.read_bytes()
        assert not rep.doc(b.id).local
        with pytest.raises(UsageError) as e:
            rep.doc_bytes(b.id)
        assert e.value.code == "usage.doc_not_local"
        assert syncing.fetch_doc(rep, b.id) > CHUNKED_FROM
        assert rep.doc_bytes(b.id)[1] == big.read_bytes()


def test_doc_get_says_plainly_when_the_author_has_not_synced(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    f = tmp_path / "scan.pdf"
    f.write_bytes(pdf_like(2 * MB, 8))
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    team.drop_chunks()  # the batch is at the relay, the chunks are not (lost with a disk)
    report = chidi.sync()
    assert report.ok
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "x.pdf"))
    assert code == 2 and "not at the relay yet" in out
    assert not (tmp_path / "x.pdf").exists() and not (tmp_path / "x.pdf.hbw-part").exists()


def test_a_file_over_the_limit_is_refused_at_doc_add(team: Team, tmp_path: Path) -> None:
    from hbw_sync.client.documents import MAX_DOC_BYTES

    dana = team.join("dana", "supervisor")
    dana.sync()
    huge = tmp_path / "huge.iso"
    with huge.open("wb") as f:  # sparse: refused from its size, before anything is read
        f.truncate(MAX_DOC_BYTES + 1)
    code, out = cli(dana, "doc", "add", str(huge))
    assert code == 2 and "4 GiB" in out and "nothing was added" in out
    code, out = cli(dana, "doc", "add", "--help")
    assert "4 GiB" in out and "4,294,967,296 bytes" in out
    with dana.open() as rep:
        assert rep.docs() == []
    os.truncate(huge, 0)


def test_a_cut_download_keeps_what_came_and_goes_on(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    f = tmp_path / "scan.pdf"
    f.write_bytes(pdf_like(4 * MB, 9))
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    gets = [0]

    async def cut_after_one_get(url: str, body: bytes, timeout: float, **kw) -> bytes:
        if b"chunk_get" in body[:200]:
            gets[0] += 1
            if gets[0] > 1:
                raise TransientError("the link dropped")
        return await syncing.post(url, body, timeout, **kw)

    with chidi.open() as rep:
        with pytest.raises(TransientError):
            syncing.fetch_doc(rep, doc.id, transport=cut_after_one_get)
        kept = local_chunk_count(chidi)
        assert kept > 0 and rep.doc_missing(doc.id)
        assert syncing.pending_bytes(chidi.home) >= 0
        rest = syncing.fetch_doc(rep, doc.id)
        assert 0 < rest < 4 * MB  # only what was missing
        assert rep.doc_bytes(doc.id)[1] == f.read_bytes()


def test_pending_bytes_counts_chunks_not_yet_at_the_relay(team: Team, tmp_path: Path) -> None:
    dana = team.join("dana", "supervisor")
    dana.sync()
    f = tmp_path / "scan.pdf"
    f.write_bytes(pdf_like(3 * MB, 10))
    with dana.open() as rep:
        rep.add_doc(f)
    assert syncing.pending_bytes(dana.home) > 3 * MB
    dana.sync()
    assert syncing.pending_bytes(dana.home) == 0


def test_chunks_the_relay_collected_before_their_batch_went_are_sent_again(team: Team, tmp_path: Path) -> None:
    """A sync uploads the chunks, the link drops before the batch; a week offline; the relay's GC took them."""
    dana, chidi = team.pair("dana", "chidi")
    f = tmp_path / "scan.pdf"
    f.write_bytes(pdf_like(2 * MB, 11))
    with dana.open() as rep:
        doc = rep.add_doc(f)

    async def drop_the_sync(url: str, body: bytes, timeout: float, **kw) -> bytes:
        if b"\xa4sync" in body[:120]:
            raise TransientError("the link dropped")
        return await syncing.post(url, body, timeout, **kw)

    with pytest.raises(TransientError):
        dana.sync(transport=drop_the_sync)
    assert relay_chunk_bytes(team) > 2 * MB
    team.drop_chunks()  # what garbage collection does to unreferenced chunks after a week
    assert dana.sync().ok
    assert relay_chunk_bytes(team) > 2 * MB
    chidi.sync()
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "x.pdf"))
    assert code == 0 and (tmp_path / "x.pdf").read_bytes() == f.read_bytes()


def test_progress_counts_chunk_bytes_both_ways(team: Team, tmp_path: Path) -> None:
    """Issue 12: a chunked document's upload and download show in the progress events (``--progress json``)."""
    import json

    from hbw_sync.client.progress import Progress

    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "scan.pdf"
    f.write_bytes(pdf_like(3 * MB, 41))
    with dana.open() as rep:
        rep.add_doc(f)
    up: list[Progress] = []
    r = dana.sync(on_progress=up.append)
    sent = [e for e in up if e.phase == "upload"]
    assert len(sent) >= 3, sent  # the chunk puts show, not only the end
    assert all(a.done <= b.done for a, b in zip(sent, sent[1:])), [(a.done, b.done) for a, b in zip(sent, sent[1:]) if a.done > b.done]
    assert sent[-1].done == sent[-1].total == r.sent_bytes > 3 * MB
    assert all(e.total is not None and e.total > 3 * MB for e in sent if e.done), \
        "the total counts the chunks from the first byte sent"

    down: list[Progress] = []
    r = chidi.sync(on_progress=down.append)
    got = [e for e in down if e.phase == "download"]
    assert all(a.done <= b.done for a, b in zip(got, got[1:]))
    assert got[-1].done == got[-1].total == r.received_bytes > 3 * MB
    assert any(e.total is not None and e.total > 3 * MB and e.done < MB for e in got), \
        "while chunks come, the total already counts them"

    # the CLI's JSON lines carry the same counts
    f.write_bytes(pdf_like(3 * MB, 42))
    with dana.open() as rep:
        rep.add_doc(f, name="second.pdf")
    env = {"HBW_SYNC_HOME": str(dana.home), "HBW_PASSPHRASE": dana.passphrase}
    res = CliRunner().invoke(client_cli, ["sync", "--progress", "json", "--json"], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stderr.splitlines() if x.startswith("{")]
    ups = [x for x in lines if x.get("event") == "progress" and x["phase"] == "upload"]
    assert ups and ups[-1]["done_bytes"] == ups[-1]["total_bytes"] > 3 * MB
