"""A file read by ranges: the delta writer and reader over versions that are never whole in memory.

Why: a device keeps a document version as sealed chunks (``client/docchunks.py``). Assembling two
near-32 MiB versions to make or apply a zip recipe held both whole (65 MB on a 54 MB process:
``doc update`` at 142 MB, the receiver and ``doc get`` at 130 MB). A zip recipe reads little of
them at a time: the central directory, each record's header, each member's bytes in order (to hash
or compare them), one changed member. A ``Source`` gives exactly that, ``read(off, n)`` over the
chunk store, opening one chunk at a time; over a buffer it hands out views (no copy), so the same
code serves both. Slicing a ``Source`` (``src[a:b]``) is a read: code written for buffers reads a
``Source`` unchanged, as long as it takes ranges and not ``memoryview(src)``.

Sans-IO: a read callback in, bytes out.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from typing import IO, Any, Union

from .wire import Buf

#: Bytes per read when a range is hashed, compared or copied a piece at a time.
PIECE = 1 << 20

ReadAt = Callable[[int, int], Buf]  # read(off, n): bytes [off, off + n), clipped to the file


class Source:
    """``size`` bytes read through ``read(off, n)``; sliced like a buffer (a step is not supported)."""

    __slots__ = ("_read", "size", "base")

    def __init__(self, read: ReadAt, size: int, base: int = 0):
        self._read, self.size, self.base = read, size, base

    @classmethod
    def of(cls, data: "Buf | Source") -> "Source":
        """``data`` as a Source: a buffer is read where it lies (its slices are views)."""
        if isinstance(data, Source):
            return data
        view = memoryview(data).cast("B")
        return cls(lambda off, n: view[off : off + n], len(view))

    def __len__(self) -> int:
        return self.size

    def read(self, off: int, n: int) -> Buf:
        """Bytes [off, off + n), clipped to this source."""
        off = max(0, min(off, self.size))
        n = max(0, min(n, self.size - off))
        return self._read(self.base + off, n) if n else b""

    def __getitem__(self, key: slice) -> Buf:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a Source is read by plain ranges only")
        a, b, _step = key.indices(self.size)
        return self.read(a, b - a)

    def sub(self, off: int, n: int) -> "Source":
        """Bytes [off, off + n) as a Source of their own (nothing is read)."""
        off = max(0, min(off, self.size))
        return Source(self._read, max(0, min(n, self.size - off)), self.base + off)

    def pieces(self, a: int = 0, b: int | None = None, step: int = PIECE) -> Iterator[Buf]:
        """Bytes [a, b) in pieces of at most ``step``."""
        b = self.size if b is None else min(b, self.size)
        for i in range(max(0, a), b, step):
            yield self.read(i, min(step, b - i))

    def whole(self) -> Buf:
        """Every byte at once: only where a consumer must see a range whole (a patch frame's dictionary)."""
        return self.read(0, self.size)

    def sha256(self) -> bytes:
        h = hashlib.sha256()
        for piece in self.pieces():
            h.update(piece)
        return h.digest()

    def file(self) -> IO[bytes]:
        """A read-only seekable file over this source (zipfile reads its directory through it)."""
        return io.BufferedReader(_RawFile(self), buffer_size=1 << 16)


Readable = Union[Buf, Source]


def whole(data: Readable) -> Buf:
    """``data`` as a buffer: a Source read whole, a buffer as it is."""
    return data.whole() if isinstance(data, Source) else data


def same(a: Source, a_off: int, b: Source, b_off: int, n: int) -> bool:
    """Are a[a_off:a_off+n] and b[b_off:b_off+n] equal? Compared a piece at a time."""
    for i in range(0, n, PIECE):
        k = min(PIECE, n - i)
        x, y = a.read(a_off + i, k), b.read(b_off + i, k)
        if len(x) != k or len(y) != k or x != y:
            return False
    return True


class _RawFile(io.RawIOBase):
    def __init__(self, src: Source) -> None:
        super().__init__()
        self.src, self.pos = src, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.src.size}[whence]
        self.pos = max(0, start + offset)
        return self.pos

    def readinto(self, b: Any) -> int:
        data = self.src.read(self.pos, len(b))
        n = len(data)
        b[:n] = data
        self.pos += n
        return n
