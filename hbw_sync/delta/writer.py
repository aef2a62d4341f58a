"""Writing a recipe (method 2): collect LIT, COPY and MEMBER ops, then encode them.

The span and zip recipes both build through this one writer, so adjacent literals merge,
contiguous copies merge, and the literal stream is one patch frame. PROTOCOL.md §18c.
"""

from __future__ import annotations

from typing import Any

from .patch import patch_frame
from .ranged import Source
from .wire import (CODEC_BLOCKS, CODEC_DEFLATE, CODEC_RAW, CODEC_TRANSCRIPT, METHOD_RECIPE, OP_COPY, OP_LIT, OP_MEMBER,
                   OP_SPLICE, Buf, uvarint)


def _range(base: Buf | Source, off: int, n: int) -> Buf:
    """base[off:off+n] without copying a buffer; a ``ranged.Source`` is read (the literals' dictionary)."""
    return base.read(off, n) if isinstance(base, Source) else memoryview(base)[off : off + n]


class RecipeWriter:
    """Collects ops; merges adjacent LITs and contiguous COPYs."""

    def __init__(self) -> None:
        self.lits = bytearray()
        self.ops: list[tuple[Any, ...]] = []  # ("lit", n) | ("copy", off, n) | ("member", bytes): MEMBER or SPLICE

    def lit(self, data: Buf) -> None:
        if not len(data):
            return
        self.lits += data
        if self.ops and self.ops[-1][0] == "lit":
            self.ops[-1] = ("lit", self.ops[-1][1] + len(data))
        else:
            self.ops.append(("lit", len(data)))

    def copy(self, off: int, n: int) -> None:
        if n == 0:
            return
        if self.ops and self.ops[-1][0] == "copy" and self.ops[-1][1] + self.ops[-1][2] == off:
            self.ops[-1] = ("copy", self.ops[-1][1], self.ops[-1][2] + n)
        else:
            self.ops.append(("copy", off, n))

    def member(
        self,
        dict_range: tuple[int, int, int, int],
        frame: bytes,
        out_len: int,
        deflate: tuple[int, int, int] | None,
        blocks: tuple[int, int] | None = None,
        splice: tuple[int, int] | None = None,
        transcript: bool = False,
    ) -> None:
        """A MEMBER op; ``deflate`` alone is codec 8, with ``blocks`` (block_size, window) codec 9.

        With ``splice`` (head, tail) it is a SPLICE op: the frame holds only the content between
        the dictionary content's first ``head`` and last ``tail`` bytes (splice.py). With
        ``transcript`` the content is a deflate transcript and the output codec 10 (transcript.py).
        """
        dict_off, dict_len, dict_codec, dict_plain = dict_range
        enc = bytearray([OP_MEMBER if splice is None else OP_SPLICE])
        enc += uvarint(dict_off) + uvarint(dict_len) + bytes([dict_codec])
        if dict_codec in (CODEC_DEFLATE, CODEC_TRANSCRIPT):
            enc += uvarint(dict_plain)
        if splice is not None:
            enc += uvarint(splice[0]) + uvarint(splice[1])
        enc += uvarint(len(frame)) + frame
        if transcript:
            enc.append(CODEC_TRANSCRIPT)
        elif deflate is None:
            enc.append(CODEC_RAW)
        elif blocks is None:
            enc.append(CODEC_DEFLATE)
            enc += bytes(deflate)
        else:
            enc.append(CODEC_BLOCKS)
            enc += bytes(deflate) + uvarint(blocks[0]) + uvarint(blocks[1])
        enc += uvarint(out_len)
        self.ops.append(("member", bytes(enc)))

    def encode(self, base: Buf | Source, lit_dict: tuple[int, int]) -> bytes:
        lit_off, lit_len = lit_dict if self.lits else (0, 0)
        out = bytearray([METHOD_RECIPE])
        out += uvarint(lit_off) + uvarint(lit_len)
        if self.lits:
            frame = patch_frame(_range(base, lit_off, lit_len), bytes(self.lits))
            out += uvarint(len(frame)) + frame
        else:
            out += uvarint(0)
        out += uvarint(len(self.ops))
        for op in self.ops:
            if op[0] == "lit":
                out += bytes([OP_LIT]) + uvarint(op[1])
            elif op[0] == "copy":
                out += bytes([OP_COPY]) + uvarint(op[1]) + uvarint(op[2])
            else:
                out += op[1]
        return bytes(out)
