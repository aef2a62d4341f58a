"""The one wall-clock function, for the edges (client, relay, office page).

Why one (STYLE.md §2): the core never reads the clock (``now`` is an argument, so a test
replays any moment), and the edges read it through this function only, so a test or a
tool that needs another "now" has one place to look, and the two sides cannot disagree on
units (milliseconds since the Unix epoch, UTC). ``tests/test_seam.py`` checks that
nothing else in ``hbw_sync`` reads the wall clock and that no core module calls this.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000
