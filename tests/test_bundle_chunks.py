"""Documents of 1 MiB and more travel inside bundles as sealed chunks (PROTOCOL.md §18f), through the real CLIs.

Chidi syncs only by bundle: the 2 MB scan he adds must reach the office with the bundle (chunks
before the batch that names them), be kept like ``chunk_put`` keeps them, and be readable by
Dana, who syncs online. A bundle too small for a document says so and writes nothing; a bundle
that would pass the team's document quota is refused whole.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay_helpers import Member, Team
from relay_helpers import incompressible
from relay_helpers import member_cli as cli
from hbw_sync.client import bundles
from hbw_sync.client import sync as syncing
from hbw_sync.errors import LimitError
from hbw_sync.server import admin, limits, relay
from hbw_sync.server.cli import cli as relay_cli

# Every test here runs against each relay storage backend (SQLite: chunk files; PostgreSQL: rows).
pytestmark = pytest.mark.usefixtures("backend")

MB = 1_000_000



def relay_chunk_bytes(team: Team) -> int:
    return team.chunk_bytes()


def batch_count(team: Team) -> int:
    return team.sql("SELECT COUNT(*) FROM batches")[0][0]


def add_scan(m: Member, tmp_path: Path, size: int = 2 * MB) -> tuple[bytes, str]:
    data = incompressible(size, 7)  # as a scan is
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(data)
    code, out = cli(m, "doc", "add", str(scan))
    assert code == 0, out
    with m.open() as rep:
        (doc,) = [d for d in rep.docs() if d.name == "scan.pdf"]
    return data, doc.id


def test_a_document_added_offline_reaches_the_office_by_bundle(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    data, did = add_scan(chidi, tmp_path)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["doc_chunks"] >= 8 and r["doc_chunk_bytes"] >= 2 * MB and r["bytes"] >= 2 * MB
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / "c.hbw"),
                                         "--reply-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "document chunks received" in res.output
    assert relay_chunk_bytes(team) >= 2 * MB
    reply = next(tmp_path.glob("hbw-reply-*.hbw"))
    assert syncing.pending_bytes(chidi.home) >= 2 * MB  # the scan's chunks wait to be confirmed
    code, out = cli(chidi, "status")
    assert code == 0 and "Documents waiting to be sent: 2." in out, out
    code, out = cli(chidi, "bundle", "import", str(reply))
    assert code == 0 and "1 of your batches confirmed" in out, out
    # The reply confirms the chunks too (the relay kept them before it answered): nothing waits any more.
    assert syncing.pending_bytes(chidi.home) == 0
    code, out = cli(chidi, "status", "--json")
    assert code == 0 and json.loads(out)["outbox"]["document_bytes"] == 0, out
    assert dana.sync().ok
    code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0, out
    assert (tmp_path / "copy.pdf").read_bytes() == data
    # The same bundle again (its reply lost in the mail): nothing is stored twice.
    before = relay_chunk_bytes(team)
    admin.ingest_bundle(team.data, tmp_path / "c.hbw", tmp_path / "again")
    assert relay_chunk_bytes(team) == before and batch_count(team) >= 1


def test_a_document_larger_than_a_bundle_is_written_as_numbered_bundles(team: Team, tmp_path: Path) -> None:
    _dana, chidi = team.pair("dana", "chidi")
    add_scan(chidi, tmp_path)
    # No bundle can hold a part of 64 KiB and more: refused, with the name and the size; nothing written.
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--max-size", "64KiB")
    assert code == 2, out  # a usage error: the --max-size asked for
    assert "'scan.pdf'" in out and "2.0 MB" in out and "--max-size" in out and "online" in out, out
    assert not list(tmp_path.glob("c*.hbw"))
    # 1 MB bundles: the 2 MB scan is spread over numbered files, in one export.
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"), "--max-size", "1MB", "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["parts"] == 3 and [Path(f).name for f in r["files"]] == ["c-1of3.hbw", "c-2of3.hbw", "c-3of3.hbw"]
    assert r["split_document"]["name"] == "'scan.pdf'" and r["batches"] == 1
    assert all(Path(f).stat().st_size <= 1_000_000 + 4096 for f in r["files"])
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "d.hbw"), "--max-size", "1MB")
    assert code == 0 and "Wrote 3 bundles" in out and "Take all of them to the office, in any order." in out, out


def test_a_25_mb_document_crosses_in_3_bundles_taken_in_any_order(team: Team, tmp_path: Path) -> None:
    """Issue 11: a document larger than a bundle travels in pieces across bundles. The relay takes the
    parts in any order (the one naming the document first, here); the other device never shows a
    version whose parts are missing, and gets the file byte-exact once all are in."""
    dana, chidi = team.pair("dana", "chidi")
    data, did = add_scan(chidi, tmp_path, 25 * MB)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "scan.hbw"), "--max-size", "10MB", "--json")
    assert code == 0, out
    files = [Path(f) for f in json.loads(out)["files"]]
    assert len(files) == 3 and all(f.stat().st_size <= 10 * MB + 4096 for f in files)
    assert syncing.pending_bytes(chidi.home) >= 25 * MB
    replies = []
    for i, f in enumerate((files[2], files[0], files[1])):  # the part with the document's change first
        out_dir = tmp_path / f"r{i}"
        res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(f),
                                             "--reply-dir", str(out_dir)])
        assert res.exit_code == 0, res.output
        replies += sorted(out_dir.glob("hbw-reply-*.hbw"))
        if i == 0:  # the version is known, not its bytes: Dana is told they are not at the relay yet
            assert dana.sync().ok
            code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "early.pdf"))
            assert code != 0 and "not at the relay yet" in out, out
            assert not (tmp_path / "early.pdf").exists()
    assert dana.sync().ok
    code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0, out
    assert (tmp_path / "copy.pdf").read_bytes() == data
    for reply in reversed(replies):  # and Chidi's replies, in any order
        code, out = cli(chidi, "bundle", "import", str(reply))
        assert code == 0, out
    assert syncing.pending_bytes(chidi.home) == 0


def test_a_bundle_over_the_document_quota_is_refused_whole(team: Team, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _dana, chidi = team.pair("dana", "chidi")
    add_scan(chidi, tmp_path)
    bundles.export_bundle(chidi.home, tmp_path / "c.hbw", passphrase=chidi.passphrase)
    before = batch_count(team)
    # The quota 'serve --chunk-quota-gb' keeps in the relay's settings; 'bundle ingest' (its own process,
    # without serve's options) applies it too.
    assert admin.chunk_quota(team.data) == limits.CHUNK_QUOTA  # nothing kept yet: the default
    admin.set_chunk_quota(team.data, MB)
    assert admin.chunk_quota(team.data) == MB
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / "c.hbw"),
                                         "--reply-dir", str(tmp_path / "replies")])
    assert res.exit_code == 65 and "nothing of this bundle was applied" in res.output, res.output
    with pytest.raises(LimitError) as e:
        admin.ingest_bundle(team.data, tmp_path / "c.hbw", tmp_path / "replies")
    assert e.value.code == "protocol.quota" and "nothing of this bundle was applied" in e.value.message
    assert batch_count(team) == before and relay_chunk_bytes(team) == 0
    assert not (tmp_path / "replies").exists() or not any((tmp_path / "replies").iterdir())
    admin.set_chunk_quota(team.data, 20 * 1024**3)  # serve started again with the default
    r = admin.ingest_bundle(team.data, tmp_path / "c.hbw", tmp_path / "replies")  # the same bundle, room now
    assert r["batches_in"] == 1 and r["chunks_in"] >= 8


def test_the_reply_bundle_carries_the_chunks_the_device_wants(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    code, out = cli(chidi, "doc", "policy", "all")
    assert code == 0, out
    data, did = add_scan(dana, tmp_path)
    assert dana.sync().ok
    # The first bundle brings the version (its manifest); the device then knows which chunks it wants.
    bundles.export_bundle(chidi.home, tmp_path / "1.hbw", passphrase=chidi.passphrase)
    r = admin.ingest_bundle(team.data, tmp_path / "1.hbw", tmp_path / "r1")
    assert r["chunks_out"] == 0
    bundles.import_bundle(chidi.home, Path(r["reply"]), chidi.passphrase)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "2.hbw"), "--json")
    assert code == 0, out
    r = admin.ingest_bundle(team.data, tmp_path / "2.hbw", tmp_path / "r2")
    assert r["chunks_out"] >= 8 and r["reply_bytes"] >= 2 * MB
    code, out = cli(chidi, "bundle", "import", r["reply"], "--json")
    assert code == 0 and json.loads(out)["doc_chunks"] >= 8, out
    code, out = cli(chidi, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0 and "fetched" not in out, out  # read from the store: the reply brought it
    assert (tmp_path / "copy.pdf").read_bytes() == data


def test_the_reply_carries_chunks_only_within_its_size_cap(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    add_scan(dana, tmp_path)
    assert dana.sync().ok
    bundles.export_bundle(chidi.home, tmp_path / "1.hbw", passphrase=chidi.passphrase)
    bundles.import_bundle(chidi.home, Path(admin.ingest_bundle(team.data, tmp_path / "1.hbw", tmp_path / "r1")["reply"]),
                          chidi.passphrase)
    bundles.export_bundle(chidi.home, tmp_path / "2.hbw", 1_000_000, passphrase=chidi.passphrase)
    r = admin.ingest_bundle(team.data, tmp_path / "2.hbw", tmp_path / "r2")
    assert 0 < r["chunks_out"] and all(x["bytes"] <= 1_000_000 for x in r["replies"])
    got = bundles.import_bundle(chidi.home, Path(r["reply"]), chidi.passphrase)
    assert got["doc_chunks"] == r["chunks_out"]


def test_a_bundle_with_a_malformed_chunk_changes_nothing(team: Team, tmp_path: Path) -> None:
    from hbw_sync.client import Device
    from hbw_sync.errors import ProtocolError

    _dana, chidi = team.pair("dana", "chidi")
    add_scan(chidi, tmp_path)
    with Device.open(chidi.home) as dev:  # one chunk damaged to a size no sealed chunk has
        dev.store.execute("UPDATE doc_chunks SET sealed = x'0102030405' WHERE rowid = (SELECT MIN(rowid) FROM doc_chunks)")
    bundles.export_bundle(chidi.home, tmp_path / "c.hbw", passphrase=chidi.passphrase)
    before = batch_count(team)
    with pytest.raises(ProtocolError):
        admin.ingest_bundle(team.data, tmp_path / "c.hbw", tmp_path / "replies")
    assert batch_count(team) == before and relay_chunk_bytes(team) == 0


def test_a_bundle_over_http_carries_its_chunks(team: Team, tmp_path: Path) -> None:
    import urllib.request

    dana, chidi = team.pair("dana", "chidi")
    data, did = add_scan(chidi, tmp_path)
    bundles.export_bundle(chidi.home, tmp_path / "c.hbw", passphrase=chidi.passphrase)
    req = urllib.request.Request(team.url + "/v1/bundle", data=(tmp_path / "c.hbw").read_bytes(), method="POST")
    (tmp_path / "reply.hbw").write_bytes(urllib.request.urlopen(req, timeout=30).read())
    assert bundles.import_bundle(chidi.home, tmp_path / "reply.hbw", chidi.passphrase)["acks"] == 1
    assert dana.sync().ok
    code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0 and (tmp_path / "copy.pdf").read_bytes() == data, out


def test_a_reply_carrying_only_a_document_counts_its_change(team: Team, tmp_path: Path) -> None:
    """A batch holding nothing but a document is a change like any other, and the words say so."""
    dana, chidi = team.pair("dana", "chidi")
    doc = tmp_path / "minutes.pdf"
    doc.write_bytes(random.Random(3).randbytes(100_000))
    assert cli(dana, "doc", "add", str(doc))[0] == 0
    assert dana.sync().ok
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "c.hbw"))
    assert code == 0, out
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / "c.hbw"),
                                         "--reply-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    code, out = cli(chidi, "bundle", "import", str(next(tmp_path.glob("hbw-reply-*.hbw"))))
    assert code == 0 and "0 of your batches confirmed, 1 received (1 change)." in out, out
    with chidi.open() as rep:
        assert [d.name for d in rep.docs()] == ["minutes.pdf"]


def test_a_bundle_only_device_gets_a_document_edited_twice_as_delta_versions(team: Team, tmp_path: Path) -> None:
    """Issue 12 item 1: Dana edits a 2 MB document twice online; each edit travels as a delta, so the
    relay never holds the chunks only those deltas rebuild. Chidi, who syncs only by bundle and never
    had the document, asks in his bundle for the chain's base too, and rebuilds both edits byte-exact."""
    dana, chidi = team.pair("dana", "chidi")
    code, out = cli(chidi, "doc", "policy", "all")
    assert code == 0, out
    f = tmp_path / "minutes.pdf"
    versions = [random.Random(11).randbytes(2 * MB)]
    f.write_bytes(versions[0])
    with dana.open() as rep:
        doc = rep.add_doc(f)
    assert dana.sync().ok
    for i in range(2):
        v = versions[-1]
        at = 500_000 * (i + 1)
        versions.append(v[:at] + f"edit {i} of the minutes ".encode() * 6 + v[at + 100:])
        f.write_bytes(versions[-1])
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
        up = dana.sync()
        assert up.ok and up.sent_bytes < 8_000, f"edit {i} sent {up.sent_bytes} bytes: not a delta version"
    def round_trip(n: int) -> dict:
        code, out = cli(chidi, "bundle", "export", str(tmp_path / f"c{n}.hbw"), "--json")
        assert code == 0, out
        exported = json.loads(out)
        res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data),
                                             str(tmp_path / f"c{n}.hbw"), "--reply-dir", str(tmp_path / f"r{n}")])
        assert res.exit_code == 0, res.output
        (reply,) = (tmp_path / f"r{n}").glob("hbw-reply-*.hbw")
        code, out = cli(chidi, "bundle", "import", str(reply), "--json")
        assert code == 0, out
        return {"exported": exported, "imported": json.loads(out)}

    round_trip(1)  # the document's versions arrive (their ops); not its bytes: the bundle did not know to ask
    with chidi.open() as rep:
        assert not rep.doc(doc.id).local
    r = round_trip(2)  # the want-list now names the base's chunks: the reply carries them, the edits are rebuilt
    assert r["imported"]["doc_chunks"] >= 8, r
    with chidi.open() as rep:
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == versions[2]
        assert rep.doc_bytes(doc.id, version=2)[1] == versions[1]
        assert rep.doc_bytes(doc.id, version=1)[1] == versions[0]
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0, out
    assert (tmp_path / "copy.pdf").read_bytes() == versions[2]


def test_the_parts_of_one_export_ingested_at_once_get_a_reply_each(team: Team, tmp_path: Path) -> None:
    """Office IT ingests every part of an export in one command into one folder: each part gets its
    own reply (they share the export's counter, so a name by counter alone let the last overwrite
    the others and lose the reply that acknowledges the batch), and once all are imported nothing
    waits on the device."""
    dana, chidi = team.pair("dana", "chidi")
    data, did = add_scan(chidi, tmp_path, 3 * MB)
    code, out = cli(chidi, "bundle", "export", str(tmp_path / "scan.hbw"), "--max-size", "1MB", "--json")
    assert code == 0, out
    files = [Path(f) for f in json.loads(out)["files"]]
    assert len(files) >= 3
    out_dir = tmp_path / "replies"
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), *map(str, reversed(files)),
                                         "--reply-dir", str(out_dir), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert len(lines) == len(files) and sum(x["batches_in"] for x in lines) == 1
    replies = sorted(out_dir.glob("hbw-reply-*.hbw"))
    assert len(replies) == len(files), replies
    for reply in replies:
        code, out = cli(chidi, "bundle", "import", str(reply))
        assert code == 0, out
    assert syncing.pending_bytes(chidi.home) == 0
    assert dana.sync().ok
    code, out = cli(dana, "doc", "get", did, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0 and (tmp_path / "copy.pdf").read_bytes() == data, out
