"""Progress of a long transfer as plain values: the seam between the library and whoever shows it.

Why a callback of small dataclasses: on Amina's 3G link a 3 MB upload takes
minutes, and a person (or the tray, or the app) must see that it moves. The
library does no printing; a sync, a bundle export or import takes one keyword
argument, ``on_progress``, and calls it with a ``Progress`` whenever bytes move.
The CLI draws a bar on a terminal or writes JSON lines (``cli_progress``); the
tray and the app take the same events. A callback that raises is a bug of the
caller and propagates: nothing is half-applied by it, since events are sent
between transactions, never inside one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

#: The phases a transfer goes through, in the order a sync meets them.
PHASES = ("upload", "download", "export", "import")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` bytes of one ``phase``; ``total`` is None while not yet known."""

    phase: str
    done: int
    total: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON line form: sizes are integer bytes, like every --json output."""
        return {"event": "progress", "phase": self.phase, "done_bytes": self.done, "total_bytes": self.total}


OnProgress = Callable[[Progress], None]


class Meter:
    """Sends ``Progress`` to an optional callback, skipping repeats (a no-op without a callback)."""

    def __init__(self, on_progress: OnProgress | None) -> None:
        self._cb = on_progress
        self._last: Progress | None = None

    @property
    def active(self) -> bool:
        """Someone listens: worth counting bytes for (a scheduled sync has nobody)."""
        return self._cb is not None

    def __call__(self, phase: str, done: int, total: int | None = None) -> None:
        if self._cb is None:
            return
        if total is not None:
            total = max(total, done)
        p = Progress(phase, done, total)
        if p != self._last:
            self._last = p
            self._cb(p)
