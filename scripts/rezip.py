#!/usr/bin/env python3
"""Re-zip a document with another deflater (zopfli, libdeflate): test fixtures for codec 10.

Why: no Word is installed here (nor can be), and Word's deflater, like zopfli's and libdeflate's,
writes streams no zlib parameters reproduce. Re-deflating a LibreOffice-made .docx/.xlsx with them
gives real documents whose changed members only the deflate transcript (hbw_sync/delta/
transcript.py) rebuilds exactly. Every member keeps its name, order, method and timestamps; only
the deflated bytes (and so the sizes and offsets) change.

    rezip.py IN OUT --deflater zopfli|libdeflate
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Callable

DEFLATERS: dict[str, Callable[[bytes], bytes]] = {}


def _zopfli(data: bytes) -> bytes:
    import zopfli.zlib  # type: ignore[import-untyped]

    return bytes(zopfli.zlib.compress(data, numiterations=1)[2:-4])  # zlib header and adler32 off


def _libdeflate(data: bytes) -> bytes:
    import deflate  # type: ignore[import-untyped]

    return bytes(deflate.deflate_compress(data, 9))


DEFLATERS["zopfli"] = _zopfli
DEFLATERS["libdeflate"] = _libdeflate


def rezip(data: bytes, deflater: str) -> bytes:
    """``data`` (a zip) with every deflated member re-deflated by ``deflater``; a plain zip, no data descriptors."""
    squeeze = DEFLATERS[deflater]
    out = bytearray()
    central = bytearray()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
        for info in infos:
            content = zf.read(info)
            raw = squeeze(content) if info.compress_type == zipfile.ZIP_DEFLATED else content
            method = zipfile.ZIP_DEFLATED if info.compress_type == zipfile.ZIP_DEFLATED else zipfile.ZIP_STORED
            name = info.filename.encode("utf-8")
            dostime = (info.date_time[3] << 11) | (info.date_time[4] << 5) | (info.date_time[5] // 2)
            dosdate = ((info.date_time[0] - 1980) << 9) | (info.date_time[1] << 5) | info.date_time[2]
            crc = zlib.crc32(content)
            flags = 0x800 if info.flag_bits & 0x800 else 0
            offset = len(out)
            out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, dostime, dosdate, crc, len(raw),
                               len(content), len(name), 0) + name + raw
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, dostime, dosdate, crc,
                                   len(raw), len(content), len(name), 0, 0, 0, 0, info.external_attr, offset) + name
    cd_off = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(infos), len(infos), len(central), cd_off, 0)
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--deflater", choices=sorted(DEFLATERS), required=True)
    a = ap.parse_args(argv)
    a.dst.write_bytes(rezip(a.src.read_bytes(), a.deflater))
    return 0


if __name__ == "__main__":
    sys.exit(main())
