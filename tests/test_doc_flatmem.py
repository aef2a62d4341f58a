"""Office files near the 32 MiB delta limit in flat memory (issue 12 item 3): read by ranges, never whole.

``doc update`` used to read both versions whole to make the zip recipe, and the receiver and
``doc get`` rebuilt the new version whole beside the whole base (README: 142 and 130 MB for a
32.8 MB report). Now both versions are read by ranges from the chunk store (``delta.Source``), the
recipe is applied member by member and the result cut into chunks as it comes
(``client/docdelta._Cutter``). These tests bound the Python heap (tracemalloc) of each step on a
synthetic 28 MB office file made here with our own deflater (zipfile at zlib's default level, and
stored photos): the old code held at least twice the file (both versions, or the base and the
result); the bound is half of it. No timing is asserted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import random
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import peak
from relay_helpers import Team, shared_doc
from relay_helpers import member_cli as cli
from hbw_sync import chunks, crypto, delta
from hbw_sync.client.docdelta import _Cutter
from hbw_sync.delta import Source, apply_delta, apply_delta_to, make_delta, zipdoc
from hbw_sync.errors import IntegrityError, LimitError, ProtocolError

OFFICE = Path(__file__).parent / "data" / "office"
PHOTOS, PHOTO = 8, 3_500_000  # incompressible, stored: most of the file (28 MB), as a report's photos are


def report(paragraphs: list[str], modified: str, photos: int = PHOTOS, photo: int = PHOTO) -> bytes:
    """A .docx-like zip: a deflated body (zlib's default level: codec 8 rebuilds it), stored photos, small parts."""
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>', zipfile.ZIP_DEFLATED)
        z.writestr("docProps/core.xml", f"<cp:coreProperties><dcterms:modified>{modified}</dcterms:modified>"
                                        "</cp:coreProperties>", zipfile.ZIP_DEFLATED)
        for i in range(photos):
            z.writestr(f"word/media/image{i}.jpeg", random.Random(i).randbytes(photo), zipfile.ZIP_STORED)
        z.writestr("word/document.xml", f"<w:document><w:body>{body}</w:body></w:document>", zipfile.ZIP_DEFLATED)
    return out.getvalue()


def report_pair(paras: int = 6_000, **kw: int) -> tuple[bytes, bytes]:
    rng = random.Random(7)
    words = ["budget", "district", "office", "report", "quarter", "payment", "staff", "review", "audit", "plan"]
    text = [" ".join(rng.choices(words, k=30)) for _ in range(paras)]
    v1 = report(text, "2026-12-01T09:00:00Z", **kw)
    text[paras // 2] = "This paragraph was rewritten at home on Tuesday evening."
    return v1, report(text, "2026-12-02T19:30:00Z", **kw)


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    return report_pair()


def file_source(f: io.BufferedReader) -> Source:
    """An open file read by ranges (os.pread): nothing of it is in the Python heap but the range asked for."""
    fd = f.fileno()
    return Source(lambda off, n: os.pread(fd, n, off), os.fstat(fd).st_size)


def test_make_and_apply_by_ranges_hold_a_small_part_of_the_file(pair: tuple[bytes, bytes], tmp_path: Path) -> None:
    v1, v2 = pair
    (tmp_path / "v1.docx").write_bytes(v1)
    (tmp_path / "v2.docx").write_bytes(v2)
    with open(tmp_path / "v1.docx", "rb") as f1, open(tmp_path / "v2.docx", "rb") as f2:
        _make_and_apply(v1, v2, file_source(f1), file_source(f2))


def _make_and_apply(v1: bytes, v2: bytes, base: Source, new: Source) -> None:
    got: list[bytes | None] = []
    made = peak(lambda: got.append(make_delta(base, new)))  # type: ignore[arg-type]
    payload = got[0]
    assert payload is not None and len(payload) < 4096
    assert payload == make_delta(v1, v2), "read by ranges, the same payload as over whole buffers"
    assert made < len(v2) // 2, (made, len(v2))  # the member search's pieces: about 7 MB, whatever the size
    h = hashlib.sha256()
    applied = peak(lambda: apply_delta_to(base, payload, h.update, expected_sha256=hashlib.sha256(v2).digest(),
                                          max_size=len(v2)))
    assert h.digest() == hashlib.sha256(v2).digest()
    assert applied < len(v2) // 2, (applied, len(v2))


@pytest.mark.parametrize("name", sorted(p.name.replace("-v1", "") for p in OFFICE.glob("*-v1.*")))
def test_the_zip_recipe_by_ranges_is_the_same_bytes_as_over_buffers(name: str) -> None:
    """LibreOffice's files (codec 9 members, SPLICE): ranges change how the bytes are read, not the recipe."""
    stem, ext = name.rsplit(".", 1)
    v1, v2 = (OFFICE / f"{stem}-v1.{ext}").read_bytes(), (OFFICE / f"{stem}-v2.{ext}").read_bytes()
    by_ranges = zipdoc.zip_recipe(Source(lambda o, n: v1[o:o + n], len(v1)), Source(lambda o, n: v2[o:o + n], len(v2)))
    assert by_ranges is not None and by_ranges == zipdoc.zip_recipe(v1, v2)
    out = apply_delta(Source(lambda o, n: v1[o:o + n], len(v1)), by_ranges,
                      expected_sha256=hashlib.sha256(v2).digest(), max_size=len(v2))
    assert out == v2


def test_a_member_that_would_be_held_whole_gives_up_the_recipe_by_ranges() -> None:
    """Over two large Sources a changed photo (stored: patched whole) over MEMBER_WHOLE gives None, not a
    whole-member patch: the caller keeps the changed chunks. Over buffers the recipe is still made."""
    v1 = report(["one paragraph"], "a", photos=1, photo=zipdoc.MEMBER_WHOLE + 1000)
    edited = bytearray(v1)
    layout = zipdoc.zip_layout(v1)
    assert layout is not None
    at = next(m.ds for m in layout[0] if m.name.endswith(".jpeg")) + 100  # inside the stored photo
    edited[at:at + 8] = b"EDITED!!"
    v2 = bytes(edited)
    src = lambda b: Source(lambda o, n: b[o:o + n], len(b))  # noqa: E731
    assert zipdoc.zip_recipe(src(v1), src(v2), member_max=zipdoc.MEMBER_WHOLE) is None
    assert make_delta(src(v1), src(v2)) is None
    assert zipdoc.zip_recipe(v1, v2) is not None


def test_a_ranged_apply_refuses_every_prefix_and_flipped_byte_as_the_buffer_apply_does() -> None:
    """STYLE §7: the same codes as ``apply_delta`` over a buffer, and nothing emitted is trusted before the hash."""
    v1, v2 = report_pair(paras=300, photos=1, photo=20_000)
    payload = make_delta(v1, v2)
    assert payload is not None
    want = hashlib.sha256(v2).digest()
    base = Source(lambda o, n: v1[o:o + n], len(v1))

    def code(fn: Callable[[], object]) -> str | None:
        try:
            fn()
        except (ProtocolError, IntegrityError, LimitError) as e:
            return e.code
        return None

    bad = [payload[:i] for i in range(len(payload))]
    bad += [payload[:i] + bytes([payload[i] ^ 0x41]) + payload[i + 1:] for i in range(0, len(payload), 7)]
    bad.append(payload + b"\x00")
    for p in bad:
        ranged = code(lambda: apply_delta_to(base, p, lambda _b: None, expected_sha256=want, max_size=len(v2)))
        assert ranged is not None and ranged == code(lambda: apply_delta(v1, p, expected_sha256=want,
                                                                          max_size=len(v2)))


def test_the_cutter_keeps_only_chunks_that_match_their_ids() -> None:
    keys = chunks.ChunkKeys.of(crypto.TeamKey(1, bytes(range(32))))
    data = random.Random(3).randbytes(300_000)
    m, parts = chunks.split_bytes(keys, data)
    assert len(parts) > 2
    kept: dict[bytes, bytes] = {}
    needed = {m.ids[1]}
    cut = _Cutter(keys, m, needed, lambda _k, cid, b: kept.__setitem__(cid, b))
    for i in range(0, len(data), 4099):  # any piece sizes
        cut.write(data[i:i + 4099])
    cut.finish()
    assert kept == {m.ids[1]: dict(parts)[m.ids[1]]}, "only the chunks asked for, each whole"
    wrong = bytearray(data)
    wrong[m.sizes[0] + 5] ^= 1  # inside chunk 1
    cut = _Cutter(keys, m, needed, lambda *_a: None)
    with pytest.raises(IntegrityError) as e:
        cut.write(wrong)
    assert e.value.code == "integrity.chunk"
    cut = _Cutter(keys, m, set(), lambda *_a: None)
    cut.write(data[:-1])
    with pytest.raises(IntegrityError) as e:
        cut.finish()
    assert e.value.code == "integrity.delta"
    with pytest.raises(IntegrityError) as e:
        _Cutter(keys, m, set(), lambda *_a: None).write(data + b"x")
    assert e.value.code == "integrity.delta"


def test_update_receive_and_doc_get_of_a_large_office_file_hold_a_small_part_of_it(
        pair: tuple[bytes, bytes], team: Team, tmp_path: Path) -> None:
    v1, v2 = pair
    dana, chidi = team.pair("dana", "chidi")
    bosco = team.join("bosco")
    bosco.sync()
    cli(chidi, "doc", "policy", "all")
    cli(bosco, "doc", "policy", "none")
    f = tmp_path / "report.docx"
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    bosco.sync()
    f.write_bytes(v2)
    with dana.open() as rep:
        updated = peak(lambda: rep.update_doc(doc.id, f))
    up = dana.sync()
    assert up.sent_bytes < 16_000, f"the edit went as {up.sent_bytes} bytes, not as a delta"
    # Before: both versions whole (read_into, version_bytes): twice the file.
    assert updated < len(v2) // 2, (updated, len(v2))
    received = peak(chidi.sync)
    # Before: the base whole and the rebuilt file whole (NotStreamable, then rebuild_chunks).
    assert received < len(v2) // 2, (received, len(v2))
    with chidi.open() as rep:
        assert rep.doc(doc.id).local
        assert rep.doc_bytes(doc.id)[1] == v2
    bosco.sync()  # policy none: the new version's op only, nothing rebuilt or fetched
    with bosco.open() as rep:
        assert not rep.doc(doc.id).local
    out = tmp_path / "got.docx"
    res: list[tuple[int, str]] = []
    got = peak(lambda: res.append(cli(bosco, "doc", "get", doc.id, "-o", str(out))))
    assert res[0][0] == 0, res[0][1]
    assert out.read_bytes() == v2
    # The fetch of the base's chunks is most of it now (a relay answer of about 1 MiB at a time, with the
    # relay in this process): about 10 MB, whatever the file's size.
    assert got < len(v2) // 2, (got, len(v2))
    assert delta.check_delta(v1, make_delta(v1, v2) or b"", expected_sha256=hashlib.sha256(v2).digest(),
                             max_size=len(v2)) is None


def sheet(cells: list[bytes], modified: str) -> bytes:
    """An .xlsx-like zip whose sheet XML is most of it, deflated at zlib's default level (codec 8 rebuilds it)."""
    rows = b"".join(b'<row r="%d"><c t="inlineStr"><is><t>%s</t></is></c></row>' % (i, c) for i, c in enumerate(cells))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>', zipfile.ZIP_DEFLATED)
        z.writestr("docProps/core.xml", f"<dcterms:modified>{modified}</dcterms:modified>", zipfile.ZIP_DEFLATED)
        z.writestr("xl/worksheets/sheet1.xml", b"<worksheet><sheetData>" + rows + b"</sheetData></worksheet>",
                   zipfile.ZIP_DEFLATED)
    return out.getvalue()


@pytest.fixture(scope="module")
def sheet_pair() -> tuple[bytes, bytes]:
    """A sheet whose XML deflates to about 10 MB (cells of base64 noise: 15 MB inflated), one cell edited."""
    noise = base64.b64encode(random.Random(11).randbytes(9_000_000))
    cells = [noise[i:i + 120] for i in range(0, len(noise), 120)]
    v1 = sheet(cells, "2026-12-01T09:00:00Z")
    cells[len(cells) // 2] = b"Paid in full on 2 December."
    return v1, sheet(cells, "2026-12-02T19:30:00Z")


def test_a_large_changed_member_is_searched_by_ranges_never_whole(sheet_pair: tuple[bytes, bytes],
                                                                   tmp_path: Path) -> None:
    """The deflater search reads the changed member's compressed bytes from its Source a window at a time
    (``search._Window``): ``make_delta`` of two files read by ranges holds a fixed few MB (its candidates'
    zlib states, a spool block), not the member. Before, the member was read whole for the search: its
    10 MB on top of those."""
    v1, v2 = sheet_pair
    layout = zipdoc.zip_layout(v2)
    assert layout is not None
    member = max(m.de - m.ds for m in layout[0])
    assert member > 9_000_000
    (tmp_path / "v1.xlsx").write_bytes(v1)
    (tmp_path / "v2.xlsx").write_bytes(v2)
    got: list[bytes | None] = []
    with open(tmp_path / "v1.xlsx", "rb") as f1, open(tmp_path / "v2.xlsx", "rb") as f2:
        made = peak(lambda: got.append(make_delta(file_source(f1), file_source(f2))))
    assert got[0] is not None and len(got[0]) < 4096, "a SPLICE of the one edited cell (checked by make_delta)"
    assert made < member, (made, member)  # 7.7 MB here; before, 14.9 MB (the member whole, and the rest)


def test_a_spool_that_cannot_be_written_sends_the_changed_chunks(sheet_pair: tuple[bytes, bytes], team: Team,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """TMPDIR gone (or full, or read-only): ``doc update`` still records the version, through the real CLI;
    the zip recipe is given up, logged, and the changed chunks go instead (larger, nothing lost)."""
    v1, v2 = sheet_pair
    dana, chidi, doc, f = shared_doc(team, tmp_path, v1, name="rents.xlsx")
    f.write_bytes(v2)
    # The spool's content compresses to more than SPOOL_IN_MEMORY: it goes to a temp file, which cannot be made.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmp"))
    with caplog.at_level(logging.WARNING, logger="hbw_sync"):
        code, out = cli(dana, "doc", "update", doc.id, str(f))
    monkeypatch.undo()
    assert code == 0, out
    assert any("zip recipe given up" in r.getMessage() and "no-such-tmp" in r.getMessage()
               for r in caplog.records), caplog.text
    up = dana.sync()
    assert up.sent_bytes > 1_000_000, f"the update went as {up.sent_bytes} bytes: a delta, not its chunks"
    chidi.sync()
    with chidi.open() as rep:
        assert rep.doc_bytes(doc.id)[1] == v2
