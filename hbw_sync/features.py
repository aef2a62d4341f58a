"""What this hbw-sync reads: feature bits a device declares in every ``sync`` (PROTOCOL.md §16, ``reads``).

Why: a writer may only send a smaller form of something (a derived manifest, §18e) when every
device of its team can read it; a device running an older hbw-sync refuses the new form
(``protocol.delta``) and reads that document again only at its next full version. The envelope
carries no per-device software version (§21 keeps v1 open to new optional args, not new
layouts), so each device says what it reads as a bit set, the relay keeps the last value per
device and hands it out beside the roster, and a writer asks ``Ledger.everyone_reads(bit)``.

A bit set, not a version number: a later feature takes the next bit, and a device that reads it
sets it, whatever else it reads. A device that never declared one reads 0 (nothing new), and so
does a ``sync`` without ``reads``: an older client says nothing, including one moved back to an
older release after a newer one declared its bits.

Sans-IO: constants and pure functions over plain values (the client's stored roster), no store.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Bit 0: derived manifests (PROTOCOL.md §18e): the receiver works a version's chunk ids out itself.
READS_DERIVED_MANIFEST = 1
#: What this software reads: every bit above, or-ed.
READS = READS_DERIVED_MANIFEST
#: The largest ``reads`` on the wire (a uint32); anything else is refused as ``protocol.schema``.
READS_MAX = 2**32 - 1


def lacking(roster: Mapping[str, Any], reads: Mapping[str, Any], me: str, bits: int) -> list[str]:
    """The devices (hex ids) of ``roster`` that are not revoked, are not ``me``, and did not declare
    every bit of ``bits``, sorted.

    ``roster``: device hex -> roster entry ([member, author key, X25519 key, revoked ms, role]);
    ``reads``: device hex -> the declared bits (a device missing there declared none: 0).
    """
    out = []
    for device, entry in roster.items():
        revoked = entry[3] if isinstance(entry, (list, tuple)) and len(entry) > 3 else None
        if device == me or revoked is not None:
            continue
        got = reads.get(device, 0)
        if not isinstance(got, int) or isinstance(got, bool) or got & bits != bits:
            out.append(device)
    return sorted(out)
