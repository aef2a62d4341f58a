"""The premise of issue 12's "derived manifest": a receiver can work a delta version's chunk ids out itself.

An edit of an office file changes every compressed byte after it, so about half the
content-defined chunks of a large sheet get new ids, and the delta version's ``manifest_delta``
(PROTOCOL.md §18e) carries them: 16 incompressible bytes each, most of the wire bytes of a
one-cell edit. A receiver rebuilds the whole new version anyway. If cutting the rebuilt bytes
with the reference chunker (``chunks.Splitter``) under the team's chunk-id key gives exactly the
manifest the author sent, a later format can say "the manifest is the chunking of the rebuilt
file" instead of sending it. This test pins that down on a real relay with two devices: it fails
if chunking ever comes to depend on anything but the bytes and the team key (a per-device seed,
a writer-side tweak of the cut points), which would make such a format unsound.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

from relay_helpers import Team
from relay_helpers import member_cli as cli
from hbw_sync import chunks
from hbw_sync.client import docdelta
from hbw_sync.ops import NAMES, Kind

_MANIFEST = NAMES[Kind.DOC]["manifest"].tag
_MANIFEST_DELTA = NAMES[Kind.DOC]["manifest_delta"].tag


def sheet_zip(rows: int, edited_row: int | None = None) -> bytes:
    """A 2-3 MB xlsx-like zip: one deflated sheet of numbers, the same for the same arguments."""
    rnd = random.Random(12)
    parts = [b'<?xml version="1.0"?><worksheet><sheetData>']
    for r in range(rows):
        value = 4242 if r == edited_row else rnd.randrange(10 ** 9)
        parts.append(b'<row r="%d"><c r="A%d"><v>%d</v></c><c r="B%d"><v>%d</v></c></row>'
                     % (r, r, value, r, rnd.randrange(10 ** 6)))
    parts.append(b"</sheetData></worksheet>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (("[Content_Types].xml", b"<Types/>"), ("xl/worksheets/sheet1.xml", b"".join(parts))):
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 5, 12, 9, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def test_a_receiver_cuts_the_rebuilt_file_into_the_manifest_its_author_sent(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair("dana", "chidi")
    cli(chidi, "doc", "policy", "all")
    f = tmp_path / "plan.xlsx"
    v1 = sheet_zip(130_000)
    assert 2_000_000 < len(v1) < 3_500_000
    f.write_bytes(v1)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    v2 = sheet_zip(130_000, edited_row=200)  # one cell near the start: the compressed bytes after it all change
    f.write_bytes(v2)
    with dana.open() as rep:
        rep.update_doc(doc.id, f)
    dana.sync()
    chidi.sync()
    with chidi.open() as rep:
        _view, did, digest = rep.documents.locate_version(doc.id, None)
        _view, base_digest = rep.documents._find_version(doc.id, 1)
        sent = rep.versions.version_manifest(did, digest)
        base = rep.versions.version_manifest(did, base_digest)
        assert sent is not None and base is not None
        op = docdelta.version_op(rep.versions, did, digest)
        assert op is not None and docdelta.is_delta_version(op), "the edit travelled as a delta version"
        c = op.content or {}
        wire = c.get(_MANIFEST_DELTA) or c.get(_MANIFEST)  # the delta when it was smaller than the manifest
        rebuilt = rep.doc_bytes(doc.id)[1]
        assert rebuilt == v2
        splitter = chunks.Splitter(rep.versions.chunk_keys_for(sent))
        for _cid, _view in splitter.chunks(io.BytesIO(rebuilt)):
            pass
        derived = splitter.manifest()
    assert derived.encode() == sent.encode(), "the receiver's own chunking names the author's chunks"
    new_ids = set(sent.ids) - set(base.ids)
    assert len(new_ids) >= 10, f"only {len(new_ids)} new ids: the edit does not show the cost"
    # What a derived manifest would save: the manifest (or its delta) carries every new id, 16 bytes each.
    assert isinstance(wire, bytes) and len(wire) >= 16 * len(new_ids)
