"""How the CLI shows ``progress.Progress`` events: a bar on a terminal, JSON lines, or nothing.

Why three modes: a person at a terminal wants bytes done of total, the rate and
the time left (tqdm draws them, on stderr, and it is a small, well-kept library
with no dependencies); cron must get nothing (its output is mailed); the tray
and the app read ``--progress json``: one JSON object per line on stderr, so
stdout keeps the command's own ``--json`` result. ``auto`` (the default) means
a bar when stderr is a terminal, else nothing.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator, TextIO

import click

from ..i18n import N_, _
from ..timefmt import human_bytes
from .progress import OnProgress, Progress

MODES = ("auto", "bar", "json", "none")

#: What a person reads beside each bar.
LABELS = {"upload": N_("Sending"), "download": N_("Receiving"), "export": N_("Writing bundle"),
          "import": N_("Reading bundle")}


class BarRenderer:
    """One tqdm bar per phase, on ``stream``; a new phase closes the bar before it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bars: dict[str, Any] = {}

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm  # only when a bar is drawn: a scheduled sync never imports it

        bar = self.bars.get(p.phase)
        if bar is None:
            for other in self.bars.values():
                other.close()
            self.bars.clear()
            bar = self.bars[p.phase] = tqdm(
                total=p.total, desc=_(LABELS[p.phase]) if p.phase in LABELS else p.phase, unit="B", unit_scale=True, unit_divisor=1000,
                file=self.stream, leave=True, dynamic_ncols=True, mininterval=0.2,
            )
        if p.total is not None and bar.total != p.total:
            bar.total = p.total
        bar.update(p.done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def json_lines(stream: TextIO) -> OnProgress:
    """One JSON object per event and line: ``{"event": "progress", "phase", "done_bytes", "total_bytes"}``."""
    def write(p: Progress) -> None:
        stream.write(json.dumps(p.to_dict()) + "\n")
        stream.flush()
    return write


def json_event(event: dict[str, Any], stream: TextIO | None = None) -> None:
    """One JSON line beside the progress lines (``{"event": "retry", ...}``), on stderr by default."""
    stream = stream or sys.stderr
    stream.write(json.dumps(event) + "\n")
    stream.flush()


@contextlib.contextmanager
def progress_for(mode: str, stream: TextIO | None = None, *, quiet: bool = False) -> Iterator[OnProgress | None]:
    """The ``on_progress`` callback for ``mode`` (None: show nothing); bars are closed on leaving."""
    stream = stream or sys.stderr
    if mode == "json":
        yield json_lines(stream)
        return
    if mode == "none" or quiet or (mode == "auto" and not stream.isatty()):
        yield None
        return
    bars = BarRenderer(stream)
    try:
        yield bars
    finally:
        bars.close()


class Tally:
    """Passes events on and keeps the last one per phase, to say how far a cut transfer got."""

    def __init__(self, inner: OnProgress | None) -> None:
        self.inner = inner
        self.last: dict[str, Progress] = {}
        #: The phase of the latest event: what was moving when a link dropped.
        self.phase: str | None = None

    def __call__(self, p: Progress) -> None:
        self.last[p.phase] = p
        self.phase = p.phase
        if self.inner is not None:
            self.inner(p)

    def so_far(self) -> str | None:
        """``250.0 KB of 3.0 MB sent before that, 2.8 MB left`` for each phase that moved, or None."""
        parts = []
        words = {"upload": (_("{done} of {total} sent before that, {left} left"), _("{done} sent before that")),
                 "download": (_("{done} of {total} received before that, {left} left"),
                              _("{done} received before that"))}
        for phase, (of_total, so_far) in words.items():
            p = self.last.get(phase)
            if p is None or (p.done == 0 and not p.total):
                continue
            if p.total:
                parts.append(of_total.format(done=human_bytes(p.done), total=human_bytes(p.total),
                                             left=human_bytes(p.total - p.done)))
            else:
                parts.append(so_far.format(done=human_bytes(p.done)))
        return "; ".join(parts) or None


def progress_option(f: Callable) -> Callable:
    """--progress auto|bar|json|none, for commands that move bytes."""
    return click.option(
        "--progress", "progress", type=click.Choice(MODES), default="auto", show_default=True,
        help="Show progress: a bar on a terminal (auto), always a bar, JSON lines on stderr for the tray "
             "and apps, or nothing.",
    )(f)
