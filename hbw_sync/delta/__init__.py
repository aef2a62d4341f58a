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
    ranged.py   a file read by ranges (a version in the chunk store), sliced like a buffer
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
from . import blocks, deflate, patch, ranged, search, span, splice, stream, transcript, wire, zipdoc
from .patch import SMALL_TOTAL, patch_frame, plain_at_least
from .ranged import Readable, Source
from .rebuild import apply_delta, apply_delta_to, check_delta
from .span import span_recipe
from .wire import METHOD_PATCH, METHOD_RECIPE, Buf
from .zipdoc import looks_like_zip, zip_recipe

#: A verified zip recipe of at most this many bytes (issue 12's target for a one-place edit)
#: is kept without trying the span and whole-file candidates on large files.
ZIP_ENOUGH = 4096

__all__ = ["make_delta", "apply_delta", "apply_delta_to", "check_delta", "Source", "METHOD_PATCH", "METHOD_RECIPE",
           "blocks", "deflate", "patch", "ranged", "search", "span", "splice", "stream", "transcript", "wire",
           "zipdoc"]


def make_delta(base: Readable, new: Readable, *, name: str = "") -> bytes | None:
    """A payload that rebuilds ``new`` from ``base``, or None if it would not beat plain zstd of ``new``.

    ``name`` (the document's file name) is only a hint: the zip container recipe is
    tried when both files *are* zip archives, whatever their names. Every candidate
    is verified by decoding it here; only one that reproduces ``new`` exactly is
    returned.

    Either file may be a ``ranged.Source`` (read by ranges, never whole: a version in the chunk
    store). Two such files together up to ``SMALL_TOTAL`` are read whole and get every candidate;
    larger ones get the zip recipe only, built and checked by ranges: the span and whole-file
    candidates patch against the whole base, which must then be in memory (what held ``doc
    update`` of a 32.8 MB report at 142 MB). Over buffers nothing changes.
    """
    if isinstance(base, Source) or isinstance(new, Source):
        if len(base) + len(new) <= SMALL_TOTAL:
            base, new = ranged.whole(base), ranged.whole(new)
        else:
            return _make_ranged(Source.of(base), Source.of(new))
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



def _make_ranged(base: Source, new: Source) -> bytes | None:
    """``make_delta`` of two large files read by ranges: the zip recipe alone, checked by ranges.

    For a zip whose recipe is at most ``ZIP_ENOUGH`` this is the payload the buffer path returns
    (it skips the other candidates then too); otherwise there is no whole-file fallback, and the
    caller keeps its chunks (``client/docdelta.offer``).
    """
    if not (looks_like_zip(new) and looks_like_zip(base)):
        return None
    try:
        payload = zip_recipe(base, new, member_max=zipdoc.MEMBER_WHOLE)
    except Exception:  # as make_delta: a candidate that cannot be built is skipped
        return None
    if payload is None:
        return None
    try:
        check_delta(base, payload, expected_sha256=new.sha256(), max_size=len(new))
    except (ProtocolError, IntegrityError):
        return None
    if not plain_at_least(new, len(payload) + 1):
        return None
    return payload
