"""The device's side of reply bundles in parts: which parts came, which wait, what is still to come.

Why: the relay writes a large reply as several files, each within the size the device
asked for (an email attachment), and mail delivers them in any order, sometimes twice.
Batches must apply in the relay's order (a document's next version needs the one
before), so a part that arrives before the part it follows is kept in the inbox but
*held*: nothing at or after the first missing batch applies, and the pull cursor stays
where it was, until the gap is filled by the missing part or by an online sync. A
held range is (``from_cursor``, ``cursor``] of its part; once the cursor reaches its
start, the cursor jumps to its end (every batch in it is already here).

State, in the store's meta (small: one entry per part of the replies not yet complete):
``bundle_ranges`` [[from, to], ...] of held parts; ``bundle_parts`` {request nonce hex:
[n, [part numbers imported], [payload bytes per part]]}.
"""

from __future__ import annotations

from typing import Any

from .store import Store
from ..i18n import _


def held_from(store: Store) -> int | None:
    """The first rseq that must wait (a part before it is missing), or None: everything may apply."""
    cur = store.meta("pull_cursor", 0)
    if any(lo > cur for lo, _hi in store.meta("bundle_ranges") or []):
        return cur + 1
    return None


def hold(store: Store, lo: int, hi: int) -> None:
    """Remember a part's range that arrived before the part it follows (inside the caller's transaction)."""
    store.set_meta("bundle_ranges", sorted({(lo, hi), *map(tuple, store.meta("bundle_ranges") or [])}))


def settle(store: Store) -> None:
    """Move the cursor over held ranges it has reached; forget ranges behind it (inside a transaction)."""
    ranges = sorted(map(tuple, store.meta("bundle_ranges") or []))
    if not ranges:
        return
    cur = store.meta("pull_cursor", 0)
    moved = True
    while moved:
        moved = False
        for lo, hi in ranges:
            if lo <= cur < hi:
                cur, moved = hi, True
    store.set_meta("pull_cursor", cur)
    left = [[lo, hi] for lo, hi in ranges if hi > cur]
    store.set_meta("bundle_ranges", left or None)


def check_part(res: dict[str, Any]) -> tuple[int, int, int | None, list[int]]:
    """(part, of n, from_cursor, payload bytes per part) of a signed reply; a reply not in parts is 1 of 1.

    The relay signed these, but a wrong shape must still be a clear error, not a crash.
    """
    from ..errors import ProtocolError

    part = res.get("part", [1, 1])
    sizes = res.get("parts_bytes", [])
    frm = res.get("from_cursor")
    ok = (isinstance(part, list) and len(part) == 2 and all(type(x) is int for x in part)
          and 1 <= part[0] <= part[1] <= 10_000 and isinstance(sizes, list) and all(type(x) is int for x in sizes)
          and (frm is None or type(frm) is int) and (not sizes or len(sizes) == part[1]))
    if not ok:
        raise ProtocolError(_("the reply bundle's part fields are malformed"), code="protocol.schema")
    return part[0], part[1], frm, sizes


def record(store: Store, nonce: str, part: int, n: int, sizes: list[int]) -> dict[str, Any]:
    """Count a part as imported (inside a transaction); returns what is still to come.

    ``{"complete": bool, "parts_left": int, "bytes_left": int}``; complete once every part of
    that request's reply is in.
    """
    book = store.meta("bundle_parts") or {}
    _n, got, _sizes = book.get(nonce, [n, [], sizes])
    got = sorted(set(got) | {part})
    left = [i for i in range(1, n + 1) if i not in got]
    complete = not left
    if complete:
        book.pop(nonce, None)
    else:
        book[nonce] = [n, got, sizes]
    store.set_meta("bundle_parts", book or None)
    bytes_left = sum(sizes[i - 1] for i in left) if len(sizes) == n else 0
    return {"complete": complete, "parts_left": len(left), "bytes_left": bytes_left}


def imported(store: Store, nonce: str, part: int) -> bool:
    """Whether this part of this reply was imported already (a part not yet complete is in ``bundle_parts``)."""
    entry = (store.meta("bundle_parts") or {}).get(nonce)
    return entry is not None and part in entry[1]
