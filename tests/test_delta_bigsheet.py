"""Very large sheets keep their small delta (issue 12): a SPLICE over a deflated member is streamed.

Until 2026-12-03 a one-cell edit of a 400,000-row LibreOffice sheet travelled as 6.9 MB of chunks,
and of an 800,000-row one as 13.5 MB, where a 150,000-row sheet's cost 1.4 KB. Two causes, both in
what the reader allowed (PROTOCOL.md §18c, limits):

* 400,000 rows: the writer built a 352-byte SPLICE, but the reader counted the SPLICE's inflated
  dictionary and its content (150 MB each) against ``plain_cap`` (256 MiB) as if it held both; the
  writer's own check refused its recipe and kept the 4.7 MB span recipe.
* 800,000 rows: the sheet is 302 MB inflated, over ``plain_cap``, so the deflater search gave up
  and the member's compressed bytes were patched (everything after the cell shifts: 13.5 MB).

Both are reproduced here at a cheaper scale with a sheet deflated by our own LibreOffice-style
block deflater (``blocks.py``) inside a real zip: a sheet that deflates 47:1, so that its two
contents together pass 64 x the file (``plain_cap`` of a small file) while each stays under it;
and, for the second cause, the same sheet with ``PLAIN_CEILING`` narrowed so that one content is
over ``plain_cap`` (the 800,000-row sheet's case, without writing 300 MB). Then both again on the
4,000-row sheet LibreOffice saved (tests/data/office) with the ceiling narrowed to its scale: the
old code sent 29,555 bytes for it, a patch of the compressed zip; now 400 or so. Making a
400,000-row sheet with LibreOffice takes minutes, too slow for the suite; scripts/bench_docs.py
--large-office-dir measures the real ones.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import pytest

from hbw_sync import delta
from hbw_sync.delta import apply_delta, make_delta, wire
from hbw_sync.delta.chunked import rebuild
from hbw_sync.errors import HbwError, LimitError
from test_delta import raw_zip

LO_BLOCKS = (6, 8, 0, 128 << 10, 32 << 10)  # LibreOffice's parallel deflater (blocks.py)


def sheet_xml(rows: int, edit: int | None = None) -> bytes:
    """A sheet like LibreOffice's, without per-cell references (so it deflates 47:1); row ``edit``
    has one cell changed from "10" to "7.5", so every byte after it shifts."""
    out = [b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet><sheetData>']
    for i in range(1, rows + 1):
        cells = b'<c s="0" t="n"><v>%d</v></c>' % (i * 37 % 1000) + b'<c s="0" t="n"><v>10</v></c>' * 5
        if i == edit:
            cells = cells.replace(b"<v>10</v>", b"<v>7.5</v>", 1)
        out.append(b'<row r="%d" spans="1:6" customFormat="false" ht="12.8" hidden="false" customHeight="false" '
                   b'outlineLevel="0" collapsed="false">%s</row>' % (i, cells))
    out.append(b"</sheetData></worksheet>")
    return b"".join(out)


def xlsx(sheet: bytes) -> bytes:
    """A real zip: the sheet deflated in LibreOffice's blocks, a small part deflated by zlib."""
    types = b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return raw_zip([("[Content_Types].xml", types, 8, co.compress(types) + co.flush()),
                    ("xl/worksheets/sheet1.xml", sheet, 8, delta.blocks.deflate_blocks(sheet, *LO_BLOCKS))])


def pair(rows: int) -> tuple[bytes, bytes, bytes, bytes]:
    old, new = sheet_xml(rows), sheet_xml(rows, edit=rows // 2)
    return old, new, xlsx(old), xlsx(new)


def member_ops(payload: bytes, base_len: int, max_size: int) -> list[wire.Op]:
    r = wire.Reader(memoryview(payload))
    assert r.u8() == delta.METHOD_RECIPE
    return [op for op in delta.rebuild.parse_recipe(r, base_len, max_size)[4] if op.tag in (wire.OP_MEMBER, wire.OP_SPLICE)]


def test_a_sheet_whose_two_contents_pass_plain_cap_still_goes_as_a_small_splice() -> None:
    """The 400,000-row case: each content under plain_cap, both together over it. The old reader refused
    the writer's SPLICE, so make_delta fell back to a patch of the compressed bytes (3,000 bytes here, 114 now)."""
    old, new, base, newzip = pair(20_000)
    cap = wire.plain_cap(len(newzip))
    assert max(len(old), len(new)) <= cap < len(old) + len(new)  # the cause, at this scale
    payload = make_delta(base, newzip, name="register.xlsx")
    assert payload is not None and len(payload) <= 1024, None if payload is None else len(payload)
    assert apply_delta(base, payload, expected_sha256=hashlib.sha256(newzip).digest(), max_size=len(newzip)) == newzip
    (op,) = member_ops(payload, len(base), len(newzip))
    assert (op.tag, op.dict_codec, op.out_codec, op.dict_plain) == (wire.OP_SPLICE, wire.CODEC_DEFLATE,
                                                                     wire.CODEC_BLOCKS, len(old))


def test_a_sheet_over_plain_cap_is_rebuilt_streaming_from_a_small_splice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 800,000-row case (302 MB inflated, over the 256 MiB ceiling), with the ceiling narrowed instead of
    a 300 MB sheet: the deflater search used to give up past plain_cap and patch the compressed bytes (the whole file
    here: 4,460 bytes, 114 now). Now the content streams within stream_cap, and the reader never holds it."""
    old, new, base, newzip = pair(40_000)
    monkeypatch.setattr(wire, "PLAIN_CEILING", 1 << 20)
    cap = wire.plain_cap(len(newzip))
    assert cap == 1 << 20 and len(new) > 4 * cap
    payload = make_delta(base, newzip, name="register.xlsx")
    assert payload is not None and len(payload) <= 1024, None if payload is None else len(payload)
    assert len(old) + len(new) <= wire.stream_cap(len(newzip))
    (op,) = member_ops(payload, len(base), len(newzip))
    assert (op.tag, op.dict_codec, op.dict_plain) == (wire.OP_SPLICE, wire.CODEC_DEFLATE, len(old))
    want = hashlib.sha256(newzip).digest()
    tracemalloc.start()
    try:
        out = apply_delta(base, payload, expected_sha256=want, max_size=len(newzip))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == newzip
    assert peak < len(new) // 2  # streamed: one inflated piece (1 MiB) and a block at a time, not 6 MB
    # A reader with the old cap (held, plain_cap) for the same payload refuses it: what the writer used to meet.
    monkeypatch.setattr(wire, "STREAM_CEILING", 1 << 20)
    monkeypatch.setattr(wire, "STREAM_FACTOR", wire.PLAIN_FACTOR)
    with pytest.raises(LimitError):
        apply_delta(base, payload, expected_sha256=want, max_size=len(newzip))


def test_a_large_change_of_a_sheet_over_plain_cap_patches_the_compressed_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over plain_cap the writer never holds a whole content: when the changed middle is itself over it, the
    member goes as its compressed bytes patched (as before), and the file still arrives byte-exact."""
    old = sheet_xml(80_000)
    new = old.replace(b"<v>10</v>", b"<v>11</v>")  # every row: the middle is the whole sheet
    base, newzip = xlsx(old), xlsx(new)
    monkeypatch.setattr(wire, "PLAIN_CEILING", 1 << 20)
    assert len(new) > 4 * wire.plain_cap(len(newzip))
    tracemalloc.start()
    try:
        recipe = delta.zipdoc.zip_recipe(base, newzip)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert recipe is not None and peak < len(new) // 2  # neither 24 MB content held (the spool is on disk)
    (op,) = member_ops(recipe, len(base), len(newzip))
    assert (op.dict_codec, op.out_codec) == (wire.CODEC_RAW, wire.CODEC_RAW)  # its compressed bytes, patched
    assert apply_delta(base, recipe, expected_sha256=hashlib.sha256(newzip).digest(), max_size=len(newzip)) == newzip
    payload = make_delta(base, newzip, name="register.xlsx")  # the smallest candidate (a whole-file patch here)
    assert payload is not None and len(payload) <= len(recipe)
    assert apply_delta(base, payload, expected_sha256=hashlib.sha256(newzip).digest(), max_size=len(newzip)) == newzip

OFFICE = Path(__file__).resolve().parent / "data" / "office"


@pytest.mark.parametrize("ceiling", [2 << 20, 512 << 10], ids=["contents-together-over", "content-over"])
def test_libreoffice_sheet_with_the_ceiling_narrowed_keeps_its_splice(monkeypatch: pytest.MonkeyPatch,
                                                                       ceiling: int) -> None:
    """Both causes on the 4,000-row sheet LibreOffice 7.4 saved (tests/data/office, its sheet 1.4 MB inflated),
    with ``PLAIN_CEILING`` narrowed to the scale of the 400,000-row sheet (2 MiB: each content under the cap,
    both together over it) and of the 800,000-row one (512 KiB: one content over it)."""
    base, new = (OFFICE / "sheet-v1.xlsx").read_bytes(), (OFFICE / "sheet-v2.xlsx").read_bytes()
    monkeypatch.setattr(wire, "PLAIN_CEILING", ceiling)
    with zipfile.ZipFile(OFFICE / "sheet-v2.xlsx") as z:
        inflated = z.getinfo("xl/worksheets/sheet1.xml").file_size
    cap = wire.plain_cap(len(new))
    assert cap == ceiling and (inflated > cap if ceiling < inflated else 2 * inflated > cap)
    payload = make_delta(base, new, name="sheet.xlsx")
    assert payload is not None and len(payload) <= 1024, None if payload is None else len(payload)
    assert apply_delta(base, payload, expected_sha256=hashlib.sha256(new).digest(), max_size=len(new)) == new
    assert any(op.tag == wire.OP_SPLICE and op.dict_codec == wire.CODEC_DEFLATE and op.out_codec == wire.CODEC_BLOCKS
               for op in member_ops(payload, len(base), len(new)))


VECTORS = json.loads((Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "delta.json").read_text())


def _outcome(fn: Callable[[], object]) -> tuple[str, str] | bytes:
    try:
        return bytes(fn())  # type: ignore[call-overload]
    except HbwError as e:
        return type(e).__name__, str(e.code)


RECIPES = [v for v in VECTORS["valid"] + VECTORS["invalid"] if v["payload"].startswith("02")]  # method 2: the new path


@pytest.mark.parametrize("vec", RECIPES, ids=lambda v: v["name"])
def test_the_receivers_rebuild_into_one_buffer_answers_as_apply_delta(vec: dict) -> None:
    """``chunked.rebuild`` writes a recipe's result straight into one buffer (the receiver of the 400,000-row
    sheet's edit held it three times: 113 MB, now 85); on every good and bad method-2 vector it gives
    apply_delta's result, or its error class and code."""
    good = {v["name"]: v for v in VECTORS["valid"]}
    base = bytes.fromhex(good[vec.get("base_of", vec["name"])]["base"])
    payload = bytes.fromhex(vec["payload"])
    want = bytes.fromhex(vec.get("expected_sha256") or vec["result_sha256"])
    ours = _outcome(lambda: rebuild(base, payload, expected_sha256=want, size=vec["max_size"]))
    theirs = _outcome(lambda: apply_delta(base, payload, expected_sha256=want, max_size=vec["max_size"]))
    assert ours == theirs
    if "expected_code" in vec:
        assert ours == (vec["expected_error"], vec["expected_code"])
    else:
        assert hashlib.sha256(ours).hexdigest() == vec["result_sha256"]  # type: ignore[arg-type]


def test_a_member_longer_than_declared_is_refused_at_the_first_byte_over() -> None:
    """A recipe declaring a result shorter than what its streamed SPLICE deflates: the one buffer is never
    written past its declared size (refused as integrity.delta, as apply_delta refuses it)."""
    old, new, base, newzip = pair(2_000)
    payload = make_delta(base, newzip)
    assert payload is not None
    (op,) = member_ops(payload, len(base), len(newzip))
    short = payload.replace(wire.uvarint(op.n), wire.uvarint(op.n - 100))  # the member's out_len, and so the total
    want = hashlib.sha256(newzip).digest()
    assert _outcome(lambda: rebuild(base, short, expected_sha256=want, size=len(newzip))) == \
        ("IntegrityError", "integrity.delta") == _outcome(lambda: apply_delta(base, short, expected_sha256=want,
                                                                             max_size=len(newzip)))
