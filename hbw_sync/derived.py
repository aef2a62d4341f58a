"""Derived manifests: a delta version's chunk ids worked out by its reader, not sent (PROTOCOL.md §18e).

A one-cell edit of an office file shifts every compressed byte after the cell, so about half
of its content-defined chunks get new ids: 206 of 394 for an 800,000-row sheet, 3.3 KB of
16-byte ids that do not compress, ten times the delta itself (355 bytes). Every member holds
the id key, and a reader rebuilds the whole file from the delta anyway, so it can cut the
file with the same chunker and compute the ids itself. The version then carries, in place of
its manifest's delta, only the manifest's SHA-256 (which the reader's result must match), the
chunker's number and the epoch of the ids: 38 bytes.

Sans-IO: ``encode``/``parse`` the field, and ``Deriver`` turns the rebuilt file, fed to it in
pieces, into the manifest and its chunks (``chunks.PushSplitter``), checking the hash at the end.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from . import chunks
from .errors import IntegrityError, ProtocolError

#: The first byte after the hash: not a §18c method (1, 2), so a reader that predates this form
#: refuses the version with ``protocol.delta`` and reads the next full one.
METHOD_DERIVED = 0x80
#: Chunker 1: FastCDC 2020 with §18d's parameters (16/64/256 KiB, normalized 1, seed 0).
CHUNKER_FASTCDC = 1
#: SHA-256 ‖ method ‖ chunker ‖ epoch (u32 BE).
FORM_LEN = 32 + 1 + 1 + 4


@dataclass(frozen=True)
class Derived:
    """A parsed derived-manifest field: what the reader's manifest must hash to, and the epoch of its ids."""

    digest: bytes
    epoch: int


def encode(manifest: bytes, epoch: int) -> bytes:
    """The ``manifest_delta`` field that tells readers to derive ``manifest`` (its encoding, §18d).
    Raises ValueError for an epoch outside 1..2^32-1 (a manifest's own bound)."""
    if not 1 <= epoch < 1 << 32:
        raise ValueError(f"epoch {epoch} is outside 1..2^32-1")
    return hashlib.sha256(manifest).digest() + bytes([METHOD_DERIVED, CHUNKER_FASTCDC]) + struct.pack(">I", epoch)


def is_derived(field: bytes) -> bool:
    """Whether a ``manifest_delta`` field is the derived form (its 33rd byte), well formed or not."""
    return isinstance(field, bytes) and len(field) > 32 and field[32] == METHOD_DERIVED


def parse(field: bytes) -> Derived:
    """The derived form's parts. Raises ProtocolError ``protocol.manifest`` for a wrong length, an
    unknown chunker or epoch 0."""
    if not is_derived(field) or len(field) != FORM_LEN:
        raise ProtocolError("a derived manifest field must be 38 bytes", code="protocol.manifest")
    if field[33] != CHUNKER_FASTCDC:
        raise ProtocolError(f"derived manifest chunker {field[33]} is not known", code="protocol.manifest")
    epoch = struct.unpack(">I", field[34:38])[0]
    if epoch == 0:
        raise ProtocolError("a derived manifest's epoch must be at least 1", code="protocol.manifest")
    return Derived(field[:32], epoch)


class Deriver:
    """The rebuilt file in, its manifest out: ``write`` pieces in order (``apply_delta_to``'s emit), then
    ``finish``. Each chunk goes to ``keep(cid, plain)`` as it is cut, which the caller undoes if
    ``finish`` raises (one transaction).

    Raises ``IntegrityError`` ``integrity.delta`` when the manifest so made does not hash to the
    field's SHA-256 (the reader's file or chunker differs from the writer's), and ``integrity.doc``
    when the manifest describes another file than ``sha256``.
    """

    def __init__(self, keys: chunks.ChunkKeys, want: Derived, sha256: bytes, max_size: int,
                 keep: Callable[[bytes, bytes], None]) -> None:
        if keys.epoch != want.epoch:
            raise ValueError("keys of another epoch")
        self.want, self.sha256, self.keep = want, sha256, keep
        self._split = chunks.PushSplitter(keys, max_size)
        self.raw = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        for cid, plain in self._split.feed(data):
            self.keep(cid, plain)

    def finish(self) -> chunks.Manifest:
        """The manifest, checked; its encoding is ``self.raw`` afterwards."""
        for cid, plain in self._split.finish():
            self.keep(cid, plain)
        m = self._split.manifest()
        raw = m.encode()
        if not hmac.compare_digest(hashlib.sha256(raw).digest(), self.want.digest):
            raise IntegrityError("the manifest worked out from the rebuilt file is not the author's",
                                 code="integrity.delta")
        if not hmac.compare_digest(m.sha256, self.sha256):
            raise IntegrityError("a derived manifest names another file", code="integrity.doc")
        self.raw = raw
        return m
