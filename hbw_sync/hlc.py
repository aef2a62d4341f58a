"""Hybrid logical clocks, packed into one unsigned 64-bit integer.

Why HLC: officials' laptops stay offline for days and their wall clocks drift.
Pure wall-clock last-writer-wins silently loses to whichever laptop runs fast;
pure Lamport clocks lose the "roughly when" that people expect. An HLC stays
close to wall time but never goes backwards and always moves past every
timestamp the device has seen, so an edit made *after* seeing another edit
always orders after it.

Layout: the high 48 bits are milliseconds since the Unix epoch, the low 16 bits
a logical counter. Packing makes ordering a plain integer comparison and costs
at most 9 bytes in msgpack.

Skew: a device whose clock is days ahead would otherwise win every later
conflict, and (through ``observe``) drag every other clock forward with it.
Two bounds stop that:

* ``observe`` never moves the local clock further than ``max_skew_ms`` past the
  local wall time, whatever a peer claims;
* ``effective`` caps a timestamp at the relay's receive time plus the skew bound.
  The relay's receive time travels with each batch to every replica, so every
  replica applies the same cap and still converges.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_MS = (1 << 48) - 1
MAX_HLC = (1 << 64) - 1

#: How far ahead of wall time a timestamp may be before it is capped. Ten minutes is far
#: beyond NTP-synced drift and far below the days a misset laptop clock can be off.
DEFAULT_MAX_SKEW_MS = 10 * 60 * 1000


def pack(ms: int, logical: int = 0) -> int:
    """Build an HLC from wall milliseconds and a logical counter."""
    if not 0 <= ms <= MAX_MS or not 0 <= logical <= LOGICAL_MASK:
        raise ValueError("HLC component out of range")
    return (ms << LOGICAL_BITS) | logical


def unpack(ts: int) -> tuple[int, int]:
    """Split an HLC into (wall milliseconds, logical counter)."""
    return ts >> LOGICAL_BITS, ts & LOGICAL_MASK


def wall_ms(ts: int) -> int:
    """The wall-clock part of an HLC, in milliseconds since the epoch."""
    return ts >> LOGICAL_BITS


def tick(last: int, now_ms: int) -> int:
    """The timestamp for a new local event: past ``last`` and at least the wall time.

    When the wall clock is behind ``last`` (the clock was set back, or a peer was
    observed slightly ahead), the logical counter advances instead; its overflow
    carries into the millisecond part, which keeps the order total.
    """
    if last >= MAX_HLC:
        raise ValueError("clock exhausted: no timestamp is left after 2**64-1")
    return max(pack(min(max(now_ms, 0), MAX_MS)), last + 1)


def skew_bound(now_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> int:
    """The largest timestamp accepted as 'now' given a wall time and a skew bound."""
    return pack(min(max(now_ms + max_skew_ms, 0), MAX_MS), LOGICAL_MASK)


def observe(last: int, remote: int, now_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> int:
    """Merge a peer's timestamp into the local clock state, bounded by the skew limit.

    Returns the new clock state; the next ``tick`` is strictly greater than both
    ``last`` and (the capped) ``remote``.
    """
    return max(last, min(remote, skew_bound(now_ms, max_skew_ms)))


def effective(ts: int, received_ms: int | None, max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> int:
    """The timestamp the merge rule uses: ``ts`` capped at relay receive time plus the skew bound.

    ``received_ms`` is None while a change has not reached the relay yet; it is
    then taken at face value (only its author has it).
    """
    if received_ms is None:
        return ts
    return min(ts, skew_bound(received_ms, max_skew_ms))


@dataclass
class Clock:
    """A mutable HLC for one device; the functions above are the rule, this is the state."""

    last: int = 0
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS

    def now(self, now_ms: int) -> int:
        self.last = tick(self.last, now_ms)
        return self.last

    def observe(self, remote: int, now_ms: int) -> None:
        self.last = observe(self.last, remote, now_ms, self.max_skew_ms)
