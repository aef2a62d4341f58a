"""A reply bundle within the size the device asked for, continued in as many more files as it takes.

Why: a reply bundle goes back by email, and most mail servers refuse an attachment
over about 10 MB; a replacement laptop's first reply (3 MB in the issue, far more
after a busy month) could not be capped, and a change too large for any bundle
waited for ever without a word. So a bundle's request carries ``reply_max`` (the
device's ``--max-size``), and the relay writes its answer as parts of at most that
many bytes each (PROTOCOL.md, "Reply bundles in parts"):

* part 1 is the ordinary answer to the request (acknowledgements, roster with what each
  device reads, keys, a snapshot if one fits, the first batches); parts 2..n carry only batches;
* each part is a complete signed response to the same request, naming the cursor
  it starts from (``from_cursor``) and the one it ends at (``cursor``), its place
  (``part``: [i, n]) and the payload bytes of every part (``parts_bytes``), so the
  device can say what is still to come and hold a part that arrives before the one
  it follows;
* the relay keeps no state about parts: the device's cursor says what it has, so a
  lost part is fetched again by the next bundle or online sync;
* a batch that does not fit in an empty part can never travel by bundle: the parts
  stop before it and the last one says its size (``oversize``), for the device to
  say so.

The relay holds all parts of one reply in memory while they are sealed and written:
``MAX_REPLY_BYTES`` bounds that; what is left over is ``more``, for the next bundle.
"""

from __future__ import annotations

from typing import Any

from .. import codec
from .storage import Txn

#: Room kept in every part for the envelope, its signature, the bundle's seal and the part fields.
REPLY_RESERVE = 4096
#: msgpack framing of one [rseq, device, received_ms, data] entry (counted generously).
BATCH_OVERHEAD = 64
#: Smallest and largest reply part a device may ask for (a part is one envelope: 32 MiB at most).
MIN_REPLY = 64 * 1024
MAX_REPLY = 32 * 1024 * 1024
#: All parts of one reply together: what the relay holds in memory while it writes them.
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: Batches in one part: well under the envelope's container limit (100,000 elements).
MAX_PART_BATCHES = 10_000


def payload(part: dict[str, Any]) -> int:
    """The bytes a part carries for the device: its batches and its snapshot, if any."""
    snap = part.get("snapshot")
    return (sum(len(b[3]) for b in part.get("batches", ())) + (len(snap[2]) if snap else 0)
            + sum(c[1] if isinstance(c[1], int) else len(c[1]) for c in part.get("chunks", ())))


#: msgpack framing of one [id, sealed] chunk entry (counted generously).
CHUNK_OVERHEAD = 32


def add_chunks(parts: list[dict[str, Any]], get: Any, ids: list[bytes], reply_max: int,
               keep_bytes: bool = True) -> int:
    """Put the wanted sealed chunks (``get(id)`` -> bytes or None) in the last part, within ``reply_max``.

    What does not fit (or the relay lacks) is not promised: the device asks again with its next bundle.
    Returns how many were added; ``parts_bytes`` is recomputed. ``keep_bytes=False`` (format 2
    replies) holds ``[id, size]`` only: ``bundle_ingest.seal_reply`` streams each chunk into the
    reply's body when it seals it, so a 32 MiB reply is not held twice.
    """
    last = parts[-1]
    fixed = len(codec.pack({k: v for k, v in last.items() if k not in ("batches", "snapshot")}))
    used = fixed + payload(last) + BATCH_OVERHEAD * (len(last.get("batches", ())) + 1)
    room = reply_max - REPLY_RESERVE - used
    total = sum(payload(p) for p in parts)
    out: list[list[Any]] = []
    for cid in dict.fromkeys(ids):
        sealed = get(cid)
        if sealed is None:
            continue
        cost = len(sealed) + CHUNK_OVERHEAD
        if cost > room or total + len(sealed) > MAX_REPLY_BYTES:
            break
        out.append([cid, sealed if keep_bytes else len(sealed)])
        room -= cost
        total += len(sealed)
    if out:
        last["chunks"] = out
        sizes = [payload(p) for p in parts]
        for p in parts:
            p["parts_bytes"] = sizes
    return len(out)


def batch_budget(reply_max: int) -> int:
    """Bytes of batches (with their framing) one part may carry."""
    return max(0, reply_max - REPLY_RESERVE)


def fit_first(result: dict[str, Any], reply_max: int) -> None:
    """Trim the first part's batches so that it, with its roster, keys and snapshot, fits ``reply_max``.

    ``relay.sync`` chose them by a budget that cannot know the size of the rest of its
    answer; what is trimmed goes to the next part (the cursor steps back before it).
    """
    fixed = len(codec.pack({k: v for k, v in result.items() if k != "batches"}))
    room = reply_max - REPLY_RESERVE - fixed
    batches = result.get("batches", [])
    kept, used = 0, 0
    for b in batches:
        cost = len(b[3]) + BATCH_OVERHEAD
        if used + cost > room:
            break
        kept, used = kept + 1, used + cost
    if kept < len(batches):
        result["cursor"] = batches[kept][0] - 1  # the next part starts at the first batch left out
        result["batches"] = batches[:kept]
        result["more"] = True


def next_part(conn: Txn, device: bytes, cursor: int, reply_max: int) -> tuple[dict[str, Any], int | None]:
    """The batches after ``cursor`` that fit one part, and the size of a batch too big for any part (or None)."""
    budget = batch_budget(reply_max)
    out: list[list[Any]] = []
    used, start, stuck, more = 0, cursor, None, False
    rows = conn.execute("SELECT rseq, device, received_ms, size FROM batches WHERE rseq > ? ORDER BY rseq LIMIT ?",
                        (cursor, MAX_PART_BATCHES + 1)).fetchall()
    for rseq, dev, rcv, size in rows:
        if dev == device:
            cursor = rseq  # a device's own batches are acknowledged, never sent back
            continue
        cost = size + BATCH_OVERHEAD
        if used + cost > budget or len(out) >= MAX_PART_BATCHES:
            more = True
            if not out:
                stuck = size
            break
        data = conn.execute("SELECT data FROM batches WHERE rseq = ?", (rseq,)).fetchone()[0]
        out.append([rseq, dev, rcv, data])
        used += cost
        cursor = rseq
    else:
        more = conn.execute("SELECT 1 FROM batches WHERE rseq > ? LIMIT 1", (cursor,)).fetchone() is not None
    return {"acks": [], "rejects": [], "batches": out, "cursor": cursor, "more": more, "from_cursor": start}, stuck


def split(conn: Txn, device: bytes, first: dict[str, Any], from_cursor: int,
          reply_max: int, max_parts: int = MAX_REPLY_BYTES // MIN_REPLY) -> list[dict[str, Any]]:
    """The parts of one reply: ``first`` (``relay.sync``'s answer, trimmed to fit), then batches only.

    Every part gets ``part`` [i, n], ``from_cursor``, ``parts_bytes`` (payload per part).
    ``max_parts=1``: one capped reply (the HTTP drop point answers with one file).
    """
    fit_first(first, reply_max)
    first["from_cursor"] = from_cursor
    parts = [first]
    total = payload(first)
    while parts[-1].get("more") and len(parts) < max_parts and total + reply_max <= MAX_REPLY_BYTES:
        part, stuck = next_part(conn, device, parts[-1]["cursor"], reply_max)
        if not part["batches"]:
            if stuck is not None:
                parts[-1]["oversize"] = stuck  # nothing after it can come by bundle either (order)
            else:  # only this device's own batches were left: the last part ends after them
                parts[-1]["cursor"], parts[-1]["more"] = part["cursor"], part["more"]
            break
        parts.append(part)
        total += payload(part)
    sizes = [payload(p) for p in parts]
    for i, p in enumerate(parts, 1):
        p["part"] = [i, len(parts)]
        p["parts_bytes"] = sizes
    return parts
