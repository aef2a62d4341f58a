"""protocol/vectors/hlc.json: every hybrid logical clock function, with refused arguments (PROTOCOL.md §4).
"""

from __future__ import annotations

from typing import Any

from hbw_sync import hlc

from ._kit import DAY, MIN, T0

# -- hlc ----------------------------------------------------------------------------------


def build() -> dict[str, Any]:
    P = hlc.pack
    S = hlc.DEFAULT_MAX_SKEW_MS
    cases: list[dict[str, Any]] = []

    def add(fn: str, args: dict[str, Any], note: str) -> None:
        f = getattr(hlc, fn)
        try:
            result: Any = f(**args)
        except ValueError:
            result = "ValueError"
        if isinstance(result, tuple):
            result = list(result)
        cases.append({"fn": fn, "args": args, "expected": result, "note": note})

    add("pack", {"ms": 0, "logical": 0}, "zero")
    add("pack", {"ms": 1, "logical": 0}, "1 ms is 2^16")
    add("pack", {"ms": T0, "logical": 5}, "a 2025 time")
    add("pack", {"ms": hlc.MAX_MS, "logical": hlc.LOGICAL_MASK}, "the largest HLC, 2^64-1")
    add("pack", {"ms": -1, "logical": 0}, "negative ms is refused")
    add("pack", {"ms": hlc.MAX_MS + 1, "logical": 0}, "ms over 48 bits is refused")
    add("pack", {"ms": T0, "logical": 65536}, "logical over 16 bits is refused")
    add("unpack", {"ts": P(T0, 5)}, "(ms, logical)")
    add("unpack", {"ts": hlc.MAX_HLC}, "largest")
    add("tick", {"last": 0, "now_ms": T0}, "first event: the wall time, logical 0")
    add("tick", {"last": P(T0, 3), "now_ms": T0}, "same millisecond: logical + 1")
    add("tick", {"last": P(T0, 3), "now_ms": T0 + 1}, "wall clock moved on: logical resets")
    add("tick", {"last": P(T0 + 5000, 0), "now_ms": T0}, "wall clock set back 5 s: stay ahead of last")
    add("tick", {"last": P(T0, hlc.LOGICAL_MASK), "now_ms": T0}, "logical overflow carries into ms")
    add("tick", {"last": 0, "now_ms": -5}, "negative wall time clamps to 0, still > last")
    add("tick", {"last": 0, "now_ms": hlc.MAX_MS + 10}, "wall time past 48 bits clamps to MAX_MS")
    add("skew_bound", {"now_ms": T0}, "now + 10 min, logical all ones")
    add("skew_bound", {"now_ms": T0, "max_skew_ms": 0}, "no skew allowed")
    add("observe", {"last": P(T0, 0), "remote": P(T0 + 1000, 7), "now_ms": T0}, "peer 1 s ahead: adopted")
    add("observe", {"last": P(T0, 9), "remote": P(T0 - 1000, 0), "now_ms": T0}, "peer behind: keep last")
    add("observe", {"last": P(T0, 0), "remote": P(T0 + 3 * DAY, 0), "now_ms": T0}, "peer 3 days ahead: capped at now+skew")
    add("observe", {"last": P(T0, 0), "remote": P(T0 + 2000, 0), "now_ms": T0, "max_skew_ms": 1000}, "custom skew bound")
    add("effective", {"ts": P(T0 + 3 * DAY, 0), "received_ms": None}, "not yet at the relay: face value")
    add("effective", {"ts": P(T0 + 5 * MIN, 2), "received_ms": T0}, "within the bound: unchanged")
    add("effective", {"ts": P(T0 + 3 * DAY, 0), "received_ms": T0}, "3 days ahead of the relay: capped")
    add("effective", {"ts": P(T0 + 2000, 0), "received_ms": T0, "max_skew_ms": 1000}, "custom bound")
    return {
        "meta": {
            "layout": "hlc = ms << 16 | logical; all values are exact integers up to 2^64-1",
            "default_max_skew_ms": S,
            "errors": "'ValueError' means the arguments must be refused",
        },
        "cases": cases,
    }
