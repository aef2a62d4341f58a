#!/usr/bin/env python3
"""Make office documents and a one-place edit of each with real LibreOffice (headless).

Why: the delta rebuild must reproduce the bytes office software writes, and only office
software writes them. For every format this writes ``NAME-v1.EXT`` and ``NAME-v2.EXT``,
both saved by LibreOffice from sources that differ in one place (one cell of a sheet, one
paragraph of a report, one line of one slide), the way a person opens a file, changes one
thing and saves:

    sheet.xlsx, sheet.ods      a CSV of ROWS rows x 6 columns; v2 changes one cell mid-sheet
    report.docx, report.odt    flat ODF text of PARAS paragraphs; v2 rewrites one paragraph
    slides.pptx, slides.odp    flat ODF presentation of SLIDES slides; v2 rewrites one line

The sources are generated from a fixed seed, so only the timestamps LibreOffice writes
differ between runs. Each conversion runs with its own throw-away LibreOffice profile, so
it never clashes with another LibreOffice on the machine.

    python scripts/make_office_docs.py OUTDIR [--rows 4000] [--paras 300] [--slides 12] [--images 0]

tests/data/office/ holds the files this made with LibreOffice 7.4 (Debian 12) at the
default sizes; tests/test_office_docs.py checks them and, where LibreOffice is installed,
makes a fresh set with this script.
"""

from __future__ import annotations

import argparse
import base64
import functools
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

WORDS = ("budget invoice permit ward inspection ledger council supplier report audit stall licence "
         "registry payroll grant tender receipt quarter district office clinic schedule road water").split()
EDIT_TEXT = "The regional council approved the revised schedule for the mobile clinics, effective next month."

ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
          'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
          'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
          'office:version="1.3"')


def sentence(rng: random.Random, lo: int = 8, hi: int = 18) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def sheet_csv(rows: int, edited: bool) -> str:
    rng = random.Random(12)
    out = ["id,name,ward,amount,due,status"]
    for i in range(rows):
        amount = f"{rng.random() * 10000:.2f}"
        if edited and i == rows // 2:
            amount = "7.5"  # the one cell a supervisor changed (shorter: the bytes after it shift)
        out.append(f"{i + 1},{rng.choice(WORDS)} {rng.randint(1, 9999)},{rng.choice(WORDS)},{amount},"
                   f"2026-12-{i % 28 + 1:02d},{rng.choice(['open', 'late', 'pending', 'done'])}")
    return "\n".join(out) + "\n"


def photo_jpeg(seed: int, width: int = 1200, height: int = 900) -> bytes:
    """A JPEG of noise (a photographed form compresses about as badly): Pillow, fixed seed."""
    import io

    from PIL import Image

    img = Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def report_fodt(paras: int, edited: bool, images: int = 0) -> str:
    rng = random.Random(13)
    body = ['<text:h text:outline-level="1">District finance office: quarterly report</text:h>']
    every = max(1, paras // images) if images else 0
    for i in range(paras):
        text = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        if edited and i == paras // 2:
            text = EDIT_TEXT
        body.append(f"<text:p>{escape(text)}</text:p>")
        if every and i % every == every - 1 and i // every < images:
            data = base64.b64encode(photo_jpeg(100 + i // every)).decode()
            body.append(f'<text:p><draw:frame draw:name="photo{i // every}" text:anchor-type="as-char" '
                        f'svg:width="15cm" svg:height="11.25cm"><draw:image><office:binary-data>{data}'
                        f'</office:binary-data></draw:image></draw:frame></text:p>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<office:document {ODF_NS} office:mimetype="application/vnd.oasis.opendocument.text">'
            f'<office:body><office:text>{"".join(body)}</office:text></office:body></office:document>\n')


def slides_fodp(slides: int, edited: bool) -> str:
    rng = random.Random(14)
    pages = []
    for i in range(slides):
        lines = [sentence(rng, 4, 9) for _ in range(5)]
        if edited and i == slides // 2:
            lines[2] = EDIT_TEXT
        ps = "".join(f"<text:p>{escape(t)}</text:p>" for t in lines)
        pages.append(f'<draw:page draw:name="slide{i + 1}"><draw:frame svg:x="1cm" svg:y="1cm" svg:width="24cm" '
                     f'svg:height="15cm"><draw:text-box>{ps}</draw:text-box></draw:frame></draw:page>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<office:document {ODF_NS} office:mimetype="application/vnd.oasis.opendocument.presentation">'
            f'<office:body><office:presentation>{"".join(pages)}</office:presentation></office:body>'
            '</office:document>\n')


# name -> (source extension, source maker, target formats with LibreOffice's export filter)
DOCS = {
    "sheet": ("csv", sheet_csv, {"xlsx": "xlsx:Calc Office Open XML", "ods": "ods"}),
    "report": ("fodt", report_fodt, {"docx": "docx:MS Word 2007 XML", "odt": "odt"}),
    "slides": ("fodp", slides_fodp, {"pptx": "pptx:Impress Office Open XML", "odp": "odp"}),
}


def soffice_path() -> str:
    for exe in ("soffice", "libreoffice"):
        found = shutil.which(exe)
        if found:
            return found
    sys.exit("LibreOffice is not installed (Debian: bash scripts/install-system-deps)")


def convert(soffice: str, sources: list[Path], target: str, outdir: Path, profile: Path) -> None:
    """One headless LibreOffice run that converts ``sources`` to ``target`` into ``outdir``."""
    cmd = [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
           "--convert-to", target, "--outdir", str(outdir), *map(str, sources)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        sys.exit(f"LibreOffice failed ({res.returncode}): {res.stderr.strip()}")


def make(outdir: Path, *, rows: int = 4000, paras: int = 300, slides: int = 12, images: int = 0,
         formats: tuple[str, ...] = ("xlsx", "ods", "docx", "odt", "pptx", "odp")) -> list[Path]:
    """Write NAME-v1.EXT and NAME-v2.EXT for each requested format; return the paths written.

    ``images``: photos (noise JPEGs of about 1 MB each) spread through the report, for documents
    of several MB, which travel as chunks (PROTOCOL.md §18e)."""
    soffice = soffice_path()
    outdir.mkdir(parents=True, exist_ok=True)
    sizes = {"sheet": rows, "report": paras, "slides": slides}
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="hbw-office-") as tmp:
        work = Path(tmp)
        profile = work / "profile"
        for name, (src_ext, maker, targets) in DOCS.items():
            wanted = {ext: f for ext, f in targets.items() if ext in formats}
            if not wanted:
                continue
            sources = []
            for v, edited in (("v1", False), ("v2", True)):
                src = work / f"{name}-{v}.{src_ext}"
                make_src = functools.partial(report_fodt, images=images) if name == "report" else maker
                src.write_text(make_src(sizes[name], edited), encoding="utf-8")
                sources.append(src)
            for ext, filt in wanted.items():
                convert(soffice, sources, filt, work, profile)
                for src in sources:
                    made = work / f"{src.stem}.{ext}"
                    if not made.exists():
                        sys.exit(f"LibreOffice did not write {made.name}")
                    dest = outdir / made.name
                    shutil.move(str(made), dest)
                    written.append(dest)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--rows", type=int, default=4000, help="sheet rows (default 4000)")
    ap.add_argument("--paras", type=int, default=300, help="report paragraphs (default 300)")
    ap.add_argument("--slides", type=int, default=12, help="presentation slides (default 12)")
    ap.add_argument("--images", type=int, default=0, help="photos (~1 MB each) in the report (default 0)")
    ap.add_argument("--formats", default="xlsx,ods,docx,odt,pptx,odp", help="comma-separated target formats")
    args = ap.parse_args()
    for path in make(args.outdir, rows=args.rows, paras=args.paras, slides=args.slides, images=args.images,
                     formats=tuple(f.strip() for f in args.formats.split(",") if f.strip())):
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
