"""Delta versions of chunked documents (PROTOCOL.md §18c, §18e), on a real relay.

A one-place edit of a 1-32 MiB document travels as a few-KB delta again, not as the chunks it
touched: its author uploads none of them, a device holding the previous version rebuilds them
(downloading nothing but the batch), a device without it rebuilds along the chain from chunks
the relay holds (``doc get``, a late joiner with policy ``all``), and a delta that does not
rebuild to its manifest refuses the version, not the batch.
"""

from __future__ import annotations

import random
from pathlib import Path

from relay_helpers import Team
from relay_helpers import incompressible as pdf_like  # the name these tests use
from relay_helpers import member_cli as cli
from hbw_sync import chunks
from hbw_sync.client import Device
from hbw_sync.delta.chunked import rebuild_chunks
from hbw_sync.errors import IntegrityError, LimitError

MB = 1_000_000



def edit(data: bytes, at: int, text: bytes) -> bytes:
    return data[:at] + text + data[at + 100:]



def relay_chunk_count(team: Team) -> int:
    return sum(1 for p in (team.data / "chunks").rglob("*") if p.is_file())


def test_an_edit_of_a_chunked_document_travels_as_a_small_delta(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "minutes.pdf"
    v1 = pdf_like(3 * MB, 5)
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    held = relay_chunk_count(team)
    v2 = edit(v1, 1_500_000, b"one more paragraph of minutes " * 4)
    f.write_bytes(v2)
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
    up = dana.sync()
    assert up.sent_bytes < 8_000, f"a one-place edit of a 3 MB file sent {up.sent_bytes} bytes"
    assert relay_chunk_count(team) == held, "the chunks the delta rebuilds are not uploaded"
    down = chidi.sync()
    assert down.received_bytes < 8_000, f"the receiver downloaded {down.received_bytes} bytes"
    with chidi.open() as rep:
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == v2
        assert rep.doc_bytes(doc.id, version=1)[1] == v1


def test_a_device_without_the_base_rebuilds_along_the_chain(team: Team, tmp_path: Path) -> None:
    """doc get on a policy-none device, and a late joiner with policy all, after three delta versions."""
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "none")
    f = tmp_path / "report.bin"
    versions = [pdf_like(2 * MB, 7)]
    f.write_bytes(versions[0])
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    for i in range(3):
        versions.append(edit(versions[-1], 300_000 * (i + 1), f"edit number {i} ".encode() * 5))
        f.write_bytes(versions[-1])
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
        assert dana.sync().sent_bytes < 8_000
    chidi.sync()
    with chidi.open() as rep:
        assert not rep.doc(doc.id).local
    out_file = tmp_path / "got.bin"
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(out_file))
    assert code == 0, out
    assert out_file.read_bytes() == versions[-1]
    # an older version on demand too: its chain is shorter
    code, out = cli(chidi, "doc", "get", doc.id, "--version", "2", "-o", str(tmp_path / "v2.bin"))
    assert code == 0, out
    assert (tmp_path / "v2.bin").read_bytes() == versions[1]

    desk = team.join("desk")
    cli(desk, "doc", "policy", "all")
    desk.sync()
    with desk.open() as rep:
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == versions[-1]


def test_every_eighth_version_uploads_its_chunks(team: Team, tmp_path: Path) -> None:
    dana, _chidi = team.pair("dana", "chidi")
    f = tmp_path / "log.bin"
    data = pdf_like(1_200_000, 9)
    f.write_bytes(data)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    sent = []
    for i in range(8):
        data = edit(data, 100_000 * (i + 1), f"line {i} ".encode() * 8)
        f.write_bytes(data)
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
        sent.append(dana.sync().sent_bytes)
    assert max(sent[:7]) < 8_000
    assert sent[7] > 50_000, "the 8th version of a chain uploads every chunk the relay lacks"


def test_a_delta_that_does_not_rebuild_its_manifest_is_refused() -> None:
    keys = chunks.ChunkKeys.of(__import__("hbw_sync.crypto", fromlist=["TeamKey"]).TeamKey(1, bytes(32)))
    base = pdf_like(1_300_000, 11)
    new = edit(base, 600_000, b"changed")
    from hbw_sync.delta import make_delta

    payload = make_delta(base, new)
    assert payload is not None
    m, _parts = chunks.split_bytes(keys, new)
    assert b"".join(bytes(p) for _cid, p in rebuild_chunks(keys, m, base, payload)) == new
    # the same file cut at other sizes: ids do not match what the pieces are
    lying = chunks.Manifest(m.epoch, m.size, m.sha256, m.ids, (m.sizes[0] - 1, m.sizes[1] + 1) + m.sizes[2:])
    try:
        list(rebuild_chunks(keys, lying, base, payload))
    except IntegrityError as e:
        assert e.code == "integrity.chunk"
    else:
        raise AssertionError("a manifest whose ids do not match was accepted")
    other = chunks.Manifest(m.epoch, m.size, bytes(32), m.ids, m.sizes)
    try:
        list(rebuild_chunks(keys, other, base, payload))
    except IntegrityError as e:
        assert e.code == "integrity.delta"
    else:
        raise AssertionError("a delta rebuilding another file was accepted")
    big = chunks.Manifest(m.epoch, 40 << 20, m.sha256, m.ids, m.sizes)
    try:
        list(rebuild_chunks(keys, big, base, payload))
    except LimitError as e:
        assert e.code == "protocol.limit"
    else:
        raise AssertionError("a delta version over the limit was accepted")


def test_local_store_holds_rebuilt_chunks_as_not_to_upload(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "a.bin"
    v1 = pdf_like(1_500_000, 13)
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    f.write_bytes(edit(v1, 700_000, b"x" * 50))
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
    dana.sync()
    chidi.sync()
    for m in (dana, chidi):
        with Device.open(m.home) as dev:
            assert dev.store.execute("SELECT COUNT(*) FROM doc_chunks WHERE sent = 0").fetchone()[0] == 0


def test_a_delta_sent_in_the_same_sync_as_its_large_base_is_applied(team: Team, tmp_path: Path) -> None:
    """The base's batch is over 64 KiB, so it goes up after the small batch of the delta (issue 12's bug)."""
    dana, chidi = team.pair("dana", "chidi")
    f = tmp_path / "form.pdf"
    v1 = pdf_like(300_000, 21)
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
        rep.close_outbox()  # the base's batch is closed before the edit: two batches
    v2 = edit(v1, 150_000, b"signed by the director")
    f.write_bytes(v2)
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
        sizes = [r[0] for r in rep.store.execute("SELECT size FROM outbox ORDER BY seq")]
    assert len(sizes) == 2 and sizes[0] > 64 * 1024 > sizes[1], sizes
    dana.sync()
    chidi.sync()
    with chidi.open() as rep:
        assert rep.doc_bytes(doc.id)[1] == v2
        assert rep.doc_bytes(doc.id, version=1)[1] == v1
        problems = [r[0] for r in rep.store.execute("SELECT detail FROM sync_log WHERE how = 'apply'")]
    assert not problems, problems


def test_a_late_joiner_after_snapshots_gets_the_current_version(team: Team, tmp_path: Path,
                                                                monkeypatch) -> None:
    """Issue 12: a device joining after snapshots and several versions of a chunked document gets the
    current version byte-exact with policy ``all``, and with ``mine`` only on ``doc get``."""
    from hbw_sync.server import relay

    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 6)
    dana, chidi = team.pair("dana", "chidi")
    f = tmp_path / "budget.pdf"
    versions = [pdf_like(2 * MB, 31)]
    f.write_bytes(versions[0])
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    for i in range(4):
        versions.append(edit(versions[-1], 250_000 * (i + 1), f"revision {i} ".encode() * 6))
        f.write_bytes(versions[-1])
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
            for k in range(3):
                rep.add_task(f"follow-up {i}.{k}")
                rep.close_outbox()
        dana.sync()
    dana.sync()
    snaps = team.sql("SELECT cursor FROM snapshots")
    assert snaps, "the relay holds a supervisor's snapshot"

    desk = team.join("desk")
    with desk.open() as rep:
        assert not rep.doc(doc.id).local  # mine: not on its tasks, not its own
        assert rep.doc(doc.id).versions == len(versions)
    cli(desk, "doc", "policy", "all")
    desk.sync()
    with desk.open() as rep:
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == versions[-1]

    bosco = team.join("bosco")
    with bosco.open() as rep:
        assert not rep.doc(doc.id).local
    out_file = tmp_path / "bosco.pdf"
    code, out = cli(bosco, "doc", "get", doc.id, "-o", str(out_file))
    assert code == 0, out
    assert out_file.read_bytes() == versions[-1]


# -- vectors (protocol/vectors/chunk_delta.json, scripts/vectors/chunk_delta.py) ----------------------


def test_chunk_delta_vectors_rebuild_and_each_bad_one_fails_with_its_code() -> None:
    import json

    from hbw_sync import crypto
    from hbw_sync.errors import HbwError

    sys_path = str(Path(__file__).parent.parent / "scripts")
    import sys

    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    from vectors.chunk_delta import read

    v = json.loads((Path(__file__).parent.parent / "protocol/vectors/chunk_delta.json").read_text(encoding="utf-8"))
    keys = chunks.ChunkKeys.of(crypto.TeamKey(v["team_key"]["epoch"], bytes.fromhex(v["team_key"]["secret"])))
    assert keys.id_key.hex() == v["team_key"]["id_key"]
    g = v["good"][0]
    args = {k: bytes.fromhex(g[k]) for k in ("base_file", "base_manifest", "sha256", "delta", "manifest_delta")}
    out = read(keys, args["base_file"], args["base_manifest"], args["sha256"], args["delta"], args["manifest_delta"])
    import hashlib

    assert hashlib.sha256(out).hexdigest() == g["file_sha256"]
    m = chunks.decode_manifest(bytes.fromhex(g["manifest"]))
    assert [c.hex() for c in m.ids] == g["chunk_ids"] and list(m.sizes) == g["chunk_sizes"]
    from hbw_sync.delta import apply_delta
    from hbw_sync.delta.chunked import rebuild_needed

    aligned = bytes.fromhex(g["aligned_delta"])
    base_file = args["base_file"]
    assert hashlib.sha256(apply_delta(base_file, aligned, expected_sha256=m.sha256, max_size=m.size)).hexdigest() \
        == g["file_sha256"]
    got = dict(rebuild_needed(aligned, len(base_file), lambda off, n: base_file[off:off + n], m, keys,
                              {bytes.fromhex(c) for c in g["needed_ids"]}))
    assert sorted(c.hex() for c in got) == sorted(g["needed_ids"]) and g["needed_ids"]
    assert len(v["invalid"]) >= 5
    for bad in v["invalid"]:
        a = dict(args)
        for k in ("base_file", "base_manifest", "sha256", "delta", "manifest_delta"):
            if k in bad:
                a[k] = bytes.fromhex(bad[k])
        if "base_file_byte" in bad:
            at, value = bad["base_file_byte"]
            a["base_file"] = a["base_file"][:at] + bytes([value]) + a["base_file"][at + 1:]
        try:
            read(keys, a["base_file"], a["base_manifest"], a["sha256"], a["delta"], a["manifest_delta"])
        except HbwError as e:
            assert (type(e).__name__, e.code) == (bad["expected_error"], bad["expected_code"]), bad["name"]
        else:
            raise AssertionError(f"{bad['name']} was accepted")


def test_the_in_place_rebuild_refuses_every_prefix_and_flipped_byte_with_a_known_code() -> None:
    """The low-memory method-1 path (large, not zip) bounds and checks like ``apply_delta`` (STYLE §7)."""
    import hashlib

    from hbw_sync.delta.chunked import chunked_delta, rebuild, streams_in_place
    from hbw_sync.errors import HbwError

    base = pdf_like(2_500_000, 51)
    new = edit(base, 1_200_000, b"approved")
    assert streams_in_place(base, new)
    d = chunked_delta(base, new, worth=10**9)
    assert d is not None and d[0] == 1
    want = hashlib.sha256(new).digest()
    assert bytes(rebuild(base, d, expected_sha256=want, size=len(new))) == new
    known = {"protocol.truncated", "protocol.trailing", "protocol.zstd", "protocol.delta", "protocol.bomb",
             "integrity.delta"}
    cases = [d[:n] for n in range(0, len(d), max(1, len(d) // 40))] + [d + b"\x00"]
    for i in range(0, len(d), max(1, len(d) // 60)):
        cases.append(d[:i] + bytes([d[i] ^ 0x10]) + d[i + 1:])
    for bad in cases:
        try:
            out = rebuild(base, bad, expected_sha256=want, size=len(new))
        except HbwError as e:
            assert e.code in known, (e.code, e.message)
        else:
            assert bytes(out) == new  # a flip zstd ignores (unused bits) still rebuilds the right file
    try:
        rebuild(base, d, expected_sha256=want, size=len(new) - 1)  # a declared size over the cap
    except HbwError as e:
        assert e.code in {"protocol.bomb", "protocol.limit"}
    else:
        raise AssertionError("a frame over its cap was decoded")


def test_the_run_by_run_rebuild_refuses_every_prefix_and_flipped_byte_with_a_known_code() -> None:
    """``rebuild_needed`` reads a chunk-aligned recipe bounded and checked (STYLE §7): a bad payload is a
    known code (or, for a flipped codec, handed back to the whole-file path), never a wrong chunk."""
    from hbw_sync import crypto
    from hbw_sync.delta.chunked import NotStreamable, aligned_recipe, rebuild_needed
    from hbw_sync.errors import HbwError

    keys = chunks.ChunkKeys.of(crypto.TeamKey(1, bytes(32)))
    base = pdf_like(1_500_000, 61)
    new = edit(base, 700_000, b"approved by the council")
    mb, _ = chunks.split_bytes(keys, base)
    mn, parts = chunks.split_bytes(keys, new)
    d = aligned_recipe(mb, mn, lambda o, n: base[o:o + n], lambda o, n: new[o:o + n])
    assert d is not None and len(d) < 2_000
    needed = set(mn.ids) - set(mb.ids)
    want = {cid: data for cid, data in parts if cid in needed}

    def run(payload: bytes) -> dict:
        return dict(rebuild_needed(payload, len(base), lambda o, n: base[o:o + n], mn, keys, needed))

    assert run(d) == want
    known = {"protocol.truncated", "protocol.trailing", "protocol.zstd", "protocol.delta", "protocol.bomb",
             "protocol.limit", "integrity.delta", "integrity.chunk"}
    cases = [d[:n] for n in range(len(d))] + [d + b"\x00"]
    cases += [d[:i] + bytes([d[i] ^ 0x21]) + d[i + 1:] for i in range(len(d))]
    for bad in cases:
        try:
            got = run(bad)
        except NotStreamable:
            continue
        except HbwError as e:
            assert e.code in known, (e.code, e.message)
        else:
            assert got == want  # a flip zstd ignores still rebuilds the right chunks


def test_a_document_that_grows_past_1_mib_travels_as_a_delta_of_its_inline_version(team: Team,
                                                                                    tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "register.bin"
    v1 = pdf_like(900_000, 71)
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)  # under 1 MiB: inside the batch
    dana.sync()
    chidi.sync()
    v2 = v1[:400_000] + b"a new entry" + v1[400_000:] + v1[:300_000]  # 1.2 MB: chunked now
    f.write_bytes(v2)
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
    up = dana.sync()
    assert up.sent_bytes < 20_000, up.sent_bytes  # the appended part repeats the base: the patch finds it
    down = chidi.sync()
    assert down.received_bytes < 20_000
    with chidi.open() as rep:
        assert rep.doc(doc.id).local and rep.doc_bytes(doc.id)[1] == v2


def test_a_large_manifest_travels_as_a_block_recipe_delta() -> None:
    """Files of ~200 MB and more have manifests over 64 KiB: their delta is a block-matching recipe
    (low memory), still a §18c payload any reader applies."""
    import hashlib

    from hbw_sync.client.docdelta import MANIFEST_SMALL, manifest_delta
    from hbw_sync.delta import apply_delta

    rng = random.Random(3)
    n = 6000
    ids = [rng.randbytes(16) for _ in range(n)]
    sizes = [rng.randint(16_384, 262_144) for _ in range(n)]
    m1 = chunks.Manifest(1, sum(sizes), bytes(32), tuple(ids), tuple(sizes))
    ids[n // 2], sizes[n // 2] = rng.randbytes(16), sizes[n // 2] + 300
    ids.insert(n // 3, rng.randbytes(16))
    sizes.insert(n // 3, 20_000)
    m2 = chunks.Manifest(1, sum(sizes), hashlib.sha256(b"v2").digest(), tuple(ids), tuple(sizes))
    a, b = m1.encode(), m2.encode()
    assert len(a) > MANIFEST_SMALL
    d = manifest_delta(a, b)
    assert d is not None and len(d) < 400 and d[32] == 2
    assert apply_delta(a, d[32:], expected_sha256=d[:32], max_size=len(b)) == b
