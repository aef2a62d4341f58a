"""Strict msgpack and bounded zstd: the two decoders every untrusted byte goes through.

Why so strict: bundles arrive by email and USB stick and the relay may be
attacked, so every decoder here assumes hostile input. Each length is capped
before anything is allocated, a zstd frame must declare its decompressed size
(so a bomb is refused from its header, never inflated) and carry a content
checksum, our own code decides which frames are acceptable (PROTOCOL.md §7) so
that a second implementation on another zstd library agrees, trailing bytes are
an error, and every failure is a ``ProtocolError``/``LimitError``, never a
library exception leaking out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import msgpack
import xxhash  # the zstd content checksum, checked by us (see check_frame)
import zstandard

from .errors import LimitError, ProtocolError, VersionError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Limits:
    """Caps applied while decoding. The defaults suit one sync batch on a thin link."""

    max_message: int = 32 * 1024 * 1024  # a whole batch or bundle on the wire
    max_plain: int = 64 * 1024 * 1024  # one decompressed section
    max_ops: int = 20_000  # ops in one batch
    max_container: int = 20_000  # elements of any msgpack array or map
    max_str: int = 1024 * 1024


DEFAULT_LIMITS = Limits()


def pack(obj: Any) -> bytes:
    """msgpack with bin/str kept apart (use_bin_type) so decoding is unambiguous."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)  # msgpack ships no type hints
    return out


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed", code="protocol.msgpack")


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ProtocolError("duplicate key in a msgpack map", code="protocol.msgpack")
    return d


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode exactly one msgpack object that spans all of ``data``."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,  # field maps use integer keys
            ext_hook=_no_ext,
            object_pairs_hook=_unique_map,  # a duplicate key could mean two things to two decoders
            timestamp=0,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_plain,
            max_array_len=limits.max_container,
            max_map_len=limits.max_container,
            max_ext_len=0,
        )
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("trailing bytes after the msgpack object", code="protocol.trailing") from None
    except (ValueError, msgpack.UnpackException, UnicodeDecodeError, TypeError, RecursionError) as e:
        # ValueError covers truncation ("incomplete input") and the length caps.
        raise ProtocolError(f"malformed msgpack: {e}", code="protocol.msgpack") from None


def zstd_frame_length(data: bytes) -> int:
    """Length of the single zstd frame at the start of ``data``, walking its block headers.

    python-zstandard ignores bytes after a frame; we count them so that trailing
    garbage inside a section is refused instead of silently carried along.
    """
    if data[:4] != ZSTD_MAGIC:
        raise ProtocolError("not a zstd frame", code="protocol.zstd")
    try:
        pos = zstandard.frame_header_size(data)
    except zstandard.ZstdError:
        raise ProtocolError("truncated zstd frame header", code="protocol.zstd") from None
    has_checksum = bool(data[4] & 0x04)
    while True:
        if pos + 3 > len(data):
            raise ProtocolError("truncated zstd frame", code="protocol.truncated")
        header = int.from_bytes(data[pos : pos + 3], "little")
        pos += 3
        last, btype, bsize = header & 1, (header >> 1) & 3, header >> 3
        if btype == 3:
            raise ProtocolError("corrupt zstd block", code="protocol.zstd")
        pos += 1 if btype == 1 else bsize
        if last:
            break
    if has_checksum:
        pos += 4
    if pos > len(data):
        raise ProtocolError("truncated zstd frame", code="protocol.truncated")
    return pos


@lru_cache(maxsize=8)
def _builtin_dict_bytes(dict_id: int) -> bytes | None:
    try:
        return resources.files("hbw_sync").joinpath(f"data/ops-{dict_id}.zdict").read_bytes()
    except (FileNotFoundError, OSError):
        return None


@lru_cache(maxsize=8)
def dictionary(dict_id: int) -> zstandard.ZstdCompressionDict:
    """A shipped zstd dictionary by id; VersionError if this build does not know it."""
    raw = _builtin_dict_bytes(dict_id)
    if raw is None:
        raise VersionError(
            f"message compressed with dictionary {dict_id}, which this version does not have",
            hint="upgrade hbw-sync",
        )
    d = zstandard.ZstdCompressionDict(raw)
    if d.dict_id() != dict_id:
        raise VersionError(f"shipped dictionary {dict_id} is damaged")
    return d


#: The zstd level of batches and of "plain zstd" everywhere (client, delta baseline, vectors, benchmarks):
#: small batches on a slow link are worth level 19's CPU. One knob, so they cannot drift apart.
BATCH_LEVEL = 19


def compress(data: bytes, *, level: int = BATCH_LEVEL, dict_id: int = 0) -> bytes:
    """One zstd frame as PROTOCOL.md §7 requires: content size and content checksum, no dict id.

    The checksum is not for integrity (signature and AEAD cover that) but for agreement: two
    zstd decoders may differ on a malformed frame, and a checksum every reader checks makes any
    frame they both decode decode to the same bytes (see ``check_frame``).
    """
    params: dict[str, Any] = {"level": level, "write_content_size": True, "write_checksum": True}
    if dict_id:
        params["dict_data"] = dictionary(dict_id)
        params["write_dict_id"] = False  # the message header carries it
    return zstandard.ZstdCompressor(**params).compress(data)


#: Largest block (RFC 8878 Block_Maximum_Size is the smaller of this and the window).
BLOCK_MAX = 128 * 1024
#: A window may always be this large (level 19's largest), or twice the declared content size.
WINDOW_FLOOR = 8 * 1024 * 1024


@dataclass(frozen=True)
class FrameInfo:
    """What ``check_frame`` read from a frame's header and trailer."""

    content_size: int
    window_size: int
    checksum: int  # the frame's 4-byte content checksum, little-endian


def window_bound(content_size: int) -> int:
    """Largest window a frame of ``content_size`` may declare (PROTOCOL.md §7)."""
    return max(WINDOW_FLOOR, 2 * content_size)


def check_frame(data: bytes, *, cap: int, window_max: int | None = None) -> FrameInfo:
    """The acceptance rule of PROTOCOL.md §7, checked by our own code before libzstd sees a byte.

    Why not leave it to the library: a one-bit flip that one zstd decoder rejects and another
    accepts would let a member's signed batch apply on one client and not on the other. So the
    rule is ours and written down: one frame, no skippable frame, no dictionary id, reserved bit
    clear, content size and checksum flags set, size within ``cap`` (a bomb is refused from the
    header), window within ``window_bound``, every block of a known type and at most
    ``min(window, BLOCK_MAX)`` bytes, raw and RLE blocks never more than the declared size, and
    exactly the 4 checksum bytes after the last block. ``decompress`` then checks the output's
    length and XXH64 itself. ``protocol/vectors/zstd.json`` holds a corpus of both outcomes.

    ``window_max`` replaces step 6's bound for delta patch frames (§18c), whose window must
    reach back over a raw-content dictionary and so may exceed twice their own content.
    """
    n = len(data)
    if n < 4 or data[:4] != ZSTD_MAGIC:
        if n < 4 and ZSTD_MAGIC.startswith(bytes(data)):
            raise ProtocolError("truncated zstd frame", code="protocol.truncated")
        raise ProtocolError("not a zstd frame (or a skippable frame)", code="protocol.zstd")
    if n < 5:
        raise ProtocolError("truncated zstd frame header", code="protocol.truncated")
    fhd = data[4]
    fcs_flag, single, reserved, has_checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 3) & 1, (fhd >> 2) & 1, fhd & 3
    if reserved:
        raise ProtocolError("zstd frame header has its reserved bit set", code="protocol.zstd")
    if dict_flag:
        raise ProtocolError("zstd frame names a dictionary id (the message header carries it)", code="protocol.zstd")
    if not has_checksum:
        raise ProtocolError("zstd frame has no content checksum", code="protocol.zstd")
    if fcs_flag == 0 and not single:
        raise ProtocolError("zstd frame does not declare its size", code="protocol.zstd")
    fcs_len = (1 if single else 0, 2, 4, 8)[fcs_flag]
    pos = 5 + (0 if single else 1)
    if n < pos + fcs_len:
        raise ProtocolError("truncated zstd frame header", code="protocol.truncated")
    size = int.from_bytes(data[pos : pos + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    if size > cap:
        raise LimitError(f"section would inflate to {size} bytes, over the {cap}-byte cap", code="protocol.bomb")
    if single:
        window = size
    else:
        wd = data[5]
        base = 1 << (10 + (wd >> 3))
        window = base + (base >> 3) * (wd & 7)
        if window > (window_bound(size) if window_max is None else window_max):
            raise ProtocolError(f"zstd window of {window} bytes is too large for {size} bytes", code="protocol.zstd")
    pos += fcs_len
    block_max = min(window, BLOCK_MAX)
    plain = 0  # bytes of raw and RLE blocks: never more than declared
    while True:
        if pos + 3 > n:
            raise ProtocolError("truncated zstd frame", code="protocol.truncated")
        header = int.from_bytes(data[pos : pos + 3], "little")
        pos += 3
        last, btype, bsize = header & 1, (header >> 1) & 3, header >> 3
        if btype == 3:
            raise ProtocolError("zstd block of the reserved type", code="protocol.zstd")
        if bsize > block_max:
            raise ProtocolError("zstd block larger than the frame allows", code="protocol.zstd")
        if btype != 2:
            plain += bsize
            if plain > size:
                raise ProtocolError("zstd blocks hold more than the frame declares", code="protocol.zstd")
        pos += 1 if btype == 1 else bsize
        if last:
            break
    if pos + 4 > n:
        raise ProtocolError("truncated zstd frame", code="protocol.truncated")
    if pos + 4 < n:
        raise ProtocolError("trailing bytes after the zstd frame", code="protocol.trailing")
    return FrameInfo(size, window, int.from_bytes(data[pos : pos + 4], "little"))


def decompress(data: bytes, *, cap: int, dict_id: int = 0) -> bytes:
    """Inflate exactly one frame of at most ``cap`` bytes under the rule of ``check_frame``.

    The frame is checked before anything is allocated; libzstd only inflates it, and its
    output must have the declared length and checksum (checked here, not left to libzstd).
    """
    info = check_frame(data, cap=cap)
    kwargs: dict[str, Any] = {"max_window_size": 1 << (max(info.window_size, 1 << 10) - 1).bit_length()}
    if dict_id:
        kwargs["dict_data"] = dictionary(dict_id)
    try:
        if info.content_size == 0:
            # The one-shot API returns b"" for a declared size of 0 without decoding the
            # frame at all; decode at most one byte to check that it really is empty.
            if zstandard.ZstdDecompressor(**kwargs).stream_reader(data).read(1):
                raise ProtocolError("zstd frame size does not match its header", code="protocol.zstd")
            out = b""
        else:
            # The one-shot API allocates the declared size and fails if the frame holds more.
            out = zstandard.ZstdDecompressor(**kwargs).decompress(data, max_output_size=info.content_size)
    except zstandard.ZstdError as e:
        raise ProtocolError(f"corrupt zstd data: {e}", code="protocol.zstd") from None
    if len(out) != info.content_size:
        raise ProtocolError("zstd frame size does not match its header", code="protocol.zstd")
    if xxhash.xxh64_intdigest(out) & 0xFFFFFFFF != info.checksum:
        raise ProtocolError("zstd content checksum does not match", code="protocol.zstd")
    return out
