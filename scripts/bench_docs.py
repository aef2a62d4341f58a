"""Bytes on the wire for a one-paragraph edit to a document: hbw-sync deltas against rsync.

    .venv/bin/python scripts/bench_docs.py            # table + targets
    .venv/bin/python scripts/bench_docs.py --json     # machine-readable

Documents (generated, fixed seeds, so every byte count is reproducible):

* text 20 KB, text 2 MB: paragraphs of varied words; the edit replaces one
  paragraph in the middle with a different sentence.
* PDF-like 1 MB: header, 40 objects, each a FlateDecode stream (page text, or
  incompressible "image" bytes), xref table with real offsets, trailer. The edit
  changes the text of one page, so that stream is re-deflated and every later
  xref offset moves.
* .docx 500 KB: a zip written by Python's zipfile (deflate, zlib level 6) with
  [Content_Types].xml, rels, word/document.xml (many paragraphs of varied text,
  runs, bold/italic), styles, settings, docProps and two images (PNG, JPEG:
  incompressible bytes). The edit rewrites one paragraph and, as a word processor
  does, the modification time in docProps/core.xml and the counts in docProps/app.xml.

* LibreOffice-saved .xlsx, .ods, .docx, .odt, .pptx: the files in tests/data/office (or
  ``--office-dir DIR``), made by ``scripts/make_office_docs.py`` with real LibreOffice: a
  4,000-row sheet with one cell changed, a 300-paragraph report with one paragraph
  rewritten, a 12-slide presentation with one line rewritten; both versions saved by
  LibreOffice (7.4 for the committed files). Large members are deflated by LibreOffice's
  own block deflater, which hbw_sync/delta/blocks.py rebuilds.

* zopfli / libdeflate .docx, .xlsx (codec 10): the LibreOffice-made report and sheet re-zipped
  by zopfli and by libdeflate (``scripts/rezip.py``): deflaters that, like Word's, no zlib
  parameters reproduce. Own table, with "without codec 10": the same run with the transcript
  off (``zipdoc.MAX_DEFLATED = 0``), i.e. the changed member's compressed bytes patched.

Columns (bytes):

* hbw-sync: what the document costs inside a sync batch: ``delta.make_delta``'s
  payload (or, when it returns None, the whole file as ``codec.compress``, level 19)
  + 138 bytes of per-batch framing, crypto and signature (``batch.py``: the cost
  of a batch carrying only this op) + 40 bytes of op overhead (an estimate: op
  id, entity, hlc, base version, hash, field tags). The payload is counted
  uncompressed: it is already zstd inside.
* without SPLICE: the same as hbw-sync, measured in the same run with the zip recipe as it was
  before SPLICE (PROTOCOL.md §18c: every changed member one MEMBER frame over its whole
  content): the baseline the SPLICE op is measured against. The chunked table has it too.
* payload: ``make_delta``'s payload alone (method in brackets: 1 patch, 2 recipe).
* zstd-19: the whole new file as ``codec.compress`` (level 19), bare.
* zstd --patch-from: ``zstd -19 --patch-from=OLD NEW`` (the zstd command line), bare.
* rsync: ``rsync -a -I --no-whole-file -z --stats src/ dst/`` with the old file
  present in dst/, "Total bytes sent" + "Total bytes received" (both directions
  of rsync's own protocol, block checksums included; no ssh or TCP overhead).
  ``--no-whole-file`` because rsync otherwise copies whole files between local
  directories; ``-I`` so the size/mtime quick check cannot skip the file.
* plain: the whole new file, uncompressed.

Memory: a subprocess generates a 20 MB document (text and incompressible parts),
edits 200 bytes in the middle, then runs make_delta and apply_delta; it reports
its whole-life peak RSS (VmHWM, including generating the two 20 MB versions) and
the peak of each phase (VmHWM reset through /proc/self/clear_refs in between).
Each phase peak includes both versions held in memory (40 MB) and the interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hbw_sync import codec, delta  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

BATCH_FRAMING = 138
OP_OVERHEAD = 40
TARGET_TEXT_2MB = 4096
TARGET_DOCX = 10240
TARGET_PEAK_MB = 150
TARGET_OFFICE = 4096  # issue 12: a one-place edit of a LibreOffice-saved document, on the wire
OFFICE_DIR = ROOT / "tests" / "data" / "office"
OFFICE_DOCS = (("sheet", "xlsx"), ("sheet", "ods"), ("report", "docx"), ("report", "odt"), ("slides", "pptx"))

# --------------------------------------------------------------------------- documents


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """About 4,000 pronounceable words with Zipf frequencies, so text compresses like prose (~3x)."""
    syll = ["ka", "ri", "to", "men", "sa", "lo", "du", "ne", "pra", "vi", "ta", "mo", "re", "shi", "gu", "an",
            "el", "is", "or", "un", "ba", "che", "de", "fa", "go", "hu", "ja", "ku", "li", "ma", "no", "pe"]  # fmt: skip
    words = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "on", "with", "as", "by", "district",
             "ministry", "health", "school", "budget", "report", "officer", "meeting", "water", "road", "committee",
             "council", "approved", "request", "staff", "training", "supply", "clinic", "village"]  # fmt: skip
    seen = set(words)
    while len(words) < 4000:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(1, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words, list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))


def _paragraph(rng: random.Random, vocab: tuple[list[str], list[float]]) -> str:
    words = rng.choices(vocab[0], cum_weights=vocab[1], k=rng.randint(15, 110))
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


EDIT = "The regional council approved the revised schedule for the mobile clinics, effective next month."


def text_doc(size: int, seed: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    paras: list[str] = []
    n = 0
    while n < size:
        p = _paragraph(rng, vocab)
        paras.append(p)
        n += len(p) + 2
    old = "\n\n".join(paras).encode()[:size]
    paras[len(paras) // 2] = EDIT
    new = "\n\n".join(paras).encode()[: size + len(EDIT)]
    return old, new


def pdf_doc(size: int, seed: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    pages: list[str] = []
    images: list[bytes] = []
    for i in range(40):
        if i % 4 == 3:
            images.append(rng.randbytes(size // 11))
            pages.append("")
        else:
            lines = [f"BT /F1 11 Tf 72 {720 - 14 * k} Td ({_paragraph(rng, vocab)[:90]}) Tj ET" for k in range(50)]
            pages.append("\n".join(lines))
            images.append(b"")

    def build(pages: list[str]) -> bytes:
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for i, (page, img) in enumerate(zip(pages, images)):
            body = zlib.compress(page.encode(), 6) if page else zlib.compress(img, 6)
            kind = b"" if page else b" /Subtype /Image /Width 640 /Height 480 /BitsPerComponent 8"
            offsets.append(len(out))
            out += b"%d 0 obj\n<< /Length %d /Filter /FlateDecode%s >>\nstream\n" % (i + 1, len(body), kind)
            out += body + b"\nendstream\nendobj\n"
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1)
        for off in offsets:
            out += b"%010d 00000 n \n" % off
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, xref)
        return bytes(out)

    old = build(pages)
    lines = pages[17].split("\n")
    lines[20] = f"BT /F1 11 Tf 72 440 Td ({EDIT[:90]}) Tj ET"
    pages[17] = "\n".join(lines)
    return old, build(pages)


CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="png" '
    'ContentType="image/png"/><Default Extension="jpeg" ContentType="image/jpeg"/><Override PartName="/word/'
    'document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    '<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'wordprocessingml.styles+xml"/><Override PartName="/docProps/core.xml" ContentType="application/vnd.'
    'openxmlformats-package.core-properties+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.openxmlformats'
    '.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument'
    '/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)
W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def _docx_paragraph(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    runs = []
    i = 0
    while i < len(words):
        k = rng.randint(3, 25)
        chunk = " ".join(words[i : i + k])
        props = rng.choice(["", "", "", "<w:rPr><w:b/></w:rPr>", "<w:rPr><w:i/></w:rPr>"])
        runs.append(f'<w:r>{props}<w:t xml:space="preserve">{chunk} </w:t></w:r>')
        i += k
    style = rng.choice(["Normal", "Normal", "Normal", "BodyText", "ListParagraph"])
    return f'<w:p><w:pPr><w:pStyle w:val="{style}"/></w:pPr>{"".join(runs)}</w:p>'


def docx_doc(seed: int) -> tuple[bytes, bytes]:
    """About 500 KB: ~300 KB of deflated XML and two incompressible images."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    texts = [_paragraph(rng, vocab) for _ in range(2050)]
    prng = random.Random(seed + 1)
    paras = [_docx_paragraph(prng, t) for t in texts]
    png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(110_000)
    jpeg = b"\xff\xd8\xff\xe0" + rng.randbytes(90_000)
    styles = f'<?xml version="1.0"?><w:styles {W_NS}>' + "".join(
        f'<w:style w:type="paragraph" w:styleId="S{i}"><w:name w:val="Style {i}"/></w:style>' for i in range(120)
    ) + "</w:styles>"

    def build(paras: list[str], modified: str, words: int) -> bytes:
        doc = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document {W_NS}><w:body>' + "".join(paras)
        doc += '<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>'
        core = (f'<?xml version="1.0"?><cp:coreProperties><dc:title>District report</dc:title><dc:creator>Officer'
                f'</dc:creator><dcterms:modified>{modified}</dcterms:modified></cp:coreProperties>')  # fmt: skip
        app = f'<?xml version="1.0"?><Properties><Pages>64</Pages><Words>{words}</Words></Properties>'
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in (
                ("[Content_Types].xml", CONTENT_TYPES), ("_rels/.rels", RELS), ("word/document.xml", doc),
                ("word/styles.xml", styles), ("word/settings.xml", f'<w:settings {W_NS}><w:zoom w:percent="100"/></w:settings>'),
                ("word/media/image1.png", png), ("word/media/image2.jpeg", jpeg),
                ("docProps/core.xml", core), ("docProps/app.xml", app),
            ):  # fmt: skip
                z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    old = build(paras, "2024-05-02T09:14:00Z", 61234)
    paras = list(paras)
    paras[len(paras) // 2] = _docx_paragraph(random.Random(seed + 2), EDIT)
    return old, build(paras, "2024-05-03T16:40:00Z", 61219)


def big_doc(size: int, seed: int, ends: bool = False) -> tuple[bytes, bytes]:
    """20 MB: text with incompressible stretches (embedded images), 200 bytes changed mid-file
    (``ends``: 200 bytes changed near the start and near the end, so that no shared
    prefix or suffix helps and the whole file goes through one patch frame).

    Built in place in one buffer so that generating it costs little more than the
    two versions themselves.
    """
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    buf = bytearray(size)
    n = 0
    while n < size:
        if rng.random() < 0.7:
            block = " ".join(rng.choices(vocab[0], cum_weights=vocab[1], k=40_000)).encode()
        else:
            block = rng.randbytes(200_000)
        block = block[: size - n]
        buf[n : n + len(block)] = block
        n += len(block)
    old = bytes(buf)
    edit = EDIT.encode()
    for at in (size - 1000, 1000) if ends else (size // 2,):
        buf[at : at + 200] = edit  # shrinks the buffer by 200 - len(edit) bytes
    new = bytes(buf)
    del buf
    return old, new


# --------------------------------------------------------------------------- measurements


def find_rsync() -> str | None:
    path = shutil.which("rsync")
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", "rsync"], ["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "rsync"]):
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False)
        if shutil.which("rsync"):
            break
    return shutil.which("rsync")


def patch_from_bytes(old: bytes, new: bytes) -> int | None:
    """``zstd -19 --patch-from=OLD NEW``: the zstd command line's own delta, for comparison."""
    zstd = shutil.which("zstd")
    if zstd is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        a, b, out = Path(tmp, "old"), Path(tmp, "new"), Path(tmp, "out.zst")
        a.write_bytes(old)
        b.write_bytes(new)
        res = subprocess.run([zstd, "-q", "-19", f"--patch-from={a}", str(b), "-o", str(out)],
                             capture_output=True, timeout=300)  # fmt: skip
        return out.stat().st_size if res.returncode == 0 and out.exists() else None


def office_docs(folder: Path) -> list[tuple[str, str, bytes, bytes]]:
    """The LibreOffice-made pairs in ``folder`` (NAME-v1.EXT, NAME-v2.EXT), as bench rows."""
    out = []
    for stem, ext in OFFICE_DOCS:
        v1, v2 = folder / f"{stem}-v1.{ext}", folder / f"{stem}-v2.{ext}"
        if v1.exists() and v2.exists():
            out.append((f"LibreOffice .{ext}", f"{stem}.{ext}", v1.read_bytes(), v2.read_bytes()))
    return out


def rsync_bytes(rsync: str | None, old: bytes, new: bytes, name: str) -> int | None:
    if rsync is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "src"), Path(tmp, "dst")
        src.mkdir()
        dst.mkdir()
        (src / name).write_bytes(new)
        (dst / name).write_bytes(old)
        res = subprocess.run(
            [rsync, "-a", "-I", "--no-whole-file", "-z", "--stats", f"{src}/", f"{dst}/"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if res.returncode != 0 or (dst / name).read_bytes() != new:
            return None
        sent = re.search(r"Total bytes sent:\s*([\d,.]+)", res.stdout)
        recv = re.search(r"Total bytes received:\s*([\d,.]+)", res.stdout)
        if not sent or not recv:
            return None
        return int(re.sub(r"[,.]", "", sent.group(1))) + int(re.sub(r"[,.]", "", recv.group(1)))


# -- content-defined chunking, the alternative the issue asks to measure against -----------------------

_GEAR = [int.from_bytes(hashlib.sha256(i.to_bytes(2, "big")).digest()[:8], "big") for i in range(256)]


def cdc_chunks(data: bytes, avg: int = 8192, min_size: int = 2048, max_size: int = 65536) -> list[bytes]:
    """Gear-hash content-defined chunks (FastCDC's rolling hash, one mask), average ``avg`` bytes."""
    mask, out, start, h = avg - 1, [], 0, 0
    mv = memoryview(data)
    for i, b in enumerate(data):
        h = ((h << 1) + _GEAR[b]) & 0xFFFFFFFFFFFFFFFF
        size = i + 1 - start
        if (size >= min_size and not h & mask) or size >= max_size:
            out.append(bytes(mv[start:i + 1]))
            start, h = i + 1, 0
    if start < len(data):
        out.append(bytes(mv[start:]))
    return out


def cdc_bytes(old: bytes, new: bytes) -> int:
    """A CDC sync of ``new`` to a holder of ``old``: the new version's chunk list (16-byte ids) plus the
    chunks the receiver lacks, zstd-compressed together, plus the same framing hbw-sync pays."""
    have = {hashlib.sha256(c).digest() for c in cdc_chunks(old)}
    chunks = cdc_chunks(new)
    missing = b"".join(c for c in chunks if hashlib.sha256(c).digest() not in have)
    return 16 * len(chunks) + (len(codec.compress(missing)) if missing else 0) + BATCH_FRAMING + OP_OVERHEAD


@contextlib.contextmanager
def without_splice() -> Iterator[None]:
    """The baseline of the same run: the zip recipe as before SPLICE (both inflated members held, every changed
    member one MEMBER frame over its whole content). Also used by bench_docs_memory.py --office."""
    from hbw_sync.delta import patch, zipdoc
    from hbw_sync.delta.wire import CODEC_DEFLATE, CODEC_RAW

    def against_deflated(raw_dict, raw, content, cap, *_):  # type: ignore[no-untyped-def]
        if hasattr(content, "join"):  # the new content, spooled by the deflater search (delta/search.py)
            content = content.join()
        raw = delta.ranged.whole(raw)  # a range of a version read by ranges (delta.Source): read it whole
        z = zlib.decompressobj(-15)
        inflated = z.decompress(raw)  # as before: one-shot, whole
        if not z.eof or z.unused_data:
            return raw_dict, patch.patch_frame(raw, content), None
        d = (raw_dict[0], raw_dict[1], CODEC_DEFLATE, len(inflated)) if len(inflated) else (0, 0, CODEC_RAW, 0)
        return d, patch.patch_frame(inflated, content), None

    kept = zipdoc.spliced_frame, zipdoc._against_deflated
    zipdoc.spliced_frame = lambda old, new: (patch.patch_frame(old, new), None)
    zipdoc._against_deflated = against_deflated
    try:
        yield
    finally:
        zipdoc.spliced_frame, zipdoc._against_deflated = kept


@contextlib.contextmanager
def tree_at(ref: str) -> Iterator[Path]:
    """This repository as it is at git ``ref``, unpacked in a temporary directory: the *before* of a
    before/after measured in one run (``--before``). Its scripts put their own tree first on
    ``sys.path``, so run with this venv's Python they measure that tree's hbw_sync."""
    with tempfile.TemporaryDirectory(prefix="hbw-before-") as tmp:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        yield Path(tmp)


def run_before(ref: str, argv: list[str]) -> dict:
    """This bench's ``--json`` result as the code is at ``ref`` (``tree_at``), for the same documents."""
    with tree_at(ref) as tree:
        out = subprocess.run([sys.executable, str(tree / "scripts" / "bench_docs.py"), *argv, "--json"],
                             capture_output=True, text=True)
    try:
        result: dict = json.loads(out.stdout)
    except ValueError:
        raise SystemExit(f"the bench at {ref} failed:\n{out.stderr[-3000:]}") from None
    result["ref"] = ref
    result["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True,
                                      text=True).stdout.strip()
    return result


def measure_row(label: str, name: str, old: bytes, new: bytes, rsync: str | None) -> dict:
    t = time.perf_counter()
    payload = delta.make_delta(old, new, name=name)
    t_make = time.perf_counter() - t
    with without_splice():
        baseline = delta.make_delta(old, new, name=name)
    whole = codec.compress(new)
    if payload is not None:
        t = time.perf_counter()
        assert delta.apply_delta(old, payload, expected_sha256=hashlib.sha256(new).digest(), max_size=len(new)) == new
        t_apply = time.perf_counter() - t
    else:
        t_apply = 0.0
    sent = len(payload) if payload is not None else len(whole)
    return {
        "document": label,
        "name": name,
        "old_size": len(old),
        "new_size": len(new),
        "hbw_sync": sent + BATCH_FRAMING + OP_OVERHEAD,
        "hbw_sync_no_splice": (len(baseline) if baseline is not None else len(whole)) + BATCH_FRAMING + OP_OVERHEAD,
        "payload": None if payload is None else len(payload),
        "method": None if payload is None else payload[0],
        "zstd19": len(whole),
        "patch_from": patch_from_bytes(old, new),
        "rsync": rsync_bytes(rsync, old, new, name),
        "cdc": cdc_bytes(old, new),
        "plain": len(new),
        "make_s": round(t_make, 3),
        "apply_s": round(t_apply, 3),
    }


# -- codec 10: documents another deflater wrote (zopfli and libdeflate stand in for Word) ------------

TRANSCRIPT_DOCS = (("report", "docx"), ("sheet", "xlsx"))


def rezipped_docs(folder: Path) -> list[tuple[str, str, bytes, bytes]]:
    """The LibreOffice-made report and sheet in ``folder``, re-zipped by zopfli and by libdeflate."""
    from rezip import rezip  # scripts/rezip.py; zopfli and deflate are in the test extras

    out = []
    for deflater in ("zopfli", "libdeflate"):
        for stem, ext in TRANSCRIPT_DOCS:
            v1, v2 = folder / f"{stem}-v1.{ext}", folder / f"{stem}-v2.{ext}"
            if v1.exists() and v2.exists():
                out.append((f"{deflater} .{ext}", f"{stem}.{ext}",
                            rezip(v1.read_bytes(), deflater), rezip(v2.read_bytes(), deflater)))
    return out


def transcript_row(label: str, name: str, old: bytes, new: bytes, rsync: str | None) -> dict:
    """``measure_row``, and the same edit without codec 10 (the baseline of the same run)."""
    from hbw_sync.delta import zipdoc

    row = measure_row(label, name, old, new, rsync)
    kept = zipdoc.MAX_DEFLATED
    zipdoc.MAX_DEFLATED = 0  # no member is transcribed: the compressed bytes are patched, as before codec 10
    try:
        baseline = delta.make_delta(old, new, name=name)
    finally:
        zipdoc.MAX_DEFLATED = kept
    row["hbw_sync_no_codec10"] = (len(baseline) if baseline is not None else row["zstd19"]) + BATCH_FRAMING + OP_OVERHEAD
    return row


# -- chunked documents (1 MiB and more, PROTOCOL.md §18d-e) ---------------------------------------------

def chunked_row(label: str, name: str, old: bytes, new: bytes, rsync: str | None) -> dict:
    """What a one-place edit of a chunked document costs: as whole chunks (the previous release) and as a
    delta version (manifest delta + delta, PROTOCOL.md §18e), beside zstd --patch-from, rsync -z and zstd."""
    from hbw_sync import chunks, crypto
    from hbw_sync.client.docdelta import manifest_delta
    from hbw_sync.delta.chunked import DELTA_MAX, aligned_recipe, chunked_delta

    keys = chunks.ChunkKeys.of(crypto.TeamKey(1, bytes(range(32))))
    m_old, _ = chunks.split_bytes(keys, old)
    m_new, parts = chunks.split_bytes(keys, new)
    have = set(m_old.ids)
    novel = [(cid, data) for cid, data in parts if cid not in have]
    sealed = sum(len(chunks.seal_chunk(keys, data)[1]) for _cid, data in dict(novel).items())
    manifest = m_new.encode()
    framing = BATCH_FRAMING + OP_OVERHEAD
    before = sealed + len(manifest) + 16 * len(m_new.ids) + framing  # chunks + manifest + routing ids
    t = time.perf_counter()
    # As the client chooses (client/docdelta.offer): office zips up to 32 MiB through make_delta's recipes,
    # both versions read by ranges (delta.Source, as from the chunk store); anything else a chunk-aligned
    # recipe; a whole-file patch as a last resort; at most half the chunks.
    def read(data: bytes):
        return lambda off, n: data[off:off + n]

    zips = old[:4] == new[:4] == b"PK\x03\x04"

    def offer() -> bytes | None:
        d = None
        if zips and max(len(old), len(new)) <= DELTA_MAX:
            d = delta.make_delta(delta.Source(read(old), len(old)), delta.Source(read(new), len(new)), name=name)
            d = d if d is not None and len(d) < sealed else None
        else:
            d = aligned_recipe(m_old, m_new, read(old), read(new))
            if d is None:
                d = chunked_delta(old, new, name=name, worth=sealed)
        return None if d is not None and 2 * len(d) > sealed else d

    d = offer()
    t_make = time.perf_counter() - t
    md = manifest_delta(m_old.encode(), manifest) if d is not None else None
    sent = md if md is not None else manifest  # the manifest as it travels: its delta, or derived (§18e)
    try:
        from hbw_sync import derived
    except ImportError:  # --before a release without derived manifests
        derived = None  # type: ignore[assignment]
    if (derived is not None and d is not None and max(len(old), len(new)) <= DELTA_MAX
            and len(sent) > derived.FORM_LEN):  # as client/docdelta.offer, every device reading the form
        sent = derived.encode(manifest, m_new.epoch)
    after = before if d is None else len(d) + len(sent) + framing
    with without_splice():
        d0 = offer()
    after_no_splice = before if d0 is None else len(d0) + len(sent) + framing
    return {
        "document": label, "name": name, "old_size": len(old), "new_size": len(new),
        "chunks_total": len(m_new.ids), "chunks_new": len(novel),
        "before": before, "after": after, "after_no_splice": after_no_splice, "delta": None if d is None else len(d),
        "method": None if d is None else d[0], "manifest": len(manifest),
        "manifest_delta": None if md is None else len(md), "manifest_sent": None if d is None else len(sent),
        "zstd19": len(codec.compress(new)), "patch_from": patch_from_bytes(old, new),
        "rsync": rsync_bytes(rsync, old, new, name), "make_s": round(t_make, 2),
    }  # fmt: skip


def large_office_docs(folder: Path | None) -> list[tuple[str, str, bytes, bytes]]:
    """LibreOffice-made pairs of 1 MiB and more in ``folder`` (``make_office_docs.py --rows 150000 --paras 2000
    --images 12``), as chunked bench rows."""
    if folder is None:
        return []
    out = []
    for stem, ext in OFFICE_DOCS:
        v1, v2 = folder / f"{stem}-v1.{ext}", folder / f"{stem}-v2.{ext}"
        if v1.exists() and v2.exists() and v2.stat().st_size >= 1 << 20:
            out.append((f"LibreOffice .{ext} {v2.stat().st_size / 1e6:.1f} MB", f"{stem}.{ext}", v1.read_bytes(),
                        v2.read_bytes()))
    return out


def _hwm_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(ends: bool) -> None:
    """Runs in its own process: peak RSS of make_delta and apply_delta on a 20 MB document.

    Peaks are VmHWM (this process's high-water RSS, reset by exec), not
    ru_maxrss, which Linux carries across fork+exec from the parent. Per-phase
    peaks reset VmHWM through /proc/self/clear_refs between phases; the
    whole-process peak is the largest of them.
    """
    old, new = big_doc(20_000_000, 7, ends)
    want = hashlib.sha256(new).digest()
    gen_peak = _hwm_mb()
    phases = _reset_hwm()
    t = time.perf_counter()
    payload = delta.make_delta(old, new, name="big.bin")
    t_make = time.perf_counter() - t
    make_peak = _hwm_mb()
    assert payload is not None
    phases = _reset_hwm() and phases
    t = time.perf_counter()
    out = delta.apply_delta(old, payload, expected_sha256=want, max_size=len(new))
    t_apply = time.perf_counter() - t
    apply_peak = _hwm_mb()
    assert out == new
    print(json.dumps({
        "edit": "near both ends" if ends else "middle",
        "size": len(new), "payload": len(payload), "method": payload[0],
        "peak_rss_mb": round(max(gen_peak, make_peak, apply_peak), 1),
        "generate_peak_mb": round(gen_peak, 1),
        "make_peak_mb": round(make_peak, 1) if phases else None,
        "apply_peak_mb": round(apply_peak, 1) if phases else None,
        "make_s": round(t_make, 2), "apply_s": round(t_apply, 2),
    }))  # fmt: skip


def measure_memory() -> list[dict]:
    out = []
    for scenario in ("middle", "ends"):
        res = subprocess.run([sys.executable, __file__, "--memory-child", scenario], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        if res.returncode != 0:
            out.append({"edit": scenario, "error": res.stderr.strip()[-2000:]})
        else:
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


# --------------------------------------------------------------------------- report


def _fmt(v: int | None) -> str:
    return "n/a" if v is None else f"{v:,}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--office-dir", type=Path, default=OFFICE_DIR,
                    help="LibreOffice-made pairs (default tests/data/office; make more with scripts/make_office_docs.py)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 20 MB memory scenarios")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: no 20 MB memory scenarios, no chunked documents, rsync only if already installed")
    ap.add_argument("--large-office-dir", type=Path, default=None,
                    help="LibreOffice-made pairs of 1 MiB and more (scripts/make_office_docs.py DIR --rows 150000 "
                         "--paras 2000 --images 12): rows for chunked documents")
    ap.add_argument("--no-chunked", action="store_true", help="skip the chunked documents (1 MiB and more)")
    ap.add_argument("--before", metavar="REF", default=None,
                    help="also measure the same documents with the code at git REF (e.g. main), in the same run, "
                         "and print both (tree_at)")
    ap.add_argument("--memory-child", choices=["middle", "ends"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child == "ends")
        return 0
    started = time.perf_counter()
    before = None
    if args.before:  # first, so that both runs meet the same load as nearly as can be
        argv = [*(["--quick"] if args.quick else []), *(["--no-memory"] if args.no_memory else []),
                *(["--no-chunked"] if args.no_chunked else []), "--office-dir", str(args.office_dir),
                *(["--large-office-dir", str(args.large_office_dir)] if args.large_office_dir else [])]
        before = run_before(args.before, argv)
    rsync = shutil.which("rsync") if args.quick else find_rsync()
    docs = [
        ("text 20 KB", "notes.txt", *text_doc(20_000, 1)),
        ("text 2 MB", "report.txt", *text_doc(2_000_000, 2)),
        ("PDF-like 1 MB", "scan.pdf", *pdf_doc(1_000_000, 3)),
        (".docx 500 KB", "minutes.docx", *docx_doc(4)),
        *office_docs(args.office_dir),
    ]
    rows = [measure_row(label, name, old, new, rsync) for label, name, old, new in docs]
    transcribed = [transcript_row(label, name, old, new, rsync) for label, name, old, new in rezipped_docs(args.office_dir)]
    chunked_docs = [] if args.no_chunked or args.quick else [
        ("text 5 MB", "minutes.txt", *text_doc(5_000_000, 5)),
        ("PDF-like 20 MB", "scan.pdf", *pdf_doc(20_000_000, 6)),
        *large_office_docs(args.large_office_dir),
    ]
    chunked = [chunked_row(label, name, old, new, rsync) for label, name, old, new in chunked_docs]
    memory = [] if args.no_memory or args.quick else measure_memory()
    by = {r["document"]: r for r in rows}
    targets = [
        {"target": "2 MB text edit, hbw-sync <= 4 KB", "value": by["text 2 MB"]["hbw_sync"],
         "pass": by["text 2 MB"]["hbw_sync"] <= TARGET_TEXT_2MB},
        {"target": ".docx edit, hbw-sync <= 10 KB", "value": by[".docx 500 KB"]["hbw_sync"],
         "pass": by[".docx 500 KB"]["hbw_sync"] <= TARGET_DOCX},
    ]  # fmt: skip
    for r in rows:
        if r["document"].startswith("LibreOffice"):
            targets.append({"target": f"{r['document']} edit, hbw-sync <= 4 KB", "value": r["hbw_sync"],
                            "pass": r["hbw_sync"] <= TARGET_OFFICE})  # fmt: skip
    for r in rows:
        targets.append({
            "target": f"{r['document']}: hbw-sync < rsync", "value": r["hbw_sync"],
            "pass": None if r["rsync"] is None else r["hbw_sync"] < r["rsync"],
        })  # fmt: skip
    for r in transcribed:
        targets.append({"target": f"{r['document']} edit (codec 10): hbw-sync <= 1/4 of without codec 10",
                        "value": r["hbw_sync"], "pass": r["hbw_sync"] * 4 <= r["hbw_sync_no_codec10"]})
    for r in chunked:
        targets.append({"target": f"chunked {r['document']} edit: hbw-sync <= 4 KB", "value": r["after"],
                        "pass": r["after"] <= TARGET_OFFICE})
        targets.append({"target": f"chunked {r['document']}: hbw-sync < rsync", "value": r["after"],
                        "pass": None if r["rsync"] is None else r["after"] < r["rsync"]})
    for m in memory:
        peak = m.get("peak_rss_mb")
        targets.append({"target": f"20 MB document, edit {m['edit']}: peak RSS < {TARGET_PEAK_MB} MB",
                        "value": peak, "pass": False if peak is None else peak < TARGET_PEAK_MB})  # fmt: skip
    elapsed = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(_benchkit.stamp({"rows": rows, "transcribed": transcribed, "chunked": chunked,
                                          "memory_20mb": memory, "targets": targets, "rsync": rsync,
                                          "elapsed_s": elapsed, "before": before},
                                         all(t["pass"] is not False for t in targets), quick=args.quick),
                         indent=2))  # fmt: skip
        return 0 if all(t["pass"] is not False for t in targets) else 1
    print("One-paragraph edit: bytes on the wire (hbw-sync = payload + 138 batch framing + 40 op overhead)\n")
    head = ("document", "size", "hbw-sync", "without SPLICE", "payload [method]", "zstd-19 whole", "zstd --patch-from", "rsync -z",
            "CDC 8 KiB", "plain", "make s")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        pl = "none (whole file)" if r["payload"] is None else f"{r['payload']:,} [{r['method']}]"
        print(f"| {r['document']} | {r['new_size']:,} | {r['hbw_sync']:,} | {r['hbw_sync_no_splice']:,} | {pl} | {r['zstd19']:,} | "
              f"{_fmt(r['patch_from'])} | {_fmt(r['rsync'])} | {r['cdc']:,} | {r['plain']:,} | {r['make_s']} |")  # fmt: skip
    if transcribed:
        print("\nDocuments another deflater wrote (codec 10, the deflate transcript): one-place edit, bytes on the wire\n")
        head = ("document", "size", "hbw-sync", "without codec 10", "payload [method]", "zstd --patch-from", "rsync -z",
                "make s", "apply s")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in transcribed:
            pl = "none (whole file)" if r["payload"] is None else f"{r['payload']:,} [{r['method']}]"
            print(f"| {r['document']} | {r['new_size']:,} | {r['hbw_sync']:,} | {r['hbw_sync_no_codec10']:,} | {pl} | "
                  f"{_fmt(r['patch_from'])} | {_fmt(r['rsync'])} | {r['make_s']} | {r['apply_s']} |")  # fmt: skip
    if chunked:
        print("\nChunked documents (1 MiB and more): a one-place edit, bytes on the wire (+178 framing, op)\n")
        head = ("document", "size", "chunks new/all", "before: whole chunks", "now: delta version", "without SPLICE",
                "delta [method]", "manifest / its delta / sent", "zstd-19 whole", "zstd --patch-from", "rsync -z", "make s")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in chunked:
            dl = "none" if r["delta"] is None else f"{r['delta']:,} [{r['method']}]"
            print(f"| {r['document']} | {r['new_size']:,} | {r['chunks_new']}/{r['chunks_total']} | {r['before']:,} | "
                  f"{r['after']:,} | {r['after_no_splice']:,} | {dl} | {r['manifest']:,} / {_fmt(r['manifest_delta'])} / {_fmt(r.get('manifest_sent'))} | {r['zstd19']:,} | "
                  f"{_fmt(r['patch_from'])} | {_fmt(r['rsync'])} | {r['make_s']} |")  # fmt: skip
    if before is not None:
        print(f"\nBefore and now, same run (before: the code at {before['ref']}, {before['commit'][:10]}); bytes on "
              "the wire, the delta payload, make_delta's time\n")
        print("| document | before | now | before: delta [method] | now: delta [method] | before: make s | now: make s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        then = {r["document"]: r for r in before.get("chunked", []) + before.get("rows", [])}
        for r in chunked + rows:
            b = then.get(r["document"])
            if b is None:
                continue
            sent, was = r.get("after", r.get("hbw_sync")), b.get("after", b.get("hbw_sync"))
            d_now, d_was = r.get("delta", r.get("payload")), b.get("delta", b.get("payload"))
            print(f"| {r['document']} | {was:,} | {sent:,} | {_fmt(d_was)} [{b['method']}] | {_fmt(d_now)} [{r['method']}] "
                  f"| {b['make_s']} | {r['make_s']} |")
    if rsync is None:
        print("\nrsync: not found and could not be installed (n/a)")
    if memory:
        print("\n20 MB document, 200-byte edits, each scenario in its own subprocess:")
    for m in memory:
        if "error" in m:
            print(f"  edit {m['edit']}: failed:", m["error"])
            continue
        print(f"  edit {m['edit']}: payload {m['payload']:,} B [method {m['method']}], make {m['make_s']} s, "
              f"apply {m['apply_s']} s; peak RSS {m['peak_rss_mb']} MB (generating both versions "
              f"{m['generate_peak_mb']} MB, make_delta {m['make_peak_mb']} MB, apply_delta {m['apply_peak_mb']} MB)")
    print("\nTargets:")
    for t in targets:
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        print(f"  {verdict:4}  {t['target']}  ({t['value']})")
    print(f"\n({elapsed} s)")
    return 0 if all(t["pass"] is not False for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
