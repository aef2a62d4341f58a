"""Delta versions of chunked documents: a few-KB edit of a 1-32 MiB file travels as a delta again.

Why: since documents of 1 MiB and more travel as content-defined chunks (``hbw_sync.chunks``),
an edit resends the one or two chunks it touched, 16-256 KiB each, where a patch-from or zip
recipe delta (``make_delta``) costs a few KB. A *delta version* (PROTOCOL.md §18c, §18e) is a
chunked version whose op carries, next to its manifest, a ``delta`` against an earlier version
(``base_sha256``). Its author uploads none of the chunks the delta rebuilds; a reader that holds
the base rebuilds the file, checks it against the manifest's SHA-256, cuts it at the manifest's
sizes and checks every piece against its chunk id, so the chunks it keeps are the very chunks the
author made (and seal to the same bytes).

Only files of at most ``DELTA_MAX`` (base and new) take this path: ``make_delta`` and
``apply_delta`` hold both versions in memory. Larger files keep whole-chunk dedup, which is flat
in memory whatever the size.

Sans-IO: bytes in, chunks out.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from .. import chunks
from ..errors import IntegrityError, LimitError
from . import make_delta
from .rebuild import apply_delta

#: Largest base and new version (bytes) a delta version may have: 32 MiB, the inline limit (§18c).
DELTA_MAX = 32 * 1024 * 1024


def chunked_delta(base: bytes, new: bytes, *, name: str = "", worth: int) -> bytes | None:
    """A payload rebuilding ``new`` from ``base`` if it is smaller than ``worth`` bytes (what the
    chunks it spares would cost); None when a delta does not pay or the files are too large."""
    if len(base) > DELTA_MAX or len(new) > DELTA_MAX or worth <= 0:
        return None
    d = make_delta(base, new, name=name)
    return d if d is not None and len(d) < worth else None


def rebuild_chunks(keys: chunks.ChunkKeys, manifest: chunks.Manifest, base: bytes,
                   payload: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(id, plain bytes) of each chunk of a delta version, rebuilt from ``base`` and checked.

    Raises (before yielding anything): ``LimitError`` ``protocol.limit`` (a version over
    ``DELTA_MAX``), what ``apply_delta`` raises (``IntegrityError`` ``integrity.delta`` when the
    result is not the manifest's SHA-256); while yielding: ``IntegrityError`` ``integrity.chunk``
    when a piece cut at the manifest's sizes is not the chunk its id names (a dishonest manifest).
    """
    if manifest.size > DELTA_MAX or len(base) > DELTA_MAX:
        raise LimitError(f"a delta version of {manifest.size} bytes over a base of {len(base)} is over the "
                         f"{DELTA_MAX}-byte limit", code="protocol.limit")
    data = apply_delta(base, payload, expected_sha256=manifest.sha256, max_size=manifest.size)
    view = memoryview(data)
    for cid, off, n in manifest.offsets():
        piece = view[off:off + n]
        if not hmac.compare_digest(keys.chunk_id(piece), cid):
            raise IntegrityError("a chunk rebuilt from a delta does not match its id", code="integrity.chunk")
        yield cid, piece
