"""Strict msgpack and bounded zstd: the two decoders every untrusted byte goes through.

Why so strict: bundles arrive by email and USB stick and the relay may be
attacked, so every decoder here assumes hostile input. Each length is capped
before anything is allocated, a zstd frame must declare its decompressed size
(so a bomb is refused from its 9-byte header, never inflated), trailing bytes
are an error, and every failure is a ``ProtocolError``/``LimitError``, never a
library exception leaking out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import msgpack
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
    return msgpack.packb(obj, use_bin_type=True)


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


def compress(data: bytes, *, level: int = 19, dict_id: int = 0) -> bytes:
    """One zstd frame that declares its size; no checksum (signature and AEAD cover integrity)."""
    params: dict[str, Any] = {"level": level, "write_content_size": True, "write_checksum": False}
    if dict_id:
        params["dict_data"] = dictionary(dict_id)
        params["write_dict_id"] = False  # the message header carries it
    return zstandard.ZstdCompressor(**params).compress(data)


def decompress(data: bytes, *, cap: int, dict_id: int = 0) -> bytes:
    """Inflate exactly one frame of at most ``cap`` bytes, refusing bombs before allocating."""
    if zstd_frame_length(data) != len(data):
        raise ProtocolError("trailing bytes after the zstd frame", code="protocol.trailing")
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError:  # reserved bits, oversized window, size field of 2**64-2
        raise ProtocolError("corrupt zstd frame header", code="protocol.zstd") from None
    if size < 0:
        raise ProtocolError("zstd frame does not declare its size", code="protocol.zstd")
    if size > cap:
        raise LimitError(f"section would inflate to {size} bytes, over the {cap}-byte cap", code="protocol.bomb")
    kwargs: dict[str, Any] = {"max_window_size": max(1 << 20, 1 << (max(cap, 1) - 1).bit_length())}
    if dict_id:
        kwargs["dict_data"] = dictionary(dict_id)
    try:
        if size == 0:
            # The one-shot API returns b"" for a declared size of 0 without decoding the
            # frame at all; decode at most one byte to check that it really is empty.
            if zstandard.ZstdDecompressor(**kwargs).stream_reader(data).read(1):
                raise ProtocolError("zstd frame size does not match its header", code="protocol.zstd")
            return b""
        # The one-shot API allocates the declared size and fails if the frame holds more.
        out = zstandard.ZstdDecompressor(**kwargs).decompress(data, max_output_size=cap)
    except zstandard.ZstdError as e:
        raise ProtocolError(f"corrupt zstd data: {e}", code="protocol.zstd") from None
    if len(out) != size:
        raise ProtocolError("zstd frame size does not match its header", code="protocol.zstd")
    return out
