"""The span recipe: copy the shared ends, patch only the changed middle against the whole base.

Identical files cost a few bytes, and a large file skips zstd's per-block cost on the
parts that did not change.
"""

from __future__ import annotations

from .patch import patch_frame
from .wire import CODEC_RAW, Buf
from .writer import RecipeWriter


def common_prefix(a: Buf, b: Buf) -> int:
    """Length of the common prefix, compared in growing slices (C speed, no copy); SPLICE uses it too."""
    a, b = memoryview(a), memoryview(b)
    n = min(len(a), len(b))
    lo, step = 0, 1 << 16
    while lo < n:
        hi = min(n, lo + step)
        if a[lo:hi] == b[lo:hi]:
            lo, step = hi, min(step * 2, 1 << 22)
            continue
        while hi - lo > 64:  # the first difference is inside [lo, hi): bisect
            mid = (lo + hi) // 2
            if a[lo:mid] == b[lo:mid]:
                lo = mid
            else:
                hi = mid
        while lo < hi and a[lo] == b[lo]:
            lo += 1
        return lo
    return n


def span_recipe(base: Buf, new: Buf) -> bytes | None:
    """COPY common prefix + MEMBER(changed middle, whole base as dictionary) + COPY common suffix.

    None when the files share neither a prefix nor a suffix: that would be
    method 1 plus a few bytes of recipe.
    """
    bv, nv = memoryview(base), memoryview(new)
    pre = common_prefix(bv, nv)
    limit = min(len(base), len(new)) - pre
    suf = min(common_prefix(bv[::-1], nv[::-1]), limit) if limit > 0 else 0
    if pre + suf == 0:
        return None
    w = RecipeWriter()
    w.copy(0, pre)
    middle = nv[pre : len(new) - suf]
    if len(middle):
        frame = patch_frame(bv, middle)
        dict_range = (0, len(base), CODEC_RAW, 0) if len(base) else (0, 0, CODEC_RAW, 0)
        w.member(dict_range, frame, len(middle), None)
    w.copy(len(base) - suf, suf)
    return w.encode(base, (0, 0))

