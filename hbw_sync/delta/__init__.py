"""Document deltas: rebuild a new version of a file from the version the peer already has.

Documents are most of the bytes we send, and most document edits are small, so a new
version is sent as a *delta* against the base version whenever that is smaller than the
whole file compressed. Sans-IO: bytes in, bytes out.

``make_delta(base, new)`` returns a payload, or ``None`` when the payload would not be
smaller than plain zstd of ``new`` (the caller then sends the whole version).
``apply_delta(base, payload, expected_sha256=..., max_size=...)`` rebuilds ``new`` and
checks its SHA-256; every failure is a ``ProtocolError`` (malformed), ``LimitError`` (too
big, refused from declared sizes before anything large is allocated) or ``IntegrityError``
(the result is not the expected file: wrong base, tampering, or a peer whose zlib deflates
differently).

The wire format is normative in PROTOCOL.md §18c; vectors in protocol/vectors/delta.json.
One module per job:

    wire.py     numbers, limits, varints, the bounded reader
    patch.py    zstd patch frames (method 1, literals, every MEMBER)
    deflate.py  one zlib stream rebuilt (codec 8)
    blocks.py   LibreOffice's block deflate rebuilt (codec 9)
    transcript.py  any deflate stream as its transcript, re-encoded bit for bit (codec 10)
    rebuild.py  apply_delta: parse, bound, rebuild, verify
    writer.py   the recipe writer
    span.py     the span recipe (shared ends copied)
    splice.py   SPLICE: a changed member's shared head and tail kept, only its middle patched
    stream.py   inflating and deflating a member a piece at a time (SPLICE never holds a whole sheet)
    search.py   a member's deflater found as it inflates, its content spooled (never held whole)
    zipdoc.py   the zip recipe (office containers member by member)

The writer builds every candidate that applies, decodes each with the reader itself
(``check_delta``: ``apply_delta`` hashing as it rebuilds) and keeps the smallest one that
reproduces ``new`` exactly (hash), so a reader with the same zlib always succeeds.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from ..errors import IntegrityError, ProtocolError
from . import blocks, deflate, patch, search, span, splice, stream, transcript, wire, zipdoc
from .patch import SMALL_TOTAL, patch_frame, plain_at_least
from .rebuild import apply_delta, check_delta
from .span import span_recipe
from .wire import METHOD_PATCH, METHOD_RECIPE, Buf
from .zipdoc import looks_like_zip, zip_recipe

#: A verified zip recipe of at most this many bytes (issue 12's target for a one-place edit)
#: is kept without trying the span and whole-file candidates on large files.
ZIP_ENOUGH = 4096

__all__ = ["make_delta", "apply_delta", "check_delta", "METHOD_PATCH", "METHOD_RECIPE",
           "blocks", "deflate", "patch", "search", "span", "splice", "stream", "transcript", "wire", "zipdoc"]


def make_delta(base: Buf, new: Buf, *, name: str = "") -> bytes | None:
    """A payload that rebuilds ``new`` from ``base``, or None if it would not beat plain zstd of ``new``.

    ``name`` (the document's file name) is only a hint: the zip container recipe is
    tried when both files *are* zip archives, whatever their names. Every candidate
    is verified by decoding it here; only one that reproduces ``new`` exactly is
    returned.
    """
    # Any buffer, read where it lies: the sender's versions come from the chunk store as bytearrays,
    # and a bytes copy of both was 11 MB of its peak for a 5.8 MB sheet.
    base, new = memoryview(base).cast("B"), memoryview(new).cast("B")
    want = hashlib.sha256(new).digest()
    builders: list[Callable[[], bytes | None]] = []
    if looks_like_zip(new) and looks_like_zip(base):
        builders.append(lambda: zip_recipe(base, new))

    spans: list[bytes | None] = []

    def span() -> bytes | None:
        spans.append(span_recipe(base, new))
        return spans[0]

    def patch() -> bytes | None:
        # Without shared ends the span recipe is not built; for small files the
        # few bytes of recipe overhead can also make plain method 1 win.
        if spans and spans[0] is not None and len(base) + len(new) > SMALL_TOTAL:
            return None
        return bytes([METHOD_PATCH]) + patch_frame(base, new)

    builders += [span, patch]
    best: bytes | None = None
    for build in builders:
        if best is not None and len(best) <= ZIP_ENOUGH and len(base) + len(new) > SMALL_TOTAL:
            # The zip recipe is already small: skip the span and whole-file patch frames. Over a
            # zip, both patch the compressed bytes, which change from the first changed member
            # to the central directory (each record's sizes and CRC, each member's deflate
            # output after the edit), so they cost whole members where the recipe costs the
            # edit (the 150,000-row sheet: 1.7 MB against 349 bytes); on large files they only
            # add a pass and zstd tables (about 16 MB each) to the writer's peak.
            break
        try:
            payload = build()
        except Exception:  # a candidate that cannot be built is skipped (None if none is left)
            continue
        if payload is None or (best is not None and len(payload) >= len(best)):
            continue
        try:
            check_delta(base, payload, expected_sha256=want, max_size=len(new))  # hashed, not held
        except (ProtocolError, IntegrityError):
            continue
        best = payload
    if best is None or not plain_at_least(new, len(best) + 1):
        return None  # plain zstd of new is no bigger: send the whole version
    return best

