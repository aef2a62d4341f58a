"""Documents as sealed, content-defined chunks: the sans-IO core (PROTOCOL.md §18d).

A document version travels as chunks outside batches; the batch carries only a small
*manifest* (the chunk ids and sizes, the whole file's size and SHA-256). Why:

* **Flat memory.** A chunk is at most ``CHUNK_MAX`` (256 KiB): a version of any size is read,
  sealed, sent, received and rebuilt one chunk at a time.
* **Only what changed travels.** Boundaries are content-defined (FastCDC 2020, through the
  ``pyfastcdc`` library: a well-kept, Cython-fast port of nlfiedler/fastcdc-rs, with a pure-Python
  fallback), so an edit in the middle of a 500 MB PDF changes the one or two chunks around it;
  every other chunk keeps its id, and a device (or the relay) that holds it is not sent it again.
  Boundaries are chunker 1 (PROTOCOL.md §18d, vectors in protocol/vectors/cdc.json): a reader of a
  derived manifest (§18e, ``derived``) cuts the rebuilt file itself and must find the author's cuts.
* **Ids reveal nothing to the relay.** A chunk id is HMAC-SHA256 over the chunk's bytes, keyed by
  a key derived from the team key (``TeamKey.subkey(b"chunk id")``), truncated to 16 bytes. The
  relay stores and serves chunks by id but cannot compute the id of a file it knows, so it
  cannot confirm that a team holds it. Equal chunks in one team have equal ids (dedup).
* **Sealed like a batch.** Each chunk is compressed with zstd when that pays (method byte 1, else
  0: raw; scans and PDFs are often incompressible) and sealed with ChaCha20-Poly1305 under
  ``TeamKey.subkey(b"chunk seal")``. The nonce is the next 12 bytes of the same HMAC (an SIV-style
  construction: equal plaintexts seal to equal bytes, distinct ones never share a nonce), and
  the AAD binds the epoch and the id, so a chunk cannot be served under another id. A reader
  recomputes the id from the opened bytes: a member who uploads junk under an id is caught.

Ids are keyed by one epoch's team key: after a key rotation the next version of a document is
chunked under the new epoch and its chunks travel again (rare; a rotation follows a lost laptop).

Sans-IO: bytes and file-like objects in, bytes out; nothing here opens a socket or a database.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

from . import codec, crypto
from .errors import IntegrityError, LimitError, ProtocolError

#: FastCDC sizes: chunks of 16-256 KiB, about 64 KiB on average (plus the minimum: FastCDC skips it).
CHUNK_MIN = 16 * 1024
CHUNK_AVG = 64 * 1024
CHUNK_MAX = 256 * 1024
ID_LEN = 16
METHOD_RAW, METHOD_ZSTD = 0, 1
#: A sealed chunk: nonce (12) + method (1) + body (at most CHUNK_MAX: zstd is kept only when smaller) + tag (16).
SEALED_MAX = crypto.NONCE_LEN + 1 + CHUNK_MAX + crypto.TAG_LEN
#: zstd level for chunks: fast enough to seal a 2 GiB scan on an office laptop, most of level 19's gain on text.
CHUNK_LEVEL = 9
#: The largest document (bytes) a manifest may describe: 64 GiB, far above any file an office shares.
MANIFEST_MAX_SIZE = 64 << 30
#: Most chunks one manifest may list: 64 GiB at the smallest average is far under this.
MANIFEST_MAX_CHUNKS = 1 << 20
MANIFEST_VERSION = 1

_SEAL_LABEL = b"hbw-sync chunk v1\x00"


@dataclass(frozen=True)
class ChunkKeys:
    """The two keys chunks need, derived once from one epoch's team key."""

    epoch: int
    id_key: bytes
    seal_key: bytes

    @classmethod
    def of(cls, key: crypto.TeamKey) -> "ChunkKeys":
        return cls(key.epoch, key.subkey(b"chunk id"), key.subkey(b"chunk seal"))

    def _mac(self, data: bytes | bytearray | memoryview) -> bytes:
        return hmac.new(self.id_key, data, "sha256").digest()

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """The 16-byte id of a chunk's plain bytes (the relay cannot compute it)."""
        return self._mac(data)[:ID_LEN]

    def _aad(self, cid: bytes) -> bytes:
        return _SEAL_LABEL + self.epoch.to_bytes(4, "big") + cid


def seal_chunk(keys: ChunkKeys, data: bytes | memoryview) -> tuple[bytes, bytes]:
    """(id, sealed bytes) of one chunk: compressed when that pays, sealed with a nonce derived from its bytes."""
    if len(data) > CHUNK_MAX:
        raise LimitError(f"a chunk of {len(data)} bytes is over the {CHUNK_MAX}-byte limit", code="protocol.limit")
    mac = keys._mac(data)
    cid, nonce = mac[:ID_LEN], mac[ID_LEN:ID_LEN + crypto.NONCE_LEN]
    plain = bytes(data)
    packed = codec.compress(plain, level=CHUNK_LEVEL) if plain else b""
    body = bytes([METHOD_ZSTD]) + packed if packed and len(packed) < len(plain) else bytes([METHOD_RAW]) + plain
    return cid, crypto.seal(keys.seal_key, body, keys._aad(cid), nonce=nonce)


def open_chunk(keys: ChunkKeys, cid: bytes, sealed: bytes, size: int | None = None) -> bytes:
    """The plain bytes of a sealed chunk, checked against its id (and its size, when the manifest gives one)."""
    if len(cid) != ID_LEN:
        raise ProtocolError("a chunk id must be 16 bytes", code="protocol.schema")
    if len(sealed) > SEALED_MAX:
        raise LimitError(f"a sealed chunk of {len(sealed)} bytes is over the limit", code="protocol.limit")
    body = crypto.open_sealed(keys.seal_key, sealed, keys._aad(cid), what="document chunk")
    if not body:
        raise ProtocolError("an empty chunk body", code="protocol.chunk")
    method, rest = body[0], body[1:]
    if method == METHOD_RAW:
        data = rest
    elif method == METHOD_ZSTD:
        data = codec.decompress(rest, cap=CHUNK_MAX)
    else:
        raise ProtocolError(f"unknown chunk method {method}", code="protocol.chunk")
    if not hmac.compare_digest(keys.chunk_id(data), cid) or (size is not None and len(data) != size):
        raise IntegrityError("a document chunk does not match its id", code="integrity.chunk")
    return data


@dataclass(frozen=True)
class Manifest:
    """One document version: its chunks in order (ids, plain sizes), its size and SHA-256, the epoch of its ids."""

    epoch: int
    size: int
    sha256: bytes
    ids: tuple[bytes, ...]
    sizes: tuple[int, ...]

    def encode(self) -> bytes:
        """Canonical msgpack map (§18d): 1 version, 2 epoch, 3 size, 4 sha256, 5 ids (concatenated), 6 sizes."""
        return codec.pack({1: MANIFEST_VERSION, 2: self.epoch, 3: self.size, 4: self.sha256,
                           5: b"".join(self.ids), 6: list(self.sizes)})

    def offsets(self) -> Iterator[tuple[bytes, int, int]]:
        """(id, offset in the file, size) of each chunk."""
        pos = 0
        for cid, n in zip(self.ids, self.sizes):
            yield cid, pos, n
            pos += n


def decode_manifest(data: bytes) -> Manifest:
    """A manifest from its bytes; refuses any shape, size or sum that does not hold before using it."""
    limits = codec.Limits(max_message=len(data), max_plain=MANIFEST_MAX_CHUNKS * ID_LEN,
                          max_container=MANIFEST_MAX_CHUNKS, max_str=0)
    m = codec.unpack(data, limits)
    if not isinstance(m, dict) or set(m) != {1, 2, 3, 4, 5, 6}:
        raise ProtocolError("a document manifest must hold fields 1-6", code="protocol.manifest")
    if m[1] != MANIFEST_VERSION:
        raise ProtocolError(f"document manifest version {m[1]!r} is not known", code="protocol.manifest")
    epoch, size, digest, ids, sizes = m[2], m[3], m[4], m[5], m[6]
    if (type(epoch) is not int or not 1 <= epoch < 1 << 32 or type(size) is not int
            or not 0 <= size <= MANIFEST_MAX_SIZE or not isinstance(digest, bytes) or len(digest) != 32
            or not isinstance(ids, bytes) or not isinstance(sizes, list)):
        raise ProtocolError("a document manifest has a field of the wrong type", code="protocol.manifest")
    if len(ids) != ID_LEN * len(sizes) or any(type(n) is not int or not 1 <= n <= CHUNK_MAX for n in sizes):
        raise ProtocolError("a document manifest's chunk list is malformed", code="protocol.manifest")
    if sum(sizes) != size:
        raise ProtocolError("a document manifest's chunk sizes do not add up to its size", code="protocol.manifest")
    return Manifest(epoch, size, digest, tuple(ids[i:i + ID_LEN] for i in range(0, len(ids), ID_LEN)), tuple(sizes))


def _cdc() -> FastCDC:
    return FastCDC(CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX)


class Splitter:
    """Cut a stream into chunks, hashing the whole file on the way; ``manifest()`` once the stream is read.

    ``for cid, data in splitter.chunks(f): ...`` yields each chunk's id and a view of its bytes
    (valid until the next one: seal or store it before asking for the next). Memory stays at a few
    chunks whatever the file's size.
    """

    def __init__(self, keys: ChunkKeys, max_size: int = MANIFEST_MAX_SIZE):
        self.keys, self.max_size = keys, max_size
        self._sha = hashlib.sha256()
        self._ids: list[bytes] = []
        self._sizes: list[int] = []
        self._done = False

    def chunks(self, stream: BinaryIO) -> Iterator[tuple[bytes, memoryview]]:
        total = 0
        for c in _cdc().cut_stream(stream):
            total += c.length
            if total > self.max_size:
                raise LimitError(f"the file grew past {self.max_size} bytes while it was read", code="usage.doc_too_large")
            self._sha.update(c.data)
            cid = self.keys.chunk_id(c.data)
            self._ids.append(cid)
            self._sizes.append(c.length)
            yield cid, c.data
        self._done = True

    def manifest(self) -> Manifest:
        if not self._done:
            raise RuntimeError("the stream was not read to its end")
        return Manifest(self.keys.epoch, sum(self._sizes), self._sha.digest(), tuple(self._ids), tuple(self._sizes))


class PushSplitter:
    """``Splitter`` fed by its producer: ``feed(data)`` hands back the chunks it completes.

    Why: a reader that works out a delta version's manifest (PROTOCOL.md §18e, derived manifests)
    gets the rebuilt file from a callback (``delta.apply_delta_to``), not as a stream to read. A
    FastCDC cut depends only on the ``CHUNK_MAX`` bytes from the chunk's start, so cutting a
    chunk as soon as that much is buffered (and the rest at ``finish``) gives exactly
    ``Splitter``'s boundaries. At most ``2 x CHUNK_MAX`` bytes are held.
    """

    def __init__(self, keys: ChunkKeys, max_size: int = MANIFEST_MAX_SIZE):
        self.keys, self.max_size = keys, max_size
        self._cdc = _cdc()
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self._ids: list[bytes] = []
        self._sizes: list[int] = []
        self._total = 0
        self._done = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes]]:
        """(id, plain bytes) of the chunks ``data`` completes; raises LimitError past ``max_size``."""
        view = memoryview(data).cast("B")
        self._total += len(view)
        if self._total > self.max_size:
            raise LimitError(f"the file is larger than {self.max_size} bytes", code="protocol.limit")
        out: list[tuple[bytes, bytes]] = []
        while len(view):
            take = min(len(view), 2 * CHUNK_MAX - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            while len(self._buf) >= CHUNK_MAX:
                out.append(self._cut(CHUNK_MAX))
        return out

    def finish(self) -> list[tuple[bytes, bytes]]:
        """The last chunks; ``manifest()`` may be asked after this."""
        out: list[tuple[bytes, bytes]] = []
        while self._buf:
            out.append(self._cut(len(self._buf)))
        self._done = True
        return out

    def _cut(self, window: int) -> tuple[bytes, bytes]:
        with memoryview(self._buf) as whole:
            n = next(iter(self._cdc.cut_buf(whole[:window]))).length
        piece = bytes(self._buf[:n])
        del self._buf[:n]
        self._sha.update(piece)
        cid = self.keys.chunk_id(piece)
        self._ids.append(cid)
        self._sizes.append(n)
        return cid, piece

    def manifest(self) -> Manifest:
        if not self._done:
            raise RuntimeError("finish() was not called")
        return Manifest(self.keys.epoch, self._total, self._sha.digest(), tuple(self._ids), tuple(self._sizes))


def split_bytes(keys: ChunkKeys, data: bytes) -> tuple[Manifest, list[tuple[bytes, bytes]]]:
    """Manifest and (id, plain bytes) of every chunk of a small in-memory file (tests, vectors)."""
    import io

    s = Splitter(keys)
    out = [(cid, bytes(view)) for cid, view in s.chunks(io.BytesIO(data))]
    return s.manifest(), out


class Joiner:
    """Rebuild a file from its manifest, one opened chunk at a time, checking the whole file's hash at the end."""

    def __init__(self, keys: ChunkKeys, manifest: Manifest):
        if keys.epoch != manifest.epoch:
            raise ValueError("keys of another epoch")
        self.keys, self.manifest = keys, manifest
        self._sha = hashlib.sha256()
        self._next = 0

    def open(self, cid: bytes, sealed: bytes) -> bytes:
        """The next chunk's plain bytes (chunks are given in manifest order)."""
        i = self._next
        if i >= len(self.manifest.ids) or cid != self.manifest.ids[i]:
            raise ProtocolError("a chunk out of its manifest's order", code="protocol.chunk")
        data = open_chunk(self.keys, cid, sealed, self.manifest.sizes[i])
        self._sha.update(data)
        self._next += 1
        return data

    def finish(self) -> None:
        """IntegrityError unless every chunk came and the file hashes to the manifest's SHA-256."""
        if self._next != len(self.manifest.ids) or self._sha.digest() != self.manifest.sha256:
            raise IntegrityError("a document rebuilt from its chunks does not match its recorded hash",
                                 code="integrity.doc")


# -- chunk packs: sealed chunks streamed to the relay (PROTOCOL.md §18e, "Streamed chunk packs") --

#: The smallest sealed chunk: nonce, method byte, tag (an empty file has no chunk at all).
SEALED_MIN = crypto.NONCE_LEN + 1 + crypto.TAG_LEN
_LEN = 4


def pack_chunks(pieces: list[tuple[bytes, bytes]] | list[list[bytes]]) -> bytes:
    """``id (16) | u32 length (big-endian) | sealed chunk``, one after the other: bytes a stream can resume in."""
    return b"".join(cid + len(sealed).to_bytes(_LEN, "big") + sealed for cid, sealed in pieces)


def unpack_chunks(data: bytes | memoryview, max_count: int) -> list[tuple[bytes, bytes]]:
    """The (id, sealed chunk) pairs of a pack; each length checked before its bytes are taken.

    Raises:
        ProtocolError ``protocol.truncated``: a pack that ends inside an entry.
        ProtocolError ``protocol.schema``: a length no sealed chunk can have, or over ``max_count`` entries.
    """
    view = memoryview(data)
    out: list[tuple[bytes, bytes]] = []
    at = 0
    while at < len(view):
        if len(out) >= max_count:
            raise ProtocolError(f"a chunk pack of more than {max_count} chunks", code="protocol.schema")
        if at + ID_LEN + _LEN > len(view):
            raise ProtocolError("a chunk pack ends inside an entry's header", code="protocol.truncated")
        n = int.from_bytes(view[at + ID_LEN:at + ID_LEN + _LEN], "big")
        if not SEALED_MIN <= n <= SEALED_MAX:
            raise ProtocolError(f"a sealed chunk of {n} bytes cannot be a chunk", code="protocol.schema")
        start = at + ID_LEN + _LEN
        if start + n > len(view):
            raise ProtocolError("a chunk pack ends inside a chunk", code="protocol.truncated")
        out.append((bytes(view[at:at + ID_LEN]), bytes(view[start:start + n])))
        at = start + n
    return out
